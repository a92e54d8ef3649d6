"""Deferred work on the engine's sample clock (control thread).

Callbacks due at a sample time (an action's next step, a scheduled check)
wait in a heap and run from Session.service() once the engine's clock has
reached them, in the order they were added when times are equal. A failing
callback is logged and does not stop the others."""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable

log = logging.getLogger("mixgraph.session")


class Timers:
    """Callbacks waiting for a sample time."""

    def __init__(self) -> None:
        self._heap: list = []  # (sample time, seq, callback)
        self._seq = itertools.count()

    def at(self, sample_time: int, callback: Callable[[], None]) -> None:
        """Run callback once the clock has reached sample_time."""
        heapq.heappush(self._heap, (int(sample_time), next(self._seq), callback))

    def next_due(self) -> int | None:
        """The earliest sample time waited for, or None."""
        return self._heap[0][0] if self._heap else None

    def run(self, now: int) -> None:
        """Run every callback due at or before now."""
        while self._heap and self._heap[0][0] <= now:
            _, _, cb = heapq.heappop(self._heap)
            try:
                cb()
            except Exception:  # a timer must not break event handling
                log.exception("timer callback failed")
