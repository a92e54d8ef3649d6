"""limiter: true peak after the node against independent measurements (the
BS.1770-4 Annex 2 FIR by scipy upfirdn; 8x resample_poly with a long Kaiser
FIR and ideal FFT interpolation, tests/truepeak_ref.py), transparency and
latency."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal
from truepeak_ref import KINDS, stress_signal, tp_fft_db, tp_poly8_db

from mixgraph.server._core import lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

from ebu_signals import TP_CASES

SR = 48000

# ITU-R BS.1770-4 Annex 2: the 4 phases of 12 taps; prototype h[4j + k] = phase k, tap j.
_PH0 = [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000,
        -0.0594482421875, 0.1373291015625, 0.9721679687500, -0.1022949218750,
        0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500]
_PH1 = [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250,
        -0.1665039062500, 0.4650878906250, 0.7797851562500, -0.2003173828125,
        0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375]
BS1770_FIR = np.array([_PH0, _PH1, _PH1[::-1], _PH0[::-1]]).T.reshape(-1)


def true_peak_db(x):
    """dBTP of x (n,) or (n, ch): 4x zero-stuffing + the Annex FIR, max |.|."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    tp = max(np.max(np.abs(signal.upfirdn(BS1770_FIR, x[:, c], up=4))) for c in range(x.shape[1]))
    return 20 * math.log10(max(tp, 1e-30))


def test_reference_measurement_reads_a_sine():
    # sanity of the reference itself: a 997 Hz sine at 0.5 reads -6.02 dBTP within 0.05 dB
    x = 0.5 * np.sin(2 * np.pi * 997 / SR * np.arange(SR // 10) + 0.3)
    x *= signal.windows.tukey(len(x), 0.5)  # no abrupt ends: they ring in any interpolator
    assert abs(true_peak_db(x) - 20 * math.log10(0.5)) < 0.05


@pytest.fixture
def limiter():
    made = []

    def _make(channels=2, **params):
        e = Engine(SR, channels, channels)
        e.set_ceiling_db(40.0)  # keep the engine's safety clip out of the measurement
        s = Session(e)
        made.append((s, e))
        s.add_node("input", "in", {"channels": channels})
        s.add_node("limiter", "lim", {"channels": channels, **params})
        s.add_node("output", "out", {"channels": channels})
        s.connect("in", "lim")
        s.connect("lim", "out")
        s.commit()
        lat = lib.mg_node_latency(s.live["lim"].ptr)

        def run(x, block=64):
            x = np.ascontiguousarray(x, np.float32).reshape(len(x), channels)
            return e.process(len(x), x, block=block).astype(np.float64)

        return s, run, lat

    yield _make
    for s, e in made:
        s.close()
        e.free()


# TP_CASES: EBU Tech 3341 true-peak tones (tests/ebu_signals.py)


def tp_signal(case, seconds=0.25, gain_db=0.0):
    frac, ph, level = TP_CASES[case]
    n = int(seconds * SR)
    x = 10 ** ((level + gain_db) / 20) * np.sin(2 * np.pi * frac * np.arange(n) + np.radians(ph))
    return np.repeat(x[:, None], 2, axis=1)


@pytest.mark.parametrize("case", sorted(TP_CASES))
@pytest.mark.parametrize("ceiling,gain_db", [(-1.0, 0.0), (-9.0, 0.0), (-1.0, 12.0)])
def test_true_peak_at_most_ceiling_tech3341(limiter, case, ceiling, gain_db):
    s, run, lat = limiter(2, ceiling=ceiling)
    x = tp_signal(case, gain_db=gain_db)
    x = np.concatenate([x, np.zeros((lat + 64, 2))])
    y = run(x)
    # ceiling + 0.1 dB, measured by the independent Annex 2 implementation above
    assert true_peak_db(y) <= ceiling + 0.1, case


@pytest.mark.parametrize("lookahead,release,link", [
    (5.0, 60.0, 100.0), (0.1, 60.0, 100.0), (1.0, 5.0, 0.0), (5.0, 500.0, 50.0),
])
def test_true_peak_of_hot_noise(limiter, lookahead, release, link):
    rng = np.random.default_rng(11)
    # white Gaussian noise 12 dB over full scale RMS-wise (peaks ~ +25 dBFS), plus bursts
    x = rng.standard_normal((SR, 2)) * 10 ** (12 / 20)
    x[SR // 2:] *= np.where(np.arange(SR // 2) % 4800 < 2400, 1.0, 0.05)[:, None]
    s, run, lat = limiter(2, ceiling=-1.0, lookahead=lookahead, release=release, link=link)
    y = run(x)
    assert true_peak_db(y) <= -1.0 + 0.1
    # it limits, it does not mute: the loud sections come out near the ceiling
    assert 20 * np.log10(np.max(np.abs(y))) > -3.0


def test_band_limited_hot_noise_with_inter_sample_peaks(limiter):
    # noise low-passed near Nyquist has inter-sample peaks well over its sample peaks
    rng = np.random.default_rng(5)
    b, a = signal.butter(8, 0.9)
    x = signal.lfilter(b, a, rng.standard_normal((SR // 2, 1)), axis=0)
    x *= 4.0 / np.max(np.abs(x))  # +12 dBFS sample peak
    s, run, lat = limiter(1, ceiling=-0.5)
    y = run(x)
    assert true_peak_db(y) <= -0.5 + 0.1


def measured_delay(x, y):
    c = signal.correlate(y, x, mode="full", method="fft")
    return int(np.argmax(c)) - (len(x) - 1)


@pytest.mark.parametrize("channels", [1, 2])
def test_transparent_below_ceiling_and_latency(limiter, channels):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((SR, channels))
    x *= 10 ** (-10 / 20) / 10 ** (true_peak_db(x) / 20)  # true peak -10 dBTP
    s, run, lat = limiter(channels, ceiling=-1.0)
    assert lat == round(0.005 * SR) + 64  # 5 ms look-ahead + the detector's delay and reach
    y = run(x)
    for c in range(channels):
        assert measured_delay(x[:, c], y[:, c]) == lat
    ref = np.zeros_like(x)
    ref[lat:] = x[:-lat].astype(np.float32)
    err = y - ref
    null = 10 * np.log10(np.sum(err ** 2) / np.sum(ref ** 2) + 1e-300)
    # null <= -90 dB (the gain is exactly 1: the null is exact)
    assert null <= -90
    assert s.readout("lim", "gr") == [0.0] * channels


def test_transparent_again_after_limiting(limiter):
    rng = np.random.default_rng(4)
    s, run, lat = limiter(2, ceiling=-1.0, release=20.0)
    run(rng.standard_normal((SR // 4, 2)) * 4)  # heavy limiting
    x = rng.standard_normal((SR, 2)) * 0.05
    y = run(x)
    # after the release has settled (20 ms time constant: 0.5 s is 25 of them)
    tail = slice(SR // 2, None)
    ref = np.zeros_like(x)
    ref[lat:] = x[:-lat].astype(np.float32)
    err = (y - ref)[tail]
    assert 10 * np.log10(np.sum(err ** 2) / np.sum(ref[tail] ** 2) + 1e-300) <= -90


def test_lookahead_change_keeps_latency_and_ceiling(limiter):
    rng = np.random.default_rng(8)
    s, run, lat = limiter(2, ceiling=-2.0)
    x = rng.standard_normal((SR // 2, 2)) * 3
    y1 = run(x[: SR // 4])
    s.set_param("lim", "lookahead", 0.1)
    y2 = run(x[SR // 4:])
    assert lib.mg_node_latency(s.live["lim"].ptr) == lat
    assert true_peak_db(np.concatenate([y1, y2])) <= -2.0 + 0.1


def test_gain_reduction_readout(limiter):
    s, run, lat = limiter(1, ceiling=-6.0)
    x = 0.5 * np.sin(2 * np.pi * 997 / SR * np.arange(SR // 2))  # -6.02 dBTP ... at 0 dBTP:
    run(x * 2)
    # a 0 dBTP sine into a -6 dBTP ceiling: 6 dB of reduction, within 0.2 dB
    assert abs(s.readout("lim", "gr")[0] + 6.0) < 0.2


def test_link_holds_the_stereo_image(limiter):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((SR // 2, 2))
    x[:, 1] *= 0.1  # the right channel never needs limiting by itself
    x[:, 0] *= 4
    s, run, lat = limiter(2, ceiling=-1.0, link=100)
    y = run(x)
    ratio = y[lat:, 1] / np.where(x[:-lat, 1] == 0, 1, x[:-lat, 1].astype(np.float32))
    gl = y[lat:, 0] / np.where(x[:-lat, 0] == 0, 1, x[:-lat, 0].astype(np.float32))
    # 100 % link: both channels get the same gain (float32 rounding)
    assert np.max(np.abs(ratio - gl)) < 1e-5
    s2, run2, _ = limiter(2, ceiling=-1.0, link=0)
    y2 = run2(x)
    # unlinked: the quiet channel passes untouched
    assert np.max(np.abs(y2[lat:, 1] - x[:-lat, 1].astype(np.float32))) == 0.0


@pytest.mark.parametrize("kind", ["nan", "inf", "dc", "square", "silence"])
def test_bad_input_never_gives_nan(limiter, kind):
    s, run, lat = limiter(2)
    x = np.zeros((SR // 4, 2))
    if kind == "nan":
        x[::97] = np.nan
    elif kind == "inf":
        x[::89, 0] = np.inf
        x[::83, 1] = -np.inf
    elif kind == "dc":
        x[:] = 3.0
    elif kind == "square":
        x[:] = np.sign(np.sin(2 * np.pi * 1000 / SR * np.arange(len(x))))[:, None]
    y = run(np.concatenate([x, np.zeros((lat + 64, 2))]))  # the limiter sees the end too
    assert np.all(np.isfinite(y))
    if kind in ("dc", "square"):
        assert true_peak_db(y) <= -1.0 + 0.1
    if kind == "silence":
        assert not np.any(y)


@pytest.mark.parametrize("param,lo,hi", [
    ("ceiling", 0.0, -24.0), ("link", 100.0, 0.0), ("release", 1.0, 2000.0),
    ("lookahead", 5.0, 0.1),
])
def test_parameter_sweeps_do_not_zip(limiter, param, lo, hi):
    # moving a parameter end to end within 10 ms: the largest sample-to-sample
    # jump stays within 5 % of the largest of the limited signal with the
    # parameter held at either end
    x = np.sin(2 * np.pi * 200 / SR * np.arange(SR // 4))[:, None].repeat(2, 1) * 2
    x[:, 1] *= 0.5
    base = 0.0
    for v in (lo, hi):
        _, run, _ = limiter(2, **{param: v})
        base = max(base, np.max(np.abs(np.diff(run(x)[SR // 8:], axis=0))))
    s, run, lat = limiter(2, **{param: lo})
    y = [run(x[: SR // 8])]
    for k in range(4):  # back and forth
        s.set_param("lim", param, hi if k % 2 == 0 else lo)
        y.append(run(x[: SR // 8]))
    y = np.concatenate(y)
    assert np.max(np.abs(np.diff(y[SR // 8:], axis=0))) <= base * 1.05


@pytest.mark.parametrize("sr", [44100, 96000])
def test_other_rates_latency_and_ceiling(sr):
    e = Engine(sr, 2, 2)
    e.set_ceiling_db(40.0)
    s = Session(e)
    try:
        s.add_node("input", "in", {"channels": 2})
        s.add_node("limiter", "lim", {"ceiling": -1.0, "lookahead": 2.0, "release": 1.0})
        s.add_node("output", "out", {"channels": 2})
        s.connect("in", "lim")
        s.connect("lim", "out")
        s.commit()
        lat = lib.mg_node_latency(s.live["lim"].ptr)
        assert lat == int(0.005 * sr + 0.5) + 64  # 5 ms rounded half up, + 64
        x = np.random.default_rng(6).standard_normal((sr // 2, 2)) * 4
        y = e.process(len(x), x.astype(np.float32), block=64).astype(np.float64)
        assert true_peak_db(y) <= -1.0 + 0.1
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("lookahead_ms", [0.5, 2.0, 5.0])
def test_lookahead_is_the_attack_before_a_peak(limiter, lookahead_ms):
    # DC at 0.25 with one 2.0 spike: the gain starts to fall `lookahead` before
    # the spike leaves the delay line (plus the detector's 32-sample reach and
    # the spike's own ringing in the 64-tap interpolator, -3..+6 samples) and
    # is back to exactly 1 afterwards
    s, run, lat = limiter(1, ceiling=-1.0, lookahead=lookahead_ms, release=5.0)
    n, s0 = SR // 4, SR // 8
    x = np.full(n, 0.25)
    x[s0] = 2.0
    y = run(x)[:, 0]
    g = y[lat:] / x[:-lat].astype(np.float32)
    a = int(lookahead_ms * SR / 1000 + 0.5)
    first = int(np.argmax(g < 1.0))
    assert s0 - (a + 32 + 10) <= first <= s0 - (a + 32 + 1)
    assert g[-1] == 1.0


# The whole space: every signal class at the extremes of every parameter. The
# output's true peak, as two independent >= 8x measurements see it (8x
# resample_poly with a long Kaiser FIR; ideal interpolation by FFT, 16x), is
# at most the ceiling + 0.1 dB. Classes: noise band-limited to 16 and 20 kHz,
# full-band noise, full-band bursts, a log sweep to 23.9 kHz, clipped squares,
# sines near fs/4 (11.9, 12 kHz), at 19 and 20 kHz (where 8x detection would
# miss 0.1 dB between its points) and near fs/2 (22, 23 kHz), a different phase
# per channel; all 6 to 12 dB over full scale (heavy limiting).
@pytest.mark.parametrize("ceiling", [-0.1, -1.0, -6.0])
@pytest.mark.parametrize("lookahead,release", [(0.1, 1.0), (0.1, 2000.0), (5.0, 1.0),
                                               (5.0, 2000.0)])
@pytest.mark.parametrize("kind", KINDS)
def test_true_peak_held_as_an_8x_measurement_sees_it(limiter, kind, lookahead, release,
                                                    ceiling):
    x = stress_signal(kind)
    s, run, lat = limiter(2, ceiling=ceiling, lookahead=lookahead, release=release)
    y = run(np.concatenate([x, np.zeros((lat + 64, 2))]))
    assert tp_poly8_db(y) <= ceiling + 0.1, kind
    assert tp_fft_db(y) <= ceiling + 0.1, kind
    # it limits, it does not mute: the loud signal comes out within 1 dB of the
    # ceiling; tones above 21 kHz take the near-Nyquist margin (22 kHz: 3.5 dB
    # under, 23 kHz: 5.9 dB under)
    near_nyquist = kind in ("sine@22000", "sine@23000")
    assert tp_fft_db(y) >= ceiling - (6.5 if near_nyquist else 1.0), kind


def test_true_peak_held_unlinked_and_at_other_rates():
    """Unlinked channels, and 44.1 / 96 kHz, on full-band noise and bursts."""
    for sr, link in ((48000, 0.0), (44100, 100.0), (96000, 100.0)):
        e = Engine(sr, 2, 2)
        e.set_ceiling_db(40.0)
        s = Session(e)
        try:
            s.add_node("input", "in", {"channels": 2})
            s.add_node("limiter", "lim", {"ceiling": -1.0, "lookahead": 0.1, "release": 1.0,
                                          "link": link})
            s.add_node("output", "out", {"channels": 2})
            s.connect("in", "lim")
            s.connect("lim", "out")
            s.commit()
            lat = lib.mg_node_latency(s.live["lim"].ptr)
            for kind in ("noise", "bursts"):
                x = np.concatenate([stress_signal(kind, seed=3), np.zeros((lat + 64, 2))])
                y = e.process(len(x), x.astype(np.float32), block=64).astype(np.float64)
                assert tp_fft_db(y) <= -1.0 + 0.1, (sr, link, kind)
                assert tp_poly8_db(y) <= -1.0 + 0.1, (sr, link, kind)
        finally:
            s.close()
            e.free()


def _limit(x: np.ndarray, block: int = 64) -> np.ndarray:
    """x (frames, channels) through one limiter with link 0 (every channel
    its own gain), ceiling -3 dBTP."""
    ch = x.shape[1]
    e = Engine(48000, ch, ch)
    s = Session(e)
    try:
        s.add_node("input", "in", {"channels": ch})
        s.add_node("limiter", "l", {"channels": ch, "ceiling": -3.0, "link": 0.0})
        s.add_node("output", "o", {"channels": ch})
        s.connect("in", "l")
        s.connect("l", "o")
        s.commit()
        return e.process(len(x), x.astype(np.float32), block=block).copy()
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("channels, at", [(1, 0), (2, 1), (3, 2)])
def test_unlinked_channel_is_its_own_limiter(channels, at):
    """At link 0 each channel is limited by its own needed gain: a channel's
    output does not depend on how many channels the node has or where the
    channel sits (the channel counts the detector pairs up differently: one
    left over for 1 and 3). Content near fs/2 (21 kHz) brings in the margin
    for the interpolator's blind spot, which a left-over channel once got
    twice."""
    rng = np.random.default_rng(4)
    n = 48000
    t = np.arange(n) / 48000
    x = rng.standard_normal(n) * 0.3 + np.sin(2 * np.pi * 21000 * t) * 0.5
    ref = _limit(np.stack([x, rng.standard_normal(n) * 0.1], axis=1))[:, 0]
    xs = np.zeros((n, channels))
    xs[:, at] = x
    for c in range(channels):
        if c != at:
            xs[:, c] = rng.standard_normal(n) * 0.2
    y = _limit(xs)[:, at]
    assert np.abs(ref).max() > 0.3
    np.testing.assert_array_equal(y, ref)


def _limit_split(x: np.ndarray, calls: list[int],
                 edits: list[tuple[int, str, float]]) -> np.ndarray:
    """x (n, ch) through a limiter, the engine called for calls[k] frames at a
    time (cycled), with parameter edits at fixed sample times."""
    ch = x.shape[1]
    e = Engine(SR, ch, ch)
    e.set_ceiling_db(40.0)
    s = Session(e)
    try:
        s.add_node("input", "in", {"channels": ch})
        s.add_node("limiter", "l", {"channels": ch, "ceiling": -3.0, "lookahead": 2.0,
                                    "link": 60.0})
        s.add_node("output", "o", {"channels": ch})
        s.connect("in", "l")
        s.connect("l", "o")
        s.commit()
        for at, name, v in edits:
            s.set_param("l", name, v, time=at)
        x = np.ascontiguousarray(x, np.float32)
        out, pos, k = [], 0, 0
        while pos < len(x):
            m = min(calls[k % len(calls)], len(x) - pos)
            out.append(e.process(m, x[pos:pos + m]).copy())
            pos += m
            k += 1
        return np.concatenate(out)
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_output_does_not_depend_on_how_calls_split_the_signal(channels):
    """The min-hold runs per chunk of at most 64 samples, its window reaching
    back into the history, and the look-ahead walks a sample a sample after a
    change: the same signal, with the same look-ahead and ceiling changes at
    the same samples, comes out the same bit for bit whether the engine is
    called for 64 frames at a time or for 1..512 (chunks split mid-block,
    walks crossing calls, idle stretches of silence between loud ones)."""
    rng = np.random.default_rng(11)
    n = 48000
    t = np.arange(n)
    env = np.where((t // 6000) % 3 == 0, 0.02, np.where((t // 6000) % 3 == 1, 1.0, 4.0))
    x = (rng.standard_normal((n, channels)) * 0.3
         + 0.5 * np.sin(2 * np.pi * 997 / SR * t)[:, None]) * env[:, None]
    x[20000:26000] = 0.0
    edits = [(3000, "lookahead", 0.2), (9100, "lookahead", 5.0), (17777, "ceiling", -6.0),
             (30001, "lookahead", 1.3), (30100, "lookahead", 0.1), (41000, "link", 0.0)]
    ref = _limit_split(x, [64], edits)
    got = _limit_split(x, [1, 7, 512, 63, 100, 255, 16, 129, 3], edits)
    assert np.abs(ref).max() > 0.1
    np.testing.assert_array_equal(got, ref)


def test_detector_widths_give_the_same_bits():
    """The true-peak detector runs on sixteen-float vectors where the CPU has
    AVX-512 and on eight-float ones elsewhere (nodes/limiter.c tpdet_run);
    MIXGRAPH_TP_NARROW=1 takes the eight-float path on any CPU. Both, in child
    processes, limit the same hot noise (odd call lengths: groups that run
    past the block's end) to the same bits."""
    from conftest import require_avx512

    require_avx512("the limiter's true-peak detector widths")
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import hashlib, numpy as np, test_node_limiter as t\n"
        "rng = np.random.default_rng(5)\n"
        "x = rng.standard_normal((24000, 2)) * 0.8\n"
        "y = t._limit_split(x, [64, 37, 100], [(9000, 'lookahead', 1.0)])\n"
        "assert np.abs(y).max() > 0.5\n"
        "print(hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest())\n"
    )
    path = str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    outs = []
    for narrow in ("0", "1"):
        env = {**os.environ, "MIXGRAPH_TP_NARROW": narrow, "PYTHONPATH": path}
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(r.stdout.strip())
    assert len(outs[0]) == 64 and outs[0] == outs[1]
