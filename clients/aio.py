"""The asyncio mixgraph client, over UDP or TCP.

    import asyncio
    from mixgraph.clients import AsyncClient

    async def main():
        async with await AsyncClient.open("127.0.0.1", 8000, transport="tcp") as c:
            await c.add("gain", "g")
            await c.set("g", "gain", -6.0)
            await c.subscribe(lambda addr, args: print(addr, *args))
            await asyncio.sleep(10)

    asyncio.run(main())

One receive task per client routes every incoming message: to the request
waiting for it (matched on the reply's address and echoed keys), or else to
the subscribe() callback (a plain function or a coroutine function)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
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

log = logging.getLogger("mixgraph.client")


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr) -> None:
        self.client._packet(data)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        log.debug("udp error: %s", exc)


class AsyncClient(CommandsMixin):
    """Create with `await AsyncClient.open(host, port, transport="udp"|"tcp")`."""

    def __init__(self, host: str, port: int, timeout: float, transport: str, framing: str,
                 max_frame: int, retries: int = 2) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.retries = retries
        self.transport_kind = transport
        self.framing = framing
        self.max_frame = max_frame
        self._waiters: list[tuple[str, asyncio.Future]] = []
        self._callback: Callable | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._proving = False
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._renew_task: asyncio.Task | None = None
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=4096)
        self._tasks: set[asyncio.Task] = set()
        self._state_seen: int | None = None  # state messages counted while subscribing

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 8000, timeout: float = 2.0,
                   transport: str = "udp", framing: str = "size",
                   max_frame: int = DEFAULT_MAX_FRAME, retries: int = 2) -> AsyncClient:
        self = cls(host, port, timeout, transport, framing, max_frame, retries)
        loop = asyncio.get_running_loop()
        if transport == "udp":
            family, remote, local = udp_endpoint(host, port)
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=local, remote_addr=remote[:2],
                family=family)
        elif transport == "tcp":
            frame(b"", framing)  # validates the name
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout)
            sock = self._writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._reader_task = asyncio.create_task(self._tcp_loop(reader))
        else:
            raise ValueError(f"unknown transport {transport!r} (use 'udp' or 'tcp')")
        return self

    # ---- receiving ---------------------------------------------------------------------
    async def _tcp_loop(self, reader: asyncio.StreamReader) -> None:
        dec = decoder(self.framing, self.max_frame)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for f in dec.feed(data):
                    self._packet(f)
        except (ProtocolError, ConnectionError) as e:
            log.warning("tcp receive stopped: %s", e)
        finally:
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_exception(ConnectionError("the TCP connection closed"))
            self._waiters.clear()

    def _packet(self, data: bytes) -> None:
        try:
            msgs = decode(data)
        except ProtocolError:
            return
        for addr, rargs in msgs:
            self._route(addr, rargs)

    def _route(self, addr: str, rargs: list) -> None:
        for i, (sent, fut) in enumerate(self._waiters):
            if is_reply_to(addr, sent, rargs):
                del self._waiters[i]
                if not fut.done():
                    fut.set_result((addr, rargs))
                return
        if self._state_seen is not None and addr.startswith("/node/"):
            self._state_seen += 1
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait((addr, rargs))
        cb = self._callback
        if cb is not None and is_feedback(addr):
            try:
                r = cb(addr, rargs)
                if inspect.isawaitable(r):
                    t = asyncio.ensure_future(r)
                    self._tasks.add(t)
                    t.add_done_callback(self._tasks.discard)
            except Exception:
                log.exception("feedback callback failed")

    async def receive(self, timeout: float | None = None) -> tuple[str, list]:
        """The next message not taken by a request."""
        return await asyncio.wait_for(self._queue.get(), self.timeout if timeout is None
                                      else timeout)

    # ---- sending -------------------------------------------------------------------------
    def send(self, address: str, *args: Any) -> None:
        self.send_packet(encode(address, args))

    def send_packet(self, packet: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(packet)
        elif self._writer is not None:
            self._writer.write(frame(packet, self.framing))
        else:
            raise ConnectionError("client is closed")

    async def drain(self) -> None:
        """Wait until the TCP send buffer has room (flow control for floods)."""
        if self._writer is not None:
            await self._writer.drain()

    async def hello(self) -> bool:
        """Prove this client's UDP address (the /hello cookie round trip; see
        Client.hello). request() does it by itself when the server asks for it."""
        if self._udp is None:
            return True
        self._proving = True
        try:
            reply = await self.request("/hello")
            for _ in range(3):
                if reply[0] != "/hello" or not reply[1] or not isinstance(reply[1][0], str):
                    break
                reply = await self.request("/hello", reply[1][0])
            return reply == ("/done", ["/hello"])
        except MixgraphTimeout:
            return False
        finally:
            self._proving = False

    async def request(self, address: str, *args: Any, timeout: float | None = None,
                      once: bool = False) -> tuple[str, list]:
        reply = await self._request(address, args, timeout, once)
        if not self._proving and self._udp is not None \
                and needs_proof(reply) \
                and (is_repeatable(address, args) or address.startswith("/catalog")) \
                and await self.hello():
            reply = await self._request(address, args, timeout, once)
        return reply

    async def _request(self, address: str, args: tuple, timeout: float | None,
                       once: bool) -> tuple[str, list]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        entry = (address, fut)
        self._waiters.append(entry)
        timeout = self.timeout if timeout is None else timeout
        attempts = (1 + self.retries if not once and self._udp is not None
                    and is_repeatable(address, args) else 1)
        t_end = loop.time() + timeout
        try:
            for k in range(attempts):
                self.send(address, *args)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut),
                                                  (t_end - loop.time()) / (attempts - k))
                except TimeoutError:
                    continue
            raise MixgraphTimeout(f"no reply to {address} within {timeout} s")
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
            if not fut.done():
                fut.cancel()

    async def call(self, address: str, *args: Any, timeout: float | None = None,
                   once: bool = False) -> list:
        addr, rargs = await self.request(address, *args, timeout=timeout, once=once)
        if addr == "/fail":
            raise MixgraphFail(address, rargs[1:])
        return rargs

    async def _run(self, kind: str, address: str, args: tuple, post,
                   timeout: float | None = None):
        if kind == "request":
            return post(*await self.request(address, *args, timeout=timeout))
        return post(await self.call(address, *args, timeout=timeout, once=kind == "action"))

    # ---- feedback ----------------------------------------------------------------------------
    async def subscribe(self, callback: Callable, lease_s: float | None = None,
                        renew: bool = True) -> list:
        """Call `callback(address, args)` (function or coroutine function) for every
        feedback message; the lease is renewed while the client is open."""
        self._callback = callback
        args = () if lease_s is None else (float(lease_s),)
        self._state_seen = 0
        try:
            reply = await self.call("/subscribe", *args)
            if len(reply) >= 3 and isinstance(reply[2], int):
                # `/done /subscribe <lease> <count>`: wait for the whole state dump
                want = reply[2]
                deadline = time.monotonic() + self.timeout
                while self._state_seen < want and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                if self._state_seen < want:
                    raise MixgraphTimeout(
                        f"/subscribe: the state dump did not arrive ({self._state_seen} of "
                        f"{want} messages within {self.timeout} s)")
        finally:
            self._state_seen = None
        if renew and self._renew_task is None:
            self._renew_task = asyncio.create_task(self._renew(max(0.5, (lease_s or 10.0) / 3)))
        return reply

    async def _renew(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(OSError, ConnectionError):
                self.send("/status")  # any message renews the lease

    async def unsubscribe(self) -> list:
        if self._renew_task is not None:
            self._renew_task.cancel()
            self._renew_task = None
        reply = await self.call("/unsubscribe")
        self._callback = None
        return reply

    def on_message(self, callback: Callable | None) -> None:
        self._callback = callback

    # ---- lifetime ------------------------------------------------------------------------------
    async def close(self) -> None:
        for t in (self._renew_task, self._reader_task):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._renew_task = self._reader_task = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
