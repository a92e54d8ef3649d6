"""What building one engine plan costs the control thread on big graphs.

    python bench/plan_build.py [--nodes 4096] [--rounds 9] [--core A.so]

planner.build (mg_pin_build + mg_plan_build: Kahn's waves with the gang
ordering, the mix ops, buffers, gangs, folds) on graphs of --nodes nodes (the
daemon's --max-nodes cap is 4096), in this process: thread CPU time of each
build, median and worst of --rounds (plans dropped, never pushed). Shapes:

- chain: input -> gain x (N-2) -> output;
- chain-eq: input -> eq x (N-2) -> output (a gang type one node per wave);
- strips: input -> (gain -> eq -> compressor) x (N-2)/3 in parallel -> output;
- late: (N-2)/2 strips input -> eq -> output beside one input -> gain x (N-2)/2
  -> eq -> output: every equaliser but the last waits (a gang type with more of
  it to come) through the whole long strip, the worst case of the wave order;
- fan: input -> gain x (N-2) in parallel -> output (one input summing N-2 ops).

--core loads that build of the C core as mixgraph.server._core (an A/B: copy
server/_core.abi3.so aside before rebuilding). Figures, not assertions: a build
that grows faster than the node count shows as a per-node cost that grows with N
(try --nodes 1024, 2048, 4096).
"""

from __future__ import annotations

import argparse
import statistics
import time


def shape(s, kind: str, n: int) -> None:
    """Add the nodes and connections of one shape to session s."""
    s.add_node("input", "in", {"channels": 1})
    s.add_node("output", "out", {"channels": 1})
    if kind in ("chain", "chain-eq"):
        t = "gain" if kind == "chain" else "eq"
        prev = "in"
        for i in range(n - 2):
            s.add_node(t, f"n{i}", {"channels": 1})
            s.connect(prev, f"n{i}")
            prev = f"n{i}"
        s.connect(prev, "out")
    elif kind == "strips":
        for k in range((n - 2) // 3):
            prev = "in"
            for t in ("gain", "eq", "compressor"):
                s.add_node(t, f"{t}{k}", {"channels": 1})
                s.connect(prev, f"{t}{k}")
                prev = f"{t}{k}"
            s.connect(prev, "out")
    elif kind == "fan":
        for k in range(n - 2):
            s.add_node("gain", f"g{k}", {"channels": 1})
            s.connect("in", f"g{k}")
            s.connect(f"g{k}", "out")
    elif kind == "late":
        half = (n - 2) // 2
        for k in range(half - 1):
            s.add_node("eq", f"eq{k}", {"channels": 1})
            s.connect("in", f"eq{k}")
            s.connect(f"eq{k}", "out")
        prev = "in"
        for i in range(half):
            s.add_node("gain", f"g{i}", {"channels": 1})
            s.connect(prev, f"g{i}")
            prev = f"g{i}"
        s.add_node("eq", "eqlast", {"channels": 1})
        s.connect(prev, "eqlast")
        s.connect("eqlast", "out")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--shapes", default="chain,chain-eq,strips,late,fan")
    ap.add_argument("--core", help="a build of the C core to load instead of the installed one")
    a = ap.parse_args()
    if a.core:
        from ab_core import load_core  # bench/, beside this script

        load_core(a.core)

    from mixgraph.server import planner
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    for kind in a.shapes.split(","):
        e = Engine(48000, 1, 1)
        s = Session(e)
        shape(s, kind, a.nodes)
        s.commit()
        cpu = []
        for _ in range(a.rounds):
            t = time.thread_time()
            c = planner.build(s.refs)
            cpu.append((time.thread_time() - t) * 1e3)
            planner.drop(c.record)
        n = len(s.graph.nodes)
        med = statistics.median(cpu)
        print(f"{kind:9s} {n:5d} nodes: plan build median {med:.2f} ms, worst "
              f"{max(cpu):.2f} ms CPU ({med * 1e3 / n:.2f} us a node), "
              f"gangs {[g for g in c.gangs if g[1] > 1][:4]}")
        s.close()
        e.free()


if __name__ == "__main__":
    main()
