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


@dataclass
class BypassPlan:
    """The direct connections that stand in for bypassed nodes, and their timing.

    A bypass keeps the node's latency: the direct connection a.src -> b.dst is
    delayed by what the path through the node takes (a's compensation, the
    node's latency, b's compensation), so parallel paths stay aligned and
    nothing downstream is re-compensated. Fades meet at the output: b fades
    where it enters its delay group, `hold_b` after the command, the direct
    edge at once, and both reach the output `delay` frames on."""

    want: dict[tuple[Conn, Conn], Conn]  # (into-node, out-of-node) -> stand-in
    out_port: dict[str, str]  # bypassed node -> the output port it joins
    hold_b: dict[Conn, int]  # frames each out-of-node connection's fade holds first
    _edges: dict
    _live: dict

    def delay(self, k: tuple[Conn, Conn]) -> int:
        """The delay of the stand-in for (a, b)."""
        ea, eb = self._edges.get(k[0]), self._edges.get(k[1])
        node = self._live.get(k[0].dst)
        return ((ea.delay if ea else 0) + (node.latency if node else 0)
                + (eb.delay if eb else 0))

    def wait(self, k: tuple[Conn, Conn], d: int) -> int:
        """Frames the stand-in's fade holds first, to meet b's at the output."""
        eb = self._edges.get(k[1])
        return max(0, self.hold_b.get(k[1], 0) + (eb.delay if eb else 0) - d)


def bypass_plan(graph, bypassed: set[str], live: dict, edges: dict,
                bypass_edges: dict) -> BypassPlan:
    """What the bypasses of `bypassed` need: their stand-in connections, delays
    and fade holds, given the live edges and the stand-ins that exist now."""
    want: dict[tuple[Conn, Conn], Conn] = {}
    out_port: dict[str, str] = {}
    for name in bypassed:
        pin, pout = graph.bypass_ports(name)
        out_port[name] = pout.name
        ins = [c for c in graph.ins[name] if c.dst_port == pin.name]
        outs = [c for c in graph.outs[name] if c.src_port == pout.name]
        for a in ins:
            for b in outs:
                want[(a, b)] = Conn(a.src, a.src_port, b.dst, b.dst_port)
    bp = BypassPlan(want, out_port, {}, edges, live)
    for k, d in [(k, bp.delay(k)) for k in want] + [
            (k, e.delay) for k, e in bypass_edges.items() if k not in want]:
        eb = edges.get(k[1])  # on release, b fades in to meet the old direct edge
        bp.hold_b[k[1]] = max(bp.hold_b.get(k[1], 0), d - (eb.delay if eb else 0))
    return bp


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


SINK_TYPES = frozenset({"output", "recorder"})
"""Node types whose audio leaves the graph (to the hardware, to a file): every
connection into one arrives at the graph's total latency, so two outputs, or an
output and a recorder, stay sample-aligned whatever their paths hold (as a DAW
aligns every track to the master). Meters are not sinks: they read their input
as it reaches them, with no added delay."""


def _arrivals(live: dict[str, LiveNode], conns) -> tuple[dict[str, int], dict[str, int]]:
    """(latency at each node's output, latency its inputs are aligned to). A sink's
    inputs are aligned to the graph's total latency (total_latency)."""
    order = topo_order(list(live), [(c.src, c.dst) for c in conns])
    into: dict[str, list[Conn]] = {}
    for c in conns:
        into.setdefault(c.dst, []).append(c)
    out: dict[str, int] = {}
    arrival: dict[str, int] = {}
    for n in order:
        arrival[n] = max((out[c.src] for c in into.get(n, ())), default=0)
        out[n] = arrival[n] + live[n].latency
    sinks = [n for n in order if live[n].g.type.name in SINK_TYPES and n in into]
    total = max((out[n] for n in sinks), default=0)
    for n in sinks:
        arrival[n] = total - live[n].latency
        out[n] = total
    return out, arrival


def latencies(live: dict[str, LiveNode], conns) -> dict[str, int]:
    """Latency in samples at each live node's output (its inputs aligned; every
    connected sink at the graph's total latency)."""
    return _arrivals(live, conns)[0]


def total_latency(live: dict[str, LiveNode], conns) -> int:
    """The graph's total latency in samples: the latency at which every sink
    (output, recorder) with a connection into it receives its audio; 0 without one."""
    out, _ = _arrivals(live, conns)
    return max((out[n] for n, node in live.items() if node.g.type.name in SINK_TYPES
                and any(c.dst == n for c in conns)), default=0)


def compensation(live: dict[str, LiveNode], conns) -> dict[Conn, int]:
    """The delay each connection needs to meet the slowest path into its node
    (into a sink: to arrive at the graph's total latency)."""
    lat, arrival = _arrivals(live, conns)
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
    back then). Linear in nodes and connections (the order's waves are sorted
    by type); what a connection's mix operations are is worked out once per
    connection (_wiring), not per plan."""
    member = set(nodes)
    edges = [e for e in edges if e.src in member and e.dst in member]
    try:
        order = topo_order(nodes, [(e.src, e.dst) for e in edges], key=_type_name)
    except MixgraphError as err:
        raise PlanCycle(str(err)) from err
    into: dict[LiveNode, list[LiveEdge]] = {}
    # delay groups in this plan: those with a member edge in it
    grouped: dict[LiveNode, dict[LiveGroup, list[LiveEdge]]] = {}
    n_mix = 0
    for e in edges:
        if e.group is not None:
            grouped.setdefault(e.dst, {}).setdefault(e.group, []).append(e)
        else:
            into.setdefault(e.dst, []).append(e)
        n_mix += len(_wiring(e))
    groups = [g for gs in grouped.values() for g in gs]
    n_mix += sum(g.channels for g in groups)
    plan = lib.mg_plan_new(len(order), n_mix, len(edges))
    if plan == ffi.NULL:
        raise MixgraphError("out of memory building the plan")
    rec = PlanRecord(plan)
    try:
        _fill(plan, rec, refs, order, edges, into, grouped, groups)
    except BaseException:
        drop(rec, refs)
        raise
    gangs = []
    step_gang = lib.mg_plan_step_gang
    for step, node in enumerate(order):
        g = step_gang(plan, step)
        if g > 1:
            gangs.append((node.g.type.name, g))
    return Compiled(rec, gangs, lib.mg_plan_buffers(plan))


def _type_name(node: LiveNode) -> str:
    return node.g.type.name


def _wiring(e: LiveEdge) -> list[tuple[int, int, int]]:
    """A connection's mix operations, (destination input, source output, edge
    channel) per channel of the input it feeds (a mono source fans out); for a
    connection into a delay group the destination is the group's channel.
    Fixed for the edge's life (channel counts never change), so cached on it."""
    w = e.wiring
    if w is None:
        sbase, sch = port_base(e.src.g, e.conn.src_port, "out")
        dbase, dch = port_base(e.dst.g, e.conn.dst_port, "in")
        base = 0 if e.group is not None else dbase
        w = e.wiring = [(base + c, sbase + (c if sch == dch else 0), c) for c in range(dch)]
    return w


def drop(rec: PlanRecord, refs: Refs) -> None:
    """Free a plan that never reached the engine, and give back its references."""
    refs.unref(rec.keys, release=False)
    lib.mg_plan_free(rec.ptr)


def _fill(plan, rec: PlanRecord, refs: Refs, order: list[LiveNode], edges: list[LiveEdge],
          into: dict, grouped: dict, groups: list) -> None:
    """Steps, mix operations and edges of a new plan, each referenced in rec."""
    set_step, add_mix = lib.mg_plan_set_step, lib.mg_plan_add_mix
    add_group_mix, add_group_out = lib.mg_plan_add_group_mix, lib.mg_plan_add_group_out
    keys = rec.keys
    ref = refs.ref
    for step, node in enumerate(order):
        set_step(plan, step, node.ptr)
        keys.append(ref(node))
        gs = grouped.get(node)
        if gs:
            # members first: each group sums them before its delay line runs
            for g, members in gs.items():
                for e in members:
                    for c, src_out, _ in _wiring(e):
                        if add_group_mix(plan, step, g.ptr, c, e.src.ptr, src_out, e.ptr) != 0:
                            raise MixgraphError(f"internal error wiring {e.conn}")
        for e in into.get(node, ()):
            src, ptr = e.src.ptr, e.ptr
            for dst_in, src_out, c in _wiring(e):
                if add_mix(plan, step, dst_in, src, src_out, ptr, c) != 0:
                    raise MixgraphError(f"internal error wiring {e.conn}")
        if gs:
            for g in gs:
                dbase, _ = port_base(g.dst.g, g.port, "in")
                for c in range(g.channels):
                    if add_group_out(plan, step, dbase + c, g.ptr, c) != 0:
                        raise MixgraphError(f"internal error wiring the delay into {g.port}")
    for g in groups:
        keys.append(ref(g))
    add_edge = lib.mg_plan_add_edge
    for e in edges:
        add_edge(plan, e.ptr)
        keys.append(ref(e))
    if lib.mg_plan_finish(plan) != 0:
        raise MixgraphError("cannot finish the plan (out of memory, or mix operations "
                            "the engine refuses)")
