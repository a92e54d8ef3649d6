"""pan laws and balance against closed-form gains."""

from __future__ import annotations

import math

import numpy as np
import pytest

SR = 48000


@pytest.fixture
def make(sessions):
    """make(hw_in, hw_out) -> (session, engine); everything is freed afterwards."""
    return lambda hw_in=1, hw_out=2: sessions(hw_in, hw_out)


def law_gains(law: int, pos: float) -> tuple[float, float]:
    """The textbook pan laws, written independently of the node (x = (pos+1)/2)."""
    x = (pos + 1) / 2
    cp = (math.cos(x * math.pi / 2), math.sin(x * math.pi / 2))  # constant power
    lin = (1 - x, x)  # linear sum
    if law == 0:
        return cp
    if law == 1:  # -4.5 dB: geometric mean of constant power and linear sum
        return math.sqrt(cp[0] * lin[0]), math.sqrt(cp[1] * lin[1])
    if law == 2:
        return lin
    return min(1.0, 2 * (1 - x)), min(1.0, 2 * x)  # 0 dB centre


def run_pan(make, law, pos, x=None):
    s, e = make(1, 2)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("pan", "p", {"pan": pos, "law": law})
    s.add_node("output", "out")
    for a, b in (("in", "p"), ("p", "out")):
        s.connect(a, b)
    s.commit()
    if x is None:
        x = np.full((256, 1), 0.5, np.float32)
    return e.process(len(x), x).astype(np.float64), s, e


@pytest.mark.parametrize("law", [0, 1, 2, 3])
@pytest.mark.parametrize("pos", [-1.0, -0.6, -0.25, 0.0, 0.1, 0.5, 0.8, 1.0])
def test_pan_law_gains(make, law, pos):
    y, _, _ = run_pan(make, law, pos)
    gl, gr = law_gains(law, pos)
    # float32 gains times 0.5: 1e-7 absolute
    assert np.max(np.abs(y[:, 0] / 0.5 - gl)) < 2e-7
    assert np.max(np.abs(y[:, 1] / 0.5 - gr)) < 2e-7


@pytest.mark.parametrize("law,centre_db", [(0, -3.0103), (1, -4.5154), (2, -6.0206), (3, 0.0)])
def test_pan_centre_gains(make, law, centre_db):
    y, _, _ = run_pan(make, law, 0.0)
    # the centre gains -3.01 / -4.52 / -6.02 dB (and 0 dB), within 1e-3 dB
    assert np.all(np.abs(20 * np.log10(y / 0.5) - centre_db) < 1e-3)


def test_constant_power_sum_is_one(make):
    for pos in np.linspace(-1, 1, 17):
        y, _, _ = run_pan(make, 0, float(pos))
        g = y[0] / 0.5
        assert abs(g[0] ** 2 + g[1] ** 2 - 1) < 1e-6  # float32


def test_law_change_is_click_free(make):
    n = 4800
    t = np.arange(2 * n) / SR
    x = (0.3 + 0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32).reshape(-1, 1)
    y0, s, e = run_pan(make, 0, 0.3, x[:n])
    s.set_param("p", "law", 3)  # the farthest jump, crossfaded in 10 ms
    y1 = e.process(n, x[n:]).astype(np.float64)
    y = np.vstack([y0, y1])
    # largest sample-to-sample step: the 200 Hz sine alone moves at most
    # 0.2*2*pi*200/48000 = 0.0052 per sample; a switch without the crossfade
    # would step by (0.7 - cos(0.65 pi/2)) * 0.3 = 0.054 at once
    assert np.max(np.abs(np.diff(y, axis=0))) < 0.008
    gl, gr = law_gains(3, 0.3)
    assert np.max(np.abs(y1[1000:, 0] - gl * x[n + 1000:, 0])) < 1e-6


@pytest.mark.parametrize("b", [-1.0, -0.5, -0.1, 0.0, 0.3, 0.75, 1.0])
def test_balance_formula(make, b):
    s, e = make(2, 2)
    s.add_node("input", "in", {"channels": 2})
    s.add_node("balance", "bal", {"balance": b})
    s.add_node("output", "out")
    s.connect("in", "bal")
    s.connect("bal", "out")
    s.commit()
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 0.5, (512, 2)).astype(np.float32)
    y = e.process(512, x).astype(np.float64)
    gl = 1.0 if b <= 0 else 1 - b  # the near side stays at unity
    gr = 1.0 if b >= 0 else 1 + b
    assert np.max(np.abs(y[:, 0] - gl * x[:, 0])) < 1e-7  # float32 product
    assert np.max(np.abs(y[:, 1] - gr * x[:, 1])) < 1e-7


def test_pan_and_balance_never_emit_nonfinite_from_finite(make):
    x = np.array([1.0, -1.0, 0.0, 1e-30] * 64, np.float32).reshape(-1, 1) * 0.9
    y, _, _ = run_pan(make, 1, -0.3, x)
    assert np.all(np.isfinite(y))
