"""Scheduling settings of the audio threads against each other, offline, at
the policy the shell gives (SCHED_OTHER unless run under chrt): mix64 in
alternating rounds of configurations `T` or `T:SPIN,MIN` (threads, and
mg_engine_set_sched's spin bound and minimum work in us), one engine call per
block (Engine.process_timed, as bench/mix64.py --threads does).

    python bench/threads_sched.py [--configs 1 2 2:0,20] [--channels 256] [--rounds 5] [--seconds 1]

Prints per round and configuration the wall-clock and CPU us per block and
the units each thread ran a block; per 2-thread configuration the spin
counters a block (spins, found work, lost: ran out their bound or were
preempted, skipped: not made because recent spins were lost, sleeps,
posts); then each configuration's median wall-clock and CPU time and its
throughput against the first configuration (the median of the rounds' own
ratios, and their range), with the load average. On a shared machine the
figure to quote is that median ratio, with the load next to it: under
SCHED_OTHER at load 8-10 on 2 cores a round's ratio moves between 0.5x and
2x with the other engineers' work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from mix64 import RATE, build_mix64

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

B = 64
SPIN_KEYS = ("spins", "spin_found", "spin_lost", "spin_skip", "sleeps", "posts")


def run(cfg: str, n: int, seconds: float) -> tuple[float, float, str]:
    """One round of configuration cfg: wall-clock and CPU us per block, and
    a line of the threads' counters per block."""
    t, _, sched = cfg.partition(":")
    e = Engine(RATE, 0, 2, threads=int(t), block=B)
    if sched:
        e.set_sched(*(float(x) for x in sched.split(",")))
    s = Session(e)
    try:
        build_mix64(s, n)
        frames = int(seconds * RATE) // B * B
        out = np.zeros((frames, 2), np.float32)
        e.process(RATE // 4 // B * B, block=B)  # warm: caches, page faults
        ps0 = e.par_stats()
        c0, w0 = time.process_time(), time.perf_counter()
        us = e.process_timed(frames, None, B, out)
        wall = (time.perf_counter() - w0) / len(us) * 1e6
        cpu = (time.process_time() - c0) / len(us) * 1e6
        ps = e.par_stats()
    finally:
        s.close()
        e.free()
    line = " | ".join(
        f"units {(b['units'] - a['units']) / len(us):.1f} "
        + " ".join(f"{k} {(b.get(k, 0) - a.get(k, 0)) / len(us):.2f}" for k in SPIN_KEYS)
        for a, b in zip(ps0, ps, strict=True))
    return wall, cpu, line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["1", "2", "2:0,20"],
                    metavar="T[:SPIN,MIN]")
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    a = ap.parse_args()
    res: dict[str, list[tuple[float, float]]] = {c: [] for c in a.configs}
    loads = []
    print(f"# mix64 {a.channels} ch, {B}-frame blocks, {a.rounds} alternating rounds of "
          f"{a.seconds:g} s, policy {os.sched_getscheduler(0)} (0: SCHED_OTHER)")
    for r in range(a.rounds):
        loads.append(os.getloadavg()[0])
        row = []
        for c in a.configs:
            wall, cpu, line = run(c, a.channels, a.seconds)
            res[c].append((wall, cpu))
            row.append(f"{c}: {wall:.1f} (CPU {cpu:.1f})")
            if line:
                print(f"    {c} per block: {line}")
        print(f"round {r + 1} (load {loads[-1]:.2f}): " + ", ".join(row), flush=True)
    loads.append(os.getloadavg()[0])
    base = a.configs[0]
    for c in a.configs:
        per = sorted(x[0] / y[0] for x, y in zip(res[base], res[c], strict=True))
        print(f"{c}: wall us per block {statistics.median(x[0] for x in res[c]):.1f}, "
              f"CPU {statistics.median(x[1] for x in res[c]):.1f}; throughput against {base} "
              f"median {statistics.median(per):.2f}x ({per[0]:.2f}..{per[-1]:.2f})")
    print(f"load average {min(loads):.2f}..{max(loads):.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
