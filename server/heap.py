"""The daemon's Python heap and the cyclic garbage collector's pauses.

Every Python thread stops while the collector runs, the control thread with it: a
client's fader move waits for it. A full (generation 2) collection traverses every
container object the process holds, and after start-up that is ~35,000 (modules,
functions, classes, the catalog and a 64-channel graph): 10-20 ms of the control
thread's CPU, 60-80 ms on the wall on a loaded 2-core box, measured as the largest
part of the browser round trip's 99th percentile (bench/rt_trace.py). Nearly all of
them live as long as the process, so once the daemon has started they are moved to the
permanent generation (`gc.freeze()`, as long-running Python servers do): collections
then traverse only what was made since, and a full one takes ~0.1 ms of CPU (1.4-4.3 ms
on the wall on the loaded box). The collector's thresholds are left as they are: the
young generations' collections measured 0.03-0.1 ms, and a first threshold of 10,000
instead of 700 did not change the cost of the autosave's snapshot, the control
thread's largest allocation burst.

A frozen object is still freed by reference counting; only a frozen reference cycle
would never be collected. The graph's objects form none (loading a whole document, or
removing nodes, leaves no cyclic garbage), so what is frozen at start-up and later
dropped goes back as before.

Each collection is timed (`gc.callbacks`): /status reports `gc_frozen` (objects frozen
at start-up) and `gc_worst_ms` (the longest collection on any thread since then)."""

from __future__ import annotations

import gc
import time

_state = {"frozen": 0, "worst": 0.0, "t0": 0.0}


def _timer(phase: str, info: dict) -> None:
    """gc.callbacks: the length of each collection (collections do not overlap: the
    collector holds the GIL from start to stop)."""
    if phase == "start":
        _state["t0"] = time.perf_counter()
    else:
        dt = time.perf_counter() - _state["t0"]
        if dt > _state["worst"]:
            _state["worst"] = dt


def settle() -> int:
    """After start-up: collect what start-up left over, then freeze everything alive
    (see the module's docstring) and time the collections from now on. Returns the
    number of objects frozen."""
    gc.collect()
    gc.freeze()
    _state["frozen"] = gc.get_freeze_count()
    _state["worst"] = 0.0
    if _timer not in gc.callbacks:
        gc.callbacks.append(_timer)
    return _state["frozen"]


def status() -> list:
    """/status pairs: gc_frozen, gc_worst_ms."""
    return ["gc_frozen", int(_state["frozen"]),
            "gc_worst_ms", float(round(_state["worst"] * 1e3, 3))]
