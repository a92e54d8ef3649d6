"""A/B of the memory layout in one process: the mix64 session (bench/mix64.py)
built twice, A and B, each with its own buffer block (Engine(block=..): the
frames a plan's channel buffers hold) and node blocks from the huge-page
arena or not (mg_node_arena), run one 64-frame block each in turn on one
core with N MB of other memory written before every block (as
bench/cold_cache.py), so that the machine's load hits both alike.

    python bench/layout_ab.py [--a-block 512] [--a-arena 0] [--b-block 64]
                              [--b-arena 1] [--mb 0 4 16] [--rounds 4]

Prints CPU µs per block (median of the rounds' medians) and B/A per round.
The defaults compare the layout before docs/architecture.md "Buffers"
(512-frame buffers, malloc'ed node blocks) with the layout now.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mix64 import build_mix64  # noqa: E402  bench/mix64.py

from mixgraph.server._core import lib  # noqa: E402
from mixgraph.server.engine import Engine  # noqa: E402
from mixgraph.server.session import Session  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--a-block", type=int, default=512)
    ap.add_argument("--a-arena", type=int, default=0)
    ap.add_argument("--b-block", type=int, default=64)
    ap.add_argument("--b-arena", type=int, default=1)
    ap.add_argument("--mb", type=int, nargs="+", default=[0, 4, 16],
                    help="MB of other memory written before each block")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=200, help="blocks per size per round and side")
    ap.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                    help="the core to run on (-1: not pinned)")
    a = ap.parse_args()
    if a.cpu >= 0:
        os.sched_setaffinity(0, {a.cpu})
    sides = {"A": (a.a_block, a.a_arena), "B": (a.b_block, a.b_arena)}
    eng: dict[str, tuple[Engine, Session]] = {}
    for name, (block, arena) in sides.items():
        lib.mg_node_arena(arena)
        e = Engine(48000, 0, 2, block=block)
        s = Session(e)
        build_mix64(s, a.channels)
        eng[name] = (e, s)
    lib.mg_node_arena(1)
    out = np.zeros((64, 2), np.float32)
    junk = np.ones((max(a.mb) << 20) >> 3)
    for e, _ in eng.values():
        for _ in range(300):
            e.process(64, None, block=64, out=out)
    res: dict[tuple[str, int], list[float]] = {(n, mb): [] for n in eng for mb in a.mb}
    for _ in range(a.rounds):
        for mb in a.mb:
            n8 = (mb << 20) >> 3
            ts: dict[str, list[int]] = {n: [] for n in eng}
            for i in range(a.blocks):
                for name in ("A", "B") if i % 2 else ("B", "A"):
                    if n8:
                        junk[:n8] += 1.0
                    t0 = time.thread_time_ns()
                    eng[name][0].process(64, None, block=64, out=out)
                    ts[name].append(time.thread_time_ns() - t0)
            for n in eng:
                res[(n, mb)].append(statistics.median(ts[n]) / 1e3)
    print(f"# mix64 {a.channels} ch, 64-frame blocks, one core, CPU µs per block (median of "
          f"{a.rounds} rounds' medians; load average {os.getloadavg()[0]:.1f})")
    print(f"# A: {a.a_block}-frame buffers, arena {a.a_arena}; "
          f"B: {a.b_block}-frame buffers, arena {a.b_arena}")
    for mb in a.mb:
        x, y = res[("A", mb)], res[("B", mb)]
        print(f"{mb:4} MB between blocks: A {statistics.median(x):7.1f}  B "
              f"{statistics.median(y):7.1f}  B/A per round "
              + " ".join(f"{q / p:.2f}" for p, q in zip(x, y, strict=True)))
    for e, s in eng.values():
        s.close()
        e.free()


if __name__ == "__main__":
    main()
