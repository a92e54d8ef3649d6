"""Golden tests of every basic node against closed-form references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal, stats

from mixgraph.server.errors import MixgraphError

SR = 48000


@pytest.fixture
def make(sessions):
    """make(hw_in, hw_out) -> (session, engine); everything is freed afterwards."""
    return lambda hw_in=0, hw_out=2: sessions(hw_in, hw_out)


def db(x):
    return 20 * np.log10(np.abs(np.asarray(x, np.float64)))


def chain(s, *names):
    for a, b in zip(names, names[1:], strict=False):
        s.connect(a, b)
    s.commit()


# ---- gain -------------------------------------------------------------------------

@pytest.mark.parametrize("gain_db", [-100.0, -60.0, -20.0, -6.0, -0.5, 0.0, 3.0, 6.0, 24.0])
def test_gain_db_exact(make, gain_db):
    s, e = make(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "g", {"gain": gain_db})
    s.add_node("output", "out", {"channels": 1})
    chain(s, "in", "g", "out")
    x = np.float32(0.05)  # +24 dB stays under the output ceiling
    y = e.process(256, np.full((256, 1), x, np.float32))[:, 0]
    # 1e-4 dB: float32 amplitude
    assert np.all(np.abs(db(y / x) - gain_db) < 1e-4)


def test_gain_bottom_of_range_is_silence(make):
    s, e = make(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "g", {"gain": -120})
    s.add_node("output", "out", {"channels": 1})
    chain(s, "in", "g", "out")
    assert not np.any(e.process(256, np.full((256, 1), 0.5, np.float32)))


def test_gain_mute_and_polarity(make):
    s, e = make(2, 2)
    s.add_node("input", "in", {"channels": 2})
    s.add_node("gain", "g", {"channels": 2, "gain": -6})
    s.add_node("output", "out")
    chain(s, "in", "g", "out")
    rng = np.random.default_rng(3)
    x = (rng.uniform(-0.5, 0.5, (4096, 2))).astype(np.float32)
    g = np.float32(10 ** (-6 / 20))
    y = e.process(1024, x[:1024])
    assert np.max(np.abs(y - x[:1024] * g)) < 1e-7  # float32 product
    s.set_param("g", "polarity", 1)
    e.process(1024, x[:1024])  # 10 ms crossfade
    y = e.process(1024, x[1024:2048])
    assert np.max(np.abs(y + x[1024:2048] * g)) < 1e-7  # exactly inverted
    s.set_param("g", "mute", 1)
    e.process(1024, x[:1024])  # 10 ms fade
    y = e.process(1024, x[2048:3072])
    assert not np.any(y)  # muted: exact zeros
    s.set_param("g", "mute", 0)
    s.set_param("g", "polarity", 0)
    e.process(1024, x[:1024])
    y = e.process(1024, x[3072:])
    assert np.max(np.abs(y - x[3072:] * g)) < 1e-7


def test_polarity_crossfade_passes_through_zero_without_steps(make):
    s, e = make(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "g")
    s.add_node("output", "out", {"channels": 1})
    chain(s, "in", "g", "out")
    e.process(64, np.ones((64, 1), np.float32))
    s.set_param("g", "polarity", 1)
    y = e.process(1024, np.ones((1024, 1), np.float32))[:, 0].astype(np.float64)
    n10 = int(0.010 * SR)
    # gain = 1 - 2*p with p ramping linearly over 10 ms: from +1 to -1, 2/480 per sample
    want = 1 - 2 * np.minimum((np.arange(1024) + 1) / n10, 1)
    assert np.max(np.abs(y - want)) < 1e-6  # float32 accumulation


# ---- pan ---------------------------------------------------------------------------

@pytest.mark.parametrize("pos", [-1.0, -0.75, -0.5, -0.2, 0.0, 0.3, 0.5, 0.9, 1.0])
def test_pan_constant_power(make, pos):
    s, e = make(1, 2)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("pan", "p", {"pan": pos})
    s.add_node("output", "out")
    chain(s, "in", "p", "out")
    y = e.process(64, np.ones((64, 1), np.float32)).astype(np.float64)
    th = (pos + 1) * math.pi / 4
    # sin/cos law, 1e-6 abs (float32)
    assert np.max(np.abs(y[:, 0] - math.cos(th))) < 1e-6
    assert np.max(np.abs(y[:, 1] - math.sin(th))) < 1e-6
    assert np.max(np.abs(y[:, 0] ** 2 + y[:, 1] ** 2 - 1)) < 1e-6


def test_pan_centre_is_minus_3db(make):
    s, e = make(1, 2)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("pan", "p")
    s.add_node("output", "out")
    chain(s, "in", "p", "out")
    y = e.process(64, np.ones((64, 1), np.float32))
    # -3.0103 dB = 10*log10(1/2), within 1e-4 dB
    assert np.all(np.abs(db(y) - 10 * math.log10(0.5)) < 1e-4)
    assert np.array_equal(y[:, 0], y[:, 1])


def test_pan_extremes_are_silent_on_the_other_side(make):
    s, e = make(1, 2)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("pan", "p", {"pan": -1})
    s.add_node("output", "out")
    chain(s, "in", "p", "out")
    y = e.process(64, np.ones((64, 1), np.float32))
    assert np.all(y[:, 0] == 1.0)
    assert np.max(np.abs(y[:, 1])) < 1e-7  # sin(0) exactly; cos(pi/2) in float ~ 6e-17


# ---- bus ---------------------------------------------------------------------------

def test_bus_sums_and_scales(make):
    s, e = make(3, 2)
    s.add_node("input", "a", {"channels": 1, "first": 1})
    s.add_node("input", "b", {"channels": 1, "first": 2})
    s.add_node("input", "c", {"channels": 1, "first": 3})
    s.add_node("pan", "pa", {"pan": -1})
    s.add_node("bus", "mix", {"gain": -6})
    s.add_node("output", "out")
    s.connect("a", "pa")
    s.connect("pa", "mix")  # stereo into the stereo bus
    s.connect("b", "mix")  # mono fans out to both bus channels
    s.connect("c", "mix:in")
    s.connect("mix", "out")
    s.commit()
    rng = np.random.default_rng(5)
    x = rng.uniform(-0.3, 0.3, (2048, 3)).astype(np.float32)
    y = e.process(2048, x).astype(np.float64)
    g = 10 ** (-6 / 20)
    xl = x.astype(np.float64)
    want_l = g * (xl[:, 0] + xl[:, 1] + xl[:, 2])
    want_r = g * (xl[:, 1] + xl[:, 2])  # pan hard left: nothing of `a` on the right
    assert np.max(np.abs(y[:, 0] - want_l)) < 1e-6  # float32 sums
    assert np.max(np.abs(y[:, 1] - want_r)) < 1e-6


# ---- sine --------------------------------------------------------------------------

@pytest.mark.parametrize("freq", [31.0, 440.0, 997.0, 12345.0])
def test_sine_frequency_and_level(make, freq):
    s, e = make(0, 1)
    s.add_node("sine", "osc", {"freq": freq, "level": -6})
    s.add_node("output", "out", {"channels": 1})
    chain(s, "osc", "out")
    y = e.process(SR)[:, 0].astype(np.float64)  # 1 s
    # FFT peak of a 1 s window: 1 Hz bins, so the peak bin is the frequency
    spec = np.abs(np.fft.rfft(y * signal.windows.blackmanharris(SR)))
    assert np.argmax(spec) == round(freq)
    # zero crossings (linearly interpolated): the mean period gives the
    # frequency within 1e-4 relative
    neg = np.nonzero((y[:-1] < 0) & (y[1:] >= 0))[0]
    t = neg + (-y[neg]) / (y[neg + 1] - y[neg])
    f_meas = (len(t) - 1) / ((t[-1] - t[0]) / SR)
    assert abs(f_meas / freq - 1) < 1e-4
    # and the waveform itself: amplitude 10^(-6/20), 2e-6 abs (float32)
    ref = 10 ** (-6 / 20) * np.sin(2 * np.pi * freq * np.arange(SR) / SR)
    assert np.max(np.abs(y - ref)) < 2e-6


@pytest.mark.parametrize("freq", [31.0, 997.0, 12345.0, 23999.5])
def test_sine_matches_numpy_sin(make, freq):
    """Full scale, 1 s in 64-frame blocks against numpy's sin in float64: each
    sample is the float32 nearest the true sine (half a float32 spacing of the
    sample) up to 1e-9 (the node's polynomial: 2.1e-11, nodes/sine.c)."""
    s, e = make(0, 1)
    s.add_node("sine", "osc", {"freq": freq, "level": 0})
    s.add_node("output", "out", {"channels": 1})
    chain(s, "osc", "out")
    y32 = e.process(SR, block=64)[:, 0]
    ref = np.sin(2 * np.pi * freq * np.arange(SR) / SR)
    err = np.abs(y32.astype(np.float64) - ref)
    half_ulp = np.spacing(np.abs(y32)).astype(np.float64) / 2
    assert np.all(err <= half_ulp + 1e-9), float(np.max(err - half_ulp))


def test_sine_same_signal_on_every_channel(make):
    s, e = make(0, 4)
    s.add_node("sine", "osc", {"channels": 4, "freq": 100})
    s.add_node("output", "out", {"channels": 4})
    chain(s, "osc", "out")
    y = e.process(1000)
    for c in range(1, 4):
        assert np.array_equal(y[:, 0], y[:, c])
    # default level: -20 dBFS peak; 1e-3 dB since sample peak of 100 Hz at 48 kHz is
    # within cos(pi*100/48000) of the true peak
    assert abs(db(np.max(y[:, 0])) + 20) < 1e-3


def test_sine_frequency_glide_is_log(make):
    s, e = make(0, 1)
    s.add_node("sine", "osc", {"freq": 100, "level": 0})
    s.add_node("output", "out", {"channels": 1})
    chain(s, "osc", "out")
    e.process(64)
    s.set_param("osc", "freq", 1600)
    y = e.process(2048)[:, 0].astype(np.float64)
    n = 960
    k = np.arange(2048)
    # geometric glide: f[k] = 100 * 16^((k+1)/960), then 1600; phase = running sum
    f = np.where(k < n, 100 * 16 ** ((k + 1) / n), 1600.0)
    ph = 100 * 64 / SR + np.concatenate([[0], np.cumsum(f[:-1])]) / SR
    ref = np.sin(2 * np.pi * ph)
    assert np.max(np.abs(y - ref)) < 1e-5  # float32 frequency ramp accumulated in double


# ---- noise -------------------------------------------------------------------------

def _noise(make, channels=1, seed=1, level=-20.0, n=SR, block=None):
    s, e = make(0, channels)
    s.add_node("noise", "nz", {"channels": channels, "seed": seed, "level": level})
    s.add_node("output", "out", {"channels": channels})
    chain(s, "nz", "out")
    y = e.process(n, block=block) if block else e.process(n)
    return y.astype(np.float64)


def test_noise_does_not_depend_on_the_block_size(make):
    """The generator interleaves several streams; the sequence is the same
    however the blocks split it (odd sizes leave a stream mid-cycle)."""
    a = _noise(make, channels=2, n=9000, block=64)
    for block in (1, 3, 37, 512):
        np.testing.assert_array_equal(_noise(make, channels=2, n=9000, block=block), a)


@pytest.mark.parametrize("level", [-40.0, -20.0, -6.0])
def test_noise_rms_matches_level(make, level):
    y = _noise(make, level=level)[:, 0]
    rms_db = 10 * np.log10(np.mean(y ** 2))
    # 1 s at 48 kHz: the RMS estimate of uniform noise has sigma 0.02 dB; 0.1 dB is 5 sigma
    assert abs(rms_db - level) < 0.1
    # uniform on [-a*sqrt(3), a*sqrt(3)] (a = RMS amplitude): KS test against scipy
    a = 10 ** (level / 20) * math.sqrt(3)
    assert np.max(np.abs(y)) <= a * (1 + 1e-6)
    assert stats.kstest(y, stats.uniform(loc=-a, scale=2 * a).cdf).pvalue > 1e-3


def test_noise_is_white(make):
    y = _noise(make)[:, 0]
    y = y - y.mean()
    r = np.correlate(y[:20000], y[:20000], "full")[19999:20011] / np.dot(y[:20000], y[:20000])
    # lags 1..10: |r| < 4/sqrt(N) (about 4 sigma for white noise)
    assert np.all(np.abs(r[1:]) < 4 / math.sqrt(20000))


def test_noise_deterministic_by_seed(make):
    a = _noise(make, seed=42, n=4096)
    b = _noise(make, seed=42, n=4096)
    c = _noise(make, seed=43, n=4096)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(np.corrcoef(a[:, 0], c[:, 0])[0, 1]) < 0.05  # unrelated streams


def test_noise_channels_uncorrelated(make):
    y = _noise(make, channels=4)
    r = np.corrcoef(y.T)
    off = r[~np.eye(4, dtype=bool)]
    # independent channels: |r| < 5/sqrt(48000) = 0.023 (5 sigma)
    assert np.all(np.abs(off) < 5 / math.sqrt(SR))
    for c in range(4):
        assert abs(10 * np.log10(np.mean(y[:, c] ** 2)) + 20) < 0.1


# ---- meter --------------------------------------------------------------------------

def test_meter_peak_and_rms_of_a_sine(make):
    s, e = make(0, 0)
    amp_db = -9.0
    s.add_node("sine", "osc", {"freq": 1000, "level": amp_db})
    s.add_node("meter", "m", {"channels": 1})
    chain(s, "osc", "m")
    for _ in range(2 * SR // 480):
        e.process(480)
    peak = s.readout("m", "peak")
    rms = s.readout("m", "rms")
    assert len(peak) == 1 and len(rms) == 1
    # readouts are in dB: peak = amplitude, RMS = amplitude/sqrt(2) (-3.01 dB),
    # within 0.05 dB after 2 s (RMS window 300 ms, peak falls 0.012 dB per 1 ms cycle)
    assert abs(peak[0] - amp_db) < 0.05
    assert abs(rms[0] - (amp_db + 20 * math.log10(1 / math.sqrt(2)))) < 0.05


def test_meter_per_channel_and_peak_fall(make):
    s, e = make(2, 0)
    s.add_node("input", "in", {"channels": 2})
    s.add_node("meter", "m")
    chain(s, "in", "m")
    x = np.zeros((SR, 2), np.float32)
    x[100, 0] = 0.5  # a single click on the left
    x[:, 1] = 0.25  # DC on the right
    e.process(SR // 2, x[: SR // 2])
    peak = s.readout("m", "peak")
    rms = s.readout("m", "rms")
    # the click has fallen 20 dB per 1.7 s for (24000 - 101) samples after it
    fallen = 20 / 1.7 * (SR // 2 - 101) / SR
    assert abs(peak[0] - (db(0.5) - fallen)) < 0.01
    assert abs(peak[1] - db(0.25)) < 1e-4
    # RMS of DC after 0.5 s with a 300 ms one-pole: sqrt(1 - exp(-0.5/0.3)) of it
    want = db(0.25) + 10 * math.log10(1 - math.exp(-(SR // 2) / (0.3 * SR)))
    assert abs(rms[1] - want) < 0.01
    with pytest.raises(MixgraphError, match="no parameter or readout 'loudness'"):
        s.readout("m", "loudness")


def test_meter_silence_reads_very_low(make):
    s, e = make(1, 0)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("meter", "m", {"channels": 1})
    chain(s, "in", "m")
    e.process(1024)
    assert s.readout("m", "peak")[0] <= -199


# ---- input / output -------------------------------------------------------------

def test_input_output_channel_mapping(make):
    s, e = make(4, 4)
    # hardware inputs 3-4 (1-based) -> hardware outputs 1-2; input 1 -> output 4
    s.add_node("input", "in34", {"channels": 2, "first": 3})
    s.add_node("output", "out12", {"channels": 2, "first": 1})
    s.add_node("input", "in1", {"channels": 1, "first": 1})
    s.add_node("output", "out4", {"channels": 1, "first": 4})
    s.connect("in34", "out12")
    s.connect("in1", "out4")
    s.commit()
    x = (np.arange(4 * 256, dtype=np.float32).reshape(256, 4) % 97) / 100 + [0, 1, 2, 3]
    x = (x / 4).astype(np.float32)
    y = e.process(256, x)
    assert np.array_equal(y[:, 0], x[:, 2])
    assert np.array_equal(y[:, 1], x[:, 3])
    assert not np.any(y[:, 2])
    assert np.array_equal(y[:, 3], x[:, 0])


def test_outputs_to_the_same_channel_sum(make):
    s, e = make(2, 1)
    s.add_node("input", "a", {"channels": 1, "first": 1})
    s.add_node("input", "b", {"channels": 1, "first": 2})
    s.add_node("output", "o1", {"channels": 1})
    s.add_node("output", "o2", {"channels": 1})
    s.connect("a", "o1")
    s.connect("b", "o2")
    s.commit()
    x = np.random.default_rng(9).uniform(-0.4, 0.4, (512, 2)).astype(np.float32)
    y = e.process(512, x)[:, 0]
    assert np.array_equal(y, x[:, 0] + x[:, 1])  # one float32 addition, exact


@pytest.mark.parametrize("kind,opts", [("input", {"first": 0}), ("input", {"first": 4}),
                                       ("output", {"first": 2, "channels": 2}),
                                       ("output", {"first": 0})])
def test_hardware_channels_out_of_range(make, kind, opts):
    s, e = make(3, 2)
    with pytest.raises(MixgraphError, match="do not exist|count from 1"):
        s.add_node(kind, "x", dict(opts))
    assert "x" not in s.graph.nodes
