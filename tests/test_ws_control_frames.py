"""WebSocket control frames and fragments are paid for like messages (attack3 A6).

Pings (each answered with a pong) and empty continuation frames did not count against
the rate limit or a client's share of a turn of the control loop: a read-only viewer
streaming 19 MB of empty pings held other clients' /status round trips at up to 1.5 s
and took 15 s of the server's CPU, with `rate_limited` at 0."""

from __future__ import annotations

import time

from test_http import WS, free_tcp_port

from daemon_util import Daemon


def test_pings_are_rate_limited_like_messages(tmp_path):
    port = free_tcp_port()
    d = Daemon(tmp_path / "state", "--backend", "null", "--http", str(port),
               "--http-read-only", "--rate-limit", "100", "--rate-burst", "100")
    try:
        w = WS(port)
        assert w.status == 101
        n = 1000
        w.sock.sendall((bytes((0x89, 0x80)) + b"\0\0\0\0") * n)  # empty masked pings
        pongs = 0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                op, _ = w.frame(timeout=max(0.05, end - time.monotonic()))
            except TimeoutError:
                break
            if op == 0xA:
                pongs += 1
            elif op == -1:
                break
        # at 100 a second with bursts of 100, about 200 in the first second; every one
        # of the 1000 came back at once before (generous bound: scheduling noise)
        assert pongs < 600, pongs
        w.close()
    finally:
        d.stop()
