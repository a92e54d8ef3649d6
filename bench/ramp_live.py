"""attack4's A11 reproducer, live: a `mixgraph serve` daemon on the null
backend with N eq8 (default 400), two scenes that differ in all eight band
gains and band 1's frequency of every eq8 (9 N values), and a scene fade of
--fade seconds (5) between them: the xruns of /status over an idle window of
the same length, then over the fade, and the daemon's worst block.

    python bench/ramp_live.py [--nodes 400] [--fade 5] [--rounds 2]

The audio thread runs the installed core (server/_core.abi3.so): to compare
builds, run it once with each in place.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
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
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp) / "state", "--backend", "null")
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
                time.sleep(a.fade + 0.5)
                st = d.status()
                idle = st["xruns"] - x0
                x0 = st["xruns"]
                d.call("/scene/recall", "flat" if r % 2 == 0 else "shaped", a.fade)
                time.sleep(a.fade + 0.5)
                st = d.status()
                print(f"{a.nodes} eq8, {9 * a.nodes} ramps, a {a.fade:g} s scene fade: xruns "
                      f"idle {idle} (in {a.fade + 0.5:g} s), during the fade {st['xruns'] - x0}; "
                      f"worst block {st['worst_us']:.0f} µs of {st['budget_us']:.0f}, "
                      f"load {st['load']}", flush=True)
        finally:
            d.stop()


if __name__ == "__main__":
    main()
