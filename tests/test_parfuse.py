"""Fused strip tails in the plan's parallel form (csrc/pool.c par_pfz,
csrc/engine.c pfz_run, mix_chain, seg_accumulate): a strip of a fused tail
whose panner, fader and sends are at rest runs nothing in the units; the
push segments (or the bus steps) add `x * pan * fader [* send]` from the
panner's input instead. The contract is that this changes nothing: every
output equals, bit for bit, the one-thread path fused and unfused
(Engine.set_fusing) and the parallel form unfused, on the workers' path run
on the audio thread alone (set_sched(0, -2): every cycle through the units)
and on two threads, with pans, faders, send levels and modes moving or
switching mid-render, inserts with and without latency (latency-compensated
buses), other send sets, and the mix64 session's gangs. The strips the form
fuses and the ones that ran fused in its last cycle are checked too
(mg_plan_par_fused), so a fusion that silently gives up fails here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from signals import assert_same_bits

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import test_mixfuse  # noqa: E402
import test_mixfuse_split  # noqa: E402
from mix64 import build_mix64  # noqa: E402

RATE = 48000
SOLO = (0.0, -2.0)    # the workers' path, every unit on the audio thread
ALWAYS = (0.0, 0.0)   # workers on every cycle

# (threads, fusing, sched): the one-thread path first (the reference)
MODES = [(1, True, None), (1, False, None), (2, True, SOLO), (2, False, SOLO),
         (2, True, ALWAYS)]


def _par_fused(s: Session) -> tuple[int, int]:
    """(strips the newest plan's parallel form may fuse, those that ran fused
    in its last cycle)."""
    p = list(s._plans.values())[-1].ptr
    on = ffi.new("int *")
    k = lib.mg_plan_par_fused(p, on)
    return k, on[0]


def _render(build, threads: int, fusing: bool, sched, n: int, hw_in: int, hw_out: int,
            signals: np.ndarray | None, automate=None,
            block: int = 64) -> tuple[np.ndarray, tuple[int, int]]:
    e = Engine(RATE, hw_in, hw_out, threads=threads, block=block)
    e.set_fusing(fusing)
    if sched is not None:
        e.set_sched(*sched)
    s = Session(e)
    try:
        build(s)
        if automate:
            automate(s)
        y = e.process(n, signals, block=block).copy()
        assert e.stats().rt_allocs == 0
        return y, _par_fused(s)
    finally:
        s.close()
        e.free()


def _all_modes(build, n: int, hw_in: int, hw_out: int, signals, automate=None,
               block: int = 64) -> dict:
    out = {}
    for th, fusing, sched in MODES:
        out[(th, fusing, sched)] = _render(build, th, fusing, sched, n, hw_in, hw_out,
                                           signals, automate, block)
    ref = out[MODES[0]][0]
    assert np.abs(np.nan_to_num(ref)).max() > 0.01  # the buses carry signal
    for mode, (y, _) in out.items():
        assert_same_bits(ref, y, f"threads {mode[0]}, fusing {mode[1]}, sched {mode[2]}")
    return out


@pytest.mark.parametrize("block", [64, 96, 100])
def test_parallel_fused_strips_moving_bit_for_bit(block):
    """test_mixfuse's console (11 strips, 2 post-fader sends) with its moves:
    a pan glide, a law crossfade, fader, mute, polarity and vca moves, a send
    level move, a send switched to pre-fader, one off, one at 0."""
    N = test_mixfuse.N
    out = _all_modes(lambda s: test_mixfuse._build(s), 48000, N, 6,
                     test_mixfuse._signals(48000), test_mixfuse._automate, block)
    k, on = out[(2, True, SOLO)][1]
    assert k == N  # every strip may run fused
    # at the end: s1_5 pre-fader, s0_8 off, s1_8 at 0 dB - 120 (its gain is
    # not 0: it folds), so strips 5 and 8 run their steps; the rest fused
    assert on == N - 2
    assert out[(2, False, SOLO)][1][1] == 0   # fusing off: none ran fused
    assert out[(1, True, None)][1] == (0, 0)  # one thread: no parallel form


@pytest.mark.parametrize("sends", [0, 1, 3])
def test_parallel_fused_each_count_of_sends(sends):
    N = test_mixfuse.N
    out = _all_modes(lambda s: test_mixfuse._build(s, sends=sends), 9600, N,
                     2 * (1 + sends), test_mixfuse._signals(9600))
    assert out[(2, True, SOLO)][1] == (N, N)
    assert out[(2, True, ALWAYS)][1] == (N, N)


@pytest.mark.parametrize("inserts,sends,fused", [
    ({}, {}, 16),
    ({i: "gain" for i in range(16)}, {}, 16),
    ({5: "gain"}, {}, None),                        # its panner a wave later
    ({i: "limiter" for i in (0, 9)}, {}, 16),      # latency: delay groups per bus
    ({i: "limiter" for i in range(16)}, {}, 16),
    ({}, {i: (0,) for i in range(4, 8)}, None),     # other send sets
    ({3: "limiter"}, {i: () for i in range(12, 16)}, None),
])
def test_parallel_fused_inserts_and_latency(inserts, sends, fused):
    """test_mixfuse_split's consoles: inserts without and with latency (the
    limiter's look-ahead: the other strips' pushes go into delay groups'
    accumulators), strips with other sends, a pan and faders moving."""
    N = test_mixfuse_split.N

    def build(s: Session) -> None:
        test_mixfuse_split._build(s, inserts, sends)

    def automate(s: Session) -> None:
        s.set_param("pan3", "pan", 0.5, time=6400)
        s.set_param("fader6", "gain", 2.0, time=9600)
        s.set_param("fader13", "gain", -3.0, time=14400)

    out = _all_modes(build, 19200, N, 2 * (1 + test_mixfuse_split.SENDS),
                     test_mixfuse_split._signals(19200), automate)
    k, on = out[(2, True, SOLO)][1]
    one_thread, _ = _one_thread_fused(build)
    assert k == one_thread  # every strip of the one-thread tails
    if fused is not None:
        assert k == fused
    assert on == k  # at rest at the end: all ran fused
    assert out[(2, True, ALWAYS)][1] == (k, k)


def _one_thread_fused(build) -> tuple[int, int]:
    e = Engine(RATE, 16, 6, threads=1, block=64)
    s = Session(e)
    try:
        build(s)
        p = list(s._plans.values())[-1].ptr
        tails = ffi.new("int *")
        return lib.mg_plan_fused_strips(p, tails), tails[0]
    finally:
        s.close()
        e.free()


def test_panner_fed_by_a_sum_runs_its_steps():
    """A panner whose input is a sum (two sources pushed into it) has pins of
    its own: the parallel form does not fuse that strip, and the samples
    stay the same. (The one-thread planner gives this console no tail at
    all today, so the form fuses none of it: the count is pinned to that.)"""
    N = test_mixfuse.N

    def build(s: Session) -> None:
        test_mixfuse._build(s)
        s.connect("in0", "pan1")
        s.commit()

    out = _all_modes(build, 9600, N, 6, test_mixfuse._signals(9600))
    k, on = out[(2, True, SOLO)][1]
    one_thread, _ = _one_thread_fused(build)
    assert on == k
    assert k == max(0, one_thread - 1) if one_thread else k == 0


@pytest.mark.parametrize("hard", [False, True])
def test_mix64_parallel_fused_bit_for_bit(hard):
    """mix64 (gated, eq'd, compressed strips in gangs; the hard mix's denoise
    and autotune: latency-compensated buses) with a fader ramp, a send level
    set and a pan move: 1 thread and the parallel form, fused and not."""
    ch = 64

    def build(s: Session) -> None:
        build_mix64(s, ch, hard)

    def automate(s: Session) -> None:
        s.set_param("fader7", "gain", -12.0, time=3000)
        s.set_param("rsend9", "level", -6.0, time=5001)
        s.set_param("pan11", "pan", 0.25, time=7000)

    n = 12800
    out = {}
    for th, fusing, sched in MODES:
        out[(th, fusing, sched)] = _render(build, th, fusing, sched, n, 0, 2, None, automate)
    ref = out[MODES[0]][0]
    assert np.abs(ref).max() > 0.01
    for mode, (y, _) in out.items():
        assert_same_bits(ref, y, f"mix64 hard={hard}: {mode}")
    assert out[(2, True, SOLO)][1] == (ch, ch)
    assert out[(2, True, ALWAYS)][1] == (ch, ch)
