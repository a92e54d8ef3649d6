"""SIGKILL rounds with acknowledged-edit accounting (issue 13, hole 11): used by
tests/test_journal.py (20 rounds) and bench/sigkill.py (200 rounds).

A round starts a real daemon on a state directory, sends edits as fast as the
server answers them (a window of requests in flight over UDP), keeps every
`/done` it receives, kills the daemon with SIGKILL at a seeded random moment,
keeps the replies that had already arrived, restarts it and checks that every
acknowledged edit is in the restored graph. Edits: parameter sets on a few
faders with values that only go up (so an acknowledged value is present when
the restored value is at least it), and now and then a node added and
connected."""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from mixgraph.clients.protocol import decode, encode

from daemon_util import Daemon

FADERS = 8


@dataclass
class Tally:
    """What the rounds acknowledged and what came back."""

    rounds: int = 0
    acked: int = 0  # /done answers received for edits
    lost: int = 0  # acknowledged edits missing after the restart
    rounds_losing: int = 0
    worst: int = 0  # most lost in one round
    sent: int = 0
    seconds_editing: float = 0.0
    notes: list[str] = field(default_factory=list)


class KillLoop:
    """Rounds on one state directory; `extra` goes to `mixgraph serve`."""

    def __init__(self, state: Path, seed: int, extra: tuple[str, ...] = (),
                 min_s: float = 0.05, max_s: float = 0.4, window: int = 32) -> None:
        self.state = state
        self.rng = random.Random(seed)
        self.extra = ("--backend", "null", *extra)
        self.min_s, self.max_s, self.window = min_s, max_s, window
        self.k = 0  # edit counter: values only go up
        self.last: dict[str, float] = {}  # fader -> last acknowledged gain
        self.nodes: set[str] = set()  # acknowledged added nodes
        self.conns: set[tuple[str, str]] = set()  # acknowledged connections
        self.tally = Tally()

    def setup(self) -> None:
        d = Daemon(self.state, *self.extra)
        try:
            d.call("/graph/add", "output", "out")
            for i in range(FADERS):
                d.call("/graph/add", "gain", f"f{i}")
                d.call("/graph/connect", f"f{i}", "out")
        finally:
            d.stop()

    def _value(self) -> float:
        self.k += 1
        return -100.0 + self.k * 1e-4

    def _next(self, rnd: int) -> list[bytes]:
        """The next edit's packets."""
        if self.k % 97 == 0 and len(self.nodes) < 400:
            self.k += 1
            name = f"r{rnd}n{self.k}"
            return [encode("/graph/add", ["gain", name]),
                    encode("/graph/connect", [name, "out"])]
        f = f"f{self.k % FADERS}"
        return [encode(f"/node/{f}/gain", [self._value()])]

    def _take(self, data: bytes) -> int:
        """Record the answers in a reply packet; how many answers it held."""
        n = 0
        for addr, args in decode(data):
            n += 1
            if addr != "/done" or not args:
                continue
            what = args[0]
            self.tally.acked += 1
            if what == "/graph/add":
                self.nodes.add(args[1])
            elif what == "/graph/connect":
                self.conns.add((args[1], args[2]))
            elif what.startswith("/node/"):
                f = what.split("/")[2]
                self.last[f] = max(self.last.get(f, -1e9), float(args[1]))
        return n

    def round(self, rnd: int) -> int:
        """One round: edit, SIGKILL, restart, check. Returns the edits lost."""
        d = Daemon(self.state, *self.extra)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.connect(("127.0.0.1", d.port))
        sock.setblocking(False)
        inflight = 0
        t0 = time.monotonic()
        kill_at = t0 + self.rng.uniform(self.min_s, self.max_s)
        try:
            while time.monotonic() < kill_at:
                while inflight < self.window:
                    for pkt in self._next(rnd):
                        sock.send(pkt)
                        inflight += 1
                        self.tally.sent += 1
                r, _, _ = select.select([sock], [], [], 0.002)
                while r:
                    try:
                        inflight -= self._take(sock.recv(65536))
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:
                        break
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait()
            self.tally.seconds_editing += time.monotonic() - t0
            while True:  # answers that arrived before the kill are acknowledgements too
                try:
                    self._take(sock.recv(65536))
                except (BlockingIOError, ConnectionRefusedError):
                    break
        finally:
            sock.close()
            d.stop()
        d2 = Daemon(self.state, *self.extra)
        try:
            (blob,) = d2.call("/graph/dump")
            lost = self.check(msgpack.unpackb(blob))
        finally:
            d2.stop()
        t = self.tally
        t.rounds += 1
        t.lost += lost
        t.worst = max(t.worst, lost)
        t.rounds_losing += lost > 0
        return lost

    def check(self, doc: dict) -> int:
        """Acknowledged edits missing from a restored document."""
        nodes = {n["name"]: n for n in doc["nodes"]}
        conns = {(a.split(":")[0], b.split(":")[0]) for a, b in doc["connections"]}
        lost = 0
        for f, v in self.last.items():
            got = nodes.get(f, {}).get("params", {}).get("gain")
            if got is None or got < v:
                lost += 1
                self.tally.notes.append(f"{f}: acknowledged {v}, restored {got}")
        for n in self.nodes:
            if n not in nodes:
                lost += 1
                self.tally.notes.append(f"node {n} acknowledged, not restored")
        for c in self.conns:
            if c not in conns:
                lost += 1
                self.tally.notes.append(f"connection {c} acknowledged, not restored")
        # what is kept now is what the next round is checked against
        self.last = {f: nodes[f]["params"]["gain"] for f in self.last if f in nodes}
        return lost
