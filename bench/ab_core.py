"""A/B of two builds of the C core on mix64, alternating on one core.

    python bench/ab_core.py A.so B.so [--channels 64] [--rounds 15] [--blocks 1500]

Each build runs in a worker process of its own (the core is loaded from the
given file as mixgraph.server._core), with the mix64 session built and warmed
once; then the driver asks A and B in turn, round after round, to run
--blocks 64-frame blocks, and each reports the CPU time (thread time) per
block. Both workers are pinned to the same core and never run at once, so a
drift in the machine's load falls on both alike. Prints the median us per
block of each, and the median and range of the per-round ratio B / A.
To make A, copy server/_core.abi3.so aside before rebuilding.

--threads 2: each build runs the session on 2 audio threads, not pinned, and
reports wall-clock us per block (the figure several threads improve), still
in alternating rounds; --sched SPIN,MIN sets mg_engine_set_sched (0,-2: the
parallel form on the audio thread alone, CPU time again). Under `chrt -f 10`
(the workers take the audio thread's policy) a break before every turn lets
the real-time budget refill (bench/cpu.py, rt_break).

--hard: the hard mix (bench/mix64.py --hard: denoise on channels 1-8,
autotune on 9-10) in both builds; `--hard b` makes only B the hard mix
(give the same build twice: the hard stages' own cost, in alternating rounds).

--mb N writes N MB of other memory before every block (as bench/cold_cache.py
does) and times each block alone: a round's figure is then the median block
(not the mean), the cold-cache cost of each build.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cpu import rt_break  # noqa: E402


def load_core(so: str) -> None:
    """Make the build `so` the module mixgraph.server._core (before anything
    imports it): an A/B of two builds of the C core, one per process."""
    name = "mixgraph.server._core"
    loader = importlib.machinery.ExtensionFileLoader(name, so)
    spec = importlib.util.spec_from_file_location(name, so, loader=loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[name] = mod


def worker(so: str, channels: int, blocks: int, threads: int = 1,
           sched: str | None = None, mb: int = 0, hard: bool = False) -> None:
    """Serve rounds on stdin/stdout: each line in runs `blocks` blocks."""
    load_core(so)
    sys.path.insert(0, str(HERE))
    import numpy as np
    from mix64 import build_mix64

    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    e = Engine(48000, 0, 2, threads=threads, block=64)
    if sched:
        e.set_sched(*(float(x) for x in sched.split(",")))
    s = Session(e)
    build_mix64(s, channels, hard)
    out = np.zeros((blocks * 64, 2), np.float32)
    e.process(48000, None, block=64)
    print("ready", flush=True)
    clock = time.perf_counter if threads > 1 and sched != "0,-2" else time.thread_time
    n = (mb << 20) >> 3
    junk = np.ones(max(n, 1))
    one = np.zeros((64, 2), np.float32)
    for _ in sys.stdin:
        if n:
            ts = []
            for _ in range(blocks):
                junk[:n] += 1.0
                t0 = clock()
                e.process(64, None, block=64, out=one)
                ts.append(clock() - t0)
            s.service()
            print(f"{statistics.median(ts) * 1e6:.4f}", flush=True)
            continue
        t0 = clock()
        e.process(blocks * 64, None, block=64, out=out)
        dt = clock() - t0
        s.service()
        print(f"{dt / blocks * 1e6:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--blocks", type=int, default=1500)
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sched", default=None, metavar="SPIN,MIN")
    ap.add_argument("--mb", type=int, default=0, help="MB written before every block")
    ap.add_argument("--hard", nargs="?", const="ab", choices=("ab", "b"), default=None,
                    help="the hard mix in both builds (ab) or in B only (b)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-hard", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        if a.threads < 2:
            os.sched_setaffinity(0, {a.cpu})
        worker(a.worker, a.channels, a.blocks, a.threads, a.sched, a.mb, a.worker_hard)
        return
    procs = []
    for k, so in enumerate((a.a, a.b)):
        hard = a.hard == "ab" or (a.hard == "b" and k == 1)
        p = subprocess.Popen([sys.executable, __file__, a.a, a.b, "--worker", so,
                              "--channels", str(a.channels), "--blocks", str(a.blocks),
                              "--cpu", str(a.cpu), "--threads", str(a.threads), "--mb", str(a.mb)]
                             + (["--sched", a.sched] if a.sched else [])
                             + (["--worker-hard"] if hard else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        procs.append(p)
    runs: list[list[float]] = [[], []]
    for r in range(a.rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            rt_break()  # under chrt: the real-time budget refills (bench/cpu.py)
            p = procs[k]
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            runs[k].append(float(p.stdout.readline()))
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    ma, mb = statistics.median(runs[0]), statistics.median(runs[1])
    ratios = sorted(y / x for x, y in zip(runs[0], runs[1], strict=True))
    where = f"core {a.cpu}" if a.threads < 2 else f"{a.threads} threads, wall-clock"
    cold = f", {a.mb} MB written before each block (median block)" if a.mb else ""
    mix = {"ab": " --hard", "b": " (B: --hard)"}.get(a.hard or "", "")
    print(f"mix64{mix} {a.channels} ch{cold}, {a.rounds} alternating rounds of {a.blocks} blocks "
          f"on {where} "
          f"(load {os.getloadavg()[0]:.1f}): A {ma:.2f} us/block, B {mb:.2f} "
          f"(B/A {mb / ma:.3f}; per round median {statistics.median(ratios):.3f}, "
          f"{ratios[0]:.3f}..{ratios[-1]:.3f}); best A {min(runs[0]):.2f}, B {min(runs[1]):.2f} "
          f"(B/A {min(runs[1]) / min(runs[0]):.3f})")


if __name__ == "__main__":
    main()
