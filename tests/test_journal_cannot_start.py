"""The server starts when its journal cannot start a segment (attack3 A8).

A full disk at start-up (after a crash or a power cut on a rig whose disk filled up)
made `Journal()` raise from writing the segment's first bytes: serve ended in a
traceback, and under systemd it restarted into the same traceback, the show never
coming back until someone freed the disk. Now the server starts with the show, keeps
the journal's records in memory (logged), answers each edit `/fail ... applied but
not journaled` until then, and writes them once it can.

The test puts a directory where the first segment goes (os.open fails as it does on
a full disk, without needing root to mount a small filesystem); the in-process test
makes the segment's first write fail with ENOSPC."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from mixgraph.clients import MixgraphFail
from mixgraph.server import journal as jmod
from mixgraph.server.journal import Journal, read_journal, segment_path

from daemon_util import Daemon


def test_serve_starts_and_journals_once_the_segment_can_be_made(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    blocker = segment_path(state, 1)
    blocker.mkdir()  # where journal.0000000000000001.mgj goes
    d = Daemon(state, "--backend", "null")
    try:
        assert "cannot start a segment" in d.output()
        # applied, but the reply says it is not yet durable (durability first)
        with pytest.raises(MixgraphFail, match="applied but not journaled"):
            d.call("/graph/add", "gain", "a")
        blocker.rmdir()  # the disk has room again
        d.call("/graph/add", "gain", "b")  # its flush writes both records
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        assert sorted(r[0] for r in d.client.collect("/graph/nodes")) == ["a", "b"]
    finally:
        d.stop()


def test_a_full_disk_at_the_first_segment_keeps_records_for_later(tmp_path, monkeypatch):
    real = os.write
    full = [True]

    def write(fd, data):
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(jmod.os, "write", write)
    j = Journal(tmp_path, 0, fsync_ms=0)
    j.add(("set", "g", "gain", -6.0))
    j.flush()  # fails: kept
    assert j.errors >= 2
    full[0] = False
    j.add(("set", "g", "gain", -7.0))
    j.flush()
    j.close()
    ops, top, notes = read_journal(tmp_path, 0)
    assert ops == [["set", "g", "gain", -6.0], ["set", "g", "gain", -7.0]], notes
    assert top == 2
