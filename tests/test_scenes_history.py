"""The show's undo hooks: a recall or morph hands `session.history` (built on
branch `undo`: record(label, undo, redo), record_values(label, changes)) every
value it moved as (node, param, before, after); scene, safe and cue edits hand
it undo/redo callables that put the show back. Until that branch is merged the
history here is a recorder of those two calls; the session, engine and
dispatcher are the real ones."""

from __future__ import annotations

from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.scenes import show_of
from mixgraph.server.session import Session


class Recorder:
    def __init__(self) -> None:
        self.steps: list = []

    def record(self, label, undo, redo, size: int = 0) -> None:
        self.steps.append(("edit", label, undo, redo))

    def record_values(self, label, changes) -> None:
        self.steps.append(("values", label, list(changes)))


def setup():
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "offline", "block": 64})
    s.history = Recorder()
    replies: list = []
    for n in ("a", "b"):
        s.add_node("gain", n)
    s.commit()
    engine.process(128)
    return engine, s, d, replies


def test_recall_and_morph_record_every_moved_value():
    engine, s, d, out = setup()
    try:
        def say(*msg):
            d.dispatch(msg[0], list(msg[1:]), lambda a, r: out.append((a, r)))
            assert out[-1][0] == "/done", out[-1]
        say("/scene/store", "zero")
        s.set_param("a", "gain", -10.0)
        s.set_param("b", "mute", 1)
        say("/scene/store", "ten")
        say("/scene/recall", "zero", 1.0)
        kind, label, changes = s.history.steps[-1]
        assert (kind, label) == ("values", "scene recall zero")
        assert sorted(changes) == [("a", "gain", -10.0, 0.0), ("b", "mute", 1.0, 0.0)]
        say("/scene/morph", "zero", "ten", 1.0)
        kind, label, changes = s.history.steps[-1]
        assert label == "scene morph zero ten 1"
        assert sorted(changes) == [("a", "gain", 0.0, -10.0), ("b", "mute", 0.0, 1.0)]
    finally:
        s.close()
        engine.free()


def test_show_edits_undo_and_redo():
    engine, s, d, out = setup()
    try:
        sh = show_of(s)
        d.dispatch("/scene/store", ["x"], lambda a, r: out.append((a, r)))
        d.dispatch("/scene/safe", ["/node/a/*", 1], lambda a, r: out.append((a, r)))
        d.dispatch("/cue/set", [1, "scene", "x"], lambda a, r: out.append((a, r)))
        assert [o[0] for o in out] == ["/done"] * 3
        labels = [st[1] for st in s.history.steps]
        assert labels == ["scene store x", "safe /node/a/* 1", "cue set 1"]
        full = sh.to_dict()
        for step in reversed(s.history.steps):
            step[2]()  # undo
        assert sh.scenes == {} and sh.safes == [] and sh.cues.cues == {}
        for step in s.history.steps:
            step[3]()  # redo
        assert sh.to_dict() == full
    finally:
        s.close()
        engine.free()
