"""Cost of a stereo limiter per 64-frame block at 48 kHz: input -> limiter ->
output minus input -> output (thread CPU time, best of 5 runs of 2 s), once on
quiet noise (no limiting) and once on noise 12 dB over full scale.

    python bench/limiter.py
"""

from __future__ import annotations

import time

import numpy as np

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE, BLOCK = 48000, 64


def cpu_per_second(limiter: bool, level: float, secs: int = 2, reps: int = 5) -> float:
    """Best-of-reps CPU seconds per second of stereo audio through the patch."""
    e = Engine(RATE, 2, 2)
    e.set_ceiling_db(40.0)
    s = Session(e)
    s.add_node("input", "in", {"channels": 2})
    s.add_node("output", "out", {"channels": 2})
    if limiter:
        s.add_node("limiter", "lim", {"channels": 2, "ceiling": -1.0})
        s.connect("in", "lim")
        s.connect("lim", "out")
    else:
        s.connect("in", "out")
    s.commit()
    x = (np.random.default_rng(1).standard_normal((RATE, 2)) * level).astype(np.float32)
    out = np.zeros_like(x)
    e.process(RATE, x, block=BLOCK, out=out)
    runs = []
    for _ in range(reps):
        t0 = time.thread_time()
        for _ in range(secs):
            e.process(RATE, x, block=BLOCK, out=out)
        runs.append((time.thread_time() - t0) / secs)
    s.close()
    e.free()
    return min(runs)


def main() -> None:
    for level, name in [(0.05, "quiet (no limiting)"), (4.0, "hot noise (+12 dB, limiting)")]:
        d = cpu_per_second(True, level) - cpu_per_second(False, level)
        print(f"{name}: {d / (RATE / BLOCK) * 1e6:.2f} us per 64-frame stereo block")


if __name__ == "__main__":
    main()
