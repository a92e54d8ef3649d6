"""multiband: Linkwitz-Riley 4th-order crossovers checked against scipy.signal.butter
(order 2, applied twice) and the Giannoulis, Massberg, Reiss static curve (JAES 2012,
eq. 4), both computed here in numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
import signals

SR = 48000
OFF = {f"b{k}ratio": 1 for k in range(1, 5)}  # processing off: every ratio 1:1


@pytest.fixture
def make(sessions):
    """make(rate=48000, ch=1, **params) -> (session, engine): in -> multiband -> out."""

    def build(rate=SR, ch=1, **params):
        sessions.rate = rate
        s, e = sessions(ch, ch)
        sessions.rate = SR
        s.add_node("input", "in", {"channels": ch})
        s.add_node("multiband", "m", {"channels": ch, **params})
        s.add_node("output", "out", {"channels": ch})
        s.connect("in", "m")
        s.connect("m", "out")
        s.commit()
        return s, e

    return build


def eq4(x, t, r, w):
    """Giannoulis eq. 4: static output level (dB) for input level x (dB)."""
    x = np.asarray(x, np.float64)
    y = np.where(2 * (x - t) < -w, x, t + (x - t) / r)
    if w > 0:
        k = 2 * np.abs(x - t) <= w
        y = np.where(k, x + (1 / r - 1) * (x - t + w / 2) ** 2 / (2 * w), y)
    return y


def db(x):
    return 20 * np.log10(np.maximum(np.abs(np.asarray(x)), 1e-30))


def lr4_bands(freqs, f, rate):
    """Complex responses at f of the bands of an LR4 cascade with all-pass
    compensation, from scipy's 2nd-order Butterworth designs: band k is
    HP(f1..fk-1)^2 LP(fk)^2 and the all-passes LP^2 + HP^2 of the crossovers
    above it."""

    def resp(kind, fc):
        b, a = ss.butter(2, fc, kind, fs=rate)
        return ss.freqz(b, a, worN=f, fs=rate)[1]

    lp = [resp("low", fc) ** 2 for fc in freqs]
    hp = [resp("high", fc) ** 2 for fc in freqs]
    ap = [lp[k] + hp[k] for k in range(len(freqs))]
    bands = []
    for k in range(len(freqs) + 1):
        h = np.ones_like(f, dtype=complex)
        for j in range(k):
            h = h * hp[j]
        if k < len(freqs):
            h = h * lp[k]
        for j in range(k + 1, len(freqs)):
            h = h * ap[j]
        bands.append(h)
    return bands


def impulse_response(e, n):
    x = np.zeros(n, np.float32)
    x[0] = 1.0
    return e.process(n, x, block=64)[:, 0].astype(np.float64)


@pytest.mark.parametrize("rate", [44100, 48000, 96000])
@pytest.mark.parametrize("bands", [3, 4])
@pytest.mark.parametrize("how", ["ratio1", "bypass"])
def test_bands_sum_flat_with_processing_off(make, rate, bands, how):
    off = OFF if how == "ratio1" else {f"b{k}bypass": 1 for k in range(1, 5)}
    s, e = make(rate, bands=bands, xover1=80, xover2=900, xover3=7000, **off)
    n = 1 << 16
    h = np.fft.rfft(impulse_response(e, n))
    f = np.fft.rfftfreq(n, 1 / rate)
    sel = (f >= 20) & (f <= 20000)
    err = np.max(np.abs(db(h[sel])))
    assert err < 0.1  # issue tolerance: flat within +-0.1 dB, 20 Hz - 20 kHz
    assert err < 1e-4  # reached: ~2e-6 dB (float32 between sections)


@pytest.mark.parametrize("rate", [44100, 48000, 96000])
def test_each_band_is_the_lr4_product_of_butterworth_sections(make, rate):
    freqs = [150.0, 1200.0, 5000.0]
    n = 1 << 15
    f = np.fft.rfftfreq(n, 1 / rate)
    want = lr4_bands(freqs, f, rate)
    for k in range(4):
        s, e = make(rate, xover1=freqs[0], xover2=freqs[1], xover3=freqs[2],
                    **OFF, **{f"b{k + 1}solo": 1})
        h = np.fft.rfft(impulse_response(e, n))
        # complex response (magnitude and phase) within 1e-5 of scipy's design (float32 path)
        assert np.max(np.abs(h - want[k])) < 1e-5, k
        # closed form: LR4 = a bilinear Butterworth pair, |LP4| = 1/(1+(W/Wc)^4) and
        # |HP4| = (W/Wc)^4/(1+(W/Wc)^4) with W = tan(pi f/fs) (all-passes: 1)
        r4 = [(np.tan(np.pi * f / rate) / np.tan(np.pi * fc / rate)) ** 4 for fc in freqs]
        mag = np.ones_like(f)
        for j in range(k):
            mag = mag * r4[j] / (1 + r4[j])
        if k < 3:
            mag = mag / (1 + r4[k])
        sel = (f >= 20) & (f <= 20000) & (mag > 1e-4)  # down to -80 dB
        assert np.max(np.abs(db(h[sel]) - db(mag[sel]))) < 1e-2  # dB; float32 noise at -80 dB


def test_three_bands_merge_the_top_two(make):
    freqs = [150.0, 1200.0, 5000.0]
    n = 1 << 15
    f = np.fft.rfftfreq(n, 1 / SR)
    want = lr4_bands(freqs, f, SR)
    s, e = make(bands=3, xover1=150, xover2=1200, xover3=5000, b3solo=1, **OFF)
    h = np.fft.rfft(impulse_response(e, n))
    # band 3 of 3 = everything above xover2: bands 3 + 4 of the 4-band tree
    assert np.max(np.abs(h - (want[2] + want[3]))) < 1e-5


def test_crossovers_are_kept_in_order(make):
    # xover2 below xover1 reads as xover1: band 2 is then empty-ish, the sum still flat
    s, e = make(xover1=2000, xover2=500, xover3=8000, **OFF)
    n = 1 << 15
    h = np.fft.rfft(impulse_response(e, n))
    assert np.max(np.abs(db(h[1:]))) < 1e-3
    s.set_param("m", "b1solo", 1)
    e.process(SR, np.zeros(SR, np.float32), block=64)
    h1 = np.fft.rfft(impulse_response(e, n))
    f = np.fft.rfftfreq(n, 1 / SR)
    want = lr4_bands([2000.0, 2000.0, 8000.0], f, SR)[0]
    assert np.max(np.abs(h1 - want)) < 1e-5


@pytest.mark.parametrize("t,r,w", [(-30, 4, 0), (-24, 2, 6), (-40, 10, 12)])
def test_tone_in_a_band_is_compressed_by_eq4(make, t, r, w):
    # RMS detection; a 3162 Hz tone in band 3 (1 kHz .. 10 kHz). The band sees the
    # tone through |H3|; the output is the all-pass sum with band 3 scaled by g:
    # y = x (AP + (g - 1) H3), all responses from scipy.
    freqs = [100.0, 1000.0, 10000.0]
    f0 = 3162.0
    s, e = make(xover1=100, xover2=1000, xover3=10000, detect=1, window=20,
                **{f"b{k}ratio": 1 for k in (1, 2, 4)}, b3threshold=t, b3ratio=r, b3knee=w,
                b3attack=20, b3release=100, b3makeup=3)
    bands = lr4_bands(freqs, np.array([f0]), SR)
    h3 = bands[2][0]
    ap = sum(b[0] for b in bands)
    n = SR
    tt = np.arange(n) / SR
    for peak_db in (-40.0, -30.0, -20.0, -6.0):
        a = 10 ** (peak_db / 20)
        x = (a * np.sin(2 * np.pi * f0 * tt)).astype(np.float32)
        y = e.process(n, x, block=64)[:, 0].astype(np.float64)
        tail = x[-SR // 4 :].astype(np.float64)
        got = db(np.sqrt(np.mean(y[-SR // 4 :] ** 2) / np.mean(tail**2)))
        lv = db(a * abs(h3)) - 10 * np.log10(2)  # band 3's RMS level
        g = 10 ** ((eq4(lv, t, r, w) - lv + 3) / 20)
        want = db(abs(ap + (g - 1) * h3))
        assert abs(got - want) < 0.1, peak_db  # issue tolerance: 0.1 dB
        gr = s.readout("m", "gr3")[0]
        assert gr == pytest.approx(eq4(lv, t, r, w) - lv, abs=0.1)
        # the other bands see the tone 20+ dB under their threshold (0 dB: ratio 1 anyway)
        for k in (1, 2, 4):
            assert s.readout("m", f"gr{k}")[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("t,r,w", [(-20, 4, 0), (-30, 2, 6), (-10, 10, 24)])
def test_static_curve_of_band_1_with_peak_detection(make, t, r, w):
    # DC is all band 1 (LP^2 = 1 and every all-pass = 1 at 0 Hz, the high-passes 0),
    # so held DC levels trace band 1's static curve exactly as for the compressor
    s, e = make(b1threshold=t, b1ratio=r, b1knee=w, b1attack=0.5, b1release=5,
                **{f"b{k}ratio": 1 for k in (2, 3, 4)})
    levels = np.arange(-40.0, 0.01, 2.0)
    hold = 24000  # 0.5 s per level: the 120 Hz LR4 low-pass settles to < 1e-6
    x = np.repeat(10 ** (levels / 20), hold).astype(np.float32)
    y = e.process(len(x), x, block=64)[:, 0]
    got = db(y[hold - 1 :: hold]) - levels
    want = eq4(levels, t, r, w) - levels
    assert np.max(np.abs(got - want)) < 0.1  # issue tolerance
    assert np.max(np.abs(got - want)) < 1e-3  # reached: ~1e-5 dB


@pytest.mark.parametrize("link", [0.0, 100.0])
def test_stereo_link_per_band(make, link):
    t, r = -20.0, 4.0
    s, e = make(ch=2, b1threshold=t, b1ratio=r, b1knee=0, b1attack=1, b1release=10, link=link,
                **{f"b{k}ratio": 1 for k in (2, 3, 4)})
    n = 24000
    lv = np.array([-4.0, -16.0])
    x = np.tile(10 ** (lv / 20), (n, 1)).astype(np.float32)
    y = e.process(n, x, block=64)[-1]
    det = lv + (link / 100) * (lv.max() - lv)
    want = eq4(det, t, r, 0) - det
    assert np.max(np.abs(db(y) - lv - want)) < 1e-3
    assert np.max(np.abs(np.array(s.readout("m", "gr1")) - want)) < 1e-3


def test_solo_bypass_mix_and_output(make):
    n = 1 << 15
    f = np.fft.rfftfreq(n, 1 / SR)
    freqs = [120.0, 1000.0, 6000.0]
    want = lr4_bands(freqs, f, SR)
    s, e = make(**OFF, b2makeup=6, b4makeup=-6, output=-3)
    h = np.fft.rfft(impulse_response(e, n))
    g = 10 ** (np.array([0, 6, 0, -6]) / 20)
    exp = sum(gk * b for gk, b in zip(g, want, strict=True)) * 10 ** (-3 / 20)
    assert np.max(np.abs(h - exp)) < 1e-5
    s.set_param("m", "b2bypass", 1)  # band 2 back to unity
    s.set_param("m", "b2solo", 1)
    s.set_param("m", "b4solo", 1)
    e.process(SR, np.zeros(SR, np.float32), block=64)
    h = np.fft.rfft(impulse_response(e, n))
    exp = (want[1] + 10 ** (-6 / 20) * want[3]) * 10 ** (-3 / 20)
    assert np.max(np.abs(h - exp)) < 1e-5
    s.set_param("m", "b2solo", 0)
    s.set_param("m", "b4solo", 0)
    s.set_param("m", "mix", 50)
    e.process(SR, np.zeros(SR, np.float32), block=64)
    h = np.fft.rfft(impulse_response(e, n))
    g = np.array([1, 1, 1, 0.5 + 0.5 * 10 ** (-6 / 20)])
    exp = sum(gk * b for gk, b in zip(g, want, strict=True)) * 10 ** (-3 / 20)
    assert np.max(np.abs(h - exp)) < 1e-5


def test_bad_input_never_gives_nan(make):
    s, e = make(ch=2, detect=0, b1makeup=24, b2makeup=24, b3makeup=24, b4makeup=24)
    n = 4800
    sigs = signals.bad_signals(n, SR)
    for a in sigs:
        for b in sigs:
            y = e.process(n, np.stack([a, b], 1), block=64)
            assert np.all(np.isfinite(y))
    assert e.stats().nan_scrubbed == 0
    for d in (0, 1):  # RMS detection too
        s.set_param("m", "detect", d)
        for a in sigs:
            e.process(n, np.stack([a, a], 1), block=64)
    assert e.stats().nan_scrubbed == 0
    # silence decays to exact zero, and a clean signal comes back normally afterwards
    y = e.process(4 * SR, np.zeros((4 * SR, 2), np.float32), block=64)
    assert np.all(y[-SR:] == 0.0)
    for k in range(1, 5):
        s.set_param("m", f"b{k}makeup", 0)
        s.set_param("m", f"b{k}ratio", 1)
    e.process(SR, np.zeros((SR, 2), np.float32), block=64)
    h = np.fft.rfft(impulse_response_stereo(e, 1 << 15))
    assert np.max(np.abs(db(h[1:]))) < 1e-3


def impulse_response_stereo(e, n):
    x = np.zeros((n, 2), np.float32)
    x[0] = 1.0
    return e.process(n, x, block=64)[:, 0].astype(np.float64)


def _move(s, e, x, param, a, b, pre=4800, post=4800):
    """Run x, moving `param` from a to b in 10 steps over 10 ms after `pre` samples."""
    s.set_param("m", param, a)
    out = [e.process(pre, x[:pre], block=64)]
    pos = pre
    for k in range(1, 11):
        s.set_param("m", param, a + (b - a) * k / 10)
        out.append(e.process(48, x[pos : pos + 48], block=64))
        pos += 48
    out.append(e.process(post, x[pos : pos + post], block=64))
    return np.concatenate(out)[:, 0].astype(np.float64)


@pytest.mark.parametrize("f0", [100.0, 1000.0])
@pytest.mark.parametrize(
    "param,a,b,level",
    [("xover1", 20, 20000, -6), ("xover1", 20000, 20, -6), ("xover2", 20, 20000, -6),
     ("xover3", 20000, 20, -6), ("b1threshold", 0, -60, -6), ("b2threshold", -60, 0, -6),
     ("b1ratio", 1, 20, -6), ("b2makeup", -24, 24, -30), ("bands", 3, 4, -6),
     ("bands", 4, 3, -6), ("b2solo", 0, 1, -6), ("b3bypass", 0, 1, -6), ("mix", 0, 100, -6),
     ("output", -24, 24, -30)],
)
def test_no_zipper_when_moving_end_to_end_in_10ms(make, f0, param, a, b, level):
    s, e = make(**{f"b{k}threshold": -30 for k in range(1, 5)})
    n = 4800 + 480 + 4800
    amp = 10 ** (level / 20)
    x = (amp * np.sin(2 * np.pi * f0 * np.arange(n) / SR)).astype(np.float32)
    y = _move(s, e, x, param, a, b)
    gmax = np.max(np.abs(y)) / amp
    ref = np.max(np.abs(np.diff(x.astype(np.float64)))) * gmax
    # a smooth move adds x*dg (gains) or a brief phase glide (crossovers) per sample;
    # a zipper (an unsmoothed jump of the gain or of the filter coefficients) adds a
    # step comparable to the signal itself. Reached: <= 1.0 x ref, 1.4-1.7 for a
    # +-24 dB makeup/output sweep (the gain's own slope)
    assert np.max(np.abs(np.diff(y))) < 2.0 * ref


def test_stereo_lanes_match_mono(make):
    # the two channels run in the lanes of one vector: unlinked, each channel must be
    # what a mono node makes of it (same code, so to the last bit)
    rng = np.random.default_rng(3)
    n = SR // 2
    x = (rng.standard_normal((n, 2)) * [0.3, 0.05]).astype(np.float32)
    settings = dict(link=0, b1threshold=-30, b2threshold=-24, b3threshold=-30, b4threshold=-40)
    s2, e2 = make(ch=2, **settings)
    y2 = e2.process(n, x, block=64)
    for c in range(2):
        s1, e1 = make(ch=1, **settings)
        y1 = e1.process(n, np.ascontiguousarray(x[:, c]), block=64)[:, 0]
        assert np.array_equal(y1, y2[:, c])


def test_live_moves_end_on_the_static_design(make):
    # crossovers glided and `bands` switched live: once settled, the response is the
    # static design's (the glide and the steady paths share their filter states)
    freqs = [300.0, 2500.0, 9000.0]
    n = 1 << 15
    f = np.fft.rfftfreq(n, 1 / SR)
    want = lr4_bands(freqs, f, SR)
    s, e = make(bands=3, **OFF, b2makeup=6)
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    for k, fc in enumerate(freqs, 1):
        s.set_param("m", f"xover{k}", fc)
        e.process(SR // 10, x[: SR // 10], block=64)  # mid-ramp with signal
    s.set_param("m", "bands", 4)
    e.process(SR, x, block=64)
    e.process(SR, np.zeros(SR, np.float32), block=64)  # let the tails die
    h = np.fft.rfft(impulse_response(e, n))
    g = 10 ** (np.array([0, 6, 0, 0]) / 20)
    exp = sum(gk * b for gk, b in zip(g, want, strict=True))
    assert np.max(np.abs(h - exp)) < 1e-5
