"""autotune: output pitch measured by an estimator written here (FFT peaks of
the first harmonics, parabolic interpolation of the log magnitude), not the
node's own YIN; pass-through of unvoiced input, silence and chords; bad
input; parameter moves; latency."""

from __future__ import annotations

import numpy as np
import pytest
import signals

SR = 48000
HARM = (1.0, 0.6, 0.4, 0.3, 0.2, 0.1)  # a harmonic tone: six partials
MAJOR = (0, 2, 4, 5, 7, 9, 11)


def midi_hz(m, ref=440.0):
    return ref * 2.0 ** ((m - 69) / 12)


def tone(f0, n, harm=HARM, amp=0.25):
    """Harmonic tone; f0 a number or a function of time (s) -> Hz."""
    t = np.arange(n) / SR
    f = f0(t) if callable(f0) else np.full(n, float(f0))
    ph = 2 * np.pi * np.cumsum(f) / SR
    return amp * sum(a * np.sin((k + 1) * ph) for k, a in enumerate(harm))


def pitch_track(y, fguess, frame=4096, hop=2048):
    """The outside pitch estimator of tests/signals.py at this file's rate."""
    return signals.pitch_track(y, fguess, SR, frame, hop)


def cents_off_scale(f, notes=range(12), key=0, ref=440.0):
    """Signed cents from the nearest note whose pitch class (above key) is in notes."""
    m = 69 + 12 * np.log2(np.asarray(f) / ref)
    cands = np.array([k for k in range(12, 120) if (k - key) % 12 in notes])
    d = m[:, None] - cands[None, :]
    return 100 * d[np.arange(len(m)), np.argmin(np.abs(d), axis=1)]


@pytest.fixture
def make(sessions):
    def _make(channels=1, **settings):
        s, e = sessions.chain("autotune", "at", {"channels": channels, **settings}, channels,
                              channels)
        e.set_ceiling_db(40.0)  # keep the engine's safety clip out of the measurements
        return s, e
    return _make


def run(make, x, **settings):
    s, e = make(**settings)
    y = e.process(len(x), np.asarray(x, np.float32).reshape(-1, 1), block=64)[:, 0]
    return s, e, y.astype(np.float64), s.live["at"].latency


A3_SHARP = midi_hz(57) * 2 ** (35 / 1200)  # A3 detuned +35 cents


def test_estimator_reads_a_known_tone():
    # the reference itself: a steady tone 35 cents above A3 reads +35 within 0.05 cents
    c = cents_off_scale(pitch_track(tone(A3_SHARP, SR), A3_SHARP))
    assert np.all(np.abs(c - 35) < 0.05)


SHAPES = {
    "steady": lambda t: A3_SHARP + 0 * t,
    # 5 Hz vibrato of +-20 cents around +35
    "vibrato": lambda t: A3_SHARP * 2 ** (20 / 1200 * np.sin(2 * np.pi * 5 * t)),
    # a slow glide: 80 cents/s, across two notes in 3 s
    "glide": lambda t: A3_SHARP * 2 ** (80 * t / 1200),
    "glide+vibrato": lambda t: A3_SHARP * 2 ** ((80 * t + 20 * np.sin(2 * np.pi * 5 * t)) / 1200),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_detuned_tone_lands_on_the_nearest_note(make, shape):
    n = 3 * SR
    x = tone(SHAPES[shape], n)
    s, e, y, lat = run(make, x)
    f_in = pitch_track(x[SR // 10:], A3_SHARP)
    f_out = pitch_track(y[lat + SR // 10:], A3_SHARP)
    err_in = np.median(np.abs(cents_off_scale(f_in)))
    err_out = np.median(np.abs(cents_off_scale(f_out)))
    assert err_in > 15  # the input is out of tune (the test can fail)
    assert err_out < 5  # the bound: median error under 5 cents
    # and the level stays (PSOLA keeps the harmonic amplitudes): within 1 dB
    assert abs(20 * np.log10(np.std(y[lat + SR // 10:]) / np.std(x[SR // 10:-lat]))) < 1.0


def test_major_scale_picks_the_nearest_scale_note(make):
    # C#4 + 35 cents in C major: C#/Db is not in the scale, D (62) is nearest
    f = midi_hz(61) * 2 ** (35 / 1200)
    x = tone(f, 2 * SR)
    s, e, y, lat = run(make, x, key=0, scale=1)
    f_out = pitch_track(y[lat + SR // 10:], midi_hz(62))
    assert np.median(np.abs(cents_off_scale(f_out, MAJOR))) < 5
    assert np.median(1200 * np.log2(f_out / midi_hz(62))) == pytest.approx(0, abs=5)
    assert s.readout("at", "note") == [62.0]


def test_custom_note_set_and_key(make):
    # key D (2), custom set {0, 7}: only D and A are targets; C4 + 35 cents -> D4? no:
    # m = 60.35; D4 = 62 (1.65 away), A3 = 57 (3.35 away) -> D4
    f = midi_hz(60) * 2 ** (35 / 1200)
    x = tone(f, 2 * SR)
    s, e, y, lat = run(make, x, key=2, scale=3, notes=(1 << 0) | (1 << 7))
    f_out = pitch_track(y[lat + SR // 10:], midi_hz(62))
    assert np.median(np.abs(1200 * np.log2(f_out / midi_hz(62)))) < 5


def test_amount_and_readouts(make):
    x = tone(A3_SHARP, 2 * SR)
    s, e, y, lat = run(make, x, amount=50)
    f_out = pitch_track(y[lat + SR // 10:], A3_SHARP)
    # half the correction: +17.5 cents; the detector's estimate, the correction
    # and the target against the known input (A3 = 57, 35 cents sharp)
    assert np.median(cents_off_scale(f_out)) == pytest.approx(17.5, abs=1.0)
    assert s.readout("at", "pitch")[0] == pytest.approx(A3_SHARP, rel=1e-3)
    assert s.readout("at", "correction")[0] == pytest.approx(-17.5, abs=0.5)
    assert s.readout("at", "note") == [57.0]
    assert s.readout("at", "confidence")[0] > 0.9


def test_retune_speed_lets_vibrato_through(make):
    # 5 Hz vibrato +-20 cents: snapped hard it is gone; with a 300 ms retune
    # time constant the correction cannot follow 5 Hz, the vibrato stays
    # (a one-pole at 0.53 Hz leaves ~95 % of it) while its centre lands on the note
    x = tone(SHAPES["vibrato"], 3 * SR)
    spread = {}
    for speed in (0, 300):
        s, e, y, lat = run(make, x, speed=speed)
        c = cents_off_scale(pitch_track(y[lat + SR:], A3_SHARP, frame=2048, hop=512))
        spread[speed] = np.percentile(c, 95) - np.percentile(c, 5)
        assert abs(np.median(c)) < 5
    assert spread[0] < 5
    assert spread[300] > 20


def delayed(x, lat):
    return np.concatenate([np.zeros(lat), x[:-lat]])


def null_db(y, ref):
    return 20 * np.log10(np.sqrt(np.mean((y - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)) + 1e-30)


def test_latency_is_declared_and_exact_for_unvoiced_input(make):
    rng = np.random.default_rng(3)
    x = 0.2 * rng.standard_normal(SR)
    s, e, y, lat = run(make, x)
    assert 0 < lat <= 0.030 * SR  # the issue: at most 30 ms
    xc = np.correlate(y[:20000], x[:16000], "valid")
    assert int(np.argmax(xc)) == lat  # measured = declared
    # noise is unvoiced: passed through sample for sample (float rounding only)
    assert null_db(y, delayed(x, lat)) < -100
    assert s.readout("at", "confidence")[0] < 0.5
    assert s.readout("at", "correction") == [0.0]


def test_silence_passes_and_stays_silent(make):
    x = np.zeros(SR)
    s, e, y, lat = run(make, x)
    assert np.all(y == 0)
    assert s.readout("at", "pitch") == [0.0]


@pytest.mark.parametrize("notes", [(60, 64, 67), (57, 61, 64, 69)])
def test_chords_get_low_confidence_and_no_correction(make, notes):
    t = np.arange(2 * SR) / SR
    x = sum(0.15 * np.sin(2 * np.pi * midi_hz(m + 0.3) * t)
            + 0.07 * np.sin(4 * np.pi * midi_hz(m + 0.3) * t) for m in notes)
    s, e, y, lat = run(make, x)
    assert np.all(np.isfinite(y))
    assert s.readout("at", "confidence")[0] < 0.7  # a stated low confidence
    assert s.readout("at", "note") == [-1.0]
    assert null_db(y, delayed(x, lat)) < -100  # left alone: no burst, no warble


def test_bad_input_never_gives_nan_or_a_burst(make):
    s, e = make()
    n = SR // 2
    t = np.arange(n) / SR
    cases = [np.full(n, np.nan), np.full(n, np.inf), np.where(np.arange(n) % 100 < 50, 1.0, -1.0),
             np.sign(np.sin(2 * np.pi * 220 * t)), np.full(n, 1.0), np.zeros(n),
             np.where(np.arange(n) % 7 == 0, -np.inf, tone(A3_SHARP, n))]
    for x in cases:
        y = e.process(n, x.astype(np.float32).reshape(-1, 1), block=64)[:, 0]
        assert np.all(np.isfinite(y))
        # output samples are window-weighted averages of input samples: at most
        # full scale plus the 4-point interpolator's overshoot (< 1.3)
        assert np.max(np.abs(y)) < 1.3
    assert e.stats().nan_scrubbed == 0
    # and it still corrects afterwards
    x = tone(A3_SHARP, SR)
    y = e.process(SR, x.astype(np.float32).reshape(-1, 1), block=64)[:, 0].astype(np.float64)
    assert np.median(np.abs(cents_off_scale(pitch_track(y[SR // 2:], A3_SHARP)))) < 5


@pytest.mark.parametrize("param,a,b", [("amount", 0, 100), ("amount", 100, 0),
                                       ("reference", 400, 480), ("key", 0, 11),
                                       ("speed", 1000, 0)])
def test_parameter_moves_do_not_zip(make, param, a, b):
    s, e = make(**{param: a}, scale=1)
    x = tone(A3_SHARP, SR)
    pos = SR // 2
    out = [e.process(pos, x[:pos].astype(np.float32).reshape(-1, 1), block=64)]
    for k in range(1, 11):  # end to end in 10 ms
        s.set_param("at", param, a + (b - a) * k / 10)
        out.append(e.process(48, x[pos:pos + 48].astype(np.float32).reshape(-1, 1), block=64))
        pos += 48
    out.append(e.process(len(x) - pos, x[pos:].astype(np.float32).reshape(-1, 1), block=64))
    y = np.concatenate(out)[:, 0].astype(np.float64)
    lat = s.live["at"].latency
    # the pitch moves by at most a few semitones, grains overlap-add: the largest
    # sample step stays within 1.5x that of the steady tone (a jump of the read
    # position without a crossfade would step by up to the tone's full swing)
    ref = np.max(np.abs(np.diff(x)))
    assert np.max(np.abs(np.diff(y[lat:]))) < 1.5 * ref


def test_stereo_moves_both_channels_alike(make):
    x = tone(A3_SHARP, 2 * SR)
    s, e = make(channels=2)
    y = e.process(len(x), np.stack([x, 0.5 * x], 1).astype(np.float32), block=64)
    lat = s.live["at"].latency
    f_out = pitch_track(y[lat + SR // 10:, 0].astype(np.float64), A3_SHARP)
    assert np.median(np.abs(cents_off_scale(f_out))) < 5
    assert np.max(np.abs(y[:, 1] - 0.5 * y[:, 0])) < 1e-6


def test_graph_compensates_the_declared_latency(sessions):
    # dry path + autotune at amount 0 (an exact delay) summed at the output:
    # the graph delays the dry path by the declared latency, so the sum is
    # twice the delayed input (null <= -90 dB, the fan-in bound)
    s, e = sessions(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("autotune", "at", {"amount": 0})
    s.add_node("gain", "g", {})
    s.add_node("output", "out", {"channels": 1})
    for a, b in (("in", "at"), ("at", "out"), ("in", "g"), ("g", "out")):
        s.connect(a, b)
    s.commit()
    x = tone(A3_SHARP, SR)
    y = e.process(SR, x.astype(np.float32).reshape(-1, 1), block=64)[:, 0].astype(np.float64)
    lat = s.live["at"].latency
    ref = 2 * delayed(x.astype(np.float32).astype(np.float64), lat)
    assert null_db(y, ref) < -90


# ---- chords pass, one note over the range is corrected (issue 12, defects 3 and 4) -----
# Measured as an outside tester would: each partial's frequency by a
# zero-padded FFT peak with a parabola (signals.partial_hz) in the output
# against the same in the input, the level by RMS. Before the fix A4 + D#5
# was read at 211 Hz (confidence 0.90) and came out 27-29 cents flat, an
# equal-tempered A major triad -3.5 cents, the 300/317/351 Hz cluster +18..+29.

CHORD_N = 16384  # samples measured, after the latency and 0.1 s of settling


def chord(freqs, n, harmonics):
    t = np.arange(n) / SR
    return sum(0.15 * np.sin(2 * np.pi * f * t) + (0.07 * np.sin(4 * np.pi * f * t) if harmonics
                                                   else 0.0) for f in freqs)


CHORDS = {
    "A4+D#5": [midi_hz(69), midi_hz(75)],
    "minor second A4+A#4": [midi_hz(69), midi_hz(70)],
    "minor third E4+G4": [midi_hz(64), midi_hz(67)],
    "fourth A3+D4": [midi_hz(57), midi_hz(62)],
    "A major (ET)": [midi_hz(69), midi_hz(73), midi_hz(76)],
    "D major (ET)": [midi_hz(62), midi_hz(66), midi_hz(69)],
    "C minor 7 (ET)": [midi_hz(60), midi_hz(63), midi_hz(67), midi_hz(70)],
    "cluster 300/317/351": [300.0, 317.0, 351.0],
    "mix": [midi_hz(48), midi_hz(55), midi_hz(64), midi_hz(71), midi_hz(74)],
}


@pytest.mark.parametrize("harmonics", [False, True])
@pytest.mark.parametrize("name", CHORDS)
def test_chords_pass_at_their_pitch_and_level(make, name, harmonics):
    freqs = CHORDS[name]
    s, e = make()
    lat = s.live["at"].latency
    n = SR // 10 + CHORD_N + lat
    x = chord(freqs, n, harmonics)
    y = signals.process(e, x)[:, 0]
    ys, xs = y[lat + SR // 10:], x[SR // 10:SR // 10 + CHORD_N]
    # the partials are 17 Hz apart at the closest: +-2.5 % search, 8x padding
    for f in freqs:
        fi = signals.partial_hz(xs, f, SR, rel=0.025, pad=8)
        fo = signals.partial_hz(ys, f, SR, rel=0.025, pad=8)
        assert abs(1200 * np.log2(fo / fi)) < 2, (name, f, 1200 * np.log2(fo / fi))
    assert abs(20 * np.log10(np.std(ys) / np.std(xs))) < 0.1
    assert s.readout("at", "correction") == [0.0]


def test_nearly_just_intervals_are_one_tone(make):
    # an octave (or an equal-tempered fifth, 2 cents from 3:2) is a periodic
    # wave with its fundamental: no detector tells it from one note, so it is
    # corrected as one; in tune, it moves by less than 2 cents
    for freqs in ([midi_hz(57), midi_hz(69)], [midi_hz(57), midi_hz(64)]):
        s, e = make()
        lat = s.live["at"].latency
        x = chord(freqs, SR // 10 + CHORD_N + lat, True)
        y = signals.process(e, x)[:, 0][lat + SR // 10:]
        for f in freqs:
            fi = signals.partial_hz(x[SR // 10:SR // 10 + CHORD_N], f, SR, rel=0.025, pad=8)
            assert abs(1200 * np.log2(signals.partial_hz(y, f, SR, rel=0.025, pad=8) / fi)) < 2


# one note, detuned, over 80 Hz .. 2 kHz: corrected to the nearest note (the
# fundamental partial within 5 cents of it) at its level (1.5 dB)
DETUNES = (35.0, -40.0, 20.0)
NOTE_CASES = [(m, dc) for m in (40, 45, 52, 57, 62, 69, 76, 83, 88, 95) for dc in DETUNES]


@pytest.mark.parametrize("kind,channels", [("sine", 1), ("saw", 1), ("flute", 1), ("sine", 2),
                                           ("flute", 2)])
def test_one_note_is_corrected_over_the_range(make, kind, channels):
    s, e = make(channels=channels)
    lat = s.live["at"].latency
    seg = SR // 10 + CHORD_N
    bad = []
    for m, dc in NOTE_CASES:  # E2 (82 Hz) .. B6 (1976 Hz)
        f_in = midi_hz(m) * 2 ** (dc / 1200)
        x = signals.harmonic_tone(f_in, seg + lat, SR, kind)
        xin = x.reshape(-1, 1) if channels == 1 else np.stack([x, 0.5 * x], 1)
        y = signals.process(e, xin)[lat + SR // 10:, 0]
        xs = x[SR // 10:SR // 10 + CHORD_N]
        cents = 1200 * np.log2(signals.partial_hz(y, midi_hz(m), SR) / midi_hz(m))
        db = 20 * np.log10(np.std(y) / np.std(xs))
        if abs(cents) > 5 or abs(db) > 1.5:
            bad.append((m, dc, round(cents, 2), round(db, 2)))
    assert not bad, f"{kind} ({channels} ch): (note, detune, cents off, dB) {bad}"
