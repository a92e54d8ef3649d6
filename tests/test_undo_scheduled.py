"""Undo and redo of a value a timed bundle will still change (attack3 A4).

A bundle timetagged for later is recorded as a step when it is accepted, but the
engine applies its set at its time. `/undo` before then answered `/done` and put the
old value back, and the scheduled set changed it anyway at its time (and again after
a restart, from the journal), while /history listed the step as undone. Now such an
undo is refused, nothing changes, and after the set applied the undo works."""

from __future__ import annotations

import time

import pytest

from mixgraph.clients.client import MixgraphFail
from mixgraph.clients.protocol import encode_bundle, timetag_from_unix

from daemon_util import Daemon


def test_undo_of_a_scheduled_set_is_refused_until_it_applies(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/node/g/gain", -10.0)
        time.sleep(0.7)  # its own step, not one gesture with the next
        # 6 s ahead (was 2): the refused undo and the read below must come before it
        # is due, which takes seconds on a loaded host
        due = time.time() + 6.0
        d.client.send_packet(encode_bundle([("/node/g/gain", [6.0])], timetag_from_unix(due)))
        addr, args = d.client.receive(5)
        assert (addr, args[:2]) == ("/done", ["/node/g/gain", 6.0])
        with pytest.raises(MixgraphFail, match="scheduled"):
            d.call("/undo")
        assert d.request("/node/g/gain")[1] == [-10.0]  # still the value in effect now
        assert time.time() < due, "the undo and the read came back after the set's time"
        time.sleep(max(0.0, due - time.time()) + 0.5)
        deadline = time.monotonic() + 30  # (read late on a loaded host)
        while d.request("/node/g/gain")[1] != [6.0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.request("/node/g/gain")[1] == [6.0]  # the set applied at its time
        assert d.call("/undo")[:2] == ["/undo", 1]
        time.sleep(0.3)
        assert d.request("/node/g/gain")[1] == [-10.0]  # and stays undone
    finally:
        d.stop()
