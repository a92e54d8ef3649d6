"""The C objects a live session owns, and when each may be freed (control thread).

A node, a connection (edge) or a delay group realised in C is a Live* record
here, beside the model object it realises. The audio thread may still read a
C object after the control thread has dropped it, for as long as a plan that
uses it is running, so an object is freed only once it is dead (removed from
the graph) and no plan that may use it is running any more (`Refs`).

Per plan generation, not per object: plans are numbered as they are built,
an object is in every plan built from its first (`first_gen`) until it dies
(`last_gen`, the newest plan built then), and the plans the engine holds are
a few generations; so a plan costs no step per object it uses, and an
object's death one step. `Refs` also keeps the plans' inputs in C (mg_pin,
csrc/plan.c), updated per object born and dead, so that building a plan
lists nothing in Python."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from . import lv2
from ._core import ffi, lib
from .errors import DeviceMismatch, MixgraphError
from .graph import Conn, GNode, port_base


def ptr_key(ptr) -> int:
    """A C pointer as a dict key (and a plan's generation number)."""
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
    pk: int | None = None  # its pointer as a key (Refs)
    h: int = -1  # its handle in the plan inputs (Refs.pin), -1 when not there
    first_gen: int | None = None  # first plan generation that holds it (Refs)
    last_gen: int | None = None  # the newest plan built when it died (Refs)
    waiting: bool = False  # kept out of plans until it joins (server/admit.py)

    def __post_init__(self) -> None:
        self.pk = ptr_key(self.ptr)

    def readout(self, what: str) -> list[float]:
        """A published value (meter level, position...), per channel where it is."""
        flat = 0
        g = self.g
        for r in g.type.readouts:
            n = g.channels if r.per_channel else 1
            if r.name == what:
                return self._values(r, flat, n)
            flat += n
        raise MixgraphError(f"{g.name} ({g.type.name}) has no parameter or readout {what!r}")

    def readouts(self) -> dict[str, list[float]]:
        """Every published value, by name, in one pass (the meter stream reads them all:
        one readout() per name would walk the type's readouts again for each)."""
        out: dict[str, list[float]] = {}
        flat = 0
        g = self.g
        for r in g.type.readouts:
            n = g.channels if r.per_channel else 1
            out[r.name] = self._values(r, flat, n)
            flat += n
        return out

    def _values(self, r, flat: int, n: int) -> list[float]:
        ptr = self.ptr
        vals = [float(lib.mg_node_readout(ptr, flat + i)) for i in range(n)]
        if r.map == "db":
            vals = [20.0 * math.log10(v) if v > 1e-10 else -200.0 for v in vals]
        return vals


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
    held: bool = False  # removed with both its nodes: leaves with them, unfaded (retire.py)
    wiring: tuple = ()  # its mix operations (wiring()), worked out once
    pk: int | None = None  # its pointer as a key (Refs)
    h: int = -1  # its handle in the plan inputs (Refs.pin), -1 when not there
    first_gen: int | None = None  # first plan generation that holds it (Refs)
    last_gen: int | None = None  # the newest plan built when it died (Refs)

    def __post_init__(self) -> None:
        self.pk = ptr_key(self.ptr)
        self.wiring = wiring(self)


def wiring(e: LiveEdge) -> tuple[int, int, int, int]:
    """A connection's mix operations, as mg_plan_build reads them: (first
    channel of the input it feeds, first channel of its source's port, channels
    of the input, 1 if each reads its own source channel or 0 if a mono source
    fans out). Fixed for the edge's life (channel counts never change)."""
    sbase, sch = port_base(e.src.g, e.conn.src_port, "out")
    dbase, dch = port_base(e.dst.g, e.conn.dst_port, "in")
    return (dbase, sbase, dch, 1 if sch == dch else 0)


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
    pk: int | None = None  # its pointer as a key (Refs)
    h: int = -1  # its handle in the plan inputs (Refs.pin), -1 when not there
    first_gen: int | None = None  # first plan generation that holds it (Refs)
    last_gen: int | None = None  # the newest plan built when it died (Refs)

    def __post_init__(self) -> None:
        self.pk = ptr_key(self.ptr)

    @property
    def key(self) -> tuple:
        return (self.dst, self.port, self.delay)


def new_node(engine, t, g: GNode, first: int, seed: int, stream, params: dict) -> LiveNode:
    """The C node that realises model node g (of type t), with its parameters set;
    MixgraphError, with nothing left allocated, when the engine refuses it."""
    err = ffi.new("int *")
    fifo = stream.fifo.ptr if stream is not None else ffi.NULL
    if t.ctype is not None:  # a type made at run time (an LV2 plugin's)
        lv2.before_new(g.name, t, g.options)  # its name and state directory
        ptr = lib.mg_node_new_type(engine.ptr, t.ctype, g.channels, first, seed, fifo, err)
    else:
        ptr = lib.mg_node_new(engine.ptr, t.index, g.channels, first, seed, fifo, err)
    if ptr == ffi.NULL:
        reasons = {
            2: "bad channel count",
            3: "out of memory",
            4: (f"hardware channels {first + 1}..{first + g.channels} do not exist "
                f"(the device has {engine.hw_in} in / {engine.hw_out} out)"
                if t.name in ("input", "output") else
                ffi.string(lib.mg_lv2_last_error()).decode() if t.name == "lv2"
                else "the node could not be prepared"),
        }
        why = f"cannot create {g.name}: {reasons.get(err[0], 'error')}"
        raise (DeviceMismatch if err[0] == 4 and t.name in ("input", "output")
               else MixgraphError)(why)
    for k, v in params.items():
        g.params[k] = v
        lib.mg_node_init_param(ptr, t.param_index[k], v)
    return LiveNode(g, ptr, stream, latency=int(lib.mg_node_latency(ptr)))


_NODE, _EDGE, _GROUP = 0, 1, 2  # mg_pin kinds
_NEVER = float("inf")
FREE_BATCH = 256
"""Dead objects Refs frees per service() call at most (a node ~10 µs: its buffers
are unmapped): a big removal is freed over a few calls, and control stays
responsive in between."""


class Refs:
    """Which C objects a plan may use, when each may be freed, and the plans'
    inputs (mg_pin) kept in C.

    An object is added once, when it is made (add), and killed once, when it
    leaves the graph for good (kill: dead, out of the next plan). Plans are
    numbered as they are built (built); the engine holds the ones handed to it
    (taken) until it hands them back (retired). An object is held while some
    held plan's generation lies in [first_gen, last_gen]; a dead object is
    freed once none does: at its death if no plan ever had it, else when the
    plans that had it come back (the dead wait in `leaving`, in order of
    last_gen, so a retired plan looks only at what it frees). No step per
    object per plan: a 10,000-node plan is counted in O(1).

    Holds other than plans (a MIDI map's table: server/midi.py) are counted per
    object with ref_all/unref."""

    def __init__(self, close_stream: Callable[[object], None],
                 groups: dict[tuple, LiveGroup]) -> None:
        self.pin = ffi.gc(lib.mg_pin_new(), lib.mg_pin_free)
        if self.pin == ffi.NULL:
            raise MixgraphError("out of memory for the plan inputs")
        self.owners: dict[int, object] = {}  # every object made and not yet freed
        self.nodes: dict[int, LiveNode] = {}  # node handle in pin -> node
        self.pins: Counter[int] = Counter()  # holds other than plans (ref_all)
        self.held_gens: dict[int, None] = {}  # plans the engine holds, oldest first
        self.built = 0  # generation of the newest plan built
        self.fresh: list = []  # added since the last plan the engine took
        self.waiting: set[LiveNode] = set()  # new nodes kept out of plans (server/admit.py)
        self.leaving: deque = deque()  # dead, maybe held: by last_gen
        self._close_stream = close_stream  # a player's/recorder's disk stream
        self._groups = groups  # the session's live delay groups, by key

    # ---- objects --------------------------------------------------------------
    def add(self, obj, rank: int = 0, region: int = 0) -> None:
        """obj was made: it is in every plan built from now until it is killed.
        A node's rank is its type's place (planner.rank); an edge's region is
        0 for a connection, 1 for a bypass stand-in (the order mg_pin_build
        reads: see move)."""
        pin = self.pin
        if isinstance(obj, LiveNode):
            obj.h = lib.mg_pin_add_node(pin, obj.ptr, rank)
            self.nodes[obj.h] = obj
        elif isinstance(obj, LiveGroup):
            obj.h = lib.mg_pin_add_group(pin, obj.ptr, port_base(obj.dst.g, obj.port, "in")[0])
        else:
            g = obj.group
            obj.h = lib.mg_pin_add_edge(pin, obj.ptr, region, obj.src.h, obj.dst.h,
                                        -1 if g is None else g.h,
                                        ffi.new("int[4]", list(obj.wiring)))
        if obj.h < 0:
            raise MixgraphError("out of memory for the plan inputs")
        self.owners[obj.pk] = obj
        self.fresh.append(obj)

    def move(self, obj, region: int) -> None:
        """obj was removed from the graph but still plays (a node while its
        connections fade, region 1; a fading connection, region 2): it goes to
        the end of that region, where the session lists what is dying."""
        if obj.h >= 0 and lib.mg_pin_move(self.pin, _NODE if isinstance(obj, LiveNode)
                                          else _EDGE, obj.h, region) != 0:
            raise MixgraphError("out of memory for the plan inputs")

    def swap(self, a: LiveEdge, b: LiveEdge) -> None:
        """Edge a takes edge b's place in the plan's order, and b a's (a
        connection replaced by one with another delay: the session keeps it
        under the same key)."""
        lib.mg_pin_swap(self.pin, _EDGE, a.h, b.h)

    def kill(self, obj) -> None:
        """obj leaves the graph for good: out of every plan built from now on;
        freed once no plan that had it is held (release_if_unused, or retired)."""
        if obj.dead and obj.h < 0:
            return
        obj.dead = True
        if isinstance(obj, LiveNode) and obj.waiting:
            self.waiting.discard(obj)
            obj.waiting = False
        if obj.h >= 0:
            if isinstance(obj, LiveNode):
                lib.mg_pin_drop(self.pin, _NODE, obj.h)
                del self.nodes[obj.h]
            else:
                lib.mg_pin_drop(self.pin, _GROUP if isinstance(obj, LiveGroup) else _EDGE, obj.h)
            obj.h = -1
        if obj.first_gen is not None:
            obj.last_gen = self.built
            self.leaving.append(obj)

    def wait(self, node: LiveNode, on: bool) -> None:
        """A node not yet in any plan waits to join them (on), with its
        edges, or joins the next plan built (off): server/admit.py."""
        node.waiting = on
        if on:
            self.waiting.add(node)
        else:
            self.waiting.discard(node)
        lib.mg_pin_wait(self.pin, node.h, 1 if on else 0)

    @staticmethod
    def outside(obj) -> bool:
        """True for a waiting node and an edge into or out of one: in no plan."""
        if isinstance(obj, LiveEdge):
            return obj.src.waiting or obj.dst.waiting
        return isinstance(obj, LiveNode) and obj.waiting

    def set_rank(self, node: LiveNode, rank: int) -> None:
        """The node's type order changed (the catalog grew)."""
        lib.mg_pin_set_rank(self.pin, node.h, rank)

    # ---- plans ------------------------------------------------------------------
    def built_plan(self) -> int:
        """A plan was built from what pin holds now: its generation."""
        self.built += 1
        gen = self.built
        for o in self.fresh:
            if not o.dead:
                o.first_gen = gen
        return gen

    def taken(self, gen: int) -> list:
        """The engine took plan gen; returns the objects new in it (those
        waiting to join are not in `fresh`: server/admit.py hands them back)."""
        self.held_gens[gen] = None
        fresh, self.fresh = self.fresh, []
        return fresh

    def retired(self, gen: int) -> None:
        """The engine handed plan gen back: the dead that no held plan has may
        go (free_due frees them, FREE_BATCH a call)."""
        self.held_gens.pop(gen, None)

    def free_due(self, budget: int | None = None) -> bool:
        """Free up to `budget` (FREE_BATCH) dead objects that no held plan has;
        True when more wait. Freeing a node unmaps its buffers (a system call):
        the 20,000 objects of a cleared 10,000-node chain took one service()
        call 100 ms, during which no message was answered."""
        budget = FREE_BATCH if budget is None else budget
        oldest = next(iter(self.held_gens), _NEVER)
        leaving = self.leaving
        while leaving and (leaving[0].last_gen < oldest or leaving[0].ptr == ffi.NULL):
            if budget <= 0:
                return True
            obj = leaving.popleft()
            if obj.ptr != ffi.NULL:
                self.release_if_unused(obj)
                budget -= 1
        return False

    def held(self, obj) -> bool:
        """True while some plan the engine holds may use obj (or a MIDI table does)."""
        first = obj.first_gen
        if first is not None:
            last = obj.last_gen if obj.dead else _NEVER
            for g in self.held_gens:
                if first <= g <= last:
                    return True
        return bool(self.pins) and self.pins.get(obj.pk, 0) > 0

    def count(self, k: int) -> int:
        """How many holds other than plans the object with key k has."""
        return self.pins.get(k, 0)

    def ref_all(self, objs: list) -> list[int]:
        """A hold other than a plan (a MIDI table) uses each of objs; returns their keys."""
        keys = [o.pk for o in objs]
        self.pins.update(keys)
        return keys

    def unref(self, keys: list[int], release: bool = True) -> None:
        """A hold that used keys is gone; with release, free what is dead and unused."""
        self.pins.subtract(keys)
        owners = self.owners
        for k in keys:
            if self.pins.get(k, 1) <= 0:
                del self.pins[k]
            obj = owners.get(k)
            if release and obj is not None and obj.dead and not self.held(obj):
                self.release_if_unused(obj)

    def force_release(self, obj) -> None:
        """Free obj whatever holds it (the audio thread must be stopped)."""
        if obj.ptr != ffi.NULL:
            self.pins.pop(obj.pk, None)
            obj.first_gen = None
            self.release_if_unused(obj)

    def free_all(self, objs: list) -> None:
        """Free objs and everything any plan still holds (the audio thread must
        be stopped: at the session's close)."""
        seen = set()
        self.held_gens.clear()
        for o in objs:
            if o.ptr != ffi.NULL and id(o) not in seen:
                seen.add(id(o))
                self.force_release(o)
        for o in list(self.owners.values()):
            self.force_release(o)

    def release_if_unused(self, obj) -> None:
        """Free obj's C object unless a plan (or a MIDI table) still holds it."""
        if obj.ptr == ffi.NULL or self.held(obj):
            return
        if obj.h >= 0:  # freed without being killed (never in a plan, or at close)
            self.kill(obj)
        self.owners.pop(obj.pk, None)
        if isinstance(obj, LiveNode):
            lib.mg_node_free(obj.ptr)
            if obj.stream is not None:
                self._close_stream(obj.stream)
        elif isinstance(obj, LiveGroup):
            lib.mg_dgroup_free(obj.ptr)
        else:
            lib.mg_edge_free(obj.ptr)
            g = obj.group
            if g is not None:
                g.members.discard(obj)
                if not g.members:  # nothing can mix into it any more
                    if self._groups.get(g.key) is g:
                        del self._groups[g.key]
                    if g.ptr != ffi.NULL:
                        obj.ptr = ffi.NULL
                        # a plan has the group only through a member, and no plan
                        # holds any member now: it goes at once
                        g.first_gen = None
                        self.kill(g)
                        self.release_if_unused(g)
        obj.ptr = ffi.NULL
