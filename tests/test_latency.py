"""Latency compensation: parallel paths meet phase-aligned at every fan-in.

Until a node type with latency exists in the tree, a node's declared latency
is overridden on the Python side (LiveNode.latency); the audio path then has
no real delay, so the compensated branch arrives exactly `latency` samples
late, which is what these tests pin."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server._core import ffi, lib
from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session


def parallel(latency: int) -> tuple[Engine, Session]:
    e = Engine(48000, 1, 1)
    s = Session(e)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "slow")
    s.add_node("gain", "fast")
    s.add_node("bus", "sum", {"channels": 1})
    s.add_node("output", "out", {"channels": 1})
    for a, b in (("in", "slow"), ("in", "fast"), ("slow", "sum"), ("fast", "sum"),
                 ("sum", "out")):
        s.connect(a, b)
    s.set_latency("slow", latency)
    s._dirty = True
    s.commit()
    return e, s


def test_edge_delay_line_is_exact():
    ed = lib.mg_edge_new_delayed(1.0, 2, 300)
    assert ed != ffi.NULL and lib.mg_edge_delay(ed) == 300
    lib.mg_edge_free(ed)
    assert lib.mg_edge_new_delayed(1.0, 0, 10) == ffi.NULL  # bad channel count refused


def test_parallel_paths_are_aligned():
    e, s = parallel(137)
    assert s.latencies() == {"in": 0, "slow": 137, "fast": 0, "sum": 137, "out": 137}
    assert s.edges[next(c for c in s.edges if c.src == "fast")].delay == 137
    assert all(ed.delay == 0 for c, ed in s.edges.items() if c.src != "fast")
    x = np.zeros((2048, 1), np.float32)
    x[10] = 1.0
    y = e.process(2048, x, block=64)[:, 0]
    # the slow path has no real delay here, so: impulse at 10 (slow) and at 10+137 (fast)
    assert y[10] == 1.0 and y[147] == 1.0
    assert np.count_nonzero(y) == 2


def test_compensation_follows_graph_changes_without_clicks():
    e, s = parallel(0)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((9600, 1)) * 0.1).astype(np.float32)
    e.process(4800, x[:4800], block=64)
    s.set_latency("slow", 64)
    s._dirty = True
    s.service()
    y = e.process(4800, x[4800:], block=64)[:, 0]
    for _ in range(20):
        s.service()
        e.process(64, None, block=64)
    s.service()
    fast = next(ed for c, ed in s.edges.items() if c.src == "fast")
    assert fast.delay == 64
    # during the 5 ms crossfade the output stays bounded by the two signals' sum
    assert np.max(np.abs(y)) <= 2 * np.max(np.abs(x)) + 1e-6
    assert s.idle()


def _null_db(chain: list[tuple[str, dict]], n: int = 48000) -> tuple[float, int]:
    """in -> [dry] + [chain] -> sum: (null of sum against 2 x delayed input in dB, latency)."""
    e = Engine(48000, 1, 1)
    s = Session(e)
    try:
        s.add_node("input", "in", {"channels": 1})
        s.add_node("bus", "sum", {"channels": 1})
        s.add_node("output", "out", {"channels": 1})
        prev = "in"
        for i, (t, settings) in enumerate(chain):
            s.add_node(t, f"n{i}", settings)
            s.connect(prev, f"n{i}")
            prev = f"n{i}"
        s.connect(prev, "sum")
        s.connect("in", "sum")
        s.connect("sum", "out")
        s.commit()
        lat = s.latencies()["sum"]
        rng = np.random.default_rng(3)
        x = (rng.standard_normal((n, 1)) * 0.05).astype(np.float32)  # -26 dBFS RMS, peaks < -6
        y = e.process(n, x, block=64)[:, 0].astype(np.float64)
    finally:
        s.close()
        e.free()
    want = 2.0 * x[: n - lat, 0].astype(np.float64)
    got = y[lat:]
    skip = 4800  # the edge fade-ins of the first block and the chain's warm-up
    err = got[skip:] - want[skip:]
    rms = max(float(np.sqrt(np.mean(err**2))), 1e-30)  # an exact null is -600 dB
    return 20 * np.log10(rms / np.sqrt(np.mean(want[skip:] ** 2))), lat


def test_dry_plus_latent_chain_nulls_against_twice_the_delayed_input():
    """The hard-stages issue: a dry path and a path through nodes with latency
    (a limiter below its ceiling, a denoise with zero reduction, an align at
    delay 0), summed, equal twice the input delayed by the chain's latency:
    null <= -90 dB."""
    db, lat = _null_db([("limiter", {"channels": 1, "ceiling": -1.0}),
                        ("denoise", {"reduction": 0.0}), ("align", {})])
    assert lat == 304 + 1023 + 15
    assert db <= -90.0, db


def test_autotune_path_on_unvoiced_input_nulls_too():
    """Autotune declares its 28.6 ms: on noise (unvoiced, passed through) a dry path
    and an autotune -> limiter path summed null against twice the delayed input."""
    db, lat = _null_db([("autotune", {}), ("limiter", {"channels": 1, "ceiling": -1.0})])
    assert lat == 1375 + 304
    assert db <= -90.0, db


# ---- delay groups: one delay line per (destination, input port, delay) ----------------


def test_group_plan_ops_are_checked():
    """A group's out op must follow at least one member op into the same
    channel (it reads the members' sum), and only one out op may read a group
    channel (its delay line runs once a block): mg_plan_finish refuses others;
    a member edge must not have a delay line of its own; bad groups are refused."""
    e = Engine(48000, 1, 1)
    src = lib.mg_node_new(e.ptr, CATALOG["gain"].index, 1, 0, 1, ffi.NULL, ffi.NULL)
    dst = lib.mg_node_new(e.ptr, CATALOG["bus"].index, 1, 0, 1, ffi.NULL, ffi.NULL)
    g = lib.mg_dgroup_new(1, 100)
    ed = lib.mg_edge_new(1.0)
    delayed = lib.mg_edge_new_delayed(1.0, 1, 10)
    try:
        assert lib.mg_dgroup_new(0, 100) == ffi.NULL and lib.mg_dgroup_new(1, 0) == ffi.NULL
        assert lib.mg_dgroup_delay(g) == 100 and lib.mg_dgroup_channels(g) == 1
        for order, ok in ((("mix", "out"), True), (("out", "mix"), False), (("out",), False),
                          (("mix", "out", "mix"), False),
                          (("mix", "out", "out"), False)):  # the line would run twice
            p = lib.mg_plan_new(2, len(order), 1)
            lib.mg_plan_set_step(p, 0, src)
            lib.mg_plan_set_step(p, 1, dst)
            for op in order:
                r = (lib.mg_plan_add_group_mix(p, 1, g, 0, src, 0, ed) if op == "mix"
                     else lib.mg_plan_add_group_out(p, 1, 0, g, 0))
                assert r == 0
            assert (lib.mg_plan_finish(p) == 0) == ok, order
            lib.mg_plan_free(p)
        p = lib.mg_plan_new(2, 2, 1)
        lib.mg_plan_set_step(p, 0, src)
        lib.mg_plan_set_step(p, 1, dst)
        assert lib.mg_plan_add_group_mix(p, 1, g, 0, src, 0, delayed) == -1
        assert lib.mg_plan_add_group_mix(p, 1, g, 1, src, 0, ed) == -1  # no channel 1
        lib.mg_plan_free(p)
    finally:
        for ptr, free in ((ed, lib.mg_edge_free), (delayed, lib.mg_edge_free),
                          (g, lib.mg_dgroup_free), (src, lib.mg_node_free),
                          (dst, lib.mg_node_free)):
            free(ptr)
        e.free()


def test_many_sources_share_one_delay_line_per_destination_and_delay():
    """Eight gains, a limiter (304 samples) and an align (15) into two buses:
    the gains' connections need 304 samples into each bus and the align's 289,
    so there are exactly four delay groups (2 buses x 2 delays) whatever the
    number of sources, no edge has a delay line of its own, and the mix still
    nulls (<= -90 dB) against the outside reference
    2 x (limiter + align + sum of the gains) x the input delayed by 304."""
    live0 = lib.mg_dgroup_live()
    e = Engine(48000, 1, 1)
    s = Session(e)
    n = 48000
    try:
        s.add_node("input", "in", {"channels": 1})
        s.add_node("limiter", "lim", {"channels": 1, "ceiling": -1.0})
        s.add_node("align", "al", {})
        gains = [-3.0 * i for i in range(8)]
        for i, g in enumerate(gains):
            s.add_node("gain", f"g{i}", {"gain": g})
        for bus in ("sum", "aux"):
            s.add_node("bus", bus, {"channels": 1})
        s.add_node("output", "out", {"channels": 1})
        for src in ["lim", "al"] + [f"g{i}" for i in range(8)]:
            s.connect("in", src)
            s.connect(src, "sum")
            s.connect(src, "aux")
        s.connect("sum", "out")
        s.connect("aux", "out")
        s.commit()
        lat = s.latencies()["out"]
        assert lat == 304
        assert sorted((g.dst.g.name, g.delay, len(g.members)) for g in s.groups.values()) == [
            ("aux", 289, 1), ("aux", 304, 8), ("sum", 289, 1), ("sum", 304, 8)]
        assert lib.mg_dgroup_live() - live0 == 4
        assert all(lib.mg_edge_delay(ed.ptr) == 0 for ed in s.edges.values())
        rng = np.random.default_rng(5)
        x = (rng.standard_normal((n, 1)) * 0.02).astype(np.float32)  # peaks well below -1 dB
        y = e.process(n, x, block=64)[:, 0].astype(np.float64)
    finally:
        s.close()
        e.free()
    assert lib.mg_dgroup_live() == live0  # close() frees every group
    scale = 2.0 * (2.0 + sum(10 ** (g / 20) for g in gains))
    want = scale * x[: n - lat, 0].astype(np.float64)
    got = y[lat:]
    skip = 4800  # the limiter's and align's warm-up
    err = got[skip:] - want[skip:]
    db = 20 * np.log10(max(float(np.sqrt(np.mean(err**2))), 1e-30)
                       / np.sqrt(np.mean(want[skip:] ** 2)))
    assert db <= -90.0, db


def fan_in(n_fast: int, latency: int, fast_gain_db: float = 0.0) -> tuple[Engine, Session]:
    """in -> slow (declared `latency`) and in -> fast0.. -> sum -> out, mono."""
    e = Engine(48000, 1, 1)
    s = Session(e)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("gain", "slow")
    s.add_node("bus", "sum", {"channels": 1})
    s.add_node("output", "out", {"channels": 1})
    for a, b in (("in", "slow"), ("slow", "sum"), ("sum", "out")):
        s.connect(a, b)
    for i in range(n_fast):
        s.add_node("gain", f"fast{i}", {"gain": fast_gain_db})
        s.connect("in", f"fast{i}")
        s.connect(f"fast{i}", "sum")
    s.set_latency("slow", latency)
    s._dirty = True
    s.commit()
    return e, s


def run(e: Engine, s: Session, x: np.ndarray) -> np.ndarray:
    """Process x in 64-frame blocks, servicing the session between blocks."""
    out = []
    for i in range(0, len(x), 64):
        out.append(e.process(64, x[i:i + 64], block=64)[:, 0].astype(np.float64))
        s.service()
    return np.concatenate(out)


def assert_smooth_move(y: np.ndarray, start: float, end: float, fade: int,
                       fades: int = 1) -> None:
    """y goes from start to end monotonically, never faster than `fades` fades
    in series (a dip, a doubled signal or a cut would break monotony or the
    step bound: a product of k linear fades moves at most k x as fast)."""
    assert abs(y[0] - start) < 1e-6 and abs(y[-1] - end) < 1e-6, (y[0], y[-1])
    d = np.diff(y) * (1.0 if end >= start else -1.0)
    assert np.min(d) >= -1e-6, np.min(d)
    assert np.max(d) <= fades * abs(end - start) / fade * 1.05 + 1e-6, np.max(d)


def test_latency_change_moves_connections_between_groups_with_aligned_crossfades():
    """A path's latency changes live 0 -> 64 -> 200 -> 0: the fast connections
    move from no delay into a 64-sample group, then into a 200-sample group,
    then back, each time with a crossfade. On DC the two sides of every
    crossfade meet at the output sample for sample, so the level stays constant
    (within float rounding: the old and new gains sum to 1); on a sine the
    largest sample step stays that of the steady signal plus the fade's."""
    live0 = lib.mg_dgroup_live()
    e, s = fan_in(4, 0)
    try:
        dc = np.full((4800, 1), 0.1, np.float32)
        run(e, s, dc)
        for lat in (64, 200, 0):
            s.set_latency("slow", lat)
            s._dirty = True
            s.service()
            y = run(e, s, dc)
            assert np.max(np.abs(y - 0.5)) < 1e-6, (lat, np.max(np.abs(y - 0.5)))
            assert s.idle()
            assert [(g.delay, len(g.members)) for g in s.groups.values()] == (
                [(lat, 4)] if lat else [])
            assert lib.mg_dgroup_live() - live0 == (1 if lat else 0)  # old groups freed
            assert all(ed.delay == lat for c, ed in s.edges.items() if c.src.startswith("fast"))
        # the same moves on a 100 Hz sine: no click
        t = np.arange(4800 * 4) / 48000.0
        x = (0.1 * np.sin(2 * np.pi * 100.0 * t)).astype(np.float32).reshape(-1, 1)
        steady = run(e, s, x[:4800])
        bound = np.max(np.abs(np.diff(steady[2400:])))
        for k, lat in enumerate((64, 200), start=1):
            s.set_latency("slow", lat)
            s._dirty = True
            s.service()
            y = run(e, s, x[4800 * k: 4800 * (k + 1)])
            # fade term: the gain moves 1/fade per sample over |old - new| <= 2 x 0.4
            fade_term = 2 * 0.4 / s.fade_samples
            assert np.max(np.abs(np.diff(y))) <= bound + fade_term, lat
    finally:
        s.close()
        e.free()
    assert lib.mg_dgroup_live() == live0


def test_fades_of_grouped_connections():
    """Connect, disconnect, bypass and removal of connections that share a
    1200-sample delay group, on DC: each fades monotonically from the old level
    to the new one (a bypass's two fades meet at the output: no doubled level,
    no dip), the group keeps its delay line while any member is left, and is
    freed after the last member's fade has left it."""
    live0 = lib.mg_dgroup_live()
    e, s = fan_in(3, 1200, fast_gain_db=20 * np.log10(0.5))
    fade = s.fade_samples
    try:
        dc = np.full((4800, 1), 0.1, np.float32)
        run(e, s, dc)  # slow 0.1 + 3 x 0.05
        (group,) = s.groups.values()
        ptr = group.ptr
        assert group.delay == 1200 and len(group.members) == 3
        s.add_node("gain", "extra")
        s.connect("in", "extra")
        s.commit()
        run(e, s, dc)
        s.connect("extra", "sum")  # joins the group
        s.commit()
        assert_smooth_move(run(e, s, dc), 0.25, 0.35, fade)
        assert list(s.groups.values()) == [group] and group.ptr == ptr
        assert len(group.members) == 4
        s.disconnect("extra", "sum")
        assert_smooth_move(run(e, s, dc), 0.35, 0.25, fade)
        assert len(group.members) == 3 and s.idle()
        s.set_bypass("fast0", True)  # grouped 0.05 fades out, direct 0.1 fades in
        s.commit()  # as the OSC server does after every command
        assert_smooth_move(run(e, s, dc), 0.25, 0.30, fade)
        s.set_bypass("fast0", False)
        s.commit()
        assert_smooth_move(run(e, s, dc), 0.30, 0.25, fade)
        assert s.groups[(s.live["sum"], "in", 1200)] is group and group.ptr == ptr
        for i in range(3):  # the last members leave: the delay line drains first
            s.remove_node(f"fast{i}")
        s.commit()
        # a removed node's input and output connections both fade: two in series
        assert_smooth_move(run(e, s, dc), 0.25, 0.10, fade, fades=2)
        assert s.idle() and not s.groups and lib.mg_dgroup_live() == live0
    finally:
        s.close()
        e.free()
    assert lib.mg_dgroup_live() == live0


@pytest.mark.parametrize("latent, samples", [(("limiter", {"channels": 1, "ceiling": -1.0}), 304),
                                             (("denoise", {"reduction": 0.0}), 1023)])
def test_bypass_keeps_the_latency_and_crossfades_at_the_output(latent, samples):
    """Bypassing a latent node on one of two parallel paths keeps that path's delay
    (the direct connection goes through the node's latency), so dry + path still
    equals twice the delayed input while bypassed, and the crossfades on and off
    meet at the output: no comb filter, no gap, no click."""
    t, settings = latent
    e = Engine(48000, 1, 1)
    s = Session(e)
    try:
        s.add_node("input", "in", {"channels": 1})
        s.add_node(t, "lat", settings)
        s.add_node("gain", "wet", {"channels": 1})
        s.add_node("bus", "sum", {"channels": 1})
        s.add_node("output", "out", {"channels": 1})
        for a, b in (("in", "lat"), ("lat", "wet"), ("wet", "sum"), ("in", "sum"),
                     ("sum", "out")):
            s.connect(a, b)
        s.commit()
        lat = s.latencies()["sum"]
        assert lat == samples  # the node's declared latency (limiter look-ahead, FFT frame)
        n = 48000
        tt = np.arange(4 * n) / 48000.0
        x = (0.25 * np.sin(2 * np.pi * 220 * tt)).astype(np.float32).reshape(-1, 1)
        ys = [e.process(n, x[:n], block=64)]
        s.set_bypass("lat", True)
        s.commit()
        ys.append(e.process(n, x[n:2 * n], block=64))
        s.service()
        s.set_bypass("lat", False)
        s.commit()
        ys.append(e.process(n, x[2 * n:3 * n], block=64))
        s.service()
        ys.append(e.process(n, x[3 * n:], block=64))
    finally:
        s.close()
        e.free()
    y = np.concatenate(ys)[:, 0].astype(np.float64)
    want = np.zeros_like(y)
    want[lat:] = 2.0 * x[: len(y) - lat, 0]
    err = np.abs(y - want)[n // 2:]  # after the start-up fades
    # through both crossfades and while bypassed: twice the delayed input (float32)
    assert err.max() < 1e-3, err.max()
    slope = np.abs(np.diff(want)).max()
    assert np.abs(np.diff(y[n // 2:])).max() <= slope + 1e-3


def test_no_command_reaches_an_edge_freed_before_the_audio_thread_reads_it():
    """Edits in one batch that create and replace an edge (here a loop forces the
    fading connections out at once): an edge that no plan has used is freed without
    any fade command queued for it (the review found a use-after-free)."""
    from mixgraph.server import live as S
    from mixgraph.server._core import ffi
    from mixgraph.server.engine import CMD_EDGE

    e = Engine(48000, 1, 1)
    s = Session(e)
    pushed, freed = set(), set()
    push = e.push

    def spy_push(kind, ptr=ffi.NULL, *a):
        if kind == CMD_EDGE:
            pushed.add(int(ffi.cast("uintptr_t", ptr)))
        return push(kind, ptr, *a)

    release = s.refs.release_if_unused

    def spy_release(obj):
        before = obj.ptr
        release(obj)
        if isinstance(obj, S.LiveEdge) and before != ffi.NULL and obj.ptr == ffi.NULL:
            freed.add(int(ffi.cast("uintptr_t", before)))

    e.push, s.refs.release_if_unused = spy_push, spy_release
    try:
        s.add_node("input", "in", {"channels": 1})
        s.add_node("limiter", "lim", {"channels": 1, "ceiling": -1.0})
        s.add_node("gain", "a")
        s.add_node("gain", "b")
        s.add_node("output", "out", {"channels": 1})
        for x, y in (("in", "lim"), ("lim", "a"), ("a", "b"), ("b", "out"), ("in", "b")):
            s.connect(x, y)
        s.commit()
        for _ in range(20):
            e.process(64, None, block=64)
            s.service()
        pushed.clear()
        freed.clear()
        s.disconnect("a", "b")
        s.connect("b", "a")  # a loop with the fading a -> b
        s.commit()
        assert not pushed & freed
        e.process(256, None, block=64)
    finally:
        s.close()
        e.free()


def test_removing_a_node_beside_a_bypass_leaves_nothing_behind():
    """in -> denoise -> B, in -> B, B bypassed, then denoise removed: the bypass
    connection from it fades out before the node leaves the plan (no cut, no
    connection or delay group left over)."""
    e = Engine(48000, 1, 1)
    s = Session(e)
    groups0 = lib.mg_dgroup_live()
    try:
        s.add_node("input", "in", {"channels": 1})
        s.add_node("denoise", "dn", {"reduction": 0.0})
        s.add_node("gain", "B")
        s.add_node("bus", "sum", {"channels": 1})
        s.add_node("output", "out", {"channels": 1})
        for a, b in (("in", "dn"), ("dn", "B"), ("in", "B"), ("B", "sum"), ("sum", "out")):
            s.connect(a, b)
        s.commit()
        x = np.full((64, 1), 0.1, np.float32)

        def run(blocks):
            ys = []
            for _ in range(blocks):
                ys.append(e.process(64, x, block=64)[:, 0])
                s.service()
            return np.concatenate(ys)

        run(100)
        s.set_bypass("B", True)
        s.commit()
        run(200)
        s.remove_node("dn")
        s.commit()
        y = run(300)
        assert s.idle() and not s.dying_edges
        # the DC level drops by the removed path's 0.1 through fades (a few overlap),
        # not at once: the review measured a full 0.1 step
        assert np.abs(np.diff(y)).max() < 0.1 / 60
    finally:
        s.close()
        e.free()
    assert lib.mg_dgroup_live() == groups0
