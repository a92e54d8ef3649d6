"""A chain of auto-continue cues with no waits (attack2 F8): GO fires it to the end
as a loop, not a recursion, and what it journals grows with the chain's length, not
with its square.

It used to fire each next cue from inside the one before (_at ran a due callback
at once): 400 cues answered `/fail ... maximum recursion depth exceeded` with the
chain half-fired and the playhead mid-chain; and every cue journaled the whole cue
list with the playhead."""

from __future__ import annotations

import signal
import time

import pytest

from mixgraph.clients.client import MixgraphFail
from mixgraph.server.engine import Engine
from mixgraph.server.journal import Journal, read_journal
from mixgraph.server.osc import Dispatcher
from mixgraph.server.scenes import show_of
from mixgraph.server.session import Session

from daemon_util import Daemon


def _chain(n: int) -> str:
    """n auto-continue cues, no waits, each setting g's gain (cue k: -(k % 60))."""
    return "\n".join(f'{k + 1} name c{k + 1} continue auto-continue '
                     f'osc "/node/g/gain {-(k % 60)}"' for k in range(n)) + "\n"


def test_go_runs_a_2000_cue_chain_to_the_end_and_survives_sigkill(tmp_path):
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        (state / "chain.txt").write_text(_chain(2000))
        assert d.call("/cue/load", "chain.txt") == ["/cue/load", "chain.txt", 2000]
        assert d.call("/cue/go") == ["/cue/go", "1", "c1"]
        # a chain longer than the daemon's slice (server/cues.py, CHAIN_SLICE_S) goes
        # on after the /done, between other commands: wait for its end
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            addr, args = d.request("/cue/list")
            while addr != "/done":
                addr, args = d.client.receive(timeout=30.0)
            if args[2] == "" and d.call("/node/g/gain") == [-(1999 % 60)]:
                break
            time.sleep(0.05)
        d.sync(1)
        assert d.call("/node/g/gain") == [-(1999 % 60)]  # the last cue's value
        addr, args = d.request("/cue/list")
        while addr != "/done":
            addr, args = d.client.receive(timeout=30.0)
        assert args == ["/cue/list", 2000, ""]  # the playhead past the end
        with pytest.raises(MixgraphFail, match="no cue at the playhead"):
            d.call("/cue/go")
        d.call("/cue/standby", 1500)
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        assert d.call("/node/g/gain") == [-(1999 % 60)]
        assert d.call("/cue/go") == ["/cue/go", "1500", "c1500"]  # the standby came back
        assert d.output().count("Traceback") == 0
    finally:
        d.stop()


def _journaled_go(tmp_path, n: int) -> tuple[int, list]:
    """Bytes one GO of an n-cue chain journals, and the ops it journaled."""
    state = tmp_path / f"j{n}"
    state.mkdir()
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "offline", "block": 64})
    try:
        s.add_node("gain", "g")
        s.commit()
        engine.process(128)
        show_of(s).cues.load_text(_chain(n))
        s.journal = Journal(state, 0, fsync_ms=0)
        s.journal.flush()
        size0 = sum(p.stat().st_size for p in state.glob("journal.*.mgj"))
        out: list = []
        d.dispatch("/cue/go", [], lambda a, r: out.append((a, r)))
        assert out[-1] == ("/done", ["/cue/go", "1", "c1"]), out[-1]
        s.journal.flush()
        size = sum(p.stat().st_size for p in state.glob("journal.*.mgj")) - size0
        ops, _, notes = read_journal(state, 0)
        assert not notes
        s.journal.close()
        s.journal = None
        return size, ops
    finally:
        s.close()
        engine.free()


def test_what_a_chain_journals_grows_linearly(tmp_path):
    """A GO of 240 chained cues journals at most 6x what one of 60 does (the same
    per cue: 4x; the whole cue list per cue, as before: about 16x), and the playhead
    ends past the end of the list."""
    small, _ = _journaled_go(tmp_path, 60)
    big, ops = _journaled_go(tmp_path, 240)
    assert big <= 6 * small, (small, big)
    heads = [op for op in ops if op[0] == "cue_playhead"]
    assert heads and heads[-1] == ["cue_playhead", None]
