"""A render hash of gliding equalisers: the check that a change to the eq's
glide (nodes/eq.c: glide_design, run_lanes_glide, the glide kernel) or to
the engine's control-rate ramps (ctl_advance) leaves the samples bit for bit
as they were, which mix64's hash (callgrind_mix.py --hash) does not cover:
its eqs do not glide.

    python bench/glide_hash.py [X.so]

13 eq/eq8 nodes of 1-3 channels (high-pass and low-pass on some, notches,
a non-finite input burst) in gangs and alone, every band's gain and band 1's
frequency ramping on all curves, a Q and the filters' frequencies on some,
a band switched off and a type changed mid-glide and fresh ramps over
running ones; rendered with 64-, 37-, 128- and 256-frame calls, ganged and
not. Prints the first 16 hex digits of the sha256 of all renders (with
X.so: that build of the C core, bench/ab_core.py's load_core).
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
from ab_core import load_core  # bench/, beside this script
from glide_scenes import RATE, EqRig

if len(sys.argv) > 1:
    load_core(sys.argv[1])

from mixgraph.server import ramps  # noqa: E402

N = 13


def render(block: int, gang: bool) -> np.ndarray:
    """One render of the scene with `block`-frame calls."""
    nodes = []
    for i in range(N):
        ch = [1, 2, 3, 2, 1, 2][i % 6]
        typ = "eq8" if i % 4 else "eq"
        pr: dict = {}
        if i % 3 == 0:
            pr.update(hpon=1, hpslope=(i // 3) % 3, hpfreq=60.0 + i)
        if i % 5 == 1:
            pr.update(lpon=1, lpslope=1, lpfreq=9000.0)
        if i % 2:
            pr.update(b2gain=3.0, b3type=3, b1q=2.0)
        nodes.append((typ, ch, pr))
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((RATE // 2, 4)) * 0.3).astype(np.float32)
    x[5000:5005, 2] = np.nan
    rig = EqRig(nodes, x, block, 40, gang)
    s = rig.s
    rig.run(777)
    curves = ["linear", "scurve", "exp"]
    for i in range(N):
        nb = 4 if i % 4 == 0 else 8
        for b in range(1, nb + 1):
            ramps.ramp(s, f"e{i}", f"b{b}gain", 6.0 - b - i % 3, 0.05 + 0.01 * b,
                       curve=curves[(i + b) % 3])
        ramps.ramp(s, f"e{i}", "b1freq", 1500.0 + 10 * i, 0.07)
        if i % 3 == 1:
            ramps.ramp(s, f"e{i}", "b2q", 4.0, 0.03)
        if i % 3 == 0:
            ramps.ramp(s, f"e{i}", "hpfreq", 200.0, 0.04)
    rig.run(1001)
    s.set_param("e2", "b3on", 0)
    s.set_param("e5", "b2type", 1)
    ramps.ramp(s, "e7", "lpfreq", 3000.0, 0.02)
    rig.run(2345)
    for i in range(N):
        ramps.ramp(s, f"e{i}", "b2gain", -9.0, 0.1)
        ramps.ramp(s, f"e{i}", "b1freq", 300.0, 0.1)
    rig.run(3000)
    s.set_param("e2", "b3on", 1)
    return rig.result()


def main() -> None:
    h = hashlib.sha256()
    for block in (64, 37, 128, 256):
        for gang in (True, False):
            y = render(block, gang)
            if not np.all(np.isfinite(y)):
                raise SystemExit(f"non-finite output (block {block}, ganged {gang})")
            h.update(y.tobytes())
    print(h.hexdigest()[:16])


if __name__ == "__main__":
    main()
