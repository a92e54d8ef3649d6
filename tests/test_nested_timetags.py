"""A nested bundle keeps its own timetag (attack3 A2).

protocol.md: nested bundles are flattened, each element keeping its own timetag. The
dispatcher took the first message's timetag for the whole packet, so a bundle
timetagged for later inside an immediate one was applied at once, with no /late and
no /fail."""

from __future__ import annotations

import time

from mixgraph.clients.protocol import encode, encode_bundle, timetag_from_unix

from daemon_util import Daemon


def test_a_nested_future_bundle_waits_for_its_time(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        # 6 s ahead (was 1.5): the replies and the two reads below must come back
        # before it is due, which takes seconds on a loaded host
        due = time.time() + 6.0
        inner = encode_bundle([("/node/g/gain", [-20.0])], timetag_from_unix(due))
        d.client.send_packet(encode_bundle([encode("/node/g/mute", [1]), inner]))
        got = [d.client.receive(5) for _ in range(2)]
        assert sorted(a[1][0] for a in got if a[0] == "/done") == ["/node/g/gain",
                                                                    "/node/g/mute"]
        d.sync(1)
        assert d.request("/node/g/mute")[1] == [1.0]  # the outer message: now
        assert d.request("/node/g/gain")[1] == [0.0]  # the nested one: not yet
        assert time.time() < due, "the reads came back after the bundle's time"
        time.sleep(max(0.0, due - time.time()) + 0.4)
        deadline = time.monotonic() + 30  # then applied (read late on a loaded host)
        while d.request("/node/g/gain")[1] != [-20.0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert d.request("/node/g/gain")[1] == [-20.0]
    finally:
        d.stop()


def test_elements_with_one_timetag_stay_one_atomic_bundle(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        inner = encode_bundle([("/node/nope/gain", [-20.0])])  # the same (immediate) time
        d.client.send_packet(encode_bundle([encode("/node/g/gain", [-6.0]), inner]))
        got = [d.client.receive(5) for _ in range(2)]
        assert [a[0] for a in got] == ["/fail", "/fail"]  # one fails: nothing applied
        assert d.request("/node/g/gain")[1] == [0.0]
    finally:
        d.stop()


def test_a_bundle_with_a_zero_timetag_is_immediate_not_late(tmp_path):
    """A timetag of all zeros (OSC's immediate is (0, 1); controllers and libraries that
    never set one send zeros) was read as NTP time 0: every such bundle was answered
    `/late ... 3.9e12 ms` (127 years) and counted late. Now it is applied at once,
    like an immediate one, with no /late, over a real UDP socket."""
    import socket
    import struct

    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        late_before = d.status()["late"]
        msg = encode("/node/g/gain", [-12.0])
        packet = b"#bundle\0" + b"\0" * 8 + struct.pack(">i", len(msg)) + msg
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(30)
        u.sendto(packet, ("127.0.0.1", d.port))
        got = [u.recvfrom(65536)[0]]
        while not got[-1].startswith(b"/done") and len(got) < 10:
            got.append(u.recvfrom(65536)[0])
        assert got[-1].startswith(b"/done") and b"/node/g/gain" in got[-1], got
        assert not any(g.startswith(b"/late") for g in got), got
        d.sync(1)
        assert d.request("/node/g/gain")[1] == [-12.0]
        assert d.status()["late"] == late_before
    finally:
        d.stop()
