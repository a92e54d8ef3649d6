"""Fused strip tails on consoles whose strips differ (csrc/layout.c
mg_plan_fuse): an extra insert on some strips, an insert with latency (its
strips' buses go through delay groups: latency compensation), strips with
other sends. A run of strips that cannot fuse as a whole is split into the
pieces that can (strips of one set of bus channels and sends), so the rest of
the console still fuses; every output stays, bit for bit, what the steps run
one by one give (Engine.set_fusing(False)), and the number of fused strips is
checked, so a fusion that silently gives up fails here."""

from __future__ import annotations

import numpy as np
import pytest
from signals import assert_same_bits

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
N = 16  # strips
SENDS = 2


def _signals(n: int) -> np.ndarray:
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((n, N)) * 0.1).astype(np.float32)
    x[:, 0] = -0.0                      # the first contributor: d = v keeps -0
    x[500:510, 5] = np.nan              # non-finite samples
    return x


def _build(s: Session, inserts: dict[int, str], sends: dict[int, tuple[int, ...]]) -> None:
    """N mono inputs -> [insert] -> pan -> fader -> master, and the strip's
    post-fader sends (sends[i], default all) into aux buses; every bus to two
    outputs. An insert is a `gain` (no latency) or a `limiter` (look-ahead
    latency: the other strips' connections get delays)."""
    buses = ["master"] + [f"aux{j}" for j in range(SENDS)]
    for j, b in enumerate(buses):
        s.add_node("bus", b, {"channels": 2})
        s.add_node("output", f"o_{b}", {"first": 2 * j + 1, "channels": 2})
        s.connect(b, f"o_{b}")
    for i in range(N):
        s.add_node("input", f"in{i}", {"first": i + 1})
        s.add_node("pan", f"pan{i}", {"pan": -1.0 + 2.0 * i / (N - 1)})
        s.add_node("gain", f"fader{i}", {"channels": 2, "gain": -6.0 + i * 0.5})
        src = f"in{i}"
        if i in inserts:
            kind = inserts[i]
            params = {"channels": 1, "gain": -2.0} if kind == "gain" else {
                "channels": 1, "ceiling": -1.0, "lookahead": 2.0}
            s.add_node(kind, f"ins{i}", params)
            s.connect(src, f"ins{i}")
            src = f"ins{i}"
        s.connect(src, f"pan{i}")
        s.connect(f"pan{i}", f"fader{i}")
        s.connect(f"fader{i}", "master")
        for j in sends.get(i, range(SENDS)):
            s.add_node("send", f"s{j}_{i}", {"channels": 2, "level": -12.0 - 3.0 * j - 0.5 * i})
            s.connect(f"fader{i}", f"s{j}_{i}:post")
            s.connect(f"s{j}_{i}", f"aux{j}")
    s.commit()


def _render(fusing: bool, inserts: dict[int, str], sends: dict[int, tuple[int, ...]],
            threads: int = 1, n: int = 19200) -> tuple[np.ndarray, int, int]:
    e = Engine(RATE, N, 2 * (1 + SENDS), threads=threads, block=64)
    e.set_fusing(fusing)
    s = Session(e)
    try:
        _build(s, inserts, sends)
        s.set_param("pan3", "pan", 0.5, time=6400)        # a member moves mid-render
        s.set_param("fader6", "gain", 2.0, time=9600)
        s.set_param("fader13", "gain", -3.0, time=14400)  # a later piece falls back
        y = e.process(n, _signals(n), block=64).copy()
        p = list(s._plans.values())[-1].ptr
        tails = ffi.new("int *")
        strips = lib.mg_plan_fused_strips(p, tails)
        return y, strips, tails[0]
    finally:
        s.close()
        e.free()


ALL = set(range(N))
CASES = {
    # name: (inserts, sends, fused strips, tails). The pass runs at its first
    # panner: a piece fuses when no other strip adds into its buses between
    # its first panner and its own last add (see docs/architecture.md)
    "gain_on_1": ({1: "gain"}, {}, N - 1, 1),         # strip 1's panner later: alone
    "gain_on_10": ({i: "gain" for i in range(10)}, {}, 6, 1),  # 10-15; 0-9 interleave
    "gain_on_all": ({i: "gain" for i in ALL}, {}, N, 1),
    # latency on strip 1: the other strips' buses are a delay group's
    # accumulators, strip 1's the buses' own inputs
    "limiter_on_1": ({1: "limiter"}, {}, N - 1, 1),
    "limiter_on_10": ({i: "limiter" for i in range(10)}, {}, N, 2),  # two delay groups
    "limiter_on_all": ({i: "limiter" for i in ALL}, {}, N, 1),
    # strips 4-7 with one send, 12-15 with none: four pieces, one fuses
    "other_sends": ({}, {**{i: (0,) for i in range(4, 8)},
                         **{i: () for i in range(12, 16)}}, 4, 1),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_split_tails_equal_steps(name):
    inserts, sends, want_strips, want_tails = CASES[name]
    fused, strips, tails = _render(True, inserts, sends)
    steps, _, _ = _render(False, inserts, sends)
    assert (strips, tails) == (want_strips, want_tails)  # fusion did not give up
    assert np.abs(np.nan_to_num(fused)).max() > 0.01  # the buses carry signal
    assert_same_bits(fused, steps)
