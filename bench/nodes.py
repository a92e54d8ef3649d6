"""Node and session benchmarks (the mixing-chain issue).

1. Cost of each node type's process in ns per sample per channel at 64-frame
   blocks: input -> NODE -> output at 48 kHz, minus the same patch without the
   node (median of --repeats runs of --seconds of audio, 2 channels where the
   node takes any count).
2. The mix64 reference session (shared/bench/mix64.md) at 16/64/256 channels:
   offline x real time and us per 64-frame block.
3. The same channel strip through Pedalboard (its NoiseGate, HighpassFilter,
   shelves/peaks, Compressor, Gain), side by side in this run.
4. ``--tail``: the reverb's silent tail against noise (CPU time ratio; a
   denormal stall would show as a ratio of several times, 1.0 is ideal).

    python bench/nodes.py [--seconds 2] [--repeats 5] [--channels 16 64 256] [--tail]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.errors import MixgraphError
from mixgraph.server.session import Session

RATE = 48000
BLOCK = 64


def _time_patch(build, hw_in: int, hw_out: int, seconds: float, repeats: int) -> float:
    """Median CPU seconds per second of audio for a patch."""
    e = Engine(RATE, hw_in, hw_out)
    s = Session(e)
    build(s)
    s.commit()
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((RATE, max(hw_in, 1))) * 0.1).astype(np.float32)
    out = np.zeros((RATE, hw_out), np.float32)
    xin = x if hw_in else None
    e.process(RATE // 4, xin[: RATE // 4] if hw_in else None, block=BLOCK)
    runs = []
    for _ in range(repeats):
        t0 = time.thread_time()
        for _ in range(int(seconds)):
            e.process(RATE, xin, block=BLOCK, out=out)
        runs.append((time.thread_time() - t0) / int(seconds))
        s.service()
    s.close()
    e.free()
    return statistics.median(runs)


def node_costs(seconds: float, repeats: int) -> list[tuple[str, int, float]]:
    rows = []
    for t in CATALOG.values():
        if t.needs_fifo or t.name in ("input", "output", "vca"):
            continue
        ins = [p for p in t.ports if p.direction == "in"]
        outs = [p for p in t.ports if p.direction == "out"]
        ch = 2 if t.min_channels <= 2 <= t.max_channels else t.default_channels
        in_ch = ins[0].channel_count(ch) if ins else 0
        out_ch = outs[0].channel_count(ch) if outs else 0

        def with_node(s: Session, t=t, ch=ch, in_ch=in_ch, out_ch=out_ch) -> None:
            if in_ch:
                s.add_node("input", "in", {"channels": in_ch})
            s.add_node(t.name, "n", {"channels": ch} if t.max_channels > 1 else {})
            if out_ch:
                s.add_node("output", "out", {"channels": out_ch})
            if in_ch:
                s.connect("in", "n")
            if out_ch:
                s.connect("n", "out")

        def without(s: Session, in_ch=in_ch, out_ch=out_ch) -> None:
            if in_ch:
                s.add_node("input", "in", {"channels": in_ch})
            if out_ch:
                s.add_node("output", "out", {"channels": out_ch})
            if in_ch and out_ch and in_ch == out_ch:
                s.connect("in", "out")

        try:
            a = _time_patch(with_node, in_ch, max(out_ch, 1), seconds, repeats)
            b = _time_patch(without, in_ch, max(out_ch, 1), seconds, repeats)
        except MixgraphError as e:
            print(f"  {t.name}: skipped ({e})")
            continue
        per_ch = max(in_ch, out_ch, 1)
        rows.append((t.name, per_ch, max(a - b, 0.0) / RATE / per_ch * 1e9))
    return rows


def reverb_tail_ratio(repeats: int) -> float:
    """Median CPU time of 10 s of reverb tail after an impulse over 10 s of noise."""
    ratios = []
    n = 10 * RATE
    noise = (np.random.default_rng(0).uniform(-0.3, 0.3, (n, 2))).astype(np.float32)
    for _ in range(repeats):
        e = Engine(RATE, 2, 2)
        s = Session(e)
        s.add_node("input", "in", {"channels": 2})
        s.add_node("reverb", "r", {"decay": 0.5, "damping": 20, "mix": 100})
        s.add_node("output", "out", {"channels": 2})
        s.connect("in", "r")
        s.connect("r", "out")
        s.commit()
        e.process(RATE, noise[:RATE], block=BLOCK)
        x = np.zeros((n, 2), np.float32)
        x[0] = 0.9
        t0 = time.thread_time()
        e.process(n, x, block=BLOCK)
        t_tail = time.thread_time() - t0
        t0 = time.thread_time()
        e.process(n, noise, block=BLOCK)
        ratios.append(t_tail / (time.thread_time() - t0))
        s.close()
        e.free()
    return statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--channels", type=int, nargs="*", default=[16, 64, 256])
    ap.add_argument("--no-nodes", action="store_true", help="skip the per-node table")
    ap.add_argument("--tail", action="store_true", help="reverb silent-tail cost ratio")
    a = ap.parse_args()
    if a.tail:
        print(f"reverb silent tail / noise CPU time: {reverb_tail_ratio(a.repeats):.2f}x "
              f"(median of {a.repeats})")
    if not a.no_nodes:
        print(f"# node cost at {RATE} Hz, {BLOCK}-frame blocks (median of {a.repeats})")
        print("| node | channels | ns per sample per channel |\n|---|---|---|")
        for name, ch, ns in node_costs(a.seconds, a.repeats):
            print(f"| {name} | {ch} | {ns:.1f} |", flush=True)
    try:
        from mix64 import run_mix64
    except ImportError:
        return
    run_mix64(a.channels, a.seconds, a.repeats)


if __name__ == "__main__":
    main()
