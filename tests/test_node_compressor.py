"""compressor: checked against Giannoulis, Massberg, Reiss, "Digital Dynamic Range
Compressor Design - A Tutorial and Analysis" (JAES 2012), computed here in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import signals

SR = 48000


@pytest.fixture
def make(sessions):
    """make(hw_in, hw_out) -> (session, engine); everything is freed afterwards."""
    return lambda hw_in=1, hw_out=1: sessions(hw_in, hw_out)


def eq4(x, t, r, w):
    """Giannoulis eq. 4: static output level (dB) for input level x (dB)."""
    x = np.asarray(x, np.float64)
    y = np.where(2 * (x - t) < -w, x, t + (x - t) / r)
    if w > 0:
        k = 2 * np.abs(x - t) <= w
        y = np.where(k, x + (1 / r - 1) * (x - t + w / 2) ** 2 / (2 * w), y)
    return y


def db(x):
    return 20 * np.log10(np.maximum(np.abs(np.asarray(x, np.float64)), 1e-30))


def comp(make, ch=1, key=False, **params):
    """in -> compressor -> out (and hw inputs ch.. into the key port when key)."""
    s, e = make(2 * ch if key else ch, ch)
    s.add_node("input", "in", {"channels": ch})
    s.add_node("compressor", "c", {"channels": ch, **params})
    s.add_node("output", "out", {"channels": ch})
    s.connect("in", "c")
    s.connect("c", "out")
    if key:
        s.add_node("input", "k", {"channels": ch, "first": ch + 1})
        s.connect("k", "c:key")
    s.commit()
    return s, e


def steps(levels_db, hold):
    """DC held at each level for `hold` samples (slow steps)."""
    return np.repeat(10 ** (np.asarray(levels_db) / 20), hold).astype(np.float32)


@pytest.mark.parametrize(
    "t,r,w", [(-20, 4, 0), (-20, 4, 12), (-30, 2, 6), (-10, 10, 24), (-40, 50, 3)]
)
@pytest.mark.parametrize("direction", [1, -1])
def test_static_curve_matches_eq4_including_knee(make, t, r, w, direction):
    s, e = comp(make, threshold=t, ratio=r, knee=w, attack=0.5, release=5)
    levels = np.arange(-60.0, 0.01, 0.5)[::direction]
    # 100 ms per level: 20 release (5 ms) and 200 attack (0.5 ms) time constants,
    # what is left of a 0.5 dB step is 0.5 * exp(-20) ~ 1e-9 dB
    hold = 4800
    x = steps(levels, hold)
    y = e.process(len(x), x, block=64)[:, 0]
    got = db(y[hold - 1 :: hold]) - levels
    want = eq4(levels, t, r, w) - levels
    assert np.max(np.abs(got - want)) < 0.1  # issue tolerance: 0.1 dB incl. the knee
    assert np.max(np.abs(got - want)) < 1e-4  # reached here: 3e-6 dB (fast log/exp, float32)
    assert s.readout("c", "gr")[0] == pytest.approx(want[-1], abs=1e-3)  # last block


def test_static_curve_rms_detection_on_a_sine(make):
    # RMS detection reads a sine's true RMS (peak - 3.01 dB)
    t, r, w = -24.0, 3.0, 6.0
    s, e = comp(make, threshold=t, ratio=r, knee=w, detect=1, window=20, attack=50, release=200)
    n = SR
    tt = np.arange(n) / SR
    for peak_db in (-30.0, -24.0, -20.0, -12.0, -3.0):
        a = 10 ** (peak_db / 20)
        x = (a * np.sin(2 * np.pi * 1000 * tt)).astype(np.float32)
        y = e.process(n, x, block=64)[:, 0].astype(np.float64)
        tail = x[-SR // 4 :].astype(np.float64)
        g = db(np.sqrt(np.mean(y[-SR // 4 :] ** 2) / np.mean(tail**2)))
        lv = peak_db - 10 * np.log10(2)
        # 0.1 dB: issue tolerance (detector ripple of a 20 ms mean of sin^2 is ~0.02 dB)
        assert abs(g - (eq4(lv, t, r, w) - lv)) < 0.1


def _first_reach(gdb, frac):
    """First sample where the gain change reaches frac of its final value."""
    final = gdb[-1]
    return int(np.argmax(np.abs(gdb) >= frac * abs(final)))


@pytest.mark.parametrize("attack,release", [(1.0, 50.0), (10.0, 100.0), (30.0, 400.0)])
def test_step_response_reaches_63_percent_at_tau(make, attack, release):
    t, r = -30.0, 4.0
    s, e = comp(make, threshold=t, ratio=r, knee=0, attack=attack, release=release)
    quiet, loud = -40.0, -10.0
    n_a = int(10 * attack * SR / 1000) + 64
    n_r = int(10 * release * SR / 1000) + 64
    e.process(4800, steps([quiet], 4800), block=64)
    x = steps([loud], n_a)
    ga = db(e.process(n_a, x, block=64)[:, 0]) - loud  # gain, dB: 0 -> -22.5
    assert ga[-1] == pytest.approx(eq4(loud, t, r, 0) - loud, abs=1e-3)
    x = steps([quiet], n_r)
    gr = db(e.process(n_r, x, block=64)[:, 0]) - quiet  # gain after the step down
    gr = gr - gr[-1]  # change from the first sample's reduction to 0
    # attack: 63.2% (1 - 1/e) of the final change at tau = attack ms, within 5%
    tau_a = attack * SR / 1000
    assert abs((_first_reach(ga, 1 - np.exp(-1)) + 1) - tau_a) <= 0.05 * tau_a
    # release: the reduction falls to 36.8% (a 63.2% change) at tau = release ms, within 5%
    tau_r = release * SR / 1000
    rel = gr / gr[0]
    k = int(np.argmax(rel <= np.exp(-1)))
    assert abs(k - tau_r) <= 0.05 * tau_r


def test_sidechain_key_drives_the_gain(make):
    t, r = -30.0, 4.0
    s, e = comp(make, key=True, threshold=t, ratio=r, knee=0, attack=1, release=10)
    n = SR // 2
    main = np.full(n, 10 ** (-40 / 20), np.float32)  # below threshold by itself
    key = np.full(n, 10 ** (-10 / 20), np.float32)  # 20 dB over
    x = np.stack([main, key], axis=1)
    y = e.process(n, x, block=64)[:, 0]
    assert db(y[-1]) + 40 == pytest.approx(0.0, abs=1e-4)  # sidechain off: key ignored
    s.set_param("c", "sidechain", 1)
    y = e.process(n, x, block=64)[:, 0]
    want = eq4(-10, t, r, 0) + 10  # the key's reduction, -15 dB
    assert db(y[-1]) + 40 == pytest.approx(want, abs=1e-3)
    # key high-pass: a 50 Hz key, 12 dB/oct Butterworth at 1 kHz leaves |H| = (50/1000)^2
    tt = np.arange(n) / SR
    x[:, 1] = (10 ** (-10 / 20) * np.sin(2 * np.pi * 50 * tt)).astype(np.float32)
    y = e.process(n, x, block=64)[:, 0]
    assert db(y[-1]) + 40 < -10  # unfiltered: the key's peaks compress hard
    s.set_param("c", "keyhp", 1000)
    s.set_param("c", "keyhpon", 1)
    y = e.process(n, x, block=64)[:, 0]
    assert db(y[-1]) + 40 == pytest.approx(0.0, abs=1e-3)  # key now ~ -62 dB: no reduction


@pytest.mark.parametrize("link", [0.0, 50.0, 100.0])
def test_stereo_link(make, link):
    t, r, w = -20.0, 4.0, 0.0
    s, e = comp(make, ch=2, threshold=t, ratio=r, knee=w, link=link, attack=1, release=10)
    n = 9600
    lv = np.array([-4.0, -16.0])  # left 16 dB over, right 4 dB over
    x = np.tile(10 ** (lv / 20), (n, 1)).astype(np.float32)
    y = e.process(n, x, block=64)[-1]
    # link k: each channel's detector level moves k of the way to the loudest channel's
    k = link / 100
    det = lv + k * (lv.max() - lv)
    want = eq4(det, t, r, w) - det
    assert np.max(np.abs(db(y) - lv - want)) < 1e-3
    gr = s.readout("c", "gr")
    assert np.max(np.abs(np.array(gr) - want)) < 1e-3


@pytest.mark.parametrize("mix", [0.0, 30.0, 50.0, 100.0])
def test_dry_wet_mix(make, mix):
    t, r = -20.0, 4.0
    s, e = comp(make, threshold=t, ratio=r, knee=0, makeup=6, mix=mix, attack=1, release=10)
    n = 9600
    x = np.full(n, 10 ** (-8 / 20), np.float32)
    y = e.process(n, x, block=64)[-1, 0]
    g = 10 ** ((eq4(-8, t, r, 0) + 8 + 6) / 20)  # wet gain incl. makeup
    m = mix / 100
    assert y / x[0] == pytest.approx((1 - m) + m * g, rel=1e-4)


def test_auto_makeup_brings_0dbfs_back_to_0dbfs(make):
    t, r, w = -24.0, 3.0, 6.0
    s, e = comp(make, threshold=t, ratio=r, knee=w, auto=1, attack=1, release=10)
    y = e.process(9600, np.ones(9600, np.float32), block=64)[-1, 0]
    assert db(y) == pytest.approx(0.0, abs=1e-3)
    y = e.process(9600, np.full(9600, 0.1, np.float32), block=64)[-1, 0]
    assert db(y) == pytest.approx(eq4(-20, t, r, w) - eq4(0, t, r, w), abs=1e-3)


@pytest.mark.parametrize("detect", [0, 1])
def test_bad_input_never_gives_nan(make, detect):
    s, e = comp(make, key=True, detect=detect, makeup=48, keyhpon=1, sidechain=1)
    n = 4800
    sigs = signals.bad_signals(n, SR)
    for a in sigs:
        for b in sigs:
            e.process(n, np.stack([a, b], 1), block=64)
    assert e.stats().nan_scrubbed == 0  # the safety stage never had to scrub
    # and it recovers: a clean signal is compressed normally afterwards
    s.set_param("c", "sidechain", 0)
    s.set_param("c", "makeup", 0)
    s.set_param("c", "keyhpon", 0)
    x = np.full(SR, 10 ** (-6 / 20), np.float32)
    y = e.process(SR, np.stack([x, x], 1), block=64)[-1, 0]
    assert db(y) + 6 == pytest.approx(eq4(-6, -18, 4, 6) + 6, abs=1e-3)


def _move(s, e, x, param, a, b, pre=4800, post=4800):
    """Run x, moving `param` from a to b in 10 steps over 10 ms after `pre` samples."""
    s.set_param("c", param, a)
    out = [e.process(pre, x[:pre], block=64)]
    pos = pre
    for k in range(1, 11):
        s.set_param("c", param, a + (b - a) * k / 10)
        out.append(e.process(48, x[pos : pos + 48], block=64))
        pos += 48
    out.append(e.process(post, x[pos : pos + post], block=64))
    return np.concatenate(out)[:, 0].astype(np.float64)


@pytest.mark.parametrize(
    "param,a,b,level",
    [("threshold", 0, -60, -6), ("threshold", -60, 0, -6), ("ratio", 1, 50, -6),
     ("ratio", 50, 1, -6), ("makeup", -24, 24, -30), ("makeup", 24, -24, -30),
     ("knee", 0, 24, -18), ("mix", 0, 100, -6)],
)
def test_no_zipper_when_moving_end_to_end_in_10ms(make, param, a, b, level):
    s, e = comp(make, threshold=-30, ratio=8)
    n = 4800 + 480 + 4800
    amp = 10 ** (level / 20)
    x = (amp * np.sin(2 * np.pi * 100 * np.arange(n) / SR)).astype(np.float32)
    y = _move(s, e, x, param, a, b)
    # the unmodulated signal's largest step, scaled to the largest gain reached
    gmax = np.max(np.abs(y)) / amp
    ref = np.max(np.abs(np.diff(x.astype(np.float64)))) * gmax
    # a gain that moves smoothly adds x*dg per sample; a zipper (an unsmoothed
    # jump of several dB) would add a step comparable to the signal itself
    assert np.max(np.abs(np.diff(y))) < 1.5 * ref


def test_long_release_settles_exactly_on_the_static_curve(make):
    # a 2 s release: after 30 time constants the reduction must sit on eq. 4 to
    # 1e-3 dB. (A one-pole written y = (1-a) v + a y stalls up to ulp/(1-a) away,
    # about 0.05 dB here, so this can fail.)
    t, r = -30.0, 4.0
    s, e = comp(make, threshold=t, ratio=r, knee=0, attack=1, release=2000)
    e.process(48000, steps([-6.0], 48000), block=64)
    n = 30 * 2 * SR
    y = e.process(n, steps([-20.0], n), block=64)[-1, 0]
    assert db(y) + 20 == pytest.approx(eq4(-20, t, r, 0) + 20, abs=1e-3)
