"""The browser control surface's transport: HTTP/1.1 and WebSocket (RFC 6455) on one
listener, inside the control thread's selector loop (no thread per client, no asyncio).

`mixgraph serve --http [<port>]` opens it. A connection starts as HTTP: `GET /` (and the
other files bundled in server/web/) answers the file from the package, anything else
404/405; `GET /osc` with an Upgrade to websocket switches the connection to WebSocket.
From then on one binary message is one OSC packet (a message or a bundle, as osc.js's
WebSocket port sends them); it enters the same dispatcher as UDP and TCP, and replies,
feedback and meters come back as binary messages. A WebConn is a TcpConn (a Peer of
kind "ws") whose framing is WebSocket, so the TCP limits apply unchanged: connection
caps per host and in all, the idle timeout, the per-client and total output bounds, the
rate limit, the frame size limit. The server pings each WebSocket client every
--http-ping seconds (20); one whose pong is not back by the next ping is closed, which
frees its subscriptions and touches (a phone that left the Wi-Fi sends no FIN). Any input
since the ping counts as an answer (a page under load may queue its pong behind its own
messages).

Parsing is done here, sans-I/O style, on the connection's input buffer: the request head
is bounded (MAX_HEAD bytes, MAX_HEADERS lines), a frame's length is checked against
--max-frame before anything is buffered for it, client frames must be masked, text
frames (the surface speaks binary OSC only), reserved bits and unknown opcodes close the
connection with the RFC's status code (so do close frames with a 1-byte body or a code
no endpoint may send). Lines may end in CRLF or a bare LF; only GET opens a WebSocket.
When the server has an access token (always when it listens beyond loopback), the
handshake must carry it as `?token=` (percent-encoded; query_token). Without one, only a
Host that names this server is served, page and WebSocket alike (DNS rebinding:
names_this_server). On a read-only surface browsers may hold half of the connection
slots (WebConn.no_room; what they may send is server/readonly.py). Each such
close is counted (`bad_http` in /status) and logged like other per-source warnings. Static files
are a fixed table read from the package at start: a request names a key of that table or
gets 404, so no path can reach outside it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import logging
import re
import socket
import time
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from .conn import TcpConn
from .osc import Peer
from .readonly import viewer_share

if TYPE_CHECKING:
    from .transport import ControlServer

log = logging.getLogger("mixgraph.web")

MAX_HEAD = 8192  # bytes in a request line and its headers
MAX_HEADERS = 64
LINGER_S = 2.0  # how long a closing connection's input is still read and discarded
HEAD_TIMEOUT_S = 10.0  # a request head must be complete this long after the connection
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 5.6.2)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".ico": "image/x-icon", ".json": "application/json"}
_REASONS = {200: "OK", 101: "Switching Protocols", 304: "Not Modified", 400: "Bad Request",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            426: "Upgrade Required", 431: "Request Header Fields Too Large"}


def load_files() -> dict[str, tuple[bytes, str, str]]:
    """The bundled files: URL path -> (content, content type, ETag). `/` is index.html."""
    out: dict[str, tuple[bytes, str, str]] = {}
    root = resources.files("mixgraph.server") / "web"
    for f in root.iterdir():
        name = f.name
        ext = name[name.rfind("."):] if "." in name else ""
        if not f.is_file() or ext not in TYPES:
            continue
        data = f.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        out["/" + name] = (data, TYPES[ext], etag)
    if "/index.html" in out:
        out["/"] = out["/index.html"]
    return out


def qr_text(url: str) -> str:
    """The URL as a QR code in terminal block characters (segno; a light-on-dark
    terminal's full block is a light module), for a phone's camera; "" without segno."""
    try:
        import segno
    except ImportError:
        return ""
    out = io.StringIO()
    segno.make(url, error="l").terminal(out=out, compact=True)
    return out.getvalue()


def query_token(query: str) -> str:
    """The `token` of a request's query, percent-decoded only: a `+` stays a `+` (the
    banner's URL percent-encodes the token, and one typed by hand keeps its `+`), where
    a form decoder (parse_qs) would make it a space. "" when there is none."""
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if sep and unquote(name) == "token":
            try:
                return unquote(value, errors="strict")
            except UnicodeDecodeError:
                return ""
    return ""


def token_url(base: str, token: str) -> str:
    """The surface's URL with its token as the query, percent-encoded (RFC 3986) so that
    any token survives: `s3cr+t/=` is `?token=s3cr%2Bt%2F%3D`."""
    return base + (f"?token={quote(token, safe='')}" if token else "")


def names_this_server(host: str, server: ControlServer, sock: socket.socket) -> bool:
    """Whether a Host header names this server: localhost, a loopback address, the
    listen address, the address the connection reached, or an IP literal of one of this
    machine's interfaces (with or without a port)."""
    name = host.strip().lower()
    if name.startswith("["):
        name, sep, rest = name[1:].partition("]")
        if not sep or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return False
    elif name.count(":") == 1:
        name, _, port = name.partition(":")
        if not port.isdigit():
            return False
    elif ":" in name:
        return False
    if name.endswith("."):
        name = name[:-1]
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast:
        return False
    mine = {server.http_address[0] if server.http_address else ""}
    try:
        mine.add(sock.getsockname()[0])
    except OSError:
        pass
    if str(ip) in mine:
        return True
    return _local_ip(str(ip))


def _local_ip(ip: str) -> bool:
    """Whether an address belongs to an interface of this machine now: one can bind to
    it (asked each time, no cache: interfaces come and go; a bind costs microseconds,
    and only a request whose Host is an address of no loopback asks)."""
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
    except OSError:
        return False
    return True


def close_frame_error(payload: bytes) -> str:
    """What is wrong with a client's close frame (RFC 6455 sections 5.5.1, 7.4), or "":
    a body of one byte, a status code no endpoint may send (below 1000, 1004-1006,
    1015-2999, 5000 and up), a reason that is not UTF-8."""
    if not payload:
        return ""
    if len(payload) == 1:
        return "a close frame with a 1-byte body"
    code = int.from_bytes(payload[:2], "big")
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return f"close code {code} may not be sent"
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return "close reason is not UTF-8"
    return ""


def ws_accept(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   b"abcdefghijklmnopqrstuvwxyz")


def not_a_request_line(buf: bytearray) -> str | None:
    """Why the bytes so far cannot start an HTTP request (None: they may), so that a
    client speaking something else is answered at once rather than after the head
    timeout. A request line starts with a method token (RFC 9110 section 9.1), after
    at most a few empty lines (RFC 9112 section 2.2)."""
    start = bytes(buf[:64]).lstrip(b"\r\n")
    if not start:
        return None
    if start[0] == 0x16 and (len(start) < 2 or start[1] == 0x03):
        return "a TLS handshake: this port speaks plain HTTP (http://, or a TLS proxy in front)"
    method = start.split(b" ", 1)[0]
    if any(c not in _TCHAR for c in method) or (b" " not in start and len(method) > 32):
        return "not an HTTP request"
    return None


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def _unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    m = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ m).to_bytes(n, "little")


class WebConn(TcpConn):
    """One HTTP connection; after an Upgrade on /osc, a WebSocket OSC client."""

    def __init__(self, server: ControlServer, sock, addr) -> None:
        super().__init__(server, sock, addr)
        self.key = ("ws", addr[0], addr[1])
        self.mode = "http"  # then "ws"
        self.closing = False  # close once the output is sent (HTTP responses, close frames)
        self.fragments: bytearray | None = None  # a fragmented message being assembled
        self.linger_until = 0.0  # closing: the time the connection is closed regardless
        self.head_by = time.monotonic() + HEAD_TIMEOUT_S  # slowloris: no head by then, closed
        self.ping_at = 0.0  # WebSocket: when the next heartbeat ping is due
        self.ping_out: bytes | None = None  # the payload of a ping not answered yet
        self.peer = Peer(self.key, self.send_packet, mtu=60000, kind="ws",
                         label=f"ws {addr[0]}:{addr[1]}", backlog=self.backlog)

    @classmethod
    def no_room(cls, server: ControlServer, host: str) -> str:
        """On a read-only surface, every browser is a viewer: viewers together may hold
        half of the connection slots (--max-conns) and half of one address's
        (--max-conns-per-host), so that a control surface can still connect. Why a new
        one may not, or ""."""
        mine = [c for c in server.conns.values() if isinstance(c, cls)]
        room = viewer_share(server.max_conns)
        if len(mine) >= room:
            return f"{room} read-only browser connections open (half of --max-conns)"
        room = viewer_share(server.limits.max_conns_per_host)
        if sum(1 for c in mine if c.addr[0] == host) >= room:
            return (f"{room} read-only browser connections from this address "
                    "(half of --max-conns-per-host)")
        return ""

    # ---- output ------------------------------------------------------------------
    def _queue(self, data: bytes) -> None:
        if self.closed:
            return
        self.outbuf += data
        self.server.out_bytes += len(data)
        self.flush()

    def send_packet(self, data: bytes) -> None:
        if self.mode == "ws" and not self.closing:
            # the journal: edits on disk before replies (ControlServer.journal_first)
            self._queue(ws_frame(0x2, self.server.journal_first(data)))

    def flush(self) -> None:
        super().flush()
        if self.closing and not self.closed and not self.outbuf and not self.linger_until:
            # a lingering close: stop sending, go on reading (and discarding) until the
            # client closes or LINGER_S pass, so that input still in flight does not turn
            # the close into a reset that loses the response (RFC 7230 section 6.6)
            self.linger_until = time.monotonic() + LINGER_S
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self.server.close_conn(self)

    def _respond(self, status: int, body: bytes = b"", ctype: str = "text/plain; charset=utf-8",
                 extra: tuple[str, ...] = (), head_only: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}", *extra]
        if status != 101:
            lines += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
                      "X-Content-Type-Options: nosniff", "Connection: close"]
        self._queue(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body))
        if status != 101:
            self.closing = True
            self.flush()

    def expired(self, now: float) -> bool:
        """For the server's once-a-second check: True when this connection should be
        closed now (its lingering close ran out; a request head that never completed)."""
        if self.linger_until:
            return now > self.linger_until
        if self.mode == "http" and now > self.head_by:
            self.server.web_bad(self, f"no complete request after {HEAD_TIMEOUT_S:g} s")
            return True
        if self.mode == "ws" and not self.closing and now >= self.ping_at:
            # the heartbeat: a ping each period; the pong must be back by the next one (a
            # browser answers by itself; a phone gone from the Wi-Fi does not, and its
            # socket would otherwise hold its subscriptions and touches until TCP gives up)
            if self.ping_out is not None and self.last_in < self.ping_at - \
                    self.server.limits.http_ping:  # nothing at all heard since that ping
                self.server.ratelog.warn(self.addr[0], "%s did not answer the ping in %g s; "
                                         "closed", self.peer.label,
                                         self.server.limits.http_ping)
                self.server.counters.idle_closed += 1
                return True
            self.ping_out = int(now * 1000).to_bytes(8, "big")
            self.ping_at = now + self.server.limits.http_ping
            self._queue(ws_frame(0x9, self.ping_out))
        return False

    def _bad(self, why: str, status: int = 400) -> None:
        """Malformed HTTP: answer the status, count it, log (at most once a second)."""
        self.server.web_bad(self, why)
        self._respond(status, (why + "\n").encode())

    def _ws_fail(self, code: int, why: str) -> None:
        """A WebSocket protocol error: a close frame with the status, then close."""
        self.server.web_bad(self, why)
        self._ws_close(code, why)

    def _ws_close(self, code: int, why: str = "") -> None:
        if self.closing:
            return
        self._queue(ws_frame(0x8, code.to_bytes(2, "big") + why.encode()[:120]))
        self.closing = True
        self.inbuf.clear()
        self.flush()

    # ---- input -------------------------------------------------------------------
    def frames(self, limit: int = 1 << 30):
        """OSC packets from complete binary messages (answering HTTP on the way)."""
        if self.closing:
            self.inbuf.clear()
            return
        if self.mode == "http":
            self._http()
            if self.mode != "ws":
                return
        yield from self._ws_frames(limit)

    def _http(self) -> None:
        buf = self.inbuf
        # empty lines before a request line are ignored (RFC 9112 section 2.2)
        lead = 0
        if buf[:1] in (b"\r", b"\n"):
            first = bytes(buf[:16])
            lead = len(first) - len(first.lstrip(b"\r\n"))
        if lead:
            del buf[:lead]
        # the head ends at an empty line; a bare LF ends a line as CRLF does (RFC 9112
        # section 2.2 lets a server take LF alone, as most do), so such a request is
        # answered at once instead of waiting out the head timeout
        ends = [(i, n) for i, n in ((buf.find(b"\r\n\r\n"), 4), (buf.find(b"\n\n"), 2),
                                    (buf.find(b"\n\r\n"), 3)) if i >= 0]
        if not ends:
            if len(buf) > MAX_HEAD:
                self._bad("request head too large", 431)
            elif (why := not_a_request_line(buf)) is not None:
                self._bad(why)
            return
        end, n = min(ends)
        if end > MAX_HEAD:
            self._bad("request head too large", 431)
            return
        head = bytes(buf[:end]).decode("latin-1")
        del buf[:end + n]
        lines = [x[:-1] if x.endswith("\r") else x for x in head.split("\n")]
        if len(lines) > MAX_HEADERS + 1:
            self._bad("too many header lines", 431)
            return
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._bad("malformed request line")
            return
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(name):  # a name is a token: no space, no fold
                self._bad("malformed header line")
                return
            headers[name.lower()] = value.strip()
        path = urlsplit(target).path if target.startswith("/") else ""
        if not path:
            self._bad("bad request target")
            return
        if method not in ("GET", "HEAD"):
            self._respond(405, b"GET or HEAD only\n", extra=("Allow: GET, HEAD",))
            return
        why = self._foreign_host(headers.get("host"))
        if why:
            self.server.web_bad(self, why)
            self._respond(403, (why + "\n").encode())
            return
        if path == "/osc":
            if method != "GET":  # only a GET may open a WebSocket (RFC 6455 section 4.1)
                self._respond(405, b"a WebSocket is opened with GET\n", extra=("Allow: GET",))
                return
            self._upgrade(headers, urlsplit(target).query)
            return
        f = self.server.web_files.get(path)
        if f is None:
            self._respond(404, b"not found\n")
            return
        data, ctype, etag = f
        cache = ("Cache-Control: no-cache", f"ETag: {etag}")
        if headers.get("if-none-match") == etag:
            self._respond(304, extra=cache)
            return
        self._respond(200, data, ctype, extra=cache, head_only=method == "HEAD")

    def _foreign_host(self, host: str | None) -> str:
        """DNS rebinding: without a token, only a Host that names this server is served
        (the page and the WebSocket); "" when it does, else why not. A page of
        http://evil.example:8080 whose name the attacker then points at 127.0.0.1 talks
        to this server as a same-origin page (its Origin matches its Host): only the
        Host, which keeps the attacker's name, tells it apart. With a token, the token
        is what protects."""
        srv = self.server
        if srv.http_token:
            return ""
        if host is None:
            return "no Host header (a server without --http-token answers only requests " \
                   "that name it)"
        if names_this_server(host, srv, self.sock):
            return ""
        port = srv.http_address[1] if srv.http_address else 0
        return (f"Host {host[:80]!r} is not this server: open it as http://127.0.0.1:{port}/ "
                f"or http://localhost:{port}/ (another name needs --http-token)")

    def _upgrade(self, h: dict[str, str], query: str) -> None:
        key = h.get("sec-websocket-key", "")
        try:
            ok_key = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            ok_key = False
        if (h.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in h.get("connection", "").lower().replace(" ", "").split(",")
                or not ok_key):
            self._bad("not a WebSocket handshake", 426 if not ok_key else 400)
            return
        if h.get("sec-websocket-version") != "13":
            self.server.web_bad(self, "WebSocket version is not 13")
            self._respond(426, b"WebSocket version 13 only\n", extra=("Sec-WebSocket-Version: 13",))
            return
        origin = h.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != h.get("host", "").lower():
            # a page from another site opening a socket here with the user's browser
            # (cross-site WebSocket hijacking): only the surface's own pages may
            self.server.web_bad(self, f"foreign Origin {origin[:80]!r}")
            self._respond(403, b"foreign Origin\n")
            return
        want = self.server.http_token
        if want:
            got = query_token(query)
            if not hmac.compare_digest(got.encode(), want.encode()):
                self.server.web_bad(self, "missing or wrong token")
                self._respond(403, b"missing or wrong token: open the URL with ?token=\n")
                return
        self._respond(101, extra=("Upgrade: websocket", "Connection: Upgrade",
                                  f"Sec-WebSocket-Accept: {ws_accept(key)}"))
        self.mode = "ws"
        self.ping_at = time.monotonic() + self.server.limits.http_ping
        log.info("%s: WebSocket open", self.peer.label)

    def _ws_frames(self, limit: int):
        buf = self.inbuf
        maxf = self.server.max_frame
        while buf and not self.closing:
            if limit <= 0:
                return
            if self.bucket is not None and self.bucket.refill(time.monotonic()) < 1.0:
                self.paused = True
                return
            if len(buf) < 2:
                return
            b0, b1 = buf[0], buf[1]
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if b0 & 0x70:
                self._ws_fail(1002, "reserved bits set")
                return
            if not b1 & 0x80:
                self._ws_fail(1002, "client frame not masked")
                return
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, pos = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, pos = int.from_bytes(buf[2:10], "big"), 10
            if opcode >= 8 and (n > 125 or not fin):
                self._ws_fail(1002, "bad control frame")
                return
            have = len(self.fragments) if self.fragments is not None else 0
            if n + have > maxf:
                self.server.counters.oversized += 1
                self._ws_fail(1009, f"a {n + have}-byte message (max {maxf})")
                return
            if len(buf) < pos + 4 + n:
                return
            mask = bytes(buf[pos:pos + 4])
            payload = _unmask(bytes(buf[pos + 4:pos + 4 + n]), mask)
            del buf[:pos + 4 + n]
            # every frame is paid for, pings and fragments as data: an endless stream
            # of empty pings (each answered) or continuation frames used to pass the
            # rate limit and the per-turn share for nothing (attack3 A6)
            limit -= 1
            if self.bucket is not None:
                self.bucket.tokens -= 1.0
            if opcode == 0x8:
                why = close_frame_error(payload)
                if why:
                    self._ws_fail(1007 if why.startswith("close reason") else 1002, why)
                else:
                    self._ws_close(1000)
                return
            if opcode == 0x9:
                self._queue(ws_frame(0xA, payload))
                continue
            if opcode == 0xA:
                if payload == self.ping_out:
                    self.ping_out = None
                continue
            if opcode == 0x1 or (opcode == 0x0 and self.fragments is None) or opcode > 2 \
                    or (opcode == 0x2 and self.fragments is not None):
                why = "text frames are not OSC: send binary" if opcode == 1 else \
                    f"unexpected opcode {opcode}"
                self._ws_fail(1003 if opcode == 1 else 1002, why)
                return
            if not fin:
                if self.fragments is None:
                    self.fragments = bytearray()
                self.fragments += payload
                continue
            if self.fragments is not None:
                self.fragments += payload
                payload, self.fragments = bytes(self.fragments), None
            if payload:
                yield payload
        self.paused = False
