"""Gangs: the engine runs independent nodes of one type together through the
type's process_many (SIMD across channel strips). The contract is that this
changes nothing: every output must equal, bit for bit, what each node gives
when it runs by itself (Engine.set_ganging(False)). The patch mixes every
case the ganged code paths distinguish: lane counts that are not multiples
of the vector width, different section counts, stereo nodes, linked and
unlinked detectors, silent and hot inputs, non-finite samples, and
parameters moving (ramps) and switching in the middle of the render."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
N = 11  # strips: not a multiple of 4 (eq lanes) or 8 (compressor lanes)

EQS = [
    {"hpon": 1, "hpfreq": 80.0, "b1on": 1, "b1gain": 2.0, "b2on": 1, "b2gain": -3.0,
     "b3on": 1, "b3gain": 2.0, "b3q": 1.5, "b4on": 1, "b4gain": 1.5},
    {"hpon": 1, "hpslope": 2, "hpfreq": 120.0, "b2on": 1, "b2gain": 4.0},  # 5 sections
    {"hpon": 0, "lpon": 1, "lpslope": 1, "b1on": 1, "b1gain": -6.0},       # 3 sections
    {"b1on": 0, "b2on": 0, "b3on": 0, "b4on": 0},                           # nothing on
    {"hpon": 1, "b1on": 1, "b1gain": 0.0},                                  # a 0 dB band
]
COMPS = [
    {"threshold": -18.0, "ratio": 4.0, "knee": 6.0, "attack": 5.0, "release": 100.0, "makeup": 3.0},
    {"threshold": -30.0, "ratio": 10.0, "knee": 0.0, "attack": 0.5, "release": 50.0},
    {"threshold": -24.0, "ratio": 2.0, "detect": 1, "mix": 60.0, "auto": 1},
    {"threshold": -6.0, "ratio": 3.0},  # rarely compresses: the constant-gain path
]


def _signals(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(n) / RATE
    x = np.zeros((n, N + 2), np.float32)
    for c in range(N + 2):
        level = 10 ** (rng.uniform(-40, 0) / 20)
        burst = (np.sin(2 * np.pi * (1.5 + c) * t) > 0).astype(np.float32)  # gaps and attacks
        x[:, c] = rng.standard_normal(n) * level * burst
    x[:, 4] = 0.0                                   # a silent strip
    x[:, 6] = np.sign(np.sin(2 * np.pi * 50 * t))  # full-scale square
    x[1000:1010, 7] = np.nan                        # non-finite samples
    x[2000:2003, 7] = np.inf
    return x


def _build(s: Session) -> None:
    for i in range(N):
        stereo = i in (2, 9)
        ch = 2 if stereo else 1
        s.add_node("input", f"in{i}", {"first": i + 1, "channels": ch})
        s.add_node("eq", f"eq{i}", {"channels": ch, **EQS[i % len(EQS)]})
        comp = dict(COMPS[i % len(COMPS)])
        if i == 9:
            comp["link"] = 50.0  # two detectors: runs alone inside the gang
        if i == 10:  # keyed from the next input, through the key high-pass
            comp.update(sidechain=1, keyhpon=1, keyhp=150.0)
        s.add_node("compressor", f"comp{i}", {"channels": ch, **comp})
        s.add_node("output", f"out{i}", {"first": 2 * i + 1, "channels": ch})
        for a, b in ((f"in{i}", f"eq{i}"), (f"eq{i}", f"comp{i}"), (f"comp{i}", f"out{i}")):
            s.connect(a, b)
    s.add_node("input", "keysrc", {"first": N + 2, "channels": 1})
    s.connect("keysrc", "comp10:key")
    s.commit()


def _automate(s: Session) -> None:
    """Moves and switches in the middle of blocks, on some strips only."""
    s.set_param("eq0", "b2gain", 6.0, time=9000)
    s.set_param("eq1", "hpfreq", 300.0, time=12345)
    s.set_param("eq2", "hpon", 1, time=15000)       # a unit crossfading in
    s.set_param("eq5", "b1type", 3, time=20000)     # a type change crossfade
    s.set_param("comp0", "threshold", -40.0, time=10001)
    # several parameters of one node ramping at once, from an odd frame: a
    # lone node packs their ramps side by side in the engine's scratch
    # (node_ramps), a gang member writes them to its own ramp_mem
    s.set_param("comp0", "makeup", 6.0, time=10001)
    s.set_param("comp0", "ratio", 8.0, time=10001)
    s.set_param("comp3", "attack", 20.0, time=17000)
    s.set_param("comp6", "makeup", -3.0, time=25000)


def _render(gang: bool, block: int) -> tuple[np.ndarray, list]:
    n = RATE
    e = Engine(RATE, N + 2, 2 * N + 2)
    e.set_ganging(gang)
    s = Session(e)
    try:
        _build(s)
        _automate(s)
        y = e.process(n, _signals(n), block=block).copy()
        return y, list(s.gangs)
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("block", [64, 100])
def test_ganged_equals_alone_bit_for_bit(block):
    ganged, gangs = _render(True, block)
    alone, _ = _render(False, block)
    # the eqs and compressors did run as gangs
    assert ("eq", N) in gangs and ("compressor", N) in gangs, gangs
    assert np.all(np.isfinite(ganged))
    assert np.abs(ganged).max() > 0.01  # the strips pass signal
    for c in range(ganged.shape[1]):
        np.testing.assert_array_equal(ganged[:, c], alone[:, c], err_msg=f"output channel {c}")


def test_gang_stops_where_a_member_feeds_another(sessions):
    """eq -> eq in series are not independent: they never share a gang."""
    s, e = sessions(1, 1)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("eq", "a", {"channels": 1, "b1gain": 3.0})
    s.add_node("eq", "b", {"channels": 1, "b1gain": 3.0})
    s.add_node("eq", "c", {"channels": 1, "b1gain": 3.0})
    s.add_node("output", "out", {"channels": 1})
    for a, b in (("in", "a"), ("in", "b"), ("a", "c"), ("b", "out"), ("c", "out")):
        s.connect(a, b)
    s.commit()
    assert s.gangs == [("eq", 2)]  # a and b together; c runs after them, alone


def _render_heads(gang: bool) -> tuple[np.ndarray, list]:
    """12 strips in -> eq -> compressor -> bus -> eq -> out, where three strips
    have one or two nodes more at their head (as denoise or autotune before
    the gate): their eqs become ready a wave or two after the others."""
    n = RATE // 4
    e = Engine(RATE, 12, 1)
    e.set_ganging(gang)
    s = Session(e)
    try:
        s.add_node("bus", "sum", {"channels": 1})
        s.add_node("eq", "m_eq", {"channels": 1, **EQS[1]})  # fed by the strips: alone
        s.add_node("output", "out", {"channels": 1})
        s.connect("sum", "m_eq")
        s.connect("m_eq", "out")
        for i in range(12):
            s.add_node("input", f"in{i}", {"first": i + 1, "channels": 1})
            head = f"in{i}"
            for k in range({2: 1, 5: 1, 7: 2}.get(i, 0)):
                s.add_node("gain", f"h{i}_{k}", {"gain": -1.0})
                s.connect(head, f"h{i}_{k}")
                head = f"h{i}_{k}"
            s.add_node("eq", f"eq{i}", {"channels": 1, **EQS[i % len(EQS)]})
            s.add_node("compressor", f"comp{i}", {"channels": 1, **COMPS[i % len(COMPS)]})
            for a, b in ((head, f"eq{i}"), (f"eq{i}", f"comp{i}"), (f"comp{i}", "sum")):
                s.connect(a, b)
        s.commit()
        return e.process(n, _signals(n)[:, :12], block=64).copy(), list(s.gangs)
    finally:
        s.close()
        e.free()


def test_strips_with_more_nodes_at_their_head_share_one_gang():
    """The plan's order lets the eqs (and compressors) of strips that reach
    them later wait for the rest: one gang of 12 each, not 9 + 2 + 1 (the
    waves of a topological sort put the longer strips' eqs in later waves;
    in the hard mix, 54 + 10 eqs: 9 vectors of 8 lanes instead of 8). The
    output is the nodes' run alone, bit for bit."""
    ganged, gangs = _render_heads(True)
    alone, _ = _render_heads(False)
    assert gangs == [("eq", 12), ("compressor", 12)], gangs
    assert np.abs(ganged).max() > 0.01
    np.testing.assert_array_equal(ganged.view(np.uint32), alone.view(np.uint32))


def _render_regroup(gang: bool) -> np.ndarray:
    """17 mono eqs of 5 sections: two full gangs of eight and one lane. One
    eq of the first gang drops a band for a while and takes it back, so the
    lanes after it shift into other gangs and then return to the ones they
    left (whose cached states they must not find again)."""
    n, k = RATE // 2, 17
    e = Engine(RATE, k, k)
    e.set_ganging(gang)
    s = Session(e)
    try:
        for i in range(k):
            s.add_node("input", f"in{i}", {"first": i + 1, "channels": 1})
            s.add_node("eq", f"eq{i}", {"channels": 1, **EQS[0]})
            s.add_node("output", f"out{i}", {"first": i + 1, "channels": 1})
            s.connect(f"in{i}", f"eq{i}")
            s.connect(f"eq{i}", f"out{i}")
        s.commit()
        s.set_param("eq2", "b4on", 0, time=4000)
        s.set_param("eq2", "b4on", 1, time=12000)
        x = np.random.default_rng(5).standard_normal((n, k)).astype(np.float32) * 0.3
        return e.process(n, x, block=64).copy()
    finally:
        s.close()
        e.free()


def test_gang_regrouped_lanes_keep_their_states():
    ganged, alone = _render_regroup(True), _render_regroup(False)
    assert np.abs(ganged).max() > 0.01
    for c in range(ganged.shape[1]):
        np.testing.assert_array_equal(ganged[:, c], alone[:, c], err_msg=f"output channel {c}")


def _render_noise(gang: bool, block: int) -> tuple[np.ndarray, list]:
    """Nine noise sources (mono and stereo, one with its level moving) into
    outputs: the noise gang steps four channels' generator chains together."""
    k = 9
    e = Engine(RATE, 0, 2 * k)
    e.set_ganging(gang)
    s = Session(e)
    try:
        for i in range(k):
            ch = 2 if i in (1, 6) else 1
            s.add_node("noise", f"nz{i}", {"seed": 11 + i, "level": -30.0 + i, "channels": ch})
            s.add_node("output", f"out{i}", {"first": 2 * i + 1, "channels": ch})
            s.connect(f"nz{i}", f"out{i}")
        s.commit()
        s.set_param("nz3", "level", -6.0, time=5000)  # a ramp: that node runs alone
        return e.process(RATE // 2, None, block=block).copy(), list(s.gangs)
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("block", [64, 100])
def test_noise_ganged_equals_alone_bit_for_bit(block):
    """Block 100 is not a multiple of the eight generator lanes: every other
    block starts mid-way through the lanes, where a node runs alone."""
    ganged, gangs = _render_noise(True, block)
    alone, _ = _render_noise(False, block)
    assert ("noise", 9) in gangs, gangs
    assert np.abs(ganged).max() > 0.01
    for c in range(ganged.shape[1]):
        np.testing.assert_array_equal(ganged[:, c], alone[:, c], err_msg=f"output channel {c}")


def _render_fused(gang: bool, block: int) -> tuple[np.ndarray, list[float]]:
    """37 mono compressors of the usual strip kind (peak, own input, nothing
    moving), which the gang runs 8 lanes at a time over frame-major vectors
    (nodes/compressor.c fused_group): four full groups and a part one, each
    compressor with its own curve, times and makeup; some inputs silent or
    too quiet to compress (det_pre's constant-gain case, whose detector
    state must stay as it is), one full-scale square, one with NaN and Inf;
    one compressor's makeup moves for a while (it leaves the fused lanes and
    comes back)."""
    k = 37
    rng = np.random.default_rng(11)
    n = RATE // 2
    t = np.arange(n) / RATE
    x = np.zeros((n, k), np.float32)
    for c in range(k):
        burst = (np.sin(2 * np.pi * (0.9 + 0.37 * c) * t) > 0).astype(np.float32)
        x[:, c] = rng.standard_normal(n) * 10 ** (rng.uniform(-50, 0) / 20) * burst
    x[:, 5] = 0.0
    x[:, 12] = np.sign(np.sin(2 * np.pi * 60 * t))
    x[3000:3010, 20] = np.nan
    x[6000:6002, 20] = -np.inf
    e = Engine(RATE, k, k)
    e.set_ganging(gang)
    s = Session(e)
    try:
        for i in range(k):
            s.add_node("input", f"in{i}", {"first": i + 1, "channels": 1})
            s.add_node("compressor", f"c{i}", {
                "threshold": float(rng.uniform(-50, -5)), "ratio": float(rng.uniform(1, 20)),
                "knee": float(rng.choice([0.0, 3.0, 12.0])), "attack": float(rng.uniform(0.1, 30)),
                "release": float(rng.uniform(10, 500)), "makeup": float(rng.uniform(-6, 12)),
                "auto": int(i % 3 == 0), "mix": 100.0 if i % 4 else 70.0})
            s.add_node("output", f"out{i}", {"first": i + 1, "channels": 1})
            s.connect(f"in{i}", f"c{i}")
            s.connect(f"c{i}", f"out{i}")
        s.commit()
        s.set_param("c7", "makeup", 6.0, time=9000)
        y = e.process(n, x, block=block).copy()
        s.service()
        return y, [s.readout(f"c{i}", "gr")[0] for i in range(k)]
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("block", [64, 100])
def test_fused_compressor_lanes_equal_alone_bit_for_bit(block):
    ganged, gr_g = _render_fused(True, block)
    alone, gr_a = _render_fused(False, block)
    assert np.all(np.isfinite(ganged))
    assert min(gr_g) < 0.5  # some compress hard
    assert gr_g == gr_a
    for c in range(ganged.shape[1]):
        np.testing.assert_array_equal(ganged[:, c], alone[:, c], err_msg=f"output channel {c}")


def _render_gates(gang: bool, block: int) -> tuple[np.ndarray, list, list[float]]:
    """13 gates side by side: mono ones on bursts (opening, holding, closing;
    the steady-open chunks that find the hold restart from the key itself),
    one with the key high-pass and low-pass, a stereo one, one keyed from
    another input, one whose threshold and range move, one on a silent
    input and one with NaN and Inf samples."""
    k = 13
    rng = np.random.default_rng(5)
    n = RATE // 2
    t = np.arange(n) / RATE
    x = np.zeros((n, k + 2), np.float32)
    for c in range(k + 2):
        burst = (np.sin(2 * np.pi * (2.1 + 0.53 * c) * t) > 0.3).astype(np.float32)
        x[:, c] = rng.standard_normal(n) * 10 ** (rng.uniform(-40, -6) / 20) * burst
    x[:, 4] = 0.0
    x[4000:4010, 6] = np.nan
    x[7000:7003, 6] = np.inf
    e = Engine(RATE, k + 2, k + 2)
    e.set_ganging(gang)
    s = Session(e)
    try:
        for i in range(k):
            ch = 2 if i == 9 else 1
            g = {"threshold": float(rng.uniform(-50, -20)), "hysteresis": float(rng.uniform(0, 12)),
                 "range": float(rng.uniform(-90, -10)), "attack": float(rng.uniform(0.05, 5)),
                 "hold": float(rng.choice([0.0, 5.0, 40.0])), "release": float(rng.uniform(5, 300))}
            if i == 3:
                g.update(keyhpon=1, keyhp=200.0, keylpon=1, keylp=4000.0)
            if i == 11:
                g.update(sidechain=1)
            s.add_node("input", f"in{i}", {"first": i + 1, "channels": ch})
            s.add_node("gate", f"g{i}", {"channels": ch, **g})
            s.add_node("output", f"out{i}", {"first": i + 1, "channels": ch})
            s.connect(f"in{i}", f"g{i}")
            s.connect(f"g{i}", f"out{i}")
        s.add_node("input", "key", {"first": k + 2, "channels": 1})
        s.connect("key", "g11:key")
        s.commit()
        s.set_param("g2", "threshold", -15.0, time=9001)
        s.set_param("g2", "range", -40.0, time=9001)
        y = e.process(n, x, block=block).copy()
        s.service()
        return y, list(s.gangs), [s.readout(f"g{i}", "gr")[0] for i in range(k)]
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("block", [64, 100])
def test_gates_ganged_equal_alone_bit_for_bit(block):
    ganged, gangs, gr_g = _render_gates(True, block)
    alone, _, gr_a = _render_gates(False, block)
    assert ("gate", 13) in gangs, gangs
    assert np.all(np.isfinite(ganged))
    assert max(gr_g) == 0.0 and min(gr_g) < -6.0  # dB: some open, some closed at the end
    assert gr_g == gr_a
    for c in range(ganged.shape[1]):
        np.testing.assert_array_equal(ganged[:, c], alone[:, c], err_msg=f"output channel {c}")
