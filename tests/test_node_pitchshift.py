"""pitchshift: output pitch measured by an estimator written here (FFT peaks
of the first harmonics), the formant envelope of a source-filter voice
(scipy resonators) kept, pass-through of unvoiced input, mix, bad input,
parameter sweeps, latency."""

from __future__ import annotations

import numpy as np
import pytest
import signals
from scipy import signal

SR = 48000
F0 = 150.0
# source-filter "voice": band-limited pulse train through three formant
# resonators (centre Hz, bandwidth Hz), the spectral envelope a shift must keep
FORMANTS = [(700.0, 130.0), (1200.0, 150.0), (2600.0, 250.0)]


def _sos():
    rows = []
    for fc, bw in FORMANTS:
        r = np.exp(-np.pi * bw / SR)
        th = 2 * np.pi * fc / SR
        rows.append([1 - r, 0, 0, 1, -2 * r * np.cos(th), r * r])
    return np.array(rows)


SOS = _sos()


def envelope(f):
    return np.abs(signal.sosfreqz(SOS, worN=np.asarray(f, float), fs=SR)[1])


def voice(f0, n, peak=0.3):
    t = np.arange(n) / SR
    f = f0(t) if callable(f0) else np.full(n, float(f0))
    ph = 2 * np.pi * np.cumsum(f) / SR
    src = sum(np.cos(k * ph) for k in range(1, int(5000 / np.max(f)) + 1))
    y = signal.sosfilt(SOS, src)
    return peak * y / np.max(np.abs(y[SR // 10:]))


def pitch_track(y, fguess, frame=4096, hop=2048):
    """The outside pitch estimator of tests/signals.py (as in test_node_autotune)."""
    return signals.pitch_track(y, fguess, SR, frame, hop)


def harmonic_db(y, f0, fmax=3500.0, n=32768):
    """Levels (dB) of the harmonics k f0 below fmax in the last n samples."""
    mag = np.abs(np.fft.rfft(y[-n:] * np.hanning(n)))
    ks = np.arange(1, int(fmax / f0) + 1)
    bins = np.round(ks * f0 * n / SR).astype(int)
    return ks, 20 * np.log10(np.array([mag[b - 3:b + 4].max() for b in bins]))


@pytest.fixture
def make(sessions):
    def _make(channels=1, **settings):
        s, e = sessions.chain("pitchshift", "ps", {"channels": channels, **settings}, channels,
                              channels)
        e.set_ceiling_db(40.0)
        return s, e
    return _make


def run(make, x, **settings):
    s, e = make(**settings)
    y = e.process(len(x), np.asarray(x, np.float32).reshape(-1, 1), block=64)[:, 0]
    return s, e, y.astype(np.float64), s.live["ps"].latency


def test_estimator_reads_a_known_voice():
    # the reference itself reads the source-filter voice at 150 Hz within 0.05 cents
    f = pitch_track(voice(F0, SR), F0)
    assert np.all(np.abs(1200 * np.log2(f / F0)) < 0.05)


@pytest.mark.parametrize("semitones,cents", [(7, 0), (-5, 30), (12, 0), (-12, 0), (0, -40)])
def test_shift_lands_on_the_expected_pitch_and_keeps_the_formants(make, semitones, cents):
    n = 2 * SR
    x = voice(F0, n)
    s, e, y, lat = run(make, x, semitones=semitones, cents=cents)
    f_want = F0 * 2 ** ((semitones + cents / 100) / 12)
    f = pitch_track(y[lat + SR // 10:], f_want)
    # within a few cents: 2 cents on the median, 5 on every 85 ms frame
    err = 1200 * np.log2(f / f_want)
    assert abs(np.median(err)) < 2 and np.max(np.abs(err)) < 5
    # timbre: the output harmonics follow the formant envelope at their new
    # frequencies (rms deviation < 2 dB after a common gain), where a shift
    # that resampled the spectrum (harmonic k keeps its level) is off by > 8 dB
    ks, lv = harmonic_db(y, f_want)
    dev_env = lv - 20 * np.log10(envelope(ks * f_want))
    dev_naive = lv - 20 * np.log10(envelope(ks * F0))
    rms = lambda d: np.sqrt(np.mean((d - np.median(d)) ** 2))  # noqa: E731
    assert rms(dev_env) < 2.0
    if abs(semitones) >= 5:  # (a small shift moves the envelope too little to tell)
        assert rms(dev_naive) > 8.0
    # and the level stays within 1.5 dB
    assert abs(20 * np.log10(np.std(y[lat + SR // 10:]) / np.std(x[SR // 10:-lat]))) < 1.5


def test_vibrato_and_glide_are_followed(make):
    # the shifted pitch follows a moving input: +7 semitones of a voice with
    # 5 Hz vibrato (+-30 cents) on a glide of 100 cents/s, frame by frame
    # against the input's own track (short frames: 43 ms). The vibrato's slope
    # reaches 940 cents/s: 4 cents is 4 ms of timing difference
    shape = lambda t: F0 * 2 ** ((100 * t + 30 * np.sin(2 * np.pi * 5 * t)) / 1200)  # noqa: E731
    x = voice(shape, 2 * SR)
    s, e, y, lat = run(make, x, semitones=7)
    r = 2 ** (7 / 12)
    fi = pitch_track(x[SR // 10:-lat], F0 * 1.06, frame=2048, hop=1024)
    fo = pitch_track(y[lat + SR // 10:], F0 * 1.06 * r, frame=2048, hop=1024)
    m = min(len(fi), len(fo))
    err = 1200 * np.log2(fo[:m] / (fi[:m] * r))
    assert np.median(np.abs(err)) < 4


def test_latency_is_declared_and_measured(make):
    rng = np.random.default_rng(2)
    x = 0.2 * rng.standard_normal(SR)
    s, e, y, lat = run(make, x, semitones=-3)
    assert 0 < lat <= 0.030 * SR  # the issue: at most 30 ms
    xc = np.correlate(y[:20000], x[:16000], "valid")
    assert int(np.argmax(xc)) == lat  # measured = declared


def test_zero_shift_is_the_input_delayed_by_the_latency(make):
    x = voice(F0, SR)
    s, e, y, lat = run(make, x)
    ref = np.concatenate([np.zeros(lat), x[:-lat]])
    assert np.max(np.abs(y - ref)) < 1e-6  # sample for sample (float32 rounding)


@pytest.mark.parametrize("kind", ["noise", "silence"])
def test_unvoiced_input_passes_unchanged(make, kind):
    rng = np.random.default_rng(5)
    x = 0.2 * rng.standard_normal(SR) if kind == "noise" else np.zeros(SR)
    s, e, y, lat = run(make, x, semitones=5)
    ref = np.concatenate([np.zeros(lat), x[:-lat]])
    assert np.max(np.abs(y - ref)) < 1e-6
    assert s.readout("ps", "confidence")[0] < 0.5
    assert s.readout("ps", "pitch") == [0.0]


def test_mix_blends_with_the_delayed_dry_signal(make):
    x = voice(F0, SR)
    s, e, wet, lat = run(make, x, semitones=4)
    s, e, half, _ = run(make, x, semitones=4, mix=50)
    dry = np.concatenate([np.zeros(lat), x[:-lat]])
    assert np.max(np.abs(half - 0.5 * (dry + wet))) < 1e-6
    s, e, none, _ = run(make, x, semitones=4, mix=0)
    assert np.max(np.abs(none - dry)) < 1e-6


def test_readouts(make):
    s, e, y, lat = run(make, voice(F0, SR), semitones=3)
    assert s.readout("ps", "pitch")[0] == pytest.approx(F0, rel=1e-3)
    assert s.readout("ps", "confidence")[0] > 0.9


def test_bad_input_never_gives_nan_or_a_burst(make):
    s, e = make(semitones=12)
    n = SR // 2
    t = np.arange(n) / SR
    cases = [np.full(n, np.nan), np.full(n, np.inf), np.sign(np.sin(2 * np.pi * 220 * t)),
             np.where(np.arange(n) % 100 < 50, 1.0, -1.0), np.full(n, -1.0), np.zeros(n),
             np.where(np.arange(n) % 5 == 0, np.nan, voice(F0, n))]
    for x in cases:
        y = e.process(n, x.astype(np.float32).reshape(-1, 1), block=64)[:, 0]
        assert np.all(np.isfinite(y))
        # bound: the shifter keeps the level, so a shifted tone may need a
        # higher crest factor than its input (a sine an octave down: 1.63x); it
        # holds grains to (1 + 0.2 |log2 r|) sqrt(max(r, 1/r)) times the input's
        # peak (1.70 at an octave) and the output within 1.15x that: < 1.96
        assert np.max(np.abs(y)) < 1.96
    assert e.stats().nan_scrubbed == 0


@pytest.mark.parametrize("param,a,b", [("semitones", -12, 12), ("semitones", 12, -12),
                                       ("cents", -100, 100), ("mix", 0, 100)])
def test_parameter_sweeps_do_not_zip(make, param, a, b):
    s, e = make(**{param: a})
    x = voice(F0, SR)
    pos = SR // 2
    out = [e.process(pos, x[:pos].astype(np.float32).reshape(-1, 1), block=64)]
    for k in range(1, 11):  # end to end in 10 ms
        s.set_param("ps", param, a + (b - a) * k / 10)
        out.append(e.process(48, x[pos:pos + 48].astype(np.float32).reshape(-1, 1), block=64))
        pos += 48
    out.append(e.process(len(x) - pos, x[pos:].astype(np.float32).reshape(-1, 1), block=64))
    y = np.concatenate(out)[:, 0].astype(np.float64)
    lat = s.live["ps"].latency
    # reference: the largest sample step of the steady output at either end setting
    steps = []
    for v in (a, b):
        _, _, yv, _ = run(make, x, **{param: v})
        steps.append(np.max(np.abs(np.diff(yv[lat:]))))
    # grains overlap-add: no step beyond 1.5x the steady output's largest
    assert np.max(np.abs(np.diff(y[lat:]))) < 1.5 * max(steps)


def test_stereo_shifts_both_channels_alike(make):
    x = voice(F0, SR)
    s, e = make(channels=2, semitones=7)
    y = e.process(len(x), np.stack([x, -0.5 * x], 1).astype(np.float32), block=64)
    lat = s.live["ps"].latency
    f = pitch_track(y[lat + SR // 10:, 0].astype(np.float64), F0 * 2 ** (7 / 12))
    assert abs(np.median(1200 * np.log2(f / (F0 * 2 ** (7 / 12))))) < 2
    assert np.max(np.abs(y[:, 1] + 0.5 * y[:, 0])) < 1e-6


# ---- level and pitch over the whole range (issue 12, defect 3) -------------------------
# Pure and harmonic tones from 80 Hz to 2 kHz, every semitone -12..+12 at two
# fundamentals and a grid elsewhere. Measured as an outside tester would: the
# level by RMS over a steady window after the latency; the pitch as the
# frequency of the output's fundamental partial (zero-padded FFT peak,
# parabolic interpolation: signals.partial_hz); and the output periodic at
# the new pitch (>= 99 % of its power on the harmonics of the expected
# fundamental: a shift that left energy between them would fail). Before the
# fix a 220 Hz sine at +12 came out at -131 dB and a flute-like tone at -7.8 dB;
# 2 kHz tones (above the detector's old 1.1 kHz ceiling) came out unshifted.

SWEEP_N = 16384  # samples measured, after the latency and 0.1 s of settling
EVERY = list(range(-12, 13))
GRID = [-12, -9, -5, -2, 3, 7, 11, 12]
SWEEP = ([(220.0, st) for st in EVERY] + [(1000.0, st) for st in EVERY]
         + [(f, st) for f in (80.0, 110.0, 300.0, 440.0, 2000.0) for st in GRID])


def steady_outputs(make, cases, kind, channels=1):
    """One node, the cases (f0, semitones) one after the other (semitones set
    before each; 0.1 s of settling after the latency is not measured): the
    steady output and input of each (stereo: the pair x, x/2)."""
    s, e = make(channels=channels)
    lat = s.live["ps"].latency
    seg = SR // 10 + SWEEP_N
    out = []
    for f0, st in cases:
        s.set_param("ps", "semitones", st)
        x = signals.harmonic_tone(f0, seg + lat, SR, kind)
        xin = x.reshape(-1, 1) if channels == 1 else np.stack([x, 0.5 * x], 1)
        y = signals.process(e, xin)
        out.append((y[lat + SR // 10:] if channels == 2 else y[lat + SR // 10:, 0],
                    x[SR // 10:SR // 10 + SWEEP_N]))
    return out


def level_pitch_errors(y, x, f_want):
    """(dB level error, cents error of the fundamental, harmonic share)."""
    db = 20 * np.log10(np.std(y) / np.std(x))
    cents = 1200 * np.log2(signals.partial_hz(y, f_want, SR) / f_want)
    return db, cents, signals.harmonic_share(y, f_want, SR)


@pytest.mark.parametrize("kind", ["sine", "saw", "flute"])
def test_level_and_pitch_over_the_range(make, kind):
    worst = []
    for (f0, st), (y, x) in zip(SWEEP, steady_outputs(make, SWEEP, kind), strict=True):
        db, cents, share = level_pitch_errors(y, x, f0 * 2 ** (st / 12))
        worst.append((round(abs(db), 2), round(abs(cents), 2), round(share, 4), f0, st))
    # harmonic share >= 0.99, except a 2 kHz saw (partials to 8 kHz, shifted
    # to 15 kHz: 4-sample grains) whose upper partials carry sidebands: >= 0.8
    bad = [w for w in worst if w[0] > 1.5 or w[1] > 5
           or w[2] < (0.8 if kind == "saw" and w[3] >= 2000 else 0.99)]
    assert not bad, f"{kind}: (|dB|, |cents|, harmonic share, f0, semitones) {bad}"


@pytest.mark.parametrize("kind", ["sine", "flute"])
def test_level_and_pitch_stereo(make, kind):
    cases = [(110.0, -12), (220.0, 12), (440.0, 7), (1000.0, -5), (2000.0, 12)]
    for (f0, st), (y, x) in zip(cases, steady_outputs(make, cases, kind, 2), strict=True):
        for c, g in ((0, 1.0), (1, 0.5)):
            db, cents, share = level_pitch_errors(y[:, c], g * x, f0 * 2 ** (st / 12))
            assert abs(db) < 1.5 and abs(cents) < 5 and share > 0.99, (kind, f0, st, c, db)
