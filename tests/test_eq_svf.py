"""The eq's sections are trapezoidal state-variable filters in float
(csrc/dsp_svf.h) matched to the RBJ Audio EQ Cookbook: measured here against
scipy.signal.freqz of the cookbook's biquads (coefficients from the cookbook's
formulas, tests/test_node_eq.py rbj()) and scipy.signal.butter, at 80 Hz and
near Nyquist; the float structure's noise floor at low frequencies against a
float64 reference (the precision argument for float, measured); and a gain
ramp's output against the ideal time-varying response (no zipper, no step)."""

from __future__ import annotations

import numpy as np
import pytest
import signals
from scipy import signal
from test_node_eq import SLOPES, TYPES, rbj

from mixgraph.server import ramps

SR = 48000
TOL_DB = 0.01  # magnitude error where the reference is above -60 dB
FLOOR_DB = -60.0
IMP = 0.125


def _eq(made, settings, kind="eq"):
    return made.chain(kind, "q", {"channels": 1, **settings}, 1, 1, rate=SR)


def _response(made, settings):
    """The node's magnitude response from its impulse response (2^16 frames)."""
    n = 1 << 16
    _, e = _eq(made, settings)
    x = np.zeros(n)
    x[0] = IMP
    h = signals.process(e, x)[:, 0] / IMP
    assert np.max(np.abs(h[-256:])) < 1e-7  # decayed inside the window
    f = np.fft.rfftfreq(n, 1 / SR)
    return f, np.abs(np.fft.rfft(h))


def _err_db(f, meas, ref):
    band = (f >= 10) & (f <= 0.995 * SR / 2)
    ref = np.abs(ref[band])
    loud = 20 * np.log10(np.maximum(ref, 1e-300)) > FLOOR_DB
    return float(np.max(np.abs(20 * np.log10(meas[band][loud] / ref[loud]))))


# 80 Hz and near Nyquist (0.417 fs: 20 kHz, the bands' highest frequency, at 48 kHz)
BANDS = [(k, f0, g, q) for f0 in (80.0, 20000.0)
         for k, g, q in (("bell", 12.0, 0.7071), ("bell", -12.0, 3.0), ("lowshelf", 9.0, 0.7071),
                         ("lowshelf", -12.0, 1.0), ("highshelf", 6.0, 0.7071),
                         ("highshelf", -9.0, 0.5), ("notch", 0.0, 2.0), ("bandpass", 0.0, 1.4))]


@pytest.mark.parametrize("case", BANDS, ids=lambda c: f"{c[0]}-{c[1]:g}Hz-{c[2]:g}dB-Q{c[3]:g}")
def test_bands_match_the_cookbook_to_0_01_db(sessions, case):
    kind, f0, g, q = case
    f, meas = _response(sessions, {"b2type": TYPES[kind], "b2freq": f0, "b2gain": g, "b2q": q})
    _, ref = signal.freqz(*rbj(kind, SR, f0, g, q), worN=f, fs=SR)
    assert _err_db(f, meas, ref) <= TOL_DB


@pytest.mark.parametrize("slope", [12, 24, 48])
@pytest.mark.parametrize("btype,fc", [("highpass", 80.0), ("highpass", 20000.0),
                                      ("lowpass", 80.0), ("lowpass", 20000.0)])
def test_butterworth_matches_scipy_to_0_01_db(sessions, slope, btype, fc):
    p = "hp" if btype == "highpass" else "lp"
    f, meas = _response(sessions, {f"{p}on": 1, f"{p}freq": fc, f"{p}slope": SLOPES[slope]})
    _, ref = signal.sosfreqz(signal.butter(slope // 6, fc, btype, fs=SR, output="sos"),
                             worN=f, fs=SR)
    assert _err_db(f, meas, ref) <= TOL_DB


def _float_biquad(b, a, x):
    """Transposed direct form II with float32 coefficients and states: what
    the eq would be as a float biquad (the contrast for the noise test)."""
    b = b.astype(np.float32)
    a = a.astype(np.float32)
    s1 = s2 = np.float32(0)
    y = np.empty(len(x), np.float32)
    for i, v in enumerate(x.astype(np.float32)):
        o = b[0] * v + s1
        s1 = b[1] * v - a[1] * o + s2
        s2 = b[2] * v - a[2] * o
        y[i] = o
    return y.astype(np.float64)


@pytest.mark.parametrize("gain_db", [12.0, -12.0])
def test_low_frequency_noise_floor(sessions, gain_db):
    # a -60 dBFS 40 Hz tone through a bell at 80 Hz (Q 0.7071): the residual
    # against the cookbook biquad in float64 (on the same float32 input) is
    # float rounding noise. Measured: SVF residual -178 dBFS rms (about -125 dB
    # re the tone); a float32 direct-form biquad on the same input: about
    # -150 dBFS. Bound: -160 dBFS rms, and 20 dB under the float biquad.
    n = SR
    x = (10 ** (-60 / 20) * np.sin(2 * np.pi * 40 * np.arange(n) / SR)).astype(np.float32)
    _, e = _eq(sessions, {"b2type": 0, "b2freq": 80.0, "b2gain": gain_db, "b2q": 0.7071})
    y = signals.process(e, x.astype(np.float64))[:, 0]
    b, a = rbj("bell", SR, 80.0, gain_db, 0.7071)
    ref = signal.lfilter(b, a, x.astype(np.float64))
    skip = SR // 10
    rms = float(np.sqrt(np.mean((y - ref)[skip:] ** 2)))
    fb = _float_biquad(b, a, x[:n // 4])
    rms_fb = float(np.sqrt(np.mean((fb - ref[:n // 4])[skip:] ** 2)))
    svf_db, fb_db = 20 * np.log10(rms), 20 * np.log10(rms_fb)
    print(f"gain {gain_db:+g} dB: svf {svf_db:.1f} dBFS, float biquad {fb_db:.1f} dBFS")
    assert svf_db < -160.0
    assert svf_db < fb_db - 20.0


@pytest.mark.parametrize("tone", [1000.0, 80.0])
def test_gain_ramp_follows_the_ideal_time_varying_response(sessions, tone):
    # a sine through a bell (at 1 kHz, Q 1) whose gain ramps 0 -> +12 dB over
    # 1 s (linear in dB), designed every 64 frames, its SVF coefficients
    # gliding per sample. (1) Against the ideal, the cookbook bell's complex
    # response at the tone evaluated at each sample's gain (A(t) sin(w t +
    # phi(t))): what is left is mostly the filter's own lag behind a moving
    # gain, which any filter has. (2) Zipper: the output's content above
    # 4 kHz (the tone and its slow modulation have none; coefficient steps
    # would spread there). (3) No step: the output's second difference stays
    # within 1% of the ideal's largest. Measured: (1) 2.2e-3 (-53 dB) re the
    # tone at 1 kHz, 4.4e-5 at 80 Hz; (2) -93 dB and -116 dB re the tone;
    # (3) equal to the ideal's to 5 digits. Bounds: (1) -50 dB, (2) -80 dB.
    amp, t0, n = 0.1, SR // 4, SR + SR // 2
    t = np.arange(n)
    x = amp * np.sin(2 * np.pi * tone * t / SR)
    s, e = _eq(sessions, {"b2type": 0, "b2freq": 1000.0, "b2gain": 0.0, "b2q": 1.0})
    ramps.ramp(s, "q", "b2gain", 12.0, 1.0, "linear", time=t0)
    y = signals.process(e, x)[:, 0]
    gdb = np.clip((t - t0 + 1) / SR, 0.0, 1.0) * 12.0
    b, a = rbj("bell", SR, 1000.0, gdb, 1.0)
    z = np.exp(-2j * np.pi * tone / SR)
    h = (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    ideal = amp * np.imag(h * np.exp(2j * np.pi * tone * t / SR))
    skip = SR // 8
    dev = np.max(np.abs((y - ideal)[skip:])) / amp
    hp = signal.butter(8, 4000.0, "highpass", fs=SR, output="sos")
    hf = np.max(np.abs(signal.sosfiltfilt(hp, y)[skip:-skip])) / amp
    d2, d2i = np.abs(np.diff(y[skip:], 2)), np.abs(np.diff(ideal[skip:], 2))
    print(f"{tone:g} Hz: vs ideal {20 * np.log10(dev):.1f} dB, above 4 kHz "
          f"{20 * np.log10(hf):.1f} dB re tone, 2nd diff {d2.max():.5e} vs ideal {d2i.max():.5e}")
    assert 20 * np.log10(dev) < -50.0
    assert 20 * np.log10(hf) < -80.0
    assert d2.max() <= 1.01 * d2i.max()
