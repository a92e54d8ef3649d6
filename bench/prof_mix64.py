"""mix64 for profilers and render hashes: builds the session, runs
--warm-blocks 64-frame blocks, then --blocks more.

    python bench/prof_mix64.py --channels 64 --blocks 500 [--hash]
    valgrind --tool=callgrind --toggle-collect=run_plan \
        python bench/prof_mix64.py --channels 64 --blocks 100 --warm-blocks 100
    perf record -e cpu-clock python bench/prof_mix64.py --blocks 60000

Under callgrind with --toggle-collect=run_plan, every block is collected
(warm-up included): the instructions per block are the total over
warm-blocks + blocks. --hash prints the sha256 of the rendered samples
(warm-up and the rest), the check that a restructuring change leaves the
output bit for bit the same.
"""

from __future__ import annotations

import argparse
import hashlib

from mix64 import build_mix64

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
BLOCK = 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--warm-blocks", type=int, default=375)
    ap.add_argument("--hash", action="store_true")
    a = ap.parse_args()
    e = Engine(RATE, 0, 2, block=BLOCK)
    s = Session(e)
    build_mix64(s, a.channels)
    # the warm-up through mg_engine_process (the engine's block is 64 frames,
    # so it runs the same 64-frame cycles), the timed blocks through
    # mg_engine_process_blocks: callgrind's --toggle-collect sees only those
    warm = e.process(a.warm_blocks * BLOCK, None)
    out = e.process(a.blocks * BLOCK, None, block=BLOCK)
    if a.hash:
        h = hashlib.sha256(warm.tobytes() + out.tobytes()).hexdigest()[:16]
        print(f"mix64 {a.channels} ch, {a.warm_blocks + a.blocks} blocks: {h}")
    s.close()
    e.free()


if __name__ == "__main__":
    main()
