"""The blocking mixgraph client, over UDP or TCP.

    from mixgraph.clients import Client, MixgraphFail

    with Client("127.0.0.1", 8000) as c:              # transport="tcp" for TCP
        c.add("sine", "osc", freq=440.0)
        c.add("gain", "g", gain=-6.0)
        c.connect("osc", "g")
        c.set("g", "gain", -12.0)                     # -> -12.0 (the value applied)
        c.get("g", "gain")                            # -> -12.0
        try:
            c.connect("g", "nowhere")
        except MixgraphFail as e:
            print(e.address, e.keys, e.reason)

Every command waits for the reply that matches it (`/done <address> ...`,
`/fail <address> ... <reason>`, or the query's answer), so replies to other
requests and feedback never get mixed up with it. `subscribe(callback)`
starts a receive thread that calls `callback(address, args)` for every
feedback message (changes made by other clients).
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .api import CommandsMixin, MixgraphFail, MixgraphTimeout, is_feedback
from .protocol import (
    DEFAULT_MAX_FRAME,
    ProtocolError,
    decode,
    decoder,
    encode,
    frame,
    is_repeatable,
    is_reply_to,
    needs_proof,
    udp_endpoint,
)

__all__ = ["Client", "MixgraphFail", "MixgraphTimeout", "encode"]

Callback = Callable[[str, list], Any]


class _Udp:
    def __init__(self, host: str, port: int) -> None:
        family, self.addr, local = udp_endpoint(host, port)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(local)

    def send(self, packet: bytes) -> None:
        self.sock.sendto(packet, self.addr)

    def recv(self, timeout: float | None) -> list[bytes]:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65536)
        return [data]

    def close(self) -> None:
        self.sock.close()


class _Tcp:
    def __init__(self, host: str, port: int, framing: str, max_frame: int,
                 connect_timeout: float) -> None:
        self.framing = framing
        self.decoder = decoder(framing, max_frame)
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.frames: collections.deque[bytes] = collections.deque()

    def send(self, packet: bytes) -> None:
        self.sock.sendall(frame(packet, self.framing))

    def send_many(self, packets: list[bytes]) -> None:
        self.sock.sendall(b"".join(frame(p, self.framing) for p in packets))

    def recv(self, timeout: float | None) -> list[bytes]:
        if self.frames:
            out = list(self.frames)
            self.frames.clear()
            return out
        self.sock.settimeout(timeout)
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the TCP connection")
            frames = self.decoder.feed(data)
            if frames:
                return frames

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class _Waiter:
    __slots__ = ("sent", "event", "reply")

    def __init__(self, sent: str) -> None:
        self.sent = sent
        self.event = threading.Event()
        self.reply: tuple[str, list] | None = None


class Client(CommandsMixin):
    """Send commands to a mixgraph server and wait for the replies that match them.

    transport: "udp" (default) or "tcp"; framing (TCP only): "size" (OSC 1.0,
    int32 length prefix, the default) or "slip" (OSC 1.1). retries (UDP only):
    how many times a request that is safe to repeat (a query, a parameter set,
    /status, /sync, ...) is sent again when its reply does not come within
    timeout / (retries + 1); commands that change the graph are never repeated."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8000, timeout: float = 2.0,
                 transport: str = "udp", framing: str = "size",
                 max_frame: int = DEFAULT_MAX_FRAME, retries: int = 2) -> None:
        self.host, self.port = host, port
        self.retries = retries
        self.addr = (host, port)
        self.timeout = timeout
        self.transport = transport
        if transport == "udp":
            self._t: _Udp | _Tcp = _Udp(host, port)
        elif transport == "tcp":
            self._t = _Tcp(host, port, framing, max_frame, timeout)
        else:
            raise ValueError(f"unknown transport {transport!r} (use 'udp' or 'tcp')")
        self._send_lock = threading.Lock()
        self._inbox: collections.deque[tuple[str, list]] = collections.deque()
        self._backlog: collections.deque[tuple[str, list]] = collections.deque(maxlen=4096)
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []
        self._callback: Callback | None = None
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._renew_every: float | None = None
        self._proving = False
        self._state_seen: int | None = None  # state messages counted while subscribing
        self.reader_error: BaseException | None = None

    @property
    def sock(self) -> socket.socket:
        return self._t.sock

    # ---- raw messages --------------------------------------------------------------
    def send(self, address: str, *args: Any) -> None:
        """Send one message; do not wait for anything."""
        self.send_packet(encode(address, args))

    def send_packet(self, packet: bytes) -> None:
        """Send an encoded OSC packet (a message or a bundle)."""
        with self._send_lock:
            self._t.send(packet)

    def send_many(self, packets: list[bytes]) -> None:
        """Send many encoded packets (one write on TCP)."""
        with self._send_lock:
            if isinstance(self._t, _Tcp):
                self._t.send_many(packets)
            else:
                for p in packets:
                    self._t.send(p)

    def _read_messages(self, timeout: float | None) -> list[tuple[str, list]]:
        out: list[tuple[str, list]] = []
        for packet in self._t.recv(timeout):
            try:
                out += decode(packet)
            except ProtocolError:
                continue  # not OSC: nothing a client can do with it
        return out

    def receive(self, timeout: float | None = None) -> tuple[str, list]:
        """The next message from the server (raises TimeoutError)."""
        timeout = self.timeout if timeout is None else timeout
        if self._reader is not None:
            deadline = time.monotonic() + timeout
            with self._cond:
                while not self._backlog:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        if not self._backlog:
                            raise TimeoutError(f"no message within {timeout} s")
                return self._backlog.popleft()
        deadline = time.monotonic() + timeout
        while not self._inbox:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message within {timeout} s")
            try:
                self._inbox.extend(self._read_messages(left))
            except TimeoutError:
                raise TimeoutError(f"no message within {timeout} s") from None
        return self._inbox.popleft()

    def _attempts(self, address: str, args: tuple) -> int:
        """UDP may lose a datagram: requests that are safe to repeat (queries, parameter
        sets, /status ...) are sent again when no reply came within a share of the timeout."""
        if self.transport != "udp" or not self.retries:
            return 1
        return 1 + self.retries if is_repeatable(address, args) else 1

    def hello(self) -> bool:
        """Prove this client's UDP address to the server: `/hello` is answered with a
        cookie, sent back as `/hello <cookie>`. Until then a server answers a UDP address
        that is not loopback with at most 3x the bytes it received from it and starts no
        feedback for it (docs/protocol.md, "Address proof"). request() does this by
        itself when the server asks for it; True when the server took the proof."""
        if self.transport != "udp":
            return True
        self._proving = True
        try:
            reply = self.request("/hello")
            for _ in range(3):
                if reply[0] != "/hello" or not reply[1] or not isinstance(reply[1][0], str):
                    break
                reply = self.request("/hello", reply[1][0])
            return reply == ("/done", ["/hello"])
        except MixgraphTimeout:
            return False
        finally:
            self._proving = False

    def request(self, address: str, *args: Any, timeout: float | None = None,
                once: bool = False) -> tuple[str, list]:
        """Send and return the first reply for this address (/done, /fail or the answer).
        once=True: never send it again (node actions are not safe to repeat)."""
        reply = self._request(address, args, timeout, once)
        if not self._proving and self.transport == "udp" and needs_proof(reply) \
                and (is_repeatable(address, args) or address.startswith("/catalog")) \
                and self.hello():
            reply = self._request(address, args, timeout, once)
        return reply

    def _request(self, address: str, args: tuple, timeout: float | None,
                 once: bool) -> tuple[str, list]:
        timeout = self.timeout if timeout is None else timeout
        attempts = 1 if once else self._attempts(address, args)
        t_end = time.monotonic() + timeout
        if self._reader is not None:
            w = _Waiter(address)
            with self._cond:
                self._waiters.append(w)
            for k in range(attempts):
                self.send(address, *args)
                left = t_end - time.monotonic()
                if w.event.wait(left / (attempts - k)) or w.reply is not None:
                    return w.reply  # type: ignore[return-value]
            with self._cond:
                if w in self._waiters:
                    self._waiters.remove(w)
            if w.reply is None:
                raise MixgraphTimeout(f"no reply to {address} within {timeout} s")
            return w.reply
        for k in range(attempts):
            self.send(address, *args)
            deadline = time.monotonic() + (t_end - time.monotonic()) / (attempts - k)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    addr, rargs = self.receive(left)
                except TimeoutError:
                    break
                if is_reply_to(addr, address, rargs):
                    return addr, rargs
        raise MixgraphTimeout(f"no reply to {address} within {timeout} s")

    def call(self, address: str, *args: Any, timeout: float | None = None,
             once: bool = False) -> list:
        """Like request, but /fail raises MixgraphFail; returns the reply's arguments."""
        addr, rargs = self.request(address, *args, timeout=timeout, once=once)
        if addr == "/fail":
            raise MixgraphFail(address, rargs[1:])
        return rargs

    def _run(self, kind: str, address: str, args: tuple, post, timeout: float | None = None):
        if kind == "request":
            return post(*self.request(address, *args, timeout=timeout))
        return post(self.call(address, *args, timeout=timeout, once=kind == "action"))

    def collect(self, address: str, *args: Any, timeout: float | None = None) -> list:
        """Send a list request (/scene/list, /cue/list, /scene/safe) and return its
        `.reply` messages' arguments, up to its /done (MixgraphFail on /fail)."""
        addr, rargs = self.request(address, *args, timeout=timeout)
        rows = []
        while addr != "/done":
            if addr == "/fail":
                raise MixgraphFail(address, rargs[1:])
            if addr == address + ".reply":
                rows.append(rargs)
            addr, rargs = self.receive(timeout)
        return rows

    def scene_list(self) -> list:
        """[name, count, fade_s] per scene."""
        return self.collect("/scene/list")

    def cue_list(self) -> list:
        """[number, text line] per cue."""
        return self.collect("/cue/list")

    def safes(self) -> list[str]:
        """The recall-safe patterns."""
        return [r[0] for r in self.collect("/scene/safe")]

    # ---- feedback -------------------------------------------------------------------
    def subscribe(self, callback: Callback, lease_s: float | None = None,
                  renew: bool = True) -> list:
        """Subscribe to feedback; `callback(address, args)` runs on a receive
        thread for every change made by someone else (and for the state dump
        the server sends on subscribing). The lease is renewed while the
        client is open. Raises MixgraphFail if the server refuses."""
        self._callback = callback
        self.start_reader()
        args = () if lease_s is None else (float(lease_s),)
        with self._cond:
            self._state_seen = 0
        reply = self.call("/subscribe", *args)
        if len(reply) >= 3 and isinstance(reply[2], int):
            # `/done /subscribe <lease> <count>`: the state dump follows; wait for all of it
            want = reply[2]
            deadline = time.monotonic() + self.timeout
            with self._cond:
                while self._state_seen is not None and self._state_seen < want:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._reader is None:
                        break
                    self._cond.wait(min(left, 0.1))
                got, self._state_seen = self._state_seen, None
            if got is None or got < want:
                raise MixgraphTimeout(f"/subscribe: the state dump did not arrive "
                                      f"({got or 0} of {want} messages within {self.timeout} s)")
        else:
            with self._cond:
                self._state_seen = None
        if renew:
            self._renew_every = max(0.5, (lease_s or 10.0) / 3.0)
        return reply

    def unsubscribe(self) -> list:
        self._renew_every = None
        reply = self.call("/unsubscribe")
        self._callback = None
        return reply

    def on_message(self, callback: Callback | None) -> None:
        """Call `callback(address, args)` for every unsolicited message (starts the
        receive thread)."""
        self._callback = callback
        if callback is not None:
            self.start_reader()

    def start_reader(self) -> None:
        if self._reader is None:
            self._stop.clear()
            with self._cond:
                self._backlog.extend(self._inbox)
                self._inbox.clear()
            self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                            name=f"mixgraph-client-{self.port}")
            self._reader.start()

    def _read_loop(self) -> None:
        last_renew = time.monotonic()
        while not self._stop.is_set():
            try:
                msgs = self._read_messages(0.1)
            except TimeoutError:
                msgs = []
            except (OSError, ConnectionError, ProtocolError) as e:
                if not self._stop.is_set():
                    self.reader_error = e
                break
            for addr, rargs in msgs:
                self._route(addr, rargs)
            every = self._renew_every
            if every is not None and time.monotonic() - last_renew > every:
                last_renew = time.monotonic()
                try:
                    self.send("/status")  # any message renews the lease
                except OSError:
                    pass
        with self._cond:  # wake anyone still waiting
            for w in self._waiters:
                w.event.set()
            self._cond.notify_all()

    def _route(self, addr: str, rargs: list) -> None:
        with self._cond:
            for w in self._waiters:
                if is_reply_to(addr, w.sent, rargs):
                    w.reply = (addr, rargs)
                    self._waiters.remove(w)
                    w.event.set()
                    return
            self._backlog.append((addr, rargs))
            if self._state_seen is not None and addr.startswith("/node/"):
                self._state_seen += 1
            self._cond.notify_all()
        cb = self._callback
        if cb is not None and is_feedback(addr):
            try:
                cb(addr, rargs)
            except Exception:  # a callback's bug must not stop the receive loop
                import logging

                logging.getLogger("mixgraph.client").exception("feedback callback failed")

    # ---- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=1.0)
        self._reader = None
        self._t.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
