"""Limits a slow, silent, greedy or spoofing network client runs into (issue 13,
holes 6, 7, 9 and 10), against a real `mixgraph serve` (null backend) over real
sockets: bounded output memory for TCP subscribers that never read, connection
caps, idle timeouts and descriptor exhaustion under a lowered RLIMIT_NOFILE, a
subscriber cap and dead UDP subscribers, and the UDP amplification bound for
clients that have not proven their address."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import socket
import struct
import threading
import time
from pathlib import Path

import msgpack
import pytest

from mixgraph.clients import AsyncClient, Client
from mixgraph.server.osc import encode_bundle, encode_message, parse_packet
from mixgraph.server.state import Autosaver, read_patch, unseal

from daemon_util import Daemon, rss_mb

SEED = 13


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def tcp(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    return s


def tcp_send(s: socket.socket, address: str, *args) -> None:
    m = encode_message(address, list(args))
    s.sendall(struct.pack(">i", len(m)) + m)


class TcpReader:
    """Size-prefixed frames from a TCP connection, decoded."""

    def __init__(self, s: socket.socket) -> None:
        self.s = s
        self.buf = b""

    def read(self, timeout: float) -> list[tuple[str, list]]:
        self.s.settimeout(timeout)
        try:
            data = self.s.recv(1 << 20)
        except (TimeoutError, BlockingIOError):
            return []
        if not data:
            raise ConnectionError("closed")
        self.buf += data
        out, used = _decode(self.buf)
        self.buf = self.buf[used:]
        return out


def _decode(buf: bytes) -> tuple[list[tuple[str, list]], int]:
    """The complete size-prefixed frames in buf, decoded, and the bytes they took."""
    out = []
    i = 0
    while len(buf) - i >= 4:
        n = struct.unpack_from(">i", buf, i)[0]
        if len(buf) - i < 4 + n:
            break
        out += [(m.address, m.args) for m in parse_packet(bytes(buf[i + 4:i + 4 + n]))]
        i += 4 + n
    return out, i


def _frames(buf: bytes) -> list[tuple[str, list]]:
    return _decode(buf)[0]


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    """True when the server closes the connection within timeout (EOF or reset)."""
    s.settimeout(timeout)
    try:
        while True:
            if s.recv(65536) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True


# ---- hole 6: TCP subscribers that never read -------------------------------------------
def test_silent_tcp_subscribers_bounded_memory(tmp_path):
    """20 TCP connections subscribe to meters at 100 Hz and never read: the daemon's
    memory stays bounded (measured from /proc), meters are dropped for them (not state
    changes) and a reader is told how many it missed; their disconnects are invisible
    to a subscriber that reads (no period missed, no error in the log)."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        for i in range(8):  # big meter frames, cheap to make: 8 meters, long names
            d.call("/graph/add", "meter", f"m{i}_" + "x" * 60, "channels", 8)
        d.call("/graph/add", "gain", "g")
        d.sync()
        reader = tcp(d.port)
        tcp_send(reader, "/subscribe", 120.0)  # a lease that outlasts the test
        tcp_send(reader, "/meters/subscribe", "*", 20.0)
        sample_rate = d.status()["sample_rate"]
        # (when a frame came, the engine's clock in it, s)
        seen: list[tuple[float, float]] = []
        stop = threading.Event()

        def read_meters() -> None:  # a subscriber that keeps reading, all along
            r = TcpReader(reader)
            while not stop.is_set():
                for a, x in r.read(0.05):
                    if a == "/meters":
                        seen.append((time.monotonic(),
                                     msgpack.unpackb(x[0])["time"] / sample_rate))

        th = threading.Thread(target=read_meters, daemon=True)
        th.start()
        silent = [tcp(d.port, rcvbuf=4096) for _ in range(20)]
        for s in silent:
            tcp_send(s, "/subscribe", 3600.0)
            tcp_send(s, "/meters/subscribe", "*", 100.0)
        base = rss_mb(d.proc.pid)
        peak = base
        t_end = time.monotonic() + 20.0  # past the kernel buffers (4 MB each) on main
        while time.monotonic() < t_end:
            time.sleep(0.05)
            peak = max(peak, rss_mb(d.proc.pid))
        # a state change still reaches a silent subscriber once it reads
        d.call("/node/g/gain", -3.0)
        late = silent[0]
        late.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        raw = bytearray()
        late.settimeout(0.2)
        got: list[tuple[str, list]] = []
        # until the notice comes (60 s: 10 s was too short with 4 busy loops on this
        # 2-core box, where the server's backlog and the kernel's drain slowly)
        t_end = time.monotonic() + 60.0
        while time.monotonic() < t_end:
            try:
                raw += late.recv(1 << 20)
            except TimeoutError:
                pass
            if b"slow reader" in raw:
                got = _frames(bytes(raw))
                if any(a == "/fail" for a, _ in got):
                    break
        t_close = time.monotonic()
        for s in silent:
            s.close()
        time.sleep(2.0)
        stop.set()
        th.join()
        st = d.status()
        print(f"\n  [measured] rss {base:.0f} MB -> peak {peak:.0f} MB with 20 silent "
              f"subscribers for 20 s; meters dropped {st['meters_dropped']}")
        assert peak - base < 24.0, f"memory grew {peak - base:.0f} MB"
        assert st["meters_dropped"] > 0
        fails = [x for a, x in got if a == "/fail" and x[:1] == ["/meters"]]
        assert fails and fails[0][1] > 0 and "slow reader" in fails[0][2]
        assert ("/node/g/gain", [-3.0]) in got  # the state change was not dropped
        # no period missed around the disconnects: the gaps between the frames' own
        # clocks (when the server made them; when they came here also counts this
        # reader's stalls: 0.66 s with 4 busy loops on this 2-core box), under 0.5 s or,
        # on a host whose scheduler stalls the daemon longer than that, 1.5 times the
        # longest gap of the 20 s before
        def gaps(frames: list[tuple[float, float]]) -> list[float]:
            return [b[1] - a[1] for a, b in zip(frames, frames[1:], strict=False)]

        around = [f for f in seen if t_close - 0.5 <= f[0] <= t_close + 2.0]
        before = gaps([f for f in seen if f[0] < t_close - 0.5])
        assert len(around) >= 10 and max(gaps(around)) < max(0.5, 1.5 * max(before)), (
            len(around), max(gaps(around), default=0), max(before))
        out = d.output()
        assert "changed size during iteration" not in out and "Traceback" not in out
    finally:
        d.stop()


def test_total_output_bounded(tmp_path):
    """Past --max-output-mb for all TCP clients together, the one furthest behind (a
    subscriber that never reads state changes, which are never dropped) is disconnected
    and counted; a client that reads is untouched."""
    d = Daemon(tmp_path / "state", "--backend", "null", "--max-output-mb", "0.25")
    try:
        # 60 s for a reply (was 3 s: /sync waits behind 200 sets and their feedback, which
        # a loaded host works off slowly)
        ok = Client("127.0.0.1", d.port, transport="tcp", timeout=60.0)
        # long names: each change is ~180 bytes of feedback for the hog in both forms, so
        # the bound is passed in fewer rounds (with g0..g199 and 4 busy loops on this
        # 2-core box, not in 60 s nor in 300 s)
        names = [f"g{i}_" + "x" * 60 for i in range(200)]
        ok.send_many([encode_message("/graph/add", ["gain", n]) for n in names])
        ok.call("/sync", 1)
        hog = tcp(d.port, rcvbuf=4096)
        tcp_send(hog, "/subscribe", 3600.0)
        deadline = time.monotonic() + 300.0
        i = 0
        while d.status()["slow_closed"] == 0 and time.monotonic() < deadline:
            for _ in range(10):  # 200 changes each: 400 feedback messages for the hog
                i += 1
                # literal addresses, then /sync: `/node/*/gain` is charged to the
                # host's pattern budget in wall time, which a loaded host used up
                # before the hog fell behind ("too much work from patterns")
                ok.send_many([encode_message(f"/node/{n}/gain", [-float(i % 40)])
                              for n in names])
                ok.call("/sync", i)
            time.sleep(0.05)
        assert d.status()["slow_closed"] == 1
        assert closed_by_server(hog, 5.0)
        assert ok.call(f"/node/{names[0]}/gain") == [-float(i % 40)]
        assert "is not reading its replies" in d.output()
        ok.close()
    finally:
        d.stop()


# ---- hole 7: descriptors, connection caps, idle connections, failed saves --------------
def test_connection_caps_and_idle_timeout(tmp_path):
    # idle timeout 5 s (was 2): the refusals below are told from the idle closes by
    # time, and a loaded host can take seconds between the connects and the check
    d = Daemon(tmp_path / "state", "--backend", "null", "--max-conns-per-host", "4",
               "--idle-timeout", "5")
    try:
        conns = [tcp(d.port) for _ in range(6)]
        deadline = time.monotonic() + 30  # the refusals, waited for (was a 0.3 s sleep)
        while d.status()["refused"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        closed = [closed_by_server(c, 0.02) for c in conns]
        assert closed.count(True) == 2, closed  # refused at accept
        st = d.status()
        assert st["refused"] == 2
        assert "refused tcp 127.0.0.1" in d.output()  # logged (rate-limited)
        live = [c for c, x in zip(conns, closed, strict=True) if not x]
        busy = live[0]
        r = TcpReader(busy)
        t_end = time.monotonic() + 7.0
        while time.monotonic() < t_end:  # one keeps talking; the others stay silent
            tcp_send(busy, "/status")
            r.read(0.3)
        for c in live[1:]:
            assert closed_by_server(c, 10.0)
        tcp_send(busy, "/status")
        assert any(a == "/status.reply" for a, _ in r.read(2.0) + r.read(0.5))
        assert d.status()["idle_closed"] == 3
        for c in conns:
            c.close()
    finally:
        d.stop()


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


def test_descriptor_exhaustion(tmp_path):
    """Under RLIMIT_NOFILE 96 (soft = hard, so it cannot be raised), 150 connections:
    the surplus is refused, the control loop does not spin, saves and recorders work,
    and no reply names a path."""
    d = Daemon(tmp_path / "state", "--backend", "null", "--max-conns-per-host", "1000",
               preexec_fn=_low_nofile)
    conns = []
    try:
        d.call("/graph/add", "gain", "g")
        for _ in range(150):
            try:
                conns.append(tcp(d.port))
            except OSError:
                break
        time.sleep(0.5)
        c0 = cpu_s(d.proc.pid)
        time.sleep(2.0)
        cpu = (cpu_s(d.proc.pid) - c0) / 2.0
        print(f"\n  [measured] daemon cpu with 150 connections at a 96-descriptor limit: "
              f"{cpu * 100:.0f}%")
        assert cpu < 0.5  # not a busy loop
        st = d.status()
        assert st["refused"] > 0
        reply = d.request("/patch/save", "exhausted")
        assert reply == ("/done", ["/patch/save", "exhausted"]), reply
        assert str(tmp_path) not in repr(reply)
        d.call("/graph/add", "recorder", "rec", "path", "take.wav", "record", 1)
        d.call("/node/g/gain", -3.0)
        deadline = time.monotonic() + 30
        auto = tmp_path / "state" / "autosave.mgp"
        while time.monotonic() < deadline:
            if auto.exists() and "rec" in read_patch(auto).get("nodes", {}).__repr__():
                break
            time.sleep(0.1)
        assert "rec" in repr(read_patch(auto).get("nodes"))
        take = tmp_path / "state" / "audio" / "take.wav"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (take.exists() and take.stat().st_size):
            time.sleep(0.1)
        assert take.stat().st_size > 44  # the recorder opened its file and writes
        assert "Too many open files" not in d.output()
        for c in conns:
            c.close()
    finally:
        d.stop()


def _soft_nofile_64() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))


def test_soft_descriptor_limit_is_raised(tmp_path):
    """A soft RLIMIT_NOFILE below the hard one is raised at start (the banner says so),
    and TCP connections are capped below it with the reserve kept."""
    d = Daemon(tmp_path / "state", "--backend", "null", preexec_fn=_soft_nofile_64)
    try:
        out = d.output()
        assert "descriptors 4096" in out
        limits = Path(f"/proc/{d.proc.pid}/limits").read_text()
        assert any(line.startswith("Max open files") and line.split()[3] == "4096"
                   for line in limits.splitlines())
        assert "256 tcp connections" in out  # the default cap fits under 4096 - reserve
    finally:
        d.stop()


def test_failed_autosave_is_retried(tmp_path):
    """A save that fails (its directory cannot be made) is tried again until it works."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    saver = Autosaver(blocker / "autosave.mgp", min_interval_s=0.05)
    try:
        saver.submit({"nodes": [], "connections": []})
        deadline = time.monotonic() + 30
        while saver.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert saver.errors >= 1 and saver.saves == 0
        blocker.unlink()
        blocker.mkdir()
        deadline = time.monotonic() + 30
        while saver.saves == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert saver.saves == 1
        saved = read_patch(blocker / "autosave.mgp")
        unseal(saved, "autosave.mgp")  # its checksum matches, and goes
        assert saved == {"nodes": [], "connections": []}
    finally:
        saver.close()


# ---- hole 9: UDP subscribers --------------------------------------------------------------
def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    return s


def recv_all(s: socket.socket, window: float) -> list[bytes]:
    out = []
    t_end = time.monotonic() + window
    while True:
        left = t_end - time.monotonic()
        if left <= 0:
            return out
        s.settimeout(left)
        try:
            out.append(s.recv(65536))
        except TimeoutError:
            return out


def msgs_of(packets: list[bytes]) -> list[tuple[str, list]]:
    return [(m.address, m.args) for p in packets for m in parse_packet(p)]


def reply_to(s: socket.socket, address: str, timeout: float) -> str | None:
    """The /done or /fail that answers `address` on `s` (other messages before it,
    such as the /subscribe's reply or meter frames, are skipped), or None when none
    comes within `timeout` seconds. Reads until that reply, not for a fixed window: a
    loaded machine may answer the /subscribe before it answers the next request."""
    t_end = time.monotonic() + timeout
    while (left := t_end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            packet = s.recv(65536)
        except TimeoutError:
            return None
        for a, x in msgs_of([packet]):
            if a in ("/done", "/fail") and x[:1] == [address]:
                return a
    return None


def test_subscriber_cap_and_meter_rate(tmp_path):
    """200 UDP clients ask for meters at 100 Hz: 32 (the default cap) get them, the
    rest a /fail; the first still gets its 20 Hz and /status answers. (All from one
    address: the per-address cap is raised to the whole cap here.)"""
    d = Daemon(tmp_path / "state", "--backend", "null", "--max-subscribers-per-host", "32")
    socks = []
    try:
        for i in range(8):
            d.call("/graph/add", "meter", f"m{i}", "channels", 2)
        first = udp()
        first.sendto(encode_message("/subscribe", [60.0]), ("127.0.0.1", d.port))
        first.sendto(encode_message("/meters/subscribe", ["*", 20.0]), ("127.0.0.1", d.port))
        socks.append(first)
        replies = []
        for _ in range(199):
            s = udp()
            s.sendto(encode_message("/subscribe", [60.0]), ("127.0.0.1", d.port))
            s.sendto(encode_message("/meters/subscribe", ["*", 100.0]), ("127.0.0.1", d.port))
            socks.append(s)
        for s in socks:
            reply = reply_to(s, "/meters/subscribe", 10.0)
            if reply:
                replies.append(reply)
        assert replies.count("/done") == 32 and replies.count("/fail") == 168, \
            (replies.count("/done"), replies.count("/fail"))
        first.settimeout(0.0)
        recv_all(first, 0.5)
        n = sum(1 for a, _ in msgs_of(recv_all(first, 2.0)) if a == "/meters")
        t0 = time.monotonic()
        st = d.status()
        print(f"\n  [measured] first subscriber: {n / 2.0:.1f} meter frames/s with 32 "
              f"subscribers; /status in {(time.monotonic() - t0) * 1000:.0f} ms")
        assert st["subscribers"] == 32
        assert n >= 20  # 20 Hz asked for 2 s: at least half arrived
    finally:
        for s in socks:
            s.close()
        d.stop()


def test_dead_udp_subscriber_is_dropped(tmp_path):
    """A subscriber whose port is closed (ICMP port unreachable) is dropped after a few
    failed sends, not kept for its 3600 s lease."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "meter", "m", "channels", 1)
        s = udp()
        s.sendto(encode_message("/subscribe", [3600.0]), ("127.0.0.1", d.port))
        s.sendto(encode_message("/meters/subscribe", ["*", 20.0]), ("127.0.0.1", d.port))
        assert any(a == "/meters" for a, _ in msgs_of(recv_all(s, 1.0)))
        assert d.status()["subscribers"] == 1
        s.close()
        # another client's replies are not lost to the ICMP errors meanwhile
        other = udp()
        answered = 0
        for _ in range(40):
            other.sendto(encode_message("/node/m/peak", []), ("127.0.0.1", d.port))
            answered += sum(1 for a, _ in msgs_of(recv_all(other, 0.025))
                            if a == "/node/m/peak")
        answered += sum(1 for a, _ in msgs_of(recv_all(other, 0.5)) if a == "/node/m/peak")
        assert answered == 40
        deadline = time.monotonic() + 30
        while d.status()["subscribers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        st = d.status()
        assert st["subscribers"] == 0 and st["send_errors"] >= 3
    finally:
        d.stop()


# ---- hole 10: amplification --------------------------------------------------------------
def _requests() -> list[bytes]:
    """One of each kind of request an unproven client might send."""
    rng = random.Random(SEED)
    m = encode_message
    out = [m(a, []) for a in ("/catalog", "/catalog/list", "/status", "/info", "/graph/dump",
                              "/graph/nodes", "/graph/connections", "/patch/list", "/dump",
                              "/hello", "/unsubscribe", "/meters/unsubscribe",
                              "/node/g0/gain", "/node/*/gain", "/node/g0/*", "/nowhere")]
    out += [m("/catalog/type", ["meter"]), m("/subscribe", [3600.0]),
            m("/meters/subscribe", ["*", 100.0]), m("/sync", [7]), m("/node/g0/gain", [-3.0]),
            m("/node/*/gain", [-4.0]), m("/node/g0/gain/norm", [0.5]),
            m("/graph/add", ["gain", "x" * 200]), m("/patch/save", ["p"]),
            m("/reply-port", [0]), m("/hello", ["not-a-cookie"]),
            encode_bundle([m("/node/g0/gain", [-1.0]), m("/catalog", [])]),
            encode_bundle([m("/status", []), m("/graph/dump", [])])]
    for _ in range(20):  # pattern queries of random shape
        out.append(m("/" + "/".join(rng.choice(["node", "*", "g?", "m*", "gain", "{a,b}"])
                                    for _ in range(rng.randint(1, 4))), []))
    return out


def test_udp_amplification_bound_for_unproven_clients(tmp_path):
    """With loopback not trusted, every request from a fresh (unproven) UDP address is
    answered with at most 3x its bytes, over a generous window; no stream starts."""
    d = Daemon(tmp_path / "state", "--backend", "null", "--prove-loopback")
    try:
        tc = Client("127.0.0.1", d.port, transport="tcp", timeout=30.0)
        for i in range(8):
            tc.call("/graph/add", "gain", f"g{i}")
            tc.call("/graph/add", "meter", f"m{i}", "channels", 8)
        worst = 0.0
        # every socket stays open to the end, so each request comes from an address the
        # server has never seen (a closed socket's port can be handed out again, and the
        # bound is per address over time: a reused port inherits what its address earned)
        held = []
        for req in _requests():
            s = udp()
            held.append(s)
            s.sendto(req, ("127.0.0.1", d.port))
            got = recv_all(s, 0.3)
            ratio = sum(map(len, got)) / len(req)
            worst = max(worst, ratio)
            assert ratio <= 3.0, (req[:40], ratio, [g[:40] for g in got])
        for s in held:
            s.close()
        # the reflector of the issue: /subscribe 3600 + /meters/subscribe * 100
        s = udp()
        sent = 0
        for req in (encode_message("/subscribe", [3600.0]),
                    encode_message("/meters/subscribe", ["*", 100.0])):
            s.sendto(req, ("127.0.0.1", d.port))
            sent += len(req)
        got = recv_all(s, 1.5)
        assert sum(map(len, got)) <= 3 * sent
        print(f"\n  [measured] worst reply/request ratio, unproven UDP: {worst:.2f}")
        tc.close()
    finally:
        d.stop()


def test_proven_udp_client_gets_everything(tmp_path):
    """After the /hello cookie round trip the same requests are answered in full, and
    the client library does the round trip by itself when it needs it."""
    d = Daemon(tmp_path / "state", "--backend", "null", "--prove-loopback")
    try:
        s = udp()
        s.sendto(encode_message("/hello", []), ("127.0.0.1", d.port))
        (a, args), = msgs_of(recv_all(s, 1.0))
        assert a == "/hello" and isinstance(args[0], str)
        s.sendto(encode_message("/hello", [args[0]]), ("127.0.0.1", d.port))
        assert msgs_of(recv_all(s, 1.0)) == [("/done", ["/hello"])]
        s.sendto(encode_message("/catalog", []), ("127.0.0.1", d.port))
        got = recv_all(s, 1.0)
        assert msgs_of(got)[0][0] == "/catalog.reply" and sum(map(len, got)) > 10000
        # someone else's cookie proves nothing
        other = udp()
        other.sendto(encode_message("/hello", [args[0]]), ("127.0.0.1", d.port))
        assert msgs_of(recv_all(other, 1.0))[0][0] == "/fail"
        with Client("127.0.0.1", d.port) as c:
            assert len(c.call("/catalog")[0]) > 10000
            assert c.subscribe(lambda *_: None, lease_s=5.0) == ["/subscribe", 5.0, 0]

        async def aio() -> None:
            async with await AsyncClient.open("127.0.0.1", d.port) as c:
                assert len((await c.call("/catalog"))[0]) > 10000
                assert await c.call("/meters/subscribe", "*", 10.0) == [
                    "/meters/subscribe", "*", 10.0, 0]

        asyncio.run(aio())
    finally:
        d.stop()


def test_warning_when_listening_beyond_loopback(tmp_path):
    d = Daemon(tmp_path / "a", "--backend", "null", "--listen", "0.0.0.0")
    try:
        out = d.output()
        assert "without --allow" in out and out.count("without --allow") >= 2  # banner, log
    finally:
        d.stop()
    d = Daemon(tmp_path / "b", "--backend", "null", "--listen", "0.0.0.0", "--allow",
               "127.0.0.0/8")
    try:
        assert "without --allow" not in d.output()
    finally:
        d.stop()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
