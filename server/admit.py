"""New nodes join a running engine's plans a batch at a time (control thread).

The block that swaps in a plan runs every new node in it for the first time,
from memory the control thread has just written: loading a 10,000-node patch
in one plan made that block 1.5 ms in process and 4 ms in the daemon, three
times the 1.33 ms budget of a 64-frame block at 48 kHz (issue 13). So when a
commit would bring more than ADMIT_BATCH new nodes into a running engine, the
rest wait (live.Refs.wait: left out of plans with their connections, in
their place in the plan inputs) and join ADMIT_BATCH per commit, each batch
once the engine has swapped in the plan of the one before.

Nodes join upstream first (topological order of the new nodes): when a node
joins, every new node that feeds it is already in the plan, so whatever can
be heard is complete; a new node whose destination has not joined yet feeds
nothing. A waiting node is in no plan: its parameters are set directly, as
for any node not yet published, and its connections fade in with the plan
that holds them (FadeQueue.release_fade_ins keeps theirs until then). Since
the plan inputs keep every node in its place, the plan built once all have
joined is the plan one commit would have built. `/sync` answers once every
node has joined (Session.sync). What differs from a load in one plan:
upstream nodes run a few blocks before the sinks hear them (their state has
seen those blocks), and the connections fade in batch by batch, not all at
once; for nodes without state the output is the same once the last fade is
over (tests/test_scale.py)."""

from __future__ import annotations

from collections import deque

from ._core import ffi
from .engine import CMD_SYNC
from .graph import topo_order
from .live import LiveNode

ADMIT_BATCH = 512
"""New nodes one plan brings into a running engine at most."""


class Admission:
    """The new nodes still waiting to join the plans, in joining order."""

    def __init__(self, session) -> None:
        self.s = session
        self.queue: deque[LiveNode] = deque()
        self.syncs: list[int] = []  # /sync tokens held until every node has joined
        # what joins with each waiting node: the new edges whose last end it is
        # (kept out of Refs.fresh, so that a plan counts only what it holds)
        self.later: dict[LiveNode, list] = {}
        self.fade_later: set = set()  # of those edges, the ones created to fade in

    def before_build(self) -> bool:
        """Called by Session.commit before it builds a plan: park the new nodes
        beyond the first batch, or let the next batch join. False when the
        commit must wait (the last batch's plan is not in the engine yet)."""
        s = self.s
        if self.queue:
            if len(s._plans) > 1:  # the previous batch's plan is still on its way
                return False
            self._admit()
            return True
        if not s.started:
            return True
        new = [o for o in s.refs.fresh if isinstance(o, LiveNode) and not o.dead]
        if len(new) <= ADMIT_BATCH:
            return True
        names = {o.g.name: o for o in new}
        graph = s.graph
        edges = [(c.src, c.dst) for n in names for c in graph.outs[n] if c.dst in names]
        order = [names[n] for n in topo_order(list(names), edges)]
        rank = {node: i for i, node in enumerate(order)}
        refs = s.refs
        for node in order[ADMIT_BATCH:]:
            refs.wait(node, True)
        self.queue.extend(order[ADMIT_BATCH:])
        fades = s.fades  # fade-ins of edges outside plans go out when they join
        self.fade_later = {e for e in fades.fade_in if refs.outside(e)}
        fades.fade_in = [e for e in fades.fade_in if e not in self.fade_later]
        fresh, refs.fresh = refs.fresh, []
        for o in fresh:
            if not refs.outside(o):
                refs.fresh.append(o)
            elif isinstance(o, LiveNode):
                self.later.setdefault(o, []).insert(0, o)
            else:  # an edge joins with the later of its ends
                last = max((o.src, o.dst), key=lambda n: rank.get(n, -1))
                self.later.setdefault(last, []).append(o)
        return True

    def sync(self, token: int) -> None:
        """Push a /sync token now, or once every waiting node has joined."""
        if self.queue:
            self.syncs.append(token)
        else:
            self.s.engine.push(CMD_SYNC, ffi.NULL, token)

    def _admit(self) -> None:
        refs, q = self.s.refs, self.queue
        n = 0
        while q and n < ADMIT_BATCH:
            node = q.popleft()
            joining = self.later.pop(node, ())
            if not node.dead:
                refs.wait(node, False)
                n += 1
            for o in joining:
                if not o.dead:
                    refs.fresh.append(o)
                    if o in self.fade_later:
                        self.fade_later.discard(o)
                        self.s.fades.fade_in.append(o)

    def after_push(self) -> bool:
        """The plan is in the ring: True while nodes still wait (the session
        stays dirty, so the next commit brings the next batch); once none
        does, the held /sync tokens go out."""
        if self.queue:
            return True
        while self.syncs:
            self.s.engine.push(CMD_SYNC, ffi.NULL, self.syncs[0])  # EngineBusy: next commit
            self.syncs.pop(0)
        return False
