"""Instruction counts per block of the mix64 session, for A/B comparisons on
a loaded machine (callgrind counts do not move with the load).

    valgrind --tool=callgrind --toggle-collect=mg_engine_process_blocks \\
        python bench/callgrind_mix.py [--hard] [--channels 64] [--blocks 200]

builds bench/mix64.py's session (with --hard: denoise on channels 1-8,
autotune on 9-10), runs `--warm` frames outside the measurement
(mg_engine_process), then `--blocks` blocks of 64 frames through
mg_engine_process_blocks, the only function collected: callgrind's
"Collected" total over --blocks is the instructions per block. Under
valgrind the hot loops run their x86-64-v3 (AVX2) clones, not the v4
(AVX-512) ones a CPU with AVX-512 runs natively, so a node kernel's count
is not its share of native time (pick targets from `perf record -e
cpu-clock python bench/callgrind_mix.py --blocks 60000`; use callgrind for
A/B counts); the engine's own code counts as it runs.

--threads 2 --sched 0,-2 counts the plan's parallel form run on the audio
thread alone (mg_engine_set_sched: the workers never woken), so its
instructions can be set against the one-thread path's (--threads 1); with
2 threads and the default scheduling, the workers' instructions count too
(callgrind runs one thread at a time).

--hash prints the sha256 of the rendered samples (warm-up and the rest):
the check that a restructuring leaves the output bit for bit the same.
"""

from __future__ import annotations

import argparse
import hashlib

from mix64 import build_mix64

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hard", action="store_true", help="denoise x8, autotune x2")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=200, help="64-frame blocks measured")
    ap.add_argument("--warm", type=int, default=24000, help="frames run before")
    ap.add_argument("--hash", action="store_true", help="print the render's sha256")
    ap.add_argument("--threads", type=int, default=1, help="audio threads")
    ap.add_argument("--sched", default=None, metavar="SPIN,MIN",
                    help="mg_engine_set_sched (0,-2: the parallel form on one thread)")
    a = ap.parse_args()
    e = Engine(48000, 0, 2, threads=a.threads, block=64)
    if a.sched:
        e.set_sched(*(float(x) for x in a.sched.split(",")))
    s = Session(e)
    try:
        build_mix64(s, a.channels, a.hard)
        warm = e.process(a.warm)
        out = e.process(64 * a.blocks, block=64)
        if a.hash:
            h = hashlib.sha256(warm.tobytes() + out.tobytes()).hexdigest()[:16]
            print(f"mix64{' --hard' if a.hard else ''} {a.channels} ch, "
                  f"{a.warm} + {64 * a.blocks} frames: {h}")
    finally:
        s.close()
        e.free()


if __name__ == "__main__":
    main()
