"""The layout of a plan's buffers for the engine's period (Engine.set_block,
csrc/plan.c mg_plan_layout) and the node arena (csrc/alloc.c).

A plan's channel buffers hold the engine's block, not MG_MAX_BLOCK frames, so
an engine call longer than that must run in chunks of the block: the samples
are the very samples a plan laid out for MG_MAX_BLOCK gives for calls of the
block (of the call, when it is shorter), on one thread or several; when the
block changes under a running session (a JACK buffer-size change) the next
plan follows it with the nodes' state kept. Node blocks come from a huge-page
arena whose freed blocks are reused by the next nodes of the same size."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import MAX_BLOCK, Engine
from mixgraph.server.session import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from mix64 import build_mix64  # noqa: E402

RATE = 48000
FRAMES = RATE // 2


def _render(block: int | None, call: int, threads: int = 1, channels: int = 8,
            frames: int = FRAMES) -> np.ndarray:
    e = Engine(RATE, 0, 2, threads=threads, block=block)
    s = Session(e)
    try:
        build_mix64(s, channels)
        if threads > 1:
            e.set_sched(0.0, -1.0)  # every other cycle on the workers
        return e.process(frames, None, block=call)
    finally:
        s.close()
        e.free()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """mix64 (8 channels) laid out for MG_MAX_BLOCK, in 64-frame calls."""
    return _render(None, 64)


def test_the_block_is_rounded_to_whole_lines_and_bounded():
    e = Engine(RATE, 0, 2)
    try:
        assert e.block == MAX_BLOCK
        assert [e.set_block(n) for n in (1, 64, 100, 128, 4096)] == [16, 64, 112, 128, MAX_BLOCK]
    finally:
        e.free()


@pytest.mark.parametrize("block,call,chunk", [(64, 64, 64), (64, 256, 64), (64, 512, 64),
                                              (128, 100, 100), (16, 48, 16)])
def test_calls_longer_than_the_block_run_in_chunks_of_it(block, call, chunk):
    """A plan laid out for `block` frames gives, for calls of `call` frames,
    the samples a plan of MG_MAX_BLOCK frames gives for calls of `chunk`
    frames (the block when the call is longer: the chunks it runs in). Not
    the samples of `call`-frame calls: some nodes' output depends on where
    the calls split the signal (mix64 in 64- and 100-frame calls differs)."""
    out = _render(block, call)
    ref = _render(None, chunk)
    assert np.array_equal(out, ref), np.flatnonzero(out != ref)[:5]


def test_two_threads_on_a_small_block_give_the_one_thread_samples(reference):
    out = _render(64, 256, threads=2)
    assert np.array_equal(out, reference)


def test_a_block_change_under_a_running_session_keeps_the_state(reference):
    """Half the render laid out for 512 frames, then (as the daemon does on a
    JACK buffer-size change) the block set to 64 and a new plan pushed: the
    nodes keep their state (the reverb's tail, the compressors' envelopes),
    so the samples are the reference's, and the new plan holds 64 frames."""
    e = Engine(RATE, 0, 2)
    s = Session(e)
    try:
        build_mix64(s, 8)
        first = e.process(FRAMES // 2, None, block=256)
        assert e.set_block(64) == 64
        s._dirty = True
        s.commit()
        rec = list(s._plans.values())[-1]
        second = e.process(FRAMES // 2, None, block=256)
        assert lib.mg_plan_block(rec.ptr) == 64
        assert np.array_equal(np.concatenate([first, second]), reference)
    finally:
        s.close()
        e.free()


def _mapping(addr: int) -> tuple[int, int, list[str]]:
    """(start, end, VmFlags) of this process's mapping that holds addr."""
    found = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0] if line else ""
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            found = (lo, hi) if lo <= addr < hi else None
        elif found and line.startswith("VmFlags:"):
            return found[0], found[1], line.split()[1:]
    raise AssertionError(f"no mapping holds {addr:#x}")


def test_freed_node_blocks_are_reused():
    """Blocks of freed nodes serve the next nodes of the same size (the node
    arena's free lists): 300 nodes made after 300 of the same type were freed
    take exactly their blocks, which lie in the arena's 2 MB chunks."""
    e = Engine(RATE, 0, 2)
    try:
        for name, ch in (("eq", 2), ("compressor", 2), ("gate", 0)):
            t = lib.mg_type_find(name.encode())

            def make(t=t, ch=ch) -> list:
                nodes = [lib.mg_node_new(e.ptr, t, ch, 0, 1, ffi.NULL, ffi.NULL)
                         for _ in range(300)]
                assert all(n != ffi.NULL for n in nodes)
                return nodes

            first = make()
            at = {int(ffi.cast("uintptr_t", n)) for n in first}
            for n in first:
                lib.mg_node_free(n)
            again = make()
            assert {int(ffi.cast("uintptr_t", n)) for n in again} == at, name
            for a in at:  # in 2 MB mappings, 2 MB-aligned, advised as huge pages
                start, end, flags = _mapping(a)
                assert start % (2 << 20) == 0 and (end - start) % (2 << 20) == 0, (name, hex(a))
                assert "hg" in flags, (name, flags)
            for n in again:
                lib.mg_node_free(n)
    finally:
        e.free()


_LOCKED_ARENA = """
import ctypes, sys
from pathlib import Path
libc = ctypes.CDLL(None, use_errno=True)
if libc.mlockall(3) != 0:  # MCL_CURRENT | MCL_FUTURE, as serve --mlock
    print("SKIP mlockall refused"); sys.exit(0)
from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine
e = Engine(48000, 0, 2)
n = lib.mg_node_new(e.ptr, lib.mg_type_find(b"eq"), 2, 0, 1, ffi.NULL, ffi.NULL)
addr = int(ffi.cast("uintptr_t", n))
found = None
for line in Path("/proc/self/smaps").read_text().splitlines():
    head = line.split()[0] if line else ""
    if "-" in head and ":" not in head:
        lo, hi = (int(x, 16) for x in head.split("-"))
        found = lo <= addr < hi
    elif found and line.startswith("AnonHugePages:"):
        print("HUGE_KB", line.split()[1])
        break
"""


def test_a_locked_arena_chunk_is_a_huge_page_from_the_start():
    """Under mlockall(MCL_FUTURE) (serve --mlock) the arena's chunk must be
    populated as a huge page when it is made, not as 4 KB pages that khugepaged
    collapses later while the audio thread runs on them (a page fault on the
    real-time thread and a wait for the 2 MB copy: bench/jackd.py showed 1-2
    rt_thread_faults a minute and /proc/vmstat thp_collapse_alloc rising). The
    chunk was mapped writable, so locked memory was populated before the
    MADV_HUGEPAGE hint: AnonHugePages 0 kB."""
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.exists() or "[never]" in thp.read_text():
        pytest.skip("transparent huge pages are off on this kernel")
    r = subprocess.run([sys.executable, "-c", _LOCKED_ARENA], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    if r.stdout.startswith("SKIP"):
        pytest.skip(r.stdout.strip())
    kb = int(r.stdout.split("HUGE_KB")[1].split()[0])
    assert kb == 2048, f"AnonHugePages {kb} kB in the arena's chunk (no huge page: {r.stdout})"


def test_render_hash_of_mix64_on_a_64_frame_layout():
    """mix64 at 16 channels, one second in 64-frame calls: the hash main's
    commits quote (made before the layout changed: buffers of 512 frames,
    node blocks from malloc), with the plan laid out for 64 frames and the
    node blocks from the arena; since the eq's sections became float
    state-variable filters (branch svf) the samples are new: a0fd0b0f before)."""
    out = _render(64, 64, channels=16, frames=RATE)
    assert hashlib.sha256(out.tobytes()).hexdigest()[:8] == "642a678a"
