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
