"""Lock-free rings: the SPSC command ring, the audio-frame fifo, and what a
full command ring does to the sender (it is told; nothing is lost)."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import CMD_SYNC, EV_SYNC, Engine, Fifo
from mixgraph.server.errors import EngineBusy


@pytest.mark.parametrize("capacity", [2, 16, 1024])
def test_ring_stress_two_threads_keeps_order(capacity):
    # A producer thread pushes 0..n-1, the consumer checks each item equals the
    # next expected integer: the return value is the number of mismatches.
    assert lib.mg_ring_stress(300_000, capacity) == 0


def test_fifo_write_read_wraparound():
    f = Fifo(2, 100)  # rounded up to 128 frames
    try:
        assert f.writable == 128 and f.readable == 0
        rng = np.random.default_rng(1)
        sent = []
        got = []
        # Uneven write/read sizes walk the indices around the ring many times.
        for _ in range(200):
            n = int(rng.integers(1, 120))
            block = rng.standard_normal((n, 2)).astype(np.float32)
            room = f.writable
            w = f.write(block)
            assert w == min(n, room)  # only what fits is taken
            sent.append(block[:w])
            assert f.readable + f.writable == 128
            got.append(f.read(int(rng.integers(1, 130))))
        got.append(f.read())
        assert f.readable == 0 and f.writable == 128
        # exact: the fifo copies bits
        assert np.array_equal(np.concatenate(got), np.concatenate(sent))
    finally:
        f.free()


def test_fifo_full_write_takes_only_what_fits():
    f = Fifo(1, 16)
    try:
        data = np.arange(40, dtype=np.float32).reshape(-1, 1)
        assert f.write(data) == 16
        assert f.write(data) == 0
        assert f.writable == 0
        out = f.read(10)
        assert np.array_equal(out[:, 0], np.arange(10, dtype=np.float32))
        assert f.write(data[16:]) == 10  # wraps around the end of the buffer
        rest = f.read()
        assert np.array_equal(rest[:, 0], np.arange(10, 26, dtype=np.float32))
    finally:
        f.free()


def test_fifo_raw_api_rejects_bad_sizes():
    assert lib.mg_fifo_new(0, 16) == ffi.NULL
    assert lib.mg_fifo_new(2, 0) == ffi.NULL


def test_full_command_ring_raises_and_loses_nothing():
    e = Engine(48000, 0, 2, cmd_capacity=16, heap_capacity=64)
    try:
        assert e.space() == 16
        for i in range(16):
            e.push(CMD_SYNC, index=i)
        assert e.space() == 0
        with pytest.raises(EngineBusy, match="full"):
            e.push(CMD_SYNC, index=99)
        e.process(64)
        synced = [index for kind, index, *_ in e.poll() if kind == EV_SYNC]
        # every queued command arrived, in order; the refused one did not
        assert synced == list(range(16))
        assert e.stats().events_lost == 0
        assert e.space() == 16
        e.push(CMD_SYNC, index=99)  # room again
        e.process(64)
        assert [i for k, i, *_ in e.poll() if k == EV_SYNC] == [99]
    finally:
        e.free()


def test_full_scheduler_defers_without_losing_events():
    # 40 timed events with room for 16 in the scheduler heap: the rest wait in
    # the command ring (heap_deferred counts that) and all still arrive in order.
    e = Engine(48000, 0, 1, cmd_capacity=64, heap_capacity=16)
    try:
        for i in range(40):
            e.push(CMD_SYNC, index=i, time=1000 + 100 * i)
        seen = []
        for _ in range(100):
            e.process(64)
            seen += [(index, t) for kind, index, _v, t, _p in e.poll() if kind == EV_SYNC]
        assert [i for i, _ in seen] == list(range(40))
        st = e.stats()
        assert st.heap_deferred > 0
        assert st.events_lost == 0
        # events that had room in the heap fire at their block: an event at
        # sample t is reported at the start of the block containing t
        # (SYNC events carry the block start time).
        for i, t in seen[:16]:
            due = 1000 + 100 * i
            assert t <= due < t + 64
    finally:
        e.free()


def test_a_scheduler_full_of_future_events_does_not_hold_up_commands_for_now():
    # the heap (16 slots) full of events for much later: a command for now (a sync,
    # then a parameter set) is still applied in the next block, in order, and the
    # future events keep their time
    e = Engine(48000, 0, 1, cmd_capacity=64, heap_capacity=16)
    try:
        for i in range(16):
            e.push(CMD_SYNC, index=100 + i, time=10**9)
        e.process(64)
        e.push(CMD_SYNC, index=1)
        e.push(CMD_SYNC, index=2)
        e.process(64)
        seen = [index for kind, index, _v, _t, _p in e.poll() if kind == EV_SYNC]
        assert seen == [1, 2]
        assert e.stats().heap_deferred == 0
    finally:
        e.free()
