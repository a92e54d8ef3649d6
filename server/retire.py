"""Removals (control thread): which removed connections fade out, and when a
removed node and its connections leave the plan.

A removed node keeps running while the connections from and into it fade
out, and leaves the plan once they have. Only the connections at the border
of what was removed need that fade: a connection from one removed node into
another that is no sink (planner.SINK_TYPES) is heard only through the
removed nodes' own connections, which fade themselves. So it keeps its gain
(it is "held": LiveEdge.held, no fade command) and leaves the plan with its
nodes. Clearing a 10,000-node chain so fades the one connection into the
output instead of 10,000 (a fading connection costs the audio thread a mix
into its destination's own buffer every block, where a steady one is read in
place)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core import ffi, lib
from .live import LiveEdge
from .planner import SINK_TYPES

if TYPE_CHECKING:
    from .session import Session


def holds(s: Session, e: LiveEdge) -> bool:
    """True when removed connection e needs no fade: both its nodes are removed
    and its destination is no sink."""
    return (e in s.dying_edges and s.live.get(e.src.g.name) is not e.src
            and s.live.get(e.dst.g.name) is not e.dst
            and e.dst.g.type.name not in SINK_TYPES)


_NEVER = float("inf")


def collect(s: Session, force: bool = False) -> None:
    """Drop the removed connections whose fade is over and the removed nodes
    whose connections are gone (all of them with force: the audio thread
    never hears them again, or a plan must be made without them).

    A pass walks every removal still in flight, so it runs only when one may
    be over: when something was removed since the last pass (a removal only
    ever adds to the dying lists between passes), or the engine has reached
    the earliest deadline the last pass saw (Session.retire_walks counts
    the passes).
    Clearing a 10,000-node graph walked 20,000 dying objects at every
    service() while the border faded."""
    now = s.engine.time
    memo = getattr(s, "_retire_memo", None)
    sig = (len(s.dying_edges), len(s.dying_nodes))
    if not force and memo is not None and memo[0] == sig and now < memo[1]:
        return
    s.retire_walks = getattr(s, "retire_walks", 0) + 1
    keep = {}
    for e, due in s.dying_edges.items():
        if force or e.dead or (not e.held and now >= due and lib.mg_edge_gain(e.ptr) == 0.0):
            if not e.dead:
                s.refs.kill(e)
                s._dirty = True
            if e.first_gen is None and e.ptr != ffi.NULL:  # in no plan: not queued
                s.refs.release_if_unused(e)  # (the rest: Refs.free_due, a batch a call)
        else:
            keep[e] = due
    s.dying_edges = keep
    # a node leaves the plan only after its retired connections have faded (their
    # fades may still be queued, their deadlines later than the node's); a node
    # with held connections waits until no fade of a removal is left at all, and
    # then goes with them (what they feed has faded, wherever it leads)
    fading = {id(x) for e in keep if not e.held for x in (e.src, e.dst)}
    held = {id(x) for e in keep if e.held for x in (e.src, e.dst)} if fading else set()
    dying_due = s._dying_due
    for n in s.dying_nodes:
        if force or (now >= dying_due.get(id(n), 0) and id(n) not in fading
                     and id(n) not in held):
            s.refs.kill(n)
            s._dirty = True
            dying_due.pop(id(n), None)
    s.dying_nodes = [n for n in s.dying_nodes if not n.dead]
    again = False
    for e in keep:
        if e.held and (e.src.dead or e.dst.dead):
            s.refs.kill(e)  # out of the next plan; freed at the next collect
            again = True
    # the next pass: at once if this one dropped or killed anything (what it
    # dropped may have held others back), else at the earliest deadline of a
    # fading connection or of a node nothing holds back any more
    nxt = now if again or len(keep) != sig[0] or len(s.dying_nodes) != sig[1] else min(
        [due for e, due in keep.items() if not e.held]
        + [dying_due.get(id(n), 0) for n in s.dying_nodes
           if id(n) not in fading and id(n) not in held], default=_NEVER)
    s._retire_memo = ((len(s.dying_edges), len(s.dying_nodes)), nxt)
