"""OSC transports on the control thread: UDP and TCP (one selector, no thread
per client), access control and per-client rate limiting.

TCP framing is detected per connection from its first byte: 0xC0 (END), or
'/' or '#' (a single-END sender's first packet) mean OSC 1.1 SLIP, anything
else OSC 1.0's int32 big-endian size prefix (which could only start with '/'
or '#' for frames over 700 MB); a single or a double END between frames is
accepted. Replies use the connection's
framing. A size-prefixed frame over the maximum closes the connection before
anything is allocated for it (the stream cannot be resynchronised); an
oversized SLIP frame is skipped up to its END. Both are counted.

Limits (docs/operations.md lists them with their options): TCP connections
are capped in total and per source address, and by the descriptors left
after a reserve for state files (a connection over a cap is accepted and
closed at once, counted, logged at most every 10 s); a connection that sends
nothing for the idle timeout (and holds no subscription) is closed; the
output queued for all TCP clients together is bounded (the slowest reader
is disconnected past it). Over UDP, a source address that has not proven it
receives what is sent to it (loopback, or a /hello cookie round trip) is
sent at most AMPLIFICATION times the bytes received from it: a reply that
does not fit becomes a short /fail (or nothing), and it gets no streams."""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import ipaddress
import itertools
import logging
import os
import resource
import selectors
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .actions import expire_actions
from .budget import Bucket
from .conn import OUT_HIGH, TcpConn
from .errors import MixgraphError
from .feedback import Feedback
from .osc import (
    Dispatcher,
    Peer,
    encode_bundle,
    encode_message,
    not_osc,
    pack_bundles,
    parse_packet,
)
from .ratelog import RateLog, source_of

log = logging.getLogger("mixgraph.transport")

DEFAULT_ALLOW_PRIVATE = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12",
                         "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10"]
AMPLIFICATION = 3  # bytes sent per byte received, to an unproven UDP address (QUIC's 3x)
CREDIT_MAX = 16384  # the most an unproven address may have banked (bytes)
COOKIE_S = 120  # a /hello cookie is good for this long (and the one before)
IP_RECVERR, IPV6_RECVERR = 11, 25  # Linux: ICMP errors on an unconnected UDP socket
_ICMP_ERRNOS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                          errno.EHOSTDOWN, errno.EPROTO, errno.EMSGSIZE))
UDP_MTU = 1400  # feedback bundles over UDP stay under a typical path MTU
UDP_MAX_PACKET = 65507  # the largest UDP payload over IPv4 (65535 - 8 - 20)
QUEUE_MAX = 8192  # packets queued per UDP client before more are dropped
QUEUE_BYTES = 1 << 20  # bytes queued per UDP client before more are dropped
BACKLOG_BYTES = 32 << 20  # bytes queued for all UDP clients together
QUANTUM = 8192  # bytes of packets a source host is served per round-robin round
BATCH = 32  # messages per TCP connection per round-robin turn
FIFO_SHARE = 64  # packets a UDP client may have waiting in the arrival-order queue
# A lone /scene/morph (a crossfader) that waits behind a later one from the same
# UDP address between the same two scenes is not applied: the later position
# wins, the earlier is answered `/done /scene/morph a b x 0 superseded` and
# counted (/status morphs_coalesced), instead of each paying the host's
# whole-graph budget (osc.GRAPH_WORK_*) and being refused once it is spent.
MORPH_PREFIX = b"/scene/morph\0"
FIFO_BYTES = 65536  # bytes the arrival-order queue holds, all clients together
DRAIN_S = 0.005  # time per loop turn spent moving datagrams from the kernel to queues
# control-thread time one FIFO batch or one client's turn may take: QUANTUM counts bytes,
# and a 24-byte /graph/add eq8 costs milliseconds (attack6: 8 KB of them held every
# other client's reply 10 s)
TURN_S = 0.02
# UDP clients (source address and port) remembered: past PEERS_SOFT those silent for a
# minute are forgotten (at most once a second: a scan of them all per new source port
# was quadratic, attack7); past PEERS_MAX the oldest-remembered quiet one goes at once
PEERS_SOFT = 4096
PEERS_MAX = 16384
PEER_ACTIVE_S = 10.0  # a UDP client heard from this recently is forgotten last (_bound_peers)
# /reply-port choices kept for clients no longer remembered (a client forgotten and back
# gets its reply port again): the most recently set or forgotten this many, beyond those
# of the clients remembered. Kept for ever, 20,000 source ports sending /reply-port
# held 19 MB more (attack8)
REPLY_PORTS_FORGOTTEN = 4096


@dataclass
class Limits:
    """What the server lets clients take (each has a `mixgraph serve` option)."""

    max_conns: int = 256  # TCP connections at once (also capped by descriptors)
    max_conns_per_host: int = 32  # TCP connections from one source address
    idle_timeout: float = 600.0  # s without input before a TCP connection is closed
    max_subscribers: int = 32  # feedback/meter subscribers at once (UDP and TCP)
    max_subscribers_per_host: int = 16  # of those, from one source address (any port)
    max_output: int = 64 << 20  # bytes queued for all TCP clients together
    fd_reserve: int = 64  # descriptors kept for state files, recorders, players
    trust_loopback: bool = True  # loopback UDP sources count as proven
    http_ping: float = 20.0  # s between a browser's pings; one unanswered this long: closed


class Access:
    """Which source addresses may talk to the server (a list of CIDR networks). The
    box itself (127.0.0.1, ::1) always may: `--allow <LAN>` must not lock out the
    tools run on the box (mixgraph ctl, health, the service's checks)."""

    SELF = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))

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
                r = ip in self.SELF or any(ip in n for n in self.nets
                                           if n.version == ip.version)
            except ValueError:
                r = False
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[host] = r
        return r


def _stream_listener(fam: int, host: str, port: int) -> socket.socket:
    """A non-blocking TCP listener on host:port (the OSC and HTTP ones); OSError
    when the port cannot be had, with nothing left open."""
    t = socket.socket(fam, socket.SOCK_STREAM)
    try:
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((host, port))
        t.listen(64)
        t.setblocking(False)
    except OSError:
        t.close()
        raise
    return t

class ControlServer:
    """The control loop: UDP + TCP receive, dispatch, reply, feedback, engine service."""

    def __init__(self, dispatcher: Dispatcher, host: str = "127.0.0.1", port: int = 8000,
                 tick: Callable[[], None] | None = None, max_packet: int = 65536,
                 tcp_port: int | None = None, allow: list[str] | None = None,
                 max_frame: int = 65536, rate: float = 20000.0, burst: float = 10000.0,
                 feedback_rate: float = 30.0, limits: Limits | None = None,
                 http_port: int | None = None, http_token: str = "",
                 http_read_only: bool = False) -> None:
        self.dispatcher = dispatcher
        dispatcher.defer_commit = True  # one plan per batch of messages: _commit_edits
        self.counters = dispatcher.counters
        self.limits = limits = limits or Limits()
        self.tick = tick
        self.max_packet = max_packet
        # what a datagram is received into (_drain_udp): bytes are made only for OSC
        self._rbuf = bytearray(max(max_packet, 1))
        self._rview = memoryview(self._rbuf)
        self._tbuf = bytearray(262144)  # what a TCP or web connection's read goes into
        self._tview = memoryview(self._tbuf)
        self.max_frame = max_frame
        self.rate = rate
        self.burst = burst
        if allow is None and not _is_loopback(host):
            allow = DEFAULT_ALLOW_PRIVATE
        self.access = Access(allow)
        self.feedback = Feedback(dispatcher, rate_hz=feedback_rate,
                                 max_subscribers=limits.max_subscribers,
                                 max_per_host=limits.max_subscribers_per_host)
        dispatcher.on_reply_port = self._set_reply_port
        dispatcher.on_hello = self.hello
        self._secret = os.urandom(32)
        self.credit: dict[tuple, float] = {}  # unproven UDP address -> bytes it may be sent
        self._loopback: dict[str, bool] = {}
        self.out_bytes = 0  # bytes queued for all TCP clients
        self.per_host: dict[str, int] = {}  # TCP connections per source address
        self._last_refuse_log = 0.0
        self._refused_since_log = 0
        self._last_idle_check = time.monotonic()
        self._last_unproven_log = 0.0
        self._accept_paused_until = 0.0
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = self._fresh_udp(fam)
        # port 0 asks for any free number, the same one for UDP and TCP: the kernel
        # picks a free UDP number, which another program may hold on TCP; pick again
        tries = 32 if port == 0 and tcp_port is None else 1
        self.tcp: socket.socket | None = None
        held: list[socket.socket] = []
        try:
            for attempt in range(tries):
                try:
                    self.sock.bind((host, port))
                except OSError as e:
                    self.sock.close()
                    raise MixgraphError(f"cannot listen on udp {host}:{port}: "
                                        f"{e.strerror}") from None
                self.address = self.sock.getsockname()
                if tcp_port is not None and tcp_port < 0:
                    break
                want = self.address[1] if tcp_port is None else tcp_port
                try:
                    self.tcp = _stream_listener(fam, host, want)
                except OSError as e:
                    if attempt + 1 < tries and e.errno == errno.EADDRINUSE:
                        held.append(self.sock)  # held open so the kernel picks another
                        self.sock = self._fresh_udp(fam)
                        continue
                    self.sock.close()
                    raise MixgraphError(f"cannot listen on tcp {host}:{want}: "
                                        f"{e.strerror}") from None
                break
        finally:
            for h in held:
                h.close()
        self.sock.setblocking(False)
        self.tcp_address = self.tcp.getsockname() if self.tcp else None
        # the browser surface (server/web.py): HTTP and WebSocket on one more listener
        self.http: socket.socket | None = None
        self.web_files: dict = {}
        self.http_token = http_token  # required in the WebSocket handshake when set
        self.http_read_only = http_read_only  # WebSocket clients may only look (web.py)
        if http_port is not None:
            from .web import WebConn, load_files

            self._web_conn = WebConn
            self.web_files = load_files()
            try:
                self.http = _stream_listener(fam, host, http_port)
            except OSError as e:
                self.sock.close()
                if self.tcp:
                    self.tcp.close()
                raise MixgraphError(f"cannot listen on http {host}:{http_port}: "
                                    f"{e.strerror}") from None
        self.http_address = self.http.getsockname() if self.http else None
        dispatcher.info["udp_port"] = self.address[1]
        dispatcher.info["tcp_port"] = self.tcp_address[1] if self.tcp_address else 0
        self.max_conns = self._conn_cap()
        # one descriptor held back: at EMFILE, accept() can still take a connection
        # (to close it) instead of leaving it pending and the loop spinning on it
        self._spare: int | None = self._open_spare()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, "udp")
        if self.tcp:
            self.sel.register(self.tcp, selectors.EVENT_READ, "listen")
        if self.http:
            self.sel.register(self.http, selectors.EVENT_READ, "http")
        self.conns: dict[int, TcpConn] = {}
        self.peers: dict[tuple, Peer] = {}  # UDP: source address -> Peer
        # replies held while a batch is processed: source address -> encoded messages
        self._outbox: dict[tuple, list[bytes]] = {}
        self._holding = False
        # UDP client -> the port its replies go to (/reply-port), oldest first
        self.reply_ports: OrderedDict[tuple, int] = OrderedDict()
        self._targets: dict[tuple, list] = {}
        self.buckets: dict[tuple, Bucket] = {}
        self.queues: dict[tuple, deque] = {}  # UDP client -> packets not yet handled
        self.ready: deque = deque()  # clients (UDP address or TcpConn) with work, in turn
        self.fifo: deque = deque()  # (UDP address, packet) in arrival order
        self.pending: dict[tuple, int] = {}  # UDP address -> its packets in the FIFO
        # (UDP address, scene a, scene b) -> its lone /scene/morph packets waiting
        self._morphs: dict[tuple, int] = {}
        self.fifo_bytes = 0  # bytes in the FIFO
        self.qbytes: dict[tuple, int] = {}  # UDP address -> bytes in its own queue
        self.backlog = 0  # bytes in all UDP clients' own queues
        self.deficit: dict[tuple, int] = {}  # UDP address -> bytes it may still be served
        self.host_queues: dict[str, int] = {}  # source host -> its clients with a queue
        # source host -> control time its packets took in the FIFO since it was last
        # empty; past TURN_S its further FIFO packets wait in `deferred`
        self.fifo_spent: dict[str, float] = {}
        # source host -> (UDP address, packet) taken off the FIFO in arrival order, served
        # as one round-robin turn (the host's key in `ready`: a str); still counted in
        # `pending` and `fifo_bytes`, so they bound it as they bound the FIFO
        self.deferred: dict[str, deque] = {}
        self._ready_set: set = set()
        self._paused: set[TcpConn] = set()
        self._stop = False
        # warnings a client's packets cause: counted, and logged per source sparingly
        self.ratelog = RateLog(log, self.counters)
        self.on_client: Callable[[Peer], None] | None = None  # a client seen for the first time
        dispatcher.ratelog = self.ratelog
        self._last_garbage_log = 0.0
        self._last_error_log = 0.0
        self._last_gc = time.monotonic()
        self._last_peer_gc = 0.0  # the last _gc_peers run by _bound_peers
        self._last_tick = 0.0
        self._last_expire = 0.0
        # called before any reply leaves (the journal's flush: server/journal.py);
        # False: the journal could not take everything (journal_first)
        self.before_send: Callable[[], bool | None] | None = None

    # ---- limits --------------------------------------------------------------------
    def _fresh_udp(self, fam: int) -> socket.socket:
        """A UDP socket with the listener's buffer sizes and error reporting, unbound."""
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        try:  # past net.core.rmem_max when allowed (CAP_NET_ADMIN): room for bursts
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 22)
        except OSError:
            pass
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        try:  # learn which destination an ICMP error (port unreachable) was about
            if fam == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            self._recverr = True
        except OSError:
            self._recverr = False
        return sock

    def _conn_cap(self) -> int:
        """TCP connections allowed at once: the configured cap, and no more than the
        descriptors left under RLIMIT_NOFILE after those in use and the reserve."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        try:
            used = len(os.listdir("/proc/self/fd"))
        except OSError:
            used = 32
        cap = self.limits.max_conns
        if soft != resource.RLIM_INFINITY:
            cap = min(cap, max(1, soft - used - self.limits.fd_reserve))
        return cap

    @staticmethod
    def _open_spare() -> int | None:
        try:
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def _is_trusted(self, host: str) -> bool:
        r = self._loopback.get(host)
        if r is None:
            r = self.limits.trust_loopback and _is_loopback(host.split("%")[0])
            if len(self._loopback) > 65536:
                self._loopback.clear()
            self._loopback[host] = r
        return r

    def _cookie(self, target, epoch: int) -> str:
        msg = f"{target[0]}|{target[1]}|{epoch}".encode()
        mac = hmac.new(self._secret, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode()[:15]  # 90 bits; 16 bytes in OSC

    def hello(self, peer: Peer, args: list) -> tuple[str, list]:
        """The /hello exchange (see Dispatcher._hello): a cookie bound to where replies to
        this client go, valid COOKIE_S (and the period before); the client proves it
        receives there by sending it back."""
        if peer.proven:
            return "/done", ["/hello"]
        target = self._targets.get(peer.key, [peer.key])[0]
        epoch = int(time.time() // COOKIE_S)
        if not args:
            return "/hello", [self._cookie(target, epoch)]
        got = args[0] if isinstance(args[0], str) else ""
        if any(hmac.compare_digest(got, self._cookie(target, e)) for e in (epoch, epoch - 1)):
            peer.proven = True
            self.credit.pop(peer.key, None)
            return "/done", ["/hello"]
        raise MixgraphError("bad cookie")

    def _charge(self, addr, mark: int, data: bytes) -> None:
        """After an unproven client's packet was handled: its replies (held in the outbox
        from `mark` on) go out if they fit its credit, else one short /fail does."""
        box = self._outbox.get(addr)
        if not box or len(box) <= mark:
            return
        size = sum(len(m) for m in box[mark:])
        credit = self.credit.get(addr, 0.0)
        if size <= credit:
            self.credit[addr] = credit - size
            return
        del box[mark:]
        self.counters.unproven_refused += 1
        end = data.find(b"\0")
        address = data[:end].decode("utf-8", "replace") if data[:1] == b"/" else "#bundle"
        for why in ("too large: /hello or TCP", "/hello"):  # the longest that fits
            fail = encode_message("/fail", [address[:64], why])
            if len(fail) <= credit:
                box.append(fail)
                self.credit[addr] = credit - len(fail)
                break
        now = time.monotonic()
        if now - self._last_unproven_log > 10.0:
            self._last_unproven_log = now
            log.warning("a %d-byte reply to unproven udp %s:%s withheld (amplification "
                        "limit %dx; %d so far): the client should use TCP or /hello",
                        size, addr[0], addr[1], AMPLIFICATION, self.counters.unproven_refused)

    # ---- UDP ---------------------------------------------------------------------
    def _udp_peer(self, addr) -> Peer:
        p = self.peers.get(addr)
        if p is None:
            if len(self.peers) > PEERS_SOFT:
                self._bound_peers()
            port = self.reply_ports.get(addr)
            box = [(addr[0], port, *addr[2:]) if port else addr]
            counters = self.counters
            credit = self.credit

            outbox = self._outbox

            def send(data: bytes) -> None:
                proven = p.proven
                if self._holding:  # coalesced: see _flush_replies
                    held = outbox.get(addr)
                    if data[:1] != b"#" or not proven:  # a bare message (or unproven)
                        if held is None:
                            outbox[addr] = [data]
                        else:
                            held.append(data)
                        return
                    if held:  # a bundle (a state dump): what came before goes first
                        self._flush_one(addr, outbox.pop(addr))
                elif not proven:  # sent outside a packet's handling: pay from the credit
                    c = credit.get(addr, 0.0)
                    if len(data) > c:
                        counters.unproven_refused += 1
                        return
                    credit[addr] = c - len(data)
                self._sendto(self.journal_first(data), box[0])

            p = Peer(addr, send, mtu=UDP_MTU, kind="udp", label=f"udp {addr[0]}:{addr[1]}",
                     proven=self._is_trusted(addr[0]), max_packet=UDP_MAX_PACKET)
            self.peers[addr] = p
            self._targets[addr] = box
        return p

    def _sendto(self, data: bytes, target, sock: socket.socket | None = None) -> None:
        """One datagram. With IP_RECVERR an ICMP error about some other destination
        can fail this send: read the error queue (which clears it) and send again once."""
        sock = sock or self.sock
        for attempt in (0, 1):
            try:
                sock.sendto(data, target)
                return
            except OSError as e:
                if attempt or e.errno not in _ICMP_ERRNOS:
                    self.counters.send_errors += 1
                    log.debug("send to %s failed: %s", target, e)
                    return
                self._read_errors()

    def _read_errors(self) -> None:
        """Drain the socket's error queue (IP_RECVERR): each entry names the destination
        an ICMP error was about; a subscriber there loses a life (Feedback.send_failed)."""
        if not self._recverr:
            return
        fb = self.feedback
        for _ in range(256):
            try:
                _, _, _, dest = self.sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not dest:
                continue
            dest = tuple(dest[:2])
            self.counters.send_errors += 1
            for key in [k for k, sub in fb.subs.items() if sub.peer.kind == "udp"]:
                if tuple(self._targets.get(key, [key])[0][:2]) == dest:
                    fb.send_failed(key)

    def _set_reply_port(self, peer: Peer, port: int) -> None:
        addr = peer.key
        if port:
            self.reply_ports[addr] = port
            self.reply_ports.move_to_end(addr)
            self._bound_reply_ports()
        else:
            self.reply_ports.pop(addr, None)
        self._udp_peer(addr)
        target = (addr[0], port or addr[1], *addr[2:])
        if target != self._targets[addr][0] and not self._is_trusted(addr[0]):
            peer.proven = False  # a proof holds for where the cookie went
        self._targets[addr][0] = target

    def _bound_peers(self) -> None:
        """Before a new UDP client is remembered with PEERS_SOFT or more already: forget
        those silent for a minute (a scan of all, so at most once a second), and past
        PEERS_MAX the oldest-remembered ones that hold no subscription and no queued
        work. A script opening a socket per message (oscsend in a loop) made a new
        client each time, and each one scanned all the others: 8,000 source ports in
        2.5 s took 10 s of control-thread CPU and held other clients' replies 46 s."""
        now = time.monotonic()
        if now - self._last_peer_gc >= 1.0:
            self._last_peer_gc = now
            self._gc_peers()
        if len(self.peers) < PEERS_MAX:
            return
        busy = self.feedback.subs
        seen = self.counters.clients
        # first those not heard from for PEER_ACTIVE_S (a client sending steadily, a
        # tablet among a flood of new source ports, keeps its rate bucket and its proof
        # of address: it goes to the back), then, if every one looked at was active,
        # the oldest remembered as before (the table stays bounded under any flood)
        for recent_ok in (False, True):
            for addr in list(itertools.islice(self.peers, len(busy) + 64)):
                if addr in busy or addr in self.queues or addr in self._outbox \
                        or addr in self.pending:
                    continue
                if not recent_ok and now - seen.get(addr, 0.0) < PEER_ACTIVE_S:
                    self.peers[addr] = self.peers.pop(addr)  # to the back
                    continue
                self._forget_peer(addr)
                if len(self.peers) < PEERS_MAX:
                    return

    def _bound_reply_ports(self) -> None:
        """Keep the reply ports of the clients remembered, and of REPLY_PORTS_FORGOTTEN
        others, the most recently set or forgotten: a remembered client met at the
        front goes to the back (each is passed over at most once per eviction round,
        as no more than PEERS_MAX are remembered)."""
        rp = self.reply_ports
        peers = self.peers
        for _ in range(PEERS_MAX + 1):
            if len(rp) <= len(peers) + REPLY_PORTS_FORGOTTEN:
                return
            addr = next(iter(rp))
            if addr in peers:
                rp.move_to_end(addr)
            else:
                del rp[addr]

    def _forget_peer(self, addr) -> None:
        """Drop what is kept for one UDP client (it is made again if it sends); its
        reply port is kept a while longer (_bound_reply_ports)."""
        if addr in self.reply_ports:
            self.reply_ports.move_to_end(addr)
        self.peers.pop(addr, None)
        self._targets.pop(addr, None)
        self.buckets.pop(addr, None)
        self.credit.pop(addr, None)
        self.counters.clients.pop(addr, None)

    def _gc_peers(self) -> None:
        now = time.monotonic()
        clients = self.counters.clients
        for addr in list(self.peers):
            if now - clients.get(addr, 0) > 60 and addr not in self.feedback.subs:
                self._forget_peer(addr)

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
        if addr not in self.queues and self.pending.get(addr, 0) < FIFO_SHARE \
                and self.fifo_bytes < FIFO_BYTES:
            self.fifo.append((addr, data))
            self.pending[addr] = self.pending.get(addr, 0) + 1
            self.fifo_bytes += len(data)
            if data[:13] == MORPH_PREFIX:
                self._morph_queued(addr, data)
        else:
            self._overflow(addr, data)

    def _overflow(self, addr, data: bytes) -> None:
        """A client the arrival-order queue has no room for (its share used, or the
        queue full): its own queue, served in turn. Bounded per client (packets and
        bytes) and in all; past the bound of all, a client with little queued still
        gets in (up to twice the bound), so a flood cannot shut a quiet client out."""
        q = self.queues.get(addr)
        n = len(data)
        held = self.qbytes.get(addr, 0)
        if (q is not None and (len(q) >= QUEUE_MAX or held + n > QUEUE_BYTES)) or \
                (self.backlog + n > BACKLOG_BYTES
                 and (held > QUANTUM or self.backlog + n > 2 * BACKLOG_BYTES)):
            self.counters.backlog_dropped += 1
            return
        if q is None:
            q = self.queues[addr] = deque()
            self.host_queues[addr[0]] = self.host_queues.get(addr[0], 0) + 1
        q.append(data)
        if data[:13] == MORPH_PREFIX:
            self._morph_queued(addr, data)
        self.qbytes[addr] = held + n
        self.backlog += n
        if addr not in self._ready_set:
            self._ready_set.add(addr)
            self.ready.append(addr)

    @staticmethod
    def _morph_key(addr, data: bytes) -> tuple | None:
        """(address, scene a, scene b) of a lone /scene/morph packet, else None."""
        try:
            msgs = parse_packet(data)
        except MixgraphError:
            return None
        if len(msgs) != 1 or len(msgs[0].args) != 3:
            return None
        a, b, _ = msgs[0].args
        return (addr, a, b) if isinstance(a, str) and isinstance(b, str) else None

    def _morph_queued(self, addr, data: bytes) -> None:
        key = self._morph_key(addr, data)
        if key is not None:
            self._morphs[key] = self._morphs.get(key, 0) + 1

    def _morph_superseded(self, data: bytes, peer: Peer) -> bool:
        """A queued morph taken off its queue: True (answered, counted, not to be
        applied) when a later one for the same scenes from the same address waits."""
        key = self._morph_key(peer.key, data)
        n = self._morphs.get(key, 0) if key is not None else 0
        if n <= 0:
            return False
        if n > 1:
            self._morphs[key] = n - 1
        else:
            del self._morphs[key]
        if n == 1:
            return False
        x = parse_packet(data)[0].args[2]
        self.dispatcher.counters.morphs_coalesced += 1
        peer.reply("/done", ["/scene/morph", key[1], key[2],
                             float(x) if isinstance(x, (int, float)) else 0.0, 0, "superseded"])
        return True

    def _udp_turn(self, addr) -> bool:
        """One round-robin turn of a UDP client with its own queue (deficit round
        robin by bytes): it is served whole packets while its credit lasts, and gets
        QUANTUM / (its host's clients with a queue) more each turn, so a host with
        many source ports has the share of one. True if it has more waiting."""
        q = self.queues[addr]
        host = addr[0]
        credit = self.deficit.get(addr, 0) + max(64, QUANTUM // self.host_queues.get(host, 1))
        peer = None
        used = 0
        now = time.monotonic()
        cut = now + TURN_S
        while q and len(q[0]) <= credit:
            data = q.popleft()
            credit -= len(data)
            used += len(data)
            if peer is None:
                peer = self._udp_peer(addr)
            self._packet(data, peer, now)
            if time.monotonic() > cut:  # its time is up: the others' turns come first
                credit = min(credit, QUANTUM)
                break
        self.backlog -= used
        self.qbytes[addr] -= used
        if q:
            self.deficit[addr] = credit
            return True
        self._drop_queue(addr)
        return False

    def _defer(self, host: str, item: tuple) -> None:
        """A FIFO packet of a host past its time there: into the host's deferred queue
        (which its later FIFO packets join, so its clients' order is kept: a client's
        own queue waits while it has packets `pending` here or in the FIFO)."""
        q = self.deferred.get(host)
        if q is None:
            q = self.deferred[host] = deque()
            self._ready_set.add(host)
            self.ready.append(host)
        q.append(item)

    def _unpend(self, addr) -> None:
        """One packet of addr's has left the FIFO (served, or taken for its host's
        deferred turn): its count of packets waiting drops, and goes at zero."""
        n = self.pending[addr] - 1
        if n:
            self.pending[addr] = n
        else:
            del self.pending[addr]

    def _deferred_turn(self, host: str) -> bool:
        """One round-robin turn of a host's deferred packets, in arrival order: QUANTUM
        bytes or TURN_S of time. True if more wait."""
        q = self.deferred[host]
        now = time.monotonic()
        cut = now + TURN_S
        used = 0
        while q and used < QUANTUM:
            addr, data = q.popleft()
            used += len(data)
            self._unpend(addr)
            self._packet(data, self._udp_peer(addr), now)
            if time.monotonic() > cut:
                break
        self.fifo_bytes -= used
        if q:
            return True
        del self.deferred[host]
        return False

    def _drop_queue(self, addr) -> None:
        """Forget a UDP client's own queue (served empty)."""
        q = self.queues.pop(addr, None)
        if q is None:
            return
        self.backlog -= self.qbytes.pop(addr, 0)
        self.deficit.pop(addr, None)
        host = addr[0]
        n = self.host_queues.get(host, 1) - 1
        if n > 0:
            self.host_queues[host] = n
        else:
            self.host_queues.pop(host, None)

    def _drain_udp(self) -> None:
        """Read what the kernel holds (cheap), so that one sender cannot fill its buffer.
        The same admission as handle_datagram, inlined: this is the flood path."""
        recv = self.sock.recvfrom_into
        buf = self._rbuf
        view = self._rview
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
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):  # drained
                return
            except OSError:  # an ICMP error reported (IP_RECVERR): whose, then go on
                self._read_errors()
                continue
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
                        self._limited(addr, b"", now)
                        continue
                b.tokens -= 1.0
            if n > self.max_frame:
                counters.oversized += 1
                continue
            first = buf[0] if n else 0
            why = "not an OSC message or bundle" if first != 47 and first != 35 \
                else not_osc(buf, n) if n > 512 else None  # small: parse_packet is cheap
            if why is not None:
                # garbage, rejected before it is copied or queued: random 64 kB frames
                # cost a copy, a queue slot and a parse each (attack8)
                self._garbage(addr, n, why)
                continue
            data = view[:n].tobytes()
            if addr not in queues and pending.get(addr, 0) < FIFO_SHARE \
                    and self.fifo_bytes < FIFO_BYTES:
                fifo.append((addr, data))
                pending[addr] = pending.get(addr, 0) + 1
                self.fifo_bytes += len(data)
                if data[:13] == MORPH_PREFIX:
                    self._morph_queued(addr, data)
            else:
                self._overflow(addr, data)

    def _garbage(self, addr, n: int, why: str) -> None:
        """A datagram that cannot be OSC (osc.not_osc): counted and logged as
        parse_packet's garbage is, from the receive path."""
        self.counters.garbage += 1
        self.ratelog.warn(addr[0], "garbage packet from udp %s:%s (%d bytes: %s); %d so "
                          "far", addr[0], addr[1], n, why, self.counters.garbage)

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

    def journal_first(self, data: bytes) -> bytes:
        """Every reply leaves through here (or _flush_one), after the journal holds
        every edit made so far (before_send: one write() for a batch's replies, the
        group commit), so a SIGKILL after a /done loses nothing it acknowledged. When
        the journal could not write (a full disk, an I/O error), the packet's /done
        replies become `/fail <address> applied but not journaled ...`: an edit a
        restart would lose is never acknowledged. The other messages go as they are."""
        hook = self.before_send
        if hook is None or hook() is not False:
            return data
        return self._unjournaled(data)

    def _unjournaled(self, data: bytes) -> bytes:
        """A packet with its /done replies turned into /fail (the journal is behind)."""
        try:
            msgs = parse_packet(data)
        except MixgraphError:
            return data
        if not any(m.address == "/done" for m in msgs):
            return data
        why = getattr(getattr(self.dispatcher.session, "journal", None), "unwritten", None)
        out = [encode_message("/fail", [m.args[0] if m.args else "", "applied but not "
                                        f"journaled (a restart loses it): {why}"])
               if m.address == "/done" else encode_message(m.address, m.args) for m in msgs]
        return out[0] if len(out) == 1 else encode_bundle(out)

    def _flush_one(self, addr, msgs: list[bytes]) -> None:
        hook = self.before_send
        if hook is not None and hook() is False:  # journal first (journal_first)
            msgs = [self._unjournaled(m) for m in msgs]
        target = self._targets.get(addr, [addr])[0]
        sock = self.sock
        peer = self.peers.get(addr)
        bare = len(msgs) == 1 or (peer is not None and not peer.proven)  # counted exactly
        for pkt in (msgs if bare else pack_bundles(msgs, UDP_MTU)):
            self._sendto(pkt, target, sock)

    def _work(self, budget_s: float = 0.003) -> None:
        self._holding = True
        try:
            self._work_batches(budget_s)
        finally:
            self._holding = False
            self._commit_edits()
            self._flush_replies()

    def _commit_edits(self) -> None:
        try:
            self.dispatcher.commit_edits()
        except Exception:
            log.exception("commit failed")

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
                cut = now + TURN_S
                served = 0
                spent = self.fifo_spent
                deferred = self.deferred
                while fifo and served < QUANTUM and time.monotonic() <= cut:
                    item = fifo.popleft()
                    host = item[0][0]
                    if host in deferred or spent.get(host, 0.0) > TURN_S:
                        # this host had its turn's time in the FIFO: the rest of its
                        # packets wait, in their order, for its round-robin turns, so
                        # they do not hold every later packet of other hosts (attack10:
                        # 30 slow /patch/load held another host's /status for all 30)
                        self._defer(host, item)
                        continue
                    addr, data = item
                    served += len(data)
                    self._unpend(addr)
                    t0 = time.monotonic()
                    self._packet(data, self._udp_peer(addr), now)
                    spent[host] = spent.get(host, 0.0) + time.monotonic() - t0
                self.fifo_bytes -= served
                if not fifo:
                    spent.clear()
            for _ in range(len(ready)):
                item = ready.popleft()
                if isinstance(item, TcpConn):
                    more = not item.closed and self._process_conn(item, limit=BATCH)
                elif isinstance(item, str):  # a host's deferred FIFO packets
                    more = self._deferred_turn(item)
                else:
                    if not self.queues.get(item):
                        self._ready_set.discard(item)
                        self._drop_queue(item)
                        continue
                    if item in pending:  # its earlier packets are still in the FIFO
                        ready.append(item)
                        continue
                    more = self._udp_turn(item)
                if more:
                    ready.append(item)
                else:
                    self._ready_set.discard(item)
                break
            self._commit_edits()  # one plan for the batch's edits, before its replies
            self._flush_replies()  # a batch's replies wait for the batch, not the budget
            if time.monotonic() > deadline:
                return

    # ---- common ------------------------------------------------------------------
    def _packet(self, data: bytes, peer: Peer, now: float) -> None:
        if peer.proven or peer.kind != "udp":
            self._handle(data, peer, now)
            return
        key = peer.key
        self.credit[key] = min(self.credit.get(key, 0.0) + AMPLIFICATION * len(data),
                               CREDIT_MAX)
        box = self._outbox.get(key)
        mark = len(box) if box else 0
        try:
            self._handle(data, peer, now)
        finally:
            if not peer.proven:
                self._charge(key, mark, data)

    def _handle(self, data: bytes, peer: Peer, now: float) -> None:
        d = self.dispatcher
        if data[:13] == MORPH_PREFIX and peer.kind == "udp" and \
                self._morph_superseded(data, peer):
            return
        key = peer.key
        if key not in d.counters.clients and self.on_client is not None:
            self.on_client(peer)  # an operator log line the first time an address sends
        d.counters.clients[key] = now
        fb = self.feedback
        if fb.subs:
            fb.renew(key)
        read_only = peer.kind == "ws" and self.http_read_only
        if data[:6] == b"/node/" and not read_only and d.fast_set(data, peer):
            return
        try:
            msgs = parse_packet(data)
        except MixgraphError as e:
            d.counters.garbage += 1
            self.ratelog.warn(source_of(peer.key), "garbage packet from %s (%s); %d so far",
                              peer.label, e, d.counters.garbage)
            # a bad bundle costs a token per element read, as a good one's messages do:
            # a bundle of 4,000 good elements and a bad last one cost one (attack8)
            cost = getattr(e, "elements", 0)
            if cost > 1 and self.rate:
                b = self.buckets.get(key) if peer.kind == "udp" else None
                if b is not None:
                    b.tokens -= cost - 1
            return
        bundle = data[:1] == b"#"
        if bundle and self.rate and len(msgs) > 1:
            b = self.buckets.get(key) if peer.kind == "udp" else None
            if b is not None:
                b.tokens -= len(msgs) - 1  # a bundle costs one token per message
        if not msgs:
            return
        if read_only:
            from .readonly import refusal

            bad = refusal(self, peer, msgs)
            if bad is not None:  # a bundle is refused as a whole
                d.counters.failed += 1
                peer.reply("/fail", list(bad))
                return
        try:
            d.dispatch_packet(msgs, peer, bundle)
        except Exception:  # a bug must not take the control thread down: /fail, logged
            self._failed(f"packet {msgs[0].address[:64]!r} from {peer.label}")
            d.counters.failed += 1
            try:
                peer.reply("/fail", [msgs[0].address[:256], "internal error"])
            except Exception:
                pass

    # ---- TCP ---------------------------------------------------------------------
    def _accept(self, lsock: socket.socket | None = None, cls: type | None = None) -> None:
        """Take new connections on lsock (the OSC TCP listener by default) as cls
        (TcpConn, or web.WebConn for the HTTP listener): access, caps, then register."""
        lsock = lsock or self.tcp
        cls = cls or TcpConn
        for _ in range(64):
            try:
                s, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE) and self._spare is not None:
                    # out of descriptors: use the spare to take the connection and close it,
                    # so that it does not stay pending and wake the loop for ever
                    os.close(self._spare)
                    self._spare = None
                    try:
                        s, _ = lsock.accept()
                        s.close()
                    except OSError:
                        pass
                    self._spare = self._open_spare()
                    self._refuse(None, "out of file descriptors")
                    continue
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accept()  # no spare either: stop listening for a moment
                    self._refuse(None, f"cannot accept: {e.strerror}")
                return
            if not self.access.ok(addr[0]):
                self.counters.denied += 1
                s.close()
                continue
            host = addr[0]
            if len(self.conns) >= self.max_conns:
                s.close()
                self._refuse(addr, f"{self.max_conns} connections open (--max-conns)")
                continue
            if self.per_host.get(host, 0) >= self.limits.max_conns_per_host:
                s.close()
                self._refuse(addr, f"{self.limits.max_conns_per_host} connections from "
                                   "this address (--max-conns-per-host)")
                continue
            if cls is not TcpConn and self.http_read_only and (why := cls.no_room(self, host)):
                s.close()  # viewers may not take the slots kept for control surfaces
                self._refuse(addr, why)
                continue
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = cls(self, s, addr)
            self.conns[s.fileno()] = c
            self.per_host[host] = self.per_host.get(host, 0) + 1
            self.sel.register(s, selectors.EVENT_READ, c)

    def _pause_accept(self) -> None:
        for lsock in (self.tcp, self.http):
            try:
                self.sel.unregister(lsock)
            except (KeyError, ValueError):
                continue
            self._accept_paused_until = time.monotonic() + 0.5

    def web_bad(self, c: TcpConn, why: str) -> None:
        """Malformed HTTP or WebSocket input (server/web.py): counted, logged as the
        source's warnings are (ratelog); the connection is then closed."""
        self.counters.bad_http += 1
        self.ratelog.warn(c.addr[0], "%s: %s; closed (%d so far)", c.peer.label, why,
                          self.counters.bad_http)

    def _refuse(self, addr, why: str) -> None:
        """Count a refused connection; log at most one line per 10 s."""
        self.counters.refused += 1
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._last_refuse_log >= 10.0:
            self._last_refuse_log = now
            who = f"tcp {addr[0]}:{addr[1]}" if addr else "a tcp client"
            log.warning("refused %s: %s (%d refused since the last report, %d in all)",
                        who, why, self._refused_since_log, self.counters.refused)
            self._refused_since_log = 0

    def shed_output(self) -> None:
        """All TCP clients together hold more unsent output than allowed: disconnect the
        one furthest behind (it is not reading), until under the bound."""
        while self.out_bytes > self.limits.max_output and self.conns:
            c = max(self.conns.values(), key=lambda x: len(x.outbuf))
            if not c.outbuf:
                return
            log.warning("%s is not reading its replies (%d bytes unsent; all clients %d, "
                        "limit %d); disconnected", c.peer.label, len(c.outbuf),
                        self.out_bytes, self.limits.max_output)
            self.counters.slow_closed += 1
            self.close_conn(c)

    def _close_idle(self, now: float) -> None:
        """Close TCP connections silent for the idle timeout that hold no subscription
        (and web connections whose lingering close ran out or whose request head did not
        complete in time)."""
        limit = self.limits.idle_timeout
        subs = self.feedback.subs
        for c in list(self.conns.values()):
            expired = getattr(c, "expired", None)  # web.WebConn: lingering close, slowloris
            if expired is not None and expired(now):
                self.close_conn(c)
                continue
            if limit > 0 and now - c.last_in > limit and c.key not in subs:
                log.info("%s idle for %.0f s; closed", c.peer.label, now - c.last_in)
                self.counters.idle_closed += 1
                self.close_conn(c)

    def update_interest(self, c: TcpConn) -> None:
        if c.closed:
            return
        ev = 0
        if not c.paused and len(c.outbuf) < OUT_HIGH and len(c.inbuf) < 4 * self.max_frame:
            ev |= selectors.EVENT_READ
        if c.outbuf:
            ev |= selectors.EVENT_WRITE
        try:
            if ev == 0:
                # held back (its rate limit, or its input buffer full) with nothing to
                # send: not watched until _resume_paused lets it go on. Watched for READ,
                # select() returned at once while its input waited in the kernel, and the
                # loop spun: one TCP client over its rate held 73 % of a core (attack7)
                self.sel.unregister(c.sock)
            elif self.sel.get_key(c.sock).events != ev:
                self.sel.modify(c.sock, ev, c)
        except KeyError:
            if ev:
                self.sel.register(c.sock, ev, c)
        except ValueError:
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
        n = self.per_host.get(c.addr[0], 1) - 1
        if n > 0:
            self.per_host[c.addr[0]] = n
        else:
            self.per_host.pop(c.addr[0], None)
        c.sock.close()
        self.out_bytes -= len(c.outbuf)
        c.outbuf = bytearray()  # the memory goes back now, not when the last reference does
        c.inbuf = bytearray()
        self._paused.discard(c)
        self.feedback.drop(c.key)
        self.dispatcher.release_touches(c.key)
        self.counters.clients.pop(c.key, None)

    def _read_conn(self, c: TcpConn) -> None:
        if len(c.inbuf) < 4 * self.max_frame:
            # into a buffer kept for it: recv(262144) allocated 256 kB a call, which
            # under mlockall(MCL_FUTURE) the kernel populated and locked: 340 us a read
            # of a 100-byte message, against 11 us (attack8)
            try:
                n = c.sock.recv_into(self._tbuf)
            except (BlockingIOError, InterruptedError):
                n = -1
            except OSError:
                n = 0
            if n == 0:
                self._process_conn(c)
                self.close_conn(c)
                return
            if n > 0:
                c.inbuf += self._tview[:n]
                c.last_in = time.monotonic()
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
        """The control loop: until stop() is called. Every step is guarded: a
        failure is a logged error (and a /fail where there was a request, see
        _packet), never a dead control thread."""
        _name_thread(b"mg-control")
        while not self._stop:
            timeout = 0.0 if self.ready or self.fifo else 0.001 if self._paused else 0.005
            if timeout:  # feedback and meters go out when due, not at the next wake-up
                timeout = max(0.0, min(timeout, self.feedback.next_due() - time.monotonic()))
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                events = []
            except (OSError, ValueError):
                self._failed("select")
                time.sleep(timeout)  # no busy loop if the selector itself is broken
                events = []
            for key, mask in events:
                what = key.data
                try:
                    if what == "udp":
                        self._drain_udp()
                    elif what == "listen":
                        self._accept()
                    elif what == "http":
                        self._accept(self.http, self._web_conn)
                    else:
                        if mask & selectors.EVENT_WRITE:
                            what.flush()
                        if mask & selectors.EVENT_READ and not what.closed:
                            self._read_conn(what)
                except Exception:
                    self._failed("receive")
            self._guard(self._resume_paused, self._paused, "resume")
            self._guard(self._work, self.ready or self.fifo, "dispatch")
            self._guard(self.service, True, "service")

    def _guard(self, step: Callable[[], None], when, what: str) -> None:
        if when:
            try:
                step()
            except Exception:
                self._failed(what)

    def _failed(self, what: str) -> None:
        """Log a control-loop step's failure (with its traceback at most once a
        second, so a persistent fault cannot flood the log); the loop goes on."""
        self.counters.internal_errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:
            self._last_error_log = now
            log.exception("control loop: %s failed (%d internal errors so far)", what,
                          self.counters.internal_errors)

    def service(self) -> None:
        """Periodic work of the control loop, each part guarded on its own."""
        d = self.dispatcher
        try:
            d.session.service(commit=False)
            d.commit_edits()
        except Exception:
            log.exception("engine service failed")
        try:
            d.service()
        except Exception:
            log.exception("held bundles failed")
        try:
            self.feedback.service()
        except Exception:
            log.exception("feedback failed")
        now = time.monotonic()
        if now - self._last_gc > 30:
            self._last_gc = now
            self._guard(self._gc_peers, True, "peer cleanup")
            self.ratelog.flush()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            if self._spare is None:
                self._spare = self._open_spare()
            if self.tcp:
                self.sel.register(self.tcp, selectors.EVENT_READ, "listen")
            if self.http:
                self.sel.register(self.http, selectors.EVENT_READ, "http")
        if now - self._last_idle_check >= 1.0:
            self._last_idle_check = now
            self._close_idle(now)
        if self.tick and now - self._last_tick >= 0.25:  # autosave: 4 Hz is plenty
            self._last_tick = now
            self._guard(self.tick, True, "autosave tick")
        if d.session.actions_running and now - self._last_expire >= 0.5:
            self._last_expire = now
            # a stopped audio clock must not leave one mute
            self._guard(lambda: expire_actions(d.session, now), True, "action expiry")

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        for c in list(self.conns.values()):
            self.close_conn(c)
        self.sel.close()
        self.sock.close()
        if self.tcp:
            self.tcp.close()
        if self.http:
            self.http.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


UdpServer = ControlServer  # the historical name


def _name_thread(name: bytes) -> None:
    """Name the calling thread for the kernel (top -H, /proc/<pid>/task/<tid>/comm), as
    the audio thread is named mg-audio: a bench or an operator can then tell the
    control thread's CPU from the rest. Linux only; elsewhere nothing."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
