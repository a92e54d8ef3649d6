"""Scores: timed OSC messages for offline renders.

Two forms:
- text: one `time address args...` per line (time in seconds; `#` starts a
  comment; arguments are ints, floats, true/false or strings, quoted with
  "..." when they hold spaces);
- binary: scsynth's NRT framing, a sequence of int32 big-endian length +
  OSC bundle, whose timetags count seconds from 0 (NTP seconds.fraction).
"""

from __future__ import annotations

import shlex
import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import MixgraphError
from .osc import parse_packet
from .state import read_bounded

MAX_SCORE_BYTES = 256 << 20  # a score file (a million events of text is about 40 MB)


@dataclass
class ScoreEvent:
    """One message at a time in seconds from the start of the render."""

    time_s: float
    address: str
    args: list
    line: int = 0


def parse_arg(tok: str):
    low = tok.lower()
    if low in ("true", "t"):
        return True
    if low in ("false", "f"):
        return False
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok


def parse_text(text: str) -> list[ScoreEvent]:
    events = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith('"') else raw.strip()
        if not line:
            continue
        try:
            toks = shlex.split(line, comments=False, posix=True)
        except ValueError as e:
            raise MixgraphError(f"score line {n}: {e}") from None
        if len(toks) < 2:
            raise MixgraphError(f"score line {n}: expected `time address args...`")
        try:
            t = float(toks[0])
        except ValueError:
            raise MixgraphError(f"score line {n}: bad time {toks[0]!r}") from None
        if not (t >= 0.0) or t == float("inf"):
            raise MixgraphError(f"score line {n}: time must be >= 0 seconds")
        if not toks[1].startswith("/"):
            raise MixgraphError(f"score line {n}: {toks[1]!r} is not an OSC address")
        events.append(ScoreEvent(t, toks[1], [parse_arg(a) for a in toks[2:]], n))
    return events


def parse_binary(data: bytes) -> list[ScoreEvent]:
    events = []
    pos = 0
    k = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise MixgraphError(f"NRT score: truncated length at byte {pos}")
        (size,) = struct.unpack(">i", data[pos:pos + 4])
        pos += 4
        if size <= 0 or pos + size > len(data):
            raise MixgraphError(f"NRT score: bad bundle length {size} at byte {pos - 4}")
        bundle = data[pos:pos + size]
        pos += size
        k += 1
        if bundle[:8] != b"#bundle\0":
            raise MixgraphError(f"NRT score: element {k} is not a bundle")
        for m in parse_packet(bundle):
            secs = m.timetag[0] + m.timetag[1] / 2**32
            events.append(ScoreEvent(secs, m.address, m.args, k))
    return events


def build_binary(events: list[ScoreEvent]) -> bytes:
    """Write events as an NRT score (one bundle per event)."""
    from .osc import build_message

    out = bytearray()
    for ev in events:
        msg = build_message(ev.address, ev.args)
        secs = int(ev.time_s)
        frac = int(round((ev.time_s - secs) * 2**32)) & 0xFFFFFFFF
        bundle = b"#bundle\0" + struct.pack(">II", secs, frac) + struct.pack(">i", len(msg)) + msg
        out += struct.pack(">i", len(bundle)) + bundle
    return bytes(out)


def read_score(path: str | Path) -> list[ScoreEvent]:
    """Read a text or binary score; events sorted by time (stable)."""
    p = Path(path)
    data = read_bounded(p, MAX_SCORE_BYTES, "score")
    if len(data) >= 12 and data[4:12] == b"#bundle\0":
        events = parse_binary(data)
    else:
        try:
            events = parse_text(data.decode())
        except UnicodeDecodeError:
            raise MixgraphError(f"score {p.name}: neither text nor an NRT score") from None
    return sorted(events, key=lambda e: e.time_s)
