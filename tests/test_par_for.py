"""mg_par_for (csrc/workers.c): a node's independent parts (the master
limiter's per-channel true-peak detectors) shared with an audio thread that
is idle in the same cycle. Every part must run exactly once, and all of them
before mg_par_for returns: the caller reads their results next.

The first form of the protocol (eb62774) broke that about one live run in
seven (a helper claimed a part of no job between two jobs and counted it in
the next one, whose owner returned before its own helper's part was written:
limiter.c read a detector result as NULL). Both tests run in a child process,
so such a crash fails the test instead of ending the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"

# The protocol alone, mg_par_for_selftest: a helper thread that only helps,
# and this one opening jobs of 1 .. 8 parts (a different count from job to job,
# as between an engine's first job and the last one: the old hole) until the
# helper has run enough parts or the time is up.
PROTOCOL = """
import time
from mixgraph.server._core import ffi, lib
h = ffi.new("uint64_t *")
helped = bad = runs = 0
t0 = time.monotonic()
while helped < 20000 and time.monotonic() - t0 < 60:
    b = lib.mg_par_for_selftest(20000, 8, runs, h)
    assert b >= 0, "the self-test could not start"
    bad += b
    helped += h[0]
    runs += 1
print(runs, bad, helped)
"""

# The crash's reproducer: engines made, run live on the null clock with a
# worker, edited and freed, one after the other. A crash is most likely in an
# engine's first jobs, so many short runs: {runs} of them, and more (up to 300 s)
# until the worker has helped in one (a loaded host can keep the cycles on the
# audio thread, or the worker off the CPU, for {runs} runs of 0.1 s).
LIVE = """
import sys, time
sys.path.insert(0, {bench!r})
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session
from mix64 import build_mix64
helped = 0
i = 0
t_end = time.monotonic() + 300
while i < {runs} or (helped == 0 and time.monotonic() < t_end):
    i += 1
    e = Engine(48000, 0, 2, threads=2)
    s = Session(e)
    try:
        build_mix64(s, 16)
        e.null_start(64)
        time.sleep(0.1)
        deadline = time.monotonic() + 30  # a block, however late the clock thread runs
        while e.stats().blocks == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        s.set_param("fader0", "gain", -20.0)
        s.service()
        e.null_stop()
        st = e.stats()
        assert st.blocks > 0 and st.rt_allocs == 0, (i, st.blocks, st.rt_allocs)
        helped += sum(t["helped"] for t in e.par_stats())
    finally:
        s.close()
        e.free()
print(helped)
"""


def test_par_for_protocol_runs_every_part_once_before_returning():
    """Every part of every job ran exactly once when mg_par_for returned, and
    never again; no part beyond a job's count ran. Fails on eb62774's
    protocol (130-180 bad jobs in 20,000 parts the helper ran, 3 of 3 runs);
    the helper must have run parts, or the test proved nothing."""
    r = subprocess.run([sys.executable, "-c", PROTOCOL], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, f"the self-test died ({r.returncode}): {r.stderr[-2000:]}"
    runs, bad, helped = map(int, r.stdout.split())
    assert bad == 0, f"{bad} jobs with a part not run exactly once ({runs} runs, {helped} helped)"
    assert helped >= 2000, f"the helper ran only {helped} parts: the protocol was not exercised"


def test_live_null_clock_with_workers_many_engines():
    """50 engines, each run live on the null clock on 2 threads, edited,
    stopped and freed: none crashes, none allocates on an audio thread, and
    the worker helped the master limiter's detectors in some of them."""
    r = subprocess.run([sys.executable, "-c", LIVE.format(bench=str(BENCH), runs=50)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the live loop died ({r.returncode}): {r.stderr[-2000:]}"
    assert int(r.stdout.split()[-1]) > 0, "no detector part ran on the other thread"
