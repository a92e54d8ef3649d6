"""Holes found by the fourth attack run (/tmp/attack4-findings), each against a real
daemon (null backend) over real sockets."""

from __future__ import annotations

import re

import msgpack
import pytest

from mixgraph.clients.client import MixgraphFail

from daemon_util import Daemon, wait_autosaved


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


def _tcp_frames(sock, until: bytes, limit_s: float = 120.0) -> list[bytes]:
    """Read size-prefixed OSC frames until one holds `until`."""
    from daemon_util import tcp_frames
    out = []
    for f in tcp_frames(sock, limit_s):
        out.append(f)
        if until in f:
            return out
    raise AssertionError(f"no frame with {until!r} in {len(out)} frames")


@pytest.mark.parametrize("address", [b"/graph/nodes", b"/graph/connections", b"/graph/dump",
                                     b"/catalog"])
def test_introspection_loops_are_charged_to_the_whole_state_budget(daemon, address):
    """attack4 A3: /graph/nodes, /graph/connections, /graph/dump and /catalog were free
    of the per-host whole-state budget that bounds /dump: a read-only viewer sending
    /graph/nodes in a loop on 200 nodes held others' round trips at 277 ms (median).
    Now a loop of them is refused once the host's budget is spent, and the refusal
    names it."""
    import socket
    import struct

    def frame(b: bytes) -> bytes:
        return struct.pack(">i", len(b)) + b

    def s(x: str) -> bytes:
        b = x.encode()
        return b + b"\0" * (4 - len(b) % 4)

    t = socket.create_connection(("127.0.0.1", daemon.port))
    setup = [frame(_osc(b"/graph/add", b",ss", s("gain") + s(f"n{i}"))) for i in range(400)]
    setup += [frame(_osc(b"/graph/connect", b",ss", s(f"n{i}") + s(f"n{i + 1}")))
              for i in range(0, 398, 2)]
    t.sendall(b"".join(setup) + frame(_osc(b"/sync", b",i", struct.pack(">i", 1))))
    _tcp_frames(t, b"/synced")
    # the budget is control-thread CPU (0.6 s bursts, 0.25 s a second after them): how
    # many requests spend it depends on the host's speed (/catalog: 163 of the first
    # 1,500 refused here, none on a faster CI host), so the loop goes on, 1,500 at a
    # time, until a refusal or 30,000 requests (far past the budget on any host)
    one = frame(_osc(address, b",")) * 1500 + frame(_osc(b"/sync", b",i", struct.pack(">i", 77)))
    refused: list[bytes] = []
    sent = 0
    while not refused and sent < 30000:
        t.sendall(one)
        sent += 1500
        frames = _tcp_frames(t, b"/synced")
        refused = [f for f in frames if f.startswith(b"/fail") and b"whole-state" in f]
    assert refused, f"{sent} requests, none refused"
    assert address in refused[0]
    assert daemon.status()["internal_errors"] == 0


def test_one_address_cannot_take_every_subscriber_slot(daemon):
    """attack4 A4: 32 UDP ports of one host, each `/subscribe 3600`, took all 32
    subscriber slots; a console on another host got `too many subscribers` and no
    feedback for an hour. Now one address holds at most --max-subscribers-per-host (16)."""
    import socket
    import struct

    def sub(sock) -> bytes:
        sock.sendto(_osc(b"/subscribe", b",f", struct.pack(">f", 3600.0)),
                    ("127.0.0.1", daemon.port))
        while True:
            data = sock.recvfrom(65536)[0]
            if data.startswith((b"/done", b"/fail")):
                return data

    hogs = []
    answers = []
    for _ in range(32):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3.0)
        s.bind(("127.0.0.1", 0))
        hogs.append(s)
        answers.append(sub(s))
    assert sum(a.startswith(b"/done") for a in answers) == 16, answers
    assert b"too many subscribers from this address (16" in answers[16]
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.settimeout(3.0)
    other.bind(("127.0.0.2", 0))
    assert sub(other).startswith(b"/done\0")
    assert daemon.status()["subscribers"] == 17


def test_saves_that_would_fill_the_state_disk_are_refused(tmp_path):
    """attack4 A5: /patch/save under new names in a loop wrote 37 GB an hour (200 eq8
    nodes) with no bound, until the state disk was full and the journal and autosave
    stopped. A save that would leave less than --min-free-mb on the state disk is now
    refused (the journal and autosave are not), /midi/save too."""
    import shutil
    free_mb = shutil.disk_usage(tmp_path).free >> 20
    d = Daemon(tmp_path / "state", "--backend", "null", "--min-free-mb", str(free_mb + 10**6))
    try:
        d.call("/graph/add", "gain", "g")
        for address in ("/patch/save", "/midi/save"):
            addr, args = d.request(address, "backup-1")
            assert addr == "/fail" and "state disk is nearly full" in args[-1], args
            assert "--min-free-mb" in args[-1] and str(tmp_path) not in args[-1]
        assert not list((tmp_path / "state").rglob("backup-1*"))
        d.call("/node/g/gain", -3.0)  # edits still journaled and acknowledged
    finally:
        d.stop()
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        assert d.request("/node/g/gain")[1] == [-3.0]
        d.call("/patch/save", "backup-1")
        d.call("/midi/save", "backup-1")
    finally:
        d.stop()


def test_unwritten_journal_records_are_bounded_and_nothing_acknowledged_is_lost(tmp_path):
    """attack4 A10 (left by attack3): while the disk stays full the journal kept every
    record it could not write in memory, without bound (~50 kB/s under a moving fader,
    hours of a show: hundreds of MB, locked by mlockall). Now past
    MIXGRAPH_JOURNAL_MAX_UNWRITTEN_MB (1 here, 32 by default) they are dropped - none
    was acknowledged - and nothing is journaled or acknowledged until a snapshot taken
    after the drop is on disk; after that, an acknowledged edit survives SIGKILL.
    The full disk is the daemon's RLIMIT_FSIZE of 1 byte (every write fails, EFBIG)."""
    import resource
    import signal
    import time

    d = Daemon(tmp_path / "state", "--backend", "null",
               env={"MIXGRAPH_JOURNAL_MAX_UNWRITTEN_MB": "1"})
    try:
        for i in range(60):
            d.client.send("/graph/add", "eq8", f"e{i}")
        d.call("/graph/add", "gain", "g")
        d.call("/patch/save", "big")
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
        for _ in range(60):  # each load journals the whole document (~40 kB)
            while True:  # loads are paid for in control-thread time (attack6): wait when told
                addr, args = d.request("/patch/load", "big")
                wait = re.search(r"try again in ([0-9.]+) s", str(args[-1]))
                if addr == "/fail" and wait:
                    time.sleep(float(wait[1]))
                    continue
                break
            assert addr == "/fail" and "not journaled" in args[-1], (addr, args)
        with pytest.raises(MixgraphFail, match="not journaled"):
            d.call("/node/g/gain", -7.0)
        assert d.status()["journal_dropped"] > 1 << 20  # the log cannot be written either
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        end = time.monotonic() + 20  # the autosave retries every second
        while True:
            addr, args = d.request("/node/g/gain", -5.0)
            if addr == "/done":
                break
            assert "not journaled" in args[-1], args
            assert time.monotonic() < end, "never journaled again"
            time.sleep(0.2)
        d.call("/node/e3/b1gain", 4.0)
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        assert d.call("/node/g/gain") == [-5.0]
        assert d.call("/node/e3/b1gain") == [4.0]
        assert d.status()["nodes"] == 61
    finally:
        d.stop()


def test_a_client_holds_at_most_64_meter_patterns(daemon):
    """attack4 A12: each /meters/subscribe with a new pattern was kept (and matched
    against every node after each graph change) without bound: 50,000 from one client
    took 175 MB and made a /status after a graph change wait 5 s."""
    import socket
    import struct

    def s(x: str) -> bytes:
        b = x.encode()
        return b + b"\0" * (4 - len(b) % 4)

    daemon.call("/graph/add", "meter", "m0")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(3.0)
    answers = []
    for i in range(66):
        u.sendto(_osc(b"/meters/subscribe", b",sf", s(f"m{i}*") + struct.pack(">f", 1.0)),
                 ("127.0.0.1", daemon.port))
        while True:
            data = u.recvfrom(65536)[0]
            if data.startswith((b"/done\0", b"/fail\0")):
                answers.append(data)
                break
    assert all(a.startswith(b"/done") for a in answers[:64]), answers[:64]
    assert answers[64].startswith(b"/fail") and b"at most 64 meter patterns" in answers[64]
    # a pattern it holds may be subscribed again (a new rate)
    u.sendto(_osc(b"/meters/subscribe", b",sf", s("m3*") + struct.pack(">f", 2.0)),
             ("127.0.0.1", daemon.port))
    while not (data := u.recvfrom(65536)[0]).startswith((b"/done\0", b"/fail\0")):
        pass
    assert data.startswith(b"/done"), data


def test_graph_add_stops_at_max_nodes(tmp_path):
    """attack4 A8: nothing bounded the graph: a script adding gain nodes in a loop reached
    30,000 (17 xruns, others' /status 2.9 s, 649 MB). /graph/add now stops at
    --max-nodes (default 4096) with a reason; removing one makes room again."""
    d = Daemon(tmp_path / "state", "--backend", "null", "--max-nodes", "5")
    try:
        for i in range(5):
            d.call("/graph/add", "gain", f"g{i}")
        addr, args = d.request("/graph/add", "gain", "g5")
        assert addr == "/fail" and "the graph has 5 nodes" in args[-1], args
        assert "--max-nodes" in args[-1]
        assert d.status()["nodes"] == 5
        d.call("/graph/remove", "g0")
        d.call("/graph/add", "gain", "g5")
    finally:
        d.stop()


def test_a_damaged_autosave_is_told_from_a_good_one(tmp_path):
    """attack4 A9: the autosave had no checksum, so a byte flipped in a value's payload
    (bit rot, a bad copy) loaded as another value without a word. Now a snapshot carries
    its crc32 (`checksum`, its last key); one that does not match is set aside like an
    unreadable one and the previous snapshot + the journal give the show back. An
    undamaged one (with scenes: the encoder that reuses their bytes) restores as before."""
    import signal
    import struct

    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/node/g/gain", -3.25)
        d.call("/scene/store", "s")
        wait_autosaved(state)  # a snapshot (waited for: was a 1.5 s sleep)
        d.call("/node/g/mute", 1)
        wait_autosaved(state)  # and a newer one
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")  # undamaged: the newest snapshot is used
    try:
        assert "restored 1 nodes from autosave.mgp" in d.output()
        assert "checksum" not in d.output()
        assert d.call("/node/g/gain") == [-3.25]
        d.call("/node/g/gain", -3.25)  # the show goes on: a new snapshot soon
        wait_autosaved(state)
    finally:
        d.stop(signal.SIGKILL)
    snap = state / "autosave.mgp"
    data = bytearray(snap.read_bytes())
    i = bytes(data).index(b"\xcb" + struct.pack(">d", -3.25))
    data[i + 2] ^= 0x40  # -3.25 becomes another number, still valid msgpack
    snap.write_bytes(bytes(data))
    d = Daemon(state, "--backend", "null")
    try:
        assert "autosave.mgp unreadable (autosave.mgp: checksum mismatch" in d.output()
        assert d.call("/node/g/gain") == [-3.25]
        assert d.call("/node/g/mute") == [1.0]
    finally:
        d.stop()
