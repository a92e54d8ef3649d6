"""Big graphs stay cheap to edit (issue 13, "Scale"): an edit's work does not grow
with the graph, and a burst of edits becomes one plan per batch, not one each.

Counted, not timed: the work of one edit is the number of Python and C calls it
makes (sys.setprofile), which is the same on every machine. bench/scale.py has
the times."""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np

from mixgraph.clients import Client
from mixgraph.clients.protocol import encode
from mixgraph.server import planner
from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import CMD_EDGE, Engine
from mixgraph.server.graph import port_base
from mixgraph.server.session import Session

from daemon_util import Daemon


def _calls(fn) -> int:
    n = 0

    def prof(frame, event, arg):
        nonlocal n
        if event in ("call", "c_call"):
            n += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n


def _graph(n: int, vca: bool, bypass: bool) -> Session:
    """n channel strips (gain -> pan -> fader) into a bus and an output."""
    s = Session(Engine(48000, 0, 2))
    s.add_node("bus", "mix", {"channels": 2})
    s.add_node("output", "out", {"channels": 2})
    s.connect("mix", "out")
    for i in range(n):
        s.add_node("gain", f"t{i}")
        s.add_node("pan", f"p{i}")
        s.add_node("gain", f"f{i}", {"channels": 2})
        s.connect(f"t{i}", f"p{i}")
        s.connect(f"p{i}", f"f{i}")
        s.connect(f"f{i}", "mix")
    if vca:
        s.add_node("vca", "v", {"members": "f0,f1"})
    if bypass:
        s.set_bypass("t0", True)
    s.commit()
    return s


def _edit_cost(n: int, vca: bool, bypass: bool) -> list[int]:
    s = _graph(n, vca, bypass)
    costs = [
        _calls(lambda: s.add_node("gain", "new", {"channels": 2})),
        _calls(lambda: s.connect("new", "mix")),
        _calls(lambda: s.disconnect("new", "mix")),
        _calls(lambda: s.set_param("f3", "gain", -3.0)),
        _calls(lambda: s.remove_node("new")),
    ]
    s.close()
    s.engine.free()
    return costs


def test_an_edit_costs_the_same_on_a_small_and_a_big_graph():
    """Adding, connecting, disconnecting and removing a node on a graph of 200
    strips and of 1,600 (with a VCA and a bypassed node in both) makes the same
    number of calls: no edit walks the whole graph (on the old code, adds and
    connects did: the VCA offsets, the bypass targets, the cycle check)."""
    for vca, bypass in ((False, False), (True, True)):
        small = _edit_cost(200, vca, bypass)
        big = _edit_cost(1600, vca, bypass)
        for what, a, b in zip(("add", "connect", "disconnect", "set", "remove"), small, big,
                              strict=True):
            assert b <= a * 1.05 + 10, (what, vca, bypass, a, b)


def test_a_burst_of_edits_is_one_plan_per_batch(tmp_path):
    """300 adds sent at once over TCP: every one is answered /done and is in the
    graph, and the daemon builds far fewer plans than edits."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        before = d.status()["plans"]
        c = Client("127.0.0.1", d.port, timeout=30.0, transport="tcp")
        try:
            c.send_many([encode("/graph/add", ["gain", f"g{i}"]) for i in range(300)])
            done = 0
            while done < 300:
                addr, args = c.receive(timeout=30)
                assert addr != "/fail", args
                done += addr == "/done" and args[:1] == ["/graph/add"]
            assert c.request("/sync", 7)[1] == [7]
        finally:
            c.close()
        st = d.status()
        assert st["nodes"] == 300
        assert 1 <= st["plans"] - before <= 300 // 4, st["plans"] - before
    finally:
        d.stop()


def test_a_commit_makes_as_many_calls_on_a_small_and_a_big_graph():
    """The plan after a connect (and after a disconnect) is built with the same
    number of Python and C calls on 200 strips as on 1,600: no call per node or
    connection (on the old code, the planner made several per node and per
    connection: a reference each, a step each, a mix operation each)."""
    def cost(n: int) -> list[int]:
        s = _graph(n, vca=True, bypass=True)
        s.add_node("output", "o2", {"channels": 2})
        s.commit()
        s.connect("f3", "o2")
        a = _calls(s.commit)
        s.disconnect("f3", "o2")
        b = _calls(s.commit)
        s.close()
        s.engine.free()
        return [a, b]

    small, big = cost(200), cost(1600)
    for a, b in zip(small, big, strict=True):
        assert b <= a + 10, (small, big)


def _dc_chain(n: int) -> tuple[Session, Engine]:
    """Hardware input 1 (fed 1.0) -> n gains at 0 dB -> hardware output 1, playing."""
    e = Engine(48000, 1, 1)
    s = Session(e)
    s.add_node("input", "in", {"channels": 1})
    prev = "in"
    for i in range(n):
        s.add_node("gain", f"g{i}")
        s.connect(prev, f"g{i}")
        prev = f"g{i}"
    s.add_node("output", "out", {"channels": 1})
    s.connect(prev, "out")
    s.commit()
    e.process(256, np.ones((256, 1), np.float32), block=64)
    s.service()
    return s, e


def test_clearing_a_chain_fades_only_what_reaches_the_output():
    """Removing every node of a 20-gain chain (in /graph/clear's order, first
    made first) fades the output out along one 5 ms linear ramp, 1 - k/240 at
    sample k (FADE_MS at 48 kHz), to silence: the connections between removed
    nodes keep their gain and leave with their nodes, and only the connection
    into the output fades (one fade command however long the chain). On the old
    code every connection faded at once: the output fell as (1 - k/240)^21,
    to a tenth in 24 samples, a click, and a 10,000-node clear cost the
    audio thread 10,000 fades (2-4 ms blocks)."""
    s, e = _dc_chain(20)
    fades = 0
    push = e.push

    def counting_push(kind, *args):
        nonlocal fades
        fades += kind == CMD_EDGE
        return push(kind, *args)

    e.push = counting_push
    for name in list(s.graph.nodes):
        s.remove_node(name)
    s.commit()
    y = []
    for _ in range(40):
        y.append(e.process(64, np.ones((64, 1), np.float32), block=64)[:, 0])
        s.service()
    y = np.concatenate(y)
    k = np.arange(len(y))
    ramp = np.clip(1.0 - (k + 1) / 240.0, 0.0, 1.0)  # the edge gain after sample k
    assert fades == 1
    assert np.max(np.abs(y - ramp)) < 1e-4, np.max(np.abs(y - ramp))
    assert s.idle() and not s.live and not s.refs.owners  # everything freed
    s.close()
    e.free()


def _python_bytes(fn) -> int:
    """Peak bytes the Python allocator hands out while fn runs (tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_connect_and_its_plan_list_nothing_per_node_in_python():
    """A connect, its plan, the block that takes it and the service that frees
    the old plan, then the disconnect, its fade and the frees after it: the
    Python memory all that needs is the same on 200 strips as on 1,600, so no
    step of it lists the graph. On the old code each plan listed every node and
    connection in Python (an index of the nodes, arrays of pointers, a reference
    count per object: ~2 MB more at 1,600 strips); now the plan's inputs are
    kept in C per edit (mg_pin) and references are counted per plan generation
    (live.Refs)."""
    def cost(n: int) -> int:
        s = _graph(n, vca=True, bypass=True)
        e = s.engine
        s.add_node("output", "o2", {"channels": 2})
        s.commit()
        for _ in range(3):
            e.process(64, block=64)
            s.service()

        def edit() -> None:
            s.connect("f3", "o2")
            s.commit()
            for _ in range(3):
                e.process(64, block=64)
                s.service()
            s.disconnect("f3", "o2")
            s.commit()
            for _ in range(40):  # the fade, its end, the plan without the edge
                e.process(64, block=64)
                s.service()
                if s.idle():
                    break
            assert s.idle()

        edit()  # warm: whatever is made once
        used = _python_bytes(edit)
        s.close()
        e.free()
        return used

    small, big = cost(200), cost(1600)
    assert big <= small + 16384, (small, big)


def _listed_plan(s: Session):
    """The plan the old planner built: every node and connection listed from the
    session's own collections (live then dying nodes; connections, bypass
    stand-ins, then fading ones), handed to mg_plan_build as arrays."""
    nodes = list(s.live.values()) + [n for n in s.dying_nodes if not n.dead]
    edges = list(s.edges.values()) + list(s.bypass_edges.values())
    edges += [e for e in s.dying_edges if not e.dead]
    index = {n: i for i, n in enumerate(nodes)}
    edges = [e for e in edges if e.src in index and e.dst in index]
    groups = list(dict.fromkeys(e.group for e in edges if e.group is not None))
    gi = {g: i for i, g in enumerate(groups)}
    new = ffi.new
    plan = lib.mg_plan_build(
        len(nodes), new("mg_node *[]", [n.ptr for n in nodes]),
        new("int[]", [planner.TYPE_RANK[n.g.type.name] for n in nodes]),
        max(1, len(planner.TYPE_RANK)), len(edges),
        new("int[]", [index[e.src] for e in edges]), new("int[]", [index[e.dst] for e in edges]),
        new("mg_edge *[]", [e.ptr for e in edges]),
        new("int[]", [gi.get(e.group, -1) for e in edges]),
        new("int[]", [w for e in edges for w in e.wiring]), len(groups),
        new("mg_dgroup *[]", [g.ptr for g in groups]),
        new("int[]", [port_base(g.dst.g, g.port, "in")[0] for g in groups]),
        new("int[]", len(nodes) + 1), new("int *"))
    assert plan != ffi.NULL
    return plan


def test_the_kept_plan_inputs_build_the_plan_the_session_lists():
    """The plan built from the inputs kept in C (mg_pin) equals, step for step
    and operation for operation, the plan built from the session's collections
    listed whole (the old planner), through removals that still fade, bypass
    stand-ins, latency compensation that replaces connections, and a clear:
    summing order included, so renders stay bit-identical."""
    e = Engine(48000, 1, 2)
    s = Session(e)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("bus", "mix", {"channels": 2})
    s.add_node("output", "out", {"channels": 2})
    s.connect("mix", "out")
    for i in range(6):
        s.add_node("gain", f"t{i}")
        s.add_node("pan", f"p{i}")
        s.connect("in", f"t{i}")
        s.connect(f"t{i}", f"p{i}")
        s.connect(f"p{i}", "mix")
    checked = 0

    def check() -> None:
        nonlocal checked
        rec = planner.build(s.refs).record
        old = _listed_plan(s)
        try:
            assert lib.mg_plan_same(rec.ptr, old) == 1
        finally:
            lib.mg_plan_free(rec.ptr)
            lib.mg_plan_free(old)
        checked += 1

    def run(blocks: int) -> None:
        for _ in range(blocks):
            e.process(64, np.ones((64, 1), np.float32), block=64)
            s.service()
            check()

    s.commit()
    run(2)
    s.remove_node("t1")  # fades out, still in the plan while it does
    s.connect("in", "p1")
    s.commit()
    run(1)
    assert s.dying_nodes
    run(6)
    s.set_bypass("t3", True)  # a stand-in in/ -> p3
    s.commit()
    run(2)
    assert s.bypass_edges
    s.add_node("limiter", "lim", {"channels": 2, "lookahead": 2.0})  # latency:
    s.connect("p4", "lim")  # the other paths into mix are replaced by delayed ones
    s.connect("lim", "mix")
    s.commit()
    run(2)
    assert s.groups and s.dying_edges
    run(8)
    s.set_bypass("t3", False)
    s.remove_node("p0")
    s.commit()
    run(8)
    for name in list(s.graph.nodes):
        s.remove_node(name)
    s.commit()
    for _ in range(20):
        run(1)
        if s.idle() and not s.refs.owners:
            break
    assert s.idle() and not s.refs.owners and checked > 30
    s.close()
    e.free()


def _lines_in(fn, filename: str) -> int:
    """Python lines run in `filename` while fn runs (sys.settrace)."""
    n = 0

    def local(frame, event, arg):
        nonlocal n
        n += event == "line"
        return local

    def glob(frame, event, arg):
        return local if frame.f_code.co_filename.endswith(filename) else None

    sys.settrace(glob)
    try:
        fn()
    finally:
        sys.settrace(None)
    return n


def test_a_fading_removal_is_not_walked_at_every_service():
    """While the border of a cleared 400-gain chain fades (5 ms, ~4 blocks),
    the removal is walked (retire.collect's pass over every dying node and
    connection) only when something may be over: calling service() ten times a
    block instead of twice runs about as many lines of server/retire.py, and
    the passes are as few for 50 gains as for 400. On the old code every
    service() walked all of it (a 10,000-node clear: 20,000 objects, ~10 ms of
    control thread at every call), so five times the calls ran five times the
    lines."""
    def run(n: int, per_block: int) -> tuple[int, int]:
        s, e = _dc_chain(n)
        for name in list(s.graph.nodes):
            s.remove_node(name)
        s.commit()

        def until_idle() -> None:
            for _ in range(100):
                e.process(64, np.ones((64, 1), np.float32), block=64)
                for _ in range(per_block):  # a control loop turns more often than blocks come
                    s.service()
                if s.idle() and not s.refs.owners:
                    return
            raise AssertionError("never idle")

        lines = _lines_in(until_idle, "retire.py")
        walks = getattr(s, "retire_walks", None)
        s.close()
        e.free()
        return lines, walks

    (few, _), (many, walks_big) = run(400, 2), run(400, 10)
    assert many <= few * 1.25 + 200, (few, many)
    assert run(50, 10)[1] == walks_big <= 8, walks_big


def test_a_big_removal_is_freed_a_batch_per_service(monkeypatch):
    """Clearing a 300-gain chain frees its ~600 nodes and connections at most
    live.FREE_BATCH per service() call (here 100), so one call never stalls the
    control thread on all of them, and all of them are freed in the end. On the
    old code the service() that got the last plan back freed every one."""
    from mixgraph.server import live

    monkeypatch.setattr(live, "FREE_BATCH", 100, raising=False)
    s, e = _dc_chain(300)
    for name in list(s.graph.nodes):
        s.remove_node(name)
    s.commit()
    owned = [len(s.refs.owners)]
    for _ in range(200):
        e.process(64, np.ones((64, 1), np.float32), block=64)
        s.service()
        owned.append(len(s.refs.owners))
        if s.idle() and not s.refs.owners:
            break
    freed = [a - b for a, b in zip(owned[:-1], owned[1:], strict=True)]
    assert owned[0] >= 600 and owned[-1] == 0, owned
    assert max(freed) <= 100 and sum(f > 0 for f in freed) >= 6, freed
    s.close()
    e.free()


def test_the_engine_says_what_a_plan_swap_cost():
    """The engine reports, apart from its worst block, the block that swapped in
    a plan and the part of it the swap took, and the work of the last swap: a
    swap visits every step, every edge of the plan (apply_plan stamps them and
    lists the fading ones) and then every op and step again (refresh_ops), so
    a chain of 3 mono gains into a mono output (4 steps, 3 edges, 3 ops) is
    4 + 3 + 3 + 4 = 14. A block without a swap leaves the swap figures alone,
    and so does taking the window's worst (they count from the start; the last
    swap's are apart)."""
    e = Engine(48000, 0, 1)
    s = Session(e)
    prev = None
    for i in range(3):
        s.add_node("gain", f"g{i}", {"channels": 1})
        if prev:
            s.connect(prev, f"g{i}")
        prev = f"g{i}"
    s.add_node("output", "out", {"channels": 1})
    s.connect(prev, "out")
    s.commit()
    e.take_worst_us()
    e.process(64, block=64)
    st = e.stats()
    assert st.swap_work == 14, st.swap_work
    assert 0.0 < st.worst_swap_us <= st.worst_swap_block_us <= st.worst_us, st
    assert (st.last_swap_us, st.last_swap_block_us) == (st.worst_swap_us,
                                                        st.worst_swap_block_us)
    e.take_worst_us()
    e.process(64, block=64)  # no swap: the figures stay those of the last swap
    st2 = e.stats()
    assert (st2.worst_swap_us, st2.worst_swap_block_us, st2.last_swap_us) == (
        st.worst_swap_us, st.worst_swap_block_us, st.last_swap_us)
    s.close()
    e.free()


def test_status_reports_the_worst_block_that_swapped_a_plan(tmp_path):
    """/status has worst_swap_us: the slowest block that swapped in a plan, which
    a connect on a running daemon makes, at most the worst block of all."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        c = Client("127.0.0.1", d.port, timeout=30.0)
        try:
            c.call("/graph/add", "gain", "a")
            c.call("/graph/add", "output", "o")
            c.call("/graph/connect", "a", "o")
            assert c.request("/sync", 3)[1] == [3]
        finally:
            c.close()
        st = d.status()
        assert 0.0 < st["worst_swap_us"] <= st["worst_us"], st
    finally:
        d.stop()


def _chain_doc(n: int) -> dict:
    nodes = [{"name": "in", "type": "input", "channels": 1},
             {"name": "out", "type": "output", "channels": 1}]
    nodes += [{"name": f"g{i}", "type": "gain", "channels": 1, "params": {"gain": -0.01}}
              for i in range(n)]
    conns = [["in", "g0"]] + [[f"g{i}", f"g{i + 1}"] for i in range(n - 1)] + [
        [f"g{n - 1}", "out"]]
    return {"format": "mixgraph-patch", "version": 1, "nodes": nodes, "connections": conns}


def _load_running(n: int, batch: int, monkeypatch) -> tuple[Session, list[np.ndarray], dict]:
    """A chain of n gains loaded into a running engine with admit.ADMIT_BATCH =
    batch; 120 blocks of a 440 Hz input, each block's output kept, and what
    each plan swap brought in."""
    from mixgraph.server import admit
    monkeypatch.setattr(admit, "ADMIT_BATCH", batch)
    e = Engine(48000, 1, 1)
    s = Session(e)
    t = np.arange(120 * 64) / 48000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(-1, 1)
    outs, seen = [], {"plans": [], "synced_waiting": None}
    e.process(64, x[:64], block=64)  # the engine runs: a load now is an edit of a live graph
    s.service()
    seen["before"] = s.plans_built
    s.load_doc(_chain_doc(n))
    s.sync(7, lambda: seen.__setitem__("synced_waiting", len(s.refs.waiting)))
    for b in range(1, 120):
        waiting = len(s.refs.waiting)
        s.service()
        if s.plans_built and (not seen["plans"] or seen["plans"][-1][0] != s.plans_built):
            seen["plans"].append((s.plans_built, waiting - len(s.refs.waiting)))
        outs.append(e.process(64, x[b * 64:(b + 1) * 64], block=64).copy())
    return s, outs, seen


def test_a_big_load_joins_a_running_engine_in_batches(monkeypatch):
    """Loading 1,300 nodes into a running engine brings at most ADMIT_BATCH new
    nodes into each plan (the block that swaps one in runs each of them for the
    first time: at 10,000 nodes in one plan that block was three times over
    budget); /sync answers only once all have joined; the plan then is the one
    a single commit builds (the session's collections listed whole); and the
    output, once the last fade is over, is the output of the load in one plan,
    sample for sample (gains have no state: what differs is only when each
    batch's connections faded in). On the old code the load was one plan of
    1,300 new nodes."""
    s, outs, seen = _load_running(1300, 500, monkeypatch)
    assert not s.refs.waiting and not s.admission.queue
    assert s.plans_built - seen["before"] == 3, seen  # 1,302 new nodes: 500, 500, 302
    assert all(joined <= 500 for _, joined in seen["plans"]), seen
    assert seen["synced_waiting"] == 0
    rec = planner.build(s.refs).record
    old = _listed_plan(s)
    try:
        assert lib.mg_plan_same(rec.ptr, old) == 1
    finally:
        lib.mg_plan_free(rec.ptr)
        lib.mg_plan_free(old)
    one, outs1, seen1 = _load_running(1300, 100000, monkeypatch)
    assert one.plans_built - seen1["before"] == 1
    a, b = np.concatenate(outs[-40:]), np.concatenate(outs1[-40:])
    assert np.max(np.abs(b)) > 0.1  # the chain is heard (-13 dB of 0.5)
    assert np.array_equal(a, b)
    for sess in (s, one):
        sess.close()
        sess.engine.free()
