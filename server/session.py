"""The live session: the graph model bound to the C engine (control thread).

Every edit goes through here: it creates and retires the C objects that
realise nodes and connections (server/live.py), keeps parameters, bypass and
VCA groups, fades connections in and out so edits never click, and hands
each new plan (compiled by server/planner.py) to the audio thread together
with its fades, freeing objects once the audio thread has handed back the
last plan that used them. The patch document is server/patch.py."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from . import admit, history, patch, planner, retire, vca
from ._core import ffi, lib
from .catalog import CATALOG
from .diskio import DiskIO
from .dues import EDGE, NODE, Dues
from .engine import (
    CMD_PARAM,
    CMD_PLAN,
    EV_LATE,
    EV_PLAN_RETIRED,
    EV_SYNC,
    Engine,
    EngineBusy,
)
from .errors import MixgraphError
from .graph import Conn, GNode, Graph, port_base
from .journal import Journal
from .live import LiveEdge, LiveGroup, LiveNode, Refs, new_node, ptr_key
from .pending import Pending
from .state import confine_path
from .timers import Timers
from .values import creation_settings, param_value, vca_members

log = logging.getLogger("mixgraph.session")

FADE_MS = 5.0
# a parameter set timed further ahead than this is recorded in the model when it
# applies; nearer ones (an immediate bundle's two-block lead) at once
DEFER_SAMPLES = lib.MG_MAX_BLOCK


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
        self.dying_edges: dict[LiveEdge, int] = {}  # fading out: edge -> due sample time
        self._dying_due: dict[int, int] = {}  # id(node) -> due time
        self.dues = Dues(self)  # both tables' deadlines as a heap (next_due)
        self.refs = Refs(self.disk.close, self.groups)  # plan inputs; when objects are freed
        self._latent = 0  # live nodes with a latency (0: no compensation walk)
        self._compensated = False  # the last compensation pass found latency
        self._plans: dict[int, planner.PlanRecord] = {}  # handed to the engine, by generation
        self.gangs: list[tuple[str, int]] = []  # newest plan's gangs: (type, size)
        self.buffers = 0  # channel buffers the newest plan's node outputs share
        self.fades = planner.FadeQueue()  # edge gain changes that go out with the plan
        self._dirty = False
        self._sync_waiters: dict[int, Callable[[], None]] = {}
        self.timers = Timers()  # deferred work on the sample clock: see at()
        self.actions_running: dict = {}  # (node, action) -> the Action under way
        self.late_events = 0
        self.plans_built = 0  # plans handed to the engine
        self.changed: Callable[[], None] | None = None  # autosave hook
        self.applied: Callable[[str, str, float], None] | None = None  # a timed set's time came
        self.pending = Pending(lambda: engine.sample_rate, lambda: engine.time)  # timed sets
        self.journal: Journal | None = None  # told of each change before its reply
        self._quiet = 0  # > 0 while a document loads (journaled as one "doc" op)
        self.missing_ok = False  # restoring: a player with no file is restored silent
        self.missing: dict[str, str] = {}  # such players: name -> why
        self.trimmed: list[str] = []  # restoring: what was past this version's limits
        self.metadata: dict = {}
        self.bypassed: set[str] = set()  # bypassed nodes, and the stand-in edges by the
        self.bypass_edges: dict[tuple[Conn, Conn], LiveEdge] = {}  # (in, out) pair replaced
        self._muted: set[Conn] = set()  # connections out of bypassed nodes (target 0)
        self._vcas: dict[str, None] = {}  # names of the vca nodes
        self._vca_set: set[str] = set()  # faders whose `vca` offset a VCA set
        self.history = history.History(self)  # undo/redo: wraps the edit methods above
        self.admission = admit.Admission(self)  # a big load joins the plans in batches

    # ---- helpers --------------------------------------------------------------
    @property
    def started(self) -> bool:
        """True once the audio thread has processed any samples."""
        return self.engine.time > 0

    def _touch(self) -> None:
        if self.changed:
            self.changed()

    def _log(self, rec: tuple) -> None:
        if self.journal is not None and not self._quiet:
            self.journal.add(rec)

    def resolve_path(self, path: str, write: bool = False) -> Path:
        """A file path for a player/recorder, confined to the data directory when asked."""
        return confine_path(self.data_dir, path, write, self.confine_paths)

    # ---- nodes -----------------------------------------------------------------
    def add_node(self, type_name: str, name: str, settings: dict | None = None,
                 stand_in: bool = True) -> GNode:
        """Create a node. settings holds creation options and parameter values.
        stand_in: an lv2 node whose plugin is not installed may be a silent stand-in
        that keeps its place (restoring a document, an undo); a client's new node
        (stand_in False) is refused instead.

        Atomic: every value is checked (server/values.py) before anything is
        created, and a failure after that (a file that will not open, the engine
        refusing the node) undoes every part already made."""
        t = CATALOG.get(type_name) if isinstance(type_name, str) else None
        if t is None:
            raise MixgraphError(f"unknown node type {str(type_name)[:64]!r} "
                                f"(known: {', '.join(sorted(CATALOG))})")
        c = creation_settings(t, name, settings or {})
        t = c.type  # an lv2 node's type is its plugin's (server/lv2.py)
        if c.missing and not stand_in:
            raise MixgraphError(f"{name}: no LV2 plugin with URI {t.uri} on this machine "
                                "(`mixgraph lv2 list` lists them)")
        if name in self.graph.nodes:
            raise MixgraphError(f"a node named {name!r} already exists")
        options, channels, first = c.options, c.channels, c.first
        if type_name == "vca":
            options["members"] = ",".join(
                vca_members(name, options.get("members", ""), self.graph.nodes,
                            missing_ok=self._quiet > 0))  # a document keeps removed ones
        stream = g = None
        try:
            if t.needs_fifo:
                stream = self.disk.open_for(t, options, channels, self.resolve_path,
                                            self.missing if self.missing_ok else None, name)
                channels = stream.channels
            g = self.graph.add_node(t, name, channels, options)
            node = self.live[name] = new_node(self.engine, t, g, first, c.seed, stream,
                                              c.params)
            self.refs.add(node, planner.rank(self.refs, t.name))
            self._latent += node.latency > 0
        except BaseException:
            # undo fully: nothing half-created stays in the model, the engine or on disk
            if g is not None and self.graph.nodes.get(name) is g:
                self.graph.remove_node(name)
            if stream is not None:
                self.disk.close(stream)
            raise
        self._dirty = True
        self.missing.update(c.missing)  # a stand-in for what is missing (lv2 placeholder)
        if type_name == "vca":
            self._vcas[name] = None
        try:
            self._apply_vca(new=name)
        except BaseException:
            self.remove_node(name)  # in no plan yet: it simply goes
            raise
        self._touch()
        self._log(("add", name, type_name, g.channels,
                   {k: v for k, v in options.items() if not k.startswith("_")}, dict(g.params)))
        if c.clamped:
            g.options["_clamped"] = c.clamped
        return g

    def remove_node(self, name: str) -> None:
        """Remove a node: its connections fade out, then it leaves the plan."""
        gone = self.graph.remove_node(name)
        node = self.live.pop(name)
        self._latent -= node.latency > 0
        for c in gone:
            self._retire_edge(self.edges.pop(c))
        # bypass connections through or around it fade first, so that the node's
        # own stay in the plan covers every fading connection that touches it
        self.bypassed.discard(name)
        self._sync_bypass()
        self._retire_node(node)
        self.missing.pop(name, None)
        if self._vcas.pop(name, 0) is None:
            self._apply_vca()
        self._touch()
        self._log(("rm", name))

    def _retire_node(self, node: LiveNode) -> None:
        if not node.published or not self.started:
            self.refs.kill(node)
            self._dirty = True
            self.refs.release_if_unused(node)
            return
        self.dying_nodes.append(node)
        self.refs.move(node, 1)
        due = self.engine.time + self.fade_samples + lib.MG_MAX_BLOCK
        # it keeps running while connections from or into it still fade (and feed
        # a delay line): retire.collect waits for them
        self._dying_due[id(node)] = self.dues.add(NODE, id(node), due)

    def _retire_edge(self, edge: LiveEdge, wait: int = 0) -> None:
        """Fade an edge out (after holding its gain for `wait` frames) and
        drop it once the fade has also passed through its group's delay line."""
        if edge in self.fades.fade_in:
            self.fades.fade_in.remove(edge)
        if (not self.started or not edge.src.published
                or not self.refs.held(edge)):
            # never in a plan (created in this same batch of edits): nothing plays
            # through it, and no command may reach it once it is freed
            self.refs.kill(edge)
            self._dirty = True
            self.refs.release_if_unused(edge)
            return
        due = self.engine.time + wait + self.fade_samples + edge.delay + lib.MG_MAX_BLOCK
        self.dying_edges[edge] = self.dues.add(EDGE, edge, due)
        self.refs.move(edge, 2)
        self.fades.cmds.append((edge, 0.0, wait))  # due moves to the push (_push_fades)

    # ---- connections ------------------------------------------------------------
    def connect(self, src: str, dst: str) -> Conn:
        conn = self.graph.connect(src, dst)
        gain = 0.0 if self.started else 1.0
        ptr = lib.mg_edge_new(gain)
        edge = LiveEdge(conn, self.live[conn.src], self.live[conn.dst], ptr)
        self.edges[conn] = edge
        self.refs.add(edge)
        if gain == 0.0:
            self.fades.fade_in.append(edge)
        self._dirty = True
        self._sync_bypass()
        self._touch()
        self._log(("conn", f"{conn.src}:{conn.src_port}", f"{conn.dst}:{conn.dst_port}"))
        return conn

    def disconnect(self, src: str, dst: str) -> Conn:
        conn = self.graph.disconnect(src, dst)
        self._retire_edge(self.edges.pop(conn))
        self._sync_bypass()
        self._touch()
        self._log(("disc", f"{conn.src}:{conn.src_port}", f"{conn.dst}:{conn.dst_port}"))
        return conn

    # ---- bypass ------------------------------------------------------------------
    def bypass_ports(self, name: str):
        """The (in, out) ports a bypass joins; MixgraphError if the node cannot be bypassed."""
        return self.graph.bypass_ports(name)

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
        self._log(("byp", name, bool(on)))
        return on

    def _sync_bypass(self) -> None:
        """Make the stand-in connections of bypassed nodes what planner.bypass_plan
        says, and fade the bypassed nodes' outputs out (and back in)."""
        if not (self.bypassed or self.bypass_edges or self._muted):
            return  # no bypass, no stand-in, nothing muted: nothing to do
        bp = planner.bypass_plan(self.graph, self.bypassed, self.live, self.edges,
                                 self.bypass_edges)
        want, out_port, delay, wait, hold_b = bp.want, bp.out_port, bp.delay, bp.wait, bp.hold_b
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
                _, dch = port_base(dst.g, conn.dst_port, "in")
                group = planner.delay_group(self.groups, dst, conn.dst_port, dch, d, self.refs)
            gain = 0.0 if self.started else 1.0
            edge = LiveEdge(conn, self.live[conn.src], dst, lib.mg_edge_new(gain), delay=d,
                            group=group, wait=wait(k, d))
            if group is not None:
                group.members.add(edge)
            self.refs.add(edge, region=1)
            if gain == 0.0:
                self.fades.fade_in.append(edge)
            self.bypass_edges[k] = edge
            self._dirty = True
        # the edges whose target may change: out of a bypassed node, or muted by an
        # earlier bypass (never a walk over every edge of the graph)
        self._muted &= self.edges.keys()
        maybe = self._muted | {c for n in self.bypassed for c in self.graph.outs[n]}
        seq = self.graph.conns
        for c in sorted((c for c in maybe if c in self.edges), key=seq.__getitem__):
            e = self.edges[c]
            target = 0.0 if out_port.get(c.src) == c.src_port else 1.0
            if target == e.target:
                continue
            e.target = target
            if target == 0.0:
                self._muted.add(c)
            else:
                self._muted.discard(c)
            if not self.refs.held(e):
                # in no plan yet: no command (it could be freed before the audio
                # thread reads it); it starts where it should instead
                if not self.started:
                    lib.mg_edge_set_gain(e.ptr, target)
                elif target == 0.0 and e in self.fades.fade_in:
                    self.fades.fade_in.remove(e)  # created at gain 0: it never fades in
                elif target > 0.0 and e not in self.fades.fade_in:
                    self.fades.fade_in.append(e)
                continue
            if target == 0.0 and e in self.fades.fade_in:
                self.fades.fade_in.remove(e)
                if self.started:
                    continue  # created at gain 0: it simply never fades in
            self.fades.cmds.append((e, target, hold_b.get(c, 0)))

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
        v, clamped = param_value(node.g.type, name, param, value)
        deferred = self.apply_param(node, spec.index, param, v, time)
        if node.g.type.name == "vca" and not deferred:
            self._apply_vca()
        return v, clamped

    def will_defer(self, node: LiveNode, time: int) -> bool:
        """True when a set for this sample time is scheduled in the engine and
        recorded only when it applies (more than DEFER_SAMPLES ahead)."""
        return bool(time) and node.published and time > self.engine.time + DEFER_SAMPLES

    def apply_param(self, node: LiveNode, index: int, param: str, v: float,
                    time: int = 0) -> bool:
        """Hand a checked, in-range value to the node (engine-smoothed once it plays)
        and record it: the part of set_param the OSC flood path shares.

        The model (queries, dumps, the autosave) holds the value in effect now: a
        set scheduled for a later sample time is recorded by a timer when the
        engine reaches that time (then `applied` is called, for feedback).
        Returns True for such a deferred set."""
        if node.published:
            self.engine.push(CMD_PARAM, node.ptr, index, v, time)
            if self.will_defer(node, time):
                key, entry = self.pending.add(time, node.g.name, param, v)
                self._log(("at", *entry))  # kept across a crash: server/pending.py
                self._touch()  # and in the next snapshot (its `scheduled` list)
                self.timers.at(time, lambda: self._deferred_applied(node, param, v, key))
                return True
        else:
            lib.mg_node_init_param(node.ptr, index, v)
        self._record(node, param, v)
        return False

    def _record(self, node: LiveNode, param: str, v: float) -> None:
        """A value in effect: into the model, the autosave and the journal."""
        node.g.params[param] = v
        self._touch()
        j = self.journal
        if j is not None and not self._quiet:
            j.sets[(node.g.name, param)] = v  # Journal.set, inlined: the flood path

    def _deferred_applied(self, node: LiveNode, param: str, v: float, key: int) -> None:
        """A scheduled set has reached its sample time: record it now."""
        self.pending.done(key)
        name = node.g.name
        if self.live.get(name) is not node:
            return  # removed (or replaced) before its time: the engine dropped it too
        self._record(node, param, v)
        if node.g.type.name == "vca":
            self._apply_vca()
        if self.applied is not None:
            self.applied(name, param, v)

    # ---- VCA groups ------------------------------------------------------------------
    def _apply_vca(self, new: str | None = None) -> None:
        vca.apply(self, new)  # server/vca.py

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
        return node.readout(what)

    def has_readout(self, name: str, what: str) -> bool:
        node = self.live.get(name)
        return node is not None and any(r.name == what for r in node.g.type.readouts)

    # ---- latency compensation ------------------------------------------------------
    def latencies(self) -> dict[str, int]:
        """Latency in samples at each live node's output (its inputs aligned)."""
        return planner.latencies(self.live, self.graph.conns)

    def set_latency(self, name: str, samples: int) -> None:
        """Give a live node a new latency (tests; a node whose latency changes):
        the next commit compensates every path again."""
        node = self.live[name]
        self._latent += (samples > 0) - (node.latency > 0)
        node.latency = samples
        self._dirty = True

    def _compensate(self) -> None:
        """Give every connection the delay that aligns it with the slowest path
        into the same node; a connection whose delay changes is replaced by a
        new edge in the delay group of its new delay, with a crossfade (the
        existing edge fades). The delay is applied by the group, after the
        edge gain, so a fade reaches the output `delay` frames after it
        starts: the fade of the path with the shorter delay waits for the
        difference, and the two meet at the output."""
        if not self._latent and not self._compensated:  # no latency: no walk of the graph
            return
        self._compensated = self._latent > 0  # after this pass, no delays without latency
        wanted = planner.compensation(self.live, self.graph.conns)
        for conn, edge in list(self.edges.items()):
            want = wanted[conn]
            if want == edge.delay:
                continue
            _, dch = port_base(edge.dst.g, conn.dst_port, "in")
            gain = 0.0 if self.started else edge.target
            group = (planner.delay_group(self.groups, edge.dst, conn.dst_port, dch, want,
                                         self.refs) if want > 0 else None)
            ptr = lib.mg_edge_new(gain)
            if ptr == ffi.NULL:
                raise MixgraphError(f"out of memory connecting {conn}")
            hold = max(want, edge.delay)
            new = LiveEdge(conn, edge.src, edge.dst, ptr, delay=want, target=edge.target,
                           group=group, wait=hold - want)
            if group is not None:
                group.members.add(new)
            self.refs.add(new)
            self.refs.swap(new, edge)  # in its place, as under the same key in self.edges
            self.edges[conn] = new
            self._retire_edge(edge, hold - edge.delay)
            if self.started and edge.target > 0.0:
                self.fades.fade_in.append(new)
        if self.bypass_edges:  # a bypass carries the delays around the bypassed node
            self._sync_bypass()

    def _push_fades(self) -> None:
        """Push the queued fades; a fade-out's deadline counts from its push."""
        def due(e: LiveEdge, t: int) -> None:  # a dying node waits for its dying edges
            if e in self.dying_edges:  # (a bypass's fade-out is no removal)
                self.dying_edges[e] = self.dues.add(EDGE, e, max(self.dying_edges[e], t))
        self.fades.push(self.engine, self.fade_samples, due, lambda e: retire.holds(self, e))

    def commit(self) -> None:
        """Compile and hand over a new plan if the graph changed; push the queued
        fades (EngineBusy leaves the rest for the next call)."""
        if not self._dirty:
            need = len(self.fades.cmds)
            if need and (need > self.engine.cmd_capacity or self.engine.space() >= need):
                with suppress(EngineBusy):
                    self._push_fades()
            return
        if not self.admission.before_build():
            return  # the last batch of new nodes is not in the engine yet
        self._compensate()
        try:  # from the plan inputs, kept in C per edit (live.Refs): no listing here
            compiled = planner.build(self.refs)
        except planner.PlanCycle:
            # a fading edge closes a loop with a new one: cut the fades short
            for e in self.dying_edges:
                self.refs.kill(e)
            self._dirty = True
            retire.collect(self, True)
            return self.commit()
        rec = compiled.record
        # the plan, its fade-ins and the queued fades go out together: with too
        # little room in the ring, all of them wait for the next service()
        need = 1 + len(self.fades.fade_in) + len(self.fades.cmds)
        try:
            if need <= self.engine.cmd_capacity and self.engine.space() < need:
                raise EngineBusy("no room in the command ring for the plan and its fades")
            self.engine.push(CMD_PLAN, rec.ptr)
        except EngineBusy:
            planner.drop(rec)
            return  # still dirty: retried on the next service()
        self._plans[ptr_key(rec.ptr)] = rec
        self.plans_built += 1
        self.gangs = compiled.gangs
        self.buffers = compiled.buffers
        for obj in self.refs.taken(rec.gen):  # the objects new in this plan
            if isinstance(obj, LiveNode):
                obj.published = True
        self._dirty = self.admission.after_push()  # True while new nodes wait to join
        # fade-ins first, then the fade-outs and bypass switches queued since the
        # last commit (an edge's wait is used once); not of edges still outside plans
        self.fades.release_fade_ins(self.refs.outside)
        with suppress(EngineBusy):  # the rest goes out at the next commit
            self._push_fades()

    # ---- service: events from the audio thread and deferred work ----------------
    @property
    def dirty(self) -> bool:
        """True while edits wait for the next commit."""
        return self._dirty

    def service(self, commit: bool = True) -> None:
        """Handle engine events, finish fades that are done, commit changes
        (unless commit is False: the caller commits)."""
        for kind, index, value, _time, ptr in self.engine.poll():
            if kind == EV_PLAN_RETIRED:
                rec = self._plans.pop(ptr_key(ptr), None)
                if rec is None:
                    continue
                lib.mg_plan_free(rec.ptr)
                self.refs.retired(rec.gen)
            elif kind == EV_SYNC:
                cb = self._sync_waiters.pop(index, None)
                if cb:
                    cb()
            elif kind == EV_LATE:
                self.late_events += 1
                log.info("event applied %d samples late", value)
        self.refs.free_due()  # a big removal's frees, a batch per call (live.FREE_BATCH)
        retire.collect(self, False)  # server/retire.py
        self.timers.run(self.engine.time)
        if commit:
            self.commit()

    def next_due(self) -> int | None:
        """The earliest sample time at which deferred work falls due."""
        t, d = self.timers.next_due(), self.dues.next()  # two heaps: no scan
        return d if t is None else t if d is None else min(t, d)

    def at(self, sample_time: int, callback: Callable[[], None]) -> None:
        """Call callback from service() once the engine has reached sample_time."""
        self.timers.at(sample_time, callback)

    def sync(self, token: int, callback: Callable[[], None]) -> None:
        """Call callback once every command queued so far has reached the engine."""
        self.commit()
        token = int(token) & 0x7FFFFFFF
        self.admission.sync(token)  # once every new node has joined the plans
        self._sync_waiters[token] = callback

    def idle(self) -> bool:
        """True when no plan (but the running one), fade or removal is in flight."""
        return not (self._dirty or self.dying_edges or self.dying_nodes or len(self._plans) > 1)

    # ---- patches ---------------------------------------------------------------
    def to_doc(self) -> dict:
        """The patch as a plain document (msgpack/JSON): server/patch.py."""
        return patch.to_doc(self)

    def load_doc(self, doc: dict) -> None:
        """Make the graph equal to doc, touching only what differs: server/patch.py.
        Journaled as one record of the state it ends in (also when it fails halfway)."""
        self._quiet += 1
        try:
            patch.load_doc(self, doc)
        finally:
            self._quiet -= 1
            if self.journal is not None and not self._quiet:
                self.journal.add(("doc", self.to_doc()))

    def close(self) -> None:
        """Free every C object (the audio thread must be stopped)."""
        if self.engine.ptr is not None:
            lib.mg_engine_quiesce(self.engine.ptr)  # workers leaving the last cycle
        for rec in self._plans.values():
            lib.mg_plan_free(rec.ptr)
        self._plans.clear()
        self.refs.free_all([*self.live.values(), *self.edges.values(), *self.dying_nodes,
                            *self.bypass_edges.values(), *self.dying_edges, *self.groups.values()])
        for d in (self.live, self.edges, self.bypass_edges, self.groups):
            d.clear()
        self.disk.close_all()
