"""Control-rate parameters (MG_PARAM_CONTROL: the EQ's frequencies, gains and
Qs): while they move the engine writes no per-sample values and the node
evaluates the ramp at the frames it designs at (mg_ctl_at). Checked here: the
values at those frames against the ramp law of docs/protocol.md (`ramp`:
position p0 + (p1 - p0) c(j / N), the value the taper at that position;
tapers: log min (max/min)^x, linear min + x (max - min); dB-mapped values
reach the node as amplitude 10^(dB/20)), computed here with numpy; a scene
fade's endpoints; and that the EQ's output while values glide does not depend
on how calls split the signal (tests/test_call_split.py has the steady case)."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server import ramps
from mixgraph.server._core import lib
from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.scenes import show_of
from mixgraph.server.session import Session

SR = 48000


def curve(name: str, t: np.ndarray) -> np.ndarray:
    if name == "scurve":
        return t * t * (3 - 2 * t)
    if name == "exp":
        return np.expm1(4 * t) / np.expm1(4.0)
    return t


def law(param: str, x: np.ndarray) -> np.ndarray:
    """The node-domain value of an eq8 parameter at taper position x."""
    p = CATALOG["eq8"].param(param)
    if p.taper == "log":
        return p.min * (p.max / p.min) ** x
    db = p.min + x * (p.max - p.min)
    return 10 ** (db / 20) if p.unit == "dB" else db


def norm(param: str, v: float) -> float:
    p = CATALOG["eq8"].param(param)
    if p.taper == "log":
        return float(np.log(v / p.min) / np.log(p.max / p.min))
    return (v - p.min) / (p.max - p.min)


def eq_session(n: int = 1):
    e = Engine(SR, 0, 2, block=64)
    s = Session(e)
    for i in range(n):
        s.add_node("eq8", f"q{i}", {})
    s.commit()
    return e, s


def ahead(s: Session, name: str, param: str, k: int) -> float:
    return lib.mg_param_ahead(s.live[name].ptr, CATALOG["eq8"].param(param).index, k)


@pytest.mark.parametrize("shape", ["linear", "scurve", "exp"])
@pytest.mark.parametrize("param,start,target", [("b1freq", 100.0, 2000.0), ("b2gain", 0.0, -6.0),
                                                ("b3q", 0.7071, 8.0), ("hpfreq", 80.0, 15.0)])
def test_values_at_the_frames_read_follow_the_ramp_law(param, start, target, shape):
    # a 0.5 s ramp started at frame 1000, run in calls of 37 and 91 frames
    # (sub-blocks that do not line up with the EQ's 64-frame grid); then the
    # value the node would read at every frame of the next 64 blocks, among
    # them every grid frame it designs at, and past the ramp's end
    e, s = eq_session()
    try:
        s.set_param("q0", param, start)
        e.process(960, None, block=64)
        total = SR // 2
        ramps.ramp(s, "q0", param, target, 0.5, shape, time=1000)
        done, calls = 960, [37, 91]
        while done < 1000 + 20000:
            k = calls[len(str(done)) % 2]
            e.process(k, None, block=64)
            done += k
        # the engine keeps values as float32: the ramp runs between those
        p0, p1 = norm(param, float(np.float32(start))), norm(param, float(np.float32(target)))
        ks = np.arange(0, 64 * 64 + 8000, 7)
        j = (done - 1000) + 1 + ks  # the ramp's sample at frame `done + k`
        want = law(param, p0 + (p1 - p0) * curve(shape, np.minimum(j, total) / total))
        got = np.array([ahead(s, "q0", param, int(k)) for k in ks])
        end = j >= total
        # before the end: the formula, in double (1e-12); from the end on: the
        # target exactly, as the node sees a set value (float32)
        np.testing.assert_allclose(got[~end], want[~end], rtol=1e-12)
        tgt = np.float32(law(param, np.array(p1)))
        np.testing.assert_allclose(got[end], tgt, rtol=1e-6)
        assert len(set(got[end])) == 1
    finally:
        s.close()
        e.free()


def test_a_scene_fade_ends_exactly_on_the_scene_and_starts_where_values_were():
    # 400 ms fade of every band gain and b1freq (the A11 shape) on two eq8s;
    # a third node set directly to the scene's values is the exact endpoint
    e, s = eq_session(3)
    try:
        show = show_of(s)
        show.store("flat", ["/node/q0/*", "/node/q1/*"])
        for n in ("q0", "q1", "q2"):
            for b in range(1, 9):
                s.set_param(n, f"b{b}gain", -6.0 + b)
            s.set_param(n, "b1freq", 2000.0)
        show.store("shaped", ["/node/q0/*", "/node/q1/*"])
        e.process(SR // 10, None, block=64)
        before = {p: ahead(s, "q0", p, -1) for p in ("b1freq", "b3gain")}
        show.recall("flat", fade=0.4)
        e.process(64, None, block=64)
        # the fade's sample 0 is the value it starts from (a gain's, held as
        # float32 amplitude, to its rounding; the evaluation is in double)
        for p, v in before.items():
            assert ahead(s, "q0", p, -65) == pytest.approx(v, rel=6e-8)
        e.process(int(0.4 * SR), None, block=64)
        for n in ("q0", "q1"):
            for b in range(1, 9):
                assert ahead(s, n, f"b{b}gain", 0) == 1.0  # 0 dB exactly
            assert ahead(s, n, "b1freq", 0) == np.float32(100.0)
        show.recall("shaped", fade=0.4)
        e.process(int(0.4 * SR) + 64, None, block=64)
        for b in range(1, 9):
            p = f"b{b}gain"
            assert ahead(s, "q0", p, 0) == ahead(s, "q2", p, 0)
            assert ahead(s, "q0", p, 0) == pytest.approx(10 ** ((-6.0 + b) / 20), rel=1e-6)
        assert ahead(s, "q1", "b1freq", 0) == ahead(s, "q2", "b1freq", 0) == np.float32(2000.0)
    finally:
        s.close()
        e.free()


def glide_render(type_name: str, splits: list[int]) -> np.ndarray:
    """An eq over a chord while its values move: a set of freq, gain and Q
    (20 ms smoothing) at a frame off the 64-frame grid, an s-curve ramp of
    another band's gain, a ramp replaced halfway, the high-pass sweeping."""
    e = Engine(SR, 2, 2, block=64)
    s = Session(e)
    s.add_node("input", "in", {"channels": 2})
    s.add_node(type_name, "x", {"b2type": 0, "b2freq": 300, "b2gain": 6, "b2q": 1, "hpon": 1,
                                 "b3gain": -3})
    s.add_node("output", "out", {"channels": 2})
    s.connect("in", "x")
    s.connect("x", "out")
    s.commit()
    for p, v in (("b2freq", 3000.0), ("b2gain", -9.0), ("b2q", 4.0)):
        s.set_param("x", p, v, time=1000)
    ramps.ramp(s, "x", "b3gain", 9.0, 0.05, "scurve", time=2003)
    ramps.ramp(s, "x", "b1gain", -12.0, 0.1, "linear", time=4100)
    ramps.ramp(s, "x", "b1gain", 6.0, 0.03, "exp", time=6500)
    ramps.ramp(s, "x", "hpfreq", 400.0, 0.06, "linear", time=5000)
    n = np.arange(12000)
    x = np.stack([0.2 * np.sin(2 * np.pi * f * n / SR) + 0.05 * np.random.default_rng(c)
                  .standard_normal(len(n)) for c, f in enumerate((220.0, 1900.0))], 1)
    x = x.astype(np.float32)
    outs, done, i = [], 0, 0
    while done < len(n):
        k = min(splits[i % len(splits)], len(n) - done)
        i += 1
        outs.append(e.process(k, x[done:done + k], block=64).copy())
        done += k
    s.close()
    e.free()
    return np.concatenate(outs)


@pytest.mark.parametrize("type_name", ["eq", "eq8"])
def test_a_gliding_eq_does_not_depend_on_how_calls_split_the_signal(type_name):
    # designs sit on a 64-frame grid of the engine's clock and a glide runs
    # to its grid frame whatever the calls: the same output to float32
    # rounding (the glide trajectory differed by up to 0.55 % of the signal
    # when designs were made per call chunk)
    ref = glide_render(type_name, [64])
    peak = float(np.max(np.abs(ref)))
    for splits in ([100], [37, 91], [1, 255], [128], [32]):
        y = glide_render(type_name, splits)
        err = float(np.max(np.abs(y.astype(np.float64) - ref)))
        assert err <= 1e-6 * peak, (splits, err / peak)
