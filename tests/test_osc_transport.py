"""End-to-end OSC transports against a real `mixgraph serve` (null backend):
TCP with both framings, reply ports, access control, rate limiting, and
feedback to 16 subscribed UDP clients (latency measured)."""

from __future__ import annotations

import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

import msgpack
import pytest

from mixgraph.server.conn import slip_decode, slip_encode
from mixgraph.server.osc import encode_message, parse_packet

from daemon_util import Daemon, rss_mb


class Udp:
    def __init__(self, port: int, host: str = "127.0.0.1", bind: str = "127.0.0.1") -> None:
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.s.bind((bind, 0))
        self.to = (host, port)

    def send(self, address, *args):
        self.s.sendto(encode_message(address, list(args)), self.to)

    def recv(self, timeout=2.0):
        """The messages of the next packet (bundles flattened)."""
        self.s.settimeout(timeout)
        data, _ = self.s.recvfrom(65536)
        return [(m.address, m.args) for m in parse_packet(data)]

    def wait_for(self, pred, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            for m in self.recv(left):
                if pred(m):
                    return m

    def drain(self):
        out = []
        while True:
            try:
                out += self.recv(0.05)
            except TimeoutError:
                return out

    def close(self):
        self.s.close()


class Tcp:
    def __init__(self, port: int, slip: bool = False) -> None:
        self.s = socket.create_connection(("127.0.0.1", port))
        self.slip = slip
        self.buf = b""

    def send_raw(self, data: bytes):
        self.s.sendall(data)

    def send(self, address, *args, double_end=True):
        m = encode_message(address, list(args))
        if self.slip:
            f = slip_encode(m)
            self.s.sendall(f if double_end else f[1:])
        else:
            self.s.sendall(struct.pack(">i", len(m)) + m)

    def recv(self, timeout=3.0):
        self.s.settimeout(timeout)
        while True:
            if self.slip:
                i = self.buf.find(b"\xc0")
                if i >= 0:
                    raw, self.buf = self.buf[:i], self.buf[i + 1:]
                    if raw:
                        return [(m.address, m.args) for m in parse_packet(slip_decode(raw))]
                    continue
            elif len(self.buf) >= 4:
                (n,) = struct.unpack(">i", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    data, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return [(m.address, m.args) for m in parse_packet(data)]
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def close(self):
        self.s.close()


def status(d: Daemon) -> dict:
    return d.status()


def test_flood_replies_are_coalesced_in_order(daemon):
    """A client that sends 300 commands without waiting gets all 300 replies, in
    order, packed into bundles; one that waits for each reply gets bare messages."""
    d = daemon
    d.call("/graph/add", "gain", "g", "channels", 1)
    c = Udp(d.port)
    values = [-(i % 60) * 0.5 for i in range(300)]
    for v in values:
        c.send("/node/g/gain", v)
    got, packets, bundles = [], 0, 0
    while len(got) < len(values):
        c.s.settimeout(3.0)
        data, _ = c.s.recvfrom(65536)
        packets += 1
        bundles += data[:8] == b"#bundle\0"
        assert len(data) <= 1400 or data[:8] != b"#bundle\0"
        got += [(m.address, m.args) for m in parse_packet(data)]
    assert got == [("/done", ["/node/g/gain", v]) for v in values]
    assert bundles > 0 and packets < len(values)
    print(f"\n  [measured] 300 flooded commands answered in {packets} datagrams")
    for v in (-1.0, -2.0, -3.0):  # one at a time: bare replies
        c.send("/node/g/gain", v)
        c.s.settimeout(3.0)
        data, _ = c.s.recvfrom(65536)
        assert data[:1] == b"/" and [(m.address, m.args) for m in parse_packet(data)] == \
            [("/done", ["/node/g/gain", v])]


def test_tcp_same_port_both_framings(daemon):
    t = Tcp(daemon.port)
    t.send("/info")
    [(addr, args)] = t.recv()
    info = dict(zip(args[::2], args[1::2], strict=True))
    assert addr == "/info.reply" and info["udp_port"] == info["tcp_port"] == daemon.port
    t.send("/graph/add", "gain", "g", "channels", 1)
    assert t.recv() == [("/done", ["/graph/add", "g"])]
    t.close()
    for double in (True, False):
        s = Tcp(daemon.port, slip=True)
        s.send("/node/g/gain", -3.0 if double else -4.0, double_end=double)
        s.send("/node/g/gain", double_end=double)
        assert s.recv()[0][0] == "/done"
        assert s.recv() == [("/node/g/gain", [-3.0 if double else -4.0])]
        # a blob holding END and ESC bytes survives SLIP escaping both ways
        s.send("/patch/save", b"\xc0\xdb\xc0", double_end=double)
        r = s.recv()
        assert r[0][0] == "/fail" and r[0][1][1] == b"\xc0\xdb\xc0"
        # feedback over TCP, in the connection's framing
        s.send("/subscribe", double_end=double)
        assert s.recv() == [("/done", ["/subscribe", 10.0, 9])]  # lease, state messages
        dump = s.recv()
        norm = dict(dump)["/node/g/gain/norm"][0]
        assert norm == pytest.approx(0.75 - (3.0 if double else 4.0) / 40, abs=1e-6)
        daemon.call("/node/g/gain", -20.0)
        assert s.recv() == [("/node/g/gain", [-20.0]), ("/node/g/gain/norm", [0.375])]
        s.close()


def test_tcp_oversized_frames_refused(daemon):
    t = Tcp(daemon.port)
    t.send_raw(struct.pack(">i", 1 << 30))  # a 1 GiB frame: refused before allocating it
    with pytest.raises((ConnectionError, OSError)):
        t.recv(3.0)
    t.close()
    s = Tcp(daemon.port, slip=True)
    s.send_raw(b"\xc0" + b"/x\0\0" * (70000 // 4) + b"\xc0")  # over 64 KiB: skipped
    s.send("/sync", 3)
    assert s.recv() == [("/synced", [3])]
    s.close()
    st = status(daemon)
    assert st["oversized"] == 2


def test_tcp_nothing_lost_under_back_pressure(daemon):
    daemon.call("/graph/add", "gain", "g", "channels", 1)
    t = Tcp(daemon.port)
    n = 30000  # over the default rate limit (20,000/s, burst 2,000): TCP is slowed, not dropped
    frames = b"".join(struct.pack(">i", len(m)) + m for m in
                      (encode_message("/node/g/gain", [-(i % 100) * 0.5]) for i in range(n)))
    threading.Thread(target=t.send_raw, args=(frames,), daemon=True).start()
    done = 0
    t0 = time.monotonic()
    while done < n:
        for a, _ in t.recv(10.0):
            done += a == "/done"
    elapsed = time.monotonic() - t0
    print(f"\n  [measured] TCP: {n} messages, {n} applied in {elapsed:.2f} s")
    assert done == n and status(daemon)["rate_limited"] == 0
    t.close()


def test_reply_port(daemon):
    a = Udp(daemon.port)
    listen = Udp(daemon.port)
    port = listen.s.getsockname()[1]
    a.send("/reply-port", port)
    assert listen.recv() == [("/done", ["/reply-port", port])]
    a.send("/sync", 5)
    assert listen.recv() == [("/synced", [5])]
    a.send("/reply-port", 0)  # back to the sending port, this reply included
    assert a.recv() == [("/done", ["/reply-port", 0])]
    a.send("/sync", 6)
    assert a.recv() == [("/synced", [6])]
    a.close()
    listen.close()


def test_access_control(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null", "--allow", "127.0.0.1/32")
    try:
        outsider = Udp(d.port, bind="127.0.0.2")  # loopback, but not in --allow
        outsider.send("/sync", 1)
        with pytest.raises((TimeoutError, socket.timeout)):
            outsider.recv(0.5)
        st = d.status()
        assert st["denied"] >= 1
        with pytest.raises((ConnectionError, OSError)):
            s = socket.create_connection(("127.0.0.1", d.port), source_address=("127.0.0.2", 0))
            s.settimeout(2)
            s.sendall(struct.pack(">i", 8) + encode_message("/sync", [1]))
            if not s.recv(100):
                raise ConnectionError("closed")
        outsider.close()
    finally:
        d.stop()


FLOODER = """
import socket, sys, time
from mixgraph.server.osc import encode_message
port, rate, secs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
f.bind(("127.0.0.1", 0))
f.setblocking(False)
pkt = encode_message("/node/g/gain", [-1.0])
told = sent = 0
t0 = time.monotonic()
while time.monotonic() - t0 < secs:
    for _ in range(100):
        f.sendto(pkt, ("127.0.0.1", port))
    sent += 100
    try:
        while True:
            data = f.recv(65536)
            told += data.startswith(b"/fail") and b"/rate-limit" in data
    except BlockingIOError:
        pass
    ahead = t0 + sent / rate - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
print(sent, told, sent / (time.monotonic() - t0))
"""


@pytest.fixture
def limited(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null", "--rate-limit", "1000",
               "--rate-burst", "100")
    yield d
    d.stop()


def _round_trip_ms(other: Udp, i: int, retries: list[int]) -> float:
    """One set from `other` until its /done comes (sent again after 0.25 s), in ms."""
    t0 = time.monotonic()
    for _attempt in range(10):
        # a UDP client resends after a timeout: on a loaded machine the kernel may
        # drop a datagram when the server cannot drain as fast as the flood comes
        other.send("/node/g/gain", -2.0 - i * 0.1)
        try:
            other.wait_for(lambda m, i=i: m[0] == "/done" and m[1][1] == pytest.approx(
                -2.0 - i * 0.1, abs=1e-5), 0.25)
            break
        except TimeoutError:
            retries[0] += 1
    return (time.monotonic() - t0) * 1000


def test_flooding_client_does_not_starve_others(limited):
    daemon = limited
    daemon.call("/graph/add", "gain", "g", "channels", 1)
    other = Udp(daemon.port)
    retries = [0]
    # the same round trips before the flood: what this host's scheduler makes of them
    base = statistics.median([_round_trip_ms(other, i, retries) for i in range(20)])
    # up to 50,000 packets/s from another process, 50 times this server's limit (1,000/s:
    # with 5,000/s a sender slowed by 4 busy loops on this 2-core box sent 5,260/s and
    # was never limited, as a loaded CI host's could be)
    flood = subprocess.Popen([sys.executable, "-c", FLOODER, str(daemon.port), "50000", "3"],
                             stdout=subprocess.PIPE, text=True)
    lat = []
    time.sleep(0.3)
    for i in range(40):
        lat.append(_round_trip_ms(other, 20 + i, retries))
        time.sleep(0.01)
    sent, told, rate = flood.communicate(timeout=20)[0].split()
    st = status(daemon)
    print(f"\n  [measured] flood {sent} packets ({float(rate):.0f}/s): other client's "
          f"round trip median {statistics.median(lat):.2f} ms (before the flood "
          f"{base:.2f} ms), max {max(lat):.2f} ms; rate_limited {st['rate_limited']}, "
          f"resends {retries[0]}")
    assert int(told) >= 1 and st["rate_limited"] > 0
    # median, not max: on a loaded 2-core CI box single round trips can stall on the
    # scheduler whatever the server does (the report gives the measured max); 50 ms, or
    # 10 times the median before the flood on a host whose scheduler is slower than that
    # (a starved client waits for its 0.25 s resends)
    assert statistics.median(lat) < max(50.0, 10 * base), (statistics.median(lat), base)
    other.close()


def test_sixteen_subscribers_fanout(daemon):
    d = daemon
    d.call("/graph/add", "gain", "fader", "channels", 1)
    clients = [Udp(d.port) for _ in range(16)]
    for c in clients:
        c.send("/subscribe", 120.0)  # the whole test, on a starved host too
        c.wait_for(lambda m: m[0] == "/done" and m[1][0] == "/subscribe")
        # the full state dump follows: both forms of every parameter
        c.wait_for(lambda m: m[0] == "/node/fader/gain/norm")
        c.drain()
    # what this host's scheduler makes of one round trip (a set and its /done), as
    # test_flooding_client_does_not_starve_others measures it
    base = []
    for k in range(10):
        t0 = time.monotonic()
        clients[0].send("/node/fader/gain", -float(k + 21))
        clients[0].wait_for(lambda m, k=k: m[0] == "/done" and m[1][1] == -float(k + 21))
        base.append((time.monotonic() - t0) * 1000)
    for c in clients:
        c.drain()
    lats = []
    for k in range(10):
        value = -float(k + 1)
        t0 = time.monotonic()
        clients[0].send("/node/fader/gain", value)
        got_at = []
        for c in clients[1:]:
            c.wait_for(lambda m, v=value: m == ("/node/fader/gain", [v]))
            got_at.append(time.monotonic())
        lats.append((max(got_at) - t0) * 1000)
        time.sleep(0.05)
    # the originator is not echoed (it only gets its /done)
    mine = clients[0].drain()
    assert all(m[0] == "/done" for m in mine) and len(mine) == 10
    # norm form travels too, and unchanged values are suppressed
    clients[0].send("/node/fader/gain", -30.0)
    assert clients[5].wait_for(lambda m: m[0] == "/node/fader/gain/norm") == \
        ("/node/fader/gain/norm", [0.25])
    for c in clients[1:]:
        c.drain()
    clients[0].send("/node/fader/gain", -30.0)
    time.sleep(0.15)
    assert clients[3].drain() == []
    # graph changes are announced
    clients[1].send("/graph/add", "gain", "g2")
    assert clients[2].wait_for(lambda m: m[0] == "/graph/changed") == \
        ("/graph/changed", ["add", "g2", "gain"])
    print(f"\n  [measured] fader move -> 15 subscribers: median {statistics.median(lats):.2f}"
          f" ms, worst {max(lats):.2f} ms (one round trip {statistics.median(base):.2f} ms)")
    # the median, not the worst: on a loaded CI host any single fan-out can stall on the
    # scheduler (a worst of 50 ms was the bound); 50 ms or 10 round trips, whichever is more
    assert statistics.median(lats) < max(50.0, 10 * statistics.median(base)), (lats, base)
    for c in clients:
        c.close()


def test_lease_lapses_and_meters(daemon):
    d = daemon
    d.call("/graph/add", "sine", "osc", "level", -6.0)
    d.call("/graph/add", "meter", "m", "channels", 1)
    d.call("/graph/connect", "osc", "m")
    sub = Udp(d.port)
    sub.send("/subscribe", 0.5)
    sub.wait_for(lambda m: m[0] == "/done")
    sub.drain()
    time.sleep(0.8)  # silent past the lease
    d.call("/node/osc/level", -7.0)
    assert sub.drain() == []
    m = Udp(d.port)
    m.send("/meters/subscribe", "m*", 20.0)
    assert m.wait_for(lambda x: x[0] == "/done") == ("/done", ["/meters/subscribe", "m*",
                                                                20.0, 1])
    # -7 dBFS sine peak on the -60..0 dB meter scale: (60 - 7) / 60 (once the peak
    # meter has let go of the earlier -6 dB: wait for it)
    m.wait_for(lambda x: x[0] == "/meters/m/peak/1" and abs(x[1][0] - 53 / 60) < 0.01)

    def blob_ok(x):
        return x[0] == "/meters" and abs(msgpack.unpackb(x[1][0])["meters"]["m"]["peak"][0]
                                         + 7.0) < 0.1

    doc = msgpack.unpackb(m.wait_for(blob_ok)[1][0])
    assert set(doc) == {"time", "meters"} and {"peak", "rms"} <= set(doc["meters"]["m"])
    m.send("/meters/unsubscribe")
    m.wait_for(lambda x: x[0] == "/done")
    time.sleep(0.1)
    m.drain()
    time.sleep(0.2)
    assert m.drain() == []
    sub.close()
    m.close()


def test_a_reply_too_large_for_udp_is_a_fail_that_says_so(tmp_path):
    """A reply past a UDP datagram's 65507 bytes could not be sent, and the client
    heard nothing (only /status send_errors moved). It gets a /fail naming the size
    and TCP; over TCP the whole reply comes."""
    import json

    state = tmp_path / "state"
    (state / "patches").mkdir(parents=True)
    names = [f"n{i:04d}" + "x" * 59 for i in range(1100)]  # 64-character names
    doc = {"format": "mixgraph-patch", "version": 1, "sample_rate": 48000.0,
           "nodes": [{"name": n, "type": "gain", "channels": 1} for n in names],
           "connections": [], "metadata": {}}
    (state / "patches" / "big.json").write_text(json.dumps(doc))
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/patch/load", "big")
        c = Udp(d.port)
        c.send("/graph/dump")
        c.s.settimeout(5.0)
        data, _ = c.s.recvfrom(65536)
        [m] = parse_packet(data)
        assert m.address == "/fail" and m.args[0] == "/graph/dump", (m.address, m.args)
        assert "more than a UDP datagram holds (65507)" in m.args[-1]
        assert "TCP" in m.args[-1]
        t = Tcp(d.port)
        t.send("/graph/dump")
        [(addr, args)] = t.recv()
        assert addr == "/graph/dump.reply" and len(args[0]) > 65507
        assert sorted(n["name"] for n in msgpack.unpackb(args[0])["nodes"]) == names
        t.close()
        assert d.status()["send_errors"] == 0
    finally:
        d.stop()


PORTS_FLOODER = """
import socket, struct, sys, time
from mixgraph.server.osc import encode_message
port, nports, per_packet, secs = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                  float(sys.argv[4]))
one = encode_message("/node/g/gain", [float("nan")])  # fails its check: cheap to send
body = b"".join(struct.pack(">i", len(one)) + one for _ in range(per_packet))
pkt = b"#bundle\\0" + struct.pack(">II", 0, 1) + body
socks = []
for _ in range(nports):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
end = time.monotonic() + secs
sent = 0
while time.monotonic() < end:
    for s in socks:
        try:
            s.sendto(pkt, ("127.0.0.1", port))
            sent += 1
        except OSError:
            pass
    time.sleep(0.002)
print(sent, len(pkt))
"""


def test_many_source_ports_of_one_host_share_one_turn(daemon):
    """One host floods from 40 UDP source ports, each under the per-client rate limit
    (bundles of 100 failing sets): the fair queue gives the host the turn of one
    client, the arrival-order queue and each client's backlog are bounded, so another
    client's command is answered within a turn during the flood and at once after it.
    The FIFO used to hold 512 packets per port (20,480 bundles, seconds of work ahead
    of anyone else) and the backlog took 80 s to drain after a 10 s flood."""
    daemon.call("/graph/add", "gain", "g", "channels", 1)
    daemon.call("/graph/add", "gain", "h", "channels", 1)
    flood = subprocess.Popen([sys.executable, "-c", PORTS_FLOODER, str(daemon.port), "40",
                              "100", "4"], stdout=subprocess.PIPE, text=True)
    other = Udp(daemon.port)
    lat = []
    t_end = time.monotonic() + 4.0
    time.sleep(0.5)
    i = 0
    while time.monotonic() < t_end + 1.0:
        v = -1.0 - (i % 50) * 0.1
        t0 = time.monotonic()
        other.send("/node/h/gain", v)
        try:
            other.wait_for(lambda m, v=v: m[0] == "/done" and m[1][1] == pytest.approx(
                v, abs=1e-5), 8.0)
            lat.append(time.monotonic() - t0)
        except TimeoutError:
            lat.append(8.0)  # a lost datagram (kernel buffer) counts as the worst
        i += 1
        time.sleep(0.1)
    sent, size = flood.communicate(timeout=30)[0].split()
    after = []
    for k in range(5):  # the flood is over: answered at once, no backlog left
        t0 = time.monotonic()
        other.send("/node/h/gain", -20.0 - k)
        other.wait_for(lambda m, k=k: m[0] == "/done" and m[1][1] == -20.0 - k, 8.0)
        after.append(time.monotonic() - t0)
    st = status(daemon)
    print(f"\n  [measured] 40 ports flooded {sent} bundles of {size} bytes: other client's "
          f"round trip median {statistics.median(lat) * 1e3:.1f} ms, max "
          f"{max(lat) * 1e3:.0f} ms; after the flood max {max(after) * 1e3:.1f} ms; "
          f"backlog_dropped {st['backlog_dropped']}")
    assert statistics.median(lat) < 0.5, lat  # was seconds (the FIFO's 20,480 bundles)
    # was tens of seconds: the backlog drained first (the median: a backlog makes every
    # one of these slow, a loaded host may stall any single round trip for a second)
    assert statistics.median(after) < 1.0, after
    other.close()


def test_udp_backlog_is_bounded_in_bytes(daemon):
    """Six source ports send 64 kB bundles (about 2,200 failing sets each, slow to
    handle) as fast as they can: what waits is bounded in bytes per client and in all
    (it was 8,192 packets per client, 512 MB; gigabytes of resident memory), the
    excess is counted as backlog_dropped, and the server still answers."""
    daemon.call("/graph/add", "gain", "g", "channels", 1)
    pid = daemon.proc.pid
    rss0 = rss_mb(pid)
    flood = subprocess.Popen([sys.executable, "-c", PORTS_FLOODER, str(daemon.port), "6",
                              "2200", "5"], stdout=subprocess.PIPE, text=True)
    peak = rss0
    while flood.poll() is None:
        peak = max(peak, rss_mb(pid))
        time.sleep(0.2)
    sent, size = flood.communicate(timeout=30)[0].split()
    assert int(size) > 60000
    st = status(daemon)
    print(f"\n  [measured] 6 ports sent {sent} bundles of {size} bytes: resident memory "
          f"{rss0:.0f} -> peak {peak:.0f} MB; backlog_dropped {st['backlog_dropped']}")
    assert st["backlog_dropped"] > 0
    # the bound: 32 MB for all clients' queues plus the arrival-order queue's 64 kB
    assert peak - rss0 < 150, (rss0, peak)


def test_port_zero_picks_again_when_tcp_holds_the_udp_number(monkeypatch):
    """`port=0` wants one free number for UDP and TCP. When the kernel's UDP pick is
    held on TCP by someone else (a real listener here), the server picks another
    number instead of failing: CI once lost a run to exactly this."""
    from mixgraph.server.transport import ControlServer

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    real = ControlServer._fresh_udp
    calls = []

    class FirstPickTaken(socket.socket):
        def bind(self, addr):  # the kernel "picks" the number TCP already holds
            super().bind((addr[0], taken) if addr[1] == 0 else addr)

    def fresh(self, fam):
        calls.append(fam)
        s = real(self, fam)
        if len(calls) > 1:
            return s
        t = FirstPickTaken(fam, socket.SOCK_DGRAM)
        s.close()
        return t

    monkeypatch.setattr(ControlServer, "_fresh_udp", fresh)
    from mixgraph.server.engine import Engine
    from mixgraph.server.osc import Dispatcher
    from mixgraph.server.session import Session

    e = Engine(48000, 2, 2)
    s = Session(e)
    try:
        srv = ControlServer(Dispatcher(s, info={"block": 64}), "127.0.0.1", 0)
        try:
            assert len(calls) == 2, "the first pick was held on TCP: a second one is made"
            assert srv.address[1] != taken
            assert srv.tcp_address[1] == srv.address[1]
        finally:
            srv.close()
    finally:
        holder.close()
        s.close()
        e.free()


def test_an_explicit_port_held_on_tcp_is_a_clear_error():
    """An explicit port is not silently changed: the operator asked for that number."""
    from mixgraph.server.engine import Engine
    from mixgraph.server.errors import MixgraphError
    from mixgraph.server.osc import Dispatcher
    from mixgraph.server.session import Session
    from mixgraph.server.transport import ControlServer

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    e = Engine(48000, 2, 2)
    s = Session(e)
    try:
        with pytest.raises(MixgraphError, match=f"cannot listen on tcp 127.0.0.1:{taken}"):
            ControlServer(Dispatcher(s, info={"block": 64}), "127.0.0.1", taken)
    finally:
        holder.close()
        s.close()
        e.free()
