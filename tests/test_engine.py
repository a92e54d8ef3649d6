"""Engine and plan behaviour: sample-exact events, late events, smoothing,
plan swaps that keep node state, click-free edge edits, the safety stage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixgraph.server.engine import EV_LATE, Engine
from mixgraph.server.session import Session

SR = 48000
SMOOTH = int(round(0.020 * SR))  # 20 ms gain/pan/level smoothing = 960 samples
FADE = int(round(0.005 * SR))  # 5 ms edge fade = 240 samples


def run(e: Engine, total: int, block: int, inputs: np.ndarray | None = None) -> np.ndarray:
    """Process `total` frames in blocks of `block` frames."""
    out = []
    for pos in range(0, total, block):
        n = min(block, total - pos)
        out.append(e.process(n, None if inputs is None else inputs[pos:pos + n]))
    return np.concatenate(out)


@pytest.fixture
def dc_gain():
    """hardware in 1 (fed 1.0) -> gain -> hardware out 1: the output is the gain itself."""
    e = Engine(SR, 1, 1)
    s = Session(e)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "g")
    s.add_node("output", "out", {"channels": 1})
    s.connect("in", "g")
    s.connect("g", "out")
    s.commit()
    yield s, e
    s.close()
    e.free()


def ones(n):
    return np.ones((n, 1), np.float32)


# ---- timing ---------------------------------------------------------------------

@pytest.mark.parametrize("block", [64, 512, 1000])
@pytest.mark.parametrize("at", [1234, 1024, 1])
def test_event_applies_at_exact_sample(dc_gain, block, at):
    s, e = dc_gain
    s.set_param("g", "gain", -20.0, time=at)
    y = run(e, 4096, block, ones(4096))[:, 0].astype(np.float64)
    # before the event: exactly unity
    assert np.all(y[:at] == 1.0)
    # from `at` on: a geometric ramp of 960 steps from 1 to 0.1,
    # y[at + k] = 10 ** (-20 * (k + 1) / 960 / 20); 1e-6 relative (float32 output)
    k = np.arange(SMOOTH)
    want = 10 ** (-20 * (k + 1) / SMOOTH / 20)
    assert np.max(np.abs(y[at:at + SMOOTH] / want - 1)) < 1e-6
    assert y[at] < 1.0
    # and it lands exactly on the target (float32 of 10^-1)
    assert np.all(y[at + SMOOTH - 1:] == np.float32(0.1))


def test_two_events_in_one_block(dc_gain):
    s, e = dc_gain
    s.set_param("g", "mute", 1, time=100)  # 10 ms linear fade to 0: 480 samples
    s.set_param("g", "mute", 0, time=300)  # reversed 200 samples in, from where it was
    y = e.process(512, ones(512))[:, 0].astype(np.float64)
    n10 = int(0.010 * SR)
    assert np.all(y[:100] == 1.0)
    k = np.arange(200)
    # 1e-6: float32 accumulation of a linear ramp over 200 steps
    assert np.max(np.abs(y[100:300] - (1 - (k + 1) / n10))) < 1e-6
    # the second ramp starts at sample 300 from 1 - 200/480 and heads back up
    m0 = 200 / n10
    assert np.max(np.abs(y[300:512] - (1 - (m0 - m0 * (np.arange(212) + 1) / n10)))) < 1e-6


def test_late_events_are_counted_and_applied_at_once(dc_gain):
    s, e = dc_gain
    e.process(4800, ones(4800))
    assert e.stats().late == 0
    s.set_param("g", "gain", -6.0, time=100)  # 4700 samples in the past
    s.set_param("g", "mute", 0.0, time=4799)  # 1 sample late
    s.set_param("g", "polarity", 0.0, time=4800)  # exactly on time: not late
    y = e.process(2048, ones(2048))[:, 0]
    st = e.stats()
    assert st.late == 2
    lates = sorted(v for kind, _i, v, _t, _p in e.poll() if kind == EV_LATE)
    assert lates == [1, 4700]  # how late, in samples
    # applied at the start of the next block: the ramp starts on its first sample
    k = np.arange(SMOOTH)
    want = 10 ** (-6 * (k + 1) / SMOOTH / 20)
    assert np.max(np.abs(y[:SMOOTH] / want - 1)) < 1e-6  # float32 output


# ---- smoothing ---------------------------------------------------------------------

@pytest.mark.parametrize("start,target", [(0.0, -40.0), (-60.0, 12.0), (6.0, -6.0)])
def test_gain_ramp_is_geometric_and_reaches_target_in_smooth_ms(sessions, start, target):
    s, e = sessions(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "g", {"gain": start})
    s.add_node("output", "out", {"channels": 1})
    s.connect("in", "g")
    s.connect("g", "out")
    s.commit()
    amp = 0.05  # keep +12 dB under the ceiling
    x = np.full((4096, 1), amp, np.float32)
    e.process(256, x[:256])
    s.set_param("g", "gain", target)
    y = e.process(2048, x[:2048])[:, 0].astype(np.float64)
    db = 20 * np.log10(y / amp)
    # smooth_ms = 20: the target is reached after exactly 960 samples
    # (1e-4 dB: float32 amplitude) and held from there
    assert abs(db[SMOOTH - 1] - target) < 1e-4
    assert abs(db[SMOOTH - 2] - target) > 1e-3
    assert np.all(np.abs(db[SMOOTH:] - target) < 1e-4)
    # geometric in amplitude = a straight line in dB: every step is
    # (target - start) / 960 dB, within 1e-3 dB (float32 rounding at -60 dB)
    steps = np.diff(np.concatenate([[start], db[:SMOOTH]]))
    assert np.max(np.abs(steps - (target - start) / SMOOTH)) < 1e-3
    # zipper check: no step bigger than the ramp's own
    assert np.max(np.abs(steps)) <= abs(target - start) / SMOOTH + 1e-3


def test_retarget_mid_ramp_has_no_jump(dc_gain):
    s, e = dc_gain
    s.set_param("g", "gain", -40.0, time=0)
    s.set_param("g", "gain", 0.0, time=500)  # turn back 500 samples into the ramp
    y = e.process(3000, ones(3000))[:, 0].astype(np.float64)
    db = 20 * np.log10(y)
    # at 500 samples the fall has reached -40 * 500/960 dB; the return ramp goes
    # from there to 0 dB over 960 samples: per-step size 40*500/960/960 dB
    down = 40 / SMOOTH
    up = 40 * 500 / SMOOTH / SMOOTH
    d = np.diff(db)
    assert np.max(-d[:499]) < down + 1e-4 and np.min(-d[:499]) > down - 1e-4
    assert np.max(np.abs(d[500:500 + SMOOTH - 1] - up)) < 1e-4  # 1e-4 dB: float32
    assert np.all(y[500 + SMOOTH - 1:] == 1.0)


@pytest.mark.parametrize("param,value,map_", [("gain", -30.0, "geometric"),
                                               ("mute", 1.0, "linear"),
                                               ("vca", -9.0, "geometric")])
def test_smoothing_does_not_depend_on_where_blocks_split_it(param, value, map_):
    """A smoothing ramp's samples are a function of their index in the ramp
    alone (the engine computes them as four interleaved chains, not one):
    split into blocks of 1, 3, 7, 64 and 1000 frames, with the set landing
    off every chain boundary, the output is the same to the bit, and it is
    the closed form: start * ratio^k (geometric, dB parameters) or
    start + step * k (linear), the last sample on the target exactly."""
    outs = []
    for block in (1000, 1, 3, 7, 64):
        e = Engine(SR, 1, 1)
        s = Session(e)
        s.add_node("input", "in", {"channels": 1})
        s.add_node("gain", "g", {"gain": -6.0})
        s.add_node("output", "out", {"channels": 1})
        s.connect("in", "g")
        s.connect("g", "out")
        s.commit()
        s.set_param("g", param, value, time=101)  # 101: not a multiple of 4
        outs.append(run(e, 1400, block, ones(1400))[:, 0].astype(np.float64))
        s.close()
        e.free()
    for y in outs[1:]:
        assert np.array_equal(y, outs[0])
    y = outs[0]
    g0 = 10 ** (-6 / 20)
    n = SMOOTH if param != "mute" else int(round(0.010 * SR))  # mute: 10 ms
    k = np.arange(1, n + 1)
    if map_ == "geometric":  # gain moves to the value; vca's dB add to the gain's
        end = 10 ** (value / 20) * (g0 if param == "vca" else 1.0)
        want = g0 * (end / g0) ** (k / n)
    else:
        end = 0.0
        want = g0 * (1 - k / n)
    assert np.all(y[:101] == np.float32(g0))
    # 1e-6 of the start level: float32 output of a double ramp
    assert np.max(np.abs(y[101:101 + n] - want)) < 1e-6 * g0
    assert np.all(y[101 + n - 1:] == np.float32(end))


def test_pan_ramp_is_linear_in_position(sessions):
    s, e = sessions(1, 2)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("pan", "p")
    s.add_node("output", "out")
    s.connect("in", "p")
    s.connect("p", "out")
    s.commit()
    e.process(64, ones(64))
    s.set_param("p", "pan", 1.0)
    y = e.process(2048, ones(2048)).astype(np.float64)
    # position ramps linearly from 0 to 1 over 960 samples; t = (pos+1)*pi/4
    pos = np.minimum((np.arange(2048) + 1) / SMOOTH, 1.0)
    th = (pos + 1) * np.pi / 4
    assert np.max(np.abs(y[:, 0] - np.cos(th))) < 2e-6  # float32 trig
    assert np.max(np.abs(y[:, 1] - np.sin(th))) < 2e-6
    # constant power all along the ramp, within 1e-5
    assert np.max(np.abs(y[:, 0] ** 2 + y[:, 1] ** 2 - 1)) < 1e-5


def test_sine_level_change_starts_at_exact_sample(sessions):
    s, e = sessions(0, 1)
    f = 1000.0
    s.add_node("sine", "osc", {"freq": f, "level": -20})
    s.add_node("output", "out", {"channels": 1})
    s.connect("osc", "out")
    s.commit()
    s.set_param("osc", "level", -6.0, time=1234)
    y = run(e, 4096, 512)[:, 0].astype(np.float64)
    n = np.arange(4096)
    k = np.clip(n - 1234 + 1, 0, SMOOTH)
    level_db = -20 + 14 * k / SMOOTH  # straight line in dB from sample 1234
    ref = 10 ** (level_db / 20) * np.sin(2 * np.pi * f * n / SR)
    assert np.max(np.abs(y - ref)) < 2e-6  # float32 output of a double sine


# ---- plan swaps ---------------------------------------------------------------------

def test_plan_swap_keeps_other_nodes_running(sessions):
    s, e = sessions(0, 1)
    f = 441.0
    s.add_node("sine", "osc", {"freq": f, "level": -3})
    s.add_node("output", "out", {"channels": 1})
    s.connect("osc", "out")
    s.commit()
    parts = [e.process(1000)]
    # unrelated edits: each one compiles and swaps a new plan
    s.add_node("noise", "nz", {"level": -40})
    s.service()
    parts.append(e.process(777))
    s.add_node("meter", "m")
    s.connect("nz", "m")
    s.service()
    parts.append(e.process(1500))
    s.remove_node("nz")
    for _ in range(8):
        s.service()
        parts.append(e.process(300))
    assert "nz" not in s.live and s.idle()
    y = np.concatenate(parts)[:, 0].astype(np.float64)
    n = np.arange(len(y))
    ref = 10 ** (-3 / 20) * np.sin(2 * np.pi * f * n / SR)
    # one continuous sine: a phase reset would be an O(1) error; 1e-6 is float32
    assert np.max(np.abs(y - ref)) < 1e-6


def _max_step(x):
    return np.max(np.abs(np.diff(x)))


@pytest.mark.parametrize("block", [64, 512])
def test_connect_and_disconnect_fade(sessions, block):
    s, e = sessions(0, 1)
    f1, f2, a1, a2 = 200.0, 1000.0, 0.25, 0.5
    s.add_node("sine", "s1", {"freq": f1, "level": 20 * math.log10(a1)})
    s.add_node("sine", "s2", {"freq": f2, "level": 20 * math.log10(a2)})
    s.add_node("output", "out", {"channels": 1})
    s.connect("s1", "out")
    s.commit()
    before = run(e, 2400, block)[:, 0]
    # the steepest slope a sum of the two sines can have, per sample
    own = 2 * np.pi * (f1 * a1 + f2 * a2) / SR
    t0 = e.time
    s.connect("s2", "out")
    s.commit()
    added = run(e, 4800, block)[:, 0].astype(np.float64)
    n = np.arange(t0, t0 + 4800)
    x1 = a1 * np.sin(2 * np.pi * f1 * n / SR)
    x2 = a2 * np.sin(2 * np.pi * f2 * n / SR)
    g = (added - x1) / np.where(np.abs(x2) > 0.05, x2, np.nan)
    # the new path's gain rises linearly from 0 to 1 over exactly 5 ms,
    # whatever the block size: g[k] = (k + 1) / 240 (1e-4: float32 over |x2| > 0.05)
    ramp = np.minimum((np.arange(4800) + 1) / FADE, 1.0)
    assert np.nanmax(np.abs(g - ramp)) < 1e-4
    assert _max_step(np.concatenate([before, added])) <= own * 1.001
    # remove it again: it fades out, then leaves the plan
    t1 = e.time
    s.disconnect("s2", "out")
    s.service()
    parts = []
    for _ in range(20):
        parts.append(run(e, block, block))
        s.service()
    removed = np.concatenate(parts)[:, 0].astype(np.float64)
    assert s.idle() and [str(c) for c in s.edges] == ["s1:out -> out:in"]
    # s1, s2, out and s1's edge are left; s2's edge was freed
    assert sorted(type(o).__name__ for o in s.refs.owners.values()) == ["LiveEdge"] + [
        "LiveNode"] * 3
    n = np.arange(t1, t1 + len(removed))
    x1 = a1 * np.sin(2 * np.pi * f1 * n / SR)
    x2 = a2 * np.sin(2 * np.pi * f2 * n / SR)
    g = (removed - x1) / np.where(np.abs(x2) > 0.05, x2, np.nan)
    fall = 1 - np.minimum((np.arange(len(g)) + 1) / FADE, 1.0)
    assert np.nanmax(np.abs(g - fall)) < 1e-4  # 1e-4: float32 over |x2| > 0.05
    assert np.max(np.abs(removed[FADE:] - x1[FADE:])) < 1e-6
    assert _max_step(np.concatenate([added, removed])) <= own * 1.001


def _two_paths(s) -> None:
    """in -> a -> out, and in -> b (not yet to out): a and b carry the same signal."""
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "a", {"gain": 0.0})
    s.add_node("gain", "b", {"gain": 0.0})
    s.add_node("output", "out", {"channels": 1})
    for src, dst in (("in", "a"), ("in", "b"), ("a", "out")):
        s.connect(src, dst)
    s.commit()


def test_a_replaced_connection_crossfades_even_if_audio_runs_before_the_commit(sessions):
    """Disconnect one path and connect another carrying the same signal: the
    fade-out and the fade-in must start at the same sample, so the sum holds
    its level. The control thread may take a while (other edits, a busy
    queue) between the edit and the commit while the audio keeps running:
    the fade-out waits for the commit like the fade-in does."""
    s, e = sessions(1, 1)
    _two_paths(s)
    dc = np.full((512, 1), 0.5, np.float32)
    e.process(512, dc, block=64)
    s.disconnect("a", "out")
    s.connect("b", "out")
    held = e.process(512, dc, block=64)[:, 0]  # audio before the commit
    s.commit()
    parts = []
    for _ in range(16):
        parts.append(e.process(64, dc[:64], block=64)[:, 0])
        s.service()
    after = np.concatenate(parts)
    assert np.all(held == 0.5)  # nothing moved before the commit
    # linear fades that start together sum to 1 (float32 rounding)
    assert np.max(np.abs(after - 0.5)) < 1e-6
    assert [str(c) for c in s.edges] == ["in:out -> a:in", "in:out -> b:in", "b:out -> out:in"]


def test_a_plan_and_its_fades_wait_together_for_room_in_the_queue():
    """With too little room in the command ring for the plan and both halves
    of a crossfade, none of them is pushed; they all go out together once the
    audio thread has drained the ring, and the crossfade holds the level."""
    from mixgraph.server.engine import CMD_SYNC, Engine
    from mixgraph.server.session import Session

    e = Engine(SR, 1, 1, cmd_capacity=16)
    s = Session(e)
    try:
        _two_paths(s)
        dc = np.full((64, 1), 0.5, np.float32)
        e.process(64, dc, block=64)
        while e.space() > 2:  # other commands fill the ring: room for 2 of the 3
            e.push(CMD_SYNC, index=1)
        s.disconnect("a", "out")
        s.connect("b", "out")
        s.commit()
        assert s._dirty and e.space() == 2  # nothing of it went out
        parts = []
        for _ in range(16):
            parts.append(e.process(64, dc, block=64)[:, 0])  # drains the ring
            s.service()
        y = np.concatenate(parts)
        assert np.max(np.abs(y - 0.5)) < 1e-6
        assert not s._dirty and s.idle()
    finally:
        s.close()
        e.free()


def test_a_removed_node_waits_for_its_fades_however_late_the_commit(sessions):
    """remove_node queues the fade-outs of the node's connections; if the
    audio runs past the node's deadline before the next service(), the node
    must still stay in the plan until those fades have run (dropping it
    would cut its output)."""
    s, e = sessions(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "x", {"gain": 0.0})
    s.add_node("output", "out", {"channels": 1})
    s.connect("in", "x")
    s.connect("x", "out")
    s.commit()
    dc = np.full((4096, 1), 0.5, np.float32)
    e.process(512, dc[:512], block=64)
    s.remove_node("x")
    held = e.process(4096, dc, block=64)[:, 0]  # well past the node's deadline
    parts = []
    for _ in range(40):
        s.service()
        parts.append(e.process(64, dc[:64], block=64)[:, 0])
    after = np.concatenate(parts)
    assert np.all(held == 0.5)
    # both of its connections fade (in series): at most twice one fade's slope,
    # where a cut would jump by 0.5
    assert _max_step(np.concatenate([held, after])) <= 2 * 0.5 / FADE * 1.01
    assert np.all(after[-64:] == 0.0) and s.idle() and list(s.live) == ["in", "out"]


def test_hard_switch_would_fail_the_zipper_check():
    # The bound used above is tight enough to catch a click: a path switched on
    # at full gain mid-signal jumps by the signal's own value.
    a2, f2 = 0.5, 1000.0
    n = np.arange(2000)
    x = a2 * np.sin(2 * np.pi * f2 * n / SR)
    switched = np.where(n >= 1012, x, 0)  # 1012: near a peak
    assert _max_step(switched) > 2 * np.pi * f2 * a2 / SR * 1.5


def test_remove_node_fades_out(sessions):
    s, e = sessions(0, 1)
    s.add_node("sine", "s", {"freq": 500, "level": -6})
    s.add_node("output", "out", {"channels": 1})
    s.connect("s", "out")
    s.commit()
    parts = [e.process(1000)]
    s.remove_node("s")
    for _ in range(12):
        s.service()
        parts.append(e.process(128))
    y = np.concatenate(parts)[:, 0]
    own = 2 * np.pi * 500 * 10 ** (-6 / 20) / SR
    assert _max_step(y) <= own * 1.001
    assert np.all(y[1000 + 256:] == 0)  # 5 ms fade, done within 2 blocks
    assert s.idle() and list(s.live) == ["out"]
    assert [o.g.name for o in s.refs.owners.values()] == ["out"]  # s and its edge freed


# ---- safety stage --------------------------------------------------------------------

def test_ceiling_holds_huge_gain_and_counts(sessions):
    s, e = sessions(0, 1)
    s.add_node("sine", "osc", {"freq": 1000, "level": 0})
    s.add_node("gain", "g", {"gain": 24})
    s.add_node("output", "out", {"channels": 1})
    s.connect("osc", "g")
    s.connect("g", "out")
    s.commit()
    y = e.process(4800)[:, 0]
    assert np.max(np.abs(y)) == 1.0
    unclipped = np.sin(2 * np.pi * 1000 * np.arange(4800) / SR) * 10 ** (24 / 20)
    # every sample whose unclipped value is beyond the ceiling is held there
    # (1e-4 keeps samples right at the threshold out of the comparison)
    over = np.abs(unclipped) > 1 + 1e-4
    under = np.abs(unclipped) < 1 - 1e-4
    assert np.all(np.abs(y[over]) == 1.0)
    assert np.all(np.sign(y[over]) == np.sign(unclipped[over]))
    assert np.max(np.abs(y[under] - unclipped[under])) < 1e-5
    clipped = e.stats().clipped
    assert over.sum() <= clipped <= over.sum() + (~over & ~under).sum()


def test_lower_ceiling(sessions):
    s, e = sessions(1, 1)
    e.set_ceiling_db(-6.0)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("output", "out", {"channels": 1})
    s.connect("in", "out")
    s.commit()
    x = np.linspace(-2, 2, 512, dtype=np.float32).reshape(-1, 1)
    y = e.process(512, x)[:, 0]
    c = np.float32(10 ** (-6 / 20))
    assert np.array_equal(y, np.clip(x[:, 0], -c, c))  # exact: a comparison and a copy
    assert e.stats().clipped == int(np.sum(np.abs(x) > c))


def test_nan_and_inf_scrubbed(sessions):
    s, e = sessions(2, 2)
    s.add_node("input", "in", {"channels": 2})
    s.add_node("gain", "g", {"channels": 2, "gain": -6})
    s.add_node("meter", "m")
    s.add_node("output", "out")
    s.connect("in", "g")
    s.connect("g", "out")
    s.connect("in", "m")
    s.commit()
    x = np.full((1024, 2), 0.5, np.float32)
    bad = [(10, 0, np.nan), (11, 1, np.inf), (500, 0, -np.inf), (900, 1, np.nan)]
    for i, c, v in bad:
        x[i, c] = v
    y = e.process(1024, x)
    assert np.all(np.isfinite(y))
    g = np.float32(10 ** (-6 / 20))
    mask = np.ones_like(x, bool)
    for i, c, _ in bad:
        mask[i, c] = False
        assert y[i, c] == 0.0
    assert np.max(np.abs(y[mask] - 0.5 * g)) < 1e-6  # -6 dB within float32
    assert e.stats().nan_scrubbed == len(bad)
    # the meter is not poisoned by the bad samples
    e.process(48000, np.full((48000, 2), 0.5, np.float32))
    peak = s.readout("m", "peak")
    assert all(abs(p - 20 * math.log10(0.5)) < 0.01 for p in peak)


def test_denormals_flushed_inside_process_only(sessions):
    s, e = sessions(1, 2)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "g")
    s.add_node("output", "out")
    s.connect("in", "out:in")  # hardware out 1+2 via fan-out, straight
    s.connect("in", "g")
    s.commit()
    tiny = np.float32(1e-40)
    assert tiny != 0 and tiny < np.finfo(np.float32).tiny  # really a denormal
    y = e.process(512, np.full((512, 1), tiny, np.float32))
    # FTZ/DAZ: a denormal entering the arithmetic comes out as zero
    assert np.all(y == 0)
    # ... and the caller's floating-point mode is restored afterwards
    assert np.float32(1e-40) * np.float32(3.0) != 0


def test_reused_buffers_hold_each_signal_until_its_last_reader(sessions):
    """Node outputs share the plan's pool of buffers by liveness. A signal read
    early and again at the very end must survive a long chain in between
    (freeing a buffer after its first reader fails here). The bus sums
    connections mixed as each source finishes, a hardware input among them
    (one left unmixed fails here). A gang's producers, read only inside the
    gang, stay intact through it (allocating a gang member by member instead
    of as one unit fails tests/test_gang.py). Reference: the same sums in numpy."""
    s, e = sessions(2, 1)
    s.add_node("input", "x1", {"channels": 1, "first": 1})
    s.add_node("input", "x2", {"channels": 1, "first": 2})
    s.add_node("gain", "early", {"gain": -6.0})
    s.connect("x1", "early")
    prev = "x2"
    for k in range(12):  # a long chain while `early` waits for its last reader
        s.add_node("gain", f"c{k}", {"gain": 1.0})
        s.connect(prev, f"c{k}")
        prev = f"c{k}"
    s.add_node("bus", "mix", {"channels": 1})
    s.connect("early", "mix")
    s.connect(prev, "mix")
    s.connect("x2", "mix")  # a hardware input summed straight into a bus
    db = (-1.0, -2.0, -3.0, -4.0)
    for k, g in enumerate(db):  # p_k is read only by eq e_k, inside one gang
        s.add_node("gain", f"p{k}", {"gain": g})
        s.connect("x1", f"p{k}")
        s.add_node("eq", f"e{k}", {"channels": 1})
        s.connect(f"p{k}", f"e{k}")
        s.connect(f"e{k}", "mix")
    s.add_node("output", "out", {"channels": 1})
    s.connect("mix", "out")
    s.commit()
    assert ("eq", 4) in s.gangs
    outputs = 1 + 12 + 1 + 2 * len(db)  # early, chain, mix, p and e (inputs: hw buffers)
    assert 0 < s.buffers < outputs
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((4096, 2)) * 0.02).astype(np.float32)  # under the ceiling
    y = run(e, 4096, 64, x)[:, 0].astype(np.float64)
    lin = lambda d: 10.0 ** (d / 20.0)  # noqa: E731
    want = (lin(-6.0) + sum(lin(g) for g in db)) * x[:, 0] + (lin(12.0) + 1.0) * x[:, 1]
    assert np.max(np.abs(y - want)) < 1e-5


def test_worst_block_since_the_start_survives_a_window_take():
    """/status worst_us is documented as the slowest call since the start; the
    terminal's status line takes the window's worst every 0.25 s, and that used
    to reset it too."""
    e = Engine(48000, 0, 2)
    for _ in range(50):
        e.process(64)
    first = e.take_worst_us()
    assert first > 0.0
    assert e.stats().worst_us == first  # the start's figure is kept
    assert e.take_worst_us() == 0.0  # a new window: nothing run since
    e.process(64)
    assert 0.0 < e.take_worst_us() <= e.stats().worst_us


def test_recent_worst_is_the_slowest_block_of_the_last_ten_seconds():
    from mixgraph.server.engine import RecentWorst

    class Windows:  # stands in for the engine: each take gives the next window's worst
        def __init__(self, seq):
            self.seq = list(seq)

        def take_worst_us(self):
            return self.seq.pop(0) if self.seq else 0.0

    r = RecentWorst(Windows([900.0, 50.0, 40.0]), seconds=10)
    assert r.tick(100.2) == 900.0
    assert r.tick(100.7) == 900.0  # same second
    assert r.tick(105.0) == 900.0  # 5 s later, still inside the window
    assert r.tick(110.1) == 40.0  # second 100 left the window; 105's 40 is the worst
    r2 = RecentWorst(Windows([900.0] + [10.0] * 30), seconds=10)
    r2.tick(0.5)
    for t in range(1, 10):
        assert r2.tick(t + 0.5) == 900.0
    assert r2.tick(10.5) == 10.0  # second 0 left the window
    assert r2.tick(40.0) == 10.0  # a long gap clears every slot but the new one
