"""Why the graph on several threads scales as it does: a trace of the worker
threads' cycles (mg_engine_trace, csrc/workers.c) on the mix64 session.

    python bench/threads_trace.py [--channels 256] [--block 64] [--threads 2] [--blocks 2000]

Prints, for mix64 with N channels on T threads (offline, one engine call per
block, as a live backend makes them):

- the plan's units of work, each with its median cost (us) and what it runs;
- the work (sum of the unit costs), the critical path (the longest chain of
  dependent units, by cost) and the best speed-up T threads could reach:
  work / max(critical path, work / T);
- per cycle, medians and 99th percentiles of: the cycle's wall time, the time
  the audio thread ran units, slept, and did neither (scheduling: the queue,
  posts, waits); when the worker started its first unit after the cycle was
  published (its wake latency); how long a post (sem_post: a futex wake) takes
  on the posting thread; how long the audio thread waits for the last unit of
  a cycle that a worker runs;
- the share of cycles in which the audio thread waited idle for a worker.

The costs are medians over the blocks, so a preempted block (the machine is
shared) does not move them; the wall-clock figures are what they are.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
from mix64 import RATE, build_mix64

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

CYCLE, START, END, POST, WAKE, SLEEP, DONE = range(1, 8)


@dataclass
class Graph:
    """A plan's units: successors, and a description of each."""
    succ: list[list[int]]
    desc: list[str]


def plan_graph(s: Session) -> Graph:
    """The units of the session's newest plan (mg_plan_par_graph)."""
    rec = list(s._plans.values())[-1]
    p = rec.ptr
    nu = lib.mg_plan_units(p)
    cap = max(64, nu * nu + 1, 1 << 14)
    sf = ffi.new("int[]", nu + 2)
    su = ffi.new("int[]", cap)
    af = ffi.new("int[]", nu + 2)
    ast, al, ak = (ffi.new("int[]", cap) for _ in range(3))
    if lib.mg_plan_par_graph(p, sf, su, af, ast, al, ak, cap) != nu:
        raise RuntimeError("mg_plan_par_graph")
    succ = [[su[i] for i in range(sf[u], sf[u + 1])] for u in range(nu)]
    desc = []
    for u in range(nu):
        parts: list[str] = []
        for i in range(af[u], af[u + 1]):
            t = ffi.string(lib.mg_plan_step_type(p, ast[i])).decode()
            if ak[i] < 0:
                parts.append(f"+>{t}({al[i]})")
            elif ak[i] == 1:
                parts.append(f"{t}x{al[i]}")
            else:
                parts.append(t)
        # runs of the same thing, shortened
        out: list[str] = []
        for x in parts:
            if out and out[-1].split(" *")[0] == x:
                k = int(out[-1].split(" *")[1]) + 1 if " *" in out[-1] else 2
                out[-1] = f"{x} *{k}"
            else:
                out.append(x)
        desc.append(" ".join(out))
    return Graph(succ, desc)


def critical_path(g: Graph, cost: list[float]) -> tuple[float, list[int]]:
    """The costliest chain of units (units are numbered in dependency order)."""
    n = len(cost)
    best = list(cost)
    prev = [-1] * n
    for u in range(n):
        for v in g.succ[u]:
            if best[u] + cost[v] > best[v]:
                best[v] = best[u] + cost[v]
                prev[v] = u
    end = max(range(n), key=lambda u: best[u])
    path = []
    while end >= 0:
        path.append(end)
        end = prev[end]
    return best[path[0]], path[::-1]


def simulate(g: Graph, cost: list[float], threads: int) -> float:
    """The cycle's length on `threads` threads with no overhead at all, run
    about as csrc/workers.c runs it: root i dealt to thread i % threads, a
    thread that finishes a unit runs the first successor it made ready and
    queues the others; a free thread takes its next root, else another
    thread's last root, else the oldest queued unit. (Where a made-ready unit
    is handed, to the thread that ran its data predecessor, is left out.)"""
    n = len(cost)
    left = [0] * n
    for u in range(n):
        for v in g.succ[u]:
            left[v] += 1
    roots = [u for u in range(n) if left[u] == 0]
    dealt = [[r for i, r in enumerate(roots) if i % threads == k] for k in range(threads)]
    queue: list[int] = []
    free = [0.0] * threads          # when each thread is next free
    running: list[tuple[float, int, int]] = []  # (end, thread, unit)
    t_end = 0.0

    def take(k: int) -> int | None:
        if dealt[k]:
            return dealt[k].pop(0)
        for j in range(1, threads):
            other = dealt[(k + j) % threads]
            if other:
                return other.pop()
        return queue.pop(0) if queue else None

    while any(dealt) or queue or running:
        # start work on free threads, earliest free first
        for k in sorted(range(threads), key=lambda k: free[k]):
            if all(r[1] != k for r in running):
                u = take(k)
                if u is not None:
                    running.append((free[k] + cost[u], k, u))
        running.sort()
        end, k, u = running.pop(0)
        t_end = max(t_end, end)
        nxt = None
        for v in g.succ[u]:
            left[v] -= 1
            if left[v] == 0:
                if nxt is None:
                    nxt = v
                else:
                    queue.append(v)
        if nxt is not None:
            running.append((end + cost[nxt], k, nxt))
        else:
            free[k] = end
            # threads idle before now wait for this moment's queue
            for j in range(threads):
                if all(r[1] != j for r in running):
                    free[j] = max(free[j], end)
    return t_end


def trace(n: int, threads: int, block: int, blocks: int, build=None, live: bool = False,
          sched: tuple[float, float] | None = None) -> dict:
    """Run `blocks` blocks of mix64 (n channels) traced; the figures above.
    live: on the null clock (real-time paced, SCHED_FIFO when granted)
    instead of back to back."""
    e = Engine(RATE, 0, 2, threads=threads)
    s = Session(e)
    (build or build_mix64)(s, n)
    g = plan_graph(s)
    nu = len(g.succ)
    if sched is not None:
        lib.mg_engine_set_sched(e.ptr, *sched)
    e.process(RATE // 4 // block * block, block=block)  # warm
    cap = 1 << 18
    t = ffi.new("double[]", cap)
    k, th, ar = (ffi.new("int[]", cap) for _ in range(3))
    lib.mg_engine_trace(e.ptr, 1)
    ev: list[tuple[float, int, int, int]] = []
    xruns = 0
    if live:
        e.null_start(block)
        time.sleep(0.3)
        lib.mg_engine_trace_read(e.ptr, t, k, th, ar, cap)
        x0 = e.stats().xruns
        time.sleep(blocks * block / RATE)
        got = lib.mg_engine_trace_read(e.ptr, t, k, th, ar, cap)
        xruns = e.stats().xruns - x0
        e.null_stop()
        ev.extend((t[i], k[i], th[i], ar[i]) for i in range(got))
    done = 0
    while done < blocks and not live:
        m = min(blocks - done, 1000)
        e.process(m * block, block=block)
        got = lib.mg_engine_trace_read(e.ptr, t, k, th, ar, cap)
        ev.extend((t[i], k[i], th[i], ar[i]) for i in range(got))
        done += m
    lib.mg_engine_trace(e.ptr, 0)
    s.close()
    e.free()

    # per cycle
    cycles: list[list[tuple[float, int, int, int]]] = []
    cur: list | None = None
    for x in ev:
        if x[1] == CYCLE and x[2] == 0:
            cur = [x]
        elif cur is not None:
            cur.append(x)
            if x[1] == DONE:
                cycles.append(cur)
                cur = None
    dur: list[list[float]] = [[] for _ in range(nu)]
    wall, main_run, main_sleep, main_other, first_w, post_cost = [], [], [], [], [], []
    tail_wait, wake_main, gap, end_wait, worker_share = [], [], [], [], []
    eff: list[float] = []
    waited = 0
    for c in cycles:
        t0, t_end = c[0][0], c[-1][0]
        wall.append(t_end - t0)
        started: dict[int, tuple[float, int]] = {}
        run = {0: 0.0}
        sleep0 = 0.0
        sl: dict[int, float] = {}
        wfirst = None
        last_post_main = None
        for i, (tt, kind, thr, a) in enumerate(c):
            if kind == START:
                started[a] = (tt, thr)
                if thr != 0 and wfirst is None:
                    wfirst = tt - t0
            elif kind == END and a in started:
                d = tt - started[a][0]
                dur[a].append(d)
                run[thr] = run.get(thr, 0.0) + d
            elif kind == SLEEP:
                sl[thr] = tt
            elif kind == WAKE and thr in sl:
                if thr == 0:
                    sleep0 += tt - sl[thr]
                    if last_post_main is not None:
                        wake_main.append(tt - last_post_main)
                del sl[thr]
            elif kind == POST:
                if a == 0:
                    last_post_main = tt
                nxt = next((y for y in c[i + 1:] if y[2] == thr), None)
                if nxt is not None:
                    post_cost.append(nxt[0] - tt)
        last_end: dict[int, float] = {}
        for tt, kind, thr, _a in c:
            if kind == START and thr in last_end:
                gap.append(tt - last_end[thr])
            if kind == END:
                last_end[thr] = tt
            elif kind in (SLEEP, WAKE):
                last_end.pop(thr, None)
        done_units = [x[0] for x in c if x[1] in (END, WAKE) and x[2] == 0] + \
            [x[0] for x in c if x[1] == END]
        if done_units:
            end_wait.append(t_end - max(done_units))
        total = sum(run.values())
        worker_share.append((total - run[0]) / total if total else 0.0)
        main_run.append(run[0])
        # this cycle's own unit times, scheduled with no overhead, against its wall
        cyc_cost = [0.0] * nu
        for tt, kind, _thr, a in c:
            if kind == END and a in started:
                cyc_cost[a] = tt - started[a][0]
        if all(a in started for a in range(nu)) and wall[-1] > 0:
            eff.append(simulate(g, cyc_cost, threads) / wall[-1])
        main_sleep.append(sleep0)
        main_other.append(wall[-1] - run[0] - sleep0)
        if wfirst is not None:
            first_w.append(wfirst)
        if sleep0 > 0:
            waited += 1
        # the audio thread's last unit end to the cycle's end
        ends0 = [x[0] for x in c if x[1] == END and x[2] == 0]
        if ends0:
            tail_wait.append(t_end - max(ends0))
    cost = [statistics.median(d) if d else 0.0 for d in dur]
    work = sum(cost)
    cp, path = critical_path(g, cost)
    sim = simulate(g, cost, threads)

    def q(v: list[float]) -> str:
        if not v:
            return "-"
        return f"{statistics.median(v):.1f} / {float(np.percentile(v, 99)):.1f}"

    return {"graph": g, "cost": cost, "work": work, "cp": cp, "path": path,
            "bound": work / max(cp, work / threads), "cycles": len(cycles),
            "sim": sim, "sim_speedup": work / sim if sim else 0.0,
            "gap": q(gap), "end_wait": q(end_wait),
            "eff": statistics.median(eff) if eff else 0.0,
            "eff_p10": float(np.percentile(eff, 10)) if eff else 0.0,
            "worker_share": statistics.mean(worker_share) if worker_share else 0.0,
            "wall": q(wall), "wall_med": statistics.median(wall) if wall else 0.0,
            "main_run": q(main_run), "main_sleep": q(main_sleep), "main_other": q(main_other),
            "first_worker_start": q(first_w), "post": q(post_cost), "wake_main": q(wake_main),
            "tail": q(tail_wait), "waited": waited / max(1, len(cycles)), "xruns": xruns,
            "worst": max(wall) if wall else 0.0}


def report(n: int, threads: int, block: int, blocks: int, units: bool = True,
           live: bool = False, sched: tuple[float, float] | None = None) -> dict:
    """Trace mix64 and print the figures (see the module's docstring)."""
    r = trace(n, threads, block, blocks, live=live, sched=sched)
    g = r["graph"]
    how = f"live on the null clock, {r['xruns']} xruns" if live else "back to back"
    print(f"\n# mix64 {n} channels, {block}-frame blocks, {threads} threads, {how}: "
          f"{len(g.succ)} units, {r['cycles']} cycles traced, worst cycle {r['worst']:.0f} us")
    if units:
        print("| unit | median us | successors | runs |")
        print("|---|---|---|---|")
        for u, c in enumerate(r["cost"]):
            mark = " *" if u in r["path"] else ""
            print(f"| {u}{mark} | {c:.1f} | {','.join(map(str, g.succ[u]))} | {g.desc[u]} |")
        print("(* on the critical path)")
    print(f"work {r['work']:.1f} us, critical path {r['cp']:.1f} us "
          f"({100 * r['cp'] / r['work']:.0f}% of the work): best speed-up on {threads} threads "
          f"{r['bound']:.2f}x (work / max(path, work / threads)); these units scheduled as "
          f"the workers do, with no overhead: {r['sim']:.1f} us, {r['sim_speedup']:.2f}x")
    print("per cycle, median / p99 us: "
          f"wall {r['wall']}; audio thread runs units {r['main_run']}, sleeps "
          f"{r['main_sleep']}, neither {r['main_other']}; the worker's first unit starts at "
          f"{r['first_worker_start']}; a post takes {r['post']} on its thread; between two "
          f"units on a thread {r['gap']}; workers ran {100 * r['worker_share']:.0f}% of the "
          f"work; from the last unit's end to the cycle's end {r['end_wait']}; the audio "
          f"thread wakes {r['wake_main']} after its post; from its last unit to the cycle's "
          f"end {r['tail']}; cycles where the audio thread slept: {100 * r['waited']:.0f}%")
    print(f"scheduling efficiency (each cycle's own unit times scheduled with no overhead, "
          f"over its wall time): median {100 * r['eff']:.0f}%, 10th percentile "
          f"{100 * r['eff_p10']:.0f}%")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, nargs="+", default=[256])
    ap.add_argument("--block", type=int, nargs="+", default=[64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=2000)
    ap.add_argument("--live", action="store_true", help="on the null clock")
    ap.add_argument("--brief", action="store_true", help="without the table of units")
    ap.add_argument("--sched", type=str, default=None, metavar="SPIN,MIN",
                    help="mg_engine_set_sched: spin us, min work us (default: the engine's)")
    a = ap.parse_args()
    for n in a.channels:
        for b in a.block:
            report(n, a.threads, b, a.blocks, units=not a.brief, live=a.live,
                   sched=None if a.sched is None else tuple(map(float, a.sched.split(","))))


if __name__ == "__main__":
    main()
