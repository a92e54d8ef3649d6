"""A burst of parameter sets against the engine's bound on sets per block
(mg_engine_set_cap_sets): the longest block and the blocks it takes.

    python bench/set_burst.py [--sets 4096] [--rounds 15] [--node eq8] [--nodes 64]

In one process: `--nodes` nodes of one type in a plan; `--sets` "now" sets of
their parameters queued at once (what a control thread that paused under a
flood pushes when it resumes, or a scene recall sent as plain sets), then
64-frame blocks until every set is applied. Rounds alternate the cap off (0,
offline renders) and on (MG_SET_CAP_LIVE), on one core; printed per setting:
the median over rounds of the longest block's wall time, of the burst's
blocks, and of a quiet block's time."""

from __future__ import annotations

import argparse
import os
import statistics
import time

from mixgraph.server._core import lib
from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

SR = 48000
BLOCK = 64


def one(node: str, nodes: int, sets: int, cap: int) -> tuple[float, int, float]:
    """(longest block µs, blocks until the burst is applied, a quiet block µs)."""
    e = Engine(SR, 0, 2, block=BLOCK)
    e.cap_sets(cap)
    s = Session(e)
    for i in range(nodes):
        s.add_node(node, f"n{i}", {})
    s.commit()
    for _ in range(20):
        e.process(BLOCK)
    t = time.perf_counter()
    e.process(BLOCK)
    quiet = (time.perf_counter() - t) * 1e6
    params = [p for p in CATALOG[node].params if p.taper != "stepped"
              and p.min < p.max][:8] or CATALOG[node].params[:1]
    last = {}
    for k in range(sets):
        p = params[k % len(params)]
        v = p.min + (p.max - p.min) * ((k * 37) % 101) / 100.0
        name = f"n{k % nodes}"
        s.set_param(name, p.name, v)
        last[(name, p.index)] = v
    worst = 0.0
    blocks = 0
    while True:
        t = time.perf_counter()
        e.process(BLOCK)
        worst = max(worst, (time.perf_counter() - t) * 1e6)
        blocks += 1
        if all(abs(lib.mg_node_param_target(s.live[n].ptr, i) - v) <= 1e-4 * max(1.0, abs(v))
               for (n, i), v in last.items()) or blocks > 10000:
            break
    s.close()
    e.free()
    return worst, blocks, quiet


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--node", default="eq8")
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1)
    a = ap.parse_args()
    if a.cpu >= 0:
        os.sched_setaffinity(0, {a.cpu})
    caps = [0, int(lib.MG_SET_CAP_LIVE)]
    res: dict[int, list] = {c: [] for c in caps}
    print(f"# {a.sets} sets over {a.nodes} {a.node}, load average {os.getloadavg()[0]:.1f}")
    for r in range(a.rounds):
        for cap in (caps if r % 2 == 0 else caps[::-1]):
            res[cap].append(one(a.node, a.nodes, a.sets, cap))
    for cap, rows in res.items():
        worst = statistics.median(x[0] for x in rows)
        print(f"cap {cap or 'off'}: longest block median {worst:.0f}"
              f" µs (range {min(x[0] for x in rows):.0f}-{max(x[0] for x in rows):.0f}), blocks to "
              f"apply the burst {statistics.median(x[1] for x in rows):g}, a quiet block "
              f"{statistics.median(x[2] for x in rows):.0f} µs")
    print(f"# load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
