"""Parameter sets scheduled for later, kept across a crash.

A timed bundle's parameter sets are handed to the engine at once (sample-exact)
and recorded in the model only when their time comes. A client that got its
`/synced` after sending one has been told it is safe; a SIGKILL before its time
must not lose it. So each such set is journaled when it is accepted, as
`("at", due_unix_s, node, param, value)`, and the autosave snapshot lists the
ones still pending (`scheduled`). After a restart each is scheduled again at
its wall-clock time, or applied at once (late, and logged) when its time went
by while the server was down: the value it would have had.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import count

log = logging.getLogger("mixgraph")

Entry = tuple[float, str, str, float]  # (due, unix seconds; node; parameter; value)


class Pending:
    """The scheduled, not yet applied, parameter sets of one session."""

    def __init__(self, sample_rate: Callable[[], float], engine_time: Callable[[], int],
                 clock: Callable[[], float] = time.time) -> None:
        self.sample_rate = sample_rate
        self.engine_time = engine_time
        self.clock = clock
        self.entries: dict[int, Entry] = {}
        self._keys = count(1)
        self.total = 0  # sets ever scheduled (the dispatcher's budgets count with it)

    def add(self, sample_time: int, node: str, param: str, value: float) -> tuple[int, Entry]:
        """A set the engine will apply at `sample_time`: its key and its entry, with
        its due time on the wall clock."""
        ahead = (sample_time - self.engine_time()) / (self.sample_rate() or 48000.0)
        entry = (self.clock() + max(0.0, ahead), node, param, float(value))
        key = next(self._keys)
        self.entries[key] = entry
        self.total += 1
        return key, entry

    def done(self, key: int) -> None:
        """Its time came (or its node went): nothing left to keep."""
        self.entries.pop(key, None)

    def snapshot(self) -> list[list]:
        """The pending sets for the autosave document, oldest due first."""
        return [list(e) for e in sorted(self.entries.values())]


def check_entries(raw: object) -> list[Entry]:
    """The `scheduled` list of a snapshot, or one journal record's fields, checked:
    malformed entries are dropped (and logged), never fatal to a restart."""
    out: list[Entry] = []
    if not isinstance(raw, list):
        return out
    for e in raw:
        if (isinstance(e, list | tuple) and len(e) == 4 and isinstance(e[0], int | float)
                and isinstance(e[1], str) and isinstance(e[2], str)
                and isinstance(e[3], int | float)):
            out.append((float(e[0]), e[1], e[2], float(e[3])))
        else:
            log.warning("scheduled set %r in the saved state is malformed; dropped", e)
    return out


def reschedule(entries: list[Entry], set_at: Callable[[str, str, float, int], None],
               sample_rate: float, engine_time: int, now: float) -> tuple[int, int]:
    """After a restart: each set again at its wall-clock time (`set_at(node, param,
    value, sample_time)`, 0 for now); returns (scheduled, applied late)."""
    later = late = 0
    for due, node, param, value in entries:
        ahead = due - now
        try:
            if ahead > 0:
                set_at(node, param, value, engine_time + int(round(ahead * sample_rate)))
                later += 1
            else:
                set_at(node, param, value, 0)
                late += 1
        except Exception as e:  # noqa: BLE001 - the node may be gone; the rest go on
            log.warning("scheduled set %s.%s = %g not restored: %s", node, param, value, e)
    return later, late
