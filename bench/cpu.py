"""Pinning a bench to one core: the figures are defined "on one core", and on a
shared machine a process that migrates between cores pays for it (cold caches)
and picks up the other core's load. Used by mix64.py and engine.py."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def default_cpu() -> int | None:
    """The highest-numbered core this process may run on (None: cannot pin)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


@contextlib.contextmanager
def one_core(cpu: int | None) -> Iterator[None]:
    """Run the block on core `cpu` (None or negative: wherever the OS puts it);
    the previous affinity comes back afterwards, so processes started later
    (a daemon) are not confined with it."""
    if cpu is None or cpu < 0 or not hasattr(os, "sched_setaffinity"):
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)
