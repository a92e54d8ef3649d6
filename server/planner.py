"""Graph -> plan: what the engine runs, compiled on the control thread.

The planner takes the live nodes and connections (server/live.py) and returns
the engine's flat plan (csrc/plan.c): the nodes in topological order, each
input's mix operations, the delay groups that carry latency compensation, and
the edges whose gains the plan fades. Here too: the latency at every node's
output and the compensation delay every connection needs, and each node
port's channel range. It allocates nothing the audio thread owns: the plan
goes to the engine through Session.commit; live.Refs keeps the plan's inputs
in C between plans and says when the plan's objects may be freed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._core import ffi, lib
from .catalog import CATALOG
from .engine import CMD_EDGE
from .errors import MixgraphError
from .graph import Conn, topo_order
from .live import LiveEdge, LiveGroup, LiveNode, Refs


class PlanCycle(MixgraphError):
    """The connections in the plan (fading ones included) close a loop."""


@dataclass
class PlanRecord:
    """A plan built for the engine, and its generation (live.Refs)."""

    ptr: object
    gen: int


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

    def release_fade_ins(self, outside: Callable[[LiveEdge], bool] | None = None) -> None:
        """The plan holding the new edges is out: their fade-ins go first. An
        edge for which outside(edge) is true is in no plan yet (a node of it
        waits to join: server/admit.py) and keeps its fade-in for a later plan."""
        keep = [e for e in self.fade_in if outside is not None and outside(e)]
        if keep:
            self.fade_in = [e for e in self.fade_in if not outside(e)]
        self.cmds[0:0] = [(e, e.target, e.wait) for e in self.fade_in if not e.dead]
        for e in self.fade_in:
            e.wait = 0  # an edge's wait is used once
        self.fade_in = keep

    def push(self, engine, fade_samples: int, due: Callable[[LiveEdge, int], None],
             hold: Callable[[LiveEdge], bool] | None = None) -> None:
        """Push the queued commands in order (EngineBusy from a full ring leaves
        the rest queued); due(edge, sample) gets each fade-out's end. A fade-out
        of an edge for which hold(edge) is true is not sent: the edge keeps its
        gain and is marked held (server/retire.py)."""
        cmds = self.cmds
        done = 0
        try:
            for e, target, wait in cmds:
                if not e.dead:
                    if target == 0.0 and hold is not None and hold(e):
                        e.held = True
                    else:
                        engine.push(CMD_EDGE, e.ptr, fade_samples, target, wait)  # may raise
                        if target == 0.0:
                            due(e, engine.time + wait + fade_samples + e.delay
                                + lib.MG_MAX_BLOCK)
                done += 1
        finally:
            del cmds[:done]


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
                delay: int, refs: Refs) -> LiveGroup:
    """The delay group for (dst, port, delay) in groups: the live one, or a new one
    (added to refs)."""
    g = groups.get((dst, port, delay))
    if g is None:
        ptr = lib.mg_dgroup_new(channels, delay)
        if ptr == ffi.NULL:
            raise MixgraphError(f"cannot allocate a {delay}-sample delay into "
                                f"{dst.g.name}:{port}")
        g = LiveGroup(dst, port, delay, channels, ptr)
        groups[g.key] = g
        refs.add(g)
    return g


TYPE_RANK: dict[str, int] = {}
"""Each node type's place in name order: a wave of the plan's order is sorted by
it, so nodes of one type sit next to each other (where they can run as a gang)."""


def rank(refs: Refs, type_name: str) -> int:
    """TYPE_RANK of a node type; when the catalog has grown, the ranks are worked
    out again and every node's in the plan inputs updated (rare: O(nodes))."""
    r = TYPE_RANK.get(type_name)
    if r is None:
        TYPE_RANK.clear()
        TYPE_RANK.update({name: i for i, name in enumerate(sorted(CATALOG))})
        for n in refs.nodes.values():
            refs.set_rank(n, TYPE_RANK.get(n.g.type.name, 0))
        r = TYPE_RANK.get(type_name, 0)
    return r


_BUILD_ERRORS = {
    2: "out of memory building the plan",
    3: "internal error wiring the plan",
    4: "cannot finish the plan (out of memory, or mix operations the engine refuses)",
}


_GANGS = (ffi.new("int[]", 256), ffi.new("int[]", 256))  # build's answer space for gangs


def build(refs: Refs) -> Compiled:
    """Compile what the plan inputs hold (refs.pin: every node and connection
    alive or still fading, kept in C and updated per edit) into a new engine
    plan. Raises PlanCycle when the edges close a loop and MixgraphError when
    the engine refuses the plan.

    The order, the mix operations and their buffers are worked out in C
    (mg_pin_build, then mg_plan_build) from the inputs as they stand: per plan,
    Python lists nothing and counts no reference (live.Refs numbers plans), and
    what a connection's operations are is worked out once per connection
    (live.wiring), not per plan."""
    err = ffi.new("int *")
    plan = lib.mg_pin_build(refs.pin, max(1, len(TYPE_RANK)), err)
    if plan == ffi.NULL:
        if err[0] == 1:
            raise PlanCycle("the graph has a cycle")
        raise MixgraphError(_BUILD_ERRORS.get(err[0], "cannot build the plan"))
    rec = PlanRecord(plan, refs.built_plan())
    steps, sizes = _GANGS
    n_gangs = lib.mg_plan_gangs(plan, steps, sizes, len(steps))
    if n_gangs > len(steps):  # a second walk of the steps only for that many gangs
        steps, sizes = ffi.new("int[]", n_gangs), ffi.new("int[]", n_gangs)
        lib.mg_plan_gangs(plan, steps, sizes, n_gangs)
    gangs = [(refs.nodes[lib.mg_pin_step_node(refs.pin, steps[k])].g.type.name, sizes[k])
             for k in range(n_gangs)]
    return Compiled(rec, gangs, lib.mg_plan_buffers(plan))


def drop(rec: PlanRecord) -> None:
    """Free a plan that never reached the engine."""
    lib.mg_plan_free(rec.ptr)
