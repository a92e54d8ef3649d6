"""Graph rules: names, types, ports, channel counts, summing, cycles, and
that a rejected edit changes nothing (in the model, in the session, in C)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from mixgraph.server.engine import Engine
from mixgraph.server.errors import MixgraphError
from mixgraph.server.graph import Graph
from mixgraph.server.session import Session

SR = 48000


def snapshot(g: Graph):
    return (
        {n: (v.type.name, v.channels, copy.deepcopy(v.options), dict(v.params))
         for n, v in g.nodes.items()},
        list(g.conns),
    )


@pytest.fixture
def graph():
    g = Graph()
    for t, n in [("gain", "a"), ("gain", "b"), ("gain", "c"), ("pan", "p"), ("bus", "bus"),
                 ("output", "out"), ("sine", "osc"), ("meter", "m")]:
        g.add_node(t, n)
    return g


@pytest.fixture
def session():
    e = Engine(SR, 2, 2)
    s = Session(e)
    yield s
    s.close()
    e.free()


# ---- names and types ------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "Kick_1", "ovh-L", "x" * 64, "0"])
def test_good_names(name):
    g = Graph()
    assert g.add_node("gain", name).name == name


@pytest.mark.parametrize(
    "name", ["", "a b", "a/b", "a*", "a?", "a[1]", "{a,b}", "a:b", "a#", "é", "x" * 65, None, 3]
)
def test_bad_names_rejected(name):
    g = Graph()
    with pytest.raises(MixgraphError, match="bad node name"):
        g.add_node("gain", name)
    assert g.nodes == {}


def test_unknown_type_lists_known_types():
    g = Graph()
    with pytest.raises(MixgraphError, match=r"unknown node type 'fuzz' \(known: .*gain.*\)"):
        g.add_node("fuzz", "x")


def test_duplicate_name(graph):
    before = snapshot(graph)
    with pytest.raises(MixgraphError, match="a node named 'a' already exists"):
        graph.add_node("sine", "a")
    assert snapshot(graph) == before
    assert graph.nodes["a"].type.name == "gain"


def test_bad_channel_counts():
    g = Graph()
    with pytest.raises(MixgraphError, match=r"gain takes 1\.\.64 channels, not 0"):
        g.add_node("gain", "x", 0)
    with pytest.raises(MixgraphError, match=r"pan takes 1\.\.1 channels, not 2"):
        g.add_node("pan", "y", 2)
    assert g.nodes == {}


# ---- ports -------------------------------------------------------------------

@pytest.mark.parametrize(
    "src,dst,msg",
    [
        ("a:foo", "b", r"a \(gain\) has no output port 'foo' \(its outputs: out\)"),
        ("a", "b:bar", r"b \(gain\) has no input port 'bar' \(its inputs: in\)"),
        ("out", "a", r"out \(output\) has no output port"),
        ("a", "osc", r"osc \(sine\) has no input port"),
        ("a:in", "b", r"a \(gain\) has no output port 'in'"),
        ("zz", "a", r"no node named 'zz'"),
        ("a", "zz:in", r"no node named 'zz'"),
        ("", "a", r"bad port ''"),
    ],
)
def test_bad_ports_have_clear_messages(graph, src, dst, msg):
    before = snapshot(graph)
    with pytest.raises(MixgraphError, match=msg):
        graph.connect(src, dst)
    assert snapshot(graph) == before


def test_explicit_and_bare_ports_are_the_same_connection(graph):
    graph.connect("a:out", "b:in")
    with pytest.raises(MixgraphError, match=r"already connected: a:out -> b:in"):
        graph.connect("a", "b")


# ---- channels ------------------------------------------------------------------

def test_stereo_into_mono_is_an_error(graph):
    before = snapshot(graph)
    with pytest.raises(MixgraphError, match=r"channel mismatch: p:out has 2 channels, a:in has 1"):
        graph.connect("p", "a")
    assert snapshot(graph) == before


def test_stereo_into_4ch_is_an_error():
    g = Graph()
    g.add_node("bus", "st", 2)
    g.add_node("bus", "quad", 4)
    with pytest.raises(MixgraphError, match="channel mismatch"):
        g.connect("st", "quad")


def test_mono_fans_out_to_stereo(session):
    s, e = session, session.engine
    s.add_node("sine", "osc", {"freq": 1000, "level": -6})  # mono
    s.add_node("output", "out")  # stereo
    s.connect("osc", "out")
    s.commit()
    y = e.process(960)
    n = np.arange(960)
    ref = 10 ** (-6 / 20) * np.sin(2 * np.pi * 1000 * n / SR)
    # both channels carry the mono signal, bit-identical to each other;
    # 1e-6 abs vs the closed form (float32 output of a double-precision sine)
    assert np.array_equal(y[:, 0], y[:, 1])
    assert np.max(np.abs(y[:, 0] - ref)) < 1e-6


def test_many_connections_into_one_input_are_summed(session):
    s, e = session, session.engine
    freqs = [300.0, 1100.0, 2500.0]
    levels = [-12.0, -18.0, -24.0]
    for i, (f, lv) in enumerate(zip(freqs, levels, strict=True)):
        s.add_node("sine", f"s{i}", {"freq": f, "level": lv})
    s.add_node("gain", "g")
    s.add_node("output", "out", {"channels": 1})
    for i in range(3):
        s.connect(f"s{i}", "g")
    s.connect("g", "out")
    s.commit()
    y = e.process(4800)[:, 0]
    n = np.arange(4800)
    ref = sum(10 ** (lv / 20) * np.sin(2 * np.pi * f * n / SR)
              for f, lv in zip(freqs, levels, strict=True))
    assert np.max(np.abs(y - ref)) < 2e-6  # three float32 terms, 1e-6 each at most
    # ... and hardware channel 2 got nothing
    assert not np.any(e.process(64)[:, 1])


# ---- cycles ----------------------------------------------------------------------

def _cycle_in(msg: str) -> list[str]:
    m = re.search(r"cycle: ([\w-]+(?: -> [\w-]+)+)$", msg)
    assert m, msg
    return m.group(1).split(" -> ")


def test_cycle_rejected_and_named(graph):
    graph.connect("a", "b")
    graph.connect("b", "c")
    before = snapshot(graph)
    with pytest.raises(MixgraphError) as ei:
        graph.connect("c", "a")
    loop = _cycle_in(str(ei.value))
    # a closed loop through exactly a, b, c, following existing edges plus c -> a
    assert loop[0] == loop[-1] and len(loop) == 4
    assert sorted(loop[:-1]) == ["a", "b", "c"]
    edges = {(c.src, c.dst) for c in graph.conns} | {("c", "a")}
    assert all(pair in edges for pair in zip(loop, loop[1:], strict=False))
    assert snapshot(graph) == before


def test_self_loop_rejected(graph):
    with pytest.raises(MixgraphError, match=r"cycle: a -> a$"):
        graph.connect("a", "a")
    assert graph.conns == {}


def test_long_cycle_names_every_node():
    g = Graph()
    names = [f"n{i}" for i in range(8)]
    for n in names:
        g.add_node("gain", n)
    for a, b in zip(names, names[1:], strict=False):
        g.connect(a, b)
    g.add_node("gain", "side")
    g.connect("n2", "side")  # a branch that is not part of the loop
    with pytest.raises(MixgraphError) as ei:
        g.connect("n7", "n0")
    loop = _cycle_in(str(ei.value))
    assert loop == ["n7", *names]
    assert "side" not in loop


def test_diamond_is_not_a_cycle(graph):
    graph.connect("a", "b")
    graph.connect("a", "c")
    graph.connect("b", "bus")
    graph.connect("c", "bus")
    assert len(graph.conns) == 4


# ---- failed edits leave everything unchanged -------------------------------------

def test_failed_session_edits_change_nothing(session):
    s, e = session, session.engine
    s.add_node("sine", "osc", {"freq": 440, "level": -10})
    s.add_node("gain", "g")
    s.add_node("output", "out", {"channels": 1})
    s.connect("osc", "g")
    s.connect("g", "out")
    s.commit()
    ref = e.process(512).copy()
    amp = 10 ** (-10 / 20)
    # float32 rounding of the closed form: 1e-6 abs
    assert np.max(np.abs(ref[:, 0] - amp * np.sin(2 * np.pi * 440 * np.arange(512) / SR))) < 1e-6
    doc = s.to_doc()
    live = dict(s.live)
    edges = dict(s.edges)
    bad = [
        lambda: s.add_node("gain", "bad name"),
        lambda: s.add_node("nope", "x"),
        lambda: s.add_node("gain", "osc"),
        lambda: s.add_node("gain", "x", {"volume": 3}),
        lambda: s.add_node("gain", "x", {"gain": "loud"}),
        lambda: s.add_node("gain", "x", {"gain": float("nan")}),
        lambda: s.add_node("input", "x", {"first": 3}),  # the device has 2 inputs
        lambda: s.add_node("output", "x", {"first": 2, "channels": 2}),
        lambda: s.connect("g", "osc"),
        lambda: s.connect("out", "g"),
        lambda: s.connect("g", "g"),
        lambda: s.connect("osc", "g"),  # duplicate
        lambda: s.disconnect("osc", "out"),  # not connected
        lambda: s.set_param("g", "volume", 1),
        lambda: s.set_param("nobody", "gain", 1),
        lambda: s.set_param("g", "gain", float("inf")),
        lambda: s.remove_node("nobody"),
    ]
    for edit in bad:
        with pytest.raises(MixgraphError):
            edit()
    assert s.to_doc() == doc
    assert s.live == live and s.edges == edges
    assert not s._dirty
    s.service()
    # the engine still plays the same patch: the sine continues where it was
    y = e.process(512)
    n = np.arange(512, 1024)
    want = amp * np.sin(2 * np.pi * 440 * n / SR)
    assert np.max(np.abs(y[:, 0] - want)) < 1e-6  # float32 rounding of the closed form

def test_input_first_out_of_range_message(session):
    with pytest.raises(MixgraphError, match=r"hardware channels 3\.\.3 do not exist"):
        session.add_node("input", "x", {"first": 3, "channels": 1})
    assert "x" not in session.graph.nodes and "x" not in session.live


def test_integer_options_must_be_whole_numbers():
    from mixgraph.server.engine import Engine
    from mixgraph.server.errors import MixgraphError
    from mixgraph.server.session import Session

    e = Engine(48000, 2, 2)
    s = Session(e)
    try:
        with pytest.raises(MixgraphError, match="channels: expected a whole number"):
            s.add_node("gain", "g", {"channels": 2.5})
        with pytest.raises(MixgraphError, match="count from 1"):
            s.add_node("output", "o", {"first": 0})
        s.add_node("gain", "g", {"channels": 2.0})
        assert s.graph.nodes["g"].channels == 2
    finally:
        s.close()
        e.free()
