"""Recall safes resolved once per recall, morph and GO (Show.safe_among), with the
same answers as matching each address against each safe (Show.is_safe).

attack2 F7: with 200 safes a recall of 200 eq8 nodes tested every safe against
every value (values x safes pattern matches) and took seconds, as did every morph
and GO. The session, engine and dispatcher here are the real ones."""

from __future__ import annotations

import random

from mixgraph.server import patterns
from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.scenes import show_of
from mixgraph.server.session import Session


def _pattern(rng: random.Random) -> str:
    """A random /node/... address pattern over the names of _addresses."""
    def part() -> str:
        out = ""
        for _ in range(rng.randint(1, 4)):
            out += rng.choice(["a", "b", "ab", "g", "gain", "1", "*", "?", "[ab]",
                               "[!a]", "[a-c]", "{a,gain}", "{b,}", "x"])
        return out
    shape = rng.random()
    if shape < 0.15:
        return "/node/" + part() + "//" + part()  # OSC 1.1 gap
    if shape < 0.25:
        return "/node/" + "/".join(part() for _ in range(rng.choice([1, 3])))
    if shape < 0.35:  # a literal address
        return f"/node/{rng.choice(['a', 'ab', 'b1'])}/{rng.choice(['gain', 'g', 'bypass'])}"
    return "/node/" + part() + "/" + part()


def _addresses(rng: random.Random) -> list[str]:
    names = ["a", "b", "ab", "ba", "b1", "gg", "x", ""]
    params = ["gain", "g", "a", "bypass", "b1gain", ""]
    out = [f"/node/{n}/{p}" for n in names for p in params if rng.random() < 0.7]
    out += ["/node/a", "/node/a/gain/x", "/other/a/gain", "/node/a/b/c"]
    return out


def test_safe_among_answers_as_is_safe():
    """Property: for random safes (wildcards, classes, alternatives, //, literals)
    and addresses (including other shapes), safe_among picks exactly the addresses
    is_safe says are safe."""
    rng = random.Random(7)
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    try:
        sh = show_of(s)
        for _ in range(300):
            sh.safes = [_pattern(rng) for _ in range(rng.randint(1, 6))]
            addrs = _addresses(rng)
            want = {a for a in addrs if sh.is_safe(a)}
            assert sh.safe_among(addrs) == want, sh.safes
    finally:
        s.close()
        engine.free()


def test_safes_cost_does_not_multiply_with_values(monkeypatch):
    """A recall, a morph and a GO with 200 safes over 120 eq8 nodes (47 values each):
    the address matching they do is counted (every address a pattern's match or
    filter looks at, every part a part matcher looks at). It must stay within
    safes x (distinct node names + parameter names) + values per call, i.e. each
    safe looks at each name once; the old per-value check did values x safes
    (1.1 million for each call), and held control for seconds."""
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "offline", "block": 64})
    out: list = []

    def say(*m):
        d.dispatch(m[0], list(m[1:]), lambda a, r: out.append((a, r)))
        assert out[-1][0] == "/done", out[-1]
    try:
        nodes = 120
        for i in range(nodes):
            s.add_node("eq8", f"e{i}")
        s.commit()
        engine.process(128)
        say("/scene/store", "A")
        s.set_param("e3", "b1gain", 6.0)
        s.set_param("e4", "b2gain", 6.0)
        s.set_param("e20", "b3gain", 6.0)
        s.set_param("e5", "b3gain", 6.0)
        say("/scene/store", "B")
        safes = 200
        for k in range(safes - 8):  # literal safes, one per fader ...
            say("/scene/safe", f"/node/e{k % nodes}/b{1 + k // nodes % 8}gain", 1)
        for k in range(8):  # ... and patterns
            say("/scene/safe", f"/node/e{k}*/b{k + 1}*", 1)
        say("/cue/set", 1, "scene", "A")
        values = show_of(s).scenes["A"].count()
        params = len(s.live["e0"].g.type.params)
        bound = safes * (nodes + params) + values

        count = [0]
        match, filt, part = patterns.Pattern.match, patterns.Pattern.filter, \
            patterns._Part.__call__

        def counted_match(self, address):
            count[0] += 1
            return match(self, address)

        def counted_filter(self, addresses):
            addresses = list(addresses)
            count[0] += len(addresses)
            return filt(self, addresses)

        def counted_part(self, p):
            count[0] += 1
            return part(self, p)
        monkeypatch.setattr(patterns.Pattern, "match", counted_match)
        monkeypatch.setattr(patterns.Pattern, "filter", counted_filter)
        monkeypatch.setattr(patterns._Part, "__call__", counted_part)
        for call in (("/scene/recall", "B"), ("/scene/morph", "A", "B", 0.5),
                     ("/cue/go", 1)):
            count[0] = 0
            say(*call)
            engine.process(128)
            assert count[0] <= bound, (call, count[0], bound)
        # and the safes still held: e3 b1gain and e4 b2gain (literal safes), e20
        # b3gain (the pattern /node/e2*/b3*); e5 b3gain is not safe: GO recalled A
        params_of = {n: s.graph.nodes[n].params for n in ("e3", "e4", "e20", "e5")}
        assert params_of["e3"]["b1gain"] == 6.0
        assert params_of["e4"]["b2gain"] == 6.0
        assert params_of["e20"]["b3gain"] == 6.0
        assert params_of["e5"]["b3gain"] == 0.0
    finally:
        s.close()
        engine.free()
