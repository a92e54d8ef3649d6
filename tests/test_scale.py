"""Big graphs stay cheap to edit (issue 13, "Scale"): an edit's work does not grow
with the graph, and a burst of edits becomes one plan per batch, not one each.

Counted, not timed: the work of one edit is the number of Python and C calls it
makes (sys.setprofile), which is the same on every machine. bench/scale.py has
the times."""

from __future__ import annotations

import sys

import numpy as np

from mixgraph.clients import Client
from mixgraph.clients.protocol import encode
from mixgraph.server.engine import CMD_EDGE, Engine
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


def test_a_commit_makes_as_many_calls_on_a_small_and_a_big_graph():
    """The plan after a connect (and after a disconnect) is built with the same
    number of Python and C calls on 200 strips as on 1,600: no call per node or
    connection (on the old code, the planner made several per node and per
    connection: a reference each, a step each, a mix operation each)."""
    def cost(n: int) -> list[int]:
        s = _graph(n, vca=True, bypass=True)
        s.add_node("output", "o2", {"channels": 2})
        s.commit()
        s.connect("f3", "o2")
        a = _calls(s.commit)
        s.disconnect("f3", "o2")
        b = _calls(s.commit)
        s.close()
        s.engine.free()
        return [a, b]

    small, big = cost(200), cost(1600)
    for a, b in zip(small, big, strict=True):
        assert b <= a + 10, (small, big)


def _dc_chain(n: int) -> tuple[Session, Engine]:
    """Hardware input 1 (fed 1.0) -> n gains at 0 dB -> hardware output 1, playing."""
    e = Engine(48000, 1, 1)
    s = Session(e)
    s.add_node("input", "in", {"channels": 1})
    prev = "in"
    for i in range(n):
        s.add_node("gain", f"g{i}")
        s.connect(prev, f"g{i}")
        prev = f"g{i}"
    s.add_node("output", "out", {"channels": 1})
    s.connect(prev, "out")
    s.commit()
    e.process(256, np.ones((256, 1), np.float32), block=64)
    s.service()
    return s, e


def test_clearing_a_chain_fades_only_what_reaches_the_output():
    """Removing every node of a 20-gain chain (in /graph/clear's order, first
    made first) fades the output out along one 5 ms linear ramp, 1 - k/240 at
    sample k (FADE_MS at 48 kHz), to silence: the connections between removed
    nodes keep their gain and leave with their nodes, and only the connection
    into the output fades (one fade command however long the chain). On the old
    code every connection faded at once: the output fell as (1 - k/240)^21,
    to a tenth in 24 samples, a click, and a 10,000-node clear cost the
    audio thread 10,000 fades (2-4 ms blocks)."""
    s, e = _dc_chain(20)
    fades = 0
    push = e.push

    def counting_push(kind, *args):
        nonlocal fades
        fades += kind == CMD_EDGE
        return push(kind, *args)

    e.push = counting_push
    for name in list(s.graph.nodes):
        s.remove_node(name)
    s.commit()
    y = []
    for _ in range(40):
        y.append(e.process(64, np.ones((64, 1), np.float32), block=64)[:, 0])
        s.service()
    y = np.concatenate(y)
    k = np.arange(len(y))
    ramp = np.clip(1.0 - (k + 1) / 240.0, 0.0, 1.0)  # the edge gain after sample k
    assert fades == 1
    assert np.max(np.abs(y - ramp)) < 1e-4, np.max(np.abs(y - ramp))
    assert s.idle() and not s.live and not s.refs.owners  # everything freed
    s.close()
    e.free()
