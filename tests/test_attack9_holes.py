"""Holes found by the ninth attack run: hostile arguments on every address, MIDI maps
to whole-graph addresses, state-directory races, undo across a patch load, and the
HTTP/WebSocket surface. In process where the defect's mark is a count, not a time."""

from __future__ import annotations

import pytest

from mixgraph.server.osc import Dispatcher

from daemon_util import FakeMidiIn, FakeMidiOut


def _play(d: Dispatcher, msgs: list[list[int]]) -> list[tuple[str, list]]:
    """Feed raw MIDI messages through the control thread's MIDI path (the ALSA
    sequencer's, python-rtmidi) in one service call; the addresses it dispatched."""
    d.midi._ensure()
    d.midi._alsa = (FakeMidiIn(msgs), FakeMidiOut())
    sent: list[tuple[str, list]] = []
    real = d.dispatch

    def spy(address, args, reply, time_=0, client=None):
        sent.append((address, list(args)))
        return real(address, args, reply, time_, client)
    d.dispatch = spy
    try:
        d.midi.service()
    finally:
        d.dispatch = real
    return sent


# ---- 1. a fader mapped to /scene/morph dispatched every CC ---------------------------
def test_a_midi_fader_on_scene_morph_morphs_once_per_drain_at_its_last_position(dispatch_rig):
    """docs/protocol.md suggests a fader mapped to `/scene/morph` (args "a b") as a
    crossfader. Every CC of it was dispatched as a morph of every stored value: 300
    CCs (two sweeps of one fader) between two scenes of 100 eq8 held the control
    thread 127 s (10.25 s of its CPU) on this host, every other client waiting. A
    positional control now dispatches its latest position once per drain; presses
    (notes, program changes) still each dispatch."""
    d, say = dispatch_rig
    for i in range(20):
        say("/graph/add", "eq8", f"e{i}")
    assert say("/scene/store", "a")[0] == "/done"
    for i in range(20):
        say(f"/node/e{i}/b1gain", 6.0)
    assert say("/scene/store", "b")[0] == "/done"
    assert say("/midi/map", "/scene/morph", "cc", 1, 7, "args", "a b")[0] == "/done"
    assert say("/midi/map", "/cue/stop", "note", 1, 36)[0] == "/done"  # trigger
    moves = [[0xB0, 7, k % 128] for k in range(300)]
    presses = [[0x90, 36, 100], [0x80, 36, 0]] * 3
    sent = _play(d, moves[:150] + presses + moves[150:])
    morphs = [a for a in sent if a[0] == "/scene/morph"]
    assert len(morphs) == 1, len(morphs)
    assert morphs[0][1][:2] == ["a", "b"]
    assert morphs[0][1][2] == pytest.approx(299 % 128 / 127, abs=1e-6)
    assert sum(1 for a in sent if a[0] == "/cue/stop") == 3  # each press
    # the morph did what the last position says: b1gain 43/127 of the way to +6 dB
    assert say("/node/e0/b1gain")[1][0] == pytest.approx(6.0 * 43 / 127, abs=1e-3)


# ---- 2. a GO of a long chain of scene recalls held the control thread ---------------
def test_a_long_cue_chain_runs_in_parts_between_other_commands(dispatch_rig, monkeypatch):
    """A chain of auto-continue cues with no waits ran to its end inside the /cue/go
    that fired it: 300 chained recalls of a 100-eq8 scene (4,700 values each) held
    the daemon's control thread 30.6 s, another client's /status waiting 31.0 s
    (/tmp/a9/cue_chain_d.py 300; after: /done in 0.2 s, the other /status at most
    336 ms while the chain went on). Past cues.CHAIN_SLICE_S (the daemon's 50 ms) the
    rest of a chain waits for the next block. With a slice of 0 each part is one
    callback, so the parts are counted here, not timed; the chain still ends where
    it did, every cue in order."""
    import time

    from mixgraph.server import cues

    monkeypatch.setattr(cues, "CHAIN_SLICE_S", 0.0, raising=False)
    d, say = dispatch_rig
    for i in range(4):
        say("/graph/add", "gain", f"g{i}")
    for k in range(1, 41):
        assert say("/cue/set", k, "continue", "auto-continue", "osc",
                   f"/node/g0/gain {-k}")[0] == "/done"
    assert say("/cue/go", 1)[0] == "/done"
    # not the whole chain inside the GO: the other commands get their turn
    assert say("/node/g0/gain")[1][0] > -40.0
    assert say("/status")[0] == "/status.reply"
    s = d.session
    deadline = time.monotonic() + 120.0
    parts = 0
    while say("/node/g0/gain")[1][0] != -40.0 and time.monotonic() < deadline:
        t = s.engine.time
        while s.engine.time == t and time.monotonic() < deadline:
            time.sleep(0.001)
        s.service()
        parts += 1
    assert say("/node/g0/gain")[1][0] == -40.0  # the last cue's action, in the end
    assert parts >= 2
    out = say("/cue/list")
    assert out == ("/done", ["/cue/list", 40, ""])  # the playhead past the end


def test_a_chain_runs_whole_at_once_offline():
    """Without a slice (offline renders, in-process sessions: the default) a chain
    still runs to its end inside its GO, as it always has."""
    from mixgraph.server import cues

    assert cues.CHAIN_SLICE_S is None
