"""Session.next_due: the earliest sample time of deferred work (timers, fading
removed connections, removed nodes) read from heaps (server/dues.py,
server/timers.py), not by scanning every removal in flight."""

from __future__ import annotations

import random
import time


def _brute(s) -> int | None:
    """The definition: the least deadline any table or timer holds."""
    dues = [*s.dying_edges.values(), *s._dying_due.values()]
    if s.timers._heap:
        dues.append(min(t for t, _, _ in s.timers._heap))
    return min(dues) if dues else None


def test_next_due_is_the_earliest_deadline_through_removals_and_timers(sessions):
    # a seeded mix of removals (connections and nodes, fades pushed and
    # extended), timers and blocks run (removals collected as they end); after
    # every step next_due equals the least deadline of the tables and timers
    s, e = sessions(0, 2)
    s.add_node("output", "out", {"channels": 2})
    n = 60
    for i in range(n):
        s.add_node("gain", f"g{i}", {"channels": 2})
        s.connect(f"g{i}", "out")
        if i % 3 == 0 and i:
            s.connect(f"g{i - 1}", f"g{i}")
    s.commit()
    e.process(256, block=64)
    rng = random.Random(7)
    alive = list(range(n))
    seen = set()
    for step in range(400):
        r = rng.random()
        if r < 0.25 and alive:
            i = alive.pop(rng.randrange(len(alive)))
            s.remove_node(f"g{i}")
        elif r < 0.4 and alive:
            i = rng.choice(alive)
            if (f"g{i}", "out") in {(c.src, c.dst) for c in s.graph.conns}:
                s.disconnect(f"g{i}", "out")
            else:
                s.connect(f"g{i}", "out")
        elif r < 0.6:
            s.at(e.time + rng.randrange(1, 5000), lambda: None)
        elif r < 0.8:
            s.commit()  # pushes fades: their deadlines move later
        else:
            e.process(64 * rng.randrange(1, 30), block=64)
            s.service()
        assert s.next_due() == _brute(s), step
        seen.add(len(s.dying_edges) > 0)
    assert seen == {True, False}  # removals were in flight, and all ended at times
    heap = s.dues._heap
    assert len(heap) <= 2 * (len(s.dying_edges) + len(s._dying_due)) + 64


def test_next_due_does_not_scan_the_removals(sessions):
    # 10,000 connections fading out: 20,000 calls of next_due (an offline render
    # asks before every chunk) took seconds when each scanned every deadline;
    # a generous bound against that, not a speed figure
    s, e = sessions(0, 2)
    s.add_node("output", "out", {"channels": 2})
    for i in range(10000):
        s.add_node("gain", f"g{i}", {"channels": 2})
        s.connect(f"g{i}", "out")
    s.commit()
    e.process(128, block=64)
    for i in range(10000):
        s.disconnect(f"g{i}", "out")
    assert len(s.dying_edges) == 10000
    want = _brute(s)
    t0 = time.process_time()
    for _ in range(20000):
        assert s.next_due() == want
    assert time.process_time() - t0 < 1.0
