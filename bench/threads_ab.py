"""Where a second thread's time goes, measured in one process: mix64 on the
one-thread path, the parallel form on the audio thread alone
(mg_engine_set_sched 0,-2) and the parallel form on 2 threads, in
alternating rounds of a few blocks each (the shared machine's load moves
between runs, much less between rounds).

    python bench/threads_ab.py [--channels 256] [--rounds 10] [--blocks 100] [--sched 50,20]

Run it under `chrt -f 10` on a loaded machine (the workers take the audio
thread's policy), so other processes do not preempt the rounds. Prints per
configuration the wall-clock and CPU us per block (median and best round);
per round the ratios (CPU of 2 threads and of the parallel form alone over
the one-thread path, and the throughput of 2 threads against one); when the
worker joined each cycle; per thread per block the scheduler's counters
(Engine.par_stats: units, time in the cycle, spinning, handoffs, steals,
posts, sleeps) and the time it ran units; and each unit's median cost alone
and on each thread of the 2-thread runs (traced, mg_engine_trace). A loss
budget splits the throughput of 2 threads against one into factors that
multiply to it: the parallel form's own cost (one / alone), the units'
slow-down from running beside each other (hyper-threads and caches: the sum
of their median costs alone / on 2 threads), the plan's shape (the 2-thread
unit costs over their schedule with no overhead, threads_trace.simulate: at
most 2) and the schedule's overhead (that schedule, scaled by alone's median
block over its units' sum, over the 2-thread median block: wakes, posts,
waits, preemption).

Under a real-time policy each round starts after a break (bench/cpu.py,
rt_break: the kernel's real-time throttling would otherwise stop both cores
for ~47 ms about once a second, as offline rounds keep them busy), and a
round with a block of 20 ms or more (throttled anyway) is left out of the
figures and counted on its own line.

Each round also runs two copies of the one-thread path at once, one on
core 0 and one on core 1 (twin): their CPU per block over one copy alone in
the same round says whether the two vCPUs were two cores in that round
(about 1) or shared one (up to 2: then no scheduling gains). The host
changes its phase within seconds here, so that ratio is per round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import numpy as np
from cpu import STALL_US, rt_break, rt_break_s, stalled_blocks
from mix64 import RATE, build_mix64
from threads_trace import CYCLE, END, START, plan_graph, simulate

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

B = 64


def twin_cpu() -> float:
    """The process's CPU time (both twin threads)."""
    return time.process_time()
MODES = ("one", "alone", "two", "twin")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--sched", default="50,20", metavar="SPIN,MIN",
                    help="mg_engine_set_sched for the 2-thread rounds (the defaults)")
    ap.add_argument("--units", action="store_true", help="print the table of units")
    a = ap.parse_args()
    sched = tuple(float(x) for x in a.sched.split(","))
    nb = a.blocks

    def make(threads: int) -> tuple[Engine, Session]:
        e = Engine(RATE, 0, 2, threads=threads, block=B)
        s = Session(e)
        build_mix64(s, a.channels)
        e.process(RATE // 4 // B * B, block=B)
        return e, s

    e1, s1 = make(1)
    e2, s2 = make(2)
    e3, s3 = make(1)  # twin's second copy

    def twin() -> None:
        """e1 on core 0 and e3 on core 1 at once (a thread each)."""
        cores = sorted(os.sched_getaffinity(0))[:2]

        def run(e: Engine, core: int) -> None:
            os.sched_setaffinity(0, {core})  # this thread only (Linux)
            e.process(nb * B, block=B)

        ths = [threading.Thread(target=run, args=(e, c)) for e, c in ((e1, cores[0]),
                                                                   (e3, cores[1]))]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
    g = plan_graph(s2)
    nu = len(g.succ)
    cap = 1 << 18
    tb = ffi.new("double[]", cap)
    kb, thb, ab = (ffi.new("int[]", cap) for _ in range(3))
    wall: dict[str, list[float]] = {m: [] for m in MODES}
    bmed: dict[str, list[float]] = {m: [] for m in MODES}  # each round's median block
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    alone_cost: list[list[float]] = [[] for _ in range(nu)]
    two_cost: list[list[list[float]]] = [[[] for _ in range(nu)] for _ in range(2)]
    ran: list[list[float]] = []
    joined: list[float] = []
    counters: list[list[dict[str, float]]] = []
    out = np.zeros((nb * B, 2), np.float32)
    rt = rt_break_s() > 0.0
    stalls: list[str] = []  # per round: the modes with stalled blocks
    for _ in range(a.rounds):
        rt_break()
        stalls.append("")
        for mode in MODES:
            if mode == "twin":
                if len(os.sched_getaffinity(0)) < 2:
                    continue
                c0, w0 = twin_cpu(), time.perf_counter()
                twin()
                wall[mode].append((time.perf_counter() - w0) / nb * 1e6)
                cpu[mode].append((twin_cpu() - c0) / 2 / nb * 1e6)
                continue
            e = e1 if mode == "one" else e2
            if mode not in ("one",):
                e.set_sched(*((0.0, -2.0) if mode == "alone" else sched))
                e.process(8 * B, block=B)
                lib.mg_engine_trace(e.ptr, 1)
            ps0 = e.par_stats()
            c0, w0 = time.process_time(), time.perf_counter()
            us = e.process_timed(nb * B, None, B, out)
            wall[mode].append((time.perf_counter() - w0) / nb * 1e6)
            cpu[mode].append((time.process_time() - c0) / nb * 1e6)
            bmed[mode].append(float(np.median(us)))
            if stalled_blocks(us):
                stalls[-1] += f" {mode} {us.max() / 1e3:.0f} ms"
            if mode == "one":
                continue
            if mode == "two":
                counters.append([{k: (y[k] - x[k]) / nb for k in x}
                                 for x, y in zip(ps0, e.par_stats(), strict=True)])
            got = lib.mg_engine_trace_read(e.ptr, tb, kb, thb, ab, cap)
            lib.mg_engine_trace(e.ptr, 0)
            ev = sorted((tb[i], kb[i], thb[i], ab[i]) for i in range(got))
            started: dict[int, float] = {}
            run = [0.0, 0.0]
            t_cycle, first = None, None
            for t, k, th, u in ev:
                if k == CYCLE and th == 0:
                    t_cycle, first = t, None
                elif k == START:
                    started[u] = t
                    if mode == "two" and th == 1 and first is None and t_cycle is not None:
                        first = t - t_cycle
                        joined.append(first)
                elif k == END and u in started:
                    d = t - started.pop(u)
                    run[min(th, 1)] += d
                    (alone_cost[u] if mode == "alone" else two_cost[min(th, 1)][u]).append(d)
            if mode == "two":
                ran.append([x / nb for x in run])
    for s in (s1, s2, s3):
        s.close()
    e1.free()
    e2.free()
    e3.free()

    med = statistics.median
    bad = [i for i, x in enumerate(stalls) if x]
    if bad:
        print(f"# {len(bad)} of {a.rounds} rounds had a block of {STALL_US / 1e3:.0f} ms or "
              "more (" + "; ".join(f"round {i}:{stalls[i]}" for i in bad) + ")"
              + ("; left out: throttled at the real-time policy" if rt else
                 "; kept: preempted by the machine's other work"))
        if rt and len(bad) < a.rounds:
            keep = [i for i in range(a.rounds) if i not in bad]
            for m in MODES:
                if wall[m]:
                    wall[m] = [wall[m][i] for i in keep]
                    if bmed[m]:
                        bmed[m] = [bmed[m][i] for i in keep]
                    cpu[m] = [cpu[m][i] for i in keep]
            if len(counters) == a.rounds:
                counters = [counters[i] for i in keep]
                ran = [ran[i] for i in keep]
    print(f"# mix64 {a.channels} ch, {B}-frame blocks, {a.rounds} alternating rounds of {nb} "
          f"blocks: the one-thread path (one), the parallel form on the audio thread alone "
          f"(alone), on 2 threads (two, sched {a.sched}), and two copies of the one-thread "
          f"path on cores 0 and 1 at once (twin: CPU per block of each)")
    for m in (m for m in MODES if wall[m]):
        print(f"{m}: wall us per block {med(wall[m]):.1f} (best {min(wall[m]):.1f}), "
              f"CPU {med(cpu[m]):.1f} (best {min(cpu[m]):.1f})")

    def ratios(x: list[float], y: list[float]) -> str:
        r = sorted(p / q for p, q in zip(x, y, strict=True))
        return f"median {med(r):.2f} ({r[0]:.2f} .. {r[-1]:.2f})"

    print(f"per round: CPU two / one {ratios(cpu['two'], cpu['one'])}; CPU alone / one "
          f"{ratios(cpu['alone'], cpu['one'])}; throughput two against one "
          f"{ratios(wall['one'], wall['two'])}")
    if cpu["twin"]:
        print(f"per round: CPU per block of each of two one-thread copies on both cores at once "
              f"over one alone {ratios(cpu['twin'], cpu['one'])} (near 2: the vCPUs share a "
              f"core in that round, and 2 threads cannot gain)")
    if cpu["twin"]:
        print("each round, one thread's CPU us per block / throughput of 2 threads against "
              "one / twin CPU over one: " + "; ".join(
                  f"{o:.0f} / {w1 / w2:.2f}x / {t / o:.2f}"
                  for o, w1, w2, t in zip(cpu["one"], wall["one"], wall["two"], cpu["twin"],
                                          strict=True)))
    if joined:
        print(f"the worker's first unit starts {med(joined):.1f} us after the cycle's "
              f"publication (p90 {np.percentile(joined, 90):.1f})")
    for t in range(2):
        keys = counters[0][t].keys()
        print(f"thread {t} per block: units ran {med(r[t] for r in ran):.1f} us; " + ", ".join(
            f"{k} {med(c[t][k] for c in counters) / (1e3 if k.endswith('_ns') else 1):.2f}"
            for k in keys))
    total_alone = sum(med(c) for c in alone_cost if c)
    total_two = sum(med(c0 + c1) for c0, c1 in zip(*two_cost, strict=True) if c0 + c1)
    print(f"sum of the units' median costs: alone {total_alone:.1f} us, on 2 threads "
          f"{total_two:.1f} us")
    # where the throughput goes, as factors that multiply to two against one
    cost2 = [med(c0 + c1) if c0 + c1 else 0.0 for c0, c1 in zip(*two_cost, strict=True)]
    sim2 = simulate(g, cost2, 2)
    # each round's median block, so the units' medians are set against medians
    w1, wa, w2 = med(bmed["one"]), med(bmed["alone"]), med(bmed["two"])
    # k = alone's median block over the sum of its units' medians: the units'
    # right-skewed costs (a block's median holds a few slow units; each unit's
    # median none) and the little the call does outside them; the 2-thread
    # ideal is k times the units' schedule, so k cancels out of the product
    k = wa / total_alone if total_alone else 1.0
    f = {"form": w1 / wa, "corun": total_alone / total_two if total_two else 0.0,
         "shape": total_two / sim2 if sim2 else 0.0, "sched": k * sim2 / w2 if w2 else 0.0}
    print(f"loss budget (median blocks: one {w1:.1f}, alone {wa:.1f}, two {w2:.1f} us; "
          f"the units' median costs alone {total_alone:.1f}, on 2 threads {total_two:.1f} "
          f"us, scheduled with no overhead {sim2:.1f} us; the factors multiply to "
          f"{w1 / w2:.2f}x, two against one): the parallel form's own cost (one / alone) "
          f"{f['form']:.2f} x the units slowed by running beside each other (alone / on 2 "
          f"threads) {f['corun']:.2f} x the plan's shape (on 2 threads / their schedule) "
          f"{f['shape']:.2f} of 2 x the schedule's overhead (wakes, posts, waits, "
          f"preemption: their schedule x {k:.2f}, alone's block over its units, / two's "
          f"block) {f['sched']:.2f}")
    if a.units:
        print("| unit | alone us | on thread 0 us (cycles) | on thread 1 us (cycles) | runs |")
        print("|---|---|---|---|---|")
        for u in range(nu):
            c0, c1 = two_cost[0][u], two_cost[1][u]
            print(f"| {u} | {med(alone_cost[u]) if alone_cost[u] else 0:.2f} | "
                  f"{med(c0) if c0 else 0:.2f} ({len(c0)}) | {med(c1) if c1 else 0:.2f} "
                  f"({len(c1)}) | {g.desc[u][:60]} |")


if __name__ == "__main__":
    main()
