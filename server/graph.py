"""The graph model: named nodes, JACK-style ports, connections, validation.

Pure Python and independent of the engine, so every rule (names, ports,
channel counts, cycles) is checked here before anything reaches C. A
rejected edit raises MixgraphError and leaves the graph unchanged."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .catalog import CATALOG, NodeType, PortSpec
from .errors import MixgraphError, shown

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # matched whole (fullmatch)


@dataclass
class GNode:
    """A node in the model: its type, fixed channel count, options and parameters."""

    name: str
    type: NodeType
    channels: int
    options: dict = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Conn:
    """A connection from an output port to an input port."""

    src: str
    src_port: str
    dst: str
    dst_port: str

    def __str__(self) -> str:
        return f"{self.src}:{self.src_port} -> {self.dst}:{self.dst_port}"


def check_name(name: str) -> str:
    """A node name must be one OSC address part without pattern characters."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise MixgraphError(
            f"bad node name {shown(name)}: "
            "use 1-64 of A-Z a-z 0-9 _ - (no spaces or pattern characters)"
        )
    return name


class Graph:
    """Nodes and connections, with the rules of DESIGN.md's graph semantics."""

    def __init__(self) -> None:
        self.nodes: dict[str, GNode] = {}
        self.conns: dict[Conn, int] = {}  # insertion-ordered set (value: its sequence)
        self._seq = 0
        # the same connections by node (insertion-ordered sets): an edit looks at
        # the nodes it touches, never at the whole graph
        self.outs: dict[str, dict[Conn, None]] = {}
        self.ins: dict[str, dict[Conn, None]] = {}

    # ---- nodes ---------------------------------------------------------
    def add_node(self, type_name: str | NodeType, name: str, channels: int | None = None,
                 options: dict | None = None) -> GNode:
        """Add a node (of a type named, or given: an LV2 plugin's); its channel
        count is fixed from here on."""
        check_name(name)
        t = type_name if isinstance(type_name, NodeType) else CATALOG.get(type_name)
        if t is None:
            raise MixgraphError(
                f"unknown node type {type_name!r} (known: {', '.join(sorted(CATALOG))})"
            )
        type_name = t.name
        if name in self.nodes:
            raise MixgraphError(f"a node named {name!r} already exists")
        ch = t.default_channels if channels is None else channels
        if not isinstance(ch, int) or not t.min_channels <= ch <= t.max_channels:
            raise MixgraphError(
                f"{type_name} takes {t.min_channels}..{t.max_channels} channels, not {channels!r}"
            )
        node = GNode(name, t, ch, dict(options or {}), {p.name: p.default for p in t.params})
        self.nodes[name] = node
        self.outs[name] = {}
        self.ins[name] = {}
        return node

    def node(self, name: str) -> GNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise MixgraphError(f"no node named {name!r}") from None

    def remove_node(self, name: str) -> list[Conn]:
        """Remove a node and every connection touching it; returns those connections."""
        self.node(name)
        gone = list(dict.fromkeys([*self.ins[name], *self.outs[name]]))
        gone.sort(key=self.conns.__getitem__)  # in the order they were made
        for c in gone:
            self._unlink(c)
        del self.nodes[name], self.ins[name], self.outs[name]
        return gone

    # ---- ports and connections -------------------------------------------
    def endpoint(self, text: str, direction: str) -> tuple[GNode, str, int]:
        """Resolve `node` or `node:port` to (node, port name, channels)."""
        if not isinstance(text, str) or not text:
            raise MixgraphError(f"bad port {text!r}: expected node or node:port")
        name, _, port = text.partition(":")
        node = self.node(name)
        spec = node.type.port(port or None, direction)
        if spec is None:
            have = [p.name for p in node.type.ports if p.direction == direction]
            what = "output" if direction == "out" else "input"
            if port:
                raise MixgraphError(
                    f"{name} ({node.type.name}) has no {what} port {port!r}"
                    + (f" (its {what}s: {', '.join(have)})" if have else f" (it has no {what}s)")
                )
            raise MixgraphError(f"{name} ({node.type.name}) has no {what} port")
        return node, spec.name, spec.channel_count(node.channels)

    def connect(self, src: str, dst: str) -> Conn:
        """Connect src[:port] to dst[:port]; mono fans out, other mismatches fail."""
        s, sp, sch = self.endpoint(src, "out")
        d, dp, dch = self.endpoint(dst, "in")
        if sch != dch and sch != 1:
            raise MixgraphError(
                f"channel mismatch: {s.name}:{sp} has {sch} channels, {d.name}:{dp} has {dch}"
            )
        conn = Conn(s.name, sp, d.name, dp)
        if conn in self.conns:
            raise MixgraphError(f"already connected: {conn}")
        cycle = self._path(d.name, s.name)
        if s.name == d.name:
            cycle = [s.name]
        if cycle is not None:
            loop = " -> ".join([s.name, *cycle])
            raise MixgraphError(f"connecting {s.name} -> {d.name} would make a cycle: {loop}")
        self._seq += 1
        self.conns[conn] = self._seq
        self.outs[conn.src][conn] = None
        self.ins[conn.dst][conn] = None
        return conn

    def disconnect(self, src: str, dst: str) -> Conn:
        s, sp, _ = self.endpoint(src, "out")
        d, dp, _ = self.endpoint(dst, "in")
        conn = Conn(s.name, sp, d.name, dp)
        if conn not in self.conns:
            raise MixgraphError(f"not connected: {conn}")
        self._unlink(conn)
        return conn

    def _unlink(self, conn: Conn) -> None:
        del self.conns[conn], self.outs[conn.src][conn], self.ins[conn.dst][conn]

    def bypass_ports(self, name: str) -> tuple[PortSpec, PortSpec]:
        """The (in, out) main ports a bypass of node `name` joins; MixgraphError if
        it cannot be bypassed (no input, no output, or their channel counts differ)."""
        g = self.node(name)
        pin, pout = g.type.port(None, "in"), g.type.port(None, "out")
        if (pin is None or pout is None
                or pin.channel_count(g.channels) != pout.channel_count(g.channels)):
            raise MixgraphError(f"{name} ({g.type.name}) cannot be bypassed: bypass needs an "
                                "input and an output with the same channel count")
        return pin, pout

    def _path(self, start: str, goal: str) -> list[str] | None:
        """A path of node names from start to goal along connections, if any."""
        outs = self.outs
        prev: dict[str, str | None] = {start: None}
        stack = [start]
        while stack:
            n = stack.pop()
            if n == goal:
                path = [n]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])  # type: ignore[arg-type]
                return path[::-1]
            for c in outs.get(n, ()):
                m = c.dst
                if m not in prev:
                    prev[m] = n
                    stack.append(m)
        return None


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


def topo_order(names: list, edges: list[tuple], key: Callable | None = None) -> list:
    """Kahn's algorithm in waves (every node whose inputs are all in earlier
    waves), stable in the given node order; raises on a cycle. With `key`,
    each wave is sorted by it (stably): nodes of one type then sit next to
    each other, where the engine can run them as a gang."""
    indeg = {n: 0 for n in names}
    succ: dict = {n: [] for n in names}
    for a, b in edges:
        succ[a].append(b)
        indeg[b] += 1
    ready = [n for n in names if indeg[n] == 0]
    out: list = []
    while ready:
        if key is not None:
            ready.sort(key=key)
        wave, ready = ready, []
        for n in wave:
            out.append(n)
            for m in succ[n]:
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
    if len(out) != len(names):
        raise MixgraphError("the graph has a cycle")
    return out
