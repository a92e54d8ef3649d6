"""Holes found by the fourth attack run (/tmp/attack4-findings), each against a real
daemon (null backend) over real sockets."""

from __future__ import annotations

import msgpack
import pytest

from mixgraph.clients.client import MixgraphFail

from daemon_util import Daemon


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        yield d
    finally:
        d.stop()


def _patch_with_scene(d: Daemon, name: str, bypass) -> None:
    """A patch document in the state dir's patches whose scene `s` holds bypass[g]."""
    d.call("/patch/save", "base")
    base = d.state_dir / "patches" / "base.mgp"
    doc = msgpack.unpackb(base.read_bytes(), raw=False)
    doc["show"] = {"scenes": {"s": {"values": {}, "bypass": {"g": bypass}}}}
    (d.state_dir / "patches" / f"{name}.mgp").write_bytes(msgpack.packb(doc))


@pytest.mark.parametrize("bad", ["false", "no", "0", 0.5, 2, None, [False]])
def test_a_scene_bypass_that_is_not_true_or_false_is_refused(daemon, bad):
    """attack4 A1: a scene's bypass was read with bool(), so "false" bypassed the node
    at the next recall."""
    daemon.call("/graph/add", "gain", "g")
    _patch_with_scene(daemon, "q", bad)
    with pytest.raises(MixgraphFail, match="bypass of 'g' must be true or false"):
        daemon.call("/patch/load", "q")
    assert daemon.request("/node/g/bypass")[1] == [0.0]


@pytest.mark.parametrize("on", [True, False, 1, 0])
def test_a_scene_bypass_of_true_false_0_1_is_recalled(daemon, on):
    daemon.call("/graph/add", "gain", "g")
    _patch_with_scene(daemon, "q", on)
    daemon.call("/patch/load", "q")
    daemon.call("/scene/recall", "s")
    assert daemon.request("/node/g/bypass")[1] == [float(bool(on))]


def _osc(address: bytes, tags: bytes, data: bytes = b"") -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (4 - len(b) % 4)
    return pad(address) + pad(tags) + data


@pytest.mark.parametrize("address", [b"/node/g/gain", b"/scene/store", b"/midi/map",
                                     b"/undo", b"/cue/go", b"/meters/unsubscribe"])
def test_arrays_nested_2000_deep_are_garbage_not_an_internal_error(daemon, address):
    """attack4 A2: an argument of arrays nested 2,000 deep made the /fail reason's
    repr() recurse: `/fail ... internal error: maximum recursion depth exceeded` (on
    40 addresses). Now the packet is garbage (counted, logged, no reply), and a
    shallow array still gets its /fail with a reason."""
    import socket
    import struct
    daemon.call("/graph/add", "gain", "g")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1.0)
    deep = b"," + b"[" * 2000 + b"f" + b"]" * 2000
    before = daemon.status()["garbage"]
    u.sendto(_osc(address, deep, struct.pack(">f", 1.0)), ("127.0.0.1", daemon.port))
    u.sendto(_osc(b"/node/g/gain", b",[f]", struct.pack(">f", 1.0)), ("127.0.0.1", daemon.port))
    data, _ = u.recvfrom(65536)  # the only reply: the shallow array's /fail
    assert b"/fail" in data and b"/node/g/gain" in data and b"internal" not in data, data
    assert b"expected a number" in data, data
    assert daemon.status()["garbage"] == before + 1
    assert daemon.request("/node/g/gain")[1] == [0.0]
