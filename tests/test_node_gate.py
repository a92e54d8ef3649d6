"""gate: hysteresis without chatter, exact hold, attenuation = range, key filters,
one-pole attack/release against the closed form, bad input, no zipper."""

from __future__ import annotations

import numpy as np
import pytest

SR = 48000


@pytest.fixture
def make(sessions):
    """make(hw_in, hw_out) -> (session, engine); everything is freed afterwards."""
    return lambda hw_in=1, hw_out=1: sessions(hw_in, hw_out)


def db(x):
    return 20 * np.log10(np.maximum(np.abs(np.asarray(x, np.float64)), 1e-30))


def gate(make, ch=1, **params):
    """main input on hw 1..ch, key on hw ch+1..2ch, sidechain on: the output over
    a DC main input of 0.5 is the gain envelope."""
    s, e = make(2 * ch, ch)
    s.add_node("input", "in", {"channels": ch})
    s.add_node("input", "k", {"channels": ch, "first": ch + 1})
    s.add_node("gate", "g", {"channels": ch, "sidechain": 1, **params})
    s.add_node("output", "out", {"channels": ch})
    s.connect("in", "g")
    s.connect("k", "g:key")
    s.connect("g", "out")
    s.commit()
    return s, e


def run(e, key, main=0.5):
    x = np.stack([np.full(len(key), main, np.float32), key.astype(np.float32)], 1)
    return e.process(len(key), x, block=64)[:, 0].astype(np.float64) / main


def transitions(gain, range_db):
    """Open/close transitions of the gain envelope: crossings of the midpoint (dB)."""
    above = db(gain) > range_db / 2
    return int(np.count_nonzero(above[1:] != above[:-1]))


@pytest.mark.parametrize("range_db", [-20.0, -60.0, -100.0])
def test_closed_attenuation_is_range(make, range_db):
    s, e = gate(make, range=range_db, threshold=-40)
    key = np.full(SR // 2, 10 ** (-50 / 20))  # below threshold
    g = run(e, key)
    assert db(g[-1]) == pytest.approx(range_db, abs=1e-4)  # float32 gain
    assert s.readout("g", "open") == [0.0]
    g = run(e, np.full(SR // 2, 10 ** (-30 / 20)))
    assert g[-1] == 1.0  # open: exactly unity
    assert s.readout("g", "gr")[0] == 0.0


@pytest.mark.parametrize("hold_ms", [0.0, 1.0, 10.0, 12.34, 250.0])
def test_hold_is_exact_in_samples(make, hold_ms):
    s, e = gate(make, hold=hold_ms, threshold=-40, hysteresis=6, attack=0.1, release=20)
    n_on, n_off = 4800, 24000
    key = np.concatenate([np.full(n_on, 0.5), np.zeros(n_off)])
    g = run(e, key)
    h = int(round(hold_ms * SR / 1000))
    assert np.all(g[n_on - 100 : n_on + h] == 1.0)  # unity for exactly h samples...
    assert g[n_on + h] < 1.0  # ...then the release starts
    # the release is the one-pole: g = r + (1 - r) a^(k+1), a = exp(-1/tau)
    r, a = 10 ** (-80 / 20), np.exp(-1 / (0.020 * SR))
    k = np.arange(2000)
    want = r + (1 - r) * a ** (k + 1)
    # 5e-5: float32 rounding accumulated over 2000 steps of the recursion (a 1% error
    # in the time constant would show as ~1e-3)
    assert np.max(np.abs(g[n_on + h : n_on + h + 2000] - want)) < 5e-5


def test_attack_time_constant(make):
    s, e = gate(make, threshold=-40, attack=2.0, range=-60)
    run(e, np.zeros(4800))
    g = run(e, np.full(4800, 0.5))
    r, a = 10 ** (-60 / 20), np.exp(-1 / (0.002 * SR))
    k = np.arange(4800)
    # opens from the range towards 1: 63.2% of the way after 2 ms
    assert np.max(np.abs(g - (1 - (1 - r) * a ** (k + 1)))) < 5e-5  # float32 recursion


def _hovering_bursts(rng, level_lo, level_hi, n_bursts=5, burst=9600, gap=9600):
    """1 kHz tone bursts whose level wanders slowly between level_lo and level_hi
    (dB), each starting with 20 ms at level_hi + 1 dB so the gate opens once."""
    parts = [np.zeros(gap)]
    t = np.arange(burst) / SR
    for _ in range(n_bursts):
        wob = np.cumsum(rng.normal(0, 1, burst))
        wob = np.convolve(wob, np.ones(480) / 480, mode="same")
        wob = (wob - wob.min()) / (np.ptp(wob) + 1e-12)
        lv = level_lo + (level_hi - level_lo) * wob
        lv[:960] = level_hi + 1
        parts.append(10 ** (lv / 20) * np.sin(2 * np.pi * 1000 * t + rng.uniform(0, 6)))
        parts.append(np.zeros(gap))
    return np.concatenate(parts)


def test_no_chatter_with_a_key_hovering_within_the_hysteresis(make):
    rng = np.random.default_rng(7)
    # the key's level wanders across the threshold, between threshold - 5 dB and
    # threshold + 1 dB: always above the closing threshold (threshold - 6 dB)
    key = _hovering_bursts(rng, -45.0, -39.0)
    s, e = gate(make, threshold=-40, hysteresis=6, hold=5, attack=0.5, release=20, range=-60)
    g = run(e, key)
    assert transitions(g, -60) == 10  # 5 bursts: one open and one close each
    # the same key with no hysteresis chatters (so the count above can fail)
    s2, e2 = gate(make, threshold=-40, hysteresis=0, hold=5, attack=0.5, release=20, range=-60)
    g2 = run(e2, key)
    assert transitions(g2, -60) > 12


def test_stereo_gate_opens_both_channels_together(make):
    s, e = gate(make, ch=2, threshold=-40)
    n = 4800
    main = np.full((n, 2), 0.5, np.float32)
    key = np.zeros((n, 2), np.float32)
    key[:, 0] = 0.1  # only the left key is above threshold
    y = e.process(n, np.concatenate([main, key], 1), block=64)
    assert np.all(y[-1] == 0.5)


@pytest.mark.parametrize("kind", ["hp", "lp"])
def test_key_filters(make, kind):
    # 50 Hz under a 1 kHz high-pass, or 10 kHz over a 500 Hz low-pass: 12 dB/oct
    # Butterworth attenuates by (f/fc)^2 ~ 26 dB or more, so a key 10 dB over the
    # threshold no longer opens the gate
    f, p = (50.0, {"keyhp": 1000}) if kind == "hp" else (10000.0, {"keylp": 500})
    s, e = gate(make, threshold=-40, range=-60, release=10, **p)
    key = 10 ** (-30 / 20) * np.sin(2 * np.pi * f * np.arange(SR // 2) / SR)
    assert run(e, key)[-1] == 1.0  # filter off: open
    s.set_param("g", "key" + kind + "on", 1)
    g = run(e, key)
    assert db(g[-1]) == pytest.approx(-60, abs=1e-3)  # filter on: closed


def test_bad_input_never_gives_nan(make):
    s, e = gate(make, keyhpon=1, keylpon=1, threshold=-60)
    n = 4800
    sq = np.sign(np.sin(2 * np.pi * 100 * np.arange(n) / SR))
    sigs = [np.full(n, np.nan), np.full(n, np.inf), np.full(n, -np.inf), np.ones(n), sq,
            np.zeros(n), np.where(np.arange(n) % 7 == 0, np.nan, sq), np.full(n, 3e38)]
    for a in sigs:
        for b in sigs:
            e.process(n, np.stack([a, b], 1).astype(np.float32), block=64)
    assert e.stats().nan_scrubbed == 0
    s.set_param("g", "sidechain", 0)
    s.set_param("g", "keyhpon", 0)
    g = run(e, np.zeros(SR), main=0.25)
    assert np.all(g[-SR // 2 :] == 1.0)  # recovers: opens on the clean main input


@pytest.mark.parametrize("param,a,b", [("range", -100, 0), ("range", 0, -100),
                                       ("threshold", -90, 0), ("threshold", 0, -90)])
def test_no_zipper_when_moving_end_to_end_in_10ms(make, param, a, b):
    s, e = make(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gate", "g", {"threshold": -20, "attack": 5, "release": 50, "hold": 0})
    s.add_node("output", "out", {"channels": 1})
    s.connect("in", "g")
    s.connect("g", "out")
    s.commit()
    amp = 10 ** (-30 / 20)  # below -20: closed until the threshold moves under it
    x = (amp * np.sin(2 * np.pi * 100 * np.arange(20000) / SR)).astype(np.float32)
    s.set_param("g", param, a)
    out = [e.process(9600, x[:9600], block=64)]
    pos = 9600
    for k in range(1, 11):
        s.set_param("g", param, a + (b - a) * k / 10)
        out.append(e.process(48, x[pos : pos + 48], block=64))
        pos += 48
    out.append(e.process(len(x) - pos, x[pos:], block=64))
    y = np.concatenate(out)[:, 0].astype(np.float64)
    ref = np.max(np.abs(np.diff(x.astype(np.float64)))) * np.max(np.abs(y)) / amp
    # a smooth gain adds x*dg per sample; a jump of tens of dB would add a step
    # the size of the signal itself
    assert np.max(np.abs(np.diff(y))) < 1.5 * ref
