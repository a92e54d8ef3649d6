"""The native JACK client (control side): open, connect, watch, close.

The audio side is csrc/jack.c: its process callback, registered with JACK,
runs the engine on JACK's real-time thread. This module opens the client
(`mixgraph:in_<n>` / `mixgraph:out_<n>`), applies `--jack-connect`, reports
the graph's latency, and tells the daemon when the server has gone away
(server/devices.py then moves the engine to the null clock and retries).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ._core import ffi, lib
from .errors import MixgraphError

# JackPortFlags (jack/types.h)
PORT_IS_INPUT = 0x1
PORT_IS_OUTPUT = 0x2
PORT_IS_PHYSICAL = 0x4


def rt_errors() -> int:
    """Errors libjack reported on its process thread, where they are counted, not
    printed (stdio may lock or allocate there)."""
    return int(lib.mg_jack_rt_errors())


def available() -> bool:
    """True when this build links libjack (built where <jack/jack.h> was)."""
    return bool(lib.mg_jack_available())


@dataclass(frozen=True)
class ConnectRule:
    """One `--jack-connect` pair: our port (in_<n>/out_<n>, a regular
    expression over our short port names, or midi_in/midi_out) and a regular expression over the
    other client's full port names (`system:playback_1`, `ardour:.*`)."""

    ours: str
    theirs: str


def parse_connect(specs: list[str] | None) -> list[ConnectRule] | str | None:
    """`--jack-connect` values: None (connect nothing), "system" (every input
    and output to the physical ports in order), or rules `ours=theirs`
    (several in one value separated by commas, or the option repeated)."""
    if not specs:
        return None
    if len(specs) == 1 and specs[0].strip() in ("system", "none"):
        return None if specs[0].strip() == "none" else "system"
    rules = []
    for spec in specs:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            ours, sep, theirs = part.partition("=")
            ours, theirs = ours.strip(), theirs.strip()
            if not sep or not ours or not theirs:
                raise MixgraphError(f"--jack-connect {part!r}: give system, none, or "
                                    "pairs our_port=their_port_pattern (e.g. "
                                    "out_1=system:playback_1)")
            if not re.fullmatch(r"(in|out)_.+|midi_(in|out)", ours):
                raise MixgraphError(f"--jack-connect {part!r}: our port must be in_<n>, "
                                    "out_<n> (a regular expression over the number is fine), "
                                    "midi_in or midi_out")
            for rx in (ours, theirs):
                try:
                    re.compile(rx)
                except re.error as exc:
                    raise MixgraphError(f"--jack-connect {part!r}: bad pattern {rx!r} "
                                        f"({exc})") from None
            rules.append(ConnectRule(ours, theirs))
    return rules


def parse_cpu(value: str | int | None) -> int | None:
    """`--jack-cpu`: None for `off` (or not given), else a CPU this process may
    run on, with at least one more left for the daemon's other threads."""
    if value is None or str(value).strip().lower() in ("off", "none", ""):
        return None
    try:
        cpu = int(str(value).strip())
    except ValueError:
        raise MixgraphError(f"--jack-cpu {value!r}: give a CPU number or off") from None
    allowed = sorted(os.sched_getaffinity(0))
    if cpu not in allowed:
        raise MixgraphError(f"--jack-cpu {cpu}: this process may run on CPUs "
                            f"{','.join(map(str, allowed))} only")
    if len(allowed) < 2:
        raise MixgraphError(f"--jack-cpu {cpu}: the only CPU this process may use; the "
                            "daemon's other threads need another (use --jack-cpu off)")
    return cpu


def keep_threads_off(cpu: int, skip: int = 0) -> int:
    """Restrict every thread of this process but JACK's process thread (`skip`,
    its kernel id) and real-time ones (the control, OSC, MIDI, disk and
    autosave threads, libjack's notification thread) to the CPUs other than
    `cpu`, where JACK's process thread is pinned; threads started later inherit
    the mask of the thread that starts them. Returns how many threads were
    restricted."""
    others = os.sched_getaffinity(0) | {cpu}
    others.discard(cpu)
    if not others:
        return 0
    n = 0
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        if tid == skip:
            continue
        try:
            if os.sched_getscheduler(tid) not in (os.SCHED_OTHER, os.SCHED_BATCH,
                                                  os.SCHED_IDLE):
                continue  # JACK's process thread (SCHED_FIFO), the null clock's
            if os.sched_getaffinity(tid) != others:
                os.sched_setaffinity(tid, others)
            n += 1
        except OSError:  # the thread ended meanwhile
            continue
    return n


class JackClient:
    """One open client of a JACK server, running `engine` in its process callback."""

    def __init__(self, engine, name: str = "mixgraph", server: str | None = None,
                 cpu: int | None = None) -> None:
        err = ffi.new("char[512]")
        self.ptr = lib.mg_jack_open(engine.ptr, name.encode(), (server or "").encode(),
                                    engine.hw_in, engine.hw_out, err, 512)
        if self.ptr == ffi.NULL:
            where = f"JACK server {server!r}" if server else "the default JACK server"
            raise MixgraphError(f"{where}: {ffi.string(err).decode(errors='replace')}")
        self.engine = engine  # the C callback holds its pointer
        self.server = server
        self.n_in, self.n_out = engine.hw_in, engine.hw_out
        self.name = ffi.string(lib.mg_jack_client_name(self.ptr)).decode()
        self.rate = int(lib.mg_jack_rate(self.ptr))
        self.cpu = cpu
        if cpu is not None:
            lib.mg_jack_set_cpu(self.ptr, int(cpu))

    def activate(self) -> None:
        """Start the process callback; with a CPU, JACK's thread pins itself
        there before its first period and the other threads are kept off it."""
        if self.cpu is not None:
            keep_threads_off(self.cpu)  # before: libjack's new threads inherit the mask
        if lib.mg_jack_activate(self.ptr) != 0:
            raise MixgraphError("cannot activate the JACK client")
        if self.cpu is not None:
            # libjack's threads started meanwhile; JACK's process thread (not
            # real-time when the server runs without -R) pins itself as it starts
            end = time.monotonic() + 2.0
            while lib.mg_jack_thread_id(self.ptr) == 0 and time.monotonic() < end:
                time.sleep(0.005)
            keep_threads_off(self.cpu, int(lib.mg_jack_thread_id(self.ptr)))

    @property
    def pinned(self) -> int:
        """1: JACK's process thread is pinned to `cpu`; 0: not asked, or its
        first period has not come yet; negative: the errno that refused it."""
        return int(lib.mg_jack_pinned(self.ptr)) if self.ptr != ffi.NULL else 0

    @property
    def lost(self) -> bool:
        """The server shut this client down (it stopped, or threw us out)."""
        return self.ptr == ffi.NULL or bool(lib.mg_jack_lost(self.ptr))

    @property
    def lost_reason(self) -> str:
        return ffi.string(lib.mg_jack_lost_reason(self.ptr)).decode(errors="replace")

    @property
    def busy(self) -> bool:
        return bool(lib.mg_jack_busy(self.ptr))

    @property
    def period(self) -> int:
        """Frames per period now (follows the server's buffer-size changes)."""
        return int(lib.mg_jack_period(self.ptr))

    @property
    def period_changes(self) -> int:
        return int(lib.mg_jack_period_changes(self.ptr))

    @property
    def realtime(self) -> bool:
        return bool(lib.mg_jack_realtime(self.ptr))

    def set_latency(self, frames: int) -> None:
        """The graph's own latency, added to the output ports' latency ranges."""
        lib.mg_jack_set_latency(self.ptr, max(0, int(frames)))

    def ports(self, pattern: str = "", flags: int = 0, midi: bool = False) -> list[str]:
        buf = ffi.new("char[65536]")
        lib.mg_jack_ports(self.ptr, pattern.encode(), flags, int(midi), buf, 65536)
        return [p for p in ffi.string(buf).decode(errors="replace").split("\n") if p]

    def connect(self, rules: list[ConnectRule] | str | None) -> list[str]:
        """Make the connections `--jack-connect` asks for; returns what failed
        (a pattern that matched nothing, a refused connection)."""
        if rules is None:
            return []
        problems = []
        me = self.name
        if rules == "system":
            sources = self.ports("", PORT_IS_PHYSICAL | PORT_IS_OUTPUT)
            sinks = self.ports("", PORT_IS_PHYSICAL | PORT_IS_INPUT)
            pairs = [(s, f"{me}:in_{i + 1}") for i, s in enumerate(sources[:self.n_in])]
            pairs += [(f"{me}:out_{i + 1}", d) for i, d in enumerate(sinks[:self.n_out])]
        else:
            pairs = []
            for rule in rules:
                ours = [f"{me}:{p}" for p in self._own_names()
                        if re.fullmatch(rule.ours, p)]
                output = rule.ours.startswith(("out", "midi_out"))
                midi = rule.ours.startswith("midi_")
                theirs = [p for p in self.ports(rule.theirs,
                                                PORT_IS_INPUT if output else PORT_IS_OUTPUT,
                                                midi)
                          if not p.startswith(me + ":")]
                if not ours or not theirs:
                    problems.append(f"{rule.ours}={rule.theirs}: "
                                    f"{'no port of ours' if not ours else 'no JACK port'} "
                                    "matches")
                    continue
                if len(ours) == len(theirs) or len(theirs) == 1 or len(ours) == 1:
                    # one to one in order, or one to many / many to one
                    if len(ours) == len(theirs):
                        matched = list(zip(ours, theirs, strict=True))
                    else:
                        matched = [(a, b) for a in ours for b in theirs]
                else:
                    matched = list(zip(ours, theirs, strict=False))
                pairs += [(a, b) if output else (b, a) for a, b in matched]
        for src, dst in pairs:
            if lib.mg_jack_connect(self.ptr, src.encode(), dst.encode()) != 0:
                problems.append(f"cannot connect {src} -> {dst}")
        return problems

    def _own_names(self) -> list[str]:
        return ([f"in_{i + 1}" for i in range(self.n_in)]
                + [f"out_{i + 1}" for i in range(self.n_out)] + ["midi_in", "midi_out"])

    def close(self) -> None:
        """Deactivate and close (also after the server went away); idempotent."""
        if self.ptr != ffi.NULL:
            lib.mg_jack_close(self.ptr)
            self.ptr = ffi.NULL


def server_running(server: str | None = None) -> tuple[bool, int, int]:
    """(running, sample rate, period) of a JACK server, by opening a client
    with no ports for a moment (never starts a server)."""
    rate = ffi.new("uint32_t *")
    period = ffi.new("uint32_t *")
    if not lib.mg_jack_probe((server or "").encode(), rate, period):
        return False, 0, 0
    return True, int(rate[0]), int(period[0])
