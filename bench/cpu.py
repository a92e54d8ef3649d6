"""Pinning a bench to one core: the figures are defined "on one core", and on a
shared machine a process that migrates between cores pays for it (cold caches)
and picks up the other core's load. Used by mix64.py and engine.py; and
breaks between rounds under a real-time policy (threads_ab.py, mix64.py
--threads)."""

from __future__ import annotations

import contextlib
import os
import time
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


# ---- rounds under a real-time policy (`chrt -f 10 python bench/...`) ------
#
# The kernel lets real-time threads use at most sched_rt_runtime_us of every
# sched_rt_period_us on a core (950000 of 1000000 by default); a thread that
# uses more is stopped for the rest of the period. Offline rounds on two
# threads keep both cores busy at SCHED_FIFO without a break, so about once a
# second a block takes ~47 ms: the kernel's throttling, not the engine. The
# benches leave the cores a break between rounds (rt_break) and report the
# rounds that still saw a stalled block (stalled_blocks) instead of mixing
# them into the figures. A live cycle never meets the limit: it sleeps for the
# rest of every period.

#: a block at least this long (us) was stopped: throttled, under a real-time
#: policy (the machine's other work cannot preempt it then)
STALL_US = 20000.0
#: the longest stretch (s) a bench keeps the cores busy between breaks
RT_BUSY_S = 0.3


def rt_policy() -> bool:
    """1 when this process runs at a real-time policy (SCHED_FIFO / SCHED_RR)."""
    try:
        return os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)
    except (AttributeError, OSError):
        return False


def rt_break_s() -> float:
    """How long a break gives the real-time budget back: twice the part of a
    period real-time threads may not use (0 when not at a real-time policy,
    or when the kernel does not throttle)."""
    if not rt_policy():
        return 0.0
    try:
        with open("/proc/sys/kernel/sched_rt_runtime_us") as f:
            runtime = int(f.read())
        with open("/proc/sys/kernel/sched_rt_period_us") as f:
            period = int(f.read())
    except (OSError, ValueError):
        return 0.1
    if runtime < 0 or runtime >= period:
        return 0.0
    return 2.0 * (period - runtime) / 1e6


def rt_break() -> None:
    """Leave the cores idle long enough for the real-time budget to refill
    (rt_break_s), when this process runs at a real-time policy."""
    s = rt_break_s()
    if s > 0.0:
        time.sleep(s)


def stalled_blocks(us) -> int:  # noqa: ANN001 (a sequence or array of floats)
    """The blocks of a round (wall-clock us each) that took STALL_US or more."""
    return sum(1 for x in us if x >= STALL_US)


def process_timed_breaks(e, frames: int, block: int, out):  # noqa: ANN001, ANN201
    """Engine.process_timed over `frames` (one engine call per block, each
    call's wall-clock us), in chunks with an rt_break whenever the cores have
    been busy for RT_BUSY_S, under a real-time policy; one call otherwise."""
    import numpy as np

    if rt_break_s() <= 0.0:
        return e.process_timed(frames, None, block, out)
    chunk = max(block, 16 * block)
    parts, busy, pos = [], 0.0, 0
    while pos < frames:
        n = min(chunk, frames - pos)
        us = e.process_timed(n, None, block, out[pos:pos + n])
        parts.append(us)
        busy += float(us.sum()) * 1e-6
        pos += n
        if busy >= RT_BUSY_S and pos < frames:
            rt_break()
            busy = 0.0
    return np.concatenate(parts)
