"""The eq's gliding cascade skips work that does not move (nodes/eq.c
cascade_glide_v): a pass whose sections all hold still runs the steady
kernel, a pass whose m0 and m2 hold still glides only the other four
coefficients. That is meant to be a pure speed-up, so the reference here is
the plain glide (every coefficient of every section computed every frame),
which MIXGRAPH_EQ_GLIDE_PLAIN=1 selects: both, in child processes, must
render the same scenes to the same bits. The scenes cover what the branches
depend on: one moving band among steady ones, every band moving (shelves:
m0/m2 move too), high-/low-pass units of 1-4 sections moving and holding,
ramps that start and end mid-call, a band switched off and on during a glide
(its 10 ms crossfade), a type change mid-glide, gangs of 1, 3, 5 and 7 nodes
of 1-3 channels (lanes left empty), call sizes 64, 37, 128 and 13, ganged
and alone, on 1 and 2 threads. The eq's own references (RBJ, Butterworth,
the glide's path) stay in test_node_eq.py and test_eq_svf.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from glide_scenes import RATE, EqRig  # noqa: E402  (bench/: glide_hash.py's rig too)

# the child: renders every scene and prints {name: sha256 of the samples}
CHILD = r"""
import hashlib, json, sys
import numpy as np
import test_eq_glide_paths as t
out = {}
for name, kw in t.VARIANTS:
    y = t.render(**kw)
    assert np.all(np.isfinite(y)), name
    out[name] = [hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest(),
                 float(np.abs(y).max())]
print(json.dumps(out))
"""


def render(nodes: int, block: int, gang: bool, threads: int, scene: str) -> np.ndarray:
    """`nodes` eq/eq8 nodes of 1-3 channels, each fed noise from its own
    input, in `scene`: "one" (every band of every node at +3 dB, only band 3's
    gain ramps, hp/lp on and still on some nodes), "still" (the same without
    ramps), "all" (every band's gain,
    band 1's frequency, a Q, hp/lp frequencies ramping, ramps of different
    lengths so some end while others run) or "switch" (as "all", with a band
    switched off and on and a type changed during the glides). Returns the
    outputs of all calls, `block` frames a call."""
    from mixgraph.server import ramps

    specs = []
    for i in range(nodes):
        ch = [2, 1, 3, 2, 1][i % 5]
        typ, nb = ("eq", 4) if i % 4 == 3 else ("eq8", 8)
        pr: dict = {}
        if scene in ("one", "still"):
            pr.update({f"b{b}gain": 3.0 for b in range(1, nb + 1)})
        if i % 3 == 0:
            pr.update(hpon=1, hpslope=(i // 3) % 3, hpfreq=50.0 + 7 * i)
        if i % 4 == 1:
            pr.update(lpon=1, lpslope=2, lpfreq=10000.0)
        if i % 2:
            pr.update(b2gain=-4.0, b4type=3, b1q=3.0)
        specs.append((typ, ch, pr))
    rng = np.random.default_rng(11 + nodes)
    x = (rng.standard_normal((RATE // 4, 4)) * 0.25).astype(np.float32)
    rig = EqRig(specs, x, block, 3 * nodes, gang, threads)
    s, run = rig.s, rig.run
    run(301)  # the ramps start mid-call
    for i in range(nodes if scene != "still" else 0):
        nb = 4 if i % 4 == 3 else 8
        if scene == "one":
            ramps.ramp(s, f"e{i}", "b3gain", -6.0 + i % 3, 0.031 + 0.002 * i)
            continue
        for b in range(1, nb + 1):  # lengths differ: some end while others run
            ramps.ramp(s, f"e{i}", f"b{b}gain", 5.0 - b - i % 3, 0.013 + 0.007 * b)
        ramps.ramp(s, f"e{i}", "b1freq", 1200.0 + 30 * i, 0.045)
        if i % 3 == 1:
            ramps.ramp(s, f"e{i}", "b2q", 4.0, 0.021)
        if i % 3 == 0:
            ramps.ramp(s, f"e{i}", "hpfreq", 180.0, 0.027)
    run(997)
    if scene == "switch":
        s.set_param("e0", "b3on", 0)
        s.set_param(f"e{nodes - 1}", "b2type", 1)
    run(1203)
    if scene == "switch":
        s.set_param("e0", "b3on", 1)
    for i in range(nodes if scene != "still" else 0):  # fresh ramps over running ones
        ramps.ramp(s, f"e{i}", "b2gain", -8.0, 0.05)
        if scene != "one" and i % 4 == 1:
            ramps.ramp(s, f"e{i}", "lpfreq", 4000.0, 0.03)
    run(2500)
    return rig.result()


VARIANTS = [
    (f"{scene} n{nodes} b{block} {'gang' if gang else 'alone'} t{threads}",
     {"nodes": nodes, "block": block, "gang": gang, "threads": threads, "scene": scene})
    for scene, nodes, block, gang, threads in [
        ("one", 5, 64, True, 1),
        ("one", 5, 64, False, 1),
        ("one", 3, 37, True, 2),
        ("all", 7, 64, True, 1),
        ("all", 7, 64, False, 1),
        ("all", 7, 64, True, 2),
        ("all", 1, 128, True, 1),
        ("all", 5, 13, True, 1),
        ("switch", 5, 64, True, 1),
        ("switch", 5, 37, False, 2),
        ("switch", 3, 128, True, 2),
    ]
]


def _hashes(plain: str) -> dict:
    path = str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "MIXGRAPH_EQ_GLIDE_PLAIN": plain, "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_skipping_still_coefficients_gives_the_plain_glides_bits():
    """Every scene, new path against the plain glide (the reference): the same
    sha256 of the samples. And the scenes are not silent or inert: output at
    a level the noise gives, and ganged, alone, 1 and 2 threads agree too."""
    new, plain = _hashes("0"), _hashes("1")
    assert new.keys() == plain.keys()
    for name in new:
        assert new[name][0] == plain[name][0], name
        assert new[name][1] > 0.1, name
    for a, b in [("one n5 b64 gang t1", "one n5 b64 alone t1"),
                 ("all n7 b64 gang t1", "all n7 b64 alone t1"),
                 ("all n7 b64 gang t1", "all n7 b64 gang t2")]:
        assert new[a][0] == new[b][0], (a, b)


def test_the_scenes_glide():
    """The ramps act (so a wrong coefficient would show in the hashes): the
    'one' scene and the same nodes without ramps agree up to the ramps'
    start and differ by far more than float noise after it."""
    a = render(3, 64, True, 1, "one")
    b = render(3, 64, True, 1, "still")
    np.testing.assert_array_equal(a[:301], b[:301])
    assert np.abs(a[301:] - b[301:]).max() > 0.02
