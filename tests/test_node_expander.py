"""expander: static curve against the expander form of the Giannoulis, Massberg,
Reiss (JAES 2012) gain computer, computed here in numpy; range; timing; bad input."""

from __future__ import annotations

import numpy as np
import pytest

SR = 48000


@pytest.fixture
def make(sessions):
    """make(hw_in, hw_out) -> (session, engine); everything is freed afterwards."""
    return lambda hw_in=1, hw_out=1: sessions(hw_in, hw_out)


def expander_curve(x, t, n, w, range_db):
    """Output level (dB): slope n below t (ratio 1:n), the knee of eq. 4 mirrored
    about the threshold (quadratic between t - w/2 and t + w/2, tangent to both
    lines), the attenuation limited to -range_db."""
    x = np.asarray(x, np.float64)
    y = np.where(2 * (x - t) > w, x, t + n * (x - t))
    if w > 0:
        k = 2 * np.abs(x - t) <= w
        y = np.where(k, x + (1 - n) * (x - t - w / 2) ** 2 / (2 * w), y)
    return np.maximum(y, x + range_db)


def db(x):
    return 20 * np.log10(np.maximum(np.abs(np.asarray(x, np.float64)), 1e-30))


def expander(make, **params):
    s, e = make(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("expander", "x", params)
    s.add_node("output", "out", {"channels": 1})
    s.connect("in", "x")
    s.connect("x", "out")
    s.commit()
    return s, e


def test_knee_is_continuous_and_tangent():
    # the reference itself: the knee meets both lines with matching slopes
    t, n, w = -40.0, 3.0, 10.0
    for x0, slope in ((t - w / 2, n), (t + w / 2, 1.0)):
        d = 1e-6
        y = expander_curve([x0 - d, x0, x0 + d], t, n, w, -200)
        assert abs((y[2] - y[0]) / (2 * d) - slope) < 1e-4
        assert abs(y[1] - expander_curve([x0], t, n, 0 if x0 > t else 1e-9, -200)[0]) < 1e-6


@pytest.mark.parametrize(
    "t,n,w,rg",
    [(-40, 2, 0, -100), (-40, 2, 12, -100), (-30, 4, 6, -30), (-50, 1.5, 24, -100),
     (-20, 10, 3, -15)],
)
@pytest.mark.parametrize("direction", [1, -1])
def test_static_curve_matches_giannoulis_expander(make, t, n, w, rg, direction):
    s, e = expander(make, threshold=t, ratio=n, knee=w, range=rg, attack=0.5, release=5)
    levels = np.arange(-90.0, 0.01, 0.5)[::direction]
    hold = 4800  # 100 ms per level: 20 release (5 ms) / 200 attack time constants
    x = np.repeat(10 ** (levels / 20), hold).astype(np.float32)
    y = e.process(len(x), x, block=64)[:, 0]
    got = db(y[hold - 1 :: hold]) - levels
    want = expander_curve(levels, t, n, w, rg) - levels
    assert np.max(np.abs(got - want)) < 0.1  # issue tolerance
    assert np.max(np.abs(got - want)) < 1e-4  # reached here: 1.1e-5 dB (fast log/exp, float32)


@pytest.mark.parametrize("rg", [-6.0, -20.0, -60.0, -100.0])
def test_range_limits_attenuation(make, rg):
    s, e = expander(make, threshold=-30, ratio=20, range=rg, attack=0.5, release=5)
    for lv in (-60.0, -90.0):
        x = np.full(4800, 10 ** (lv / 20), np.float32)
        y = e.process(4800, x, block=64)[-1, 0]
        assert db(y) - lv == pytest.approx(rg, abs=1e-3)
    y = e.process(4800, np.zeros(4800, np.float32), block=64)
    assert s.readout("x", "gr")[0] == pytest.approx(rg, abs=1e-3)


def test_attack_and_release_time_constants(make):
    t, n = -40.0, 2.0
    s, e = expander(make, threshold=t, ratio=n, range=-100, attack=2, release=50)
    quiet, loud = -50.0, -20.0
    e.process(48000, np.full(48000, 10 ** (quiet / 20), np.float32), block=64)
    g = db(e.process(4800, np.full(4800, 10 ** (loud / 20), np.float32), block=64)[:, 0]) - loud
    # opening: the reduction (10 dB) falls to 36.8% after tau = 2 ms (96 samples), within 5%
    k = int(np.argmax(g / g[0] <= np.exp(-1)))
    assert abs(k - 96) <= 0.05 * 96
    g = db(e.process(24000, np.full(24000, 10 ** (quiet / 20), np.float32), block=64)[:, 0])
    g = g - quiet
    k = int(np.argmax(g <= (1 - np.exp(-1)) * g[-1]))
    assert abs((k + 1) - 2400) <= 0.05 * 2400  # closing: 63.2% of 10 dB at 50 ms


def test_bad_input_never_gives_nan(make):
    s, e = expander(make)
    n = 4800
    sq = np.sign(np.sin(2 * np.pi * 100 * np.arange(n) / SR))
    for a in (np.full(n, np.nan), np.full(n, np.inf), np.full(n, -np.inf), np.ones(n), sq,
              np.zeros(n), np.where(np.arange(n) % 7 == 0, np.nan, sq), np.full(n, 3e38)):
        e.process(n, a.astype(np.float32), block=64)
    assert e.stats().nan_scrubbed == 0
    y = e.process(n, np.full(n, 0.5, np.float32), block=64)
    assert db(y[-1, 0]) == pytest.approx(db(0.5), abs=1e-4)


@pytest.mark.parametrize("param,a,b", [("threshold", -90, 0), ("threshold", 0, -90),
                                       ("ratio", 1, 20), ("range", 0, -100), ("knee", 0, 24)])
def test_no_zipper_when_moving_end_to_end_in_10ms(make, param, a, b):
    s, e = expander(make, threshold=-20, ratio=4)
    amp = 10 ** (-30 / 20)
    x = (amp * np.sin(2 * np.pi * 100 * np.arange(20000) / SR)).astype(np.float32)
    s.set_param("x", param, a)
    out = [e.process(9600, x[:9600], block=64)]
    pos = 9600
    for k in range(1, 11):
        s.set_param("x", param, a + (b - a) * k / 10)
        out.append(e.process(48, x[pos : pos + 48], block=64))
        pos += 48
    out.append(e.process(len(x) - pos, x[pos:], block=64))
    y = np.concatenate(out)[:, 0].astype(np.float64)
    ref = np.max(np.abs(np.diff(x.astype(np.float64)))) * np.max(np.abs(y)) / amp
    assert np.max(np.abs(np.diff(y))) < 1.5 * ref  # smooth gain, no jump


def test_long_release_settles_exactly_on_the_static_curve(make):
    # closing with a 2 s release: after 30 time constants within 1e-3 dB of the curve
    t, n, rg = -30.0, 2.0, -100.0
    s, e = expander(make, threshold=t, ratio=n, range=rg, attack=1, release=2000)
    e.process(48000, np.full(48000, 10 ** (-10 / 20), np.float32), block=64)
    k = 30 * 2 * SR
    y = e.process(k, np.full(k, 10 ** (-40 / 20), np.float32), block=64)[-1, 0]
    assert db(y) + 40 == pytest.approx(expander_curve(-40, t, n, 0, rg) + 40, abs=1e-3)
