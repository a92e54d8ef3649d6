"""Holes found by the tenth attack run: MIDI presses on whole-graph addresses, cue
actions, meter unsubscribes, /history's print, TCP framing, and hand-edited state.
In process where the defect's mark is a count, not a time."""

from __future__ import annotations

import pytest

from mixgraph.server.budget import HostBudget
from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.session import Session


@pytest.fixture
def rig():
    """An in-process session and dispatcher on the null clock; say() returns the last
    reply."""
    e = Engine(48000, 2, 2)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    out: list = []

    def say(*m):
        d.dispatch(m[0], list(m[1:]), lambda a, r: out.append((a, r)))
        return out[-1]
    e.null_start(64)
    try:
        yield d, say
    finally:
        e.null_stop()
        s.close()
        e.free()


class _FakeMidiIn:
    """python-rtmidi's MidiIn as the control thread polls it (get_message)."""

    def __init__(self, msgs: list[list[int]]) -> None:
        self.q = list(msgs)

    def get_message(self):
        return (self.q.pop(0), 0.0) if self.q else None


class _FakeMidiOut:
    def send_message(self, _m) -> None:
        pass


# ---- 1. MIDI presses on whole-graph addresses were charged to no budget --------------
@pytest.mark.parametrize("kind", ["note", "pc"])
def test_midi_presses_on_whole_graph_addresses_spend_the_midi_budget(rig, kind):
    """A note or program change mapped to /scene/recall (or /cue/go, /patch/load) is a
    press: each is dispatched, and whole-graph work from MIDI was charged to no host,
    so a controller's pads (or a stuck sequencer) could drive the control thread
    without bound while a network host doing the same was refused. It is now charged
    to the "midi" host's budget (here shrunk to 20 ms so the test is short: presses go
    on until one is refused, up to a cap a fast host cannot reach unrefused)."""
    d, say = rig
    for i in range(8):
        say("/graph/add", "eq8", f"e{i}")
    assert say("/scene/store", "a")[0] == "/done"
    if kind == "note":
        assert say("/midi/map", "/scene/recall", "note", 1, 36, "args", "a")[0] == "/done"
        press = [[0x90, 36, 100], [0x80, 36, 0]]
    else:
        assert say("/midi/map", "/scene/recall", "pc", 1, 0, "args", "a")[0] == "/done"
        press = [[0xC0, 3]]
    d._graph_budget = HostBudget(0.02, 0.001)
    d.midi._ensure()
    fails: list = []
    real = d.midi._reply

    def spy(address, args):
        if address == "/fail":
            fails.append(args)
        real(address, args)
    d.midi._reply = spy
    sent = 0
    while not fails and sent < 5_000:
        d.midi._alsa = (_FakeMidiIn(press * 50), _FakeMidiOut())
        d.midi.service()
        sent += 50
    assert fails, f"{sent} presses on /scene/recall, none refused"
    assert "whole-graph work" in str(fails[0])
    # a network host's budget is its own: the operator's recall still goes through
    assert say("/scene/recall", "a")[0] == "/done"
