"""The graph on several threads (`--threads N`, csrc/pool.c, csrc/workers.c):
the audio thread and its workers run a plan's independent units at once, and
the output must be the very samples one thread makes, bit for bit, for every
patch: the mix64 session (64 channels, sends, delay-compensated buses, the
limiter and meters), the hard mix (denoise, autotune), the gang patch of
tests/test_gang.py, and random graphs with fan-outs, buses, delay groups and
several output nodes adding into one hardware channel. Edits during the
render (parameter sets at odd samples, taper ramps, fades of new and removed
connections, plan swaps) take the same paths on every thread count.

The scheduling modes (Engine.set_sched) give the same samples too: workers
woken for every cycle and sleeping at once (0, 0), the defaults (a short spin
within a cycle; small cycles on the audio thread alone, the one-thread path),
and every other cycle on one thread (-1), which switches paths between
cycles."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mixgraph.server import ramps
from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine, default_threads
from mixgraph.server.render import render
from mixgraph.server.session import Session
from mixgraph.server.state import write_patch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from mix64 import build_mix64  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_gang  # noqa: E402

RATE = 48000


def _units(s: Session) -> int:
    """Units of work of the session's newest plan (0: it runs on one thread)."""
    rec = list(s._plans.values())[-1]
    return lib.mg_plan_units(rec.ptr)


def _same(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape
    bad = np.flatnonzero((a.view(np.uint32) != b.view(np.uint32)).any(axis=1))
    assert bad.size == 0, f"{what}: first differing frame {bad[0]} of {len(a)}"


ALWAYS = (0.0, 0.0)     # workers on every cycle, no spin
DEFAULT = None           # the engine's defaults
ALTERNATE = (50.0, -1.0)  # every other cycle on the audio thread alone
SOLO = (0.0, -2.0)       # the workers' path, every unit on the audio thread


def _worker_units(e: Engine) -> tuple[int, int]:
    """(cycles handed to the workers, units a worker ran) since the trace was
    last read (mg_engine_trace)."""
    cap = 1 << 18
    t = ffi.new("double[]", cap)
    k, th, ar = (ffi.new("int[]", cap) for _ in range(3))
    n = lib.mg_engine_trace_read(e.ptr, t, k, th, ar, cap)
    cycles = sum(1 for i in range(n) if k[i] == 1)
    return cycles, sum(1 for i in range(n) if k[i] == 2 and th[i] != 0)


def _run(threads: int, build, edits, frames: int, block: int, hw_in: int = 0,
         hw_out: int = 2, inputs: np.ndarray | None = None,
         sched: tuple[float, float] | None = ALWAYS) -> tuple[np.ndarray, int]:
    """Render `frames` with the given threads; edits(s, k) runs before chunk k
    of 8 (same sample times on every thread count). Returns (output, units).
    sched: Engine.set_sched's arguments (None: the defaults)."""
    e = Engine(RATE, hw_in, hw_out, threads=threads)
    assert e.threads == threads
    s = Session(e)
    try:
        if sched is not None and threads > 1:
            e.set_sched(*sched)
        build(s)
        units = _units(s)
        chunk = frames // 8
        out = np.zeros((chunk * 8, hw_out), np.float32)
        for k in range(8):
            edits(s, k)
            s.service()
            x = None if inputs is None else inputs[k * chunk:(k + 1) * chunk]
            out[k * chunk:(k + 1) * chunk] = e.process(chunk, x, block=block)
        assert e.stats().rt_allocs == 0
        return out, units
    finally:
        s.close()
        e.free()


def _mix64_edits(n: int):
    def edits(s: Session, k: int) -> None:
        t = s.engine.time
        if k == 1:  # sets inside blocks: the block splits at each
            s.set_param("comp3", "threshold", -30.0, time=t + 1001)
            s.set_param("eq5", "b2gain", 6.0, time=t + 77)
            s.set_param("m_comp", "ratio", 4.0, time=t + 3333)
        elif k == 2:  # taper ramps on a strip fader and the master limiter
            ramps.ramp(s, f"fader{n - 1}", "gain", -30.0, 0.05, time=t + 50)
            ramps.ramp(s, "m_lim", "ceiling", -6.0, 0.1)
        elif k == 3:  # a removed connection fades out, a new one fades in: plan swaps
            s.disconnect("fader2", "master")
            s.connect("comp2", "revbus")
            s.commit()
        elif k == 5:  # a new strip, and a node removed
            s.add_node("noise", "late", {"seed": 99, "level": -12.0})
            s.add_node("gain", "late_g", {"gain": -3.0})
            s.connect("late", "late_g")
            s.connect("late_g", "master")
            s.remove_node("dsend7")
            s.commit()
        elif k == 6:
            s.set_param("verb", "decay", 4.0, time=t + 5)
    return edits


@pytest.mark.parametrize("block,sched", [(64, ALWAYS), (100, ALWAYS), (64, DEFAULT),
                                         (100, ALTERNATE), (64, SOLO)])
def test_mix64_two_threads_bit_identical(block, sched):
    n = 64
    frames = RATE // 2
    one, u1 = _run(1, lambda s: build_mix64(s, n), _mix64_edits(n), frames, block)
    two, u2 = _run(2, lambda s: build_mix64(s, n), _mix64_edits(n), frames, block,
                   sched=sched)
    assert u1 == 0 and u2 > 2, (u1, u2)  # one thread: the old path; two: units of work
    assert np.all(np.isfinite(one)) and np.abs(one).max() > 0.05
    _same(one, two, f"mix64 {n} ch, {block}-frame blocks, sched {sched}")


@pytest.mark.parametrize("sched,handed,alone,worker", [(ALWAYS, True, False, True),
                                                       ((50.0, 1e9), False, True, False),
                                                       (ALTERNATE, True, True, True),
                                                       (SOLO, True, False, False)])
def test_sched_modes_take_the_paths_they_say(sched, handed, alone, worker):
    """The modes do what the bit-identical tests rely on: cycles handed to
    the workers (and a worker runs units in them), or the one-thread path
    (no cycle published), or both; or cycles handed to the workers' path
    that the audio thread runs alone. A small session: the one-thread path is
    only tried for cycles that one thread surely finishes in time."""
    e = Engine(RATE, 0, 2, threads=2)
    s = Session(e)
    try:
        e.set_sched(*sched)
        build_mix64(s, 8)
        e.process(600 * 64, block=64)  # measured both ways (a trial every 256 cycles)
        assert lib.mg_engine_trace(e.ptr, 1) == 0
        blocks = 200
        e.process(blocks * 64, block=64)
        cycles, worker_units = _worker_units(e)
        assert (cycles > 0) == handed and (cycles < blocks) == alone, (cycles, blocks)
        # a worker takes part (a loaded machine may wake it late, cycle after cycle:
        # renders until it has or 120 s have passed, not a count a slow host uses up)
        deadline = time.monotonic() + 120.0
        while worker and worker_units == 0 and time.monotonic() < deadline:
            e.process(blocks * 64, block=64)
            worker_units += _worker_units(e)[1]
        lib.mg_engine_trace(e.ptr, 0)
        assert (worker_units > 0) == worker
    finally:
        s.close()
        e.free()


def test_limiter_detectors_split_across_threads_bit_identical():
    """The limiter runs its channels' true-peak detectors through mg_par_for:
    inside a cycle on several threads the idle thread, spinning in the
    cycle's tail, takes one. The master limiter driven 20 dB into limiting
    gives the very samples one thread makes, and the other thread did run
    detectors (the counter `helped`).

    For `helped` the workers take every cycle and spin up to 1 ms in its
    tail: with the defaults a loaded host made the workers' path measure
    slower, the audio thread kept the cycles (a trial of 8 in 256 or 2048),
    and the worker, woken late for those, never reached a limiter's job in
    10,000 blocks (`helped` 0 in 4 of 15 runs at load 6). Renders go on
    until a detector was helped or 120 s have passed, not a count of
    renders a slow host may use up."""
    def build(s: Session) -> None:
        build_mix64(s, 32)
        s.set_param("m_lim", "ceiling", -20.0)

    frames = RATE // 4
    one, _ = _run(1, build, lambda s, k: None, frames, 64)
    two, _ = _run(2, build, lambda s, k: None, frames, 64, sched=DEFAULT)
    assert np.abs(one).max() > 0.05
    _same(one, two, "mix64 32 ch, the master limiter limiting, 2 threads")
    e = Engine(RATE, 0, 2, threads=2)
    e.set_spin_adapt(False)  # on a loaded host the threads would stop spinning
    s = Session(e)
    try:
        build(s)
        e.set_sched(1000.0, 0.0)
        helped = 0
        deadline = time.monotonic() + 120.0
        while not helped and time.monotonic() < deadline:
            e.process(200 * 64, block=64)
            helped = sum(t["helped"] for t in e.par_stats())
        assert helped > 0, e.par_stats()
    finally:
        s.close()
        e.free()


def test_bus_returns_get_a_push_segment_of_their_own():
    """mix64 on 2 threads: the master bus's adds are cut into segments of
    whole root units of strips, and the reverb's and the delay's returns (2 x 2
    channels) come last in a segment of their own, so no fader's add waits
    for the reverb (before: 9 faders a segment, the last fader with the
    returns)."""
    e = Engine(RATE, 0, 2, threads=2)
    s = Session(e)
    try:
        build_mix64(s, 64)
        p = list(s._plans.values())[-1].ptr
        nu = lib.mg_plan_units(p)
        cap = 1 << 14
        sf_, af = ffi.new("int[]", nu + 2), ffi.new("int[]", nu + 2)
        su, ast, al, ak = (ffi.new("int[]", cap) for _ in range(4))
        assert lib.mg_plan_par_graph(p, sf_, su, af, ast, al, ak, cap) == nu
        kinds = [[(ffi.string(lib.mg_plan_step_type(p, ast[i])).decode(), ak[i], al[i])
                  for i in range(af[u], af[u + 1])] for u in range(nu)]
        verb = [u for u in range(nu) if any(t == "reverb" for t, _, _ in kinds[u])]
        assert len(verb) == 1
        after = [kinds[v][0] for v in (su[i] for i in range(sf_[verb[0]], sf_[verb[0] + 1]))]
        # the unit after the reverb starts with the master bus's last segment
        assert after == [("bus", -1, 4)], after
    finally:
        s.close()
        e.free()


def _atoms(s: Session) -> list[tuple[str, int, int]]:
    """(type, kind, members) of every atom of the session's newest plan's
    parallel form (kind 1: a gang slice, 0: a step, -1: a push segment)."""
    p = list(s._plans.values())[-1].ptr
    nu = lib.mg_plan_units(p)
    cap = 1 << 16
    sf_, af = ffi.new("int[]", nu + 2), ffi.new("int[]", nu + 2)
    su, ast, al, ak = (ffi.new("int[]", cap) for _ in range(4))
    assert lib.mg_plan_par_graph(p, sf_, su, af, ast, al, ak, cap) == nu
    return [(ffi.string(lib.mg_plan_step_type(p, ast[i])).decode(), ak[i], al[i])
            for i in range(af[nu])]


@pytest.mark.parametrize("channels,size", [(256, 32), (128, 32), (64, 16)])
def test_compressor_gang_slices_fill_its_lanes(channels, size):
    """The compressor runs its gangs 32 lanes at a time (nodes/compressor.c,
    fused_group): a slice of 16 runs half the lanes empty at the cost of 32
    (mix64 256 ch on 2 threads, the parallel form on one thread: compressors
    121 against 64 Mcycles over 1000 blocks, rdtsc). Slices are 32 when the
    gangs still give each thread two; 64 channels keep 16 (4 slices)."""
    e = Engine(RATE, 0, 2, threads=2)
    s = Session(e)
    try:
        build_mix64(s, channels)
        comp = [m for t, k, m in _atoms(s) if t == "compressor" and k == 1]
        assert comp and all(m == size for m in comp), comp
    finally:
        s.close()
        e.free()


def test_folding_sends_outputs_lie_after_the_pool_a_cycle_touches():
    """mix64 256 ch on 2 threads: the aux sends fold (their buses get
    input x level; docs/architecture.md, folds), so their 1024 outputs are
    written only in a cycle a send cannot fold. They get slots of their own
    after every other output's, so the slots a folding cycle touches are
    one run of about the one-thread pool's size (514), not 530 spread among
    1024 untouched ones. The samples with the sends not folding (ganging
    off: every send writes its outputs) are test_gang_patch_bit_identical's
    and test_fold.py's. The panners' and faders' outputs of the strips the
    form fuses (mg_pfz: written only in a cycle the strip cannot fuse; 1544
    slots in all) lie there too (tests/test_parfuse.py checks their samples)."""
    e = Engine(RATE, 0, 2, threads=2, block=64)
    s = Session(e)
    try:
        build_mix64(s, 256)
        p = list(s._plans.values())[-1].ptr
        total, fold = lib.mg_plan_par_buffers(p), lib.mg_plan_par_fold_buffers(p)
        assert lib.mg_plan_par_fused(p, ffi.NULL) == 256
        assert 1024 < fold <= 2048, fold
        assert total - fold <= 600, (total, fold)
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("gang", [True, False])
def test_mix64_sends_that_cannot_fold_bit_identical(gang):
    """mix64's aux sends written out (ganging off: no send folds) or
    unfolding for a while (a send level ramp): their outputs are the
    folding steps' own slots (csrc/pool.c), and the samples are one
    thread's."""
    n = 64

    def build(s: Session) -> None:
        s.engine.set_ganging(gang)
        build_mix64(s, n)

    def edits(s: Session, k: int) -> None:
        if k == 2:
            ramps.ramp(s, "rsend5", "level", -3.0, 0.05, time=s.engine.time + 33)
            ramps.ramp(s, f"dsend{n - 1}", "level", -40.0, 0.02)

    one, _ = _run(1, build, edits, RATE // 2, 64)
    two, units = _run(2, build, edits, RATE // 2, 64)
    assert units > 1
    _same(one, two, f"mix64, sends unfolding, ganging {gang}")


def test_hard_mix_two_and_three_threads_bit_identical():
    n = 24
    frames = RATE // 2
    none = _mix64_edits(n)
    one, _ = _run(1, lambda s: build_mix64(s, n, hard=True), none, frames, 64)
    for th in (2, 3):
        got, units = _run(th, lambda s: build_mix64(s, n, hard=True), none, frames, 64,
                          sched=ALTERNATE if th == 3 else ALWAYS)
        assert units > 2
        _same(one, got, f"hard mix, {th} threads")


def test_mix64_from_hardware_inputs_bit_identical():
    """Sources are the engine's input buffers (input nodes are no work)."""
    n = 32
    rng = np.random.default_rng(5)
    x = (rng.uniform(-1, 1, (RATE // 4, n)) * 0.2).astype(np.float32)
    build = lambda s: build_mix64(s, n, source="file")  # noqa: E731
    one, _ = _run(1, build, _mix64_edits(n), len(x), 64, hw_in=n, inputs=x)
    two, _ = _run(2, build, _mix64_edits(n), len(x), 64, hw_in=n, inputs=x)
    _same(one, two, "mix64 from inputs")


@pytest.mark.parametrize("gang", [True, False])
def test_gang_patch_bit_identical(gang):
    """tests/test_gang.py's patch: gangs cut into slices on several threads,
    and each member alone (ganging off); moving parameters, NaN input,
    sidechains, 12 output nodes."""
    n = RATE // 2
    x = test_gang._signals(n)
    hw_in, hw_out = test_gang.N + 2, 2 * test_gang.N + 2

    def build(s: Session) -> None:
        s.engine.set_ganging(gang)
        test_gang._build(s)
        test_gang._automate(s)

    one, _ = _run(1, build, lambda s, k: None, n, 64, hw_in, hw_out, x)
    two, units = _run(2, build, lambda s, k: None, n, 64, hw_in, hw_out, x)
    assert units > 1
    _same(one, two, f"gang patch, ganging {gang}")


def _random_graph(seed: int):
    """A random patch: sources, chains of light and heavy nodes, fan-outs,
    buses fed by many, a limiter (latency: delay groups at the joins), and
    several output nodes on the same hardware channels."""

    def build(s: Session) -> None:
        rnd = random.Random(seed)  # the same graph on every call
        names: list[str] = []
        for i in range(rnd.randint(3, 8)):
            s.add_node("noise", f"n{i}", {"seed": i + 1, "level": -18.0, "channels": 2})
            names.append(f"n{i}")
        kinds = [("gain", {"gain": -2.0}), ("eq", {"b1on": 1, "b1gain": 3.0}),
                 ("compressor", {"threshold": -30.0, "ratio": 3.0}),
                 ("limiter", {"ceiling": -3.0, "lookahead": 2.0}), ("bus", {}),
                 ("delay", {"time": 3.0, "mix": 50.0})]
        for j in range(rnd.randint(15, 40)):
            kind, opts = rnd.choice(kinds)
            name = f"x{j}"
            s.add_node(kind, name, {"channels": 2, **opts})
            for src in rnd.sample(names, k=min(len(names), rnd.choice([1, 1, 1, 2, 4]))):
                s.connect(src, name)
            names.append(name)
        for o in range(3):
            s.add_node("output", f"out{o}", {"channels": 2})
            for src in rnd.sample(names[-12:], k=3):
                s.connect(src, f"out{o}")
        s.commit()

    def edits(s: Session, k: int) -> None:
        if k == 4:
            s.set_param("n0", "level", -6.0, time=s.engine.time + 123)
    return build, edits


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_bit_identical(seed):
    build, edits = _random_graph(seed)
    one, _ = _run(1, build, edits, RATE // 8, 64)
    assert np.abs(one).max() > 0.001
    for th, sched in ((2, ALWAYS), (4, ALWAYS), (2, ALTERNATE)):
        got, units = _run(th, build, edits, RATE // 8, 64, sched=sched)
        assert units > 1
        _same(one, got, f"random graph {seed}, {th} threads, sched {sched}")


def test_null_clock_runs_on_workers():
    """Live on the null clock with workers: blocks run, nothing allocates on
    the audio thread or a worker, and the engine stops and frees cleanly."""
    e = Engine(RATE, 0, 2, threads=2)
    s = Session(e)
    try:
        build_mix64(s, 16)
        assert _units(s) > 1
        e.null_start(64)
        # blocks run at the clock's pace: ~375 in 0.5 s, fewer when a loaded host
        # starves the clock thread, so wait for them (a generous deadline)
        deadline = time.monotonic() + 60.0
        while e.stats().blocks <= 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        s.set_param("fader0", "gain", -20.0)
        s.service()
        while e.stats().blocks <= 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        e.null_stop()
        st = e.stats()
        assert st.blocks > 100 and st.rt_allocs == 0
        peak = s.readout("m_meter", "peak")
        assert max(peak) > -60.0  # the master meter saw the mix
    finally:
        s.close()
        e.free()


def test_render_cli_threads_same_file(tmp_path):
    e = Engine(RATE, 0, 2)
    s = Session(e)
    build_mix64(s, 16)
    doc = s.to_doc()
    s.close()
    e.free()
    patch = tmp_path / "mix.json"
    write_patch(doc, patch)
    outs = []
    for th in (1, 2):
        out = tmp_path / f"t{th}.wav"
        r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render", str(patch),
                            "-o", str(out), "--duration", "0.3", "--threads", str(th),
                            "--subtype", "FLOAT"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(sf.read(out, dtype="float32")[0])
    _same(outs[0], outs[1], "mixgraph render --threads 1 / 2")
    # the library call takes the same argument
    res = render(doc, tmp_path / "api.wav", duration_s=0.3, threads=2, subtype="FLOAT")
    assert res.failures == []
    _same(outs[0], sf.read(tmp_path / "api.wav", dtype="float32")[0], "render(threads=2)")


def test_threads_option_checked_and_default():
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render", "x.json",
                        "-o", "y.wav", "--threads", "0"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "--threads 0: expected 1..64" in r.stderr
    import os
    assert default_threads() == max(1, len(os.sched_getaffinity(0)) - 1)


def test_serve_with_two_threads(tmp_path):
    """`mixgraph serve --threads 2` on the null clock: a graph of parallel
    strips into a bus, edited over OSC while it plays; the meter reads what
    the formula says (a sine at -6 dBFS through two strips of -6 dB each: a
    peak of -6 dBFS, within 0.1 dB), and the daemon stops cleanly."""
    from daemon_util import Daemon

    d = Daemon(tmp_path / "state", "--backend", "null", "--threads", "2")
    try:
        # one sine into both strips: two sines added one block apart would be 120
        # degrees apart at 1 kHz (a block is 1.33 periods) and sum to -12 dBFS
        d.call("/graph/add", "sine", "osc", "freq", 1000.0, "level", -6.0)
        for i in range(2):
            d.call("/graph/add", "gain", f"g{i}", "gain", -6.0)
            d.call("/graph/connect", "osc", f"g{i}")
        d.call("/graph/add", "bus", "b", "channels", 1)
        d.call("/graph/add", "meter", "m", "channels", 1)
        d.call("/graph/add", "output", "out")
        for a, b in (("g0", "b"), ("g1", "b"), ("b", "m"), ("b", "out")):
            d.call("/graph/connect", a, b)
        deadline = time.monotonic() + 30
        peak = -200.0
        while time.monotonic() < deadline:
            peak = d.request("/node/m/peak")[1][0]
            if abs(peak - -6.0) < 0.1:
                break
            time.sleep(0.05)
        assert peak == pytest.approx(-6.0, abs=0.1)
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.stop()
