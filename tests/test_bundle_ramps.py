"""Ramps in bundles (attack3 A12).

A bundle's checks took `/node/<n>/<p>/ramp <target> <seconds>` for a parameter set:
every bundle with a ramp failed whole with `expected one value, got 2`, so a script
could not start several fades on one sample. Now a ramp is checked as a ramp, an
immediate bundle starts its ramps on the bundle's sample, and a bundle timetagged for
later is held to its time (a ramp's model value is its target from its start)."""

from __future__ import annotations

import time

from mixgraph.clients.protocol import encode_bundle, timetag_from_unix

from daemon_util import Daemon


def _replies(d: Daemon, n: int) -> list:
    return [d.client.receive(10) for _ in range(n)]


def test_ramps_in_bundles(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "a")
        d.call("/graph/add", "gain", "b")
        d.client.send_packet(encode_bundle([("/node/a/gain/ramp", [-20.0, 0.2]),
                                            ("/node/b/gain/ramp", [-30.0, 0.2, "scurve"])]))
        got = _replies(d, 2)
        assert [(a, r[0]) for a, r in got] == [("/done", "/node/a/gain/ramp"),
                                               ("/done", "/node/b/gain/ramp")], got
        assert d.request("/node/a/gain")[1] == [-20.0]
        assert d.request("/node/b/gain")[1] == [-30.0]
        # a bad ramp fails the bundle with the ramp's own reason; nothing applied
        d.client.send_packet(encode_bundle([("/node/a/gain", [-6.0]),
                                            ("/node/b/gain/ramp", [0.0, 7200.0])]))
        got = _replies(d, 2)
        assert [a for a, _ in got] == ["/fail", "/fail"], got
        assert "seconds" in got[1][1][-1] and "outside" in got[1][1][-1], got
        assert d.request("/node/a/gain")[1] == [-20.0]
        # for later: held to its time, the value in effect until then
        due = time.time() + 1.0
        d.client.send_packet(encode_bundle([("/node/a/gain/ramp", [0.0, 0.1])],
                                           timetag_from_unix(due)))
        assert d.request("/node/a/gain")[1] == [-20.0]
        addr, args = d.client.receive(10)
        assert (addr, args[:2]) == ("/done", ["/node/a/gain/ramp", 0.0])
        assert time.time() >= due - 0.1  # answered when applied, not before
        assert d.request("/node/a/gain")[1] == [0.0]
    finally:
        d.stop()
