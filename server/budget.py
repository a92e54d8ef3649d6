"""Token buckets of the control thread: one class for every rate the server bounds.

`Bucket` is a token bucket (`rate` tokens a second, bursts of `burst`): a client's
messages (the per-client rate limit of server/transport.py and server/conn.py), or
seconds of control-thread time. `HostBudget` keeps a Bucket of seconds per source
host for work that grows with the graph (the Dispatcher's pattern matching and what
the matches do, whole-state replies and whole-graph edits in server/osc.py): such
work is refused while the host's bucket is empty, and charged what it took.

Every HostBudget measures time one way: work is charged the control thread's CPU
time (`time.thread_time`) and buckets refill on `available_clock`, the time the
thread could have run. Two measures (pattern sets charged wall time and refilled on
wall time, graph edits charged CPU and refilled on available time) refused a
pattern fader on a box loaded by other programs, for time spent waiting for a core,
while the graph budget let the same work through (attack8)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Bucket:
    """A token bucket: `rate` tokens per second, bursts of `burst` (a client's
    messages, or a host's seconds of control-thread time). `dropped`, `told` and
    `first` are for the rate limit's notices (server/transport.py)."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "dropped", "told", "first")

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic() if now is None else now
        self.dropped = 0
        self.told = 0.0
        self.first = ""

    def refill(self, now: float) -> float:
        """The tokens after refilling up to `now` (monotonic seconds, or the
        HostBudget's clock)."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens


def available_clock() -> float:
    """Seconds the calling thread could have run: monotonic time less the time it
    has waited on a run queue for a core (/proc/thread-self/schedstat; plain
    monotonic time where that is missing). A budget charged in the thread's CPU
    time and refilled on this clock gives a host the same share of the control
    thread on a loaded box as on a quiet one: refilled on wall time, `rate` seconds
    a second of CPU was all the CPU a control thread got at load 10, and a flood of
    /patch/load was never refused (test_attack6's flood: no reply to another
    client's /status in 60 s). Read on the thread that spends the budget (the
    control thread): each thread has its own wait."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            wait_ns = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    return time.monotonic() - wait_ns * 1e-9


class HostBudget:
    """A Bucket of control-thread seconds per source host: `burst_s` at most,
    refilled at `rate` seconds a second of `clock` (available_clock), charged by
    `cost` (the control thread's CPU time). At most `hosts` buckets are kept when a
    new host comes: those full again for 10 s are forgotten first. `clock` and `cost`
    are parameters for tests only: every budget of the server uses the defaults."""

    def __init__(self, burst_s: float, rate: float, hosts: int = 4096,
                 clock: Callable[[], float] = available_clock,
                 cost: Callable[[], float] = time.thread_time) -> None:
        self.burst_s, self.rate, self.hosts = burst_s, rate, hosts
        self.clock = clock  # what refills: the time the thread could run
        self.cost = cost  # what work is charged: the thread's CPU time
        self._buckets: dict[str, Bucket] = {}

    def bucket(self, host: str) -> Bucket:
        """The host's bucket, refilled up to now (a new one is full)."""
        now = self.clock()
        b = self._buckets.get(host)
        if b is None:
            if len(self._buckets) >= self.hosts:
                for h in [h for h, x in self._buckets.items() if now - x.stamp >= 10.0
                          and x.tokens + (now - x.stamp) * x.rate >= x.burst]:
                    del self._buckets[h]
            b = self._buckets[host] = Bucket(self.rate, self.burst_s, now)
        else:
            b.refill(now)
        return b

    def wait_s(self, b: Bucket) -> float:
        """Seconds until an empty bucket holds time again."""
        return max(0.0, -b.tokens / self.rate)

    @contextmanager
    def spend(self, host: str, refuse: Callable[[Bucket], Exception]) -> Iterator[Bucket]:
        """Around a piece of work of `host`: raises refuse(bucket) when its bucket is
        empty, else charges the work's `cost` time to it."""
        b = self.bucket(host)
        if b.tokens <= 0.0:
            raise refuse(b)
        t0 = self.cost()
        try:
            yield b
        finally:
            b.tokens -= self.cost() - t0
