"""meter: loudness (EBU Tech 3341 / 3342, pyloudnorm), true peak, correlation.

The EBU test signals are generated here from their published descriptions
(sine tones at stated levels and durations); no audio files are committed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

from ebu_signals import TP_CASES

SR = 48000
HOP = SR // 10  # the meter updates loudness every 100 ms


@pytest.fixture
def meter():
    """meter(channels) -> run(x) feeding x (n, ch) through input -> meter."""
    made = []

    def _make(channels=2, sr=SR):
        e = Engine(sr, channels, 0)
        s = Session(e)
        made.append((s, e))
        s.add_node("input", "in", {"channels": channels})
        s.add_node("meter", "m", {"channels": channels})
        s.connect("in", "m")
        s.commit()

        def run(x, every=None):
            """Process x; with every=k frames, return the readouts after each chunk."""
            x = np.ascontiguousarray(x, np.float32).reshape(len(x), channels)
            if every is None:
                e.process(len(x), x)
                return None
            got = []
            for i in range(0, len(x), every):
                e.process(len(x[i:i + every]), x[i:i + every])
                got.append({k: s.readout("m", k)[0] for k in ("momentary", "shortterm")})
            return got

        return s, run

    yield _make
    for s, e in made:
        s.close()
        e.free()


def tone(db, seconds, freq=1000.0, channels=2, sr=SR, phase=0.0, t0=0):
    n = int(round(seconds * sr))
    t = (np.arange(n) + t0) / sr
    x = 10 ** (db / 20) * np.sin(2 * np.pi * freq * t + phase)
    return np.repeat(x[:, None], channels, axis=1)


def seq(*parts, channels=2):
    """Concatenated tones with continuous phase: parts are (dBFS, seconds)."""
    out, t0 = [], 0
    for db, sec in parts:
        x = tone(db, sec, channels=channels, t0=t0)
        out.append(x)
        t0 += len(x)
    return np.concatenate(out)


# ---- EBU Tech 3341 (integrated, momentary, short-term) --------------------------------

@pytest.mark.parametrize("case,x,want", [
    (1, lambda: tone(-23, 20), -23.0),
    (2, lambda: tone(-33, 20), -33.0),
    (3, lambda: seq((-36, 10), (-23, 60), (-36, 10)), -23.0),
    (4, lambda: seq((-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)), -23.0),
    (5, lambda: seq((-26, 20), (-20, 20.1), (-26, 20)), -23.0),
])
def test_tech3341_integrated(meter, case, x, want):
    s, run = meter(2)
    run(x())
    # Tech 3341: I within +/-0.1 LU
    assert abs(s.readout("m", "integrated")[0] - want) < 0.1, case


def test_tech3341_case1_momentary_and_shortterm(meter):
    s, run = meter(2)
    run(tone(-23, 20))
    # Tech 3341 case 1: M, S and I all read -23.0 +/-0.1 LUFS
    assert abs(s.readout("m", "momentary")[0] + 23) < 0.1
    assert abs(s.readout("m", "shortterm")[0] + 23) < 0.1


def test_tech3341_case6_five_channels(meter):
    # 5.0 (L R C Ls Rs): L, R at -28 dBFS, C at -24 dBFS, Ls, Rs at -30 dBFS, 20 s
    # -> -23.0 +/-0.1 (the surrounds weigh 1.41)
    s, run = meter(5)
    x = tone(0, 20, channels=5) * (10 ** (np.array([-28, -28, -24, -30, -30]) / 20))
    run(x)
    assert abs(s.readout("m", "integrated")[0] + 23) < 0.1


def test_tech3341_case9_shortterm_constant(meter):
    # 1.34 s at -20 dBFS then 1.66 s at -30 dBFS, repeated: S = -23.0 +/-0.1 after 3 s
    s, run = meter(2)
    x = seq(*[(-20, 1.34), (-30, 1.66)] * 5)
    got = run(x, every=HOP)
    after = [g["shortterm"] for g in got[31:]]
    assert max(abs(v + 23) for v in after) < 0.1


def test_tech3341_case12_momentary_constant(meter):
    # 0.18 s at -20 dBFS then 0.22 s at -30 dBFS, repeated 25 times: M = -23.0 +/-0.1 after 1 s
    s, run = meter(2)
    x = seq(*[(-20, 0.18), (-30, 0.22)] * 25)
    got = run(x, every=HOP)
    after = [g["momentary"] for g in got[10:]]
    assert max(abs(v + 23) for v in after) < 0.1


# ---- EBU Tech 3342 (loudness range) ----------------------------------------------------

@pytest.mark.parametrize("case,parts,want", [
    (1, [(-20, 20), (-30, 20)], 10.0),
    (2, [(-20, 20), (-15, 20)], 5.0),
    (3, [(-40, 20), (-20, 20)], 20.0),
    (4, [(-50, 20), (-35, 20), (-20, 20), (-35, 20), (-50, 20)], 15.0),
])
def test_tech3342_lra(meter, case, parts, want):
    s, run = meter(2)
    run(seq(*parts))
    # Tech 3342: LRA within +/-1 LU
    assert abs(s.readout("m", "lra")[0] - want) < 1.0, case


# ---- pyloudnorm (DeMan filters) ---------------------------------------------------------

def _music_like(n, rng):
    """Chords of decaying harmonic notes over a bass line and noise hits, stereo."""
    t = np.arange(n) / SR
    x = np.zeros((n, 2))
    beat = SR // 2
    for k, start in enumerate(range(0, n, beat)):
        seg = slice(start, min(n, start + 2 * beat))
        tt = t[seg] - t[start]
        env = np.exp(-tt * 3.0)
        f0 = 110.0 * 2 ** (((k * 5) % 12) / 12)
        note = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 8))
        x[seg, 0] += 0.2 * env * note
        x[seg, 1] += 0.15 * env * np.roll(note, 7)
        hit = rng.standard_normal(len(tt)) * np.exp(-tt * 40) * 0.3
        x[seg, k % 2] += hit
    x *= np.where((t % 8) < 4, 1.0, 0.3)[:, None]  # loud and quiet sections
    return x


@pytest.mark.parametrize("kind", ["noise", "music"])
def test_integrated_matches_pyloudnorm(meter, kind):
    pyln = pytest.importorskip("pyloudnorm")
    rng = np.random.default_rng(7)
    n = (10 if kind == "noise" else 20) * SR
    if kind == "noise":
        x = rng.standard_normal((n, 2)) * 0.05
    else:
        x = _music_like(n, rng)
    x = x.astype(np.float32)
    ref = pyln.Meter(SR, filter_class="DeMan").integrated_loudness(x.astype(np.float64))
    s, run = meter(2)
    run(x)
    # pyloudnorm with the DeMan filters: within +/-0.1 LU (observed ~0.001 LU)
    assert abs(s.readout("m", "integrated")[0] - ref) < 0.1


@pytest.mark.parametrize("sr", [44100, 96000])
def test_other_rates_integrated_matches_pyloudnorm(meter, sr):
    pyln = pytest.importorskip("pyloudnorm")
    x = (np.random.default_rng(9).standard_normal((5 * sr, 2)) * 0.1).astype(np.float32)
    ref = pyln.Meter(sr, filter_class="DeMan").integrated_loudness(x.astype(np.float64))
    s, run = meter(2, sr)
    run(x)
    assert abs(s.readout("m", "integrated")[0] - ref) < 0.1


# ---- true peak (EBU Tech 3341 cases 15-23) ------------------------------------------------

# TP_CASES: EBU Tech 3341 true-peak tones (tests/ebu_signals.py)


def tp_signal(case, seconds=0.5):
    frac, ph, level = TP_CASES[case]
    n = int(seconds * SR)
    x = 10 ** (level / 20) * np.sin(2 * np.pi * frac * np.arange(n) + np.radians(ph))
    # 20 ms raised-cosine fades: an abrupt onset rings in any interpolator
    f = int(0.02 * SR)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(f) / f)
    x[:f] *= ramp
    x[-f:] *= ramp[::-1]
    return np.repeat(x[:, None], 2, axis=1)


@pytest.mark.parametrize("case", sorted(TP_CASES))
def test_truepeak_tech3341(meter, case):
    s, run = meter(2)
    run(tp_signal(case))
    want = TP_CASES[case][2]
    tp = s.readout("m", "truepeak")
    # Tech 3341: true peak within +0.2 / -0.4 dB
    for v in tp:
        assert want - 0.4 <= v <= want + 0.2, (case, v)


def test_truepeak_is_a_maximum_until_reset(meter):
    s, run = meter(2)
    run(tone(-3, 0.5))
    run(tone(-20, 0.5))
    assert abs(s.readout("m", "truepeak")[0] + 3) < 0.1
    s.set_param("m", "reset", 1)
    run(tone(-20, 0.5))
    assert abs(s.readout("m", "truepeak")[0] + 20) < 0.1
    # the trigger fires again on every set to 1, even if it already reads 1
    run(tone(-6, 0.2))
    s.set_param("m", "reset", 1)
    run(tone(-20, 0.5))
    assert abs(s.readout("m", "truepeak")[0] + 20) < 0.1


def test_reset_restarts_integrated_and_lra(meter):
    s, run = meter(2)
    run(seq((-30, 10), (-20, 10)))
    assert s.readout("m", "lra")[0] > 5
    s.set_param("m", "reset", 1)
    run(tone(-23, 10))
    # after the reset only the -23 dBFS tone counts: exactly as a fresh start
    assert abs(s.readout("m", "integrated")[0] + 23) < 0.1
    assert s.readout("m", "lra")[0] < 0.1


# ---- correlation ------------------------------------------------------------------

@pytest.mark.parametrize("how,want", [("same", 1.0), ("inverted", -1.0), ("quadrature", 0.0)])
def test_correlation(meter, how, want):
    s, run = meter(2)
    x = tone(-10, 1.0)
    if how == "inverted":
        x[:, 1] *= -1
    elif how == "quadrature":
        x[:, 1] = np.roll(x[:, 0], SR // 4000)  # a quarter period of 1 kHz
    run(x)
    # Pearson correlation without mean removal (a phase meter): within 0.01
    assert abs(s.readout("m", "correlation")[0] - want) < 0.01


def test_correlation_of_independent_noise_is_near_zero(meter):
    s, run = meter(2)
    x = np.random.default_rng(1).standard_normal((SR, 2)) * 0.1
    run(x)
    # 19200 samples: standard error 1/sqrt(19200) ~ 0.007
    assert abs(s.readout("m", "correlation")[0]) < 0.05


# ---- bad input and silence ----------------------------------------------------------------

def test_silence_and_bad_input_give_finite_readouts(meter):
    s, run = meter(2)
    run(np.zeros((SR, 2)))
    assert s.readout("m", "momentary")[0] == -200.0
    assert s.readout("m", "integrated")[0] == -200.0
    assert s.readout("m", "correlation")[0] == 0.0
    x = tone(-20, 1.0)
    x[1000, 0] = np.nan
    x[2000, 1] = np.inf
    x[3000, 0] = -np.inf
    run(x)
    run(np.sign(tone(0, 1.0)))  # full-scale square
    run(np.full((SR, 2), 0.5))  # DC
    for r in ("peak", "rms", "truepeak", "momentary", "shortterm", "integrated", "lra",
              "correlation"):
        assert all(math.isfinite(v) for v in s.readout("m", r)), r
    run(tone(-23, 5))
    assert math.isfinite(s.readout("m", "momentary")[0])
