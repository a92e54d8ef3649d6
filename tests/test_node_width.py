"""width: mid/side formula, bass mono against scipy's Butterworth (LR4)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

SR = 48000


@pytest.fixture
def make(sessions):
    """make(settings) -> (session, engine) for input -> width -> output (stereo)."""
    return lambda settings: sessions.chain("width", "w", settings, 2, 2)


def stereo_noise(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.45, 0.45, (n, 2)).astype(np.float32)


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0, 1.5, 2.0])
def test_mid_side_formula(make, w):
    s, e = make({"width": w})
    x = stereo_noise(4096)
    y = e.process(4096, x * 0.5, block=64).astype(np.float64)
    xl, xr = x[:, 0].astype(np.float64) * 0.5, x[:, 1].astype(np.float64) * 0.5
    m, sd = (xl + xr) / 2, (xl - xr) / 2
    # the formula, within 1e-6 (float32 arithmetic)
    assert np.max(np.abs(y[:, 0] - (m + w * sd))) < 1e-6
    assert np.max(np.abs(y[:, 1] - (m - w * sd))) < 1e-6


def test_width_zero_is_mono(make):
    s, e = make({"width": 0})
    y = e.process(4096, stereo_noise(4096, 2)).astype(np.float64)
    assert np.corrcoef(y[:, 0], y[:, 1])[0, 1] > 1 - 1e-9
    assert np.array_equal(y[:, 0], y[:, 1])


@pytest.mark.parametrize("fc", [60.0, 120.0, 300.0])
def test_bass_mono_is_lr4_on_side(make, fc):
    s, e = make({"bassmono": 1, "monofreq": fc, "width": 1.3})
    n = 16384
    x = stereo_noise(n, 3)
    y = e.process(n, x, block=64).astype(np.float64)
    xl, xr = x[:, 0].astype(np.float64), x[:, 1].astype(np.float64)
    m, sd = (xl + xr) / 2, (xl - xr) / 2
    sos = signal.butter(2, fc, "highpass", fs=SR, output="sos")
    s_ref = signal.sosfilt(sos, signal.sosfilt(sos, sd))  # LR4 = Butterworth squared
    # mid untouched exactly (float32), side = width * LR4(side) within 1e-5
    assert np.max(np.abs((y[:, 0] + y[:, 1]) / 2 - m)) < 1e-6
    assert np.max(np.abs((y[:, 0] - y[:, 1]) / 2 - 1.3 * s_ref)) < 1e-5


def test_bass_mono_removes_side_below_frequency(make):
    s, e = make({"bassmono": 1, "monofreq": 200})
    n = 48000
    t = np.arange(n) / SR
    lo = 0.4 * np.sin(2 * np.pi * 50 * t)  # 2 octaves below: LR4 gives -48 dB
    hi = 0.4 * np.sin(2 * np.pi * 2000 * t)  # above: passes
    x = np.stack([lo + hi, -lo - hi], axis=1).astype(np.float32) * 0.5  # pure side
    y = e.process(n, x).astype(np.float64)[n // 2:]
    side = (y[:, 0] - y[:, 1]) / 2
    spec = np.abs(np.fft.rfft(side * np.hanning(len(side))))
    f = np.fft.rfftfreq(len(side), 1 / SR)
    a50 = spec[np.argmin(np.abs(f - 50))]
    a2k = spec[np.argmin(np.abs(f - 2000))]
    # LR4 at 50/200 Hz: |H| = r^4/(1+r^4) = -48.2 dB; at 2 kHz -0.0004 dB
    assert 20 * np.log10(a50 / a2k) < -46


def test_bass_mono_switch_and_sweep_do_not_click(make):
    s, e = make({"bassmono": 0, "monofreq": 20})
    n = 4800
    t = np.arange(5 * n) / SR
    x = np.stack([0.4 * np.sin(2 * np.pi * 80 * t), 0.1 * np.sin(2 * np.pi * 90 * t)], 1)
    x = x.astype(np.float32)
    ys = [e.process(n, x[:n])]
    s.set_param("w", "bassmono", 1)
    ys.append(e.process(n, x[n:2 * n]))
    s.set_param("w", "monofreq", 500)  # end to end, smoothed over 20 ms
    ys.append(e.process(n, x[2 * n:3 * n]))
    s.set_param("w", "monofreq", 20)
    ys.append(e.process(n, x[3 * n:4 * n]))
    s.set_param("w", "width", 2)
    ys.append(e.process(n, x[4 * n:]))
    y = np.vstack(ys).astype(np.float64)
    # unmodulated signal: at most 0.5*2*pi*90/48000*(1+2) = 0.018 per sample (width 2 max)
    assert np.max(np.abs(np.diff(y, axis=0))) < 0.03


def test_width_bad_input(make):
    s, e = make({"bassmono": 1})
    x = np.zeros((2048, 2), np.float32)
    x[100:200] = np.nan
    x[300:400, 0] = np.inf
    x[500:1000] = 1.0
    x[1000:1500:2] = -1.0
    y = e.process(2048, x)
    assert np.all(np.isfinite(y))
    assert e.stats().nan_scrubbed == 0  # the node itself emitted nothing non-finite
    assert np.all(y[1600:] == 0)  # and recovered: silence in, silence out
