"""leveler: the output's loudness is checked with pyloudnorm (ITU-R BS.1770-4,
filter_class='DeMan') as the outside reference; gain slopes and limits are read
from the signal (output / input)."""

from __future__ import annotations

import numpy as np
import pyloudnorm as pyln
import pytest
import scipy.signal as ss
import signals

SR = 48000


@pytest.fixture
def make(sessions):
    """make(ch=2, **params) -> (session, engine): in -> leveler -> out."""

    def build(ch=2, **params):
        s, e = sessions(ch, ch)
        s.add_node("input", "in", {"channels": ch})
        s.add_node("leveler", "lv", {"channels": ch, **params})
        s.add_node("output", "out", {"channels": ch})
        s.connect("in", "lv")
        s.connect("lv", "out")
        s.commit()
        return s, e

    return build


def lufs(x):
    return pyln.Meter(SR, filter_class="DeMan").integrated_loudness(np.asarray(x, np.float64))


def programme(seconds, target_lufs, ch=2, seed=0):
    """A programme-like signal: noise tilted toward the lows (one-pole at 1 kHz plus
    some white), amplitude-modulated at a syllabic 3 Hz, scaled with pyloudnorm to
    target_lufs (integrated)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    w = rng.standard_normal((n, ch))
    b, a = ss.butter(1, 1000, fs=SR)
    x = ss.lfilter(b, a, w, axis=0) + 0.2 * w
    x *= (0.6 + 0.4 * np.sin(2 * np.pi * 3 * np.arange(n) / SR))[:, None]
    return (x * 10 ** ((target_lufs - lufs(x)) / 20)).astype(np.float32)


def tone(seconds, amp, ch=2, f=1000.0):
    n = int(seconds * SR)
    x = amp * np.sin(2 * np.pi * f * np.arange(n) / SR)
    return np.repeat(x[:, None], ch, 1).astype(np.float32)


def gain_db(x, y):
    """The applied gain (dB) at the samples where the input is large."""
    x = x[:, 0].astype(np.float64)
    y = y[:, 0].astype(np.float64)
    k = np.abs(x) > 0.5 * np.max(np.abs(x))
    return np.flatnonzero(k), 20 * np.log10(np.abs(y[k] / x[k]))


@pytest.mark.parametrize("level", [-30.0, -8.0])
def test_programme_converges_to_the_target(make, level):
    s, e = make(target=-18, maxboost=15, maxcut=15, time=3, speed=2)
    x = programme(30, level)
    y = e.process(len(x), x, block=64)
    # settling: |12| or |10| dB at <= 2 dB/s, a 3 s time constant and the 3 s window
    # take ~15 s; afterwards every 3 s stretch is within +-1 LU of the target
    # (issue figure; reached: within 0.15 LU)
    for t0 in range(18, 30, 3):
        got = lufs(y[t0 * SR : (t0 + 3) * SR])
        assert abs(got + 18) < 1.0, (t0, got)
    assert abs(lufs(y[18 * SR :]) + 18) < 0.3
    # the readout `shortterm` is the input's 3 s loudness (pyloudnorm on the last 3 s:
    # the same filter, 400 ms blocks instead of 100 ms sub-blocks)
    assert s.readout("lv", "shortterm")[0] == pytest.approx(lufs(x[-3 * SR :]), abs=0.2)
    g = s.readout("lv", "gain")[0]
    assert g == pytest.approx(-18 - level, abs=0.3)


def test_gain_moves_no_faster_than_speed(make):
    speed = 2.0
    s, e = make(target=-18, maxboost=24, time=0.5, speed=speed)
    amp = 10 ** (-40 / 20)
    x = tone(14, amp)
    y = e.process(len(x), x, block=64)
    idx, g = gain_db(x, y)
    # the gain every 100 ms (median over each 100 ms: float32 ratio noise ~1e-5 dB)
    seg = idx // 4800
    gs = np.array([np.median(g[seg == k]) for k in range(seg.max() + 1)])
    slope = np.diff(gs) / 0.1  # dB/s
    assert np.max(np.abs(slope)) <= speed * 1.001 + 1e-3
    assert np.max(slope) > 0.99 * speed  # the limit is what held it back
    # from 0 dB it cannot have reached more than speed * t at any time t
    assert np.all(g <= speed * idx / SR + 1e-3)
    want = -18 - lufs(x)  # the gain that brings this tone to -18 LUFS
    assert g[-1] == pytest.approx(want, abs=0.1)


def test_never_above_max_boost(make):
    s, e = make(target=-18, maxboost=6, time=1, speed=10)
    x = programme(15, -45)  # needs +27 dB; above the -50 LUFS gate
    y = e.process(len(x), x, block=64)
    ratio = np.abs(y[:, 0].astype(np.float64)) / np.maximum(np.abs(x[:, 0]), 1e-30)
    big = np.abs(x[:, 0]) > 1e-4
    assert np.max(20 * np.log10(ratio[big])) <= 6.0 + 1e-4
    assert s.readout("lv", "gain")[0] == pytest.approx(6.0, abs=1e-3)
    assert abs(lufs(y[-5 * SR :]) + 39) < 0.3  # -45 + 6
    # lowering maxboost live pulls the gain down within the 20 ms parameter ramp
    s.set_param("lv", "maxboost", 2)
    x2 = programme(1, -45, seed=3)
    y2 = e.process(len(x2), x2, block=64)
    r2 = np.abs(y2[1440:, 0].astype(np.float64)) / np.maximum(np.abs(x2[1440:, 0]), 1e-30)
    assert np.max(20 * np.log10(r2[np.abs(x2[1440:, 0]) > 1e-4])) <= 2.0 + 1e-4  # after 30 ms
    # and smoothly: no sample-to-sample step beyond the signal's own
    dy = np.max(np.abs(np.diff(y2[:1440, 0].astype(np.float64))))
    dx = np.max(np.abs(np.diff(x2[:1440, 0].astype(np.float64)))) * 10 ** (6 / 20)
    assert dy < 1.1 * dx


def _gains(s, e, x, chunk=4800):
    """Process x in chunks, returning the `gain` readout after each."""
    out = []
    for k in range(0, len(x), chunk):
        e.process(chunk, x[k : k + chunk], block=64)
        out.append(s.readout("lv", "gain")[0])
    return np.array(out)


@pytest.mark.parametrize("pause", ["silence", "noise floor"])
def test_pauses_do_not_pump_the_gain_up(make, pause):
    s, e = make(target=-18, maxboost=12, time=2, speed=3)
    # silence from the start: nothing measured, the gain stays at 0 dB
    g0 = _gains(s, e, np.zeros((2 * SR, 2), np.float32))
    assert np.all(g0 == 0.0)
    x = programme(15, -24)
    g1 = _gains(s, e, x)
    held = g1[-1]
    assert held == pytest.approx(6.0, abs=0.3)
    if pause == "silence":
        p = np.zeros((20 * SR, 2), np.float32)
    else:
        p = programme(20, -70, seed=5)  # a noise floor 20 LU under the -50 LUFS gate
    g2 = _gains(s, e, p)
    # the first 100 ms sub-block of the pause still runs on the old measurement;
    # after it the gain does not move at all
    assert abs(g2[0] - held) < 0.05
    assert np.max(g2[1:]) - np.min(g2[1:]) < 1e-4
    assert s.readout("lv", "hold")[0] == 1.0
    # the programme comes back at the same level: no burst, the gain stays put
    g3 = _gains(s, e, programme(5, -24, seed=7))
    assert np.max(np.abs(g3 - held)) < 0.5


def test_freeze_holds_the_gain(make):
    s, e = make(target=-18, time=1, speed=5)
    _gains(s, e, programme(10, -26))
    g = s.readout("lv", "gain")[0]
    s.set_param("lv", "freeze", 1)
    gf = _gains(s, e, programme(8, -12, seed=2))
    assert np.max(np.abs(gf - g)) < 1e-5
    s.set_param("lv", "freeze", 0)
    gu = _gains(s, e, programme(12, -12, seed=4))
    assert gu[-1] == pytest.approx(-6.0, abs=0.3)


def test_bad_input_never_gives_nan(make):
    s, e = make(target=-18, maxboost=12, maxcut=12, speed=20, time=0.5)
    n = 4800
    sigs = signals.bad_signals(n, SR)
    sq = sigs[4]  # the full-scale square
    for a in sigs:
        for b in sigs:
            y = e.process(n, np.stack([a, b], 1), block=64)
            assert np.all(np.isfinite(y))
            g = s.readout("lv", "gain")[0]
            assert -12.0 - 1e-4 <= g <= 12.0 + 1e-4
    assert e.stats().nan_scrubbed == 0
    # full scale for a while: the gain goes to the -12 dB limit, not beyond
    e.process(5 * SR, np.stack([sq] * 50, 0).reshape(-1)[: 5 * SR, None].repeat(2, 1), block=64)
    assert s.readout("lv", "gain")[0] == pytest.approx(-12.0, abs=1e-3)
    # and it recovers: a clean programme is levelled normally afterwards
    x = programme(12, -24)
    y = e.process(len(x), x, block=64)
    assert abs(lufs(y[-3 * SR :]) + 18) < 1.0


def test_one_absurd_sample_does_not_duck_the_programme(make):
    """A single 1e7 sample (a broken upstream) reads as 0: the measured level and
    the gain do not move (the review found a +91 LUFS reading and an 8 dB dip)."""
    s, e = make(target=-18, maxboost=12, time=2, speed=3)
    x = programme(16, -22)
    g = _gains(s, e, x[: 12 * SR])
    before = g[-1]
    spike = x[12 * SR:].copy()
    spike[100] = 1e7
    g = _gains(s, e, spike)
    assert s.readout("lv", "level")[0] < -15.0
    assert np.max(np.abs(g - before)) < 0.5  # the slow ride only
