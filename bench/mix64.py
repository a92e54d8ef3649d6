"""The mix64 reference session (shared/bench/mix64.md) built from mixgraph nodes,
and the same channel strip through Pedalboard, side by side.

    python bench/mix64.py [--channels 16 64 256] [--seconds 5] [--repeats 3] [--hard] [--cpu N]
    python bench/mix64.py --peers [--channels 64] [--seconds 5] [--repeats 3]
    python bench/mix64.py --threads 1 2 [--channels 64 256] [--seconds 2] [--repeats 3] [--live]
    python bench/mix64.py --live-ab 1 2 2:0,0 [--channels 256] [--seconds 2] [--repeats 3]
    python bench/mix64.py --threads 1 2 --peers --channels 256 [--seconds 2] [--repeats 7]

--peers renders the session in mixgraph, scsynth (NRT) and Pedalboard
(bench/peers.py says how each is built) in alternating rounds on the same
core and prints CPU us per 64-frame block and the ratios (a peer that is not
installed gets a line saying so: `apt-get install supercollider-server`,
`pip install pedalboard`).

The whole run is pinned to one core (--cpu, default the last; -1 turns it
off): the figures are "on one core", and migrating between the cores of a
shared machine costs 10-20% here.

--hard adds the hard stages of the mix (the hard-stages issue): `denoise` on
channels 1-8 and `autotune` on channels 9-10 (fed a detuned tone instead of
noise, so the pitch shifter works), first in their strips; the target is
offline >= 20x real time for 64 channels on one core (issue 18; the hard-stages
issue asked 10x).

Each size runs twice, as shared/bench/mix64.md allows: sources from seeded
`noise` nodes (their generator is part of the cost), and from "a 64-channel
file of the same", fed as hardware inputs (what `mixgraph render --in` and a
live console do; the de-interleave is part of the cost).

--threads N [N ...] runs mix64 on N audio threads (the audio thread and N-1
workers, docs/architecture.md "The graph on every core"), not pinned, in
alternating rounds, at 64- and 128-frame blocks, and reports the wall-clock
time of each engine call (mean, 99th percentile, worst: what a live backend's
deadline sees), the process's CPU time per block (all threads) and the
throughput against the first thread count given (over all blocks, and the
median and range of the rounds' own ratios, each round against the first
thread count's in the same round: the figure to quote on a shared machine,
with the load average over the rounds next to it); then, per thread,
what the scheduler did per block (Engine.par_stats: units run, time inside
the cycle and spinning, units handed to another thread, kept, shared, roots
and queued units taken from another thread, posts, sleeps, and how long
after the cycle's publication the worker joined). Before the table, a
second-core check (core_check): mix64 on one thread on core 0 alone and on
cores 0 and 1 at once; a ratio near 2 means the two virtual CPUs share one
physical core at the moment (this VM's host places them), and then no
scheduling gets a speed-up out of a second thread. --live adds, per thread
count, the largest channel count (a multiple of 16) that runs live on the
null clock at 64 frames with at least 30% of the block to spare: no xrun in
the run and a mean DSP load (the engine's own figure) of at most 70%. After
the table it prints the units' bound (bench/threads_trace.py): the work, the
critical path and the best speed-up the plan's units allow, at 64 and 128
frames.

--threads N [N ...] --peers is the scaling figure against a peer: mixgraph
on each thread count (wall-clock us per 64-frame engine call) and supernova
(SuperCollider's multi-threaded server, `apt-get install
supercollider-supernova`; skipped with a line when missing) rendering the same
session in NRT on as many DSP threads (`-T`, the strips in a ParGroup), in
alternating rounds in one run, then each one's speed-up over its first thread
count (median of the rounds' ratios) side by side, the second-core ceiling
(2 / core_check's together-over-alone ratio: what two threads can gain on
this host now) and the load average at each round.

--live-ab runs the session live on the null clock (real-time paced, at
SCHED_FIFO when the system grants it, as a live backend runs, so the audio
threads go ahead of the machine's other work) in alternating rounds of the
configurations given, `threads[:spin,min_work]` (mg_engine_set_sched's
arguments in us; without them the engine's defaults), and prints each
block's wall-clock us (mean, p99, worst, at 64 and 128 frames), xruns and
throughput against the first configuration: on a shared machine the
figure to quote.

Reports, per size: offline x real time on one core (CPU time), us per 64-frame
block (median, and the best run: the load on this shared machine moves the
median by up to 40% from one run to the next) and DSP load in % of one core at
48 kHz; then ns per sample of one channel strip (gate -> HPF + 4-band EQ ->
compressor -> fader) in mixgraph and in Pedalboard (NoiseGate, HighpassFilter,
LowShelfFilter, 2 x PeakFilter, HighShelfFilter, Compressor, Gain), both on
16 channels at 64-frame blocks (mixgraph runs its 16 strips as gangs;
Pedalboard gets a 16-channel buffer, which is cheaper per channel for it than a
mono one), in alternating turns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from cpu import (
    RT_BUSY_S,
    STALL_US,
    default_cpu,
    one_core,
    process_timed_breaks,
    rt_break,
    rt_break_s,
    stalled_blocks,
)

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
BLOCK = 64

GATE = {"threshold": -50.0, "attack": 1.0, "hold": 10.0, "release": 100.0}
EQ = {"hpon": 1, "hpfreq": 80.0, "hpslope": 0,
      "b1on": 1, "b1type": 1, "b1freq": 100.0, "b1gain": 2.0,
      "b2on": 1, "b2type": 0, "b2freq": 400.0, "b2gain": -3.0, "b2q": 1.0,
      "b3on": 1, "b3type": 0, "b3freq": 3000.0, "b3gain": 2.0, "b3q": 1.5,
      "b4on": 1, "b4type": 2, "b4freq": 10000.0, "b4gain": 1.5}
COMP = {"threshold": -18.0, "ratio": 4.0, "knee": 6.0, "attack": 5.0, "release": 100.0,
        "makeup": 3.0}


def build_mix64(s: Session, n: int, hard: bool = False, source: str = "noise") -> None:
    """The reference session with n channels; with hard=True, denoise on
    channels 1-8 and autotune on channels 9-10. source "noise": seeded noise
    nodes; "file": hardware inputs 1..n, which time_session feeds the same
    noise from a 64-channel buffer (as `mixgraph render --in` feeds a file)."""
    s.add_node("bus", "master", {"channels": 2})
    s.add_node("bus", "revbus", {"channels": 2})
    s.add_node("bus", "dlybus", {"channels": 2})
    s.add_node("reverb", "verb", {"decay": 2.0, "mix": 100.0})
    s.add_node("delay", "dly", {"channels": 2, "time": 375.0, "feedback": 35.0, "mix": 100.0})
    s.add_node("eq", "m_eq", {"channels": 2, "b1on": 1, "b1type": 1, "b1freq": 60.0,
                              "b1gain": 1.0, "b2on": 0, "b3on": 0, "b4on": 1, "b4type": 2,
                              "b4freq": 12000.0, "b4gain": 1.0})
    s.add_node("compressor", "m_comp", {"channels": 2, "threshold": -10.0, "ratio": 2.0,
                                        "knee": 6.0, "attack": 10.0, "release": 200.0})
    s.add_node("limiter", "m_lim", {"channels": 2, "ceiling": -1.0, "lookahead": 5.0})
    s.add_node("meter", "m_meter", {"channels": 2})
    s.add_node("output", "out", {"channels": 2})
    for a, b in (("revbus", "verb"), ("verb", "master"), ("dlybus", "dly"), ("dly", "master"),
                 ("master", "m_eq"), ("m_eq", "m_comp"), ("m_comp", "m_lim"),
                 ("m_lim", "m_meter"), ("m_lim", "out")):
        s.connect(a, b)
    for i in range(n):
        s.add_node("gate", f"gate{i}", GATE)
        first = f"gate{i}"
        if hard and 8 <= i < 10:  # a voice a third of a semitone sharp
            s.add_node("sine", f"src{i}", {"freq": 220.0 * 2 ** (0.35 / 12), "level": -20.0})
            s.add_node("autotune", f"tune{i}", {})
            s.connect(f"tune{i}", first)
            first = f"tune{i}"
        elif source == "file":
            s.add_node("input", f"src{i}", {"first": i + 1})
        else:
            s.add_node("noise", f"src{i}", {"seed": i + 1, "level": -20.0})
        if hard and i < 8:
            s.add_node("denoise", f"dn{i}", {})
            s.connect(f"dn{i}", first)
            first = f"dn{i}"
        s.connect(f"src{i}", first)
        s.add_node("eq", f"eq{i}", {"channels": 1, **EQ})
        s.add_node("compressor", f"comp{i}", COMP)
        s.add_node("pan", f"pan{i}", {"pan": -1.0 + 2.0 * i / max(1, n - 1)})
        s.add_node("gain", f"fader{i}", {"channels": 2, "gain": -6.0})
        s.add_node("send", f"rsend{i}", {"channels": 2, "level": -12.0})
        s.add_node("send", f"dsend{i}", {"channels": 2, "level": -18.0})
        for a, b in ((f"gate{i}", f"eq{i}"), (f"eq{i}", f"comp{i}"),
                     (f"comp{i}", f"pan{i}"), (f"pan{i}", f"fader{i}"),
                     (f"fader{i}", "master"), (f"fader{i}", f"rsend{i}:post"),
                     (f"fader{i}", f"dsend{i}:post"), (f"rsend{i}", "revbus"),
                     (f"dsend{i}", "dlybus")):
            s.connect(a, b)
    s.commit()


def time_session(build, seconds: float, repeats: int, hw_in: int = 0) -> dict:
    e = Engine(RATE, hw_in, 2, block=BLOCK)  # the plan's buffers for 64-frame cycles
    s = Session(e)
    build(s)
    out = np.zeros((RATE, 2), np.float32)
    x = None
    if hw_in:
        rng = np.random.default_rng(7)
        x = (rng.uniform(-1, 1, (RATE, hw_in)) * 0.1 * np.sqrt(3)).astype(np.float32)
    e.process(RATE // 2, None if x is None else x[: RATE // 2], block=BLOCK)
    cpu = []
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(int(seconds)):
            e.process(RATE, x, block=BLOCK, out=out)
        cpu.append((time.thread_time() - t0) / int(seconds))
        s.service()
    peak = float(np.max(np.abs(out)))
    s.close()
    e.free()
    c = statistics.median(cpu)
    return {"x_realtime": 1.0 / c, "us_per_block": c * BLOCK / RATE * 1e6,
            "best_us_per_block": min(cpu) * BLOCK / RATE * 1e6,
            "load_pct": c * 100.0, "peak": peak}


def strip_mixgraph(n: int, seconds: float, repeats: int) -> float:
    """ns per sample per channel of n mono strips input -> gate -> eq -> comp -> fader."""
    def build(s: Session) -> None:
        s.add_node("output", "out", {"channels": 2})
        for i in range(n):
            s.add_node("input", f"in{i}", {"first": i + 1})
            s.add_node("gate", f"gate{i}", GATE)
            s.add_node("eq", f"eq{i}", {"channels": 1, **EQ})
            s.add_node("compressor", f"comp{i}", COMP)
            s.add_node("gain", f"fader{i}", {"gain": -6.0})
            for a, b in ((f"in{i}", f"gate{i}"), (f"gate{i}", f"eq{i}"),
                         (f"eq{i}", f"comp{i}"), (f"comp{i}", f"fader{i}"),
                         (f"fader{i}", "out")):
                s.connect(a, b)
        s.commit()

    def base(s: Session) -> None:
        s.add_node("output", "out", {"channels": 2})
        for i in range(n):
            s.add_node("input", f"in{i}", {"first": i + 1})
            s.connect(f"in{i}", "out")
        s.commit()

    a = time_session(build, seconds, repeats, hw_in=n)["load_pct"] / 100
    b = time_session(base, seconds, repeats, hw_in=n)["load_pct"] / 100
    return (a - b) / RATE / n * 1e9


def strip_pedalboard(seconds: float, repeats: int, channels: int = 1) -> float | None:
    """ns per sample per channel of Pedalboard's chain of the same effects on
    a buffer of `channels` channels (its plugins loop over the channels)."""
    try:
        import pedalboard as pb
    except ImportError:
        return None
    board = pb.Pedalboard([
        pb.NoiseGate(threshold_db=-50, ratio=10, attack_ms=1, release_ms=100),
        pb.HighpassFilter(cutoff_frequency_hz=80),
        pb.LowShelfFilter(cutoff_frequency_hz=100, gain_db=2, q=0.7071),
        pb.PeakFilter(cutoff_frequency_hz=400, gain_db=-3, q=1.0),
        pb.PeakFilter(cutoff_frequency_hz=3000, gain_db=2, q=1.5),
        pb.HighShelfFilter(cutoff_frequency_hz=10000, gain_db=1.5, q=0.7071),
        pb.Compressor(threshold_db=-18, ratio=4, attack_ms=5, release_ms=100),
        pb.Gain(gain_db=3),
        pb.Gain(gain_db=-6),
    ])
    rng = np.random.default_rng(7)
    x = (rng.uniform(-1, 1, (channels, int(RATE * seconds))) * 0.1 * np.sqrt(3)).astype(np.float32)
    runs = []
    for _ in range(repeats):
        t0 = time.thread_time()
        board(x, RATE, buffer_size=BLOCK, reset=True)
        runs.append(time.thread_time() - t0)
    return statistics.median(runs) / x.shape[1] / channels * 1e9


def run_mix64(sizes: list[int], seconds: float, repeats: int, hard: bool = False) -> None:
    print(f"\n# mix64 session, {RATE} Hz, {BLOCK}-frame blocks (budget "
          f"{BLOCK / RATE * 1e6:.0f} us), CPU time on one core, median of {repeats}")
    print("| channels, sources | offline x real time | us per block | best run, us per block "
          "| DSP load % of one core |")
    print("|---|---|---|---|---|")
    for n in sizes:
        for source in ("noise", "file"):
            r = time_session(lambda s, n=n, src=source: build_mix64(s, n, source=src), seconds,
                             repeats, hw_in=n if source == "file" else 0)
            print(f"| {n}, {source} | {r['x_realtime']:.1f}x | {r['us_per_block']:.1f} | "
                  f"{r['best_us_per_block']:.1f} | {r['load_pct']:.1f} |", flush=True)
            if hard:
                r = time_session(lambda s, n=n, src=source: build_mix64(s, n, True, src),
                                 seconds, repeats, hw_in=n if source == "file" else 0)
                print(f"| {n}, {source} + denoise x8, autotune x2 | {r['x_realtime']:.1f}x | "
                      f"{r['us_per_block']:.1f} | {r['best_us_per_block']:.1f} | "
                      f"{r['load_pct']:.1f} |", flush=True)
    # the same 16 channels on both sides, measured in turns (the machine's load
    # drifts): medians of the turns
    print("\nchannel strip (gate -> HPF + 4-band EQ -> compressor -> fader), 16 channels, "
          "ns per sample per channel")
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(strip_mixgraph(16, seconds, 1))
        t = strip_pedalboard(seconds, 1, channels=16)
        if t is not None:
            theirs.append(t)
    o = statistics.median(ours)
    if theirs:
        t = statistics.median(theirs)
        ratios = sorted(p / q for p, q in zip(theirs, ours, strict=True))
        print(f"mixgraph {o:.1f}, Pedalboard {t:.1f}: ratio {t / o:.1f}x "
              f"(per turn {ratios[0]:.1f}x .. {ratios[-1]:.1f}x over {len(ratios)} turns)")
    else:
        print(f"mixgraph {o:.1f}, Pedalboard not installed")


def time_threads(n: int, threads: int, block: int, seconds: float) -> dict:
    """mix64 with n channels on `threads` threads: each call's wall-clock us
    and the CPU us per block of the whole process (every thread)."""
    e = Engine(RATE, 0, 2, threads=threads, block=block)
    s = Session(e)
    build_mix64(s, n)
    frames = int(seconds * RATE) // block * block
    out = np.zeros((frames, 2), np.float32)
    e.process(RATE // 4 // block * block, block=block)  # warm: caches, page faults
    rt_break()  # under chrt: the building and warming used the real-time budget
    ps0 = e.par_stats()
    c0 = time.process_time()
    us = process_timed_breaks(e, frames, block, out)
    cpu = (time.process_time() - c0) / len(us) * 1e6
    ps = [{k: (b[k] - a[k]) / len(us) for k in a} for a, b in zip(ps0, e.par_stats(), strict=True)]
    s.close()
    e.free()
    return {"us": us, "cpu": cpu, "ps": ps, "stalls": stalled_blocks(us)}


def counters_line(ps: list[list[dict[str, float]]]) -> str:
    """Per thread, per block, medians over runs: what the scheduler did
    (Engine.par_stats, csrc/workers.c)."""
    if not ps or not ps[0]:
        return ""
    out = []
    for t in range(len(ps[0])):
        def m(k: str, t: int = t) -> float:
            return statistics.median(p[t][k] for p in ps)
        who = "audio thread" if t == 0 else f"worker {t}"
        out.append(f"{who}: {m('units'):.1f} units, busy {m('busy_ns') / 1e3:.1f} us, "
                   f"spun {m('spin_ns') / 1e3:.1f} us ({m('spins'):.2f} spins, "
                   f"{m('spin_found'):.2f} found work), handed {m('handed'):.2f}, "
                   f"kept {m('kept'):.2f}, shared {m('shared'):.2f}, took "
                   f"{m('roots_other'):.2f} roots and {m('pop_other'):.2f} queued units of "
                   f"another thread, {m('posts'):.2f} posts, {m('sleeps'):.2f} sleeps, "
                   f"{m('helped'):.2f} parts of another thread's node run"
                   + (f", joined {m('start_ns') / m('cycles') / 1e3 if m('cycles') else 0:.1f} "
                      "us after the publication" if t else ""))
    return "; ".join(out)


def core_check(n: int, seconds: float, rounds: int = 3, out: dict | None = None) -> str:
    """Whether the machine's first two cores are two cores now: mix64 with n
    channels on one thread, on core 0 alone and on cores 0 and 1 at once (a
    copy of the session each, one Python thread per core; the engine call
    releases the GIL), in alternating rounds. Each core's CPU us per block
    together over alone: about 1 when the cores are separate, up to 2 when
    the two virtual CPUs share one physical core (hyper-threads of one core,
    or a host that time-slices them), which no scheduling of ours can beat.
    Also the wall-clock ratio (the kernel leaves steal out of CPU time, so a
    host that runs both virtual CPUs on one core in turns shows only there;
    other processes' load shows there too) and the steal time /proc/stat
    counted while the rounds ran. out, if given, gets "ratio" (together over
    alone, CPU) and "ceiling" (2 / ratio: the most two threads can gain)."""
    import threading

    if len(os.sched_getaffinity(0)) < 2:
        return "one core: no check"
    cores = sorted(os.sched_getaffinity(0))[:2]
    engines = []
    for _ in cores:
        e = Engine(RATE, 0, 2, threads=1, block=BLOCK)
        s = Session(e)
        build_mix64(s, n)
        engines.append((e, s))
    blocks = max(1, int(seconds * RATE / BLOCK))
    res: dict[int, float] = {}
    wall: dict[int, float] = {}

    def run(k: int) -> None:
        os.sched_setaffinity(0, {cores[k]})  # this thread only (Linux)
        e = engines[k][0]
        e.process(BLOCK * 200, block=BLOCK)
        c0, w0 = time.thread_time(), time.perf_counter()
        e.process(BLOCK * blocks, block=BLOCK)
        res[k] = (time.thread_time() - c0) / blocks * 1e6
        wall[k] = (time.perf_counter() - w0) / blocks * 1e6

    def steal() -> int:
        with open("/proc/stat") as f:
            return sum(int(line.split()[8]) for line in f
                       if line.startswith("cpu") and line[3:4].isdigit())

    alone, both, walone, wboth = [], [], [], []
    st0 = steal()
    for _ in range(rounds):
        rt_break()
        th = threading.Thread(target=run, args=(0,))
        th.start()
        th.join()
        alone.append(res[0])
        walone.append(wall[0])
        rt_break()
        ths = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        both.append((res[0] + res[1]) / 2)
        wboth.append((wall[0] + wall[1]) / 2)
    st = steal() - st0
    for e, s in engines:
        s.close()
        e.free()
    a, b = statistics.median(alone), statistics.median(both)
    wa, wb = statistics.median(walone), statistics.median(wboth)
    if out is not None:
        out["ratio"] = b / a
        out["ceiling"] = 2 * a / b
    return (f"cores {cores[0]},{cores[1]} at once against core {cores[0]} alone, mix64 {n} ch "
            f"on one thread each, CPU us per block (median of {rounds} alternating rounds): "
            f"alone {a:.1f}, together {b:.1f} each: {b / a:.2f}x "
            f"({'two cores' if b / a < 1.25 else 'the cores share one: no speed-up to be had'}); "
            f"wall-clock us per block {wa:.1f} and {wb:.1f} ({wb / wa:.2f}x: a host that "
            f"time-slices the two virtual CPUs shows here, and as steal); steal {st} ticks")


def print_bounds(sizes: list[int], threads: list[int]) -> None:
    """The plan's critical-path bound (bench/threads_trace.py): per size and
    block, the work, the longest chain of dependent units and the best
    speed-up the units allow."""
    import threads_trace

    print("\n# the units' bound (threads_trace.py: median unit costs over 500 traced blocks)")
    print("| channels | block | threads | units | work us | critical path us | "
          "best speed-up | as the workers schedule, no overhead |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for block in (64, 128):
            for t in threads:
                if t < 2:
                    continue
                rt_break()
                r = threads_trace.trace(n, t, block, 500, sched=(0.0, 0.0))
                print(f"| {n} | {block} | {t} | {len(r['cost'])} | {r['work']:.1f} | "
                      f"{r['cp']:.1f} | {r['bound']:.2f}x | {r['sim_speedup']:.2f}x |",
                      flush=True)


def run_threads(sizes: list[int], threads: list[int], seconds: float, repeats: int) -> None:
    print("\n# second-core check: " + core_check(sizes[-1], min(seconds, 1.0)), flush=True)
    print(f"\n# mix64 on several threads, {RATE} Hz, wall-clock us per engine call over "
          f"{repeats} alternating rounds of {seconds:g} s (not pinned; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    rt = rt_break_s() > 0.0
    if rt:
        print(f"(real-time policy: a {rt_break_s():.2f} s break after every "
              f"{RT_BUSY_S:g} s of work so the kernel's real-time throttling does not stop "
              f"the rounds; a round with a block of {STALL_US / 1e3:.0f} ms or more was "
              "throttled anyway and is left out, counted under the table)")
    print("| channels | block | threads | mean us | p99 us | worst us | p99 % of budget "
          "| CPU us per block | throughput vs " f"{threads[0]} thread(s) | per round, median "
          "(range) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    notes: list[str] = []
    for n in sizes:
        for block in (64, 128):
            runs: dict[int, list[dict]] = {t: [] for t in threads}
            loads = [os.getloadavg()[0]]
            for _ in range(repeats):
                for t in threads:
                    runs[t].append(time_threads(n, t, block, seconds))
            loads.append(os.getloadavg()[0])
            # each round's throughput against the first thread count's in the
            # same round (a preempted round moves the mean of all blocks)
            per = {t: sorted(a["us"].mean() / b["us"].mean()
                             for a, b in zip(runs[threads[0]], runs[t], strict=True))
                   for t in threads}
            base = None
            budget = block / RATE * 1e6
            for t in threads:
                stalled = [r for r in runs[t] if r["stalls"]]
                if stalled:
                    notes.append(
                        f"{n} ch, {block} frames, {t} threads: {len(stalled)} of {len(runs[t])} "
                        f"rounds had blocks of {STALL_US / 1e3:.0f} ms or more ("
                        + ", ".join(f"{r['stalls']} up to {r['us'].max() / 1e3:.1f} ms"
                                    for r in stalled)
                        + ("; left out: throttled at the real-time policy" if rt else
                           "; kept: preempted by the machine's other work") + ")")
                    if rt and len(stalled) < len(runs[t]):
                        runs[t] = [r for r in runs[t] if not r["stalls"]]
                us = np.concatenate([r["us"] for r in runs[t]])
                mean = float(us.mean())
                base = base or mean
                cpu = statistics.median(r["cpu"] for r in runs[t])
                p99 = float(np.percentile(us, 99))
                print(f"| {n} | {block} | {t} | {mean:.1f} | {p99:.1f} | {us.max():.1f} | "
                      f"{100 * p99 / budget:.0f}% | {cpu:.1f} | {base / mean:.2f}x | "
                      f"{statistics.median(per[t]):.2f}x ({per[t][0]:.2f}..{per[t][-1]:.2f}) | "
                      f"{min(loads):.1f}..{max(loads):.1f} |", flush=True)
            for t in threads:
                line = counters_line([r["ps"] for r in runs[t]])
                if line:
                    notes.append(f"{n} ch, {block} frames, {t} threads, per block: {line}")
    for line in notes:
        print(line)


def live_ok(n: int, threads: int, seconds: float) -> tuple[bool, float, int]:
    """mix64 with n channels live on the null clock at 64 frames: (no xrun and
    mean load <= 70%, mean load, xruns)."""
    e = Engine(RATE, 0, 2, threads=threads, block=BLOCK)
    s = Session(e)
    build_mix64(s, n)
    e.null_start(BLOCK)
    time.sleep(0.5)
    x0 = e.stats().xruns
    loads = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        time.sleep(0.1)
        s.service()
        loads.append(e.stats().load)
    xr = e.stats().xruns - x0
    e.null_stop()
    s.close()
    e.free()
    load = statistics.mean(loads)
    return xr == 0 and load <= 0.70, load, xr


def run_live(threads: list[int], seconds: float) -> None:
    print(f"\n# largest mix64 running live on the null clock, {BLOCK}-frame blocks, "
          f"with >= 30% of the block to spare (no xrun in {seconds:g} s, mean load <= 70%)")
    for t in threads:
        lo, hi, seen = 0, 2048, []
        while hi - lo > 16:
            mid = (lo + hi) // 2 // 16 * 16
            ok, load, xr = live_ok(mid, t, seconds)
            seen.append(f"{mid}: {100 * load:.0f}%{'' if xr == 0 else f' {xr} xruns'}")
            lo, hi = (mid, hi) if ok else (lo, mid)
        print(f"{t} thread(s): {lo} channels  (tried {'; '.join(seen)})", flush=True)


def live_blocks(n: int, threads: int, block: int, seconds: float,
                sched: tuple[float, float] | None = None) -> tuple[np.ndarray, int]:
    """mix64 with n channels live on the null clock (SCHED_FIFO when the
    system grants it, as a live backend runs): each block's wall-clock us and
    the xruns. sched: mg_engine_set_sched (spin us, min work us)."""
    from mixgraph.server._core import ffi, lib

    e = Engine(RATE, 0, 2, threads=threads, block=block)
    s = Session(e)
    build_mix64(s, n)
    if sched is not None and threads > 1:
        lib.mg_engine_set_sched(e.ptr, *sched)
    log = np.zeros(int(seconds * RATE / block) + 1000, np.float64)
    e.null_start(block)
    time.sleep(0.3)
    x0 = e.stats().xruns
    lib.mg_engine_block_log(e.ptr, ffi.from_buffer("double[]", log), len(log))
    time.sleep(seconds)
    got = lib.mg_engine_block_log(e.ptr, ffi.NULL, 0)
    xr = e.stats().xruns - x0
    e.null_stop()
    s.close()
    e.free()
    return log[:got].copy(), xr


def parse_sched(text: str) -> tuple[int, tuple[float, float] | None]:
    """'2' -> (2, None); '2:50,40' -> (2, (50.0, 40.0))."""
    t, _, sc = text.partition(":")
    return int(t), (tuple(float(x) for x in sc.split(",")) if sc else None)  # type: ignore[return-value]


def run_live_ab(sizes: list[int], configs: list[str], seconds: float, repeats: int) -> None:
    """Alternating live rounds of each configuration (threads[:spin,min]):
    wall-clock us per block on the null clock, real-time paced, so the
    audio threads run at SCHED_FIFO ahead of the machine's other work."""
    print(f"\n# mix64 live on the null clock, {RATE} Hz, wall-clock us per block, "
          f"{repeats} alternating rounds of {seconds:g} s (load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    print("| channels | block | threads[:spin,min work] | mean us | p99 us | worst us | "
          "p99 % of budget | xruns | throughput vs first |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for block in (64, 128):
            runs: dict[str, list[np.ndarray]] = {c: [] for c in configs}
            xr = dict.fromkeys(configs, 0)
            for _ in range(repeats):
                for c in configs:
                    t, sc = parse_sched(c)
                    us, x = live_blocks(n, t, block, seconds, sc)
                    runs[c].append(us)
                    xr[c] += x
            base = None
            budget = block / RATE * 1e6
            for c in configs:
                us = np.concatenate(runs[c])
                mean = float(us.mean())
                base = base or mean
                p99 = float(np.percentile(us, 99))
                print(f"| {n} | {block} | {c} | {mean:.1f} | {p99:.1f} | {us.max():.1f} | "
                      f"{100 * p99 / budget:.0f}% | {xr[c]} | {base / mean:.2f}x |", flush=True)


def run_threads_peers(sizes: list[int], threads: list[int], seconds: float,
                      repeats: int) -> None:
    """The scaling figure against a peer: mixgraph on each thread count (one
    engine call per 64-frame block, wall-clock) and supernova NRT on as many
    DSP threads (-T, the strips in a ParGroup, bench/peers.py), in
    alternating rounds in one run; each one's speed-up over its own first
    thread count (the median of the rounds' ratios) side by side, with the
    second-core check's ceiling (2 / its together-over-alone ratio) and the
    load average at each round."""
    import peers

    have_sn = peers.supernova_bin() is not None
    for n in sizes:
        cc: dict = {}
        print("\n# second-core check: " + core_check(n, min(seconds, 1.0), out=cc), flush=True)
        print(f"\n# mix64 {n} ch, {RATE} Hz, {BLOCK}-frame blocks: wall-clock us per block, "
              f"mixgraph (--threads) and supernova NRT (-T, strips in a ParGroup), "
              f"{repeats} alternating rounds of {seconds:g} s, not pinned")
        if not have_sn:
            print("supernova: not installed (apt-get install supercollider-supernova), skipped")
        mg: dict[int, list[float]] = {t: [] for t in threads}
        sn: dict[int, list[float]] = {t: [] for t in threads}
        loads: list[float] = []
        for r in range(repeats):
            loads.append(os.getloadavg()[0])
            row = []
            for t in threads:
                mg[t].append(float(time_threads(n, t, BLOCK, seconds)["us"].mean()))
                row.append(f"mixgraph {t}: {mg[t][-1]:.1f}")
                if have_sn:
                    sn[t].append(peers.supernova_us_per_block(n, seconds, t))
                    row.append(f"supernova {t}: {sn[t][-1]:.1f}")
            print(f"round {r + 1} (load {loads[-1]:.2f}): " + ", ".join(row), flush=True)
        loads.append(os.getloadavg()[0])
        t0 = threads[0]
        print("| threads | mixgraph us | mixgraph speed-up | supernova us | supernova speed-up |")
        print("|---|---|---|---|---|")
        for t in threads:
            def sp(d: dict[int, list[float]], t: int = t, t0: int = t0) -> str:
                if not d[t]:
                    return "-"
                per = sorted(a / b for a, b in zip(d[t0], d[t], strict=True))
                return f"{statistics.median(per):.2f}x ({per[0]:.2f}..{per[-1]:.2f})"
            sn_us = f"{statistics.median(sn[t]):.1f}" if sn[t] else "-"
            print(f"| {t} | {statistics.median(mg[t]):.1f} | {sp(mg)} | {sn_us} | {sp(sn)} |")
        ceil = cc.get("ceiling", float("nan"))
        for t in threads[1:]:
            m = statistics.median(a / b for a, b in zip(mg[t0], mg[t], strict=True))
            line = f"{t} threads: mixgraph {m:.2f}x"
            if t == 2 and t0 == 1 and ceil > 1.01:  # nan compares false
                line += f" ({100 * (m - 1) / (ceil - 1):.0f}% of the ceiling's gain)"
            if sn[t]:
                v = statistics.median(a / b for a, b in zip(sn[t0], sn[t], strict=True))
                line += f", supernova {v:.2f}x: mixgraph's speed-up is {m / v:.2f}x supernova's"
            print(line)
        print(f"second-core ceiling on this host now: {ceil:.2f}x "
              f"(2 threads; cores together / alone {cc.get('ratio', float('nan')):.2f}); "
              f"load average {min(loads):.2f}..{max(loads):.2f} on {os.cpu_count()} cores "
              "during the rounds", flush=True)


def run_peers(sizes: list[int], seconds: float, repeats: int) -> None:
    """mix64 in mixgraph, scsynth and Pedalboard, in alternating rounds."""
    import peers

    print(f"\n# mix64 vs peers, {RATE} Hz, {BLOCK}-frame blocks, CPU us per block on one core, "
          f"{repeats} alternating rounds of {seconds:g} s (median, min..max)")
    if peers.scsynth_bin() is None:
        print("scsynth: not installed (apt-get install supercollider-server), skipped")
    for n in sizes:
        runs: dict[str, list[float]] = {"mixgraph": [], "scsynth": [], "Pedalboard": []}
        for _ in range(repeats):
            r = time_session(lambda s, n=n: build_mix64(s, n), seconds, 1)
            runs["mixgraph"].append(r["us_per_block"])
            for name, f in (("scsynth", peers.scsynth_us_per_block),
                            ("Pedalboard", peers.pedalboard_us_per_block)):
                v = f(n, seconds)
                if v is not None:
                    runs[name].append(v)
        ours = statistics.median(runs["mixgraph"])
        print(f"{n} channels: mixgraph {ours:.1f} ({min(runs['mixgraph']):.1f}.."
              f"{max(runs['mixgraph']):.1f})")
        for name in ("scsynth", "Pedalboard"):
            if not runs[name]:
                print(f"  {name}: not installed, skipped")
                continue
            t = statistics.median(runs[name])
            per = sorted(a / b for a, b in zip(runs[name], runs["mixgraph"], strict=True))
            print(f"  {name} {t:.1f} ({min(runs[name]):.1f}..{max(runs[name]):.1f}): mixgraph is "
                  f"{t / ours:.2f}x cheaper (per round {per[0]:.2f}..{per[-1]:.2f})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, nargs="*", default=[16, 64, 256])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hard", action="store_true",
                    help="also with denoise on 8 channels and autotune on 2")
    ap.add_argument("--peers", action="store_true",
                    help="mix64 in mixgraph, scsynth and Pedalboard, alternating (bench/peers.py)")
    ap.add_argument("--threads", type=int, nargs="+", metavar="N",
                    help="mix64 on N audio threads: wall-clock per block, CPU, throughput")
    ap.add_argument("--live", action="store_true",
                    help="with --threads: the largest channel count live on the null clock")
    ap.add_argument("--live-ab", nargs="+", metavar="T[:SPIN,MIN]",
                    help="alternating live rounds of these configurations: threads, "
                    "optionally with mg_engine_set_sched's spin and min work in us "
                    "(e.g. 1 2:0,0 2)")
    ap.add_argument("--cpu", type=int, default=default_cpu(),
                    help="core to pin the bench to (default: the last one; -1: no pinning)")
    a = ap.parse_args()
    if a.live_ab:
        run_live_ab(a.channels, a.live_ab, a.seconds, a.repeats)
        return
    if a.threads and a.peers:
        run_threads_peers(a.channels, a.threads, a.seconds, a.repeats)
        return
    if a.threads:
        run_threads(a.channels, a.threads, a.seconds, a.repeats)
        print_bounds(a.channels, a.threads)
        if a.live:
            run_live(a.threads, a.seconds)
        return
    print(f"# pinned to core {a.cpu}" if a.cpu is not None and a.cpu >= 0 else "# not pinned")
    with one_core(a.cpu):
        if a.peers:
            run_peers(a.channels, a.seconds, a.repeats)
        else:
            run_mix64(a.channels, a.seconds, a.repeats, a.hard)


if __name__ == "__main__":
    main()
