"""What many parameter ramps at once cost the audio thread: a whole-console
scene fade ramps every changed value (attack4's A11: a 5 s fade on 400 eq8,
all eight band gains and band 1's frequency, broke the audio for the whole
fade on the null backend).

    python bench/ramp_load.py --nodes 100 400

builds N eq8 nodes (2 channels), times 200 idle 64-frame blocks, then starts a
30 s ramp on 9 parameters of every node (8 band gains to -6 dB, b1freq to
2 kHz, as /ramp and a scene fade do) and times 400 blocks: median and worst
µs per block against the 1333 µs budget of 64 frames at 48 kHz. One core,
in process; a loaded machine moves the figures, the ratio to idle less.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mixgraph.server import ramps
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

PARAMS = [f"b{k}gain" for k in range(1, 9)] + ["b1freq"]


def blocks(e: Engine, n: int) -> np.ndarray:
    """µs per 64-frame block for n blocks."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        e.process(64, None, block=64)
        ts.append(time.perf_counter() - t0)
    return np.array(ts) * 1e6


def run(n: int) -> None:
    e = Engine(48000, 0, 2, block=64)
    s = Session(e)
    try:
        for i in range(n):
            s.add_node("eq8", f"e{i}", {})
        s.commit()
        e.process(64 * 50, None, block=64)
        idle = blocks(e, 200)
        for i in range(n):
            for p in PARAMS:
                ramps.ramp(s, f"e{i}", p, -6.0 if p.endswith("gain") else 2000.0, 30.0)
        moving = blocks(e, 400)
    finally:
        s.close()
        e.free()
    print(f"{n} eq8, {n * len(PARAMS)} ramps: idle {np.median(idle):.1f} µs per block "
          f"(worst {idle.max():.0f}); ramping {np.median(moving):.1f} µs "
          f"(worst {moving.max():.0f}, first {moving[0]:.0f}) of a 1333 µs budget")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[100, 400])
    for n in ap.parse_args().nodes:
        run(n)


if __name__ == "__main__":
    main()
