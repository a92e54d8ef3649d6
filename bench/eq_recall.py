"""What an instant whole-desk scene recall costs the EQs: N mono `eq8` nodes
(every band on) fed one noise source and summed to the output, scenes A and B
holding every EQ value (each continuous one at another point of its taper in
B), recalled with no fade, offline: one engine call per 64-frame block at
48 kHz, each call timed (Engine.process_timed), as a live backend makes them.

    .venv/bin/python bench/eq_recall.py [--eqs 800] [--recalls 6] [--blocks 160]

Prints, over --recalls recalls: the first block after a recall (where the
engine applies its commands, ~20,000 at 800 nodes), the worst of the others,
the median block while the recalled values move (the first 20 blocks after
the recall) and once they have settled (the last 40 of --blocks), against
the 1333 us budget of a 64-frame block. Wall-clock figures on a shared machine: quote the
median of a few runs, or compare A/B under callgrind (--callgrind: no timing,
runs 2 recalls and --blocks blocks after each, for instruction counts), or
take each block's CPU time (--cpu: the calling thread's, so not the time
the machine's other work held the core; one Python call per block).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.session import Session

RATE, BLOCK = 48000, 64
BANDS = {f"b{k}on": 1 for k in range(1, 9)}
EQ8 = {"channels": 1, "hpon": 1, "lpon": 1, **BANDS,
       **{f"b{k}gain": (-1) ** k * (1.0 + k) for k in range(1, 9)}}


def build(s: Session, n: int) -> None:
    """N mono eq8 nodes from one noise source into a stereo bus and the output."""
    s.add_node("noise", "src", {"channels": 1, "seed": 7, "level": -20.0})
    s.add_node("bus", "sum", {"channels": 2})
    s.add_node("output", "out", {"channels": 2})
    s.connect("sum", "out")
    for i in range(n):
        s.add_node("eq8", f"eq{i}", EQ8)
        s.connect("src", f"eq{i}")
        s.connect(f"eq{i}", "sum")
    s.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eqs", type=int, default=800)
    ap.add_argument("--recalls", type=int, default=6)
    ap.add_argument("--blocks", type=int, default=160)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--cpu", action="store_true",
                    help="each block's CPU time (thread_time) instead of its wall-clock time")
    a = ap.parse_args()
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from scenes import whole_desk_b

    engine = Engine(RATE, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "null", "block": BLOCK})
    replies: list = []

    def reply(addr: str, args: list) -> None:
        replies.append((addr, args))

    build(s, a.eqs)
    d.dispatch("/scene/store", ["A"], reply)
    moved = whole_desk_b(s)
    d.dispatch("/scene/store", ["B"], reply)
    assert all(r[0] == "/done" for r in replies), replies
    out = np.zeros((BLOCK * a.blocks, 2), np.float32)
    engine.process_timed(BLOCK * a.blocks, None, BLOCK, out)  # settle B
    moving: list[float] = []
    settled: list[float] = []
    first: list[float] = []
    worst = 0.0
    for k in range(2 if a.callgrind else a.recalls):
        d.dispatch("/scene/recall", ["A" if k % 2 == 0 else "B", 0.0], reply)
        assert replies[-1][0] == "/done", replies[-1]
        s.service()
        if a.callgrind:
            engine.process(BLOCK * a.blocks, None, BLOCK, out)
            continue
        if a.cpu:  # each block's CPU time (the thread's own: not the time it waited)
            us = np.zeros(a.blocks)
            ob = np.zeros((BLOCK, 2), np.float32)
            for b in range(a.blocks):
                t0 = time.thread_time_ns()
                engine.process(BLOCK, None, BLOCK, ob)
                us[b] = (time.thread_time_ns() - t0) / 1e3
        else:
            us = engine.process_timed(BLOCK * a.blocks, None, BLOCK, out)
        first.append(float(us[0]))
        worst = max(worst, float(us[1:].max()))
        moving.extend(us[:20])
        settled.extend(us[-40:])
        s.service()
    if a.callgrind:
        print("done")
    else:
        print(f"{a.eqs} eq8 nodes, {moved} values moved by each instant recall, "
              f"{a.recalls} recalls, {a.blocks} blocks after each")
        print(f"  first block (the engine applies the recall's commands) median "
              f"{statistics.median(first):.0f} us; worst other block {worst:.0f} us; median "
              f"while moving {statistics.median(moving):.0f} us; settled "
              f"{statistics.median(settled):.0f} us (budget {BLOCK / RATE * 1e6:.0f} us)")
    s.close()
    engine.free()


if __name__ == "__main__":
    main()
