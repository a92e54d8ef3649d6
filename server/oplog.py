"""Logs an operator can read (issue 16): the daemon's log set-up and its
operator events.

A rack box has no terminal: what happened is read later in the journal
(`journalctl -u mixgraph`). So the daemon says, on stderr, one line each for
start-up (backend, device, rate, block, ports, state restored), a client
address seen for the first time, device loss and return, autosave failures;
and, at most one line per `interval` seconds each, the count since the last
line of xruns, late events, packets dropped by the rate limit and packets
from addresses not allowed. Counting is always exact (`/status`); only the
lines are rate-limited, so a flood cannot fill the disk.

`--log-json` writes one JSON object per line (`ts`, `level`, `logger`,
`msg`, and `event` with its figures for operator events) for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger("mixgraph")

LEVELS = ("debug", "info", "warning", "error")
DEFAULT_INTERVAL_S = 10.0  # one line per kind of counted event per interval at most
MAX_HOSTS = 4096  # client addresses remembered for "first seen"; then the oldest go
FIRST_SEEN_BURST = 20  # "first seen" lines per interval, then one summary line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601, ms), level, logger, msg, and the
    record's `event` dict (operator events' figures) when it has one."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            out["event"] = event
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str = "warning", json_lines: bool = False,
                  stream: TextIO | None = None) -> None:
    """Configure the root logger once for a command: `level` one of LEVELS, lines
    on stderr (journald keeps them), plain text or JSON lines."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


class _Counted:
    """One counter turned into at most one line per interval: the count since the
    last line, and the total."""

    __slots__ = ("what", "level", "last_total", "last_line", "pending")

    def __init__(self, what: str, level: int) -> None:
        self.what = what
        self.level = level
        self.last_total = 0
        self.last_line = -1e18
        self.pending = 0


class OpLog:
    """Operator events from the control thread's counters, rate-limited.

    `tick(now, counts)` is called from the control loop with the current totals
    (`{"xruns": n, "late": n, "rate_limited": n, "denied": n}`); `client_seen`
    from the transport when a client address sends for the first time."""

    WHAT = {"xruns": ("audio: %d xrun%s in the last %.0f s (%d in all)", logging.WARNING),
            "late": ("%d event%s applied late in the last %.0f s (%d in all)",
                     logging.WARNING),
            "rate_limited": ("%d message%s dropped by the per-client rate limit in the "
                             "last %.0f s (%d in all)", logging.WARNING),
            "denied": ("%d packet%s from addresses not allowed refused in the last "
                       "%.0f s (%d in all)", logging.WARNING)}

    def __init__(self, interval: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic,
                 extra: Callable[[str], str] | None = None) -> None:
        self.interval = interval
        self.clock = clock
        self.extra = extra  # more words for a line of one kind (e.g. the worst block)
        self.kinds = {k: _Counted(*v) for k, v in self.WHAT.items()}
        self.started = clock()
        self.hosts: dict[str, float] = {}
        self._seen_window = -1e18
        self._seen_lines = 0
        self._seen_quiet = 0

    def baseline(self, counts: dict[str, int]) -> None:
        """Totals at start-up (a restored engine may not start at zero)."""
        for k, v in counts.items():
            if k in self.kinds:
                self.kinds[k].last_total = v

    def tick(self, now: float, counts: dict[str, int]) -> None:
        """Write a line for each kind whose count grew, when its interval allows."""
        for k, total in counts.items():
            c = self.kinds.get(k)
            if c is None:
                continue
            grew = total - c.last_total
            if grew > 0:
                c.pending += grew
            c.last_total = total
            if c.pending and now - c.last_line >= self.interval:
                span = now - max(c.last_line, self.started)
                msg = c.what % (c.pending, "" if c.pending == 1 else "s", span, total)
                more = self.extra(k) if self.extra else ""
                log.log(c.level, msg + (f"; {more}" if more else ""),
                        extra={"event": {"kind": k, "count": c.pending, "total": total}})
                c.last_line = now
                c.pending = 0

    def peer_seen(self, peer: object) -> None:
        """The transport's hook: a Peer (server/osc.py) whose address sent for the
        first time; its key is (host, port) for UDP, (kind, host, port) otherwise."""
        key = getattr(peer, "key", None)
        kind = getattr(peer, "kind", "?")
        if isinstance(key, tuple) and key and key[0] in ("tcp", "ws") and len(key) > 2:
            self.client_seen(kind, str(key[1]), key[2])
        elif isinstance(key, tuple) and len(key) > 1:
            self.client_seen(kind, str(key[0]), key[1])
        else:
            self.client_seen(kind, str(key), None)

    def client_seen(self, kind: str, host: str, port: int | None) -> None:
        """A client address that sends for the first time since start-up (remembered
        per host, not per port: a tool that opens a new socket each time is one client)."""
        if host in self.hosts:
            return
        now = self.clock()
        if len(self.hosts) >= MAX_HOSTS:
            for h in sorted(self.hosts, key=self.hosts.get)[:MAX_HOSTS // 8]:
                del self.hosts[h]
        self.hosts[host] = now
        if now - self._seen_window >= self.interval:
            if self._seen_quiet:
                log.info("%d more new client addresses in the last %.0f s",
                         self._seen_quiet, self.interval,
                         extra={"event": {"kind": "clients_seen", "count": self._seen_quiet}})
            self._seen_window = now
            self._seen_lines = 0
            self._seen_quiet = 0
        if self._seen_lines < FIRST_SEEN_BURST:
            self._seen_lines += 1
            where = f"{host}:{port}" if port is not None else host
            log.info("client %s first seen (%s)", where, kind,
                     extra={"event": {"kind": "client", "transport": kind, "host": host,
                                      "port": port}})
        else:
            self._seen_quiet += 1
