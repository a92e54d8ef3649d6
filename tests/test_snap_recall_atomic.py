"""A snap scene recall lands on one sample (server/scenes.py SNAP_ATOMIC_MAX):
a live engine applies at most MG_SET_CAP_LIVE "now" sets a block (rt15's
bound on work per block, tests/test_set_cap.py), so a recall of more values
than that is scheduled a little ahead instead, every value at one frame.
Checked on each parameter's target (mg_node_param_target) after every single
frame: every target changes on the same frame, none before, none after; a
recall over SNAP_ATOMIC_MAX still lands over several blocks (documented)."""

from __future__ import annotations

from mixgraph.server._core import lib
from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.scenes import SNAP_ATOMIC_MAX, show_of
from mixgraph.server.session import Session

SR = 48000
BLOCK = 64


def desk(nodes: int) -> tuple[Engine, Session]:
    e = Engine(SR, 0, 2, block=BLOCK)
    e.cap_sets(Engine.SET_CAP_LIVE)
    s = Session(e)
    for i in range(nodes):
        s.add_node("eq8", f"e{i}", {})
    s.commit()
    e.process(BLOCK * 4)  # the plan is in, the clock runs
    return e, s


def targets(s: Session, nodes: int, params: list[str]) -> list[float]:
    out = []
    for i in range(nodes):
        ptr = s.live[f"e{i}"].ptr
        out += [lib.mg_node_param_target(ptr, CATALOG["eq8"].param(p).index) for p in params]
    return out


PARAMS = [f"b{k}gain" for k in range(1, 9)] + ["b1freq"]


def frames_of_change(nodes: int) -> tuple[list[int], int, Session, int]:
    """Recall a scene of 9 values per node (snap) and step the engine one frame
    at a time: the frame (after the recall) at which each target changed, and
    the blocks that carried "now" sets meanwhile."""
    e, s = desk(nodes)
    sh = show_of(s)
    sh.store("flat", ["/node/e*/b*"])
    for i in range(nodes):
        for p in PARAMS:
            s.set_param(f"e{i}", p, 2000.0 if p == "b1freq" else -6.0)
    s.commit()
    e.process(BLOCK * 40)
    before = targets(s, nodes, PARAMS)
    carried = e.sets_carried()
    sh.recall("flat", 0.0)
    when = [-1] * len(before)
    for f in range(BLOCK * 40):
        e.process(1)
        now = targets(s, nodes, PARAMS)
        for k, (a, b) in enumerate(zip(before, now, strict=True)):
            if when[k] < 0 and a != b:
                when[k] = f
        if min(when) >= 0:
            break
    return when, len(before), s, e.sets_carried() - carried


def test_a_snap_recall_over_the_cap_changes_every_value_on_one_frame() -> None:
    nodes = 100  # 900 values: 7 blocks' worth of the cap
    assert Engine.SET_CAP_LIVE < 9 * nodes <= SNAP_ATOMIC_MAX
    when, n, s, carried = frames_of_change(nodes)
    assert min(when) >= 0, "some value never changed"
    assert len(set(when)) == 1, f"values changed on frames {sorted(set(when))}"
    # scheduled ahead by 2 blocks and the push allowance, not seconds
    assert when[0] < 2 * BLOCK + int(n * 4e-6 * SR) + BLOCK
    assert carried == 0
    assert show_of(s).snap_late == 0
    # the model holds the recalled values
    assert s.get_param("e7", "b3gain") == 0.0 and s.get_param("e7", "b1freq") == 100.0


def test_a_snap_recall_over_the_atomic_bound_is_spread_over_blocks() -> None:
    nodes = SNAP_ATOMIC_MAX // 9 + 10
    when, _, _, carried = frames_of_change(nodes)
    assert min(when) >= 0
    assert len(set(when)) > 1  # 128 a block: the bound on work per block holds
    assert carried > 0
