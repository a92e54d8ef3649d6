"""What the journal costs the control path: acknowledged edits per second from
one UDP client keeping a window of requests in flight, against a real daemon
started with the journal (fsync every 100 ms, the default; and fsync before
every reply batch, --fsync-ms 0) and without it (--no-journal), arms
alternating in the same run; medians of the repeats.

    .venv/bin/python bench/journal_cost.py [--seconds 2] [--repeats 5]

Two workloads: parameter sets (the flood fast path) and connect/disconnect
pairs (the general dispatch path, a plan rebuild each).

On a shared machine the wall-clock rates swing by tens of percent between
repeats, so the first figure is the control thread's own CPU time per edit,
measured in process: the daemon's parts built as `mixgraph serve` builds them
(state directory, journal, autosave, null clock running), and its control loop
turned by hand - batches of 64 packets through the same _packet() the
selector loop calls, the batch's replies flushed (the journal write happens
there), then the loop's service() - timed with time.thread_time()."""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from undo import close  # noqa: E402  (the in-process daemon's teardown, bench/undo.py)

from mixgraph.clients.protocol import decode, encode  # noqa: E402

from daemon_util import Daemon  # noqa: E402

ARMS = {"no journal": ("--no-journal",), "journal, fsync 100 ms": (),
        "journal, fsync every batch": ("--fsync-ms", "0")}


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(port: int, seconds: float, kind: str, window: int = 64) -> tuple[float, int]:
    """Acknowledged edits per second over `seconds`, and how many."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    k = 0
    inflight = acked = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        while inflight < window:
            k += 1
            if kind == "set":
                pkt = encode(f"/node/f{k % 8}/gain", [-60.0 + (k % 1000) * 0.01])
            elif k % 2:
                pkt = encode("/graph/connect", [f"f{k % 8}", "out"])
            else:
                pkt = encode("/graph/disconnect", [f"f{(k - 1) % 8}", "out"])
            sock.send(pkt)
            inflight += 1
        r, _, _ = select.select([sock], [], [], 0.01)
        while r:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            for addr, _ in decode(data):
                inflight -= 1
                acked += addr == "/done"
    rate = acked / (time.monotonic() - t0)
    sock.close()
    return rate, acked


def one(arm: tuple[str, ...], kind: str, seconds: float) -> tuple[float, float]:
    """(acknowledged edits/s, server CPU microseconds per acknowledged edit)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp) / "state", "--backend", "null", "--rate-limit", "0", *arm)
        try:
            d.call("/graph/add", "output", "out")
            for i in range(8):
                d.call("/graph/add", "gain", f"f{i}")
            if kind == "set":
                for i in range(8):
                    d.call("/graph/connect", f"f{i}", "out")
            c0 = cpu_s(d.proc.pid)
            rate, n = flood(d.port, seconds, kind)
            return rate, (cpu_s(d.proc.pid) - c0) / max(n, 1) * 1e6
        finally:
            d.stop()


def inproc(journal: bool, fsync_ms: float, kind: str, batches: int) -> float:
    """Control-thread CPU microseconds per edit, in process (see the module doc)."""
    from mixgraph.server.backends import start_backend
    from mixgraph.server.daemon import Daemon as Serve
    from mixgraph.server.daemon import ServeOptions

    with tempfile.TemporaryDirectory() as tmp:
        d = Serve(ServeOptions(backend="null", port=0, tcp_port=-1, state_dir=Path(tmp),
                               status=False, mlock=False, rate_limit=0, journal=journal,
                               fsync_ms=fsync_ms))
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        running = start_backend(d.config, d.engine)
        try:
            srv = d.server
            peer = srv._udp_peer(sink.getsockname())
            reply = peer.reply
            disp = d.dispatcher
            disp.dispatch("/graph/add", ["output", "out"], reply, 0, peer)
            for i in range(8):
                disp.dispatch("/graph/add", ["gain", f"f{i}"], reply, 0, peer)
            if kind == "set":
                for i in range(8):
                    disp.dispatch("/graph/connect", [f"f{i}", "out"], reply, 0, peer)
            k = 0
            pkts = []
            for _ in range(64 * 16):
                k += 1
                if kind == "set":
                    pkts.append(encode(f"/node/f{k % 8}/gain", [-60.0 + (k % 1000) * 0.01]))
                elif k % 2:
                    pkts.append(encode("/graph/connect", [f"f{k % 8}", "out"]))
                else:
                    pkts.append(encode("/graph/disconnect", [f"f{(k - 1) % 8}", "out"]))
            cpu = 0.0
            for b in range(batches):
                batch = pkts[(b % 16) * 64:(b % 16 + 1) * 64]
                t0 = time.thread_time()
                srv._holding = True
                now = time.monotonic()
                for data in batch:
                    srv._packet(data, peer, now)
                srv._holding = False
                srv._flush_replies()
                srv.service()
                cpu += time.thread_time() - t0
                while True:
                    try:
                        sink.recv(65536)
                    except BlockingIOError:
                        break
            return cpu / (batches * 64) * 1e6
        finally:
            close(d, running, sink)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=300, help="in-process batches of 64")
    ap.add_argument("--inproc-only", action="store_true", help="skip the daemon figures")
    a = ap.parse_args()
    arms = {"no journal": (False, 100.0), "journal, fsync 100 ms": (True, 100.0),
            "journal, fsync every batch": (True, 0.0)}
    for kind in ("set", "connect"):
        cpu: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(a.repeats):
            for name, (j, f) in arms.items():
                cpu[name].append(inproc(j, f, kind, a.batches if kind == "set"
                                        else max(1, a.batches // 10)))
        base = statistics.median(cpu["no journal"])
        print(f"{kind}, in process: control-thread CPU us per edit, median of {a.repeats}; "
              "median of the paired (same repeat) ratios to no journal")
        for name, xs in cpu.items():
            m = statistics.median(xs)
            paired = statistics.median(x / b for x, b in zip(xs, cpu["no journal"], strict=True))
            print(f"  {name:28s} {m:7.2f} us ({(m / base - 1) * 100:+5.1f}%; paired "
                  f"{(paired - 1) * 100:+5.1f}%)  [{', '.join(f'{x:.2f}' for x in xs)}]")
    if a.inproc_only:
        return 0
    for kind in ("set", "connect"):
        got: dict[str, list[tuple[float, float]]] = {name: [] for name in ARMS}
        for _ in range(a.repeats):
            for name, arm in ARMS.items():
                got[name].append(one(arm, kind, a.seconds))
        base = statistics.median(r for r, _ in got["no journal"])
        base_cpu = statistics.median(c for _, c in got["no journal"])
        print(f"{kind}: median of {a.repeats} x {a.seconds:g} s: acknowledged edits/s; "
              "server CPU us per edit")
        for name, xs in got.items():
            m = statistics.median(r for r, _ in xs)
            c = statistics.median(c for _, c in xs)
            print(f"  {name:28s} {m:9.0f}/s ({(m / base - 1) * 100:+5.1f}%)  "
                  f"{c:7.1f} us ({(c / base_cpu - 1) * 100:+5.1f}%)  "
                  f"[{', '.join(f'{r:.0f}' for r, _ in xs)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
