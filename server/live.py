"""The C objects a live session owns, and when each may be freed (control thread).

A node, a connection (edge) or a delay group realised in C is a Live* record
here, beside the model object it realises. The audio thread may still read a
C object after the control thread has dropped it, for as long as a plan that
uses it is running, so every plan holds a reference to each object it uses
(`Refs`), and an object is freed only once it is dead (removed from the
graph) and no plan holds it any more."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from . import lv2
from ._core import ffi, lib
from .errors import DeviceMismatch, MixgraphError
from .graph import Conn, GNode, port_base

_PK, _DEAD = attrgetter("pk"), attrgetter("dead")


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

    def __post_init__(self) -> None:
        self.pk = ptr_key(self.ptr)

    def readout(self, what: str) -> list[float]:
        """A published value (meter level, position...), per channel where it is."""
        flat = 0
        g = self.g
        for r in g.type.readouts:
            n = g.channels if r.per_channel else 1
            if r.name == what:
                vals = [float(lib.mg_node_readout(self.ptr, flat + i)) for i in range(n)]
                if r.map == "db":
                    vals = [20.0 * math.log10(v) if v > 1e-10 else -200.0 for v in vals]
                return vals
            flat += n
        raise MixgraphError(f"{g.name} ({g.type.name}) has no parameter or readout {what!r}")


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


class Refs:
    """How many plans hold each C object, and the object for each pointer;
    frees an object once it is dead and no plan holds it.

    Counted at C speed (a plan of 10,000 nodes takes no Python step per
    object): `taken` counts the plans that took each key and `given` those
    that gave it back (both by Counter.update, a C loop); the difference is
    how many hold it."""

    def __init__(self, close_stream: Callable[[object], None],
                 groups: dict[tuple, LiveGroup]) -> None:
        self.taken: Counter[int] = Counter()
        self.given: Counter[int] = Counter()
        self.owners: dict[int, object] = {}
        self._close_stream = close_stream  # a player's/recorder's disk stream
        self._groups = groups  # the session's live delay groups, by key

    def held(self, obj) -> bool:
        """True while some plan (handed over or being built) uses obj."""
        return self.count(ptr_key(obj.ptr)) > 0

    def count(self, k: int) -> int:
        """How many plans hold the object with key k."""
        return self.taken.get(k, 0) - self.given.get(k, 0)

    def ref_all(self, objs: list) -> list[int]:
        """One more plan uses each of objs; returns their keys (no Python call
        per object: a plan of 10,000 nodes is counted at C speed)."""
        keys = list(map(_PK, objs))
        self.taken.update(keys)
        self.owners.update(zip(keys, objs, strict=True))
        return keys

    def unref(self, keys: list[int], release: bool = True) -> None:
        """A plan that used keys is gone; with release, free what is dead and unused."""
        self.given.update(keys)
        if not release:
            return
        owners = self.owners
        for obj in list(filter(_DEAD, filter(None, map(owners.get, keys)))):
            if owners.get(obj.pk) is obj and self.count(obj.pk) == 0:
                self.release_if_unused(obj)

    def force_release(self, obj) -> None:
        """Free obj whatever holds it (the audio thread must be stopped)."""
        if obj.ptr != ffi.NULL:
            k = ptr_key(obj.ptr)
            self.given[k] = self.taken.get(k, 0)
            self.release_if_unused(obj)

    def free_all(self, objs: list) -> None:
        """Free objs and everything any plan still holds (the audio thread must
        be stopped: at the session's close)."""
        seen = set()
        for o in objs:
            if o.ptr != ffi.NULL and id(o) not in seen:
                seen.add(id(o))
                self.force_release(o)
        for o in list(self.owners.values()):
            self.force_release(o)

    def release_if_unused(self, obj) -> None:
        """Free obj's C object unless a plan still holds it."""
        k = ptr_key(obj.ptr)
        if self.count(k) > 0:
            return
        self.taken.pop(k, None)
        self.given.pop(k, None)
        self.owners.pop(k, None)
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
                    g.dead = True
                    if self._groups.get(g.key) is g:
                        del self._groups[g.key]
                    if g.ptr != ffi.NULL:
                        obj.ptr = ffi.NULL
                        self.release_if_unused(g)
        obj.ptr = ffi.NULL
