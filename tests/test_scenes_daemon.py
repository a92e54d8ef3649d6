"""Scenes, safes and cues over real UDP against a real daemon (null backend),
and the show surviving SIGKILL."""

from __future__ import annotations

import signal
import time

import pytest

from mixgraph.clients.client import MixgraphFail

from daemon_util import Daemon, wait_autosaved


def values(d: Daemon, names: list[str]) -> dict:
    out = {}
    for n in names:
        for p in ("gain", "mute", "polarity"):
            out[(n, p)] = d.request(f"/node/{n}/{p}")[1][0]
    return out


def drain(d: Daemon, first: tuple, end: str) -> list:
    """The replies of a list request up to its /done."""
    got = [first]
    while got[-1][0] != "/done":
        got.append(d.client.receive(timeout=30.0))
    assert got[-1][1][0] == end
    return got


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        for n in ("vox1", "vox2", "gtr"):
            d.call("/graph/add", "gain", n)
        yield d
    finally:
        d.stop()


def test_round_trip_scope_and_safes(daemon):
    d = daemon
    names = ["vox1", "vox2", "gtr"]
    d.call("/node/vox1/gain", -5.0)
    d.call("/node/vox2/mute", 1)
    d.call("/node/gtr/gain", 3.0)
    before = values(d, names)
    assert d.call("/scene/store", "all") == ["/scene/store", "all", 12]  # 3 x 4 params
    assert d.call("/scene/store", "vox", "/node/vox*/gain") == ["/scene/store", "vox", 2]
    d.call("/node/vox1/gain", -30.0)
    d.call("/node/vox2/mute", 0)
    d.call("/node/vox2/polarity", 1)
    d.call("/node/gtr/gain", -12.0)
    assert d.call("/scene/recall", "all") == ["/scene/recall", "all"]
    assert values(d, names) == before
    # scope: only the vox faders move
    d.call("/node/vox1/gain", -40.0)
    d.call("/node/gtr/gain", -40.0)
    d.call("/node/vox2/mute", 1)
    d.call("/scene/recall", "vox")
    got = values(d, names)
    assert got[("vox1", "gain")] == -5.0 and got[("gtr", "gain")] == -40.0
    assert got[("vox2", "mute")] == 1.0
    # safes: a whole node, then removed again
    assert d.call("/scene/safe", "/node/gtr/*", 1) == ["/scene/safe", "/node/gtr/*", 1]
    addr, args = d.request("/scene/safe")
    assert drain(d, (addr, args), "/scene/safe") == [("/scene/safe.reply", ["/node/gtr/*"]),
                                                     ("/done", ["/scene/safe", 1])]
    d.call("/scene/recall", "all")
    got = values(d, names)
    assert got[("gtr", "gain")] == -40.0 and got[("vox1", "gain")] == -5.0
    d.call("/scene/safe", "/node/gtr/*", 0)
    d.call("/scene/recall", "all")
    assert values(d, names) == before
    # list, fade, rename, delete
    d.call("/scene/fade", "vox", 2.5)
    addr, args = d.request("/scene/list")
    rows = drain(d, (addr, args), "/scene/list")
    assert rows[:-1] == [("/scene/list.reply", ["all", 12, 0.0]),
                         ("/scene/list.reply", ["vox", 2, 2.5])]
    d.call("/scene/rename", "vox", "singers")
    d.call("/scene/delete", "all")
    addr, args = d.request("/scene/list")
    assert drain(d, (addr, args), "/scene/list")[:-1] == [
        ("/scene/list.reply", ["singers", 2, 2.5])]


def test_missing_node_is_skipped_and_reported(daemon):
    d = daemon
    d.call("/scene/store", "s")
    d.call("/graph/remove", "gtr")
    d.call("/node/vox1/gain", -9.0)
    r = d.call("/scene/recall", "s")
    assert r[:2] == ["/scene/recall", "s"] and "/node/gtr/gain" in r[2]
    assert d.request("/node/vox1/gain")[1] == [0.0]


def test_bad_input_fails_and_changes_nothing(daemon):
    d = daemon
    d.call("/scene/store", "a")
    d.call("/cue/set", 1, "name", "one")
    bad = [("/scene/recall", "nope"), ("/scene/recall", "a", -1.0),
           ("/scene/recall", "a", float("nan")), ("/scene/recall", "a", 4000.0),
           ("/scene/morph", "a", "a", 1.5), ("/scene/store", "b", "/node/zz*/gain"),
           ("/scene/safe", "/node/nothing/*", 1), ("/cue/standby", 7),
           ("/cue/set", 2, "postwait", float("inf")), ("/cue/set", 2, "scene", "nope"),
           ("/cue/load", "missing.txt"), ("/node/vox1/gain/ramp", 0.0, -2.0)]
    before = values(d, ["vox1", "vox2", "gtr"])
    for msg in bad:
        with pytest.raises(MixgraphFail):
            d.call(*msg)
    assert values(d, ["vox1", "vox2", "gtr"]) == before
    addr, args = d.request("/cue/list")
    assert drain(d, (addr, args), "/cue/list")[-1] == ("/done", ["/cue/list", 1, "1"])


def test_cue_file_syntax_error_names_line(daemon, tmp_path):
    d = daemon
    (tmp_path / "state" / "show.txt").write_text(
        "1 name one\n# fine\n2 name two prewait -3\n")
    with pytest.raises(MixgraphFail, match="line 3"):
        d.call("/cue/load", "show.txt")
    (tmp_path / "state" / "show.txt").write_text('1 name "unclosed\n')
    with pytest.raises(MixgraphFail, match="line 1"):
        d.call("/cue/load", "show.txt")
    (tmp_path / "state" / "show.txt").write_text(
        '1 name "Top" osc "/node/vox1/gain -6"\n2 name Next continue auto-follow\n')
    assert d.call("/cue/load", "show.txt") == ["/cue/load", "show.txt", 2]


def test_sigkill_during_running_cue_restores_show(tmp_path):
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/node/g/gain", -30.0)
        d.call("/scene/store", "quiet")
        d.call("/node/g/gain", 0.0)
        d.call("/scene/store", "loud")
        d.call("/scene/fade", "quiet", 20.0)
        d.call("/scene/safe", "/node/g/mute", 1)
        d.call("/cue/set", 1, "name", "Open", "scene", "loud")
        d.call("/cue/set", 2, "name", "Fade down", "scene", "quiet", "prewait", 0.5)
        d.call("/cue/set", 3, "name", "End", "osc", "/node/g/gain -60")
        d.call("/cue/go")
        assert d.call("/cue/go") == ["/cue/go", "2", "Fade down"]  # a 20 s fade under way
        time.sleep(1.0)  # past cue 2's prewait
        wait_autosaved(state)  # and its snapshot, however late a loaded host writes it
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        addr, args = d.request("/scene/list")
        assert drain(d, (addr, args), "/scene/list")[:-1] == [
            ("/scene/list.reply", ["quiet", 1 + 3, 20.0]),
            ("/scene/list.reply", ["loud", 4, 0.0])]
        addr, args = d.request("/cue/list")
        rows = drain(d, (addr, args), "/cue/list")
        assert [r[1][0] for r in rows[:-1]] == ["1", "2", "3"]
        assert rows[-1] == ("/done", ["/cue/list", 3, "3"])  # the playhead on cue 3
        addr, args = d.request("/scene/safe")
        assert drain(d, (addr, args), "/scene/safe")[0] == ("/scene/safe.reply",
                                                            ["/node/g/mute"])
        assert d.call("/cue/go") == ["/cue/go", "3", "End"]
    finally:
        d.stop()


def test_go_on_a_typed_cue_number_and_the_end_of_the_list(tmp_path):
    """/cue/go 3 fires cue 3 (not the cue at the playhead) or fails; a playhead past
    the last cue stays there over a restart (a show does not start over by itself)."""
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/cue/set", 1, "name", "Open", "osc", "/node/g/gain -10")
        d.call("/cue/set", 2, "name", "Mid", "osc", "/node/g/gain -20")
        d.call("/cue/set", 3, "name", "End", "osc", "/node/g/gain -30")
        with pytest.raises(MixgraphFail, match="no cue 7"):
            d.call("/cue/go", 7)
        assert d.call("/cue/go", 2) == ["/cue/go", "2", "Mid"]
        d.sync(1)
        assert d.call("/node/g/gain") == [-20.0]
        assert d.call("/cue/go") == ["/cue/go", "3", "End"]
        with pytest.raises(MixgraphFail, match="no cue at the playhead"):
            d.call("/cue/go")
        d.call("/cue/set", 4, "name", "Encore")  # added past the end: the playhead stays
        with pytest.raises(MixgraphFail, match="no cue at the playhead"):
            d.call("/cue/go")
        d.call("/patch/save", "show")
    finally:
        d.stop()
    d = Daemon(state, "--backend", "null")
    try:
        with pytest.raises(MixgraphFail, match="no cue at the playhead"):
            d.call("/cue/go")
        assert d.call("/cue/go", 1) == ["/cue/go", "1", "Open"]
        d.call("/patch/load", "show")  # the document's playhead: past the end
        with pytest.raises(MixgraphFail, match="no cue at the playhead"):
            d.call("/cue/go")
    finally:
        d.stop()


def test_client_helpers(daemon):
    c = daemon.client
    assert c.scene_store("a", "/node/vox1/*") == 4  # gain, mute, polarity, bypass
    c.set("vox1", "gain", -12.0)
    assert c.ramp("vox1", "gain", -6.0, 0.25, "scurve") == [-6.0, 0.25, "scurve"]
    assert c.get("vox1", "gain") == -6.0
    c.scene_fade("a", 0.125)
    assert c.scene_recall("a") is None
    assert c.scene_list() == [["a", 4, 0.125]]
    c.scene_store("b", "/node/vox1/gain")
    c.scene_safe("/node/vox2/*")
    assert c.safes() == ["/node/vox2/*"]
    assert c.cue_set(1, name="One", scene="a", continue_="none",
                     osc=["/node/vox2/gain -3"]) == "1 name One scene a osc '/node/vox2/gain -3'"
    assert c.cue_list() == [["1", "1 name One scene a osc '/node/vox2/gain -3'"]]
    assert c.cue_go() == ["1", "One"]
    c.sync()
    assert c.get("vox2", "gain") == 0.0  # the cue's OSC action: vox2 is recall safe
    c.scene_safe("/node/vox2/*", False)
    c.cue_standby(1)
    c.cue_go()
    c.sync()
    assert c.get("vox2", "gain") == -3.0
    assert c.cue_standby(1) == ["1", "One"]


def test_subscribers_get_playhead_running_and_moved_values(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    watcher = None
    try:
        from mixgraph.clients import Client

        d.call("/graph/add", "gain", "g")
        d.call("/scene/store", "a")
        d.call("/node/g/gain", -6.0)
        d.call("/cue/set", 1, "name", "Open", "scene", "a", "fade", 0.2)
        d.call("/cue/set", 2, "name", "Next")
        got: list = []
        watcher = Client("127.0.0.1", d.port, timeout=30.0)
        watcher.subscribe(lambda a, args: got.append((a, list(args))))
        d.call("/cue/go")
        deadline = time.monotonic() + 30
        while ("/cue/running", ["1", 0]) not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ("/cue/playhead", ["2", "Next"]) in got
        assert ("/cue/running", ["1", 1]) in got and ("/cue/running", ["1", 0]) in got
        assert ("/node/g/gain", [0.0]) in got  # the recall's moved value
    finally:
        if watcher is not None:
            watcher.close()
        d.stop()
