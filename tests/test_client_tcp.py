"""The client's TCP transport and framings, against a small fake server written
here (independently of clients/protocol.py): OSC 1.0 size-prefixed frames and
OSC 1.1 SLIP frames, detected per connection from the first byte (0xC0 = SLIP),
replies on the same connection. Also the client's encoder against python-osc."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from mixgraph.clients import AsyncClient, Client, MixgraphFail, MixgraphTimeout
from mixgraph.clients.protocol import (
    ProtocolError,
    SizeDecoder,
    SlipDecoder,
    decode,
    encode,
    encode_bundle,
    frame_slip,
)

BIG = bytes(range(256)) * 400  # 100 kB with every byte value (0xC0 and 0xDB included)


def _msg(address: str, args: list) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, bytes):
            b.add_arg(a, "b")
        elif isinstance(a, float):
            b.add_arg(a, "f")
        elif isinstance(a, int):
            b.add_arg(a, "i")
        else:
            b.add_arg(a, "s")
    return b.build().dgram


def _slip_unescape(body: bytes) -> bytes:
    out, esc = bytearray(), False
    for b in body:
        if esc:
            out.append({0xDC: 0xC0, 0xDD: 0xDB}[b])
            esc = False
        elif b == 0xDB:
            esc = True
        else:
            out.append(b)
    return bytes(out)


def _slip_escape(data: bytes) -> bytes:
    out = bytearray([0xC0])
    for b in data:
        if b == 0xC0:
            out += b"\xdb\xdc"
        elif b == 0xDB:
            out += b"\xdb\xdd"
        else:
            out.append(b)
    out.append(0xC0)
    return bytes(out)


class FakeServer:
    """Accepts connections; answers each message: /done <address> <args...>,
    queries (no args) with 0.5, /bad with /fail, /big with a 100 kB blob,
    /subscribe with /done and then one feedback message."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.framings: list[str] = []
        self.received: list[tuple[str, list]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        framing = None
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                if framing is None:
                    framing = "slip" if buf[0] == 0xC0 else "size"
                    self.framings.append(framing)
                packets = []
                if framing == "size":
                    while len(buf) >= 4:
                        (n,) = struct.unpack(">i", buf[:4])
                        if len(buf) < 4 + n:
                            break
                        packets.append(buf[4:4 + n])
                        buf = buf[4 + n:]
                else:
                    *frames, buf = buf.split(b"\xc0")
                    packets = [_slip_unescape(f) for f in frames if f]
                for p in packets:
                    m = OscMessage(p)
                    self.received.append((m.address, list(m.params)))
                    for addr, args in self._answer(m.address, list(m.params)):
                        out = _msg(addr, args)
                        conn.sendall(_slip_escape(out) if framing == "slip"
                                     else struct.pack(">i", len(out)) + out)

    @staticmethod
    def _answer(address: str, args: list) -> list[tuple[str, list]]:
        if address == "/bad":
            return [("/fail", [address, "thing", "bad thing"])]
        if address == "/big":
            return [("/big.reply", [BIG])]
        if address == "/subscribe":
            return [("/done", [address]), ("/node/g/gain", [-3.0])]
        if address.startswith("/node/") and not args:
            return [(address, [0.5])]
        return [("/done", [address, *args])]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake():
    s = FakeServer()
    yield s
    s.close()


@pytest.mark.parametrize("framing", ["size", "slip"])
def test_tcp_framings_round_trip(fake, framing):
    with Client("127.0.0.1", fake.port, transport="tcp", framing=framing) as c:
        assert c.set("g", "gain", -6.0) == pytest.approx(-6.0)
        assert c.get("g", "gain") == 0.5
        assert c.set_norm("g", "gain", 0.75) == 0.75
        # a blob with 0xC0 / 0xDB in it survives SLIP escaping both ways; 100 kB arrives
        # in several recv() calls and is reassembled
        assert c.call("/echo", BIG) == ["/echo", BIG]
        assert c.request("/big") == ("/big.reply", [BIG])
        with pytest.raises(MixgraphFail) as e:
            c.call("/bad", 1)
        assert (e.value.address, e.value.keys, e.value.reason) == ("/bad", ["thing"], "bad thing")
    assert fake.framings == [framing]
    assert ("/node/g/gain", [pytest.approx(-6.0)]) in fake.received


@pytest.mark.parametrize("framing", ["size", "slip"])
def test_tcp_many_packets_in_one_write(fake, framing):
    with Client("127.0.0.1", fake.port, transport="tcp", framing=framing) as c:
        c.send_many([encode("/x", [i]) for i in range(500)])
        got = [c.receive() for _ in range(500)]
    assert got == [("/done", ["/x", i]) for i in range(500)]


def test_tcp_subscribe_callback_gets_feedback_not_replies(fake):
    seen = []
    ev = threading.Event()

    def cb(addr, args):
        seen.append((addr, args))
        ev.set()

    with Client("127.0.0.1", fake.port, transport="tcp") as c:
        assert c.subscribe(cb, lease_s=10) == ["/subscribe"]
        assert ev.wait(2)
        assert c.set("g", "gain", -1.0) == -1.0  # request works while the reader runs
    assert seen == [("/node/g/gain", [-3.0])]


@pytest.mark.parametrize("framing", ["size", "slip"])
def test_async_tcp(fake, framing):
    async def main():
        fb = asyncio.Queue()
        async with await AsyncClient.open("127.0.0.1", fake.port, transport="tcp",
                                          framing=framing) as c:
            assert await c.set("g", "gain", -6.0) == pytest.approx(-6.0)
            # concurrent requests are matched to their replies
            vals = await asyncio.gather(*[c.set("g", f"p{i}", float(i)) for i in range(20)])
            assert vals == [float(i) for i in range(20)]
            assert await c.get("g", "gain") == 0.5
            with pytest.raises(MixgraphFail):
                await c.call("/bad")
            await c.subscribe(lambda a, args: fb.put_nowait((a, args)), lease_s=5)
            assert await asyncio.wait_for(fb.get(), 30) == ("/node/g/gain", [-3.0])
    asyncio.run(main())


def test_encode_matches_python_osc():
    for address, args in [("/a", []), ("/node/g/gain", [-6.0]), ("/graph/add", ["gain", "g"]),
                          ("/x", [1, 2**40, "s", b"\x00\xc0\xdb", True, False, None])]:
        m = OscMessage(encode(address, args))
        assert m.address == address
        assert list(m.params) == [pytest.approx(a) if isinstance(a, float) else a for a in args]


def test_decoders_incremental_and_limits():
    pkts = [encode("/a", [i, "x" * i]) for i in range(50)]
    stream = b"".join(frame_slip(p) for p in pkts)
    d = SlipDecoder()
    got = []
    for i in range(0, len(stream), 7):  # byte-by-byte-ish arrival
        got += d.feed(stream[i:i + 7])
    assert got == pkts
    # a single END between frames (not double) is accepted too
    assert SlipDecoder().feed(b"\xc0" + b"\xc0".join(pkts[:3]) + b"\xc0") == pkts[:3]
    sd = SizeDecoder(max_frame=1024)
    stream = b"".join(struct.pack(">i", len(p)) + p for p in pkts)
    got = []
    for i in range(0, len(stream), 5):
        got += sd.feed(stream[i:i + 5])
    assert got == pkts
    with pytest.raises(ProtocolError):
        SizeDecoder(max_frame=1024).feed(struct.pack(">i", 1 << 30))  # refused before reading
    with pytest.raises(ProtocolError):
        SlipDecoder(max_frame=16).feed(b"\xc0" + b"a" * 17)


def test_bundle_decode_flattens():
    b = encode_bundle([("/a", [1]), encode_bundle([("/b", [2.0])])])
    assert decode(b) == [("/a", [1]), ("/b", [2.0])]
    with pytest.raises(ProtocolError):
        decode(b"garbage")


def test_udp_retries_safe_requests_only():
    """A UDP server that ignores the first copy of every message: queries and
    parameter sets are sent again and succeed; /graph/add is never repeated."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    seen: dict[bytes, int] = {}
    stop = threading.Event()

    def serve():
        srv.settimeout(0.05)
        while not stop.is_set():
            try:
                data, addr = srv.recvfrom(65536)
            except TimeoutError:
                continue
            seen[data] = seen.get(data, 0) + 1
            if seen[data] >= 2:  # drop the first copy
                m = OscMessage(data)
                srv.sendto(_msg("/done", [m.address, *m.params]), addr)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with Client("127.0.0.1", srv.getsockname()[1], timeout=0.6, retries=2) as c:
            assert c.set("g", "gain", -6.0) == -6.0
            with pytest.raises(TimeoutError):
                c.add("gain", "g")
        assert seen[encode("/graph/add", ["gain", "g"])] == 1
        assert seen[encode("/node/g/gain", [-6.0])] == 2
    finally:
        stop.set()
        th.join()
        srv.close()


class _ShortDump(FakeServer):
    """Announces a state dump of `count` messages and sends `sent` of them."""

    count, sent = 3, 1

    def _answer(self, address: str, args: list) -> list[tuple[str, list]]:
        if address == "/subscribe":
            return [("/done", [address, 10.0, self.count]),
                    *[(f"/node/g{i}/gain", [-3.0]) for i in range(self.sent)]]
        return FakeServer._answer(address, args)


def test_subscribe_fails_when_the_state_dump_is_short():
    """Issue 12 defect 1: Client.subscribe() reported success although the state dump
    never came; `/done /subscribe <lease> <count>` lets it check (fails on the old
    client, which returned after /done)."""
    s = _ShortDump()
    try:
        with Client("127.0.0.1", s.port, transport="tcp", timeout=1.0) as c:
            with pytest.raises(MixgraphTimeout, match="1 of 3"):
                c.subscribe(lambda a, args: None, lease_s=10)

        async def main():
            c = await AsyncClient.open("127.0.0.1", s.port, transport="tcp", timeout=1.0)
            try:
                with pytest.raises(MixgraphTimeout, match="1 of 3"):
                    await c.subscribe(lambda a, args: None, lease_s=10)
            finally:
                await c.close()

        asyncio.run(main())
        s.sent = 3  # the whole dump: subscribe succeeds and every message was delivered
        seen = []
        with Client("127.0.0.1", s.port, transport="tcp", timeout=1.0) as c:
            assert c.subscribe(lambda a, args: seen.append(a), lease_s=10)[:3] == \
                ["/subscribe", 10.0, 3]
        assert seen == ["/node/g0/gain", "/node/g1/gain", "/node/g2/gain"]
    finally:
        s.close()
