"""Holes found by the eighth attack run, against a real daemon (null backend) over real
sockets, with an in-process check where the defect's mark is not a reply (a table's
size, a count of decodes): those are what can fail without timing."""

from __future__ import annotations

import socket
import time

import pytest

from mixgraph.server import transport
from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher, encode_message, parse_packet
from mixgraph.server.session import Session
from mixgraph.server.transport import ControlServer

from daemon_util import Daemon


@pytest.fixture
def server():
    """An in-process ControlServer (no loop: the test drives it) on ephemeral ports."""
    e = Engine(48000, 2, 2)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    srv = ControlServer(d, "127.0.0.1", 0, rate=0.0)
    e.null_start(64)
    try:
        yield srv
    finally:
        e.null_stop()
        srv.close()
        s.close()
        e.free()


class Udp:
    """One UDP socket of a test client (its own source port)."""

    def __init__(self, port: int) -> None:
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.to = ("127.0.0.1", port)
        self.port = self.s.getsockname()[1]

    def send(self, address: str, *args) -> None:
        self.s.sendto(encode_message(address, list(args)), self.to)

    def recv(self, timeout: float = 60.0) -> list[tuple]:
        self.s.settimeout(timeout)
        data, _ = self.s.recvfrom(65536)
        return [(m.address, m.args) for m in parse_packet(data)]

    def close(self) -> None:
        self.s.close()


# ---- 1. /reply-port choices were kept for ever ----------------------------------------
def test_reply_ports_are_bounded_and_a_live_client_keeps_its_own(server, monkeypatch):
    """Every /reply-port was kept for the server's life: 20,000 source ports sending
    one each held 19 MB more (bench/source_ports.py --reply-port: 204.6 -> 231.1 ->
    241.6 MB over two rounds). Now the clients remembered keep theirs, and of the
    forgotten ones the REPLY_PORTS_FORGOTTEN most recent."""
    monkeypatch.setattr(transport, "PEERS_SOFT", 50)
    monkeypatch.setattr(transport, "PEERS_MAX", 200)
    monkeypatch.setattr(transport, "REPLY_PORTS_FORGOTTEN", 100)
    live = ("127.0.0.1", 9)
    server.handle_datagram(encode_message("/reply-port", [7001]), live)
    server._work()
    for port in range(20000, 23000):
        server.handle_datagram(encode_message("/reply-port", [port + 10000]),
                               ("127.0.0.1", port))
        if port % 50 == 0:
            server._work()
            server.handle_datagram(encode_message("/sync", [port]), live)  # stays busy
    while server.fifo or server.ready:
        server._work()
    assert len(server.peers) <= 200
    assert len(server.reply_ports) <= 200 + 100, len(server.reply_ports)
    # the live client's replies still go where it asked
    assert server._targets[live][0] == ("127.0.0.1", 7001)
    # a forgotten client that comes back within the kept ones gets its port again
    recent = ("127.0.0.1", 22990)
    server._forget_peer(recent)
    assert server._udp_peer(recent) and server._targets[recent][0] == ("127.0.0.1", 32990)


def test_a_daemon_routes_replies_after_thousands_of_reply_ports(tmp_path):
    """Over real sockets: a client sets its reply port, 3,000 other source ports each
    send /reply-port, and the first client's /sync is answered at its reply port."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    a, listen = Udp(d.port), Udp(d.port)
    try:
        a.send("/reply-port", listen.port)
        assert listen.recv() == [("/done", ["/reply-port", listen.port])]
        for i in range(3000):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(encode_message("/reply-port", [40000 + i]), ("127.0.0.1", d.port))
            s.close()
            if i % 500 == 499:
                time.sleep(0.02)
        a.send("/sync", 77)
        assert listen.recv() == [("/synced", [77])]
        assert "Traceback" not in d.output()
    finally:
        a.close()
        listen.close()
        d.stop()


# ---- 2. a cue number of 1e300 was taken ----------------------------------------------
@pytest.mark.parametrize("num", [1e300, 1e308, float("inf"), float("nan"), -1.0, -0.0,
                                 0.0, 1e-300, 2147483647, 1e7])
def test_cue_set_refuses_numbers_out_of_range(daemon, num):
    """`/cue/set 1e300` made cue `1e+300`, and above a million neighbouring integers
    were one cue (2147483647 showed as 2.14748e+09). A number outside 0.001..999999
    (or not finite) is a /fail naming the range, and the cue list is unchanged."""
    daemon.call("/cue/set", 1, "name", "one")
    addr, args = daemon.request("/cue/set", num, "name", "bad")
    assert addr == "/fail" and "cue number" in args[-1], (addr, args)
    assert _cue_lines(daemon) == ["1 name one"]
    assert daemon.call("/cue/set", 999999, "name", "last")[1] == "999999"
    assert daemon.call("/cue/set", 0.001, "name", "first")[1] == "0.001"
    assert len(_cue_lines(daemon)) == 3


def _cue_lines(d: Daemon) -> list[str]:
    """The daemon's cue list, one text line a cue (/cue/list over its own socket)."""
    u = Udp(d.port)
    try:
        u.send("/cue/list")
        lines = []
        while True:
            for addr, args in u.recv():
                if addr == "/cue/list.reply":
                    lines.append(args[1])
                elif addr == "/done":
                    return lines
    finally:
        u.close()
