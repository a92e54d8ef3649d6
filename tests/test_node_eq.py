"""eq node: measured impulse responses against the RBJ Audio EQ Cookbook and
scipy.signal.butter, computed here independently of the C code."""

from __future__ import annotations

import numpy as np
import pytest
import signals
from scipy import signal

RATES = [44100, 48000, 96000]
TOL_DB = 0.05  # the tolerance, 20 Hz .. 0.9 Nyquist (measured worst: 0.0004 dB)
FLOOR_DB = -60.0  # below this the reference is compared in linear terms (see _compare)
IMP = 0.125  # impulse height: keeps boosted responses under the 0 dBFS output ceiling


@pytest.fixture
def made(sessions):
    """The shared offline-session factory (conftest `sessions`)."""
    return sessions


def _eq(made, sr, settings, channels=1, kind="eq"):
    """input -> EQ -> output at sr, committed: (session, engine)."""
    return made.chain(kind, "q", {"channels": channels, **settings}, channels, channels, rate=sr)


_run = signals.process


# ---- references: the cookbook's formulas, written out here -----------------------

def rbj(kind, fs, f0, gain_db=0.0, q=0.7071):
    """(b, a) of one RBJ cookbook biquad; shelves take Q directly."""
    A = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / fs
    cw, sw = np.cos(w0), np.sin(w0)
    al = sw / (2 * q)
    if kind == "bell":
        b = [1 + al * A, -2 * cw, 1 - al * A]
        a = [1 + al / A, -2 * cw, 1 - al / A]
    elif kind == "lowshelf":
        k = 2 * np.sqrt(A) * al
        b = [A * ((A + 1) - (A - 1) * cw + k), 2 * A * ((A - 1) - (A + 1) * cw),
             A * ((A + 1) - (A - 1) * cw - k)]
        a = [(A + 1) + (A - 1) * cw + k, -2 * ((A - 1) + (A + 1) * cw),
             (A + 1) + (A - 1) * cw - k]
    elif kind == "highshelf":
        k = 2 * np.sqrt(A) * al
        b = [A * ((A + 1) + (A - 1) * cw + k), -2 * A * ((A - 1) + (A + 1) * cw),
             A * ((A + 1) + (A - 1) * cw - k)]
        a = [(A + 1) - (A - 1) * cw + k, 2 * ((A - 1) - (A + 1) * cw),
             (A + 1) - (A - 1) * cw - k]
    elif kind == "notch":
        b = [1, -2 * cw, 1]
        a = [1 + al, -2 * cw, 1 - al]
    elif kind == "bandpass":  # constant 0 dB peak gain
        b = [al, 0, -al]
        a = [1 + al, -2 * cw, 1 - al]
    else:
        raise ValueError(kind)
    b = np.array(np.broadcast_arrays(*b, *a)[:3], dtype=float)  # scalars or arrays of settings
    a = np.array(np.broadcast_arrays(*a, *b)[:3], dtype=float)
    return b / a[0], a / a[0]


TYPES = {"bell": 0, "lowshelf": 1, "highshelf": 2, "notch": 3, "bandpass": 4}
SLOPES = {12: 0, 24: 1, 48: 2}


def _measure(made, sr, settings, kind="eq"):
    """Magnitude response of the node from its impulse response, at the FFT bins."""
    n = 1 << int(np.ceil(np.log2(0.7 * sr)))
    _, e = _eq(made, sr, settings, kind=kind)
    x = np.zeros(n)
    x[0] = IMP
    h = _run(e, x)[:, 0] / IMP
    assert np.max(np.abs(h[-64:])) < 1e-7  # the response has decayed inside the window
    f = np.fft.rfftfreq(n, 1 / sr)
    return f, np.abs(np.fft.rfft(h))


def _compare(f, meas, ref, sr):
    """Max dB error where the reference is above FLOOR_DB, and max linear error
    (relative to full scale) where it is below: near a notch's zero or deep in a
    filter's stop band a dB error is meaningless, so there the linear error must
    stay below 0.05 dB's worth of -60 dB (6e-6)."""
    band = (f >= 20) & (f <= 0.9 * sr / 2)
    meas, ref = meas[band], np.abs(ref[band])
    loud = 20 * np.log10(ref) > FLOOR_DB
    err_db = np.max(np.abs(20 * np.log10(np.maximum(meas[loud], 1e-30) / ref[loud])))
    err_lin = np.max(np.abs(meas[~loud] - ref[~loud]), initial=0.0)
    return err_db, err_lin


def _check(f, meas, ref, sr):
    err_db, err_lin = _compare(f, meas, ref, sr)
    assert err_db <= TOL_DB, err_db
    assert err_lin <= 6e-6, err_lin


BAND_CASES = [
    ("bell", 1000.0, 12.0, 0.7071),
    ("bell", 100.0, -9.0, 4.0),
    ("bell", 8000.0, 6.0, 10.0),
    ("bell", 40.0, 15.0, 2.0),
    ("lowshelf", 200.0, 6.0, 0.7071),
    ("lowshelf", 60.0, -12.0, 0.5),
    ("highshelf", 6000.0, -8.0, 0.7071),
    ("highshelf", 12000.0, 10.0, 1.0),
    ("notch", 3000.0, 0.0, 2.0),
    ("notch", 60.0, 0.0, 10.0),
    ("bandpass", 500.0, 0.0, 1.4),
    ("bandpass", 15000.0, 0.0, 0.5),
]


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("case", BAND_CASES,
                         ids=lambda c: f"{c[0]}-{c[1]:g}Hz-{c[2]:g}dB-Q{c[3]:g}")
def test_band_matches_cookbook(made, sr, case):
    kind, f0, g, q = case
    settings = {"b2type": TYPES[kind], "b2freq": f0, "b2gain": g, "b2q": q}
    f, meas = _measure(made, sr, settings)
    _, ref = signal.freqz(*rbj(kind, sr, f0, g, q), worN=f, fs=sr)
    _check(f, meas, ref, sr)


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("slope", [12, 24, 48])
@pytest.mark.parametrize("btype,fc", [("highpass", 20.0), ("highpass", 120.0),
                                      ("highpass", 2000.0), ("lowpass", 500.0),
                                      ("lowpass", 8000.0), ("lowpass", 18000.0)])
def test_hp_lp_match_scipy_butter(made, sr, slope, btype, fc):
    p = "hp" if btype == "highpass" else "lp"
    settings = {f"{p}on": 1, f"{p}freq": fc, f"{p}slope": SLOPES[slope]}
    f, meas = _measure(made, sr, settings)
    sos = signal.butter(slope // 6, fc, btype, fs=sr, output="sos")
    _, ref = signal.sosfreqz(sos, worN=f, fs=sr)
    _check(f, meas, ref, sr)


@pytest.mark.parametrize("sr", RATES)
def test_full_strip_is_the_product_of_its_sections(made, sr):
    settings = {
        "hpon": 1, "hpfreq": 60, "hpslope": 1, "lpon": 1, "lpfreq": 16000, "lpslope": 2,
        "b1type": 1, "b1freq": 120, "b1gain": 4, "b1q": 0.7071,
        "b2type": 0, "b2freq": 350, "b2gain": -6, "b2q": 2,
        "b3type": 0, "b3freq": 2500, "b3gain": 3, "b3q": 1,
        "b4type": 2, "b4freq": 9000, "b4gain": -4, "b4q": 0.7071,
    }
    f, meas = _measure(made, sr, settings)
    hp = signal.butter(4, 60, "highpass", fs=sr, output="sos")
    lp = signal.butter(8, 16000, "lowpass", fs=sr, output="sos")
    ref = signal.sosfreqz(hp, worN=f, fs=sr)[1] * signal.sosfreqz(lp, worN=f, fs=sr)[1]
    for kind, f0, g, q in [("lowshelf", 120, 4, 0.7071), ("bell", 350, -6, 2),
                           ("bell", 2500, 3, 1), ("highshelf", 9000, -4, 0.7071)]:
        ref = ref * signal.freqz(*rbj(kind, sr, f0, g, q), worN=f, fs=sr)[1]
    _check(f, meas, ref, sr)


def test_eq8_bands_5_to_8(made):
    sr = 48000
    settings = {"b8type": 0, "b8freq": 5000, "b8gain": -10, "b8q": 3,
                "b5type": 3, "b5freq": 250, "b5q": 5}
    f, meas = _measure(made, sr, settings, kind="eq8")
    ref = signal.freqz(*rbj("bell", sr, 5000, -10, 3), worN=f, fs=sr)[1]
    ref = ref * signal.freqz(*rbj("notch", sr, 250, 0, 5), worN=f, fs=sr)[1]
    _check(f, meas, ref, sr)


# ---- switches, channels ---------------------------------------------------------------

def test_defaults_and_off_sections_are_transparent(made):
    rng = np.random.default_rng(1)
    x = 0.25 * rng.standard_normal(4800).astype(np.float32)
    # default settings: every band at 0 dB, HP and LP off -> bit-exact copy
    _, e = _eq(made, 48000, {})
    assert np.array_equal(_run(e, x)[:, 0], x.astype(np.float64))
    # bands of every type switched off, HP and LP configured but off
    off = {"hpon": 0, "hpfreq": 2000, "lpon": 0, "lpfreq": 300}
    for b in range(1, 5):
        off |= {f"b{b}on": 0, f"b{b}type": 3, f"b{b}freq": 1000 * b, f"b{b}q": 3}
    _, e = _eq(made, 48000, off)
    assert np.array_equal(_run(e, x)[:, 0], x.astype(np.float64))


def test_switching_a_band_on_and_off_live(made):
    sr = 48000
    s, e = _eq(made, sr, {"b3type": 0, "b3freq": 1000, "b3gain": 12, "b3q": 1, "b3on": 0})
    t = np.arange(sr) / sr
    x = 0.1 * np.sin(2 * np.pi * 1000 * t)
    y = _run(e, x[:4800])[:, 0]
    assert np.allclose(y, x[:4800], atol=1e-7)  # off: the input
    s.set_param("q", "b3on", 1)
    y = _run(e, x[4800:])[:, 0]
    # on: +12 dB at the centre once the 10 ms crossfade and the filter settled
    rms = np.sqrt(np.mean(y[9600:] ** 2))
    assert abs(20 * np.log10(rms / (0.1 / np.sqrt(2))) - 12.0) < 0.01
    # the crossfade itself has no step: largest sample jump below a 1 kHz sine's
    assert np.max(np.abs(np.diff(y))) <= 4 * 0.1 * 2 * np.pi * 1000 / sr * 1.01


def test_live_slope_and_type_changes_settle_on_the_new_design(made):
    sr = 48000
    s, e = _eq(made, sr, {"hpon": 1, "hpfreq": 150, "hpslope": 0,
                          "b2type": 0, "b2freq": 700, "b2gain": 6, "b2q": 1})
    rng = np.random.default_rng(6)
    x = 0.1 * rng.standard_normal(sr)
    y0 = _run(e, x[: sr // 2])[:, 0]
    s.set_param("q", "hpslope", 2)
    s.set_param("q", "b2type", 3)  # bell -> notch
    y1 = _run(e, x[sr // 2:])[:, 0]
    assert np.all(np.isfinite(np.concatenate([y0, y1])))
    sos = np.vstack([signal.butter(8, 150, "highpass", fs=sr, output="sos"),
                     np.hstack(rbj("notch", sr, 700, 0, 1))])
    ref = signal.sosfilt(sos, x.astype(np.float32).astype(np.float64))
    # 0.25 s after the change the switch transient is gone: the new filters' output
    assert np.max(np.abs(y1[sr // 4:] - ref[sr // 2 + sr // 4:])) < 2e-6


def test_channels_have_their_own_state(made):
    sr = 48000
    _, e = _eq(made, sr, {"b1type": 0, "b1freq": 500, "b1gain": 9, "b1q": 2,
                          "hpon": 1, "hpfreq": 100, "hpslope": 2}, channels=3)
    rng = np.random.default_rng(2)
    x = 0.1 * rng.standard_normal((8192, 3))
    x[:, 2] = 0.0
    y = _run(e, x)
    sos = np.vstack([signal.butter(8, 100, "highpass", fs=sr, output="sos"),
                     np.hstack(rbj("bell", sr, 500, 9, 2))])
    for c in range(3):
        ref = signal.sosfilt(sos, x[:, c].astype(np.float32).astype(np.float64))
        assert np.max(np.abs(y[:, c] - ref)) < 2e-6  # float32 I/O between sections
    assert np.all(y[:, 2] == 0.0)


def test_block_size_does_not_change_the_output(made):
    rng = np.random.default_rng(5)
    x = 0.2 * rng.standard_normal(6000)
    settings = {"hpon": 1, "hpslope": 1, "lpon": 1, "lpfreq": 9000, "b2gain": 5, "b3type": 3}
    ys = []
    for block in (64, 512, 37):
        _, e = _eq(made, 48000, settings)
        ys.append(_run(e, x, block=block)[:, 0])
    assert np.array_equal(ys[0], ys[1]) and np.array_equal(ys[0], ys[2])


# ---- zipper ---------------------------------------------------------------------------

def _sweep(made, param, start, end, tone=200.0, steps=10):
    """A tone through band 1 while `param` moves start -> end in 10 ms (one OSC
    message per ms, geometric for frequencies); returns the output and the
    largest sample-to-sample jump of the tone itself."""
    sr = 48000
    base = {"b1type": 0, "b1freq": 1000, "b1gain": 12, "b1q": 2, param: start}
    s, e = _eq(made, sr, base)
    n = sr // 4
    t = np.arange(n) / sr
    x = 0.1 * np.sin(2 * np.pi * tone * t)
    t0 = 4800
    geo = param.endswith("freq") or param.endswith("q")
    vals = np.geomspace(start, end, steps) if geo else np.linspace(start, end, steps)
    for k, v in enumerate(vals):
        s.set_param("q", param, float(v), time=t0 + k * sr // 1000)
    return _run(e, x)[:, 0], x


def _hf(y, sr=48000, fc=4000.0):
    """Content above fc: a 200 Hz tone, even amplitude-modulated by the sweep
    (sidebands within a few hundred Hz), has none; zipper steps spread there."""
    sos = signal.butter(8, fc, "highpass", fs=sr, output="sos")
    return signal.sosfiltfilt(sos, y)


ZIP_DB = -50.0  # content above 4 kHz re the tone's amplitude during a 10 ms sweep


@pytest.mark.parametrize("param,start,end", [("b1freq", 20.0, 20000.0), ("b1freq", 20000.0, 20.0),
                                             ("b1gain", -24.0, 24.0), ("b1gain", 24.0, -24.0),
                                             ("b1q", 0.1, 20.0)])
def test_no_zipper_when_sweeping_a_band(made, param, start, end):
    y, x = _sweep(made, param, start, end)
    # coefficient steps show as clicks above 4 kHz. Measured: per-sample glides
    # between designs every 16 frames: -53 dB worst (the freq sweep's end, an
    # effect of the time-varying filter itself: a design every sample gives the
    # same); designs every 16 frames held constant: -26 dB; every 64: -20 dB.
    hf = _hf(y)[2400:-2400]
    assert 20 * np.log10(np.max(np.abs(hf)) / 0.1) < ZIP_DB
    # after the onset, the largest sample-to-sample jump stays within that of the unmodulated
    # tone through the loudest static setting on the path (+10% for the glide)
    path = {"b1freq": 1000.0, "b1gain": 12.0, "b1q": 2.0}
    geo = param != "b1gain"
    path[param] = np.geomspace(start, end, 400) if geo else np.linspace(start, end, 400)
    b, a = rbj("bell", 48000, path["b1freq"], path["b1gain"], path["b1q"])
    zi = np.exp(-2j * np.pi * 200.0 / 48000) ** np.arange(3)  # 1, z^-1, z^-2 at 200 Hz
    worst = np.max(np.abs((zi @ b) / (zi @ a)))
    assert np.max(np.abs(np.diff(y[2400:]))) <= 1.1 * worst * np.max(np.abs(np.diff(x)))


def test_no_zipper_when_sweeping_hp_and_lp(made):
    sr = 48000
    for p, start, end, tone in (("hpfreq", 10.0, 150.0, 400.0), ("lpfreq", 20000.0, 1000.0, 200.0)):
        on = p[:2] + "on"
        s, e = _eq(made, sr, {on: 1, p: start, p[:2] + "slope": 2})
        n = sr // 4
        x = 0.1 * np.sin(2 * np.pi * tone * np.arange(n) / sr)
        for k, v in enumerate(np.geomspace(start, end, 10)):
            s.set_param("q", p, float(v), time=4800 + k * 48)
        y = _run(e, x)[:, 0]
        assert 20 * np.log10(np.max(np.abs(_hf(y, fc=6000.0)[2400:-2400])) / 0.1) < ZIP_DB


def _smooth(v0, v1, n):
    """The engine's smoothing of a log- or dB-mapped value (docs/nodes.md: 20 ms,
    geometric in the node's domain): samples 1..n from v0 to v1, as floats."""
    v0, v1 = float(np.float32(v0)), float(np.float32(v1))
    r = (v0 * (v1 / v0) ** (np.arange(1, n + 1) / n)).astype(np.float32)
    r[-1] = v1
    return r.astype(np.float64)


def svf(kind, fs, f0, gain_db=0.0, q=0.7071):
    """The trapezoidal state-variable filter matched to rbj(kind, ...): A.
    Simper, "Linear Trapezoidal Integrated SVF" (Cytomic, 2013), its bell and
    shelves from the cookbook's analog prototypes (g = tan(pi f0 / fs), k =
    1/Q; bell k = 1/(QA); low shelf g / sqrt(A), high shelf g sqrt(A)), as the
    coefficients nodes/eq.c stores and glides: (2 a1, 2 a2, 2 a3, m0,
    (m1 + m2 g) / 2, m2)."""
    amp = 10 ** (gain_db / 20)
    A = np.sqrt(amp)
    g, k = np.tan(np.pi * min(max(f0, 1e-4 * fs), 0.4999 * fs) / fs), 1 / q
    if kind == "bell":
        k = 1 / (q * A)
        m = (1, k * (amp - 1), 0)
    elif kind == "lowshelf":
        g /= np.sqrt(A)
        m = (1, k * (A - 1), amp - 1)
    elif kind == "highshelf":
        g *= np.sqrt(A)
        m = (amp, k * (1 - A) * A, 1 - amp)
    elif kind == "notch":
        m = (1, -k, 0)
    elif kind == "bandpass":
        m = (0, k, 0)
    else:
        raise ValueError(kind)
    a1 = 1 / (1 + g * (g + k))
    a2, a3 = g * a1, g * g * a1
    return np.array([2 * a1, 2 * a2, 2 * a3, m[0], (m[1] + m[2] * g) / 2, m[2]])


def svf_tick(c, s, x):
    """One sample through an svf() section with states s = [ic1eq, ic2eq]."""
    A1, A2, A3, m0, M1, m2 = c
    v3 = x - s[1]
    w1 = A2 * v3 + A1 * s[0]
    y = m0 * x + (M1 * w1 + m2 * s[1])
    s[1] = (s[1] + A2 * s[0]) + A3 * v3
    s[0] = w1 - s[0]
    return y


def _moving_bell(x, sr, before, after, t0, chunk):
    """Outside reference for a bell whose (freq, amp, q) move from `before` to
    `after` at frame t0: each value smoothed over 20 ms, the SVF design
    (svf()) at the last frame of every `chunk` frames, its coefficients
    gliding linearly per sample from the previous design (frame i of a chunk:
    c_prev + (i + 1)/chunk of the way), in float64."""
    n, ns = len(x), int(0.020 * sr + 0.5)
    vals = []
    for v0, v1 in zip(before, after, strict=True):
        v = np.full(n, float(np.float32(v1)))
        v[:t0] = float(np.float32(v0))
        v[t0:t0 + ns] = _smooth(v0, v1, ns)[:n - t0]
        vals.append(v)

    def coef(i):
        return svf("bell", sr, vals[0][i], 20 * np.log10(vals[1][i]), vals[2][i])

    y = np.zeros(n)
    st = [0.0, 0.0]
    prev = coef(0)
    for c0 in range(0, n, chunk):
        cur = coef(min(c0 + chunk, n) - 1)
        m = min(chunk, n - c0)
        for i in range(m):
            y[c0 + i] = svf_tick(prev + (i + 1) * (cur - prev) / m, st, float(x[c0 + i]))
        prev = cur
    return y


def test_moving_band_glides_between_designs_a_block_apart(made):
    # a bell moving in frequency, gain and Q at once (20 ms ramps): designed
    # once per 64 frames, its SVF coefficients gliding per sample in between,
    # as the reference; designs every 16 frames differ from it by ~1e-4 here.
    # Tolerance: float32 coefficients, states and output (measured 4.3e-8).
    sr, t0 = 48000, 640
    rng = np.random.default_rng(5)
    x = (0.1 * rng.standard_normal(3200)).astype(np.float32)
    before, after = (300.0, 6.0, 1.0), (3000.0, -9.0, 4.0)
    s, e = _eq(made, sr, {"b2type": 0, "b2freq": before[0], "b2gain": before[1],
                          "b2q": before[2]})
    for name, v in zip(("b2freq", "b2gain", "b2q"), after, strict=True):
        s.set_param("q", name, v, time=t0)
    y = _run(e, x)[:, 0]
    amp = [(f, 10 ** (g / 20), q) for f, g, q in (before, after)]
    ref = _moving_bell(x, sr, amp[0], amp[1], t0, 64)
    assert np.max(np.abs(y - ref)) < 1e-6, np.max(np.abs(y - ref))
    assert np.max(np.abs(ref - _moving_bell(x, sr, amp[0], amp[1], t0, 16))) > 1e-5


def test_type_and_slope_switches_crossfade(made):
    # a 1 kHz tone while band 2 (at 1 kHz, +12 dB, Q 1) steps through every
    # type, then while the HP (at 1 kHz) steps through its slopes: each switch
    # is a 10 ms crossfade, so the largest sample jump stays within that of
    # the loudest steady setting (a hard switch jumps by up to 4x that)
    sr = 48000
    tone = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)
    step = np.max(np.abs(np.diff(tone)))
    s, e = _eq(made, sr, {"b2type": 0, "b2freq": 1000, "b2gain": 12, "b2q": 1})
    ys = [_run(e, tone[:2400])[:, 0]]
    for k, t in enumerate([3, 1, 4, 2, 0, 4, 3]):
        s.set_param("q", "b2type", t, time=2400 + k * 2400)
    ys.append(_run(e, tone[2400:])[:, 0])
    y = np.concatenate(ys)
    loudest = max(abs(signal.freqz(*rbj(k, sr, 1000, 12, 1), worN=[1000.0], fs=sr)[1][0])
                  for k in TYPES)
    assert np.max(np.abs(np.diff(y[1200:]))) <= 1.1 * loudest * step
    s, e = _eq(made, sr, {"hpon": 1, "hpfreq": 1000, "hpslope": 2})
    ys = [_run(e, tone[:2400])[:, 0]]
    for k, t in enumerate([0, 1, 2, 0]):
        s.set_param("q", "hpslope", t, time=2400 + k * 2400)
    ys.append(_run(e, tone[2400:])[:, 0])
    y = np.concatenate(ys)
    assert np.max(np.abs(np.diff(y[1200:]))) <= 1.1 * step


# ---- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("sr", [48000])
def test_never_emits_nan(made, sr):
    settings = {"hpon": 1, "hpfreq": 30, "hpslope": 2, "lpon": 1, "lpfreq": 15000, "lpslope": 2,
                "b1type": 0, "b1freq": 60, "b1gain": 24, "b1q": 20,
                "b2type": 3, "b2freq": 1000, "b2q": 20, "b3type": 4, "b3freq": 19000, "b3q": 0.1,
                "b4type": 1, "b4freq": 20, "b4gain": 24, "b4q": 20}
    s, e = _eq(made, sr, settings)
    n = 4096
    sq = np.where((np.arange(n) // 50) % 2 == 0, 1.0, -1.0)
    bad = np.zeros(n)
    bad[100] = np.nan
    bad[200] = np.inf
    bad[300] = -np.inf
    bad[400:500] = 3e38
    sigs = [np.zeros(n), np.ones(n), sq, bad, np.zeros(n)]
    y = _run(e, np.concatenate(sigs))[:, 0]
    assert np.all(np.isfinite(y))
    assert e.stats().nan_scrubbed == 0
    # after the bad input (clamped to 1e6) the resonances (+24 dB, Q 20 at
    # 20 and 60 Hz) ring down: 12 s of silence take the output below -100 dBFS
    y = _run(e, np.zeros(12 * sr), block=512)[:, 0]
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y[-sr // 2:])) < 1e-5


def test_silent_tail_ends_in_exact_zeros(made):
    sr = 48000
    _, e = _eq(made, sr, {"hpon": 1, "hpfreq": 40, "hpslope": 2, "lpon": 1, "lpslope": 2,
                          "b1gain": 6, "b2gain": -6, "b2q": 4, "b3gain": 9, "b4gain": 3})
    sq = np.where((np.arange(sr // 2) // 40) % 2 == 0, 0.5, -0.5)
    y = _run(e, np.concatenate([sq, np.zeros(3 * sr)]))[:, 0]
    assert np.all(y[-sr:] == 0.0)
