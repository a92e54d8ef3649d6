"""Big graphs stay cheap to edit (issue 13, "Scale"): an edit's work does not grow
with the graph, and a burst of edits becomes one plan per batch, not one each.

Counted, not timed: the work of one edit is the number of Python and C calls it
makes (sys.setprofile), which is the same on every machine. bench/scale.py has
the times."""

from __future__ import annotations

import sys

from mixgraph.clients import Client
from mixgraph.clients.protocol import encode
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

from daemon_util import Daemon


def _calls(fn) -> int:
    n = 0

    def prof(frame, event, arg):
        nonlocal n
        if event in ("call", "c_call"):
            n += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n


def _graph(n: int, vca: bool, bypass: bool) -> Session:
    """n channel strips (gain -> pan -> fader) into a bus and an output."""
    s = Session(Engine(48000, 0, 2))
    s.add_node("bus", "mix", {"channels": 2})
    s.add_node("output", "out", {"channels": 2})
    s.connect("mix", "out")
    for i in range(n):
        s.add_node("gain", f"t{i}")
        s.add_node("pan", f"p{i}")
        s.add_node("gain", f"f{i}", {"channels": 2})
        s.connect(f"t{i}", f"p{i}")
        s.connect(f"p{i}", f"f{i}")
        s.connect(f"f{i}", "mix")
    if vca:
        s.add_node("vca", "v", {"members": "f0,f1"})
    if bypass:
        s.set_bypass("t0", True)
    s.commit()
    return s


def _edit_cost(n: int, vca: bool, bypass: bool) -> list[int]:
    s = _graph(n, vca, bypass)
    costs = [
        _calls(lambda: s.add_node("gain", "new", {"channels": 2})),
        _calls(lambda: s.connect("new", "mix")),
        _calls(lambda: s.disconnect("new", "mix")),
        _calls(lambda: s.set_param("f3", "gain", -3.0)),
        _calls(lambda: s.remove_node("new")),
    ]
    s.close()
    s.engine.free()
    return costs


def test_an_edit_costs_the_same_on_a_small_and_a_big_graph():
    """Adding, connecting, disconnecting and removing a node on a graph of 200
    strips and of 1,600 (with a VCA and a bypassed node in both) makes the same
    number of calls: no edit walks the whole graph (on the old code, adds and
    connects did: the VCA offsets, the bypass targets, the cycle check)."""
    for vca, bypass in ((False, False), (True, True)):
        small = _edit_cost(200, vca, bypass)
        big = _edit_cost(1600, vca, bypass)
        for what, a, b in zip(("add", "connect", "disconnect", "set", "remove"), small, big,
                              strict=True):
            assert b <= a * 1.05 + 10, (what, vca, bypass, a, b)


def test_a_burst_of_edits_is_one_plan_per_batch(tmp_path):
    """300 adds sent at once over TCP: every one is answered /done and is in the
    graph, and the daemon builds far fewer plans than edits."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        before = d.status()["plans"]
        c = Client("127.0.0.1", d.port, timeout=30.0, transport="tcp")
        try:
            c.send_many([encode("/graph/add", ["gain", f"g{i}"]) for i in range(300)])
            done = 0
            while done < 300:
                addr, args = c.receive(timeout=30)
                assert addr != "/fail", args
                done += addr == "/done" and args[:1] == ["/graph/add"]
            assert c.request("/sync", 7)[1] == [7]
        finally:
            c.close()
        st = d.status()
        assert st["nodes"] == 300
        assert 1 <= st["plans"] - before <= 300 // 4, st["plans"] - before
    finally:
        d.stop()
