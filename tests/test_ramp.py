"""Taper ramps (MG_CMD_RAMP): the C tapers against server/tapers.py, and a ramp's
trajectory in an offline render against the taper interpolation computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from mixgraph.server import tapers
from mixgraph.server._core import lib
from mixgraph.server.render import render

RATE = 48000


def dc_patch() -> dict:
    return {
        "format": "mixgraph-patch", "version": 2, "sample_rate": RATE,
        "nodes": [
            {"name": "in", "type": "input", "channels": 1, "options": {}, "params": {}},
            {"name": "g", "type": "gain", "channels": 1, "options": {},
             "params": {"gain": -20.0}},
            {"name": "out", "type": "output", "channels": 1, "options": {}, "params": {}},
        ],
        "connections": [["in:out", "g:in"], ["g:out", "out:in"]],
        "metadata": {},
    }


def dc_file(tmp_path, seconds: float) -> str:
    p = tmp_path / "dc.wav"
    sf.write(p, np.ones(int(seconds * RATE), dtype=np.float32), RATE, subtype="FLOAT")
    return str(p)


# The reference, written from the published definitions (docs/protocol.md):
# the fader law's breakpoints and the curves' formulas, not the code under test.
FADER = [(0.0, -120.0), (0.0625, -60.0), (0.25, -30.0), (0.5, -10.0), (0.75, 0.0), (1.0, 24.0)]


def fader_norm(db: float) -> float:
    return float(np.interp(db, [d for _, d in FADER], [n for n, _ in FADER]))


def fader_db(x: float | np.ndarray) -> np.ndarray:
    return np.interp(x, [n for n, _ in FADER], [d for _, d in FADER])


def curve(name: str, t: np.ndarray) -> np.ndarray:
    if name == "scurve":
        return t * t * (3 - 2 * t)
    if name == "exp":
        return np.expm1(4 * t) / np.expm1(4.0)
    return t


@pytest.mark.parametrize("taper,lo,hi", [("fader", -120.0, 24.0), ("fader", -90.0, 6.0),
                                         ("log", 20.0, 20000.0), ("linear", -1.0, 1.0),
                                         ("log", 0.0, 10.0), ("stepped", 0.0, 3.0)])
def test_c_taper_equals_python(taper, lo, hi):
    code = {"linear": lib.MG_TAPER_LIN, "log": lib.MG_TAPER_LOG, "fader": lib.MG_TAPER_FADER,
            "stepped": lib.MG_TAPER_STEP}[taper]
    for x in np.linspace(-0.1, 1.1, 1201):
        want = tapers.to_value(taper, lo, hi, float(x))
        got = lib.mg_taper_value(code, lo, hi, float(x))
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (x, got, want)
        back = tapers.to_norm(taper, lo, hi, want)
        assert lib.mg_taper_norm(code, lo, hi, want) == pytest.approx(back, rel=1e-12,
                                                                     abs=1e-12)


def test_c_curves():
    t = np.linspace(0, 1, 101)
    for name, code in (("linear", 0), ("scurve", 1), ("exp", 2)):
        got = np.array([lib.mg_ramp_curve(code, float(x)) for x in t])
        np.testing.assert_allclose(got, curve(name, t), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", ["linear", "scurve", "exp"])
def test_ramp_trajectory_every_sample(tmp_path, shape):
    """A 0.5 s ramp from -20 dB to +6 dB starting at exactly 0.1 s: every output
    sample is the fader taper at position p0 + (p1 - p0) * curve(j / N), j = 1..N.
    Tolerance: 2e-6 relative (float32 output of a double computation; the C code
    may fuse multiply-adds)."""
    score = tmp_path / "s.txt"
    score.write_text(f"0.1 /node/g/gain/ramp 6 0.5 {shape}\n")
    out = tmp_path / "o.wav"
    res = render(dc_patch(), out, score=score, duration_s=0.8,
                 inputs={"in": dc_file(tmp_path, 0.8)})
    assert res.failures == []
    y, _ = sf.read(out, dtype="float64")
    s0, n = int(0.1 * RATE), int(0.5 * RATE)
    steady = 10 ** (-20 / 20)
    np.testing.assert_allclose(y[:s0], steady, rtol=1e-6)
    p0, p1 = fader_norm(-20.0), fader_norm(6.0)
    j = np.arange(1, n + 1)
    want = 10 ** (fader_db(p0 + (p1 - p0) * curve(shape, j / n)) / 20)
    np.testing.assert_allclose(y[s0:s0 + n], want, rtol=2e-6)
    np.testing.assert_allclose(y[s0 + n:], 10 ** (6 / 20), rtol=1e-6)


def test_set_and_ramp_take_over_mid_ramp(tmp_path):
    """A second ramp starts from the exact taper position the first reached; a
    set then smooths (20 ms) from where that ramp is."""
    score = tmp_path / "s.txt"
    score.write_text("0.1 /node/g/gain/ramp 0 1.0\n0.3 /node/g/gain/ramp -60 0.2\n"
                     "0.45 /node/g/gain -10\n")
    out = tmp_path / "o.wav"
    res = render(dc_patch(), out, score=score, duration_s=0.6,
                 inputs={"in": dc_file(tmp_path, 0.6)})
    assert res.failures == []
    y, _ = sf.read(out, dtype="float64")
    a0, na = int(0.1 * RATE), RATE
    b0, nb = int(0.3 * RATE), int(0.2 * RATE)
    p0, p1 = fader_norm(-20.0), fader_norm(0.0)
    pb = p0 + (p1 - p0) * (b0 - a0) / na  # where the first ramp is at 0.3 s
    j = np.arange(1, nb + 1)
    q1 = fader_norm(-60.0)
    c0 = int(0.45 * RATE)
    want = 10 ** (fader_db(pb + (q1 - pb) * j / nb) / 20)
    np.testing.assert_allclose(y[b0:c0], want[:c0 - b0], rtol=2e-6)
    # the set at 0.45 s starts its smoothing from the ramp's value there
    assert abs(y[c0] - y[c0 - 1]) < 0.01
    assert y[-1] == pytest.approx(10 ** (-10 / 20), rel=1e-6)
    assert math.isfinite(float(y.sum()))


def test_ramp_bad_input(tmp_path):
    """Negative, NaN or over-an-hour durations and unknown curves fail; nothing moves."""
    score = tmp_path / "s.txt"
    score.write_text("0.1 /node/g/gain/ramp 0 -1\n0.1 /node/g/gain/ramp 0 nan\n"
                     "0.1 /node/g/gain/ramp 0 3601\n0.1 /node/g/gain/ramp 0 1 wobbly\n"
                     "0.1 /node/g/gain/ramp 0\n")
    out = tmp_path / "o.wav"
    res = render(dc_patch(), out, score=score, duration_s=0.3,
                 inputs={"in": dc_file(tmp_path, 0.3)})
    assert len(res.failures) == 5
    y, _ = sf.read(out, dtype="float64")
    np.testing.assert_allclose(y, 10 ** (-20 / 20), rtol=1e-6)


def test_vca_ramp_moves_its_members(tmp_path):
    """A ramp of a VCA's level ramps each member's `vca` offset with it (same
    samples, same curve), along the offset's fader law: the member's output is
    the fader-law interpolation from 0 dB to -20 dB at every sample (rel 2e-6)."""
    doc = dc_patch()
    doc["nodes"][1]["params"] = {"gain": 0.0}
    doc["nodes"].append({"name": "v", "type": "vca", "channels": 1,
                         "options": {"members": "g"}, "params": {}})
    score = tmp_path / "s.txt"
    score.write_text("0.1 /node/v/level/ramp -20 0.5\n")
    out = tmp_path / "o.wav"
    res = render(doc, out, score=score, duration_s=0.8, inputs={"in": dc_file(tmp_path, 0.8)})
    assert res.failures == []
    y, _ = sf.read(out, dtype="float64")
    s0, n = int(0.1 * RATE), int(0.5 * RATE)
    np.testing.assert_allclose(y[:s0], 1.0, rtol=1e-6)
    p0, p1 = fader_norm(0.0), fader_norm(-20.0)
    j = np.arange(1, n + 1)
    np.testing.assert_allclose(y[s0:s0 + n], 10 ** (fader_db(p0 + (p1 - p0) * j / n) / 20),
                               rtol=2e-6)
    np.testing.assert_allclose(y[s0 + n:], 0.1, rtol=1e-6)


def test_a_ramp_by_pattern_moves_every_match(tmp_path):
    """`/node/g*/gain/ramp` ramps every matching fader, each along the same
    trajectory as a literal ramp (the ramp address is in the pattern address set
    like `/norm` and `/touch`)."""
    doc = dc_patch()
    doc["nodes"].insert(2, {"name": "g2", "type": "gain", "channels": 1, "options": {},
                            "params": {"gain": -20.0}})
    doc["nodes"].insert(3, {"name": "out2", "type": "output", "channels": 1,
                            "options": {"first": 2}, "params": {}})
    doc["connections"] += [["in:out", "g2:in"], ["g2:out", "out2:in"]]
    score = tmp_path / "s.txt"
    score.write_text("0.1 /node/g*/gain/ramp 6 0.5 linear\n")
    out = tmp_path / "o.wav"
    res = render(doc, out, score=score, duration_s=0.8, inputs={"in": dc_file(tmp_path, 0.8)})
    assert res.failures == []
    y, _ = sf.read(out, dtype="float64", always_2d=True)
    s0, n = int(0.1 * RATE), int(0.5 * RATE)
    p0, p1 = fader_norm(-20.0), fader_norm(6.0)
    want = 10 ** (fader_db(p0 + (p1 - p0) * np.arange(1, n + 1) / n) / 20)
    for ch in (0, 1):
        np.testing.assert_allclose(y[s0:s0 + n, ch], want, rtol=2e-6)
        np.testing.assert_allclose(y[s0 + n:, ch], 10 ** (6 / 20), rtol=1e-6)
