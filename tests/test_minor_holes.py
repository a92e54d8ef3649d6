"""Issue 13, hole 14: names are matched whole (a trailing newline is not a name),
replies echo a bounded part of what was sent (so a /fail always fits a
datagram), bundles nest at most 8 deep, and recorders have a per-server channel
quota and a free-disk check."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from mixgraph.server.diskio import DiskIO
from mixgraph.server.engine import Engine
from mixgraph.server.errors import ECHO_MAX, REASON_MAX, MixgraphError
from mixgraph.server.graph import check_name
from mixgraph.server.osc import (
    MAX_BUNDLE_DEPTH,
    Dispatcher,
    Peer,
    encode_bundle,
    encode_message,
    parse_packet,
)
from mixgraph.server.session import Session
from mixgraph.server.state import PatchStore

from daemon_util import Daemon


# ---- whole-name matching ------------------------------------------------------------
@pytest.mark.parametrize("name", ["abc\n", "a\nb", "\nabc", "abc\r", "abc\0"])
def test_node_names_are_matched_whole(name):
    with pytest.raises(MixgraphError, match="bad node name"):
        check_name(name)
    assert check_name("abc") == "abc"


@pytest.mark.parametrize("name", ["take1\n", "take1\n.mgp", "take1\r"])
def test_patch_names_are_matched_whole(tmp_path, name):
    store = PatchStore(tmp_path)
    with pytest.raises(MixgraphError, match="bad patch name"):
        store.path_for(name)
    assert store.path_for("take1").stem == "take1"


class Box:
    def __init__(self) -> None:
        self.got: list[tuple[str, list]] = []
        self.peer = Peer(("127.0.0.1", 9), self._recv, kind="udp")

    def _recv(self, data: bytes) -> None:
        self.got += [(m.address, m.args) for m in parse_packet(data)]


@pytest.fixture
def rig(tmp_path):
    e = Engine(48000, 1, 1)
    s = Session(e, data_dir=tmp_path / "audio")
    d = Dispatcher(s, store=PatchStore(tmp_path), info={"block": 64})
    yield d, Box(), tmp_path
    s.close()
    e.free()


def test_a_newline_name_is_refused_over_osc(rig):
    d, b, tmp = rig
    d.dispatch("/graph/add", ["gain", "g\n"], b.peer.reply, 0, b.peer)
    d.dispatch("/patch/save", ["p\n"], b.peer.reply, 0, b.peer)
    assert [a for a, _ in b.got] == ["/fail", "/fail"], b.got
    assert not d.session.graph.nodes
    assert not (tmp / "patches").exists() or not list((tmp / "patches").iterdir())


# ---- bounded echoes --------------------------------------------------------------------
def test_fail_echoes_are_bounded(rig):
    d, b, _ = rig
    huge = "a" * 60000
    d.dispatch("/graph/add", ["gain", huge], b.peer.reply, 0, b.peer)
    d.dispatch("/" + huge, [1.0], b.peer.reply, 0, b.peer)
    d.dispatch("/patch/save", [huge], b.peer.reply, 0, b.peer)
    d.dispatch("/sync", [huge.encode()], b.peer.reply, 0, b.peer)
    d.dispatch("/meters/unsubscribe", [huge], b.peer.reply, 0, b.peer)
    assert len(b.got) == 5
    for addr, args in b.got:
        assert addr in ("/fail", "/done")
        for a in args:
            if isinstance(a, str | bytes):
                assert len(a) <= max(ECHO_MAX + 3, REASON_MAX + 3), (addr, len(a))
        assert len(encode_message(addr, args)) < 4096
    add = b.got[0][1]
    assert add[1] == "a" * ECHO_MAX + "..."  # the key the sender matches on, cut
    assert "bad node name" in add[-1] and "use 1-64" in add[-1]  # the rule survives


def test_daemon_answers_a_huge_name_over_udp(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        huge = "a" * 60000
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        u.settimeout(3.0)
        try:
            for msg in (encode_message("/graph/add", ["gain", huge]),
                        encode_message("/patch/save", [huge])):
                assert len(msg) < 65000
                u.sendto(msg, ("127.0.0.1", d.port))
                [m] = parse_packet(u.recv(65536))  # before: nothing came back
                assert m.address == "/fail" and m.args[-1]
            # an address over osc.MAX_ADDRESS_BYTES (1,024) is garbage since attack8:
            # counted, not answered
            g0 = d.status()["garbage"]
            u.sendto(encode_message("/" + huge, [1.0]), ("127.0.0.1", d.port))
            deadline = time.monotonic() + 60
            while d.status()["garbage"] == g0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert d.status()["garbage"] == g0 + 1
        finally:
            u.close()
        assert d.status()["send_errors"] == 0
    finally:
        d.stop()


# ---- bundle depth -----------------------------------------------------------------------
def nested(levels: int) -> bytes:
    pkt = encode_message("/status", [])
    for _ in range(levels):
        pkt = encode_bundle([pkt])
    return pkt


def test_bundles_nest_at_most_8_deep():
    assert MAX_BUNDLE_DEPTH == 8
    assert [m.address for m in parse_packet(nested(8))] == ["/status"]
    with pytest.raises(MixgraphError, match="nested"):
        parse_packet(nested(9))


# ---- recorder quota and free disk ---------------------------------------------------------
def test_recorder_channel_quota(tmp_path):
    e = Engine(48000, 1, 1)
    s = Session(e, data_dir=tmp_path, disk=DiskIO(48000, max_recorder_channels=4))
    try:
        s.add_node("recorder", "r1", {"path": "r1.wav", "channels": 2})
        s.add_node("recorder", "r2", {"path": "r2.wav", "channels": 2})
        with pytest.raises(MixgraphError, match="recorder channels"):
            s.add_node("recorder", "r3", {"path": "r3.wav", "channels": 1})
        assert "r3" not in s.graph.nodes and not (tmp_path / "r3.wav").exists()
        s.remove_node("r1")
        s.add_node("recorder", "r3", {"path": "r3.wav", "channels": 2})
    finally:
        s.close()
        e.free()


def test_recorder_refused_when_the_disk_is_nearly_full(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    e = Engine(48000, 1, 1)
    s = Session(e, data_dir=tmp_path, disk=DiskIO(48000, min_free_bytes=free + (1 << 40)))
    try:
        with pytest.raises(MixgraphError, match="free"):
            s.add_node("recorder", "r", {"path": "r.wav"})
        assert "r" not in s.graph.nodes and not (tmp_path / "r.wav").exists()
    finally:
        s.close()
        e.free()


def test_daemon_recorder_quota_options(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null", "--max-recorder-channels", "64")
    try:
        for i in range(2):
            d.call("/graph/add", "recorder", f"r{i}", "path", f"r{i}.wav", "channels", 32)
        addr, args = d.request("/graph/add", "recorder", "r2", "path", "r2.wav", "channels", 1)
        assert addr == "/fail" and "64 recorder channels" in args[-1], args
    finally:
        d.stop()
    free_mb = shutil.disk_usage(tmp_path).free >> 20
    d = Daemon(tmp_path / "state2", "--backend", "null", "--min-free-mb", str(free_mb + 10**7))
    try:
        addr, args = d.request("/graph/add", "recorder", "r", "path", "r.wav")
        assert addr == "/fail" and "free" in args[-1], args
        assert str(tmp_path) not in args[-1]  # no server path in the reason
    finally:
        d.stop()


def test_a_restart_keeps_its_recorders_over_the_quota(tmp_path):
    """The checks are for new recorders: a restart with the disk nearly full (or a
    lower quota) restores the graph it had, recorders included, and says so."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "recorder", "r", "path", "r.wav", "channels", 2)
        d.call("/graph/add", "gain", "g")
    finally:
        assert d.stop() == 0
    free_mb = shutil.disk_usage(tmp_path).free >> 20
    d = Daemon(tmp_path / "state", "--backend", "null", "--min-free-mb", str(free_mb + 10**7),
               "--max-recorder-channels", "1")
    try:
        assert d.status()["nodes"] == 2  # the recorder and the gain
        _, first = d.request("/graph/nodes")
        assert first[:2] == ["r", "recorder"], first
        assert "restored recorders" in d.output()
        addr, args = d.request("/graph/add", "recorder", "r2", "path", "r2.wav", "channels", 1)
        assert addr == "/fail" and "recorder quota" in args[-1], args
    finally:
        d.stop()



def test_status_reports_the_worst_block_of_the_last_ten_seconds(tmp_path):
    """`worst_us` is since the start; `worst_recent_us` the last 10 s (a box that
    runs for weeks needs the second: one slow block at start-up hides every later
    one in the first)."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "sine", "s")
        d.sync()
        st = d.status()
        assert 0.0 < st["worst_recent_us"] <= st["worst_us"]
    finally:
        d.stop()
