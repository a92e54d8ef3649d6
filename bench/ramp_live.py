"""attack4's A11 reproducer, live: a `mixgraph serve` daemon on the null
backend with N eq8 (default 400), two scenes that differ in all eight band
gains and band 1's frequency of every eq8 (9 N values), and a scene fade of
--fade seconds (5) between them: the xruns of /status over an idle window of
the same length, then over the fade, and the daemon's worst block.

    python bench/ramp_live.py [--nodes 400] [--fade 5] [--rounds 2] [--trace [--show 12]]

The audio thread runs the installed core (server/_core.abi3.so): to compare
builds, run it once with each in place.

With --trace the daemon records the engine's call trace (mg_engine_call_trace,
started by bench/jack_calls.py's sitecustomize): per call its thread CPU time
and wall time, commands drained, sets/ramps applied, plans swapped. Printed:
the fade's blocks' CPU µs (median, 99th percentile, worst), the worst blocks
with what they did, and the same for the idle window before it. CPU time is
the figure on a loaded machine (wall time counts other engineers' load).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon_util import Daemon  # noqa: E402


def call(d: Daemon, address: str, *args) -> None:
    """d.call, waiting out the daemon's limit on pattern matching per host."""
    from mixgraph.clients.api import MixgraphFail

    for _ in range(50):
        try:
            d.call(address, *args)
            return
        except MixgraphFail as e:
            if "pattern matching" not in str(e):
                raise
            time.sleep(0.3)
    raise RuntimeError(f"{address}: refused 50 times")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=400)
    ap.add_argument("--fade", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--trace", action="store_true", help="the engine's call trace (see above)")
    ap.add_argument("--show", type=int, default=12, help="with --trace: worst blocks printed")
    a = ap.parse_args()
    windows: list[tuple[str, int, int]] = []  # (what, from, to) CLOCK_MONOTONIC ns
    with tempfile.TemporaryDirectory() as tmp:
        env = None
        out = Path(tmp) / "calls.pkl"
        if a.trace:
            from jack_calls import site_env

            env = site_env(Path(tmp), out)
            env["MIXGRAPH_CALL_TRACE_CAP"] = str(int(((a.fade + 0.5) * 2 * a.rounds + 60)
                                                     * 750 + 10000))
        d = Daemon(Path(tmp) / "state", "--backend", "null", env=env)
        try:
            for i in range(a.nodes):
                d.call("/graph/add", "eq8", f"e{i}")
            d.sync()
            call(d, "/scene/store", "flat", "/node/e*/b*")
            for b in range(1, 9):
                call(d, f"/node/e*/b{b}gain", -6.0)
            call(d, "/node/e*/b1freq", 2000.0)
            call(d, "/scene/store", "shaped", "/node/e*/b*")
            d.sync()
            time.sleep(1.0)
            for r in range(a.rounds):
                x0 = d.status()["xruns"]
                t0 = time.monotonic_ns()
                time.sleep(a.fade + 0.5)
                st = d.status()
                idle = st["xruns"] - x0
                x0 = st["xruns"]
                t1 = time.monotonic_ns()
                d.call("/scene/recall", "flat" if r % 2 == 0 else "shaped", a.fade)
                time.sleep(a.fade + 0.5)
                st = d.status()
                windows += [(f"round {r} idle", t0, t1), (f"round {r} fade", t1,
                                                          time.monotonic_ns())]
                print(f"{a.nodes} eq8, {9 * a.nodes} ramps, a {a.fade:g} s scene fade: xruns "
                      f"idle {idle} (in {a.fade + 0.5:g} s), during the fade {st['xruns'] - x0}; "
                      f"worst block {st['worst_us']:.0f} µs of {st['budget_us']:.0f}, "
                      f"load {st['load']}", flush=True)
        finally:
            d.stop()
        if a.trace:
            report(out, windows, a.show)


def report(path: Path, windows: list[tuple[str, int, int]], show: int) -> None:
    """The call trace's blocks in each window: CPU µs (thread time) median, 99th
    percentile and worst, and the `show` worst blocks with their work."""
    import pickle

    import numpy as np

    calls = pickle.loads(path.read_bytes())
    # CALL_FIELDS: start_ns engine_ns drain_ns end_ns cpu_ns cmds applied swaps frames cpu
    for what, t0, t1 in windows:
        w = [c for c in calls if t0 <= c[0] < t1]
        if not w:
            print(f"{what}: no calls traced")
            continue
        cpu = np.array([c[4] for c in w]) / 1e3
        wall = np.array([c[3] for c in w]) / 1e3
        print(f"{what}: {len(w)} blocks, CPU µs median {np.median(cpu):.1f}, "
              f"p99 {np.percentile(cpu, 99):.1f}, worst {cpu.max():.1f}; wall worst "
              f"{wall.max():.1f}; cmds {sum(c[5] for c in w)}, applied {sum(c[6] for c in w)}, "
              f"swaps {sum(c[7] for c in w)}")
        if "fade" not in what:
            continue
        for k in np.argsort(-cpu)[:show]:
            c = w[k]
            print(f"    block {k:4d} (+{(c[0] - t0) / 1e6:7.1f} ms): CPU {c[4] / 1e3:7.1f} µs, "
                  f"wall {c[3] / 1e3:7.1f} (drained at {c[2] / 1e3:.1f}), cmds {c[5]}, "
                  f"applied {c[6]}, swaps {c[7]}")
        first = next((k for k, c in enumerate(w) if c[5]), 0)
        print("    from the first block with commands on, CPU µs (cmds/applied): " + ", ".join(
            f"{c[4] / 1e3:.0f}({c[5]}/{c[6]})" for c in w[first:first + 40]))


if __name__ == "__main__":
    main()
