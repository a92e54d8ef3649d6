"""The rig of the gliding-eq renders that bench/glide_hash.py hashes and
tests/test_eq_glide_paths.py compares (new glide path against the plain one):
eq/eq8 nodes on an engine, each fed from one of its 4 inputs and written to
outputs of its own, rendered in calls of chosen sizes while the caller sets
ramps between them. Each caller keeps its own nodes' parameters and ramps."""

from __future__ import annotations

import numpy as np

RATE = 48000


class EqRig:
    """eq/eq8 nodes given as (type, channels, params), node i fed from input
    1 + i % 4 and written to outputs of its own, all committed; run(m) renders
    the next m frames of the input x (frames x 4) in `block`-frame calls."""

    def __init__(self, nodes: list[tuple[str, int, dict]], x: np.ndarray, block: int,
                 outputs: int, gang: bool, threads: int = 1) -> None:
        from mixgraph.server.engine import Engine
        from mixgraph.server.session import Session

        self.e = Engine(RATE, 4, outputs, block=block, threads=threads)
        self.e.set_ganging(gang)
        self.s = s = Session(self.e)
        self.x, self.block, self.pos = x, block, 0
        self.outs: list[np.ndarray] = []
        out_ch = 0
        for i, (typ, ch, pr) in enumerate(nodes):
            s.add_node("input", f"in{i}", {"first": 1 + i % 4, "channels": 1})
            s.add_node(typ, f"e{i}", {"channels": ch, **pr})
            s.add_node("output", f"o{i}", {"first": out_ch + 1, "channels": ch})
            out_ch += ch
            s.connect(f"in{i}", f"e{i}")
            s.connect(f"e{i}", f"o{i}")
        s.commit()

    def run(self, m: int) -> None:
        """Render the next m frames of x (in block-frame calls); kept for result()."""
        self.outs.append(self.e.process(m, self.x[self.pos:self.pos + m], block=self.block)
                         .copy())
        self.pos += m

    def result(self) -> np.ndarray:
        """The rest of x rendered, every call's output in order; the engine is freed."""
        self.run(len(self.x) - self.pos)
        y = np.concatenate(self.outs)
        self.s.close()
        self.e.free()
        return y
