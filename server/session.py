"""The live session: the graph model bound to the C engine.

Owns every C object (nodes, edges, plans) on the control thread: builds a
plan whenever the graph changes, hands it to the audio thread, fades edges
in and out so edits never click, and frees objects once the audio thread
has handed back the last plan that used them."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._core import ffi, lib
from .catalog import CATALOG
from .diskio import DiskIO
from .engine import (
    CMD_EDGE,
    CMD_PARAM,
    CMD_PLAN,
    CMD_SYNC,
    EV_LATE,
    EV_PLAN_RETIRED,
    EV_SYNC,
    Engine,
    EngineBusy,
)
from .errors import MixgraphError
from .graph import Conn, GNode, Graph, topo_order

log = logging.getLogger("mixgraph.session")

FADE_MS = 5.0
PATCH_FORMAT = "mixgraph-patch"
PATCH_VERSION = 1
# creation options: everything else given to /graph/add must be a parameter
OPTIONS = {"channels", "first", "seed", "path", "format", "members"}


def _key(ptr) -> int:
    return int(ffi.cast("uintptr_t", ptr))


@dataclass(eq=False)
class LiveNode:
    """A node instance in C, with the model node it realises."""

    g: GNode
    ptr: object
    stream: object | None = None
    published: bool = False
    dead: bool = False
    latency: int = 0


@dataclass(eq=False)
class LiveEdge:
    """One connection in C: a gain that fades in and out."""

    conn: Conn
    src: LiveNode
    dst: LiveNode
    ptr: object
    dead: bool = False
    delay: int = 0  # latency compensation, samples (applied by its group)
    target: float = 1.0  # gain the edge is fading to (0 while its source is bypassed)
    group: LiveGroup | None = None  # the delay group it mixes into when delay > 0
    wait: int = 0  # frames its next queued fade holds first (aligns fades at the output)


@dataclass(eq=False)
class LiveGroup:
    """A delay group in C: the connections into one input port that need the
    same compensation delay are summed, each with its own edge gain, and the
    sum goes through one delay line per channel. Shared by every edge with
    that (destination, port, delay), kept while any of them exists (so plan
    swaps never reset its rings), freed once no edge or plan uses it."""

    dst: LiveNode
    port: str
    delay: int
    channels: int
    ptr: object
    members: set = field(default_factory=set)  # LiveEdges not yet freed
    dead: bool = False

    @property
    def key(self) -> tuple:
        return (self.dst, self.port, self.delay)


@dataclass
class _PlanRecord:
    ptr: object
    keys: list[int] = field(default_factory=list)


def number(value, what: str) -> float:
    """A finite number from an OSC argument (int, float, bool); else a clear error."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float):
        raise MixgraphError(f"{what}: expected a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise MixgraphError(f"{what}: {value!r} is not a finite number")
    return v


def whole(value, what: str) -> int:
    """A whole number from an OSC argument (2 and 2.0 are fine, 2.5 is not)."""
    v = number(value, what)
    if v != int(v):
        raise MixgraphError(f"{what}: expected a whole number, got {value!r}")
    return int(v)


class Session:
    """Graph + engine: every edit goes through here and ends in a plan swap."""

    def __init__(self, engine: Engine, data_dir: str | Path | None = None,
                 confine_paths: bool = True, disk: DiskIO | None = None,
                 fade_ms: float = FADE_MS) -> None:
        self.engine = engine
        self.graph = Graph()
        self.data_dir = Path(data_dir) if data_dir else Path.cwd()
        self.confine_paths = confine_paths
        self.disk = disk or DiskIO(engine.sample_rate)
        self.fade_samples = max(1, int(round(fade_ms * 1e-3 * engine.sample_rate)))
        self.live: dict[str, LiveNode] = {}
        self.edges: dict[Conn, LiveEdge] = {}
        # delay groups by (destination LiveNode, input port, delay)
        self.groups: dict[tuple, LiveGroup] = {}
        self.dying_nodes: list[LiveNode] = []
        self.dying_edges: list[tuple[int, LiveEdge]] = []  # (due sample time, edge)
        self._dying_due: dict[int, int] = {}  # id(node) -> due time
        self._refs: dict[int, int] = {}
        self._plans: dict[int, _PlanRecord] = {}
        # (type, size) of each gang of the newest plan: nodes the engine runs
        # together through their type's process_many
        self.gangs: list[tuple[str, int]] = []
        # channel buffers the newest plan's node outputs share (liveness reuse)
        self.buffers = 0
        self._owners: dict[int, object] = {}
        self._fade_in: list[LiveEdge] = []
        # gain changes of edges already in a plan (fade-outs, bypass switches):
        # pushed at the commit with the plan and the fade-ins, so both halves of
        # a crossfade reach the engine together however long the edits take
        self._fade_cmds: list[tuple[LiveEdge, float, int]] = []
        self._dirty = False
        self._sync_waiters: dict[int, Callable[[], None]] = {}
        self._timers: list = []  # (sample time, seq, callback), a heap: see at()
        self._timer_seq = itertools.count()
        self.actions_running: dict = {}  # (node, action) -> the Action under way
        self.late_events = 0
        self.changed: Callable[[], None] | None = None  # autosave hook
        self.metadata: dict = {}
        # bypass: names of bypassed nodes, and the direct edges standing in for them,
        # keyed by the (into-node, out-of-node) connection pair they replace
        self.bypassed: set[str] = set()
        self.bypass_edges: dict[tuple[Conn, Conn], LiveEdge] = {}

    # ---- helpers --------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True once the audio thread has processed any samples."""
        return self.engine.time > 0

    def _touch(self) -> None:
        if self.changed:
            self.changed()

    def resolve_path(self, path: str, write: bool = False) -> Path:
        """A file path for a player/recorder, confined to the data directory when asked."""
        if not isinstance(path, str) or not path:
            raise MixgraphError("path: expected a file name")
        p = Path(path)
        if self.confine_paths:
            root = self.data_dir.resolve()
            full = (root / p).resolve()
            if p.is_absolute() or (full != root and root not in full.parents):
                raise MixgraphError(f"path {path!r} is outside the data directory")
            p = full
        elif not p.is_absolute():
            p = (self.data_dir / p).resolve()
        if write:
            p.parent.mkdir(parents=True, exist_ok=True)
        elif not p.is_file():
            raise MixgraphError(f"no such file: {path!r}")
        return p

    # ---- nodes -----------------------------------------------------------------
    def add_node(self, type_name: str, name: str, settings: dict | None = None) -> GNode:
        """Create a node. settings holds creation options and parameter values."""
        settings = dict(settings or {})
        t = CATALOG.get(type_name)
        if t is None:
            raise MixgraphError(
                f"unknown node type {type_name!r} (known: {', '.join(sorted(CATALOG))})"
            )
        options = {k: settings.pop(k) for k in list(settings) if k in OPTIONS}
        params: dict[str, float] = {}
        clamped = []
        for k, v in settings.items():
            spec = t.param(k)
            if spec is None:
                known = sorted([p.name for p in t.params] + list(OPTIONS))
                raise MixgraphError(
                    f"{type_name} has no parameter or option {k!r} (known: {', '.join(known)})"
                )
            x = number(v, f"{name}/{k}")
            params[k] = min(max(x, spec.min), spec.max)
            if params[k] != x:
                clamped.append(k)
        if type_name == "vca":
            options["members"] = ",".join(self._vca_members(name, options.get("members", "")))
        channels = options.get("channels")
        if channels is not None:
            channels = whole(channels, "channels")
        first = whole(options.get("first", 1), "first")
        if first < 1:
            raise MixgraphError(f"first: hardware channels count from 1, not {first}")
        first -= 1
        seed = whole(options.get("seed", 1), "seed") & 0xFFFFFFFFFFFFFFFF
        stream = None
        if t.needs_fifo:
            if "path" not in options:
                raise MixgraphError(f"{type_name} needs a `path` option")
            if type_name == "player":
                path = self.resolve_path(options["path"])
                stream = self.disk.open_player(path, channels)
                channels = stream.channels
            else:
                path = self.resolve_path(options["path"], write=True)
                ch = channels or t.default_channels
                stream = self.disk.open_recorder(path, ch, options.get("format"))
        try:
            kept = {k: v for k, v in options.items() if k != "channels"}
            g = self.graph.add_node(type_name, name, channels, kept)
        except MixgraphError:
            if stream is not None:
                self.disk.close(stream)
            raise
        err = ffi.new("int *")
        fifo = stream.fifo.ptr if stream is not None else ffi.NULL
        ptr = lib.mg_node_new(self.engine.ptr, t.index, g.channels, first, seed, fifo, err)
        if ptr == ffi.NULL:
            self.graph.remove_node(name)
            if stream is not None:
                self.disk.close(stream)
            reasons = {
                2: "bad channel count",
                3: "out of memory",
                4: (
                    f"hardware channels {first + 1}..{first + g.channels} do not exist "
                    f"(the device has {self.engine.hw_in} in / {self.engine.hw_out} out)"
                    if type_name in ("input", "output")
                    else "the node could not be prepared"
                ),
            }
            raise MixgraphError(f"cannot create {name}: {reasons.get(err[0], 'error')}")
        for k, v in params.items():
            g.params[k] = v
            lib.mg_node_init_param(ptr, t.param_index[k], v)
        self.live[name] = LiveNode(g, ptr, stream, latency=int(lib.mg_node_latency(ptr)))
        self._dirty = True
        self._apply_vca()
        self._touch()
        if clamped:
            g.options["_clamped"] = clamped
        return g

    def remove_node(self, name: str) -> None:
        """Remove a node: its connections fade out, then it leaves the plan."""
        gone = self.graph.remove_node(name)
        node = self.live.pop(name)
        for c in gone:
            self._retire_edge(self.edges.pop(c))
        # bypass connections through or around it fade first, so that the node's
        # own stay in the plan covers every fading connection that touches it
        self.bypassed.discard(name)
        self._sync_bypass()
        self._retire_node(node)
        if node.g.type.name == "vca":
            self._apply_vca()
        self._touch()

    def _retire_node(self, node: LiveNode) -> None:
        if not node.published or not self.started:
            node.dead = True
            self._dirty = True
            self._release_if_unused(node)
            return
        self.dying_nodes.append(node)
        due = self.engine.time + self.fade_samples + lib.MG_MAX_BLOCK
        # it keeps running while connections from or into it still fade (and feed
        # a delay line)
        due = max([due] + [d for d, e in self.dying_edges if e.src is node or e.dst is node])
        self._dying_due[id(node)] = due

    def _retire_edge(self, edge: LiveEdge, wait: int = 0) -> None:
        """Fade an edge out (after holding its gain for `wait` frames) and
        drop it once the fade has also passed through its group's delay line."""
        if edge in self._fade_in:
            self._fade_in.remove(edge)
        if (not self.started or not edge.src.published
                or self._refs.get(_key(edge.ptr), 0) == 0):
            # never in a plan (created in this same batch of edits): nothing plays
            # through it, and no command may reach it once it is freed
            edge.dead = True
            self._dirty = True
            self._release_if_unused(edge)
            return
        due = self.engine.time + wait + self.fade_samples + edge.delay + lib.MG_MAX_BLOCK
        self.dying_edges.append((due, edge))
        self._fade_cmds.append((edge, 0.0, wait))  # due moves to the push (_push_fades)

    # ---- connections ------------------------------------------------------------
    def connect(self, src: str, dst: str) -> Conn:
        conn = self.graph.connect(src, dst)
        gain = 0.0 if self.started else 1.0
        ptr = lib.mg_edge_new(gain)
        edge = LiveEdge(conn, self.live[conn.src], self.live[conn.dst], ptr)
        self.edges[conn] = edge
        if gain == 0.0:
            self._fade_in.append(edge)
        self._dirty = True
        self._sync_bypass()
        self._touch()
        return conn

    def disconnect(self, src: str, dst: str) -> Conn:
        conn = self.graph.disconnect(src, dst)
        self._retire_edge(self.edges.pop(conn))
        self._sync_bypass()
        self._touch()
        return conn

    # ---- bypass ------------------------------------------------------------------
    def bypass_ports(self, name: str):
        """The (in, out) ports a bypass joins; MixgraphError if the node cannot be bypassed."""
        node = self.live.get(name)
        if node is None:
            raise MixgraphError(f"no node named {name!r}")
        g = node.g
        pin, pout = g.type.port(None, "in"), g.type.port(None, "out")
        if (pin is None or pout is None
                or pin.channel_count(g.channels) != pout.channel_count(g.channels)):
            raise MixgraphError(f"{name} ({g.type.name}) cannot be bypassed: bypass needs an "
                                "input and an output with the same channel count")
        return pin, pout

    def set_bypass(self, name: str, on: bool) -> bool:
        """Bypass a node click-free: its output connections fade out while direct
        connections from its sources to its destinations fade in (and back)."""
        self.bypass_ports(name)
        if on:
            self.bypassed.add(name)
        else:
            self.bypassed.discard(name)
        self._sync_bypass()
        self._touch()
        return on

    def _sync_bypass(self) -> None:
        want: dict[tuple[Conn, Conn], Conn] = {}
        out_port: dict[str, str] = {}
        for name in self.bypassed:
            pin, pout = self.bypass_ports(name)
            out_port[name] = pout.name
            ins = [c for c in self.graph.conns if c.dst == name and c.dst_port == pin.name]
            outs = [c for c in self.graph.conns if c.src == name and c.src_port == pout.name]
            for a in ins:
                for b in outs:
                    want[(a, b)] = Conn(a.src, a.src_port, b.dst, b.dst_port)
        # A bypass keeps the node's latency: the direct connection a.src -> b.dst is
        # delayed by what the path through the node takes (a's compensation, the
        # node's latency, b's compensation), so parallel paths stay aligned and
        # nothing downstream is re-compensated. Fades meet at the output: b fades
        # where it enters its delay group, `hold_b` after the command, the direct
        # edge at once, and both reach the output `delay` frames on.
        def delay(k: tuple[Conn, Conn]) -> int:
            ea, eb = self.edges.get(k[0]), self.edges.get(k[1])
            node = self.live.get(k[0].dst)
            return ((ea.delay if ea else 0) + (node.latency if node else 0)
                    + (eb.delay if eb else 0))

        hold_b: dict[Conn, int] = {}
        for k, d in [(k, delay(k)) for k in want] + [
                (k, e.delay) for k, e in self.bypass_edges.items() if k not in want]:
            eb = self.edges.get(k[1])  # on release, b fades in to meet the old direct edge
            hold_b[k[1]] = max(hold_b.get(k[1], 0), d - (eb.delay if eb else 0))

        def wait(k: tuple[Conn, Conn], d: int) -> int:
            eb = self.edges.get(k[1])
            return max(0, hold_b.get(k[1], 0) + (eb.delay if eb else 0) - d)

        for k in list(self.bypass_edges):
            old = self.bypass_edges[k]
            if k not in want or old.delay != delay(k):
                self.bypass_edges.pop(k)
                self._retire_edge(old, wait(k, old.delay))
                self._dirty = True
        for k, conn in want.items():
            if k in self.bypass_edges:
                continue
            d = delay(k)
            dst = self.live[conn.dst]
            group = None
            if d > 0:
                _, dch = self._port_base(dst.g, conn.dst_port, "in")
                group = self._group(dst, conn.dst_port, dch, d)
            gain = 0.0 if self.started else 1.0
            edge = LiveEdge(conn, self.live[conn.src], dst, lib.mg_edge_new(gain), delay=d,
                            group=group, wait=wait(k, d))
            if group is not None:
                group.members.add(edge)
            if gain == 0.0:
                self._fade_in.append(edge)
            self.bypass_edges[k] = edge
            self._dirty = True
        for c, e in self.edges.items():
            target = 0.0 if out_port.get(c.src) == c.src_port else 1.0
            if target == e.target:
                continue
            e.target = target
            if self._refs.get(_key(e.ptr), 0) == 0:
                # in no plan yet: no command (it could be freed before the audio
                # thread reads it); it starts where it should instead
                if not self.started:
                    lib.mg_edge_set_gain(e.ptr, target)
                elif target == 0.0 and e in self._fade_in:
                    self._fade_in.remove(e)  # created at gain 0: it never fades in
                elif target > 0.0 and e not in self._fade_in:
                    self._fade_in.append(e)
                continue
            if target == 0.0 and e in self._fade_in:
                self._fade_in.remove(e)
                if self.started:
                    continue  # created at gain 0: it simply never fades in
            self._fade_cmds.append((e, target, hold_b.get(c, 0)))

    # ---- parameters ----------------------------------------------------------
    def set_param(self, name: str, param: str, value, time: int = 0) -> tuple[float, bool]:
        """Set a parameter in its units; returns (value applied, clamped?)."""
        node = self.live.get(name)
        if node is None:
            raise MixgraphError(f"no node named {name!r}")
        spec = node.g.type.param(param)
        if spec is None:
            names = ", ".join(p.name for p in node.g.type.params) or "none"
            raise MixgraphError(
                f"{name} ({node.g.type.name}) has no parameter {param!r} (its parameters: {names})"
            )
        x = number(value, f"{name}/{param}")
        v = min(max(x, spec.min), spec.max)
        self.apply_param(node, spec.index, param, v, time)
        if node.g.type.name == "vca":
            self._apply_vca()
        return v, v != x

    def apply_param(self, node: LiveNode, index: int, param: str, v: float,
                    time: int = 0) -> None:
        """Hand a checked, in-range value to the node (engine-smoothed once it plays)
        and record it: the part of set_param the OSC flood path shares."""
        if node.published:
            self.engine.push(CMD_PARAM, node.ptr, index, v, time)
        else:
            lib.mg_node_init_param(node.ptr, index, v)
        node.g.params[param] = v
        self._touch()

    # ---- VCA groups ------------------------------------------------------------------
    def _vca_members(self, vca: str, members) -> list[str]:
        """Member names of a VCA: existing nodes that have a `vca` parameter."""
        if isinstance(members, str):
            names = [m.strip() for m in members.split(",") if m.strip()]
        elif isinstance(members, list | tuple):
            names = [str(m) for m in members]
        else:
            raise MixgraphError(f"{vca}: members must be a comma-separated list of fader names")
        for m in names:
            node = self.live.get(m)
            if node is None:
                raise MixgraphError(f"{vca}: no member node named {m!r}")
            if node.g.type.param("vca") is None:
                raise MixgraphError(f"{vca}: {m} ({node.g.type.name}) cannot be a VCA member")
        return names

    def _apply_vca(self) -> None:
        """Set every fader's `vca` offset to the sum of the levels of its VCAs."""
        offsets: dict[str, float] = {}
        for node in self.live.values():
            if node.g.type.name == "vca":
                for m in node.g.options.get("members", "").split(","):
                    if m:
                        offsets[m] = offsets.get(m, 0.0) + node.g.params["level"]
        for name, node in self.live.items():
            if "vca" in node.g.params:
                want = offsets.get(name, 0.0)
                if node.g.params["vca"] != want:
                    self.set_param(name, "vca", want)

    def get_param(self, name: str, param: str) -> float:
        node = self.live.get(name)
        if node is None:
            raise MixgraphError(f"no node named {name!r}")
        if param not in node.g.params:
            raise MixgraphError(f"{name} ({node.g.type.name}) has no parameter {param!r}")
        return node.g.params[param]

    def readout(self, name: str, what: str) -> list[float]:
        """A published value (meter level, position...), per channel where it is."""
        node = self.live.get(name)
        if node is None:
            raise MixgraphError(f"no node named {name!r}")
        flat = 0
        for r in node.g.type.readouts:
            n = node.g.channels if r.per_channel else 1
            if r.name == what:
                vals = [float(lib.mg_node_readout(node.ptr, flat + i)) for i in range(n)]
                if r.map == "db":
                    vals = [20.0 * math.log10(v) if v > 1e-10 else -200.0 for v in vals]
                return vals
            flat += n
        raise MixgraphError(f"{name} ({node.g.type.name}) has no parameter or readout {what!r}")

    def has_readout(self, name: str, what: str) -> bool:
        node = self.live.get(name)
        return node is not None and any(r.name == what for r in node.g.type.readouts)

    # ---- plan compilation --------------------------------------------------------
    def latencies(self) -> dict[str, int]:
        """Latency in samples at each live node's output (its inputs aligned)."""
        names = list(self.live)
        order = topo_order(names, [(c.src, c.dst) for c in self.graph.conns])
        into: dict[str, list[Conn]] = {}
        for c in self.graph.conns:
            into.setdefault(c.dst, []).append(c)
        out: dict[str, int] = {}
        for n in order:
            arrival = max((out[c.src] for c in into.get(n, ())), default=0)
            out[n] = arrival + self.live[n].latency
        return out

    def _group(self, dst: LiveNode, port: str, channels: int, delay: int) -> LiveGroup:
        """The delay group for (dst, port, delay): the live one, or a new one."""
        g = self.groups.get((dst, port, delay))
        if g is None:
            ptr = lib.mg_dgroup_new(channels, delay)
            if ptr == ffi.NULL:
                raise MixgraphError(f"cannot allocate a {delay}-sample delay into "
                                    f"{dst.g.name}:{port}")
            g = LiveGroup(dst, port, delay, channels, ptr)
            self.groups[g.key] = g
        return g

    def _compensate(self) -> None:
        """Give every connection the delay that aligns it with the slowest path
        into the same node; a connection whose delay changes is replaced by a
        new edge in the delay group of its new delay, with a crossfade (the
        existing edge fades). The delay is applied by the group, after the
        edge gain, so a fade reaches the output `delay` frames after it
        starts: the fade of the path with the shorter delay waits for the
        difference, and the two meet at the output."""
        if not any(n.latency for n in self.live.values()):
            if not any(e.delay for e in self.edges.values()):
                return
        lat = self.latencies()
        arrival: dict[str, int] = {}
        for c in self.graph.conns:
            arrival[c.dst] = max(arrival.get(c.dst, 0), lat[c.src])
        for conn, edge in list(self.edges.items()):
            want = arrival[conn.dst] - lat[conn.src]
            if want == edge.delay:
                continue
            _, dch = self._port_base(edge.dst.g, conn.dst_port, "in")
            gain = 0.0 if self.started else edge.target
            group = self._group(edge.dst, conn.dst_port, dch, want) if want > 0 else None
            ptr = lib.mg_edge_new(gain)
            if ptr == ffi.NULL:
                raise MixgraphError(f"out of memory connecting {conn}")
            hold = max(want, edge.delay)
            new = LiveEdge(conn, edge.src, edge.dst, ptr, delay=want, target=edge.target,
                           group=group, wait=hold - want)
            if group is not None:
                group.members.add(new)
            self.edges[conn] = new
            self._retire_edge(edge, hold - edge.delay)
            if self.started and edge.target > 0.0:
                self._fade_in.append(new)
        if self.bypass_edges:  # a bypass carries the delays around the bypassed node
            self._sync_bypass()

    def _push_fades(self) -> None:
        """Push the queued gain changes of edges in the plan (after the plan and
        the fade-ins). A fade-out's deadline counts from here (a dying node
        waits for its dying edges: _collect_dying)."""
        while self._fade_cmds:
            e, target, wait = self._fade_cmds[0]
            if not e.dead:
                self.engine.push(CMD_EDGE, e.ptr, self.fade_samples, target, wait)  # may raise
                if target == 0.0:
                    due = self.engine.time + wait + self.fade_samples + e.delay + lib.MG_MAX_BLOCK
                    self.dying_edges = [(max(d, due) if x is e else d, x)
                                        for d, x in self.dying_edges]
            self._fade_cmds.pop(0)

    def commit(self) -> None:
        """Compile and hand over a new plan if the graph changed; push the queued
        fades (EngineBusy leaves the rest for the next call)."""
        if not self._dirty:
            need = len(self._fade_cmds)
            if need and (need > self.engine.cmd_capacity or self.engine.space() >= need):
                try:
                    self._push_fades()
                except EngineBusy:
                    pass
            return
        self._compensate()
        nodes = list(self.live.values()) + [n for n in self.dying_nodes if not n.dead]
        edges = list(self.edges.values()) + list(self.bypass_edges.values())
        edges += [e for _, e in self.dying_edges if not e.dead]
        ids = {id(n): n for n in nodes}
        edges = [e for e in edges if id(e.src) in ids and id(e.dst) in ids]
        try:
            order = topo_order(list(ids), [(id(e.src), id(e.dst)) for e in edges],
                               key=lambda i: ids[i].g.type.name)
        except MixgraphError:
            # a fading edge closes a loop with a new one: cut the fades short
            for _, e in self.dying_edges:
                e.dead = True
            self._dirty = True
            self._collect_dying(force=True)
            return self.commit()
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
        rec = _PlanRecord(plan)
        try:
            self._fill_plan(plan, rec, order, ids, edges, into, grouped, groups)
        except BaseException:
            self._drop_plan(rec)
            raise
        gangs = []
        for step, nid in enumerate(order):
            g = lib.mg_plan_step_gang(plan, step)
            if g > 1:
                gangs.append((ids[nid].g.type.name, g))
        # the plan, its fade-ins and the queued fades go out together: with too
        # little room in the ring, all of them wait for the next service()
        need = 1 + len(self._fade_in) + len(self._fade_cmds)
        if need <= self.engine.cmd_capacity and self.engine.space() < need:
            self._drop_plan(rec)
            return  # still dirty
        try:
            self.engine.push(CMD_PLAN, plan)
        except EngineBusy:
            self._drop_plan(rec)
            return  # still dirty: retried on the next service()
        gen = _key(plan)
        self._plans[gen] = rec
        self.gangs = gangs
        self.buffers = lib.mg_plan_buffers(plan)
        for node in nodes:
            node.published = True
        self._dirty = False
        # fade-ins first, then the fade-outs and bypass switches queued since the
        # last commit (an edge's wait is used once)
        self._fade_cmds[0:0] = [(e, e.target, e.wait) for e in self._fade_in if not e.dead]
        for e in self._fade_in:
            e.wait = 0
        self._fade_in.clear()
        try:
            self._push_fades()
        except EngineBusy:
            pass  # the rest goes out at the next commit

    def _drop_plan(self, rec: _PlanRecord) -> None:
        """Free a plan that never reached the engine, and its references."""
        for k in rec.keys:
            self._refs[k] -= 1
        lib.mg_plan_free(rec.ptr)

    def _fill_plan(self, plan, rec: _PlanRecord, order: list, ids: dict, edges: list,
                   into: dict, grouped: dict, groups: list) -> None:
        """Steps, mix operations and edges of a new plan, each referenced in rec."""
        for step, nid in enumerate(order):
            node = ids[nid]
            lib.mg_plan_set_step(plan, step, node.ptr)
            rec.keys.append(self._ref(node))
            # members first: each group sums them before its delay line runs
            for g, members in grouped.get(nid, {}).items():
                for e in members:
                    sbase, sch = self._port_base(e.src.g, e.conn.src_port, "out")
                    for c in range(g.channels):
                        sc = c if sch == g.channels else 0
                        if lib.mg_plan_add_group_mix(plan, step, g.ptr, c, e.src.ptr,
                                                     sbase + sc, e.ptr) != 0:
                            raise MixgraphError(f"internal error wiring {e.conn}")
            for e in into.get(nid, ()):
                dbase, dch = self._port_base(e.dst.g, e.conn.dst_port, "in")
                sbase, sch = self._port_base(e.src.g, e.conn.src_port, "out")
                for c in range(dch):
                    sc = c if sch == dch else 0
                    if lib.mg_plan_add_mix(plan, step, dbase + c, e.src.ptr, sbase + sc,
                                           e.ptr, c) != 0:
                        raise MixgraphError(f"internal error wiring {e.conn}")
            for g in grouped.get(nid, {}):
                dbase, _ = self._port_base(g.dst.g, g.port, "in")
                for c in range(g.channels):
                    if lib.mg_plan_add_group_out(plan, step, dbase + c, g.ptr, c) != 0:
                        raise MixgraphError(f"internal error wiring the delay into {g.port}")
        for g in groups:
            rec.keys.append(self._ref(g))
        for e in edges:
            lib.mg_plan_add_edge(plan, e.ptr)
            rec.keys.append(self._ref(e))
        if lib.mg_plan_finish(plan) != 0:
            raise MixgraphError("cannot finish the plan (out of memory, or mix operations "
                                "the engine refuses)")

    @staticmethod
    def _port_base(g: GNode, port: str, direction: str) -> tuple[int, int]:
        base = 0
        for p in g.type.ports:
            if p.direction != direction:
                continue
            n = p.channel_count(g.channels)
            if p.name == port:
                return base, n
            base += n
        raise MixgraphError(f"{g.name} has no port {port!r}")

    def _ref(self, obj) -> int:
        k = _key(obj.ptr)
        self._refs[k] = self._refs.get(k, 0) + 1
        self._owners[k] = obj
        return k

    def _release_if_unused(self, obj) -> None:
        k = _key(obj.ptr)
        if self._refs.get(k, 0) > 0:
            return
        self._refs.pop(k, None)
        self._owners.pop(k, None)
        if isinstance(obj, LiveNode):
            lib.mg_node_free(obj.ptr)
            if obj.stream is not None:
                self.disk.close(obj.stream)
        elif isinstance(obj, LiveGroup):
            lib.mg_dgroup_free(obj.ptr)
        else:
            lib.mg_edge_free(obj.ptr)
            g = obj.group
            if g is not None:
                g.members.discard(obj)
                if not g.members:  # nothing can mix into it any more
                    g.dead = True
                    if self.groups.get(g.key) is g:
                        del self.groups[g.key]
                    if g.ptr != ffi.NULL:
                        obj.ptr = ffi.NULL
                        self._release_if_unused(g)
        obj.ptr = ffi.NULL

    # ---- service: events from the audio thread and deferred work ----------------
    def service(self) -> None:
        """Handle engine events, finish fades that are done, commit changes."""
        for kind, index, value, _time, ptr in self.engine.poll():
            if kind == EV_PLAN_RETIRED:
                rec = self._plans.pop(_key(ptr), None)
                if rec is None:
                    continue
                lib.mg_plan_free(rec.ptr)
                for k in rec.keys:
                    self._refs[k] -= 1
                    obj = self._owners.get(k)
                    if obj is not None and obj.dead and self._refs[k] == 0:
                        self._release_if_unused(obj)
            elif kind == EV_SYNC:
                cb = self._sync_waiters.pop(index, None)
                if cb:
                    cb()
            elif kind == EV_LATE:
                self.late_events += 1
                log.info("event applied %d samples late", value)
        self._collect_dying()
        self._run_timers()
        self.commit()

    def _collect_dying(self, force: bool = False) -> None:
        now = self.engine.time
        keep = []
        for due, e in self.dying_edges:
            if force or e.dead or (now >= due and lib.mg_edge_gain(e.ptr) == 0.0):
                if not e.dead:
                    e.dead = True
                    self._dirty = True
                if self._refs.get(_key(e.ptr), 0) == 0 and e.ptr != ffi.NULL:
                    self._release_if_unused(e)
            else:
                keep.append((due, e))
        self.dying_edges = keep
        still = []
        # a node leaves the plan only after its retired connections have faded
        # (their fades may still be queued, their deadlines later than the node's)
        fading = {id(x) for _, e in self.dying_edges for x in (e.src, e.dst)}
        for n in self.dying_nodes:
            if force or (now >= self._dying_due.get(id(n), 0) and id(n) not in fading):
                n.dead = True
                self._dirty = True
                self._dying_due.pop(id(n), None)
            else:
                still.append(n)
        self.dying_nodes = still

    def next_due(self) -> int | None:
        """The earliest sample time at which deferred work falls due."""
        dues = [d for d, _ in self.dying_edges] + list(self._dying_due.values())
        if self._timers:
            dues.append(self._timers[0][0])
        return min(dues) if dues else None

    def at(self, sample_time: int, callback: Callable[[], None]) -> None:
        """Call callback from service() once the engine has reached sample_time."""
        heapq.heappush(self._timers, (int(sample_time), next(self._timer_seq), callback))

    def _run_timers(self) -> None:
        now = self.engine.time
        while self._timers and self._timers[0][0] <= now:
            _, _, cb = heapq.heappop(self._timers)
            try:
                cb()
            except Exception:  # a timer must not break event handling
                log.exception("timer callback failed")

    def sync(self, token: int, callback: Callable[[], None]) -> None:
        """Call callback once every command queued so far has reached the engine."""
        self.commit()
        self.engine.push(CMD_SYNC, ffi.NULL, int(token) & 0x7FFFFFFF)
        self._sync_waiters[int(token) & 0x7FFFFFFF] = callback

    def idle(self) -> bool:
        """True when no plan, fade or removal is still in flight."""
        # the plan the engine is running stays in _plans until it is replaced
        return not (self._dirty or self.dying_edges or self.dying_nodes or len(self._plans) > 1)

    # ---- patches ---------------------------------------------------------------
    STATE_MAX = 1 << 16  # floats of saved node state (a profile: channels x bins)

    def node_state(self, name: str) -> list[float] | None:
        """What a stateful node (C restore hook) has learned, as floats; None if nothing."""
        node = self.live.get(name)
        if node is None or not node.g.type.has_state:
            return None
        buf = ffi.new("float[]", self.STATE_MAX)
        got = lib.mg_node_capture(node.ptr, buf, self.STATE_MAX)
        return [float(buf[i]) for i in range(got)] if got > 0 else None

    def restore_state(self, name: str, state: list) -> bool:
        """Load saved state into a node not yet in any plan; False (and a log line) if
        the node refuses it, e.g. a profile saved at another sample rate."""
        node = self.live.get(name)
        if node is None or not node.g.type.has_state or node.published:
            return False
        arr = ffi.new("float[]", [float(x) for x in state])
        if lib.mg_node_restore(node.ptr, arr, len(state)) != 0:
            log.warning("%s: saved state not restored (%d values; saved at another sample "
                        "rate or channel count?)", name, len(state))
            return False
        return True

    def to_doc(self) -> dict:
        """The patch as a plain document (msgpack/JSON)."""
        from .actions import triggers_for  # actions import this module

        nodes = []
        for g in self.graph.nodes.values():
            opts = {k: v for k, v in g.options.items() if not k.startswith("_")}
            skip = triggers_for(g.type.name)  # an action's trigger is not state
            nodes.append({"name": g.name, "type": g.type.name, "channels": g.channels,
                          "options": opts,
                          "params": {k: v for k, v in g.params.items() if k not in skip}})
            state = self.node_state(g.name) if g.type.has_state else None
            if state:
                nodes[-1]["state"] = state
            if g.name in self.bypassed:
                nodes[-1]["bypass"] = True
        return {
            "format": PATCH_FORMAT,
            "version": PATCH_VERSION,
            "sample_rate": self.engine.sample_rate,
            "nodes": nodes,
            "connections": [[f"{c.src}:{c.src_port}", f"{c.dst}:{c.dst_port}"]
                            for c in self.graph.conns],
            "metadata": dict(self.metadata),
        }

    def load_doc(self, doc: dict) -> None:
        """Make the graph equal to doc, touching only what differs (a diff)."""
        from .actions import triggers_for

        nodes, conns = validate_doc(doc)
        for n in nodes:  # a trigger saved by an older version must not start an action
            skip = triggers_for(n["type"])
            if skip:
                n["params"] = {k: v for k, v in n["params"].items() if k not in skip}
        want = {n["name"]: n for n in nodes}
        for name in list(self.graph.nodes):
            g = self.graph.nodes[name]
            w = want.get(name)
            if (w is None or w["type"] != g.type.name or w["channels"] != g.channels
                    or w["options"] != {k: v for k, v in g.options.items()
                                        if not k.startswith("_")}
                    # saved state can only be loaded into a node in no plan yet
                    or (g.type.has_state and w.get("state")
                        and w["state"] != self.node_state(name))):
                self.remove_node(name)
        # VCAs last: their members must exist
        for n in sorted(nodes, key=lambda n: n["type"] == "vca"):
            if n["name"] not in self.graph.nodes:
                self.add_node(n["type"], n["name"],
                              {**n["options"], "channels": n["channels"], **n["params"]})
                if n.get("state"):
                    self.restore_state(n["name"], n["state"])
            else:
                g = self.graph.nodes[n["name"]]
                for k, v in n["params"].items():
                    if g.params.get(k) != v:
                        self.set_param(n["name"], k, v)
        want_conns = set()
        for src, dst in conns:
            s, sp, _ = self.graph.endpoint(src, "out")
            d, dp, _ = self.graph.endpoint(dst, "in")
            want_conns.add(Conn(s.name, sp, d.name, dp))
        for c in list(self.graph.conns):
            if c not in want_conns:
                self.disconnect(f"{c.src}:{c.src_port}", f"{c.dst}:{c.dst_port}")
        for src, dst in conns:
            s, sp, _ = self.graph.endpoint(src, "out")
            d, dp, _ = self.graph.endpoint(dst, "in")
            if Conn(s.name, sp, d.name, dp) not in self.graph.conns:
                self.connect(src, dst)
        for n in nodes:
            if n["bypass"] != (n["name"] in self.bypassed):
                self.set_bypass(n["name"], n["bypass"])
        self.metadata = dict(doc.get("metadata") or {})

    def close(self) -> None:
        """Free every C object (the audio thread must be stopped)."""
        for rec in self._plans.values():
            lib.mg_plan_free(rec.ptr)
        self._plans.clear()
        objs = list(self.live.values()) + list(self.edges.values()) + self.dying_nodes
        objs += list(self.bypass_edges.values())
        objs += [e for _, e in self.dying_edges]
        objs += list(self.groups.values())
        seen = set()
        for o in objs:
            if o.ptr == ffi.NULL or id(o) in seen:
                continue
            seen.add(id(o))
            self._refs[_key(o.ptr)] = 0
            self._release_if_unused(o)
        for o in list(self._owners.values()):
            if o.ptr != ffi.NULL:
                self._refs[_key(o.ptr)] = 0
                self._release_if_unused(o)
        self.live.clear()
        self.edges.clear()
        self.bypass_edges.clear()
        self.groups.clear()
        self.disk.close_all()


def validate_doc(doc) -> tuple[list[dict], list[list[str]]]:
    """Check a patch document completely (on a scratch graph) before applying it."""
    if not isinstance(doc, dict) or doc.get("format") != PATCH_FORMAT:
        raise MixgraphError(f"not a {PATCH_FORMAT} document")
    if doc.get("version") != PATCH_VERSION:
        raise MixgraphError(
            f"patch version {doc.get('version')!r} is not supported (this is {PATCH_VERSION})"
        )
    nodes = doc.get("nodes")
    conns = doc.get("connections")
    if not isinstance(nodes, list) or not isinstance(conns, list):
        raise MixgraphError("patch: `nodes` and `connections` must be lists")
    scratch = Graph()
    out = []
    for n in nodes:
        if not isinstance(n, dict) or not isinstance(n.get("name"), str):
            raise MixgraphError(f"patch: bad node entry {n!r}")
        t = CATALOG.get(n.get("type"))
        if t is None:
            raise MixgraphError(f"patch: node {n['name']!r} has unknown type {n.get('type')!r}")
        ch = n.get("channels", t.default_channels)
        opts = n.get("options") or {}
        params = n.get("params") or {}
        if not isinstance(opts, dict) or not isinstance(params, dict):
            raise MixgraphError(f"patch: node {n['name']!r}: options/params must be maps")
        for k, v in params.items():
            if t.param(k) is None:
                raise MixgraphError(f"patch: {n['name']} ({t.name}) has no parameter {k!r}")
            number(v, f"patch: {n['name']}/{k}")
        state = n.get("state")
        if state is not None and not (isinstance(state, list) and len(state) <= Session.STATE_MAX
                                      and all(isinstance(x, int | float) for x in state)):
            raise MixgraphError(f"patch: {n['name']}: state must be a list of numbers")
        scratch.add_node(t.name, n["name"], ch, opts)
        out.append({"name": n["name"], "type": t.name, "channels": ch, "options": opts,
                    "params": params, "bypass": bool(n.get("bypass", False))})
        if state:
            out[-1]["state"] = state
    for n in out:
        if n["type"] == "vca":
            members = n["options"].get("members", "")
            names = members.split(",") if isinstance(members, str) else list(members)
            for m in filter(None, (str(x).strip() for x in names)):
                g = scratch.nodes.get(m)
                if g is None or g.type.param("vca") is None:
                    raise MixgraphError(f"patch: {n['name']}: {m!r} is not a fader in the patch")
    for c in conns:
        if not (isinstance(c, list | tuple) and len(c) == 2):
            raise MixgraphError(f"patch: bad connection {c!r}")
        scratch.connect(c[0], c[1])
    return out, [list(c) for c in conns]
