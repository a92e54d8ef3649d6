"""The plan's step order (csrc/plan.c, build: Kahn's waves, gang types waiting for
more of their type) against a direct Python transcription of the rule as
documented there, on random graphs: the C keeps waiting nodes in per-type lists
so a wave does not rescan them (bench/plan_build.py), and must order exactly as
the plain rule does."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from mixgraph.server import planner
from mixgraph.server._core import lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

NODES = Path(__file__).resolve().parent.parent / "nodes"


def gang_types() -> set[str]:
    """The node types with a process_many (read from nodes/*.c: a type's struct
    names it and sets .process_many)."""
    out = set()
    for f in NODES.glob("*.c"):
        for block in re.findall(r"=\s*\{([^{}]*)\}", f.read_text()):
            m = re.search(r'\.name\s*=\s*"(\w+)"', block)
            if m and ".process_many" in block:
                out.add(m.group(1))
    return out


def reference_order(n: int, rank: list[int], gang: list[bool],
                    edges: list[tuple[int, int]]) -> list[int]:
    """The rule, plainly: each wave the ready nodes sorted stably by rank; a node
    goes unless its type gangs and fewer of its type are ready than are left to
    place; when none goes, the rank with most ready gang nodes (the lowest on a
    tie) goes whole; a wave holding a node that waited is sorted by node index,
    then stably by rank."""
    indeg = [0] * n
    out: list[list[int]] = [[] for _ in range(n)]
    for s, d in edges:
        out[s].append(d)
        indeg[d] += 1
    left: dict[int, int] = {}
    for v in range(n):
        left[rank[v]] = left.get(rank[v], 0) + gang[v]
    ready = [v for v in range(n) if indeg[v] == 0]
    waited: set[int] = set()
    order: list[int] = []
    while ready:
        ready.sort(key=lambda v: rank[v])
        nready: dict[int, int] = {}
        for v in ready:
            if gang[v]:
                nready[rank[v]] = nready.get(rank[v], 0) + 1
        wave = [v for v in ready if not gang[v] or nready[rank[v]] == left[rank[v]]]
        if not wave:
            most = max(nready.values())
            best = min(r for r, k in nready.items() if k == most)
            wave = [v for v in ready if rank[v] == best]
        wait = [v for v in ready if v not in wave]
        if any(v in waited for v in wave):
            wave = sorted(sorted(wave), key=lambda v: rank[v])
        waited.update(wait)
        for v in wave:
            left[rank[v]] -= gang[v]
        order += wave
        ready = wait
        for v in wave:
            for u in out[v]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    ready.append(u)
    return order


MONO = ["gain", "eq", "compressor", "gate", "delay", "eq8"]


@pytest.mark.parametrize("seed", range(12))
def test_wave_order_matches_the_rule(seed):
    rng = random.Random(seed)
    gangs = gang_types()
    assert {"eq", "compressor"} <= gangs, gangs
    e = Engine(48000, 1, 1)
    s = Session(e)
    try:
        names, types, edges = [], [], []

        def add(t: str, name: str) -> None:
            s.add_node(t, name, {"channels": 1})
            names.append(name)
            types.append(t)

        add("input", "in")
        n_strips = rng.randint(3, 24)
        for k in range(n_strips):  # strips of random length and types, heads staggered
            prev = 0
            for i in range(rng.randint(1, 7)):
                add(rng.choice(MONO), f"s{k}_{i}")
                edges.append((prev, len(names) - 1))
                prev = len(names) - 1
            if rng.random() < 0.3 and len(names) > 3:  # a side input from an earlier node
                j = rng.randrange(1, len(names) - 1)
                if (j, len(names) - 1) not in edges and j != prev:
                    edges.append((j, len(names) - 1))
            edges.append((prev, -1))  # into the output, added last
        if rng.random() < 0.5:
            add("noise", "nz")  # a source of a gang type
            edges.append((len(names) - 1, -1))
        add("output", "out")
        edges = [(a, len(names) - 1 if b == -1 else b) for a, b in edges]
        for a, b in edges:
            s.connect(names[a], names[b])
        s.commit()
        c = planner.build(s.refs)
        got = [s.refs.nodes[lib.mg_pin_step_node(s.refs.pin, k)].g.name
               for k in range(len(names))]
        planner.drop(c.record)
        rank = [planner.TYPE_RANK[t] for t in types]
        want = [names[v] for v in reference_order(len(names), rank,
                                                  [t in gangs for t in types], edges)]
        assert got == want
    finally:
        s.close()
        e.free()
