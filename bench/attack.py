"""An untrusted client's worst, at scale (issue 13, "Tests and figures"):

    python bench/attack.py [--packets 1000000] [--conns 1000] [--seed 1]

Against a real `mixgraph serve` on the null clock, in one run:

1. a mutation fuzz of --packets packets in all, split over UDP, TCP with the
   OSC 1.0 size prefix and TCP with OSC 1.1 SLIP framing (the generator of
   tests/test_osc_fuzz.py: well-formed commands of every address form with odd
   arguments, then truncated, byte-flipped, spliced, re-tagged); afterwards the
   server must answer /status, its engine clock must still run, and its log
   must stay small: the figures are crashes (0 or 1), log lines and bytes;
2. --conns concurrent TCP connections held open at once, each sending one
   /status: how many were accepted and refused (the caps), and the server's
   resident memory before, at the peak and after they closed.

Figures, not assertions; the machine is shared, so quote several runs.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_osc_fuzz import mutate, random_message  # noqa: E402

from mixgraph.clients import Client  # noqa: E402
from mixgraph.clients.protocol import encode  # noqa: E402
from mixgraph.server.conn import slip_encode  # noqa: E402

from daemon_util import free_udp_port, rss_mb  # noqa: E402

STATUS = encode("/status", [])


def packets(rng: random.Random, n: int):
    for _ in range(n):
        p = random_message(rng)
        yield mutate(rng, p) if rng.random() < 0.7 else p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_udp_port()
        logp = Path(tmp) / "serve.log"
        log = open(logp, "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port", str(port),
             "--state-dir", str(Path(tmp) / "state"), "--backend", "null", "--no-status",
             "--rate-limit", "0"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while "ready on udp" not in logp.read_text():
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("daemon did not start:\n" + logp.read_text())
                time.sleep(0.05)
            with Client("127.0.0.1", port, timeout=10) as c:
                for cmd in (("/graph/add", "gain", "g"), ("/graph/add", "meter", "m"),
                            ("/graph/add", "sine", "osc"), ("/graph/add", "output", "out")):
                    c.call(*cmd)
            log0 = len(logp.read_bytes())
            third = a.packets // 3
            t0 = time.perf_counter()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.setblocking(False)
            sent = 0
            for p in packets(rng, third):
                try:
                    u.sendto(p[:65000], ("127.0.0.1", port))
                    sent += 1
                except (BlockingIOError, OSError):
                    time.sleep(0.001)
                try:
                    while True:
                        u.recv(65536)
                except (BlockingIOError, OSError):
                    pass
            for framing in ("size", "slip"):
                t = socket.create_connection(("127.0.0.1", port))
                t.settimeout(0.0)
                buf = bytearray()
                for p in packets(rng, third):
                    buf += slip_encode(p) if framing == "slip" else struct.pack(">I", len(p)) + p
                    if len(buf) > 1 << 16:
                        t.setblocking(True)
                        try:
                            t.sendall(buf)
                        except OSError:  # disconnected for garbage: reconnect
                            t = socket.create_connection(("127.0.0.1", port))
                        t.setblocking(False)
                        buf.clear()
                        try:
                            while t.recv(1 << 20):
                                pass
                        except (BlockingIOError, OSError):
                            pass
                t.close()
            fuzz_s = time.perf_counter() - t0
            with Client("127.0.0.1", port, timeout=10) as c:
                _, r1 = c.request("/status")
                time.sleep(0.3)
                _, r2 = c.request("/status")
            s1, s2 = dict(zip(r1[::2], r1[1::2], strict=False)), dict(zip(r2[::2], r2[1::2],
                                                                           strict=False))
            text = logp.read_bytes()[log0:]
            alive = proc.poll() is None and s2["time"] > s1["time"]
            print(f"fuzz: {3 * third} packets (UDP {sent} sent, TCP size and SLIP {third} "
                  f"each) in {fuzz_s:.0f} s; server {'alive, clock running' if alive else 'DOWN'}; "
                  f"log +{len(text.splitlines())} lines, +{len(text)} bytes; "
                  f"garbage {s2.get('garbage')}, warnings {s2.get('warnings')}, "
                  f"suppressed {s2.get('log_suppressed')}, failed {s2.get('failed')}, "
                  f"internal_errors {s2.get('internal_errors')}")

            before = rss_mb(proc.pid)
            socks, refused = [], 0
            for _ in range(a.conns):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    s.sendall(struct.pack(">I", len(STATUS)) + STATUS)
                    socks.append(s)
                except OSError:
                    refused += 1
            time.sleep(1.0)
            answered = 0
            for s in socks:
                s.settimeout(0.2)
                try:
                    answered += bool(s.recv(65536))
                except OSError:
                    pass
            peak = rss_mb(proc.pid)
            for s in socks:
                s.close()
            time.sleep(1.0)
            after = rss_mb(proc.pid)
            with Client("127.0.0.1", port, timeout=10) as c:
                _, r = c.request("/status")
            st = dict(zip(r[::2], r[1::2], strict=False))
            print(f"{a.conns} TCP connections: {answered} answered, {refused} refused by the "
                  f"client side, {st.get('refused')} refused by the server (caps); RSS "
                  f"{before:.0f} MB before, {peak:.0f} MB with them open, {after:.0f} MB after")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        if proc.returncode not in (0, -15):
            print(f"server exit code {proc.returncode}")
            print(logp.read_text()[-3000:])


if __name__ == "__main__":
    main()
