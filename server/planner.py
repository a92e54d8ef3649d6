"""Graph -> plan: what the engine runs, compiled on the control thread.

The planner takes the live nodes and connections (server/live.py) and returns
the engine's flat plan (csrc/plan.c): the nodes in topological order, each
input's mix operations, the delay groups that carry latency compensation, and
the edges whose gains the plan fades. Here too: the latency at every node's
output and the compensation delay every connection needs, and each node
port's channel range. It allocates nothing the audio thread owns: the plan
goes to the engine through Session.commit, which keeps the references
(live.Refs) that say when the plan's objects may be freed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._core import ffi, lib
from .engine import CMD_EDGE
from .errors import MixgraphError
from .graph import Conn, GNode, topo_order
from .live import LiveEdge, LiveGroup, LiveNode, Refs


class PlanCycle(MixgraphError):
    """The connections in the plan (fading ones included) close a loop."""


@dataclass
class PlanRecord:
    """A plan built for the engine, and the keys (live.Refs) of what it uses."""

    ptr: object
    keys: list[int] = field(default_factory=list)


@dataclass
class Compiled:
    """A finished plan and what it reports."""

    record: PlanRecord
    gangs: list[tuple[str, int]]  # (type, size) of each gang of nodes run together
    buffers: int  # channel buffers the node outputs share (liveness reuse)


class FadeQueue:
    """Edge gain changes on their way to the engine: fade-ins of new edges,
    which go out with the first plan that holds them, and fade-outs and
    bypass switches of edges already in a plan, queued at the edit. They are
    pushed right after the plan, together (Session.commit), so both halves of
    a crossfade start at once however long the edits take."""

    def __init__(self) -> None:
        self.fade_in: list[LiveEdge] = []  # new edges, created at gain 0
        self.cmds: list[tuple[LiveEdge, float, int]] = []  # (edge, target gain, wait)

    def release_fade_ins(self) -> None:
        """The plan holding the new edges is out: their fade-ins go first."""
        self.cmds[0:0] = [(e, e.target, e.wait) for e in self.fade_in if not e.dead]
        for e in self.fade_in:
            e.wait = 0  # an edge's wait is used once
        self.fade_in.clear()

    def push(self, engine, fade_samples: int, due: Callable[[LiveEdge, int], None]) -> None:
        """Push the queued commands in order (EngineBusy from a full ring leaves
        the rest queued); due(edge, sample) gets each fade-out's end."""
        while self.cmds:
            e, target, wait = self.cmds[0]
            if not e.dead:
                engine.push(CMD_EDGE, e.ptr, fade_samples, target, wait)  # may raise
                if target == 0.0:
                    due(e, engine.time + wait + fade_samples + e.delay + lib.MG_MAX_BLOCK)
            self.cmds.pop(0)


def port_base(g: GNode, port: str, direction: str) -> tuple[int, int]:
    """(first channel, channel count) of a node's port among its ins or outs."""
    base = 0
    for p in g.type.ports:
        if p.direction != direction:
            continue
        n = p.channel_count(g.channels)
        if p.name == port:
            return base, n
        base += n
    raise MixgraphError(f"{g.name} has no port {port!r}")


def latencies(live: dict[str, LiveNode], conns) -> dict[str, int]:
    """Latency in samples at each live node's output (its inputs aligned)."""
    order = topo_order(list(live), [(c.src, c.dst) for c in conns])
    into: dict[str, list[Conn]] = {}
    for c in conns:
        into.setdefault(c.dst, []).append(c)
    out: dict[str, int] = {}
    for n in order:
        arrival = max((out[c.src] for c in into.get(n, ())), default=0)
        out[n] = arrival + live[n].latency
    return out


def compensation(live: dict[str, LiveNode], conns) -> dict[Conn, int]:
    """The delay each connection needs to meet the slowest path into its node."""
    lat = latencies(live, conns)
    arrival: dict[str, int] = {}
    for c in conns:
        arrival[c.dst] = max(arrival.get(c.dst, 0), lat[c.src])
    return {c: arrival[c.dst] - lat[c.src] for c in conns}


def delay_group(groups: dict[tuple, LiveGroup], dst: LiveNode, port: str, channels: int,
                delay: int) -> LiveGroup:
    """The delay group for (dst, port, delay) in groups: the live one, or a new one."""
    g = groups.get((dst, port, delay))
    if g is None:
        ptr = lib.mg_dgroup_new(channels, delay)
        if ptr == ffi.NULL:
            raise MixgraphError(f"cannot allocate a {delay}-sample delay into "
                                f"{dst.g.name}:{port}")
        g = LiveGroup(dst, port, delay, channels, ptr)
        groups[g.key] = g
    return g


def build(nodes: list[LiveNode], edges: list[LiveEdge], refs: Refs) -> Compiled:
    """Compile nodes and edges into a new engine plan, every object it uses
    referenced in refs. Raises PlanCycle when the edges close a loop and
    MixgraphError when the engine refuses the plan (the references are given
    back then)."""
    ids = {id(n): n for n in nodes}
    edges = [e for e in edges if id(e.src) in ids and id(e.dst) in ids]
    try:
        order = topo_order(list(ids), [(id(e.src), id(e.dst)) for e in edges],
                           key=lambda i: ids[i].g.type.name)
    except MixgraphError as err:
        raise PlanCycle(str(err)) from err
    into: dict[int, list[LiveEdge]] = {}
    # delay groups in this plan: those with a member edge in it
    grouped: dict[int, dict[LiveGroup, list[LiveEdge]]] = {}
    for e in edges:
        if e.group is not None:
            grouped.setdefault(id(e.dst), {}).setdefault(e.group, []).append(e)
        else:
            into.setdefault(id(e.dst), []).append(e)
    groups = [g for gs in grouped.values() for g in gs]
    n_mix = sum(g.channels for g in groups)
    for e in edges:
        n_mix += e.dst.g.type.port(e.conn.dst_port, "in").channel_count(e.dst.g.channels)
    plan = lib.mg_plan_new(len(order), n_mix, len(edges))
    if plan == ffi.NULL:
        raise MixgraphError("out of memory building the plan")
    rec = PlanRecord(plan)
    try:
        _fill(plan, rec, refs, [ids[i] for i in order], edges, into, grouped, groups)
    except BaseException:
        drop(rec, refs)
        raise
    gangs = []
    for step, nid in enumerate(order):
        g = lib.mg_plan_step_gang(plan, step)
        if g > 1:
            gangs.append((ids[nid].g.type.name, g))
    return Compiled(rec, gangs, lib.mg_plan_buffers(plan))


def drop(rec: PlanRecord, refs: Refs) -> None:
    """Free a plan that never reached the engine, and give back its references."""
    refs.unref(rec.keys, release=False)
    lib.mg_plan_free(rec.ptr)


def _fill(plan, rec: PlanRecord, refs: Refs, order: list[LiveNode], edges: list[LiveEdge],
          into: dict, grouped: dict, groups: list) -> None:
    """Steps, mix operations and edges of a new plan, each referenced in rec."""
    for step, node in enumerate(order):
        nid = id(node)
        lib.mg_plan_set_step(plan, step, node.ptr)
        rec.keys.append(refs.ref(node))
        # members first: each group sums them before its delay line runs
        for g, members in grouped.get(nid, {}).items():
            for e in members:
                sbase, sch = port_base(e.src.g, e.conn.src_port, "out")
                for c in range(g.channels):
                    sc = c if sch == g.channels else 0
                    if lib.mg_plan_add_group_mix(plan, step, g.ptr, c, e.src.ptr,
                                                 sbase + sc, e.ptr) != 0:
                        raise MixgraphError(f"internal error wiring {e.conn}")
        for e in into.get(nid, ()):
            dbase, dch = port_base(e.dst.g, e.conn.dst_port, "in")
            sbase, sch = port_base(e.src.g, e.conn.src_port, "out")
            for c in range(dch):
                sc = c if sch == dch else 0
                if lib.mg_plan_add_mix(plan, step, dbase + c, e.src.ptr, sbase + sc,
                                       e.ptr, c) != 0:
                    raise MixgraphError(f"internal error wiring {e.conn}")
        for g in grouped.get(nid, {}):
            dbase, _ = port_base(g.dst.g, g.port, "in")
            for c in range(g.channels):
                if lib.mg_plan_add_group_out(plan, step, dbase + c, g.ptr, c) != 0:
                    raise MixgraphError(f"internal error wiring the delay into {g.port}")
    for g in groups:
        rec.keys.append(refs.ref(g))
    for e in edges:
        lib.mg_plan_add_edge(plan, e.ptr)
        rec.keys.append(refs.ref(e))
    if lib.mg_plan_finish(plan) != 0:
        raise MixgraphError("cannot finish the plan (out of memory, or mix operations "
                            "the engine refuses)")
