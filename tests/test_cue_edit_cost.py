"""A cue edit journals and keeps for undo the cue it changes, not the cue list
(attack3 A11).

A script building a cue list one /cue/set at a time: every edit journaled the whole
list twice over (the part before, for undo, and after), so each edit cost O(cues):
173 ms an edit at 3,000 cues, 26 MB of journal; building the list was quadratic."""

from __future__ import annotations

import signal

from mixgraph.server.engine import Engine
from mixgraph.server.journal import Journal, read_journal
from mixgraph.server.osc import Dispatcher
from mixgraph.server.scenes import show_of
from mixgraph.server.session import Session

from daemon_util import Daemon


def _journaled_set(tmp_path, n: int) -> int:
    """Bytes one /cue/set journals on a list of n cues."""
    state = tmp_path / f"j{n}"
    state.mkdir()
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "offline", "block": 64})
    try:
        show_of(s).cues.load_text("".join(f"{k} name c{k}\n" for k in range(1, n + 1)))
        s.journal = Journal(state, 0, fsync_ms=0)
        s.journal.flush()
        size0 = sum(p.stat().st_size for p in state.glob("journal.*.mgj"))
        out: list = []
        d.dispatch("/cue/set", [n // 2, "name", "renamed"], lambda a, r: out.append((a, r)))
        assert out[-1][0] == "/done", out
        s.journal.flush()
        size = sum(p.stat().st_size for p in state.glob("journal.*.mgj")) - size0
        assert not read_journal(state, 0)[2]
        s.journal.close()
        s.journal = None
        return size
    finally:
        s.close()
        engine.free()


def test_a_cue_set_journals_the_same_with_10_or_1000_cues(tmp_path):
    small = _journaled_set(tmp_path, 10)
    big = _journaled_set(tmp_path, 1000)
    assert big <= 2 * small, (small, big)  # the whole list: about 100x


def test_cue_edits_undo_and_survive_sigkill(tmp_path):
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        (state / "show.txt").write_text("1 name A\n2 name B\n3 name C\n")
        d.call("/cue/load", "show.txt")
        d.call("/cue/set", 2, "name", "B2")
        d.call("/cue/set", 4, "name", "D")
        d.call("/cue/delete", 1)
        d.call("/cue/standby", 3)
        d.call("/undo")  # the delete: cue 1 back, the others as they are
        assert [r[1] for r in d.client.cue_list()] == ["1 name A", "2 name B2", "3 name C",
                                                        "4 name D"]
        d.call("/undo")  # cue 4 added: gone
        d.call("/redo")
        d.call("/cue/set", 3, "name", "C2")
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        assert [r[1] for r in d.client.cue_list()] == ["1 name A", "2 name B2", "3 name C2",
                                                        "4 name D"]
    finally:
        d.stop()
