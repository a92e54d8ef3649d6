"""Undo and redo: the history of the running server (control thread).

A *step* is what one client command did (a message, a pattern, a bundle), as
a list of primitive operations that can each be applied backwards and
forwards: a value moved (node, param, before, after), a node added or
removed (its type, channels, options, parameters, learned state, bypass,
connections and place in the graph), a connection made or broken, a bypass
switched, a whole patch loaded (the document before and after), or a pair of
callbacks that another part of the server registered with record().

How steps are seen: History wraps the Session's edit methods on the instance
(add_node, remove_node, connect, disconnect, set_bypass, set_param,
_record - where any value takes effect -, load_doc), so the session needs one line (`self.history =
History(self)`), and attach() wraps the Dispatcher's entry points (dispatch,
fast_set, _apply_bundle, _rollback) to mark where a command begins and ends
and who sent it, and registers /undo, /redo and /history. Only the outermost
session call of a command is recorded (what add_node does inside, such as VCA
offsets, is derived again when the step is undone or redone), and only
changes made by a command are recorded: what the server does on its own
(journal replay, a timed set reaching its time) is not a step, except what is
handed to record() or record_values().

Gestures: a command that moves one parameter joins the step of the same
client's previous change of that parameter while the client holds the
parameter's touch (`/touch 1 ... /touch 0`), or when that change is at most
BURST_S (0.5 s) earlier on the engine's sample clock (so an offline render
groups exactly as live). Any other step on that parameter, a graph edit, an
undo or a redo ends the gesture.

Undo and redo go through the session's own methods, so parameters move
through their smoothing, connections and nodes fade as for any edit, every
change is journaled (server/journal.py) and fed back to subscribers. The
graph's order (nodes, connections) is put back as it was, so /graph/dump
after an undo equals the dump before the step; the new order is journaled
("order"), as is the learned state a restored node gets back ("state").
A step that fails part-way (it should not) is rolled back from a snapshot and
answered /fail; a values-only step checks the command ring first.

Bounds: at most DEPTH (256) steps, undo and redo together, and an estimated
MAX_BYTES (64 MiB) of recorded data (learned state and patch documents count
by their size); the oldest steps go first, the newest is always kept.
/patch/save keeps the history; /patch/load starts a new one whose first step
is the load itself (so a wrong load can be undone)."""

from __future__ import annotations

import logging
from array import array
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING

import msgpack

from . import lv2, patch
from .actions import triggers_for
from .diskio import keep_take
from .errors import MixgraphError
from .graph import Conn
from .values import number

if TYPE_CHECKING:
    from .osc import Dispatcher
    from .session import Session

log = logging.getLogger("mixgraph.history")

DEPTH = 256  # steps kept (undo + redo)
MAX_BYTES = 64 << 20  # estimated memory of the recorded steps
BURST_S = 0.5  # changes of one parameter by one client this close are one step
HISTORY_SHOWN = 20  # steps /history lists without a count
LABEL_MAX = 120

_LOCAL = ("local",)  # the client key of an in-process command (a render's score)


class Step:
    """One undoable step: its operations in the order they were done."""

    __slots__ = ("ops", "label", "client", "t", "count", "size", "alive", "explicit")

    def __init__(self, label, client, t: float) -> None:
        self.ops: list[list] = []
        self.label = label  # a str, or (address, args) to describe lazily
        self.client = client
        self.t = t  # sample clock, seconds, of its latest change
        self.count = 1  # commands merged into it (a gesture)
        self.size = 0
        self.alive = True  # in the undo list (a gesture may still join it)
        self.explicit = False  # record()/record_values() named it


def _conn_text(c: Conn) -> tuple[str, str]:
    return f"{c.src}:{c.src_port}", f"{c.dst}:{c.dst_port}"


def _op_size(op: list) -> int:
    k = op[0]
    if k == "val":
        return 160
    if k in ("node+", "node-"):
        e = op[1]
        st = e.get("state")
        return (600 + 80 * len(e["params"]) + 4 * (len(st) if st is not None else 0)
                + 200 * len(e.get("conns", ())))
    if k == "doc":
        return 200 + len(op[1]) + len(op[2])
    if k == "call":
        return 200 + (op[3] if len(op) > 3 else 0)
    return 200


class History:
    """The undo and redo lists of a session, and the hooks that fill them."""

    def __init__(self, session: Session, depth: int = DEPTH, max_bytes: int = MAX_BYTES,
                 burst_s: float = BURST_S) -> None:
        self.session = session
        self.depth = depth
        self.max_bytes = max_bytes
        self.burst_s = burst_s
        self.undo_steps: deque[Step] = deque()
        self.redo_steps: list[Step] = []
        self.bytes = 0
        self.dispatcher: Dispatcher | None = None
        self._depth = 0  # nesting of client commands (patterns, bundles)
        self._inner = 0  # nesting of session calls (only the outermost is recorded)
        self._applying = False  # undo/redo running: nothing is recorded
        self._fastc = None  # the client of a flood-path set under way (Dispatcher.fast_set)
        self._step: Step | None = None  # the current command's step, once it did something
        self._client = None
        self._label = None
        self._rolled_back = False
        self._gestures: dict[tuple[str, str], Step] = {}  # open gestures by (node, param)
        self._rank: dict[str, int] = {}  # node order (graph.nodes), kept across removals
        self._next_rank = 0
        self._reorder = False
        self._events: list[tuple] = []
        self._wrap_session()

    # ---- the API other parts of the server use -------------------------------------
    def record(self, label: str, undo: Callable[[], None], redo: Callable[[], None],
               size: int = 0) -> None:
        """Record a step that undo() and redo() apply (scene store/delete, safes, cue
        edits); `size`: about how many bytes what they hold takes (the memory budget).
        Inside a client command it joins that command's step and names it."""
        if self._applying:
            return
        self._add(["call", undo, redo, int(size)], label, explicit=True)

    def record_values(self, label: str, changes, gesture: str | None = None) -> None:
        """Record values moved by one action (a scene recall or morph): changes is a
        list of (node, param, before, after); param "bypass" of a node without such
        a parameter is its bypass (1 on, 0 off). Undo sets every `before` back,
        through the usual smoothing. Inside a client command the step is that
        command's (what the command was seen doing to these values is left to
        this record). Steps of one client with the same gesture key at most
        BURST_S apart, with nothing between them, are one step (a morph fader
        dragged): the key is `gesture`, by default the label without a trailing
        number ("scene morph a b 0.35" -> "scene morph a b")."""
        if self._applying:
            return
        ops = [["val", n, p, float(b), float(a), True] for n, p, b, a in changes if b != a]
        if not ops:
            return
        if gesture is None:
            head, _, last = label.rpartition(" ")
            try:
                float(last)
                gesture = head
            except ValueError:
                gesture = label
        key = ("", gesture)
        g = self._gestures.get(key)
        now = self._now()
        if (g is not None and g.alive and self.undo_steps and self.undo_steps[-1] is g
                and g.client == self._client_key() and now - g.t <= self.burst_s):
            index = {(o[1], o[2]): o for o in g.ops if o[0] == "val"}
            for o in ops:
                old = index.get((o[1], o[2]))
                if old is None:
                    g.ops.append(o)
                    g.size += 160
                    self.bytes += 160
                else:
                    old[4] = o[4]
            g.label = label
            g.t = now
            g.count += 1
            cur = self._step if self._depth else None
            if cur is not None:  # what this command was seen doing to these values
                self._dedupe(cur, {(o[1], o[2]) for o in ops})
                if not cur.ops:
                    self._step = None
            return
        st = self._step if self._depth else None
        if st is None:
            st = Step(label, self._client_key(), now)
            if self._depth:
                self._step = st
        st.label = label
        st.explicit = True
        st.ops += ops
        self._gestures[key] = st
        if not self._depth:
            self._push(st)

    # ---- steps -------------------------------------------------------------------------
    def _client_key(self):
        c = self._client
        return c.key if c is not None else _LOCAL

    def _now(self) -> float:
        e = self.session.engine
        return e.time / e.sample_rate

    def _add(self, op: list, label=None, explicit: bool = False) -> None:
        """Add an operation to the current command's step (or, outside a command,
        make it a step of its own)."""
        st = self._step
        if st is None:
            st = Step(self._label, self._client_key(), self._now())
            if self._depth:
                self._step = st
        if label is not None and (explicit or self._depth == 0):
            st.label = label
        if explicit:
            st.explicit = True
        st.ops.append(op)
        if not self._depth:
            self._push(st)

    def _single(self, client, name: str, param: str, before: float, after: float) -> None:
        """One value moved by a bare parameter set (the flood path): it joins the
        client's open gesture on that parameter, or is a step of its own."""
        now = self._now()
        g = self._gestures.get((name, param))
        if (g is not None and g.alive and g.client == client
                and (now - g.t <= self.burst_s or self._held(client, name, param))):
            g.ops[0][4] = after
            g.t = now
            g.count += 1
            return
        st = Step(None, client, now)
        st.ops.append(["val", name, param, before, after])
        self._push(st)

    @staticmethod
    def _dedupe(st: Step, keys: set | None = None) -> None:
        """Values a record_values() call covers are not also kept as they were seen
        (nor the bypass switches it names)."""
        if keys is None:
            keys = {(o[1], o[2]) for o in st.ops if o[0] == "val" and len(o) == 6}
        if not keys:
            return
        st.ops = [o for o in st.ops
                  if not (o[0] == "val" and len(o) == 5 and (o[1], o[2]) in keys)
                  and not (o[0] == "byp" and (o[1], "bypass") in keys)]

    def _push(self, st: Step) -> None:
        """A finished step: it joins an open gesture, or becomes the newest step."""
        ops = st.ops
        if len(ops) == 1 and ops[0][0] == "val" and not st.explicit:
            _, name, param, _, after = ops[0]
            key = (name, param)
            g = self._gestures.get(key)
            if (g is not None and g.alive and g.client == st.client
                    and (st.t - g.t <= self.burst_s or self._held(st.client, name, param))):
                g.ops[0][4] = after
                g.t = st.t
                g.count += 1
                return
        if st.explicit:
            self._dedupe(st)
        st.size = sum(_op_size(o) for o in st.ops)
        for r in self.redo_steps:
            self.bytes -= r.size
        self.redo_steps.clear()
        if all(o[0] == "val" for o in st.ops):
            gs = self._gestures
            for o in st.ops:
                gs.pop((o[1], o[2]), None)
            if len(st.ops) == 1 and not st.explicit:
                gs[(st.ops[0][1], st.ops[0][2])] = st
        else:
            self._gestures.clear()
        if len(self._gestures) > 4096:  # ended gestures (no step of theirs is kept alive)
            self._gestures = {k: g for k, g in self._gestures.items()
                              if g.alive and st.t - g.t <= self.burst_s}
        self.undo_steps.append(st)
        self.bytes += st.size
        self._bound()

    def _bound(self) -> None:
        u = self.undo_steps
        while len(u) > 1 and (len(u) + len(self.redo_steps) > self.depth
                              or self.bytes > self.max_bytes):
            old = u.popleft()
            old.alive = False
            self.bytes -= old.size

    def clear(self) -> None:
        """Forget every step (a patch load starts a new history)."""
        for s in self.undo_steps:
            s.alive = False
        self.undo_steps.clear()
        self.redo_steps.clear()
        self._gestures.clear()
        self.bytes = 0

    # ---- commands: where they begin and end --------------------------------------------
    def begin(self, client, label) -> None:
        """A client command starts (nested ones join the outermost)."""
        if self._depth == 0:
            self._step = None
            self._client = client
            self._label = label
            self._rolled_back = False
        self._depth += 1

    def end(self) -> None:
        """A client command ended: what it did becomes a step."""
        self._depth -= 1
        if self._depth:
            return
        st, self._step = self._step, None
        self._client = None
        if st is None or self._rolled_back:
            return
        lab = st.label
        if isinstance(lab, tuple) and lab[0] == "/patch/load":
            self.clear()
        self._push(st)

    def _touch_seen(self, address: str, client, before) -> None:
        """A /touch message changed who holds a parameter (before: the holder it
        had): the sender's gesture on it ends, and while its touch is held (the
        dispatcher's touch table says), its changes of it are one step."""
        parts = address.split("/")
        d = self.dispatcher
        if len(parts) != 5 or d is None:
            return
        key = (parts[2], parts[3])
        if d.touch.get(key) == before:
            return
        g = self._gestures.get(key)
        if g is not None and g.client == (client.key if client is not None else _LOCAL):
            del self._gestures[key]

    def _held(self, client, name: str, param: str) -> bool:
        d = self.dispatcher
        return d is not None and d.touch.get((name, param)) == client

    # ---- session hooks -------------------------------------------------------------
    def _recording(self) -> bool:
        return self._depth > 0 and self._inner == 0 and not self._applying

    def _wrap_session(self) -> None:
        s = self.session
        h = self
        add_node, remove_node = s.add_node, s.remove_node
        connect, disconnect = s.connect, s.disconnect
        set_bypass, set_param = s.set_bypass, s.set_param
        record, load_doc = s._record, s.load_doc

        def add_node_(type_name, name, settings=None, stand_in=True):
            rec = h._recording()
            h._inner += 1
            try:
                g = add_node(type_name, name, settings, stand_in)
            finally:
                h._inner -= 1
            h._rank[name] = h._next_rank
            h._next_rank += 1
            if rec:
                h._add(["node+", h._entry(name, False)])
            return g

        def remove_node_(name):
            rec = h._recording() and name in s.graph.nodes
            entry = h._entry(name, True) if rec else None
            h._inner += 1
            try:
                remove_node(name)
            finally:
                h._inner -= 1
            h._rank.pop(name, None)
            if entry is not None:
                h._add(["node-", entry])

        def connect_(src, dst):
            rec = h._recording()
            h._inner += 1
            try:
                c = connect(src, dst)
            finally:
                h._inner -= 1
            if rec:
                h._add(["conn", *_conn_text(c), s.graph.conns[c]])
            return c

        def disconnect_(src, dst):
            seq = None
            if h._recording():
                g = s.graph
                try:
                    a, ap, _ = g.endpoint(src, "out")
                    b, bp, _ = g.endpoint(dst, "in")
                    seq = g.conns.get(Conn(a.name, ap, b.name, bp))
                except MixgraphError:
                    pass
            h._inner += 1
            try:
                c = disconnect(src, dst)
            finally:
                h._inner -= 1
            if seq is not None:
                h._add(["disc", *_conn_text(c), seq])
            return c

        def set_bypass_(name, on):
            rec = h._recording()
            before = name in s.bypassed
            h._inner += 1
            try:
                r = set_bypass(name, on)
            finally:
                h._inner -= 1
            if rec and bool(on) != before:
                h._add(["byp", name, before, bool(on)])
            return r

        def set_param_(name, param, value, time=0):
            if not h._recording():
                return set_param(name, param, value, time)
            node = s.live.get(name)
            before = node.g.params.get(param) if node is not None else None
            h._inner += 1
            try:
                r = set_param(name, param, value, time)
            finally:
                h._inner -= 1
            if before is not None and r[0] != before:
                h._add(["val", name, param, before, r[0]])
            return r

        def record_(node, param, v):
            # where a value takes effect in the model: the flood path (fast_set ->
            # apply_param), and anything else a command does that is not a set_param
            # (a ramp records its target here)
            c = h._fastc
            if h._inner or h._applying or (c is None and not h._depth):
                return record(node, param, v)
            before = node.g.params.get(param)
            record(node, param, v)
            if before is not None and v != before:
                if c is not None:
                    h._single(c.key, node.g.name, param, before, v)
                else:
                    h._add(["val", node.g.name, param, before, v])

        def load_doc_(doc):
            if not h._recording():
                h._inner += 1
                try:
                    return load_doc(doc)
                finally:
                    h._inner -= 1
            before = h._pack(s.to_doc())
            h._inner += 1
            failed = True
            try:
                load_doc(doc)
                failed = False
            finally:
                h._inner -= 1
                after = h._pack(s.to_doc())
                # a load that failed and put the graph back (server/patch.py) is no
                # step: it would clear the history for nothing (a /patch/load step does)
                if not (failed and after == before):
                    h._add(["doc", before, after])

        s.add_node, s.remove_node = add_node_, remove_node_
        s.connect, s.disconnect = connect_, disconnect_
        s.set_bypass, s.set_param = set_bypass_, set_param_
        s._record, s.load_doc = record_, load_doc_

    @staticmethod
    def _pack(doc: dict) -> bytes:
        return msgpack.packb(doc, use_bin_type=True)

    def _entry(self, name: str, conns: bool) -> dict:
        """Everything needed to make node `name` again as it is now."""
        s = self.session
        g = s.graph.nodes[name]
        skip = triggers_for(g.type.name)
        st = patch.node_state(s, name) if g.type.has_state else None
        e = {"name": name, "type": g.type.name, "channels": g.channels,
             "options": {k: v for k, v in g.options.items() if not k.startswith("_")},
             "params": {k: v for k, v in g.params.items() if k not in skip},
             "state": array("f", st) if st else None,
             "lv2_state": lv2.node_state(s, name) if g.type.uri else None,  # an LV2 plugin's
             "bypass": name in s.bypassed, "rank": self._rank.get(name), "conns": []}
        if conns:
            gc = s.graph.conns
            cs = sorted({*s.graph.ins[name], *s.graph.outs[name]}, key=gc.__getitem__)
            e["conns"] = [(*_conn_text(c), gc[c]) for c in cs]
        return e

    # ---- the dispatcher ------------------------------------------------------------
    def attach(self, d: Dispatcher) -> None:
        """Register /undo, /redo, /history with a dispatcher and follow its commands."""
        self.dispatcher = d
        d._literal["/undo"] = self._osc_undo
        d._literal["/redo"] = self._osc_redo
        d._literal["/history"] = self._osc_history
        h = self
        dispatch, fast_set = d.dispatch, d.fast_set
        apply_bundle, rollback = d._apply_bundle, d._rollback

        def dispatch_(address, args, reply, time_=0, client=None):
            h.begin(client, (address, args))
            held = d.touch.get(tuple(address.split("/")[2:4])) if \
                address.endswith("/touch") and args else 0
            try:
                dispatch(address, args, reply, time_, client)
            finally:
                if held != 0:
                    h._touch_seen(address, client, held)
                h.end()

        def fast_set_(data, client):
            if h._depth or h._applying:
                return fast_set(data, client)
            h._fastc = client
            try:
                return fast_set(data, client)
            finally:
                h._fastc = None

        def apply_bundle_(msgs, reply, client, t):
            h.begin(client, ("bundle", [m.address for m in msgs]))
            try:
                apply_bundle(msgs, reply, client, t)
            finally:
                h.end()

        def rollback_(snapshot):
            h._rolled_back = True
            rollback(snapshot)

        d.dispatch, d.fast_set = dispatch_, fast_set_
        d._apply_bundle, d._rollback = apply_bundle_, rollback_

    def _count(self, args: list, what: str) -> int:
        if not args:
            return 1
        if len(args) != 1 or isinstance(args[0], str):
            raise MixgraphError(f"usage: /{what} [<n>] (n = 1..{self.depth})")
        x = number(args[0], f"/{what} count")
        if x != int(x) or not 1 <= x <= self.depth:
            raise MixgraphError(f"/{what} count must be a whole number 1..{self.depth}")
        return int(x)

    def _osc_undo(self, args: list, reply, _t: int, client=None) -> None:
        n = self._count(args, "undo")
        with self.dispatcher.graph_work(client, "/undo"):
            labels = self.undo(n)
        reply("/done", ["/undo", len(labels), *labels[:16]])

    def _osc_redo(self, args: list, reply, _t: int, client=None) -> None:
        n = self._count(args, "redo")
        with self.dispatcher.graph_work(client, "/redo"):
            labels = self.redo(n)
        reply("/done", ["/redo", len(labels), *labels[:16]])

    def _osc_history(self, args: list, reply, _t: int, client=None) -> None:
        n = HISTORY_SHOWN
        if args:
            if len(args) != 1 or isinstance(args[0], str):
                raise MixgraphError(f"usage: /history [<count>] (1..{self.depth})")
            x = number(args[0], "/history count")
            if x != int(x) or not 1 <= x <= self.depth:
                raise MixgraphError(f"/history count must be a whole number 1..{self.depth}")
            n = int(x)
        out: list = [len(self.undo_steps), len(self.redo_steps)]
        for i, st in enumerate(list(self.undo_steps)[::-1][:n]):
            out += [i + 1, *self.describe(st)]
        for i, st in enumerate(self.redo_steps[::-1][:n]):
            out += [-(i + 1), *self.describe(st)]
        reply("/history.reply", out)

    # ---- describing steps ------------------------------------------------------------
    def describe(self, st: Step) -> tuple[str, str]:
        """(label, what it did) of a step, both readable, at most LABEL_MAX long."""
        lab = st.label
        ops = st.ops
        if len(ops) == 1 and ops[0][0] == "val" and not st.explicit:
            lab = f"/node/{ops[0][1]}/{ops[0][2]}"  # one value (a gesture): its address
        elif isinstance(lab, tuple):
            if lab[0] == "bundle":
                lab = "bundle: " + ", ".join(lab[1][:4]) + (" ..." if len(lab[1]) > 4 else "")
            else:
                lab = " ".join([lab[0], *(_arg(a) for a in lab[1][:6])])
        elif lab is None:
            lab = f"/node/{ops[0][1]}/{ops[0][2]}" if ops and ops[0][0] == "val" else "edit"
        parts: list[str] = []
        vals = [o for o in ops if o[0] == "val"]
        if len(vals) == 1 and len(ops) == 1:
            _, n, p, b, a = vals[0][:5]
            parts.append(f"{n}/{p} {b:g} -> {a:g}"
                         + (f" ({st.count} changes)" if st.count > 1 else ""))
        elif vals:
            parts.append(f"{len(vals)} values")
        for kind, word in (("node+", "added"), ("node-", "removed")):
            names = [o[1]["name"] for o in ops if o[0] == kind]
            if names:
                parts.append(f"{word} {', '.join(names[:8])}"
                             + (f" (+{len(names) - 8})" if len(names) > 8 else ""))
        for kind, word in (("conn", "connected"), ("disc", "disconnected")):
            k = [o for o in ops if o[0] == kind]
            if len(k) == 1:
                parts.append(f"{word} {k[0][1]} -> {k[0][2]}")
            elif k:
                parts.append(f"{word} {len(k)}")
        for o in ops:
            if o[0] == "byp":
                parts.append(f"bypass {o[1]} {'on' if o[3] else 'off'}")
        if any(o[0] == "doc" for o in ops):
            parts.append("loaded a patch")
        if any(o[0] == "call" for o in ops):
            parts.append(str(st.label)[:LABEL_MAX] if isinstance(st.label, str) else "other")
        return lab[:LABEL_MAX], "; ".join(parts)[:LABEL_MAX]

    # ---- undo and redo ---------------------------------------------------------------
    def undo(self, n: int = 1) -> list[str]:
        """Undo the newest n steps (all or nothing); their labels, newest first."""
        have = len(self.undo_steps)
        if have == 0:
            raise MixgraphError("nothing to undo")
        if n > have:
            raise MixgraphError(f"only {have} step{'s' if have != 1 else ''} to undo")
        steps = [self.undo_steps[-1 - i] for i in range(n)]
        self._run(steps, True)
        for _ in range(n):
            st = self.undo_steps.pop()
            st.alive = False
            self.redo_steps.append(st)
        return [self.describe(st)[0] for st in steps]

    def redo(self, n: int = 1) -> list[str]:
        """Redo the last n undone steps (all or nothing); their labels, oldest first."""
        have = len(self.redo_steps)
        if have == 0:
            raise MixgraphError("nothing to redo")
        if n > have:
            raise MixgraphError(f"only {have} step{'s' if have != 1 else ''} to redo")
        steps = [self.redo_steps[-1 - i] for i in range(n)]
        self._run(steps, False)
        for _ in range(n):
            self.undo_steps.append(self.redo_steps.pop())
        return [self.describe(st)[0] for st in steps]

    def _run(self, steps: list[Step], back: bool) -> None:
        s = self.session
        if self.dispatcher is not None and self.dispatcher._bundle is not None:
            raise MixgraphError("/undo and /redo cannot be part of a bundle")
        self._scheduled(steps, back)
        self._gestures.clear()
        values_only = all(o[0] == "val" for st in steps for o in st.ops)
        snapshot = None
        if values_only:
            need = sum(len(st.ops) for st in steps)
            e = s.engine
            if need <= e.cmd_capacity and e.space() < need + 64:
                raise MixgraphError("the engine's command ring is busy; try again")
        else:
            snapshot = s.to_doc()
        self._applying = True
        self._reorder = False
        self._events = []
        try:
            for st in steps:
                self._apply(st, back)
            if self._reorder:
                self._apply_order()
        except Exception as e:
            if snapshot is None:
                raise
            if isinstance(e, MixgraphError):
                log.warning("%s failed (%s); the graph is restored as it was",
                            "undo" if back else "redo", e)
            else:
                log.exception("undo/redo failed; restoring the graph as it was")
            try:
                s.load_doc(snapshot)
                self.reorder([n["name"] for n in snapshot["nodes"]], snapshot["connections"])
            except Exception:
                log.exception("restoring the graph after a failed undo/redo failed")
            self._events = [("graph", ["load", "undo failed"])]
            raise MixgraphError(f"{'undo' if back else 'redo'} failed, nothing changed: "
                                f"{e}") from None
        finally:
            self._applying = False
            self._flush_events()

    def _scheduled(self, steps: list[Step], back: bool) -> None:
        """Refuse to undo or redo a value that a timed set will still change (a bundle
        timetagged for later, whose step is recorded when it is accepted): the engine
        holds that set and would apply it at its time all the same, after the /done."""
        pend = self.session.pending.entries
        if not pend:
            return
        later = {(e[1], e[2]): e[0] for e in pend.values()}
        for st in steps:
            for o in st.ops:
                if o[0] == "val" and (o[1], o[2]) in later:
                    ahead = max(0.0, later[(o[1], o[2])] - self.session.pending.clock())
                    raise MixgraphError(
                        f"{o[1]}/{o[2]} has a change scheduled {ahead:.1f} s from now (a timed "
                        f"bundle): {'undo' if back else 'redo'} after it applies")

    def _apply(self, st: Step, back: bool) -> None:
        later: list[list] = []  # VCAs are made after their members
        ops = reversed(st.ops) if back else st.ops
        for op in ops:
            k = op[0]
            if back and k == "node-" and op[1]["type"] == "vca" or (
                    not back and k == "node+" and op[1]["type"] == "vca"):
                later.append(op)
                continue
            if k == "val" and op[1] not in self.session.live and later:
                later.append(op)
                continue
            self._op(op, back)
        for op in later:
            self._op(op, back)

    def _op(self, op: list, back: bool) -> None:
        s = self.session
        k = op[0]
        ev = self._events
        if k == "val":
            name, param = op[1], op[2]
            v = op[3] if back else op[4]
            node = s.live.get(name)
            if node is not None and param == "bypass" and param not in node.g.params:
                s.set_bypass(name, v >= 0.5)  # a scene's bypass (record_values)
                ev.append(("val", name, param, float(v >= 0.5)))
                return
            if node is None or param not in node.g.params:
                return  # gone by a change no step recorded
            spec = node.g.type.param(param)
            if node.g.type.name != "vca" and spec.min <= v <= spec.max:
                # a value that was in effect (or a scene's, in range): straight to the
                # node, as Dispatcher.fast_set does (smoothed, journaled)
                type(s).apply_param(s, node, spec.index, param, v)
            else:
                v, _ = s.set_param(name, param, v)
            ev.append(("val", name, param, v))
        elif k == "byp":
            on = op[2] if back else op[3]
            s.set_bypass(op[1], on)
            ev.append(("val", op[1], "bypass", float(on)))
        elif k in ("node+", "node-"):
            if (k == "node+") == back:  # undo an add / redo a remove
                op[1] = self._take(op[1]["name"])
            else:
                self._put(op[1])
        elif k in ("conn", "disc") and (k == "conn") == back:  # undo a connect, redo a disc.
            s.disconnect(op[1], op[2])
            ev.append(("graph", ["disconnect", op[1], op[2]]))
        elif k in ("conn", "disc"):
            c = s.connect(op[1], op[2])
            s.graph.conns[c] = op[3]
            self._reorder = True
            ev.append(("graph", ["connect", op[1], op[2]]))
        elif k == "doc":
            doc = msgpack.unpackb(op[1] if back else op[2], raw=False, strict_map_key=False)
            s.load_doc(doc)
            self.reorder([n["name"] for n in doc["nodes"]], doc["connections"])
            ev.append(("graph", ["load", "undo" if back else "redo"]))
            for g in s.graph.nodes.values():
                for p, v in g.params.items():
                    ev.append(("val", g.name, p, v))
                ev.append(("val", g.name, "bypass", float(g.name in s.bypassed)))
        elif k == "call":
            (op[1] if back else op[2])()

    def _take(self, name: str) -> dict:
        """Remove a node, returning what makes it again."""
        entry = self._entry(name, True)
        self.session.remove_node(name)
        if self.dispatcher is not None:
            self.dispatcher._drop_touches(name)
        self._events.append(("graph", ["remove", name]))
        return entry

    def _put(self, e: dict) -> None:
        """Make a node again from _take's or _entry's record: options, parameters,
        learned state, connections (in their old place), bypass, place in the graph."""
        s = self.session
        name = e["name"]
        if e["type"] == "recorder" and isinstance(e["options"].get("path"), str):
            keep_take(s.resolve_path(e["options"]["path"], True), name)
        s.add_node(e["type"], name, {**e["options"], "channels": e["channels"],
                                     **e["params"]})
        if e["state"] is not None:
            state = e["state"].tolist()
            if patch.restore_state(s, name, state):
                s._log(("state", name, state))
        if e.get("lv2_state") is not None and lv2.restore_state(s, name, e["lv2_state"]):
            s._log(("lv2_state", name, e["lv2_state"]))
        if e["rank"] is not None:
            self._rank[name] = e["rank"]
        self._reorder = True
        ev = self._events
        ev.append(("graph", ["add", name, e["type"]]))
        for src, dst, seq in e["conns"]:
            c = s.connect(src, dst)
            s.graph.conns[c] = seq
            ev.append(("graph", ["connect", src, dst]))
        if e["bypass"]:
            s.set_bypass(name, True)
        g = s.graph.nodes[name]
        for p, v in g.params.items():
            ev.append(("val", name, p, v))
        if e["bypass"]:
            ev.append(("val", name, "bypass", 1.0))

    def _flush_events(self) -> None:
        """Feedback for what undo/redo changed: to every subscriber, the sender too
        (its surface did not make these moves)."""
        d = self.dispatcher
        evs, self._events = self._events, []
        if d is None:
            return
        d._commit()
        for e in evs:
            if e[0] == "val":
                d._changed(e[1], e[2], e[3], None)
            else:
                d._graph_event(e[1], None)
        if not evs:
            return
        d._graph_version += 1

    # ---- graph order -------------------------------------------------------------------
    def _apply_order(self) -> None:
        """Sort the graph's nodes by rank and its connections by sequence number
        (restored nodes and connections get theirs back), and journal the order."""
        s = self.session
        g = s.graph
        rank = self._rank
        big = 1 << 62
        names = sorted(g.nodes, key=lambda n: rank.get(n, big))
        _resort(g.nodes, names)
        _resort(s.live, names)
        _resort(s._vcas, [n for n in names if n in s._vcas])
        seq = g.conns
        items = sorted(seq.items(), key=itemgetter(1))
        seq.clear()
        seq.update(items)
        for d in (*g.ins.values(), *g.outs.values()):
            if len(d) > 1:
                _resort(d, sorted(d, key=seq.__getitem__))
        _resort(s.edges, sorted(s.edges, key=seq.__getitem__))
        s._log(("order", names, [list(_conn_text(c)) for c in seq]))

    def reorder(self, names: list[str], conns: list) -> None:
        """Put the graph's nodes and connections in the given order (names; [src,
        dst] texts as a patch document writes them): journal replay, patch loads."""
        s = self.session
        g = s.graph
        known = [n for n in names if n in g.nodes]
        ranks = sorted(self._rank.get(n, 0) for n in known)
        for n, r in zip(known, ranks, strict=True):
            self._rank[n] = r
        order: dict[Conn, None] = {}
        for c in conns:
            a, _, ap = c[0].partition(":")
            b, _, bp = c[1].partition(":")
            k = Conn(a, ap, b, bp)
            if k in g.conns:
                order[k] = None
        seqs = sorted(g.conns[k] for k in order)
        for k, v in zip(order, seqs, strict=True):
            g.conns[k] = v
        self._apply_order()


def _arg(a) -> str:
    """A command argument as a label shows it."""
    if isinstance(a, float):
        return f"{a:g}"
    if isinstance(a, bytes | bytearray):
        return "<blob>"
    return str(a)[:40]


def _resort(d: dict, keys: list) -> None:
    """Put dict d's items in the order of keys (every key of d), in place."""
    items = [(k, d[k]) for k in keys]
    d.clear()
    d.update(items)
