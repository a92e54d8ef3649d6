"""Folded sends: while an aux send's parameters are steady and every
connection out of it is a steady unity push into a bus, the engine adds the
send's input times its level into the bus itself and the send node does not
run (csrc/engine.c, fold_step). The contract is that this changes nothing:
the output must equal, bit for bit, what the send nodes give when they run
(Engine.set_ganging(False) turns folding off with ganging). The patch mixes
what decides whether a send folds: post- and pre-fader, mono and stereo,
level and mode ramps, the send switched off (a zero gain) and back, a send
that is its bus's only input (read in place, never folded), a send whose
output also goes straight to an output (not only pushes), connections fading
in and out mid-render, and non-finite input samples.

The parallel form (--threads N) folds the same sends: the send's atom
decides, and the products are added where its pushes are mixed (a bus's
push segment); its output must be the same bits as one thread's."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server._core import lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
N = 6  # strips


def _signals(n: int) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((n, N)) * 0.1).astype(np.float32)
    x[3000:3004, 2] = np.nan
    x[5000:5002, 4] = np.inf
    return x


LATENT = {0: 200, 3: 77}  # strip -> the latency a node at its head declares


def _build(s: Session, latent: bool = False) -> None:
    s.add_node("bus", "auxa", {"channels": 2})
    s.add_node("bus", "auxb", {"channels": 2})
    s.add_node("bus", "solo", {"channels": 2})
    s.add_node("output", "outa", {"first": 1, "channels": 2})
    s.add_node("output", "outb", {"first": 3, "channels": 2})
    s.add_node("output", "outs", {"first": 5, "channels": 2})
    s.add_node("output", "direct", {"first": 7, "channels": 2})
    for a, b in (("auxa", "outa"), ("auxb", "outb"), ("solo", "outs")):
        s.connect(a, b)
    for i in range(N):
        s.add_node("input", f"in{i}", {"first": i + 1, "channels": 1})
        s.add_node("pan", f"pan{i}", {"pan": -0.8 + 0.3 * i})
        s.add_node("gain", f"fader{i}", {"channels": 2, "gain": -3.0 - i})
        s.add_node("send", f"sa{i}", {"channels": 2, "level": -12.0 + i})
        s.add_node("send", f"sb{i}", {"channels": 2, "level": -6.0, "mode": i % 2})
        head = f"in{i}"
        if latent and i in LATENT:  # a gain declaring latency (no real delay): the
            s.add_node("gain", f"slow{i}")  # other strips' sends reach the buses
            s.connect(head, f"slow{i}")  # through delay groups
            s.set_latency(f"slow{i}", LATENT[i])
            head = f"slow{i}"
        for a, b in ((head, f"pan{i}"), (f"pan{i}", f"fader{i}"),
                     (f"fader{i}", f"sa{i}:post"), (f"pan{i}", f"sa{i}:pre"),
                     (f"fader{i}", f"sb{i}:post"), (f"pan{i}", f"sb{i}:pre"),
                     (f"sa{i}", "auxa"), (f"sb{i}", "auxb")):
            s.connect(a, b)
    # a mono send alone into its bus: read in place there, never folded
    s.add_node("send", "lone", {"channels": 1, "level": -9.0})
    s.connect("in0", "lone:post")
    s.connect("lone", "solo")
    # a send that also feeds an output directly: not only pushes
    s.connect("sa5", "direct")
    s.commit()


def _automate(s: Session) -> None:
    s.set_param("sa1", "level", 3.0, time=7001)    # a level ramp
    s.set_param("sb2", "mode", 1, time=9000)        # post -> pre crossfade
    s.set_param("sa3", "on", 0, time=11000)         # off: a zero gain
    s.set_param("sa3", "on", 1, time=30000)         # and back on
    s.set_param("sb4", "level", -120.0, time=13000)  # all the way down
    s.set_param("lone", "level", 0.0, time=8000)


def _render(gang: bool, block: int, threads: int = 1,
            sched: tuple[float, float] | None = None, latent: bool = False) -> np.ndarray:
    n = RATE
    x = _signals(n)
    e = Engine(RATE, N, 8, threads=threads)
    assert e.threads == threads
    e.set_ganging(gang)
    if sched is not None:
        e.set_sched(*sched)
    s = Session(e)
    try:
        _build(s, latent)
        _automate(s)
        parts = [e.process(n // 4, x[: n // 4], block=block).copy()]
        s.connect("fader0", "auxa")  # a connection fading in mid-render
        s.disconnect("sb1", "auxb")  # and one fading out
        s.commit()
        parts.append(e.process(n // 4, x[n // 4: n // 2], block=block).copy())
        s.disconnect("fader0", "auxa")
        s.connect("sb1", "auxb")
        s.commit()
        parts.append(e.process(n // 2, x[n // 2:], block=block).copy())
        return np.concatenate(parts)
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("latent", [False, True])
@pytest.mark.parametrize("block", [64, 100])
def test_folded_sends_equal_sends_that_run_bit_for_bit(block, latent):
    """With `latent`, two strips declare latency, so the other strips' sends
    (and faders) reach the buses through delay groups: a send folds into its
    group's accumulator as it folds into a bus."""
    folded = _render(True, block, latent=latent)
    ran = _render(False, block, latent=latent)
    for c in range(6):  # the buses and the lone send pass signal
        assert np.abs(folded[:, c]).max() > 0.01, c
    for c in range(folded.shape[1]):
        np.testing.assert_array_equal(folded[:, c].view(np.uint32), ran[:, c].view(np.uint32),
                                      err_msg=f"output channel {c}")


# the workers' path on every cycle: with a worker (0, 0), and every unit on
# the audio thread alone (0, -2)
@pytest.mark.parametrize("latent", [False, True])
@pytest.mark.parametrize("block,sched", [(64, (0.0, 0.0)), (100, (0.0, 0.0)), (64, (0.0, -2.0))])
def test_parallel_form_folds_bit_for_bit(block, sched, latent):
    one = _render(True, block, latent=latent)
    two = _render(True, block, threads=2, sched=sched, latent=latent)
    ran = _render(False, block, threads=2, sched=sched, latent=latent)
    for c in range(one.shape[1]):
        np.testing.assert_array_equal(two[:, c].view(np.uint32), one[:, c].view(np.uint32),
                                      err_msg=f"output channel {c}, 2 threads folded")
        np.testing.assert_array_equal(ran[:, c].view(np.uint32), one[:, c].view(np.uint32),
                                      err_msg=f"output channel {c}, 2 threads, sends run")


@pytest.mark.parametrize("latent", [False, True])
def test_parallel_form_folds_the_steady_sends(latent):
    """After the automation has settled, every steady send whose outputs only
    go into buses folds on the workers' path; none does without ganging.
    With `latent`, most sends feed a delay group, and fold into it (before,
    a send into a delay group never folded: 2 of the 11 here did)."""
    for gang, want in ((True, 2 * N), (False, 0)):
        e = Engine(RATE, N, 8, threads=2)
        e.set_ganging(gang)
        e.set_sched(0.0, 0.0)
        s = Session(e)
        try:
            _build(s, latent)
            if latent:
                assert sorted((g.dst.g.name, g.delay) for g in s.groups.values()) == [
                    ("auxa", 123), ("auxa", 200), ("auxb", 123), ("auxb", 200),
                    ("direct", 200), ("outs", 200)]
            e.process(RATE // 10, _signals(RATE // 10), block=64)
            plan = list(s._plans.values())[-1].ptr
            assert lib.mg_plan_units(plan) > 2
            # sa5 also feeds an output directly and the lone send is read in
            # place: neither folds; sa*, sb* of the other strips do. With
            # `latent`, sa5's connection to the output is delayed (an output
            # aligns to the graph's latency): a group member, pushed, so sa5
            # folds too
            assert lib.mg_plan_par_folded(plan) == (want - (not latent) if gang else 0)
        finally:
            s.close()
            e.free()


def test_sends_into_delay_groups_match_gain_delay_sum():
    """The outside reference for a folded send into a delay group: mono strips
    in_i -> [a node declaring latency L_i, no real delay] -> fader_i -> send_i
    -> aux -> out, the aux sum computed in float64 as
        aux[t] = sum_i level_i * fader_i * x_i[t - (max L - L_i)].
    Tolerance: 1e-6 of the signal's peak (float32 products and a 6-term sum
    round to a few 1e-8 here; a sample of misalignment or a lost gain is
    ~1e-1)."""
    n, lat = RATE // 4, {1: 300, 4: 45}
    lvl = [-12.0 + 2 * i for i in range(N)]
    fdr = [-1.0 - i for i in range(N)]
    x = _signals(n)
    x[~np.isfinite(x)] = 0.0
    for threads in (1, 2):
        e = Engine(RATE, N, 1, threads=threads)
        if threads == 2:
            e.set_sched(0.0, 0.0)
        s = Session(e)
        try:
            s.add_node("bus", "aux", {"channels": 1})
            s.add_node("output", "out", {"channels": 1})
            s.connect("aux", "out")
            for i in range(N):
                s.add_node("input", f"in{i}", {"first": i + 1, "channels": 1})
                s.add_node("gain", f"slow{i}")
                s.add_node("gain", f"fader{i}", {"gain": fdr[i]})
                s.add_node("send", f"snd{i}", {"level": lvl[i]})
                for a, b in ((f"in{i}", f"slow{i}"), (f"slow{i}", f"fader{i}"),
                             (f"fader{i}", f"snd{i}:post"), (f"snd{i}", "aux")):
                    s.connect(a, b)
                if i in lat:
                    s.set_latency(f"slow{i}", lat[i])
            s.commit()
            assert sorted(g.delay for g in s.groups.values()) == [255, 300]
            y = e.process(n, x, block=64)[:, 0].astype(np.float64)
            if threads == 2:
                assert lib.mg_plan_par_folded(list(s._plans.values())[-1].ptr) == N
        finally:
            s.close()
            e.free()
        top = max(lat.values())
        want = np.zeros(n)
        for i in range(N):
            d = top - lat.get(i, 0)
            want[d:] += 10 ** (lvl[i] / 20) * 10 ** (fdr[i] / 20) * x[: n - d, i].astype(np.float64)
        assert np.abs(want).max() > 0.1
        err = np.abs(y - want).max()
        assert err <= 1e-6 * np.abs(want).max(), (threads, err)


def _render_sets(gang: bool) -> np.ndarray:
    """_build's session with sends' parameters set between engine calls: each
    set lands at a block's start, so the block is not split and one thread
    runs it through the prebuilt calls (engine.c run_calls), which ask a
    send's fold again only when its parameter values changed."""
    n = 64 * 4
    x = _signals(n * 90)
    e = Engine(RATE, N, 8)
    e.set_ganging(gang)
    s = Session(e)
    try:
        _build(s)
        parts = []
        for k in range(90):
            i = k % N
            if k % 3 == 0:
                s.set_param(f"sa{i}", "on", float((k // 3) % 2))  # a jump to off, back on
            elif k % 3 == 1:
                s.set_param(f"sb{i}", "level", -30.0 + k % 20)   # a level move (smoothed)
            if k == 45:
                s.set_param("sb3", "mode", 0.0 if 3 % 2 else 1.0)  # pre <-> post
            parts.append(e.process(n, x[k * n: (k + 1) * n], block=64).copy())
        return np.concatenate(parts)
    finally:
        s.close()
        e.free()


def test_folds_follow_sets_between_calls_bit_for_bit():
    """Every parameter change reaches the folded sends' gains at the block it
    lands in (on, level, mode set at block boundaries), the same bits as
    sends that run (ganging off: nothing folds)."""
    folded = _render_sets(True)
    ran = _render_sets(False)
    assert np.abs(folded[:, :4]).max() > 0.01
    for c in range(folded.shape[1]):
        np.testing.assert_array_equal(folded[:, c].view(np.uint32), ran[:, c].view(np.uint32),
                                      err_msg=f"output channel {c}")
