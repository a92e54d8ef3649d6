"""A thin Python handle on the C engine: commands in, events out, stats.

Everything here runs on the control thread. The audio thread lives in C
(the PortAudio callback, the null clock thread, or Engine.process() called
by the offline loop)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from ._core import ffi, lib
from .errors import EngineBusy, MixgraphError

CMD_PARAM = lib.MG_CMD_PARAM
CMD_EDGE = lib.MG_CMD_EDGE
CMD_PLAN = lib.MG_CMD_PLAN
CMD_SYNC = lib.MG_CMD_SYNC
CMD_RESET = lib.MG_CMD_RESET
CMD_TAP = lib.MG_CMD_TAP
EV_PLAN_RETIRED = lib.MG_EV_PLAN_RETIRED
EV_SYNC = lib.MG_EV_SYNC
EV_LATE = lib.MG_EV_LATE
MAX_BLOCK = lib.MG_MAX_BLOCK


@dataclass
class Stats:
    """A snapshot of the engine's counters."""

    time: int
    blocks: int
    load: float
    mean_us: float
    worst_us: float
    xruns: int
    late: int
    nan_scrubbed: int
    clipped: int
    events_lost: int
    rt_allocs: int
    heap_deferred: int
    worst_swap_us: float = 0.0  # most time one call spent swapping in plans (since the start)
    worst_swap_block_us: float = 0.0  # the worst call that swapped in a plan (since the start)
    swap_work: int = 0  # nodes, edges and ops the last plan swap visited
    last_swap_us: float = 0.0  # the latest call that swapped in a plan: time spent swapping
    last_swap_block_us: float = 0.0  # ... and that whole call's time


class Fifo:
    """An audio-frame ring shared with a node or the output tap."""

    def __init__(self, channels: int, frames: int) -> None:
        self.ptr = lib.mg_fifo_new(channels, frames)
        if self.ptr == ffi.NULL:
            raise MixgraphError(f"cannot allocate a {channels}-channel fifo of {frames} frames")
        self.channels = channels

    def read(self, max_frames: int | None = None) -> np.ndarray:
        """Everything readable now (up to max_frames), shape (frames, channels)."""
        n = lib.mg_fifo_readable(self.ptr)
        if max_frames is not None:
            n = min(n, max_frames)
        buf = np.empty((n, self.channels), dtype=np.float32)
        got = lib.mg_fifo_read(self.ptr, ffi.from_buffer("float[]", buf), n)
        return buf[:got]

    def write(self, frames: np.ndarray) -> int:
        """Write as many frames as fit; returns how many did."""
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        return lib.mg_fifo_write(self.ptr, ffi.from_buffer("float[]", frames), len(frames))

    @property
    def writable(self) -> int:
        return lib.mg_fifo_writable(self.ptr)

    @property
    def readable(self) -> int:
        return lib.mg_fifo_readable(self.ptr)

    @property
    def dropped(self) -> int:
        return lib.mg_fifo_dropped(self.ptr)

    def free(self) -> None:
        if self.ptr is not None and self.ptr != ffi.NULL:
            lib.mg_fifo_free(self.ptr)
        self.ptr = None


def default_threads() -> int:
    """Audio threads by default: one per core this process may use, less one
    for everything else (as Ardour does), at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class Engine:
    """The C engine: owns hardware channel counts and the command/event rings."""

    def __init__(self, sample_rate: float, hw_in: int, hw_out: int,
                 cmd_capacity: int = 1 << 15, heap_capacity: int = 1 << 14,
                 threads: int = 1, block: int | None = None) -> None:
        """threads: the audio thread and threads - 1 audio workers run each
        plan's independent work (docs/architecture.md, "The graph on every
        core"); 1 runs the plan's steps in order on the audio thread. block:
        the backend's period in frames, see set_block (None: the largest)."""
        self.ptr = lib.mg_engine_new(float(sample_rate), hw_in, hw_out, cmd_capacity,
                                     heap_capacity)
        self.cmd_capacity = cmd_capacity
        self.heap_capacity = max(heap_capacity, 16)  # the scheduler's slots (mg_engine_new)
        self.set_cap = 0  # cap_sets' bound ("now" sets a block; 0: none)
        if self.ptr == ffi.NULL:
            raise MixgraphError(
                f"cannot create an engine at {sample_rate} Hz with {hw_in} in / {hw_out} out"
            )
        self.threads = lib.mg_engine_set_threads(self.ptr, max(1, int(threads)))
        self.block = lib.mg_engine_set_block(self.ptr, int(block or lib.MG_MAX_BLOCK))
        self.sample_rate = float(sample_rate)
        self.hw_in = hw_in
        self.hw_out = hw_out
        self._ev = ffi.new("mg_event *")
        self._stats = ffi.new("mg_stats *")
        self.recent = RecentWorst(self)  # the worst block of the last 10 s

    def set_sched(self, spin_us: float, min_work_us: float) -> None:
        """How the audio threads share a cycle (mg_engine_set_sched): a thread
        with nothing ready spins up to spin_us within a cycle before it
        sleeps; each cycle takes the faster path, the workers or the audio
        thread alone, and never the workers under min_work_us of one-thread
        time (0: always the workers; -1: every other cycle, for tests). No
        effect on one thread."""
        lib.mg_engine_set_sched(self.ptr, float(spin_us), float(min_work_us))

    def set_spin_adapt(self, on: bool) -> None:
        """Whether each audio thread stops spinning while its spins are lost
        (run out their bound or preempted: a loaded host; the default), or
        always spins up to the bound (tests that need a spinning thread).
        No effect on one thread."""
        lib.mg_engine_set_spin_adapt(self.ptr, int(on))

    PAR_STATS = ("cycles", "units", "handed", "shared", "kept", "roots_other", "pop_other",
                 "spins", "spin_found", "spin_ns", "sleeps", "posts", "busy_ns", "start_ns",
                 "helped", "spin_lost", "spin_skip")

    def par_stats(self) -> list[dict[str, int]]:
        """The audio threads' counters since the engine was made
        (mg_engine_par_stats; bench/): one dict per thread, the audio thread
        first; [] on one thread."""
        n = lib.MG_PSTAT_N
        v = ffi.new("uint64_t[]", n * max(1, self.threads))
        t = lib.mg_engine_par_stats(self.ptr, v, n * max(1, self.threads))
        return [{k: int(v[i * n + j]) for j, k in enumerate(self.PAR_STATS[:n])}
                for i in range(t)]

    def push(self, kind: int, ptr=ffi.NULL, index: int = 0, value: float = 0.0,
             time: int = 0) -> None:
        """Queue one command for the audio thread; raises EngineBusy when the ring is
        full, MixgraphError when a plan's buffers cannot be laid out (no memory)."""
        r = lib.mg_push_cmd(self.ptr, time, kind, index, value, ptr)
        if r == 0:
            raise EngineBusy("engine command queue full; try again")
        if r < 0:
            raise MixgraphError("out of memory laying out the plan's buffers")

    def push_ramp(self, ptr, index: int, target: float, frames: int, curve: int,
                  time: int = 0) -> None:
        """Queue a taper ramp (MG_CMD_RAMP); raises EngineBusy when the ring is full."""
        if not lib.mg_push_ramp(self.ptr, time, ptr, index, target, frames, curve):
            raise EngineBusy("engine command queue full; try again")

    def space(self) -> int:
        return lib.mg_cmd_space(self.ptr)

    def poll(self) -> list[tuple[int, int, int, int, object]]:
        """Events from the audio thread: (kind, index, value, time, ptr)."""
        out = []
        ev = self._ev
        while lib.mg_poll(self.ptr, ev):
            out.append((ev.kind, ev.index, ev.value, ev.time, ev.ptr))
        return out

    @property
    def time(self) -> int:
        """The engine's sample clock: samples processed so far."""
        return lib.mg_engine_time(self.ptr)

    def stats(self) -> Stats:
        s = self._stats
        lib.mg_engine_stats(self.ptr, s)
        return Stats(s.time, s.blocks, s.load, s.mean_us, s.worst_us, s.xruns, s.late,
                     s.nan_scrubbed, s.clipped, s.events_lost, s.rt_allocs, s.heap_deferred,
                     s.worst_swap_us, s.worst_swap_block_us, s.swap_work, s.last_swap_us,
                     s.last_swap_block_us)

    def take_worst_us(self) -> float:
        """The slowest engine call since the previous take (one window's worst)."""
        return lib.mg_engine_take_worst_us(self.ptr)

    def process(self, nframes: int, inputs: np.ndarray | None = None,
                block: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Run the audio thread's code for nframes here (offline); returns (n, hw_out).

        With block, the C side makes one engine call per `block` frames, exactly
        as a live backend with that block size would."""
        if out is None:
            out = np.zeros((nframes, self.hw_out), dtype=np.float32)
        inp = ffi.NULL
        if inputs is not None and self.hw_in:
            inputs = np.ascontiguousarray(inputs, dtype=np.float32).reshape(nframes, self.hw_in)
            inp = ffi.from_buffer("float[]", inputs)
        outp = ffi.from_buffer("float[]", out) if self.hw_out else ffi.NULL
        if block is None:
            lib.mg_engine_process(self.ptr, inp, outp, nframes)
        else:
            lib.mg_engine_process_blocks(self.ptr, inp, outp, nframes, block)
        return out

    def process_timed(self, nframes: int, inputs: np.ndarray | None, block: int,
                      out: np.ndarray) -> np.ndarray:
        """process() with one engine call per block, as a live backend makes
        them; returns each call's wall-clock time in microseconds (bench/)."""
        us = np.zeros(-(-nframes // block), np.float64)
        inp = ffi.NULL
        if inputs is not None and self.hw_in:
            inputs = np.ascontiguousarray(inputs, dtype=np.float32).reshape(nframes, self.hw_in)
            inp = ffi.from_buffer("float[]", inputs)
        outp = ffi.from_buffer("float[]", out) if self.hw_out else ffi.NULL
        lib.mg_engine_process_blocks_timed(self.ptr, inp, outp, nframes, block,
                                           ffi.from_buffer("double[]", us))
        return us

    def set_block(self, frames: int) -> int:
        """The backend's period: the channel buffers of the plans pushed from
        now on hold that many frames (rounded up to 16), so a cycle's buffers
        are a few compact pages (docs/architecture.md, "Buffers"). Longer
        engine calls run in chunks of that many frames, with the same samples.
        A plan already pushed keeps its layout: push a new one (Session:
        mark it dirty) to follow a change. Returns the frames."""
        self.block = lib.mg_engine_set_block(self.ptr, int(frames))
        return self.block

    def null_start(self, block: int) -> None:
        self.set_block(block)
        if lib.mg_null_start(self.ptr, block) != 0:
            raise MixgraphError(f"cannot start the null clock with {block}-frame blocks")

    def null_stop(self) -> None:
        lib.mg_null_stop(self.ptr)

    def set_ganging(self, on: bool) -> None:
        """Run ganged nodes together and fold steady sends into their buses
        (the default), or run each node by itself: the two give the same
        samples, and tests compare them."""
        lib.mg_engine_set_ganging(self.ptr, 1 if on else 0)

    def set_fusing(self, on: bool) -> None:
        """Run a channel strip's tail (panner, fader, folded sends) as one
        fused pass into its buses while it is at rest (the default, with
        ganging on), or step by step: the two give the same samples, and
        tests compare them."""
        lib.mg_engine_set_fusing(self.ptr, 1 if on else 0)

    def set_ceiling_db(self, ceiling_db: float | None) -> None:
        """The safety stage's hard ceiling on the hardware outputs, dBFS (0 dBFS
        unless set: live backends keep one for the speakers). None: no ceiling,
        for offline renders to float files; NaN and Inf are scrubbed either way,
        and `clipped` in stats() counts the samples the ceiling held."""
        amp = math.inf if ceiling_db is None else 10.0 ** (ceiling_db / 20.0)
        lib.mg_engine_set_ceiling(self.ptr, amp)

    SET_CAP_LIVE = int(lib.MG_SET_CAP_LIVE)

    def cap_sets(self, n: int) -> None:
        """Bounded work per block (mg_engine_set_cap_sets): at most n "now"
        parameter sets and ramps are applied in one block, the rest queued in
        order for the next; 0: no limit (the default, offline renders). Call
        before the audio thread runs."""
        self.set_cap = max(0, int(n))
        lib.mg_engine_set_cap_sets(self.ptr, self.set_cap)

    def sets_carried(self) -> int:
        """Blocks that reached the cap of cap_sets and left sets for the next."""
        return int(lib.mg_engine_sets_carried(self.ptr))

    CALL_FIELDS = ("start_ns", "engine_ns", "drain_ns", "end_ns", "cpu_ns", "cmds",
                   "applied", "swaps", "frames", "cpu")

    def call_trace_start(self, cap: int) -> None:
        """Record each engine call's timestamps and work (mg_engine_call_trace)
        in a ring of the last `cap` calls, for bench/jackd.py --trace."""
        self._ctrace = ffi.new("mg_call_rec[]", cap)
        lib.mg_engine_call_trace(self.ptr, self._ctrace, cap)

    def call_trace_read(self) -> list[tuple[int, ...]]:
        """The recorded calls, oldest first, as tuples of CALL_FIELDS; stops
        the trace (the ring stays allocated: a call under way may still write)."""
        ring = getattr(self, "_ctrace", None)
        if ring is None or self.ptr is None:
            return []
        n = lib.mg_engine_call_trace(self.ptr, ffi.NULL, 0)
        cap = len(ring)
        first = max(0, n - cap)
        return [tuple(getattr(ring[k % cap], f) for f in self.CALL_FIELDS)
                for k in range(first, n)]

    def free(self) -> None:
        if self.ptr is not None:
            midi = lib.mg_engine_midi(self.ptr)  # server/midi.py's maps, if any were made
            lib.mg_engine_free(self.ptr)
            lib.mg_midi_free(midi)
            self.ptr = None


class RecentWorst:
    """The slowest engine call of the last `seconds` (for /status `worst_recent_us`
    and the terminal's status line): one thread (the control thread) calls tick();
    any thread may read `us`. Kept as per-second maxima of the engine's window."""

    def __init__(self, engine: Engine, seconds: int = 10) -> None:
        self.engine = engine
        self.slots = [0.0] * seconds
        self.second = -1
        self.us = 0.0

    def tick(self, now: float) -> float:
        """Take the engine's window into the current second's slot; returns `us`."""
        sec = int(now)
        n = len(self.slots)
        if sec != self.second:
            for s in range(max(self.second + 1, sec - n + 1), sec + 1):
                self.slots[s % n] = 0.0  # seconds gone by without a tick
            self.second = sec
        i = sec % n
        self.slots[i] = max(self.slots[i], self.engine.take_worst_us())
        self.us = max(self.slots)
        return self.us
