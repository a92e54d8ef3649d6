"""A small blocking OSC/UDP client for mixgraph (used by `mixgraph ctl` and tests)."""

from __future__ import annotations

import socket
import time
from typing import Any

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder


class MixgraphFail(Exception):
    """The server answered /fail; .reason says why, .address what failed."""

    def __init__(self, address: str, args: list) -> None:
        self.address = address
        self.args = args
        self.reason = str(args[-1]) if args else ""
        super().__init__(f"{address}: {self.reason}")


def encode(address: str, args: tuple | list) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, bool):
            b.add_arg(a)
        elif isinstance(a, int):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_INT)
        elif isinstance(a, float):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_FLOAT)
        elif isinstance(a, bytes):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_BLOB)
        else:
            b.add_arg(str(a), OscMessageBuilder.ARG_TYPE_STRING)
    return b.build().dgram


class Client:
    """Send a command, wait for the reply that matches it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8000, timeout: float = 2.0) -> None:
        self.addr = (host, port)
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1" if host in ("127.0.0.1", "localhost") else "", 0))

    def send(self, address: str, *args: Any) -> None:
        self.sock.sendto(encode(address, args), self.addr)

    def receive(self, timeout: float | None = None) -> tuple[str, list]:
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        data, _ = self.sock.recvfrom(65536)
        m = OscMessage(data)
        return m.address, list(m.params)

    def request(self, address: str, *args: Any) -> tuple[str, list]:
        """Send and return the first reply for this address (/done, /fail or the answer)."""
        self.send(address, *args)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {address} within {self.timeout} s")
            addr, rargs = self.receive(left)
            if addr in ("/done", "/fail") and rargs and rargs[0] == address:
                return addr, rargs
            if addr in (address, address + ".reply"):
                return addr, rargs
            if address == "/sync" and addr == "/synced":
                return addr, rargs

    def call(self, address: str, *args: Any) -> list:
        """Like request, but /fail raises MixgraphFail."""
        addr, rargs = self.request(address, *args)
        if addr == "/fail":
            raise MixgraphFail(address, rargs[1:])
        return rargs

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
