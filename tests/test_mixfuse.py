"""Fused strip tails (csrc/layout.c mg_plan_fuse, csrc/engine.c fuse_run): a
run of panner -> fader -> bus pushes, with post-fader sends folded into their
buses, runs as one pass that keeps the buses' samples in registers. The
contract is that this changes nothing: every output equals, bit for bit, the
steps run one by one (Engine.set_fusing(False)), on one thread and on two,
with pans, faders, mutes, polarity, send levels and modes moving or
switching mid-render, strips muted, non-finite and negative-zero inputs; and
the buses hold the sums a float32 numpy mix of the same strips gives."""

from __future__ import annotations

import numpy as np
import pytest
from signals import assert_same_bits

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
N = 11  # strips


def _signals(n: int, strips: int = N) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((n, strips)) * 0.1).astype(np.float32)
    x[:, 3] = 0.0                       # a silent strip
    x[:, 0] = -0.0                      # the first contributor: d = v keeps -0
    x[1000:1010, 7] = np.nan            # non-finite samples
    x[2000:2003, 8] = np.inf
    return x


def _build(s: Session, strips: int = N, sends: int = 2, reverse_sends: bool = False,
           params: dict | None = None) -> None:
    """strips mono inputs -> pan -> fader -> master, and `sends` post-fader
    sends into their own buses; every bus straight to two outputs, so the
    outputs are the buses' sums."""
    buses = ["master"] + [f"aux{j}" for j in range(sends)]
    for j, b in enumerate(buses):
        s.add_node("bus", b, {"channels": 2})
        s.add_node("output", f"o_{b}", {"first": 2 * j + 1, "channels": 2})
        s.connect(b, f"o_{b}")
    params = params or {}
    for i in range(strips - 1, -1, -1) if reverse_sends else ():
        s.add_node("pan", f"pan{i}", {"pan": -1.0 + 2.0 * i / max(1, strips - 1)})
    for i in range(strips):
        s.add_node("input", f"in{i}", {"first": i + 1})
        if not reverse_sends:
            s.add_node("pan", f"pan{i}", {"pan": -1.0 + 2.0 * i / max(1, strips - 1),
                                          **params.get(f"pan{i}", {})})
        s.add_node("gain", f"fader{i}", {"channels": 2, "gain": -6.0 + i * 0.7,
                                         **params.get(f"fader{i}", {})})
        s.connect(f"in{i}", f"pan{i}")
        s.connect(f"pan{i}", f"fader{i}")
        s.connect(f"fader{i}", "master")
    order = range(strips - 1, -1, -1) if reverse_sends else range(strips)
    for i in order:  # made in reverse: the buses' adds not in strip order
        for j in range(sends):
            s.add_node("send", f"s{j}_{i}", {"channels": 2, "level": -12.0 - 3.0 * j - 0.5 * i,
                                             **params.get(f"s{j}_{i}", {})})
            s.connect(f"fader{i}", f"s{j}_{i}:post")
            s.connect(f"s{j}_{i}", f"aux{j}")
    s.commit()


def _automate(s: Session) -> None:
    """Moves and switches at block boundaries and in the middle of blocks."""
    s.set_param("pan2", "pan", 0.5, time=6400)             # a pan glide
    s.set_param("pan5", "law", 2, time=9000)                # a law crossfade
    s.set_param("fader1", "gain", 3.0, time=12800)          # a fader move
    s.set_param("fader4", "mute", 1, time=16000)            # a mute crossfade
    s.set_param("fader6", "polarity", 1, time=19200)        # polarity crossfade
    s.set_param("fader9", "vca", -10.0, time=20001)
    s.set_param("s0_3", "level", -3.0, time=22400)          # a send level move
    s.set_param("s1_5", "mode", 1, time=25600)              # post -> pre (not folded)
    s.set_param("s0_8", "on", 0, time=28800)                # a send switched off
    s.set_param("s1_8", "level", -120.0, time=30000)        # a send at 0 (writes +0)
    s.set_param("fader10", "gain", -120.0, time=33000)


def _fused(s: Session) -> tuple[int, int]:
    p = list(s._plans.values())[-1].ptr
    tails = ffi.new("int *")
    strips = lib.mg_plan_fused_strips(p, tails)
    return strips, tails[0]


def _render(fusing: bool, block: int, threads: int = 1, automate: bool = True,
            n: int = 48000, **kw) -> tuple[np.ndarray, tuple[int, int]]:
    strips = kw.get("strips", N)
    sends = kw.get("sends", 2)
    e = Engine(RATE, strips, 2 * (1 + sends), threads=threads, block=block)
    e.set_fusing(fusing)
    s = Session(e)
    try:
        _build(s, **kw)
        if automate:
            _automate(s)
        y = e.process(n, _signals(n, strips), block=block).copy()
        return y, _fused(s)
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("block", [64, 96])
def test_fused_equals_steps_bit_for_bit(block):
    fused, (strips, tails) = _render(True, block)
    steps, _ = _render(False, block)
    assert (strips, tails) == (N, 1)  # the tail was fused
    assert np.abs(np.nan_to_num(fused)).max() > 0.01  # the buses carry signal
    assert_same_bits(fused, steps)


@pytest.mark.parametrize("sends", [0, 1, 3])
def test_fused_each_count_of_sends(sends):
    fused, (strips, _) = _render(True, 64, sends=sends, automate=False, n=9600)
    steps, _ = _render(False, 64, sends=sends, automate=False, n=9600)
    assert strips == N
    assert_same_bits(fused, steps)


def test_nodes_made_in_another_order_equal():
    """Panners and sends made in reverse strip order: whatever order the plan
    runs them in, the pass (or the steps, where it cannot fuse: a bus's adds
    out of the panners' order) gives the same samples."""
    fused, _ = _render(True, 64, reverse_sends=True, n=9600)
    steps, _ = _render(False, 64, reverse_sends=True, n=9600)
    assert_same_bits(fused, steps)


@pytest.mark.parametrize("pre", [False, True])
def test_muted_and_inverted_strips_at_rest(pre):
    """Muted, inverted and 0 dB-law strips fuse; with one pre-fader send the
    tail runs its steps. Either way, the same samples."""
    params = {"fader2": {"mute": 1}, "fader5": {"polarity": 1}, "pan7": {"law": 3}}
    if pre:
        params["s1_4"] = {"mode": 1}
    fused, (strips, _) = _render(True, 64, automate=False, n=9600, params=params)
    steps, _ = _render(False, 64, automate=False, n=9600, params=params)
    assert strips == N
    assert_same_bits(fused, steps)


def test_one_and_two_threads_bit_for_bit():
    one, _ = _render(True, 64, threads=1)
    two, _ = _render(True, 64, threads=2)
    assert_same_bits(one, two)


def _render_rewired(fusing: bool, block: int) -> np.ndarray:
    """Two threads, 24 strips (push segments of several faders into every
    bus), automated; mid-render a fader leaves the master for aux0 and a
    new send fades in, so the segments' runs hold fading ops (added pin by
    pin) beside steady ones for a while, and the plan is swapped twice."""
    strips, n = 24, 4 * 9600
    e = Engine(RATE, strips, 6, threads=2, block=block)
    e.set_fusing(fusing)
    s = Session(e)
    x = _signals(n, strips)
    try:
        _build(s, strips=strips)
        _automate(s)
        parts = [e.process(9600, x[:9600], block=block).copy()]
        s.disconnect("fader5", "master")
        s.connect("fader5", "aux0")
        s.commit()
        parts.append(e.process(9600, x[9600:19200], block=block).copy())
        s.add_node("send", "s9_17", {"channels": 2, "level": -4.0})
        s.connect("fader17", "s9_17:post")
        s.connect("s9_17", "aux1")
        s.commit()
        parts.append(e.process(n - 19200, x[19200:], block=block).copy())
        return np.concatenate(parts)
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("block", [64, 96])
def test_two_threads_segments_one_pass_equal_pin_by_pin(block):
    """The parallel form's push segments added a destination at a time in
    one pass (csrc/engine.c seg_run) equal the pins added one by one
    (fusing off), and one thread, bit for bit."""
    fused = _render_rewired(True, block)
    pins = _render_rewired(False, block)
    assert np.abs(np.nan_to_num(fused)).max() > 0.01
    assert_same_bits(fused, pins)


def test_buses_are_the_float32_mix():
    """At rest, the outputs are what numpy gives for the same products and
    the same adds in strip order, in float32 (the gains from the nodes'
    formulas: -3 dB pan law, dB to amplitude)."""
    n, strips = 4096, 6
    x = (np.random.default_rng(5).standard_normal((n, strips)) * 0.1).astype(np.float32)
    e = Engine(RATE, strips, 6, block=64)
    s = Session(e)
    try:
        _build(s, strips=strips)
        assert _fused(s)[0] == strips
        y = e.process(n, x, block=64).copy()
    finally:
        s.close()
        e.free()
    acc = np.zeros((6, n), np.float32)
    for i in range(strips):
        pos = -1.0 + 2.0 * i / (strips - 1)
        th = (pos + 1.0) * np.pi / 4
        gl, gr = np.float32(np.cos(th)), np.float32(np.sin(th))
        f = np.float32(10 ** ((-6.0 + i * 0.7) / 20))
        l_ = (x[:, i] * gl) * f
        r_ = (x[:, i] * gr) * f
        terms = [l_, r_]
        for j in range(2):
            g = np.float32(10 ** ((-12.0 - 3.0 * j - 0.5 * i) / 20))
            terms += [l_ * g, r_ * g]
        for t in range(6):
            acc[t] = terms[t] if i == 0 else acc[t] + terms[t]
    # the gains are the engine's float32 roundings of the same formulas, to an
    # ulp or so: sums that cancel differ by ~1e-8 absolute; a strip or a send
    # missing, or a gain applied twice, is off by 1e-3 or more
    np.testing.assert_allclose(y.T, acc, rtol=1e-5, atol=1e-7)
