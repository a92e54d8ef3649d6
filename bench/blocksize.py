"""Does a node's output depend on the block size? A survey over the catalog.

    python bench/blocksize.py [--blocks 64 100 256 17] [--seconds 0.5] [--per-param]

For every processing node type in the catalog (read from it: a new type is
covered without editing this file), a patch of seeded noise plus a 220 Hz
tone into the node into the output is rendered offline with each block size,
still and with every parameter moved (to 37 % of its range, switches to 1)
at 0.0133 s, an instant inside a block for every size listed. Each render is
compared with the first block size's: "identical" or the largest absolute
difference and the first sample that differs. With --per-param the moves are
made one parameter at a time, which names the parameter behind a difference.

What a difference means: the node does something at block boundaries (a
coefficient designed per block, a settle test per chunk) instead of on the
engine's clock, so a render at 256 frames is not the live show at 64. The
eq's glide is on the engine's clock (nodes/eq.c: designed every 64 samples of
the clock); the rest is docs/architecture.md, "Block-size dependence".
A report, not a test: the figures go in the docs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.render import render
from mixgraph.server.session import Session

RATE = 48000
MOVE_S = 0.0133  # sample 638: inside a block for 17, 64, 100, 128, 256
# sources, sinks, routing and types made at run time: nothing of their own to compare
SKIP = {"lv2", "vca", "input", "player", "recorder", "meter", "output", "noise", "sine",
        "bus", "send"}


def patch(type_name: str) -> dict:
    """noise + a tone -> the node -> a stereo output, as a patch document."""
    e = Engine(RATE, 0, 2)
    s = Session(e)
    try:
        s.add_node("noise", "n", {"seed": 3, "level": -10.0, "channels": 1})
        s.add_node("sine", "a", {"freq": 220.0, "level": -12.0})
        s.add_node("bus", "in", {"channels": 1})
        s.connect("n", "in")
        s.connect("a", "in")
        s.add_node(type_name, "x", {})
        s.add_node("output", "out", {"channels": 2})
        s.connect("in", "x")
        if CATALOG[type_name].port("ref", "in"):
            s.connect("in", "x:ref")
        s.connect("x", "out")
        s.commit()
        return s.to_doc()
    finally:
        s.close()
        e.free()


def moves(type_name: str, only: str | None = None) -> str:
    """A score moving every parameter (or `only` that one) at MOVE_S."""
    lines = []
    for p in CATALOG[type_name].params:
        if p.name == "channels" or (only and p.name != only):
            continue
        v = 1.0 if p.name.endswith("on") else p.min + (p.max - p.min) * 0.37
        lines.append(f"{MOVE_S} /node/x/{p.name} {v:g}\n")
    return "".join(lines)


def compare(doc: dict, score: str, blocks: list[int], seconds: float, tmp: Path) -> str:
    """The renders at each block size against the first one's, as a line."""
    sc = tmp / "score.txt"
    sc.write_text(score)
    out = tmp / "out.wav"
    ref = None
    diffs = []
    for b in blocks:
        render(doc, out, score=sc if score else None, duration_s=seconds, block=b,
               progress=False)
        x = sf.read(out, dtype="float32")[0]
        if ref is None:
            ref = x
            continue
        d = float(np.max(np.abs(x - ref)))
        if d:
            first = int(np.argmax(np.any(x != ref, axis=1)))
            diffs.append(f"{b}: {d:.2g} from sample {first}")
    return "; ".join(diffs) or "identical"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 100, 256, 17])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--per-param", action="store_true")
    ap.add_argument("types", nargs="*", help="node types (default: the catalog)")
    a = ap.parse_args()
    names = a.types or [k for k in CATALOG if k not in SKIP]
    print(f"against {a.blocks[0]}-frame blocks; moves at {MOVE_S} s")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for k in names:
            doc = patch(k)
            print(f"{k:11s} still  {compare(doc, '', a.blocks, a.seconds, tmp)}", flush=True)
            if not a.per_param:
                print(f"{k:11s} moves  {compare(doc, moves(k), a.blocks, a.seconds, tmp)}",
                      flush=True)
                continue
            for p in CATALOG[k].params:
                if p.name == "channels":
                    continue
                r = compare(doc, moves(k, p.name), a.blocks, a.seconds, tmp)
                if r != "identical":
                    print(f"{k:11s} {p.name:10s} {r}", flush=True)


if __name__ == "__main__":
    main()
