"""Warnings caused by what a client sends, counted always and logged sparingly.

A packet from the network must not be able to write more to the log than a
few lines, however many packets follow it: a 60 kB packet of unknown type
tags once wrote 3.96 MB of log (one line per tag, from python-osc). Each
source address (host, any port) gets its first warning logged at once; after
that at most one summary line per `interval` seconds (how many were
suppressed, and the last one), and all sources together at most `burst` lines
per `interval`. Every warning is counted (`warnings` in /status) and so is
every line not written (`log_suppressed`).

python-osc logs what it cannot parse on the root logger; `library_warnings()`
catches those while it parses a packet (osc.parse_packet), which then makes
the packet garbage, so that they are counted and rate-limited here too."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

DEFAULT_INTERVAL_S = 10.0  # per source: the first line, then one summary per interval
DEFAULT_BURST = 20  # lines from all sources together per interval
MAX_SOURCES = 4096  # sources remembered; more and the oldest are forgotten
LINE_MAX = 300  # characters of one warning line (a reason may quote what was sent)


class _Source:
    __slots__ = ("since", "suppressed", "last")

    def __init__(self, now: float) -> None:
        self.since = now
        self.suppressed = 0
        self.last = ""


class Counts:
    """What a RateLog counts (the server passes its Counters, which has both)."""

    warnings = 0  # every warning reported
    log_suppressed = 0  # warnings not written as a line of their own


class RateLog:
    """Per-source rate-limited warnings on one logger, with counters."""

    def __init__(self, logger: logging.Logger, counts: object | None = None,
                 interval: float = DEFAULT_INTERVAL_S, burst: int = DEFAULT_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = logger
        self.counts = counts if counts is not None else Counts()
        self.interval = interval
        self.burst = burst
        self.clock = clock
        self.sources: dict[str, _Source] = {}
        self._window = 0.0
        self._lines = 0  # lines written in the current global window

    def warn(self, source: str, msg: str, *args: object, exc_info: bool = False) -> None:
        """Count a warning caused by `source` (a host) and log it if its turn has come
        (with the current exception's traceback when exc_info, on a first line only)."""
        c = self.counts
        c.warnings += 1
        now = self.clock()
        s = self.sources.get(source)
        if s is None:
            if len(self.sources) >= MAX_SOURCES:
                self._forget()
            s = self.sources[source] = _Source(now)
            if not self._emit(now, "%s: " + msg, source, *args, exc_info=exc_info):
                c.log_suppressed += 1
            return
        c.log_suppressed += 1
        s.suppressed += 1
        s.last = msg % args if args else msg
        if now - s.since >= self.interval:
            self._summary(source, s, now)

    def flush(self) -> None:
        """Write the summaries that are due (call now and then: a source that went
        quiet still gets its count written) and forget sources quiet for an interval."""
        now = self.clock()
        for source, s in list(self.sources.items()):
            if now - s.since >= self.interval:
                if s.suppressed:
                    self._summary(source, s, now)
                else:
                    del self.sources[source]

    def _summary(self, source: str, s: _Source, now: float) -> None:
        n, s.suppressed, s.since = s.suppressed, 0, now
        self._emit(now, "%s: %d more warnings in the last %.0f s, not logged (last: %s)",
                   source, n, self.interval, s.last[:200])

    def _emit(self, now: float, fmt: str, *args: object, exc_info: bool = False) -> bool:
        """Write a line unless all sources together have had their lines this interval."""
        if now - self._window >= self.interval:
            if self._lines > self.burst:
                self.log.warning("%d warning lines from clients not written in %.0f s "
                                 "(over %d per interval)", self._lines - self.burst,
                                 self.interval, self.burst)
            self._window, self._lines = now, 0
        self._lines += 1
        if self._lines > self.burst:
            return False
        text = fmt % args if args else fmt
        if len(text) > LINE_MAX:
            text = text[:LINE_MAX] + "..."
        self.log.warning("%s", text, exc_info=exc_info)
        return True

    def _forget(self) -> None:
        """Drop the older half of the sources (their pending counts stay counted)."""
        old = sorted(self.sources, key=lambda k: self.sources[k].since)
        for source in old[:len(old) // 2]:
            del self.sources[source]


def source_of(key: object) -> str:
    """The source a client's warnings are charged to, from its peer key: the host of
    a UDP (host, port, ...), TCP ("tcp", host, port) or WebSocket ("ws", host, port)
    client, whatever its port."""
    if isinstance(key, tuple) and key:
        return str(key[1] if key[0] in ("tcp", "ws") and len(key) > 1 else key[0])
    return str(key)


class _Catch(logging.Filter):
    """Holds back records while this thread parses a packet from the network."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        caught = getattr(self.local, "caught", None)
        if caught is None:
            return True
        if len(caught) < 8:  # the count is what matters; keep a few for the log
            caught.append(record.getMessage()[:200])
        caught.total += 1
        return False


class Caught(list):
    """The first few messages the library logged, and (total) how many in all."""

    total = 0


_catch = _Catch()
_installed = False
# python-osc 1.8-1.10 logs on the root logger; newer ones may use their module loggers
_LIBRARY_LOGGERS = ("", "pythonosc", "pythonosc.osc_message", "pythonosc.osc_bundle",
                    "pythonosc.osc_packet", "pythonosc.parsing.osc_types")


@contextmanager
def library_warnings() -> Iterator[Caught]:
    """Collect (instead of logging) what the OSC library logs inside the block."""
    global _installed
    if not _installed:
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).addFilter(_catch)
        _installed = True
    prev = getattr(_catch.local, "caught", None)
    caught = Caught()
    _catch.local.caught = caught
    try:
        yield caught
    finally:
        _catch.local.caught = prev
