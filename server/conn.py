"""A client connection over TCP (control thread): OSC 1.0 size-prefix or OSC 1.1
SLIP framing in, an output buffer with bounds out, a token bucket for its rate
(server/budget.py).

TcpConn is the Peer of one TCP client of the ControlServer (server/transport.py),
and the base of a browser's WebSocket connection (server/web.py); both modules
import it from here, so neither imports the other's module at load."""

from __future__ import annotations

import logging
import re
import socket
import time
from typing import TYPE_CHECKING

from .budget import Bucket
from .osc import Peer

if TYPE_CHECKING:  # the server hands itself in
    from .transport import ControlServer

log = logging.getLogger("mixgraph.transport")

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
OUT_HIGH = 1 << 20  # stop reading a TCP client while this much output is unsent
OUT_MAX = 16 << 20  # a client this far behind is disconnected
_ENDS = re.compile(rb"\xc0+")  # a run of SLIP ENDs: double ENDs, keep-alives
_EMPTY = re.compile(rb"(?:\0\0\0\0)+")  # a run of empty size-prefixed frames: keep-alives
END_BYTES = 64  # SLIP ENDs between frames that cost one token of the rate limit


def slip_encode(data: bytes) -> bytes:
    """A double-END SLIP frame (RFC 1055, as OSC 1.1 uses it)."""
    return b"\xc0" + data.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def slip_decode(data: bytes) -> bytes:
    """A SLIP frame's bytes unescaped, in C (bytes.replace): a byte-by-byte loop in
    Python cost 0.13 s of control-thread CPU per MB of frames made of escapes (attack7).
    In a well-formed frame every ESC starts ESC ESC_END or ESC ESC_ESC, so the first
    replace finds exactly the escaped ENDs and the second exactly the escaped ESCs; an
    ESC followed by anything else (RFC 1055 leaves it undefined) is kept as it is."""
    if b"\xdb" not in data:
        return data
    return data.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")


class TcpConn:
    def __init__(self, server: ControlServer, sock: socket.socket, addr) -> None:
        self.server = server
        self.sock = sock
        self.addr = addr
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.mode: str | None = None  # "len" or "slip"
        self.skipping = False  # inside an oversized SLIP frame
        self.paused = False
        self.closed = False
        self.key = ("tcp", addr[0], addr[1])
        self.bucket = Bucket(server.rate, server.burst) if server.rate else None
        self.last_in = time.monotonic()
        self.peer = Peer(self.key, self.send_packet, mtu=60000, kind="tcp",
                         label=f"tcp {addr[0]}:{addr[1]}", backlog=self.backlog)

    def backlog(self) -> int:
        """Bytes queued for this client and not yet taken by the kernel."""
        return len(self.outbuf)

    def send_packet(self, data: bytes) -> None:
        if self.closed:
            return
        data = self.server.journal_first(data)  # the journal written before it is queued
        before = len(self.outbuf)
        if self.mode == "slip":
            self.outbuf += slip_encode(data)
        else:
            self.outbuf += len(data).to_bytes(4, "big") + data
        self.server.out_bytes += len(self.outbuf) - before
        self.flush()

    def flush(self) -> None:
        if self.closed or not self.outbuf:
            return
        try:
            n = self.sock.send(self.outbuf)
            del self.outbuf[:n]
            self.server.out_bytes -= n
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.server.close_conn(self)
            return
        if len(self.outbuf) > OUT_MAX:
            self.server.ratelog.warn(self.addr[0], "%s is not reading its replies; "
                                     "disconnected", self.peer.label)
            self.server.counters.slow_closed += 1
            self.server.close_conn(self)
            return
        if self.server.out_bytes > self.server.limits.max_output:
            self.server.shed_output()
            if self.closed:
                return
        self.server.update_interest(self)

    def frames(self, limit: int = 1 << 30):
        """Complete frames from the input buffer (stops early when rate limited)."""
        buf = self.inbuf
        maxf = self.server.max_frame
        while buf:
            if limit <= 0:
                return
            limit -= 1
            if self.bucket is not None and self.bucket.refill(time.monotonic()) < 1.0:
                self.paused = True
                return
            if self.mode is None:
                # SLIP starts with END (double-END senders) or with the packet itself
                # ('/' or '#'); a size prefix starting with those would exceed 700 MB
                self.mode = "slip" if buf[0] in (0xC0, 0x2F, 0x23) else "len"
            if self.mode == "len":
                if len(buf) < 4:
                    return
                if not buf[0] and not buf[1] and not buf[2] and not buf[3]:
                    # empty frames (keep-alives) go in one step, a token per END_BYTES
                    # of them as SLIP's ENDs: each was parsed as a garbage packet, a
                    # full token and ~10 us of control CPU (1M of them: 10 s; attack10)
                    run = _EMPTY.match(buf)
                    n = run.end() if run is not None else 4
                    del buf[:n]
                    if self.bucket is not None:
                        self.bucket.tokens -= n / END_BYTES
                    continue
                size = int.from_bytes(buf[:4], "big", signed=True)
                if size < 0 or size > maxf:
                    self.server.counters.oversized += 1
                    self.server.ratelog.warn(self.addr[0], "%s sent a %d-byte frame (max %d); "
                                             "disconnected", self.peer.label, size, maxf)
                    self.server.close_conn(self)
                    return
                if len(buf) < 4 + size:
                    return
                frame = bytes(buf[4:4 + size])
                del buf[:4 + size]
            else:
                run = _ENDS.match(buf)
                if run is not None:
                    # ENDs between frames (a double END, keep-alives) go in one step: one
                    # loop turn each cost 12.5 s of CPU over 50 s of END flood (attack6)
                    del buf[:run.end()]
                    self.skipping = False  # an END ends a skipped oversized frame
                    if self.bucket is not None:  # and a token per END_BYTES of them: the
                        # rate limit bounds an END flood as it does a message flood
                        self.bucket.tokens -= run.end() / END_BYTES
                    continue
                i = buf.find(b"\xc0")
                if i < 0:
                    if len(buf) > 2 * maxf + 2:
                        if not self.skipping:
                            self.server.counters.oversized += 1
                        self.skipping = True
                        buf.clear()
                    return
                raw = bytes(buf[:i])
                del buf[:i + 1]
                if self.skipping:
                    self.skipping = False
                    continue
                if not raw:
                    continue  # the double END, or a keep-alive
                frame = slip_decode(raw)
                if len(frame) > maxf:
                    self.server.counters.oversized += 1
                    continue
            if self.bucket is not None:
                self.bucket.tokens -= 1.0
            yield frame
        self.paused = False
