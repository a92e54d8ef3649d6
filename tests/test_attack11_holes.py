"""Holes found by the eleventh attack run, against a real daemon (null backend) over
real sockets, driven as a mixing engineer's console or a script would."""

from __future__ import annotations

import pytest

from mixgraph.clients import Client

from daemon_util import Daemon


@pytest.fixture
def d(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    yield d
    d.stop()


def _replies(d: Daemon, address: str, *args) -> list[tuple[str, list]]:
    """Every reply to one message, up to a /sync sent after it (the server answers in
    order, so the /synced comes after the message's last reply)."""
    d.client.send(address, *args)
    d.client.send("/sync", 11)
    out = []
    while (m := d.client.receive(30.0)) != ("/synced", [11]):
        out.append(m)
    return out


def test_a_pattern_runs_no_server_command(d):
    """A wildcard address was matched against every literal address, the server's
    commands too: `/graph/*` (a look at the graph) ran /graph/clear and the mix was
    gone, `/*` ran /undo, `/cue/*` /cue/stop, `/midi/*` started a /midi/learn, and
    `/scene/* intro` recalled, stored over and deleted the scene. Patterns now reach
    the server's queries and the nodes' addresses; commands only by their literal
    address."""
    d.call("/graph/add", "gain", "g1", "gain", -10.0)
    d.call("/graph/add", "gain", "g2")
    d.call("/scene/store", "intro", "/node/g1/gain")
    d.call("/node/g1/gain", -20.0)
    for pattern, args in [("/graph/*", ()), ("/*", ()), ("/{undo,redo}", ()),
                          ("/cue/*", ()), ("/midi/*", ()), ("/scene/*", ("intro",)),
                          ("/graph/*", ("g2",)), ("/patch/*", ("p",)), ("//*", ())]:
        got = _replies(d, pattern, *args)
        ran = {m[1][0] for m in got if m[0] == "/done"}
        assert not ran & {"/graph/clear", "/graph/remove", "/graph/add", "/undo", "/redo",
                          "/cue/stop", "/midi/learn", "/scene/recall", "/scene/store",
                          "/scene/delete", "/patch/save", "/patch/load"}, (pattern, got)
    # the queries still answer a pattern
    got = _replies(d, "/graph/*")
    assert {"/graph/dump.reply"} <= {m[0] for m in got}, got
    assert d.status()["nodes"] == 2  # not cleared, g2 not removed
    assert d.call("/node/g1/gain") == [-20.0]  # not recalled, not undone
    assert d.status()["internal_errors"] == 0
    # literal commands still run (and the scene is still there)
    d.call("/scene/recall", "intro")
    d.sync(1)
    assert d.call("/node/g1/gain") == [-10.0]


@pytest.mark.parametrize("pattern,args,copies", [("//*", [], 5400),
                                                 ("/node/*/*", [0.0], 2000)])
def test_a_bundle_of_one_pattern_many_times_is_bounded(d, pattern, args, copies):
    """One 64 kB UDP bundle of the same pattern thousands of times: its matching is
    memoised (free after the first), but before the bundle is applied every message was
    checked against every match (a read-only test, then _check: 60 million checks on
    40 eq8 nodes for 5,400 `//*`), charged to no budget: the control thread was held
    for minutes (still at it after 4 minutes and 26 s of its CPU at load 10, when it
    was killed; another client's /status waited all along). The checks are now
    paid from the host's pattern-work budget, so the bundle is refused after its burst,
    and the read-only test runs once per distinct message."""
    from mixgraph.clients.protocol import encode, encode_bundle

    from daemon_util import control_cpu_s

    for i in range(40):
        d.call("/graph/add", "eq8", f"e{i}")
    pkt = encode_bundle([encode(pattern, args)] * copies)
    assert len(pkt) < 65507
    cpu0 = control_cpu_s(d.proc.pid)
    with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as c:
        c.send_packet(pkt)
        c.send("/sync", 5)
        replies = []
        while (m := c.receive(600.0)) != ("/synced", [5]):
            replies.append(m)
    spent = control_cpu_s(d.proc.pid) - cpu0
    # refused whole: nothing applied, nothing answered but /fail (what a loaded host's
    # TCP reader lets through of the 5,400 /fail replies; all of them on a quiet one)
    assert {a for a, _ in replies} <= {"/fail"}, replies[:3]
    assert not replies or any("too much work from patterns" in str(r) for _, r in replies)
    # the budget's burst is 1 s of the control thread's CPU: a generous bound, in CPU
    # time, which a slow or loaded host spends the same way
    assert spent < 15.0, spent
    assert d.status()["internal_errors"] == 0
