"""OSC transports on the control thread: UDP and TCP (one selector, no thread
per client), access control and per-client rate limiting.

TCP framing is detected per connection from its first byte: 0xC0 (END), or
'/' or '#' (a single-END sender's first packet) mean OSC 1.1 SLIP, anything
else OSC 1.0's int32 big-endian size prefix (which could only start with '/'
or '#' for frames over 700 MB); a single or a double END between frames is
accepted. Replies use the connection's
framing. A size-prefixed frame over the maximum closes the connection before
anything is allocated for it (the stream cannot be resynchronised); an
oversized SLIP frame is skipped up to its END. Both are counted."""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable

from .actions import expire_actions
from .errors import MixgraphError
from .feedback import Feedback
from .osc import Dispatcher, Peer, pack_bundles, parse_packet

log = logging.getLogger("mixgraph.transport")

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
DEFAULT_ALLOW_PRIVATE = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                         "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10"]
OUT_HIGH = 1 << 20  # stop reading a TCP client while this much output is unsent
OUT_MAX = 64 << 20  # a client this far behind is disconnected
UDP_MTU = 1400  # feedback bundles over UDP stay under a typical path MTU
QUEUE_MAX = 8192  # packets queued per UDP client before more are dropped
BATCH = 32  # packets per client per round-robin turn
FIFO_SHARE = 512  # packets a UDP client may have waiting in the arrival-order queue
DRAIN_S = 0.005  # time per loop turn spent moving datagrams from the kernel to queues


def slip_encode(data: bytes) -> bytes:
    """A double-END SLIP frame (RFC 1055, as OSC 1.1 uses it)."""
    return b"\xc0" + data.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0"


def slip_decode(data: bytes) -> bytes:
    if b"\xdb" not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c == ESC and i + 1 < n:
            nxt = data[i + 1]
            out.append(END if nxt == ESC_END else ESC if nxt == ESC_ESC else nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


class Access:
    """Which source addresses may talk to the server (a list of CIDR networks)."""

    def __init__(self, allow: list[str] | None) -> None:
        try:
            self.nets = [ipaddress.ip_network(a, strict=False) for a in (allow or ["0.0.0.0/0",
                                                                                     "::/0"])]
        except ValueError as e:
            raise MixgraphError(f"--allow: {e}") from None
        self._cache: dict[str, bool] = {}

    def ok(self, host: str) -> bool:
        r = self._cache.get(host)
        if r is None:
            try:
                ip = ipaddress.ip_address(host.split("%")[0])
                if ip.version == 6 and ip.ipv4_mapped:
                    ip = ip.ipv4_mapped
                r = any(ip in n for n in self.nets if n.version == ip.version)
            except ValueError:
                r = False
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[host] = r
        return r


class Bucket:
    """A token bucket: `rate` messages per second, bursts of `burst`."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "dropped", "told", "first")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()
        self.dropped = 0
        self.told = 0.0
        self.first = ""

    def refill(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens


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
        self.peer = Peer(self.key, self.send_packet, mtu=60000, kind="tcp",
                         label=f"tcp {addr[0]}:{addr[1]}")

    def send_packet(self, data: bytes) -> None:
        if self.closed:
            return
        if self.mode == "slip":
            self.outbuf += slip_encode(data)
        else:
            self.outbuf += len(data).to_bytes(4, "big") + data
        hook = self.server.before_send
        if hook is not None:
            hook()
        self.flush()

    def flush(self) -> None:
        if self.closed or not self.outbuf:
            return
        try:
            n = self.sock.send(self.outbuf)
            del self.outbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.server.close_conn(self)
            return
        if len(self.outbuf) > OUT_MAX:
            log.warning("%s is not reading its replies; disconnected", self.peer.label)
            self.server.close_conn(self)
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
                size = int.from_bytes(buf[:4], "big", signed=True)
                if size < 0 or size > maxf:
                    self.server.counters.oversized += 1
                    log.warning("%s sent a %d-byte frame (max %d); disconnected",
                                self.peer.label, size, maxf)
                    self.server.close_conn(self)
                    return
                if len(buf) < 4 + size:
                    return
                frame = bytes(buf[4:4 + size])
                del buf[:4 + size]
            else:
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


class ControlServer:
    """The control loop: UDP + TCP receive, dispatch, reply, feedback, engine service."""

    def __init__(self, dispatcher: Dispatcher, host: str = "127.0.0.1", port: int = 8000,
                 tick: Callable[[], None] | None = None, max_packet: int = 65536,
                 tcp_port: int | None = None, allow: list[str] | None = None,
                 max_frame: int = 65536, rate: float = 20000.0, burst: float = 10000.0,
                 feedback_rate: float = 30.0) -> None:
        self.dispatcher = dispatcher
        self.counters = dispatcher.counters
        self.tick = tick
        self.max_packet = max_packet
        self.max_frame = max_frame
        self.rate = rate
        self.burst = burst
        if allow is None and not _is_loopback(host):
            allow = DEFAULT_ALLOW_PRIVATE
        self.access = Access(allow)
        self.feedback = Feedback(dispatcher, rate_hz=feedback_rate)
        dispatcher.on_reply_port = self._set_reply_port
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        try:  # past net.core.rmem_max when allowed (CAP_NET_ADMIN): room for bursts
            self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33),
                                 1 << 22)
        except OSError:
            pass
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise MixgraphError(f"cannot listen on udp {host}:{port}: {e.strerror}") from None
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.tcp: socket.socket | None = None
        if tcp_port is None or tcp_port >= 0:
            want = self.address[1] if tcp_port is None else tcp_port
            t = socket.socket(fam, socket.SOCK_STREAM)
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                t.bind((host, want))
            except OSError as e:
                t.close()
                self.sock.close()
                raise MixgraphError(f"cannot listen on tcp {host}:{want}: {e.strerror}") from None
            t.listen(64)
            t.setblocking(False)
            self.tcp = t
        self.tcp_address = self.tcp.getsockname() if self.tcp else None
        dispatcher.info["udp_port"] = self.address[1]
        dispatcher.info["tcp_port"] = self.tcp_address[1] if self.tcp_address else 0
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, "udp")
        if self.tcp:
            self.sel.register(self.tcp, selectors.EVENT_READ, "listen")
        self.conns: dict[int, TcpConn] = {}
        self.peers: dict[tuple, Peer] = {}  # UDP: source address -> Peer
        # replies held while a batch is processed: source address -> encoded messages
        self._outbox: dict[tuple, list[bytes]] = {}
        self._holding = False
        self.reply_ports: dict[tuple, int] = {}
        self._targets: dict[tuple, list] = {}
        self.buckets: dict[tuple, Bucket] = {}
        self.queues: dict[tuple, deque] = {}  # UDP client -> packets not yet handled
        self.ready: deque = deque()  # clients (UDP address or TcpConn) with work, in turn
        self.fifo: deque = deque()  # (UDP address, packet) in arrival order
        self.pending: dict[tuple, int] = {}  # UDP address -> its packets in the FIFO
        self._ready_set: set = set()
        self._paused: set[TcpConn] = set()
        self._stop = False
        self._last_garbage_log = 0.0
        self._last_gc = time.monotonic()
        self._last_tick = 0.0
        self._last_expire = 0.0
        # called before any reply leaves (the journal's flush: server/journal.py)
        self.before_send: Callable[[], None] | None = None

    # ---- UDP ---------------------------------------------------------------------
    def _udp_peer(self, addr) -> Peer:
        p = self.peers.get(addr)
        if p is None:
            if len(self.peers) > 4096:
                self._gc_peers()
            port = self.reply_ports.get(addr)
            box = [(addr[0], port, *addr[2:]) if port else addr]
            sock = self.sock
            counters = self.counters

            outbox = self._outbox

            def send(data: bytes) -> None:
                if self._holding:  # coalesced: see _flush_replies
                    held = outbox.get(addr)
                    if data[:1] != b"#":  # a bare message
                        if held is None:
                            outbox[addr] = [data]
                        else:
                            held.append(data)
                        return
                    if held:  # a bundle (a state dump): what came before goes first
                        self._flush_one(addr, outbox.pop(addr))
                hook = self.before_send
                if hook is not None:
                    hook()
                try:
                    sock.sendto(data, box[0])
                except OSError as e:
                    counters.send_errors += 1
                    log.debug("reply to %s failed: %s", box[0], e)

            p = Peer(addr, send, mtu=UDP_MTU, kind="udp", label=f"udp {addr[0]}:{addr[1]}")
            self.peers[addr] = p
            self._targets[addr] = box
        return p

    def _set_reply_port(self, peer: Peer, port: int) -> None:
        addr = peer.key
        if port:
            self.reply_ports[addr] = port
        else:
            self.reply_ports.pop(addr, None)
        self._udp_peer(addr)
        self._targets[addr][0] = (addr[0], port or addr[1], *addr[2:])

    def _gc_peers(self) -> None:
        now = time.monotonic()
        clients = self.counters.clients
        for addr in list(self.peers):
            if now - clients.get(addr, 0) > 60 and addr not in self.feedback.subs:
                self.peers.pop(addr, None)
                self._targets.pop(addr, None)
                self.buckets.pop(addr, None)
                clients.pop(addr, None)

    def _limited(self, addr, data: bytes, now: float) -> bool:
        """Per-client token bucket (UDP): True if this packet is dropped."""
        b = self.buckets.get(addr)
        if b is None:
            b = self.buckets[addr] = Bucket(self.rate, self.burst)
        if b.refill(now) >= 1.0:
            b.tokens -= 1.0
            return False
        self.counters.rate_limited += 1
        b.dropped += 1
        if now - b.told >= 1.0:
            b.told = now
            peer = self._udp_peer(addr)
            peer.reply("/fail", ["/rate-limit", b.dropped,
                                 f"rate limit: {b.dropped} messages dropped "
                                 f"(limit {self.rate:g}/s, burst {self.burst:g})"])
            b.dropped = 0
        return True

    def handle_datagram(self, data: bytes, addr) -> None:
        """Admit one datagram: access check, rate limit, then the sender's queue."""
        if not self.access.ok(addr[0]):
            self.counters.denied += 1
            return
        now = time.monotonic()
        if self.rate and self._limited(addr, data, now):
            return
        if len(data) > self.max_frame:
            self.counters.oversized += 1
            return
        if addr not in self.queues and self.pending.get(addr, 0) < FIFO_SHARE:
            self.fifo.append((addr, data))
            self.pending[addr] = self.pending.get(addr, 0) + 1
        else:
            self._overflow(addr, data)

    def _overflow(self, addr, data: bytes) -> None:
        """A client with FIFO_SHARE packets already waiting: its own queue, served in turn."""
        q = self.queues.get(addr)
        if q is None:
            q = self.queues[addr] = deque()
        if len(q) >= QUEUE_MAX:
            self.counters.rate_limited += 1
            return
        q.append(data)
        if addr not in self._ready_set:
            self._ready_set.add(addr)
            self.ready.append(addr)

    def _drain_udp(self) -> None:
        """Read what the kernel holds (cheap), so that one sender cannot fill its buffer.
        The same admission as handle_datagram, inlined: this is the flood path."""
        recv = self.sock.recvfrom
        maxp = self.max_packet
        allowed = self.access._cache
        buckets = self.buckets
        queues = self.queues
        fifo = self.fifo
        pending = self.pending
        counters = self.counters
        rate = self.rate
        now = time.monotonic()
        stop = now + DRAIN_S
        for i in range(4096):
            if not i & 63 and i and time.monotonic() > stop:
                return
            try:
                data, addr = recv(maxp)
            except OSError:  # BlockingIOError: drained
                return
            ok = allowed.get(addr[0])
            if ok is None:
                ok = self.access.ok(addr[0])
            if not ok:
                counters.denied += 1
                continue
            if rate:
                b = buckets.get(addr)
                if b is None:
                    b = buckets[addr] = Bucket(rate, self.burst)
                if b.tokens < 1.0:
                    now = time.monotonic()
                    if b.refill(now) < 1.0:
                        self._limited(addr, data, now)
                        continue
                b.tokens -= 1.0
            if len(data) > self.max_frame:
                counters.oversized += 1
                continue
            if addr not in queues and pending.get(addr, 0) < FIFO_SHARE:
                fifo.append((addr, data))
                pending[addr] = pending.get(addr, 0) + 1
            else:
                self._overflow(addr, data)

    def _flush_replies(self) -> None:
        """Send the replies held during a batch: one client's replies go out as one
        datagram (an OSC bundle, immediate timetag, within UDP_MTU) instead of one
        each; a lone reply stays a bare message. A client that waits for each reply
        before it sends again never sees a bundle; a flooding one costs the server
        one send per batch instead of one per message."""
        outbox = self._outbox
        if not outbox:
            return
        for addr, msgs in outbox.items():
            self._flush_one(addr, msgs)
        outbox.clear()

    def _flush_one(self, addr, msgs: list[bytes]) -> None:
        hook = self.before_send
        if hook is not None:
            hook()
        target = self._targets.get(addr, [addr])[0]
        sock = self.sock
        for pkt in (msgs if len(msgs) == 1 else pack_bundles(msgs, UDP_MTU)):
            try:
                sock.sendto(pkt, target)
            except OSError as e:
                self.counters.send_errors += 1
                log.debug("reply to %s failed: %s", target, e)

    def _work(self, budget_s: float = 0.003) -> None:
        self._holding = True
        try:
            self._work_batches(budget_s)
        finally:
            self._holding = False
            self._flush_replies()

    def _work_batches(self, budget_s: float) -> None:
        """Process waiting packets for at most budget_s: the arrival-order FIFO (where each
        client has at most FIFO_SHARE packets) a batch at a time, alternating with one
        turn of the clients beyond their share (and TCP connections), round-robin. So
        commands keep their arrival order across clients unless one client is far ahead
        of the server, and then it only delays the others by its share."""
        ready = self.ready
        fifo = self.fifo
        pending = self.pending
        deadline = time.monotonic() + budget_s
        while fifo or ready:
            if fifo:
                now = time.monotonic()
                for _ in range(min(BATCH, len(fifo))):
                    addr, data = fifo.popleft()
                    n = pending[addr] - 1
                    if n:
                        pending[addr] = n
                    else:
                        del pending[addr]
                    self._packet(data, self._udp_peer(addr), now)
            for _ in range(len(ready)):
                item = ready.popleft()
                if isinstance(item, TcpConn):
                    more = not item.closed and self._process_conn(item, limit=BATCH)
                else:
                    q = self.queues.get(item)
                    if not q:
                        self._ready_set.discard(item)
                        self.queues.pop(item, None)
                        continue
                    if item in pending:  # its earlier packets are still in the FIFO
                        ready.append(item)
                        continue
                    peer = self._udp_peer(item)
                    now = time.monotonic()
                    for _ in range(min(BATCH, len(q))):
                        self._packet(q.popleft(), peer, now)
                    more = bool(q)
                    if not more:
                        del self.queues[item]
                if more:
                    ready.append(item)
                else:
                    self._ready_set.discard(item)
                break
            self._flush_replies()  # a batch's replies wait for the batch, not the budget
            if time.monotonic() > deadline:
                return

    # ---- common ------------------------------------------------------------------
    def _packet(self, data: bytes, peer: Peer, now: float) -> None:
        d = self.dispatcher
        key = peer.key
        d.counters.clients[key] = now
        fb = self.feedback
        if fb.subs:
            fb.renew(key)
        if data[:6] == b"/node/" and d.fast_set(data, peer):
            return
        try:
            msgs = parse_packet(data)
        except MixgraphError as e:
            d.counters.garbage += 1
            if now - self._last_garbage_log > 1.0:
                self._last_garbage_log = now
                log.warning("garbage packet from %s (%s); %d so far", peer.label, e,
                            d.counters.garbage)
            return
        bundle = data[:1] == b"#"
        if bundle and self.rate and len(msgs) > 1:
            b = self.buckets.get(key) if peer.kind == "udp" else None
            if b is not None:
                b.tokens -= len(msgs) - 1  # a bundle costs one token per message
        if not msgs:
            return
        d.dispatch_packet(msgs, peer, bundle)

    # ---- TCP ---------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(64):
            try:
                s, addr = self.tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not self.access.ok(addr[0]):
                self.counters.denied += 1
                s.close()
                continue
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = TcpConn(self, s, addr)
            self.conns[s.fileno()] = c
            self.sel.register(s, selectors.EVENT_READ, c)

    def update_interest(self, c: TcpConn) -> None:
        if c.closed:
            return
        ev = 0
        if not c.paused and len(c.outbuf) < OUT_HIGH and len(c.inbuf) < 4 * self.max_frame:
            ev |= selectors.EVENT_READ
        if c.outbuf:
            ev |= selectors.EVENT_WRITE
        if ev == 0:
            ev = selectors.EVENT_WRITE if c.outbuf else selectors.EVENT_READ
        try:
            if self.sel.get_key(c.sock).events != ev:
                self.sel.modify(c.sock, ev, c)
        except (KeyError, ValueError):
            pass
        if c.paused or len(c.outbuf) >= OUT_HIGH:
            self._paused.add(c)

    def close_conn(self, c: TcpConn) -> None:
        if c.closed:
            return
        c.closed = True
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        self.conns.pop(c.sock.fileno(), None)
        c.sock.close()
        self._paused.discard(c)
        self.feedback.drop(c.key)
        self.dispatcher.release_touches(c.key)
        self.counters.clients.pop(c.key, None)

    def _read_conn(self, c: TcpConn) -> None:
        if len(c.inbuf) < 4 * self.max_frame:
            try:
                data = c.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._process_conn(c)
                self.close_conn(c)
                return
            if data:
                c.inbuf += data
        self._queue_conn(c)

    def _queue_conn(self, c: TcpConn) -> None:
        if c not in self._ready_set:
            self._ready_set.add(c)
            self.ready.append(c)
        self.update_interest(c)

    def _process_conn(self, c: TcpConn, limit: int = 1 << 30) -> bool:
        """Handle up to limit frames; True if more are waiting (and may be handled now)."""
        now = time.monotonic()
        n = 0
        for frame in c.frames(limit):
            if c.closed:
                return False
            self._packet(frame, c.peer, now)
            n += 1
            if len(c.outbuf) >= OUT_HIGH:
                c.paused = True
                break
        if c.closed:
            return False
        self.update_interest(c)
        return n >= limit and not c.paused

    def _resume_paused(self) -> None:
        for c in list(self._paused):
            if c.closed:
                self._paused.discard(c)
                continue
            if c.outbuf:
                c.flush()
            if c.closed or len(c.outbuf) >= OUT_HIGH:
                continue
            if c.bucket is not None and c.bucket.refill(time.monotonic()) < 1.0:
                continue
            c.paused = False
            self._paused.discard(c)
            self._queue_conn(c)

    # ---- the loop ----------------------------------------------------------------
    def serve_forever(self) -> None:
        """The control loop: until stop() is called."""
        while not self._stop:
            timeout = 0.0 if self.ready or self.fifo else 0.001 if self._paused else 0.005
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                events = []
            for key, mask in events:
                what = key.data
                if what == "udp":
                    self._drain_udp()
                elif what == "listen":
                    self._accept()
                else:
                    if mask & selectors.EVENT_WRITE:
                        what.flush()
                    if mask & selectors.EVENT_READ and not what.closed:
                        self._read_conn(what)
            if self._paused:
                self._resume_paused()
            if self.ready or self.fifo:
                self._work()
            self.service()

    def service(self) -> None:
        d = self.dispatcher
        try:
            d.session.service()
        except Exception:
            log.exception("engine service failed")
        try:
            d.service()
            self.feedback.service()
        except Exception:
            log.exception("feedback/timers failed")
        now = time.monotonic()
        if now - self._last_gc > 30:
            self._last_gc = now
            self._gc_peers()
        if self.tick and now - self._last_tick >= 0.25:  # autosave: 4 Hz is plenty
            self._last_tick = now
            self.tick()
        if d.session.actions_running and now - self._last_expire >= 0.5:
            self._last_expire = now
            expire_actions(d.session, now)  # a stopped audio clock must not leave one mute

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        for c in list(self.conns.values()):
            self.close_conn(c)
        self.sel.close()
        self.sock.close()
        if self.tcp:
            self.tcp.close()


UdpServer = ControlServer  # the historical name


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
