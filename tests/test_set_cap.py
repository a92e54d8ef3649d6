"""Bounded work per block (mg_engine_set_cap_sets, docs/architecture.md): a
live engine applies at most MG_SET_CAP_LIVE "now" parameter sets in one block;
a burst of more (a control thread that paused under 10,000 OSC messages a
second, then pushed what had queued) is applied over the next blocks, in the
order it was sent, with whatever was queued behind it. Checked on the
parameter's target after each block (mg_node_param_target): which of a burst
of distinct values is the current one, block by block."""

from __future__ import annotations

from mixgraph.server._core import lib
from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

SR = 48000
BLOCK = 64


def session(cap: int) -> tuple[Engine, Session]:
    e = Engine(SR, 0, 2, block=BLOCK)
    e.cap_sets(cap)
    s = Session(e)
    s.add_node("gain", "g", {})
    s.commit()
    e.process(BLOCK)  # the plan is in
    return e, s


def target(s: Session) -> float:
    return lib.mg_node_param_target(s.live["g"].ptr, CATALOG["gain"].param("gain").index)


def burst(s: Session, n: int) -> list[float]:
    """n distinct gains, sent as fast as the ring takes them (no block between)."""
    values = [-60.0 + 50.0 * i / n for i in range(n)]
    for v in values:
        s.set_param("g", "gain", v)
    return values


def test_a_burst_is_spread_over_blocks_in_order() -> None:
    cap = int(lib.MG_SET_CAP_LIVE)
    e, s = session(cap)
    n = 3 * cap + 17
    values = burst(s, n)
    seen = []
    for _ in range(4):
        e.process(BLOCK)
        seen.append(target(s))
    # block k has applied the first (k + 1) * cap sets, the last block the rest
    want = [values[cap - 1], values[2 * cap - 1], values[3 * cap - 1], values[-1]]
    assert all(abs(a - b) < 1e-4 for a, b in zip(seen, want, strict=True)), (seen, want)
    assert e.sets_carried() == 3
    e.process(BLOCK)
    assert abs(target(s) - values[-1]) < 1e-4 and e.sets_carried() == 3


def test_what_was_queued_behind_a_burst_waits_its_turn() -> None:
    """A set of another parameter sent after the burst is applied in the block
    that applies the burst's last set, not before it."""
    cap = int(lib.MG_SET_CAP_LIVE)
    e, s = session(cap)
    values = burst(s, cap + 5)
    idx = CATALOG["gain"].param("gain").index
    s.set_param("g", "gain", 3.0)  # sent last: wins once everything is applied
    e.process(BLOCK)
    assert abs(target(s) - values[cap - 1]) < 1e-4
    e.process(BLOCK)
    assert abs(lib.mg_node_param_target(s.live["g"].ptr, idx) - 3.0) < 1e-4


def test_under_the_cap_and_without_one_a_burst_lands_in_one_block() -> None:
    cap = int(lib.MG_SET_CAP_LIVE)
    e, s = session(cap)
    values = burst(s, cap)
    e.process(BLOCK)
    assert abs(target(s) - values[-1]) < 1e-4 and e.sets_carried() == 0
    e, s = session(0)  # offline renders: no limit
    values = burst(s, 5 * cap)
    e.process(BLOCK)
    assert abs(target(s) - values[-1]) < 1e-4 and e.sets_carried() == 0
