"""OSC encoding and decoding for the clients, and the two TCP framings.

Kept free of the server package (no C core needed), and fast enough for the
benchmarks: messages are built with struct, not python-osc's builder; they
are parsed with python-osc's OscMessage (bundles are flattened here).

TCP framings (the server detects which one per connection):

- OSC 1.0 "size": every packet is preceded by its length, int32 big-endian.
- OSC 1.1 SLIP (RFC 1055, double-END variant): END (0xC0) before and after
  every packet; 0xC0 in the data is sent as ESC ESC_END (0xDB 0xDC) and 0xDB
  as ESC ESC_ESC (0xDB 0xDD). A connection whose first byte is 0xC0 is SLIP.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from typing import Any

from pythonosc.osc_message import OscMessage

IMMEDIATE = (0, 1)
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970

SLIP_END = 0xC0
SLIP_ESC = 0xDB
SLIP_ESC_END = 0xDC
SLIP_ESC_ESC = 0xDD

DEFAULT_MAX_FRAME = 1 << 20  # refuse (and do not buffer) frames larger than 1 MiB


class ProtocolError(Exception):
    """Bytes that are not OSC, or a TCP stream that breaks its framing."""


# ---- encoding -----------------------------------------------------------------------

_I = struct.Struct(">i").pack
_Q = struct.Struct(">q").pack
_F = struct.Struct(">f").pack
_D = struct.Struct(">d").pack
_OSTR_CACHE: dict[str, bytes] = {}


def udp_endpoint(host: str, port: int) -> tuple[int, tuple, tuple]:
    """Where a UDP client sends, over IPv4 or IPv6 as the name resolves ("::1" and
    "localhost" included): (address family, server address, local address to bind;
    loopback for a loopback server, so replies never leave the box)."""
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    loop = ipaddress.ip_address(addr[0].split("%")[0]).is_loopback
    if family == socket.AF_INET6:
        return family, addr, ("::1" if loop else "::", 0)
    return family, addr, ("127.0.0.1" if loop else "0.0.0.0", 0)


def ostr(s: str) -> bytes:
    """An OSC string: UTF-8, NUL-terminated, padded to 4 bytes (short ones cached)."""
    b = _OSTR_CACHE.get(s)
    if b is None:
        b = s.encode("utf-8", "replace")
        b += b"\0" * (4 - len(b) % 4)
        if len(s) <= 128:
            if len(_OSTR_CACHE) > 65536:
                _OSTR_CACHE.clear()
            _OSTR_CACHE[s] = b
    return b


def encode(address: str, args: tuple | list = ()) -> bytes:
    """One OSC message; the one encoder of the project (server and clients). Python
    types choose the tags: bool T/F, None N, int i (h beyond 32 bits, d beyond 64),
    float f (d beyond float32's range), bytes b, anything else s."""
    tags = [","]
    data = []
    for a in args:
        if a is True:
            tags.append("T")
        elif a is False:
            tags.append("F")
        elif a is None:
            tags.append("N")
        elif isinstance(a, int):
            if -2147483648 <= a < 2147483648:
                tags.append("i")
                data.append(_I(a))
            elif -2**63 <= a < 2**63:
                tags.append("h")
                data.append(_Q(a))
            else:
                tags.append("d")
                data.append(_D(float(a)))
        elif isinstance(a, float):
            try:
                data.append(_F(a))
                tags.append("f")
            except OverflowError:
                data.append(_D(a))
                tags.append("d")
        elif isinstance(a, bytes | bytearray | memoryview):
            b = bytes(a)
            tags.append("b")
            data.append(_I(len(b)) + b + b"\0" * (-len(b) % 4))
        else:
            tags.append("s")
            data.append(ostr(str(a)))
    return ostr(address) + ostr("".join(tags)) + b"".join(data)


def timetag_from_unix(t: float) -> tuple[int, int]:
    """The OSC (NTP) timetag for a Unix time in seconds."""
    secs = int(t) + NTP_EPOCH_OFFSET
    frac = int((t - int(t)) * 2**32) & 0xFFFFFFFF
    return secs, frac


def encode_bundle(messages: list[tuple[str, tuple | list]] | list[bytes],
                  timetag: tuple[int, int] = IMMEDIATE) -> bytes:
    """A bundle of messages ((address, args) pairs, or already-encoded packets)."""
    out = [b"#bundle\0", struct.pack(">II", *timetag)]
    for m in messages:
        data = m if isinstance(m, bytes | bytearray) else encode(m[0], m[1])
        out.append(struct.pack(">i", len(data)))
        out.append(bytes(data))
    return b"".join(out)


# ---- decoding -----------------------------------------------------------------------

def decode(data: bytes) -> list[tuple[str, list]]:
    """The messages of a packet as (address, args), bundles flattened in order."""
    out: list[tuple[str, list]] = []
    _decode_into(bytes(data), out, 0)
    return out


def _decode_into(data: bytes, out: list, depth: int) -> None:
    if depth > 8:
        raise ProtocolError("bundles nested too deep")
    if data[:8] == b"#bundle\0":
        if len(data) < 16:
            raise ProtocolError("truncated bundle")
        pos = 16
        while pos < len(data):
            if pos + 4 > len(data):
                raise ProtocolError("truncated bundle element size")
            (size,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if size <= 0 or pos + size > len(data):
                raise ProtocolError(f"bad bundle element size {size}")
            _decode_into(data[pos:pos + size], out, depth + 1)
            pos += size
        return
    if data[:1] != b"/":
        raise ProtocolError("not an OSC message or bundle")
    try:
        m = OscMessage(data)
    except Exception as e:  # python-osc raises several types for garbage
        raise ProtocolError(f"cannot parse OSC message: {e}") from None
    out.append((m.address, list(m.params)))


# ---- TCP framing ----------------------------------------------------------------------

def frame_size(packet: bytes) -> bytes:
    """OSC 1.0 stream framing: int32 big-endian length, then the packet."""
    return struct.pack(">i", len(packet)) + packet


def frame_slip(packet: bytes) -> bytes:
    """OSC 1.1 stream framing: SLIP with an END before and after (double END)."""
    body = packet.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


def frame(packet: bytes, framing: str) -> bytes:
    if framing == "slip":
        return frame_slip(packet)
    if framing == "size":
        return frame_size(packet)
    raise ValueError(f"unknown TCP framing {framing!r} (use 'size' or 'slip')")


class SizeDecoder:
    """Incremental decoder for size-prefixed frames; refuses oversized frames
    before reading (or allocating) them."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            (n,) = struct.unpack_from(">i", self.buf, 0)
            if n < 0 or n > self.max_frame:
                raise ProtocolError(f"frame size {n} outside 0..{self.max_frame}")
            if len(self.buf) < 4 + n:
                break
            out.append(bytes(self.buf[4:4 + n]))
            del self.buf[:4 + n]
        return [f for f in out if f]


class SlipDecoder:
    """Incremental SLIP decoder (single or double END; empty frames skipped)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.cur = bytearray()
        self.esc = False
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        cur = self.cur
        for b in data:
            if self.esc:
                self.esc = False
                if b == SLIP_ESC_END:
                    cur.append(SLIP_END)
                elif b == SLIP_ESC_ESC:
                    cur.append(SLIP_ESC)
                else:
                    raise ProtocolError(f"bad SLIP escape 0xdb 0x{b:02x}")
            elif b == SLIP_END:
                if cur:
                    out.append(bytes(cur))
                    cur.clear()
            elif b == SLIP_ESC:
                self.esc = True
            else:
                cur.append(b)
            if len(cur) > self.max_frame:
                raise ProtocolError(f"SLIP frame longer than {self.max_frame} bytes")
        return out


def decoder(framing: str, max_frame: int = DEFAULT_MAX_FRAME) -> SizeDecoder | SlipDecoder:
    if framing == "slip":
        return SlipDecoder(max_frame)
    if framing == "size":
        return SizeDecoder(max_frame)
    raise ValueError(f"unknown TCP framing {framing!r} (use 'size' or 'slip')")


# ---- replies ----------------------------------------------------------------------------

REPLY_ADDRESSES = ("/done", "/fail")


PATTERN_CHARS = frozenset("*?[]{}")


def pattern_regex(pattern: str) -> re.Pattern:
    """An OSC 1.0 address pattern (with OSC 1.1's `//`) as a regular expression."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("//", i):
            out.append("(?:/[^/]+)*/")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = pattern.find("]", i)
            body = pattern[i + 1:j if j > 0 else len(pattern)]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + re.sub(r"([\\^\]])", r"\\\1", body) + "]")
            i = j + 1 if j > 0 else len(pattern)
            continue
        elif ch == "{":
            j = pattern.find("}", i)
            alts = pattern[i + 1:j if j > 0 else len(pattern)].split(",")
            out.append("(?:" + "|".join(re.escape(a) for a in alts) + ")")
            i = j + 1 if j > 0 else len(pattern)
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def is_reply_to(address: str, sent: str, rargs: list) -> bool:
    """Whether a message (address, rargs) answers a request sent to `sent`; a query on
    an address pattern is answered on each matching address."""
    if address in REPLY_ADDRESSES:
        return bool(rargs) and rargs[0] == sent
    if address == sent or address == sent + ".reply":
        return True
    if sent == "/sync":
        return address == "/synced"
    if PATTERN_CHARS & set(sent) or "//" in sent:
        return pattern_regex(sent).match(address) is not None
    return False


_REPEATABLE = frozenset(("/status", "/info", "/catalog", "/graph/dump", "/sync", "/patch/list",
                         "/subscribe", "/dump", "/hello", "/history"))


def needs_proof(reply: tuple[str, list]) -> bool:
    """Whether a reply is the server refusing an unproven UDP address (a reply too large
    to send to it, or a stream it will not start): the /hello round trip fixes that."""
    addr, rargs = reply
    return (addr == "/fail" and bool(rargs) and isinstance(rargs[-1], str)
            and "/hello" in rargs[-1])


def is_repeatable(address: str, args: tuple | list) -> bool:
    """Whether sending a request twice does no harm: queries (no arguments), parameter
    sets (/node/<name>/<param>[/norm] <value>), and reads such as /status or /sync."""
    if not args or address in _REPEATABLE:
        return True
    return address.startswith("/node/") and len(args) == 1 and not address.endswith("/touch")


def pairs(args: list) -> dict[str, Any]:
    """key value key value ... as a dict (for /status.reply and /info.reply)."""
    return dict(zip(args[::2], args[1::2], strict=False))
