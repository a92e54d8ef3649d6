"""Undo and redo (issue 14 item 5): a real daemon over real UDP, and offline renders.

Each kind of step is undone and redone and the patch document (/graph/dump,
order included) compared with the one before / after the step; gestures,
the depth bound, redo cleared by a new step, bad input, the journal (SIGKILL
right after an undo) and feedback. Two renders: an undone remove is
click-free, and the 0.5 s burst rule on the sample clock."""

from __future__ import annotations

import math
import signal
import time

import msgpack
import numpy as np
import pytest
import soundfile as sf

from mixgraph.clients import Client, MixgraphFail
from mixgraph.clients.protocol import encode
from mixgraph.server.journal import read_journal
from mixgraph.server.render import render
from mixgraph.server.state import write_patch

from daemon_util import Daemon, wait_autosaved

RATE = 48000


@pytest.fixture
def d(tmp_path):
    dm = Daemon(tmp_path / "state", "--backend", "null")
    try:
        yield dm
    finally:
        dm.stop()
    assert "Traceback" not in dm.output()


def rig(c: Client) -> None:
    """noise and sine through faders, an eq and a VCA into one output."""
    c.add("noise", "nz", channels=1, level=-30.0)
    c.add("sine", "osc", channels=1, freq=220.0, level=-12.0)
    c.add("gain", "g1", channels=1, gain=-3.0)
    c.add("gain", "g2", channels=1, gain=-6.0)
    c.add("eq", "q", channels=1, b1freq=2000.0, b1gain=4.0)
    c.add("output", "out", channels=1)
    for a, b in (("osc", "g1"), ("g1", "q"), ("q", "out"), ("nz", "g2"), ("g2", "out")):
        c.connect(a, b)
    c.add("vca", "v", members="g1,g2", level=-2.0)


def canon(doc: dict) -> dict:
    """A document with its nodes and connections in name order."""
    return {**doc, "nodes": sorted(doc["nodes"], key=lambda n: n["name"]),
            "connections": sorted(doc["connections"])}


def undo_redo(c: Client, step) -> tuple[dict, dict]:
    """Do a step; check undo restores the document before it exactly and redo the
    one after it; leave the step done. Returns (before, after)."""
    before = c.dump()
    step()
    after = c.dump()
    assert after != before
    c.undo()
    assert c.dump() == before
    c.redo()
    assert c.dump() == after
    return before, after


def test_every_kind_of_step_undoes_and_redoes_exactly(d):
    c = d.client
    rig(c)
    undo_redo(c, lambda: c.add("gain", "g3", channels=1, gain=-9.0))
    undo_redo(c, lambda: c.connect("g3", "out"))
    undo_redo(c, lambda: c.disconnect("g1", "q"))
    undo_redo(c, lambda: c.connect("g1", "q"))  # made again: now the last connection
    undo_redo(c, lambda: c.set("q", "b1gain", -2.5))
    undo_redo(c, lambda: c.set_norm("g2", "gain", 0.3))
    undo_redo(c, lambda: c.set("v", "level", -8.0))  # the members' offsets follow
    undo_redo(c, lambda: c.bypass("q", True))
    undo_redo(c, lambda: c.call("/node/g*/gain", -4.5))  # a pattern: one step
    # a node with connections on both sides, parameters, bypass on, mid-graph
    undo_redo(c, lambda: c.remove("q"))
    c.undo()
    assert c.get("q", "b1gain") == -2.5 and c.call("/node/q/bypass") == [1.0]
    undo_redo(c, lambda: c.remove("g2"))  # a VCA member
    c.undo()
    undo_redo(c, lambda: c.clear())
    c.undo()
    # a bundle is one step, whatever it holds
    before = c.dump()
    pkt = b"#bundle\0" + b"\0\0\0\0\0\0\0\1"
    for m in (encode("/graph/add", ["gain", "g4", "channels", 1]),
              encode("/graph/connect", ["osc", "g4"]), encode("/node/g1/gain", [-1.0])):
        pkt += len(m).to_bytes(4, "big") + m
    c.send_packet(pkt)
    deadline = time.monotonic() + 30
    while "g4" not in {n["name"] for n in c.dump()["nodes"]} and time.monotonic() < deadline:
        time.sleep(0.05)
    after = c.dump()
    assert [n["params"]["gain"] for n in after["nodes"] if n["name"] in ("g1", "g4")] == [
        -1.0, 0.0]
    assert c.undo() == ["bundle: /graph/add, /graph/connect, /node/g1/gain"]
    assert c.dump() == before
    c.redo()
    assert c.dump() == after
    h = c.history(30)
    assert h["undo"][0] == ("bundle: /graph/add, /graph/connect, /node/g1/gain",
                            "1 values; added g4; connected osc:out -> g4:in")
    assert h["redo"] == []


def test_patch_load_starts_a_new_history_and_is_undoable(d):
    c = d.client
    rig(c)
    c.patch_save("a")
    a = c.dump()
    c.remove("nz")
    c.set("g1", "gain", -20.0)
    c.patch_save("b")  # keeps the history
    assert len(c.history()["undo"]) == 14
    b = c.dump()
    c.patch_load("a")
    loaded = c.dump()
    assert canon(loaded) == canon(a)  # a load appends what it makes (its order is its own)
    h = c.history()
    assert [x[0] for x in h["undo"]] == ["/patch/load a"] and h["redo"] == []
    c.undo()
    assert c.dump() == b
    c.redo()
    assert c.dump() == loaded
    with pytest.raises(MixgraphFail, match="only 1 step to undo"):
        c.undo(2)


def test_learned_state_comes_back_with_the_node(d):
    c = d.client
    c.add("noise", "nz", channels=1, level=-30.0)
    c.add("denoise", "dn", channels=1)
    c.add("output", "out", channels=1)
    c.connect("nz", "dn")
    c.connect("dn", "out")
    c.action("dn", "learn", 0.5)
    before = c.dump()
    state = [n.get("state") for n in before["nodes"] if n["name"] == "dn"][0]
    assert state and len(state) > 100
    c.remove("dn")
    c.undo()
    assert c.dump() == before  # state, parameters (track 0 after the learn), connections
    # the undo is journaled: the node, its state and the graph's order
    ops = [op for op in read_journal(d.state_dir, 0)[0] if op[1:2] == ["dn"]
           or op[0] == "order"]
    assert [op[0] for op in ops][-3:] == ["add", "state", "order"], [o[0] for o in ops]
    assert ops[-2][2] == state
    # a SIGKILL now loses none of it
    d.stop(signal.SIGKILL)
    d2 = Daemon(d.state_dir, "--backend", "null")
    try:
        assert d2.client.dump() == before
    finally:
        d2.stop()


def test_touch_bracket_is_one_step_however_slow(d):
    c = d.client
    rig(c)
    n = len(c.history(100)["undo"])
    c.touch("g1", "gain", True)
    for v in (-4.0, -5.0, -6.0):
        c.set("g1", "gain", v)
        time.sleep(0.7)  # longer than a burst: the touch holds the gesture together
    c.touch("g1", "gain", False)
    c.set("g1", "gain", -7.0)  # after the release: a step of its own
    h = c.history(100)["undo"]
    assert len(h) == n + 2
    assert h[1] == ("/node/g1/gain", "g1/gain -3 -> -6 (3 changes)")
    assert h[0] == ("/node/g1/gain", "g1/gain -6 -> -7")
    c.undo()
    assert c.get("g1", "gain") == -6.0
    c.undo()
    assert c.get("g1", "gain") == -3.0


def test_a_burst_is_one_step_and_a_pause_starts_another(d):
    c = d.client
    rig(c)
    n = len(c.history(100)["undo"])
    # back to back: well within 0.5 s. Sent without waiting for each /done (a round
    # trip on a loaded host can take longer than 0.5 s by itself, which split the
    # burst), then /sync: applied, each a message of its own
    for v in (-4.0, -5.0, -6.0, -7.0):
        c.send("/node/g1/gain", v)
    assert c.request("/sync", 1) == ("/synced", [1])
    time.sleep(1.5)  # well over 0.5 s
    c.set("g1", "gain", -8.0)
    # two clients moving two faders at once: a gesture each (sent as above)
    with Client("127.0.0.1", d.port, timeout=30.0) as c2:
        for v in (-1.0, -2.0, -3.0):
            c.send("/node/g2/gain", v)
            c2.send("/node/q/b1gain", v)
        assert c.request("/sync", 2) == ("/synced", [2])
        assert c2.request("/sync", 3) == ("/synced", [3])
    h = c.history(100)["undo"]
    assert len(h) == n + 4, h[:5]
    assert {h[0][1], h[1][1]} == {"g2/gain -6 -> -3 (3 changes)", "q/b1gain 4 -> -3 (3 changes)"}
    assert h[2][1] == "g1/gain -7 -> -8" and h[3][1] == "g1/gain -3 -> -7 (4 changes)"
    c.undo(3)
    assert (c.get("g1", "gain"), c.get("g2", "gain"), c.get("q", "b1gain")) == (-7.0, -6.0, 4.0)
    c.undo()
    assert c.get("g1", "gain") == -3.0


def test_a_new_step_clears_redo(d):
    c = d.client
    rig(c)
    c.set("g1", "gain", -10.0)
    c.undo()
    assert len(c.history()["redo"]) == 1
    c.bypass("q", True)
    assert c.history()["redo"] == []
    with pytest.raises(MixgraphFail, match="nothing to redo"):
        c.redo()


def test_depth_is_bounded(d):
    c = d.client
    c.add("gain", "ga", channels=1)
    c.add("gain", "gb", channels=1)
    for i in range(300):  # a pattern set is a step of its own (not a gesture)
        c.call("/node/g?/gain", -0.1 * (i + 1))
    h = c.history(256)
    assert len(h["undo"]) == 256
    assert c.call("/history", 1)[:2] == [256, 0]
    r = c.call("/undo", 256)
    assert r[:3] == ["/undo", 256, "/node/g?/gain -30"] and len(r) == 2 + 16  # 16 named
    assert r[3] == "/node/g?/gain -29.9"
    # what step 44 left (300 - 256), to the float32 the server holds
    assert c.get("ga", "gain") == pytest.approx(-4.4, abs=1e-6)
    with pytest.raises(MixgraphFail, match="nothing to undo"):
        c.undo()
    assert len(c.history(256)["redo"]) == 256


def test_bad_input_changes_nothing(d):
    c = d.client
    before = c.dump()
    with pytest.raises(MixgraphFail, match="nothing to undo"):
        c.undo()
    with pytest.raises(MixgraphFail, match="nothing to redo"):
        c.redo()
    rig(c)
    c.set("g1", "gain", -11.0)
    before = c.dump()
    hist = c.history(256)
    for args in (["x"], [0], [-1], [1.5], [float("nan")], [1e9], [257], [1, 2]):
        addr, rargs = c.request("/undo", *args)
        assert addr == "/fail" and rargs[0] == "/undo", (args, rargs)
        addr, rargs = c.request("/redo", *args)
        assert addr == "/fail" and rargs[0] == "/redo", (args, rargs)
    for args in (["x"], [0], [300], [2.5]):
        addr, rargs = c.request("/history", *args)
        assert addr == "/fail", (args, rargs)
    with pytest.raises(MixgraphFail, match="only 13 steps"):
        c.undo(14)
    # /undo in a bundle: the bundle is refused whole
    pkt = b"#bundle\0" + b"\0\0\0\0\0\0\0\1"
    for m in (encode("/node/g2/gain", [-1.0]), encode("/undo", [])):
        pkt += len(m).to_bytes(4, "big") + m
    c.send_packet(pkt)
    got = [c.receive(30.0) for _ in range(2)]
    assert all(a == "/fail" for a, _ in got), got
    assert any("bundle" in str(r[-1]) for _, r in got), got
    assert c.dump() == before and c.history(256) == hist


def test_an_undo_is_journaled(tmp_path):
    """SIGKILL right after undoing a remove: the restart has the node back, in its
    place, with its connections (journal: add, conn, order)."""
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        c = d.client
        rig(c)
        wait_autosaved(state)  # an autosave covers the rig; the rest is in the journal
        before = c.dump()
        c.remove("g1")
        c.undo()
        assert c.dump() == before
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        assert d.client.dump() == before
        # the history belongs to the running server: a restart starts empty
        assert d.client.history() == {"undo": [], "redo": []}
    finally:
        d.stop()


def test_subscribers_hear_what_an_undo_moves(d):
    c = d.client
    rig(c)
    with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as sub:
        seen: list = []
        sub.subscribe(lambda a, args: seen.append((a, args)), lease_s=10.0)
        c.set("g1", "gain", -15.0)
        c.remove("g2")
        time.sleep(0.3)
        seen.clear()
        c.undo(2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ("/node/g1/gain", [-3.0]) not in seen:
            time.sleep(0.05)
        assert ("/node/g1/gain", [-3.0]) in seen
        assert ("/graph/changed", ["add", "g2", "gain"]) in seen
        sub.unsubscribe()


# ---- offline renders ------------------------------------------------------------------
def tone_patch(freq: float) -> dict:
    return {
        "format": "mixgraph-patch", "version": 1, "sample_rate": RATE,
        "nodes": [
            {"name": "osc", "type": "sine", "channels": 1, "options": {},
             "params": {"freq": freq, "level": -6.0}},
            {"name": "g", "type": "gain", "channels": 1, "options": {}, "params": {"gain": 0.0}},
            {"name": "out", "type": "output", "channels": 1, "options": {}, "params": {}},
        ],
        "connections": [["osc:out", "g:in"], ["g:out", "out:in"]],
        "metadata": {},
    }


def rms(y: np.ndarray, a: float, b: float) -> float:
    return float(np.sqrt(np.mean(y[int(a * RATE):int(b * RATE)] ** 2)))


def test_undoing_a_remove_is_click_free(tmp_path):
    """The removed node comes back through the same 5 ms fades as any edit. Bound:
    a sine of amplitude A at f moves at most A*2*pi*f/fs per sample; a linear fade
    over n = 240 samples (5 ms) adds at most A/n; 10 % margin. A cut would step by
    up to A (0.5 here), 50 times the bound: the edits fall off the sine's zero
    crossings (with a one-sample fade this render steps by 0.50)."""
    freq, amp = 110.0, 10 ** (-6 / 20)
    p = tmp_path / "tone.json"
    write_patch(tone_patch(freq), p)
    score = tmp_path / "s.txt"
    score.write_text("0.2023 /graph/remove g\n0.4047 /undo\n0.6011 /redo\n0.8059 /undo\n")
    out = tmp_path / "o.wav"
    res = render(p, out, score=score, duration_s=1.0)
    assert res.failures == []
    y, _ = sf.read(out, dtype="float64")
    bound = 1.1 * amp * (2 * math.pi * freq / RATE + 1 / 240)
    assert np.max(np.abs(np.diff(y))) < bound
    full = amp / math.sqrt(2)
    for a, b, want in ((0.05, 0.2, full), (0.3, 0.4, 0.0), (0.5, 0.6, full),
                       (0.7, 0.8, 0.0), (0.9, 1.0, full)):
        assert rms(y, a, b) == pytest.approx(want, abs=0.01 * full), (a, b)


def test_burst_rule_on_the_sample_clock(tmp_path):
    """Sets 0.2 s apart are one step, one 0.7 s later another; renders group them
    exactly (the audio clock), so the undos land where the score says."""
    p = tmp_path / "tone.json"
    write_patch(tone_patch(1000.0), p)
    score = tmp_path / "s.txt"
    score.write_text("0.1 /node/g/gain -6\n0.3 /node/g/gain -12\n0.5 /node/g/gain -18\n"
                     "1.2 /node/g/gain -24\n1.5 /undo\n1.8 /undo\n")
    out = tmp_path / "o.wav"
    res = render(p, out, score=score, duration_s=2.2)
    assert res.failures == []
    y, _ = sf.read(out, dtype="float64")
    full = rms(y, 0.02, 0.1)
    for a, b, db in ((0.6, 1.2, -18), (1.3, 1.5, -24), (1.6, 1.8, -18), (1.9, 2.2, 0)):
        assert 20 * math.log10(rms(y, a, b) / full) == pytest.approx(db, abs=0.05), (a, b)


def test_record_api_for_scenes_and_cues():
    """record_values and record: the API scenes and cues use, on a bare session."""
    from mixgraph.server.engine import Engine
    from mixgraph.server.osc import Dispatcher
    from mixgraph.server.session import Session

    e = Engine(RATE, 0, 1)
    s = Session(e)
    try:
        d = Dispatcher(s)
        s.add_node("gain", "a", {"channels": 1})
        s.add_node("gain", "b", {"channels": 1})
        h = s.history
        assert len(h.undo_steps) == 0  # not a client command: not a step
        s.set_param("a", "gain", -5.0)
        s.set_param("b", "gain", -7.0)
        h.record_values("scene recall x", [("a", "gain", 0.0, -5.0), ("b", "gain", 0.0, -7.0)])
        log: list = []
        h.record("scene store x", lambda: log.append("undo"), lambda: log.append("redo"))
        out: list = []
        d.dispatch("/history", [], lambda a, r: out.append((a, r)))
        assert out == [("/history.reply", [2, 0, 1, "scene store x", "scene store x",
                                           2, "scene recall x", "2 values"])]
        d.dispatch("/undo", [2], lambda a, r: out.append((a, r)))
        assert log == ["undo"] and s.get_param("a", "gain") == 0.0
        assert s.get_param("b", "gain") == 0.0
        d.dispatch("/redo", [1], lambda a, r: out.append((a, r)))
        assert s.get_param("a", "gain") == -5.0 and log == ["undo"]
        assert msgpack.packb(s.to_doc())
        # a scene's bypass is "bypass" 1/0 in record_values
        s.add_node("output", "o", {"channels": 1})
        s.connect("a", "o")
        s.set_bypass("a", True)
        h.record_values("scene recall y", [("a", "bypass", 0.0, 1.0)])
        d.dispatch("/undo", [], lambda a, r: out.append((a, r)))
        assert "a" not in s.bypassed
        d.dispatch("/redo", [], lambda a, r: out.append((a, r)))
        assert "a" in s.bypassed
        # a morph fader's drag: one step (the label's trailing number is its position)
        n = len(h.undo_steps)
        for x, v in ((0.2, -2.0), (0.4, -4.0), (0.6, -6.0)):
            before = s.get_param("b", "gain")
            s.set_param("b", "gain", v)
            h.record_values(f"scene morph p q {x:g}", [("b", "gain", before, v)])
        assert len(h.undo_steps) == n + 1
        assert h.describe(h.undo_steps[-1]) == ("scene morph p q 0.6",
                                                "b/gain -7 -> -6 (3 changes)")
        h.undo()
        assert s.get_param("b", "gain") == -7.0

        # inside a command (as /scene/recall is): the values the command was seen
        # setting (set_param, a ramp's direct record) are the record's, not twice
        def recall(args, reply, _t, client=None):
            changes = []
            for name, v in (("a", -20.0), ("b", -30.0)):
                before = s.get_param(name, "gain")
                if name == "a":
                    s.set_param(name, "gain", v)
                else:
                    s._record(s.live[name], "gain", v)  # what a ramp does
                changes.append((name, "gain", before, v))
            h.record_values("scene recall z", changes)
            reply("/done", ["/test/recall"])

        d._literal["/test/recall"] = recall
        d.dispatch("/test/recall", [], lambda a, r: out.append((a, r)))
        top = h.undo_steps[-1]
        assert h.describe(top) == ("scene recall z", "2 values") and len(top.ops) == 2
        h.undo()
        assert (s.get_param("a", "gain"), s.get_param("b", "gain")) == (-5.0, -7.0)
        # the bounds: steps and bytes (a 200-value step is estimated at 32 kB)
        h.depth, h.max_bytes = 50, 100_000
        for i in range(80):
            h.record_values(f"scene recall s{i}", [("a", "gain", -1.0 - i, -2.0 - i)] * 200)
        assert h.bytes <= h.max_bytes and len(h.undo_steps) == 3
        assert h.describe(h.undo_steps[-1])[0] == "scene recall s79"
        for _ in range(80):
            h.record("cue edit", lambda: None, lambda: None)
        assert len(h.undo_steps) == 50
    finally:
        s.close()
        e.free()


def test_an_undo_that_cannot_be_done_changes_nothing(d):
    """Undoing the removal of a player whose file has gone since: the node cannot be
    made again, so the undo is refused whole - the graph and the history as before."""
    c = d.client
    audio = d.state_dir / "audio"
    sf.write(audio / "take.wav", np.zeros((4800, 1), dtype="float32"), RATE)
    c.add("player", "pl", path="take.wav")
    c.add("gain", "g", channels=1)
    c.add("output", "out", channels=1)
    c.connect("pl", "g")
    c.connect("g", "out")
    c.remove("pl")
    c.set("g", "gain", -5.0)
    (audio / "take.wav").unlink()
    before, hist = c.dump(), c.history()
    with pytest.raises(MixgraphFail, match="undo failed, nothing changed"):
        c.undo(2)  # the gain is put back first, then the player fails: both stay done
    assert c.dump() == before and c.history() == hist
    assert c.get("g", "gain") == -5.0
