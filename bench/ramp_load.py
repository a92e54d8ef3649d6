"""What many parameter ramps at once cost the audio thread: a whole-console
scene fade ramps every changed value (attack4's A11: a 5 s fade on 400 eq8,
all eight band gains and band 1's frequency, broke the audio for the whole
fade on the null backend).

    python bench/ramp_load.py --nodes 100 400 1000
    python bench/ramp_load.py --nodes 100 400 1000 --ab old.so server/_core.abi3.so
    valgrind --tool=callgrind --toggle-collect=mg_engine_process_blocks \\
        python bench/ramp_load.py --nodes 400 --callgrind 20 [--one-band]

builds N eq8 nodes (2 channels), times 200 idle 64-frame blocks, then starts a
30 s ramp on 9 parameters of every node (8 band gains to -6 dB, b1freq to
2 kHz, as /ramp and a scene fade do) and times 400 blocks, then sets the
ramps' end values and times 200 settled blocks (the scene the fade arrives
at: eight active bands a node): median and worst µs per block against the
1333 µs budget of 64 frames at 48 kHz. One core, in process, wall time; a
loaded machine moves the figures, the ratios less.

With --ab A.so B.so (two builds of the C core: copy server/_core.abi3.so
aside before rebuilding), each build runs in a worker process of its own,
both pinned to one core and never at once; round after round (alternating
which goes first) each starts fresh ramps on every node (towards the other
end than the last round's) and runs --blocks blocks, reporting the CPU time
(thread time) per block. Prints each build's median over the rounds, the
idle figure, the settled one (the last round's end values set: the scene the
fade arrives at) and the per-round ratios B / A.

With --one-band, every node's eight bands stand at +3 dB (all active) and
only band 3's gain ramps: the gliding run of a node holds one moving section
among seven steady ones (what a single fader or automation lane does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

PARAMS = [f"b{k}gain" for k in range(1, 9)] + ["b1freq"]
ONE_BAND = False  # --one-band: all bands at +3 dB, only b3gain ramps


def one_band() -> None:
    """Switch to the --one-band scene (see the module's doc)."""
    global ONE_BAND, PARAMS
    ONE_BAND = True
    PARAMS = ["b3gain"]


def blocks(e, n: int) -> np.ndarray:
    """µs per 64-frame block for n blocks."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        e.process(64, None, block=64)
        ts.append(time.perf_counter() - t0)
    return np.array(ts) * 1e6


def build(n: int):
    """An engine and session with n eq8 nodes, warmed."""
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    e = Engine(48000, 0, 2, block=64)
    s = Session(e)
    for i in range(n):
        s.add_node("eq8", f"e{i}", {f"b{k}gain": 3.0 for k in range(1, 9)} if ONE_BAND else {})
    s.commit()
    e.process(64 * 50)  # (mg_engine_process: outside --callgrind's collection)
    return e, s


def start_ramps(s, n: int, toward: int) -> None:
    """A 30 s ramp on the 9 parameters of every node: toward 0 -> -6 dB and
    2 kHz, toward 1 -> +6 dB and 500 Hz."""
    from mixgraph.server import ramps

    gain, freq = (-6.0, 2000.0) if toward == 0 else (6.0, 500.0)
    for i in range(n):
        for p in PARAMS:
            ramps.ramp(s, f"e{i}", p, gain if p.endswith("gain") else freq, 30.0)


def run(n: int) -> None:
    e, s = build(n)
    try:
        idle = blocks(e, 200)
        start_ramps(s, n, 0)
        moving = blocks(e, 400)
        for i in range(n):  # the ramps' end values, set: the scene the fade arrives at
            for p in PARAMS:
                s.set_param(f"e{i}", p, -6.0 if p.endswith("gain") else 2000.0)
        e.process(64 * 50, None, block=64)
        settled = blocks(e, 200)
    finally:
        s.close()
        e.free()
    print(f"{n} eq8, {n * len(PARAMS)} ramps: idle {np.median(idle):.1f} µs per block "
          f"(worst {idle.max():.0f}); ramping {np.median(moving):.1f} µs "
          f"(worst {moving.max():.0f}, first {moving[0]:.0f}); settled at the ramps' end values "
          f"{np.median(settled):.1f} µs (worst {settled.max():.0f}); budget 1333 µs")


def worker(so: str, n: int, nblocks: int) -> None:
    """Serve rounds on stdin/stdout with the core loaded from `so`: the first
    line answers the idle CPU µs per block, each later one a ramping round's."""
    from ab_core import load_core  # bench/, beside this script

    load_core(so)
    e, s = build(n)
    t0 = time.thread_time()
    e.process(64 * nblocks, None, block=64)
    print(f"{(time.thread_time() - t0) / nblocks * 1e6:.3f}", flush=True)
    toward = 0
    for r, _ in enumerate(sys.stdin):
        toward = r % 2
        start_ramps(s, n, toward)
        e.process(64, None, block=64)  # the ramps' first block (its commands) aside
        t0 = time.thread_time()
        e.process(64 * nblocks, None, block=64)
        dt = time.thread_time() - t0
        s.service()
        print(f"{dt / nblocks * 1e6:.3f}", flush=True)
    # stdin closed: the last round's end values set, settled, then timed
    gain, freq = (-6.0, 2000.0) if toward == 0 else (6.0, 500.0)
    for i in range(n):
        for p in PARAMS:
            s.set_param(f"e{i}", p, gain if p.endswith("gain") else freq)
    e.process(64 * 50, None, block=64)
    t0 = time.thread_time()
    e.process(64 * nblocks, None, block=64)
    print(f"{(time.thread_time() - t0) / nblocks * 1e6:.3f}", flush=True)
    s.close()
    e.free()


def ab(a: str, b: str, n: int, rounds: int, nblocks: int, cpu: int) -> None:
    procs = []
    idle = []
    for so in (a, b):
        p = subprocess.Popen([sys.executable, __file__, "--worker", so, "--nodes", str(n),
                              "--blocks", str(nblocks), "--cpu", str(cpu)]
                             + (["--one-band"] if ONE_BAND else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        idle.append(float(p.stdout.readline()))
        procs.append(p)
    runs: list[list[float]] = [[], []]
    for r in range(rounds):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            p = procs[k]
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            runs[k].append(float(p.stdout.readline()))
    settled = []
    for p in procs:
        assert p.stdin is not None and p.stdout is not None
        p.stdin.close()
        settled.append(float(p.stdout.readline()))
        p.wait()
    ma, mb = statistics.median(runs[0]), statistics.median(runs[1])
    ratios = sorted(y / x for x, y in zip(runs[0], runs[1], strict=True))
    print(f"{n} eq8, {n * len(PARAMS)} ramps, {rounds} alternating rounds of {nblocks} blocks on "
          f"core {cpu} (load {os.getloadavg()[0]:.1f}), CPU µs per 64-frame block: "
          f"A idle {idle[0]:.1f}, ramping {ma:.1f}, settled {settled[0]:.1f}; "
          f"B idle {idle[1]:.1f}, ramping {mb:.1f}, settled {settled[1]:.1f} "
          f"(ramping B/A {mb / ma:.3f}; per round {ratios[0]:.3f}..{ratios[-1]:.3f}); budget 1333")


def callgrind(n: int, nblocks: int) -> None:
    """For valgrind --tool=callgrind --toggle-collect=mg_engine_process_blocks:
    only the ramping blocks are collected (instructions per block: the
    Collected total / nblocks)."""
    e, s = build(n)
    try:
        start_ramps(s, n, 0)
        e.process(64 * 4)  # the ramps' first blocks, not collected
        e.process(64 * nblocks, None, block=64)
    finally:
        s.close()
        e.free()
    print(f"{n} eq8 ramping{' (one band)' if ONE_BAND else ''}: {nblocks} blocks collected")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--ab", nargs=2, metavar=("A.so", "B.so"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--blocks", type=int, default=100)
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--callgrind", type=int, metavar="BLOCKS",
                    help="run BLOCKS ramping blocks for callgrind (see callgrind())")
    ap.add_argument("--so", help="with --callgrind: the core build to load")
    ap.add_argument("--one-band", action="store_true",
                    help="all bands at +3 dB, only b3gain ramps (one moving section a node)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one_band:
        one_band()
    if a.callgrind:
        if a.so:
            from ab_core import load_core  # bench/, beside this script

            load_core(a.so)
        for n in a.nodes:
            callgrind(n, a.callgrind)
        return
    if a.worker:
        os.sched_setaffinity(0, {a.cpu})
        worker(a.worker, a.nodes[0], a.blocks)
        return
    for n in a.nodes:
        if a.ab:
            ab(a.ab[0], a.ab[1], n, a.rounds, a.blocks, a.cpu)
        else:
            run(n)


if __name__ == "__main__":
    main()
