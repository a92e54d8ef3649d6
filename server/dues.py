"""The deadlines of removals in flight (control thread): when each fading-out
connection (Session.dying_edges) and each removed node (Session._dying_due)
is due, kept as a heap beside those tables, so Session.next_due (asked before
every chunk of an offline render) reads the earliest in O(log n) instead of
scanning every removal: clearing 10,000 connections made each call walk
10,000 deadlines.

Every deadline written into a table is pushed here too (Dues.add); an entry
whose key has left its table, or holds another deadline now, is stale and is
dropped when it reaches the top. The heap is rebuilt from the tables when
stale entries outnumber live ones, so it stays within a constant factor of the
removals in flight even if nothing asks for next_due."""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import Session

EDGE, NODE = 0, 1  # which table: Session.dying_edges, Session._dying_due


class Dues:
    """The heap of (due, seq, table, key) beside a session's removal tables."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = itertools.count()  # ties: no comparison of keys

    def _table(self, which: int) -> dict:
        return self.s.dying_edges if which == EDGE else self.s._dying_due

    def add(self, which: int, key: Any, due: int) -> int:
        """Note that table `which` now holds `due` for `key`; returns due (so the
        caller writes `table[key] = dues.add(which, key, due)`)."""
        heapq.heappush(self._heap, (due, next(self._seq), which, key))
        live = len(self.s.dying_edges) + len(self.s._dying_due)
        if len(self._heap) > 2 * live + 64:
            self._rebuild()
        return due

    def _rebuild(self) -> None:
        seq = self._seq
        self._heap = [(d, next(seq), w, k) for w in (EDGE, NODE)
                      for k, d in self._table(w).items()]
        heapq.heapify(self._heap)

    def next(self) -> int | None:
        """The earliest deadline the tables hold, or None."""
        h = self._heap
        while h:
            due, _, which, key = h[0]
            if self._table(which).get(key) == due:
                return due
            heapq.heappop(h)  # stale: the key left its table or moved
        return None
