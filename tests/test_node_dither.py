"""dither: TPDF dither + quantisation against the closed-form error power.

TPDF dither (two uniform values of +/-q/2) has variance q^2/6; rounding the
dithered signal adds an independent error uniform over +/-q/2 (q^2/12): the
total error power is q^2/4, whatever the signal, with zero mean."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

SR = 48000


@pytest.fixture
def dither():
    made = []

    def _make(channels=2, **settings):
        e = Engine(SR, channels, channels)
        s = Session(e)
        made.append((s, e))
        s.add_node("input", "in", {"channels": channels})
        s.add_node("dither", "d", {"channels": channels, **settings})
        s.add_node("output", "out", {"channels": channels})
        s.connect("in", "d")
        s.connect("d", "out")
        s.commit()

        def run(x):
            x = np.ascontiguousarray(x, np.float32).reshape(len(x), channels)
            return e.process(len(x), x, block=64)

        return s, run

    yield _make
    for s, e in made:
        s.close()
        e.free()


def program(n=SR, channels=2, seed=0):
    """A sine, a slow ramp and noise: a signal that is not on any grid."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * 441.3 * t)[:, None] + 0.2 * (t[:, None] - 0.5)
    return (x + 0.01 * rng.standard_normal((n, channels))).astype(np.float32)


@pytest.mark.parametrize("bits", [16, 24])
def test_total_error_power_is_q2_over_4(dither, bits):
    s, run = dither(2, bits=bits, seed=3)
    x = program()
    y = run(x).astype(np.float64)
    q = 2.0 ** -(bits - 1)
    e = y - x
    # q^2/4 within 5 % (the estimate over 96000 samples has ~0.5 % standard error)
    assert abs(np.mean(e ** 2) / (q * q / 4) - 1) < 0.05
    # zero mean: within 4 standard errors
    assert abs(np.mean(e)) < 4 * (q / 2) / np.sqrt(e.size)
    # the error is at most the dither's reach plus half a step: 1.5 q
    assert np.max(np.abs(e)) <= 1.5 * q


@pytest.mark.parametrize("bits", [16, 24])
def test_output_on_the_grid(dither, bits):
    s, run = dither(2, bits=bits)
    x = program(SR // 4) * 3  # also beyond full scale: clamped to the codes
    y = run(x).astype(np.float64)
    k = y * 2.0 ** (bits - 1)
    assert np.array_equal(k, np.round(k))
    assert k.min() >= -(2 ** (bits - 1)) and k.max() <= 2 ** (bits - 1) - 1


def test_no_noise_modulation(dither):
    # the error power is the same on silence, a quiet tone and a loud one (within 5 %)
    s, run = dither(1, bits=16)
    q = 2.0 ** -15
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 1000 * t)
    for x in (np.zeros(SR), 1e-4 * tone, 0.5 * tone):
        x = x.astype(np.float32)
        e = run(x)[:, 0].astype(np.float64) - x
        assert abs(np.mean(e ** 2) / (q * q / 4) - 1) < 0.05


def test_tone_below_one_lsb_survives(dither):
    # a -100 dBFS sine (under half a 16-bit step) is kept on average, not truncated away
    s, run = dither(1, bits=16)
    t = np.arange(2 * SR) / SR
    ref = np.sin(2 * np.pi * 997 * t)
    a = 10 ** (-100 / 20)
    y = run((a * ref).astype(np.float32))[:, 0].astype(np.float64)
    est = 2 * np.mean(y * ref)
    # projection onto the tone: amplitude within 5 % (standard error ~0.4 %)
    assert abs(est / a - 1) < 0.05


def test_deterministic_per_seed(dither):
    x = program(SR // 4)
    _, r1 = dither(2, seed=42, bits=16)
    _, r2 = dither(2, seed=42, bits=16)
    _, r3 = dither(2, seed=43, bits=16)
    y1, y2, y3 = r1(x), r2(x), r3(x)
    assert np.array_equal(y1, y2)
    assert not np.array_equal(y1, y3)
    # channels are independent: the error of L and R do not correlate (|r| < 0.02)
    e = y1.astype(np.float64) - x
    assert abs(np.corrcoef(e[:, 0], e[:, 1])[0, 1]) < 0.02


def test_off_is_a_bypass_and_switches_live(dither):
    s, run = dither(2, on=0)
    x = program(SR // 8)
    assert np.array_equal(run(x), x)
    s.set_param("d", "on", 1)
    s.set_param("d", "bits", 16)
    y = run(x).astype(np.float64)
    k = y * 2.0 ** 15
    assert np.array_equal(k, np.round(k))


@pytest.mark.parametrize("kind", ["nan", "inf", "dc", "square", "silence"])
def test_bad_input_never_gives_nan(dither, kind):
    s, run = dither(2, bits=16)
    x = np.zeros((SR // 8, 2))
    if kind == "nan":
        x[::7] = np.nan
    elif kind == "inf":
        x[::5, 0] = np.inf
        x[::3, 1] = -np.inf
    elif kind == "dc":
        x[:] = 0.25
    elif kind == "square":
        x[:] = np.sign(np.sin(2 * np.pi * 1000 / SR * np.arange(len(x))))[:, None]
    y = run(x)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 1.0
