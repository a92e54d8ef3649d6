"""Latency compensation: parallel paths meet phase-aligned at every fan-in.

Until a node type with latency exists in the tree, a node's declared latency
is overridden on the Python side (LiveNode.latency); the audio path then has
no real delay, so the compensated branch arrives exactly `latency` samples
late, which is what these tests pin."""

from __future__ import annotations

import numpy as np

from mixgraph.server._core import ffi, lib
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
    s.live["slow"].latency = latency
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
    s.live["slow"].latency = 64
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
    assert lat == 252 + 1023 + 15
    assert db <= -90.0, db


def test_autotune_path_on_unvoiced_input_nulls_too():
    """Autotune declares its 28.6 ms: on noise (unvoiced, passed through) a dry path
    and an autotune -> limiter path summed null against twice the delayed input."""
    db, lat = _null_db([("autotune", {}), ("limiter", {"channels": 1, "ceiling": -1.0})])
    assert lat == 1375 + 252
    assert db <= -90.0, db
