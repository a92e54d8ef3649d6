"""What writing the journal before every reply costs a client waiting for its
/done: one parameter set at a time (send, wait for the reply, send the next)
over UDP and over TCP, against a real daemon without the journal, with it
(write() before the reply, fdatasync every 100 ms: the default) and with
fdatasync before each reply batch (--fsync-ms 0); arms alternating, medians.

    .venv/bin/python bench/reply_latency.py [--sets 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mixgraph.clients.client import Client  # noqa: E402

from daemon_util import Daemon  # noqa: E402

ARMS = {"no journal": ("--no-journal",), "journal (default)": (),
        "journal, fsync 0": ("--fsync-ms", "0")}


def one(arm: tuple[str, ...], transport: str, sets: int) -> list[float]:
    """Round-trip microseconds of `sets` sequential parameter sets."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp) / "state", "--backend", "null", "--rate-limit", "0", *arm)
        c = Client("127.0.0.1", d.port, timeout=3.0, transport=transport)
        try:
            d.call("/graph/add", "gain", "f0")
            us = []
            for k in range(sets):
                t0 = time.perf_counter()
                addr, _ = c.request("/node/f0/gain", -60.0 + (k % 600) * 0.1)
                us.append((time.perf_counter() - t0) * 1e6)
                assert addr == "/done", addr
            return us
        finally:
            c.close()
            d.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for transport in ("udp", "tcp"):
        got: dict[str, list[float]] = {k: [] for k in ARMS}
        for _ in range(a.rounds):
            for name, arm in ARMS.items():
                got[name] += one(arm, transport, a.sets)
        print(f"{transport}: round trip of one set, us (median, p90, p99 of "
              f"{a.rounds} x {a.sets})")
        for name, xs in got.items():
            xs.sort()
            print(f"  {name:20s} {statistics.median(xs):8.0f} {xs[int(0.9 * len(xs))]:8.0f} "
                  f"{xs[int(0.99 * len(xs))]:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
