"""Holes found by the eleventh attack run, against a real daemon (null backend) over
real sockets, driven as a mixing engineer's console or a script would."""

from __future__ import annotations

import pytest

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
