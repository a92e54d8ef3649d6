"""State saved by a version without the show's limits starts with the show, trimmed.

attack5 added limits (a cue action <= OSC_TEXT_MAX characters, the cue list's actions
<= CUE_TEXT_MAX, the scenes' values <= SCENE_VALUES_MAX, recall safes <= SAFES_MAX).
An autosave written before them that holds more was refused whole at start-up: the
server started without the show. Now the restore leaves out what is past a limit, a
warning in the log for each item, keeps the snapshot as it was as a patch, and a
/patch/load of such a document still fails before anything changes."""

from __future__ import annotations

import msgpack
import pytest

from mixgraph.server import cues as cues_mod
from mixgraph.server import scenes as scenes_mod
from mixgraph.server.engine import Engine
from mixgraph.server.errors import MixgraphError
from mixgraph.server.patch import to_doc
from mixgraph.server.scenes import show_of, trimmer
from mixgraph.server.session import Session
from mixgraph.server.state import read_patch, unseal

from daemon_util import Daemon


@pytest.fixture
def session():
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    try:
        yield s
    finally:
        s.close()
        engine.free()


def _scene(nodes: int, params: int = 10) -> dict:
    return {"values": {f"n{i}": {f"p{j}": 0.5 for j in range(params)} for i in range(nodes)},
            "bypass": {}, "scope": [], "fade": 0.0, "curve": "linear"}


def test_each_limit_is_trimmed_with_a_note_only_when_restoring(session, monkeypatch):
    """check() with trim leaves out exactly what is past each limit, a note per item;
    without trim (a /patch/load) the same show fails."""
    monkeypatch.setattr(scenes_mod, "SCENE_VALUES_MAX", 250)
    monkeypatch.setattr(cues_mod, "CUE_TEXT_MAX", 100)
    act = "/node/g/gain -" + "1" * 26  # 40 characters
    show = {
        "scenes": {"A": _scene(10), "B": _scene(10), "C": _scene(10)},  # 100 values each
        "safes": [f"/node/s{i}/gain" for i in range(scenes_mod.SAFES_MAX + 3)],
        "cues": [{"number": 1, "osc": [act, "/node/g/gain " + "2" * 1100]},
                 {"number": 2, "name": "first", "osc": [act]},
                 {"number": 3, "osc": [act, act]},
                 {"number": 2.0000001, "name": "again", "osc": [act]}],  # cue 2 again
        "playhead": 1,
    }
    with pytest.raises(MixgraphError):
        show_of(session).check(show)
    checked = show_of(session).check(show, trimmer(session))
    show_of(session).take(checked)
    sh = show_of(session)
    notes = session.trimmed
    assert list(sh.scenes) == ["A", "B"]
    assert sh.safes == show["safes"][:scenes_mod.SAFES_MAX]
    assert {k: c.osc for k, c in sh.cues.cues.items()} == {1.0: [act], 2.0: [act], 3.0: []}
    assert sh.cues.cues[2.0].name == "again"
    assert sh.cues.text == 80
    assert sum("scene 'C' (100 values) left out" in n for n in notes) == 1
    assert sum("recall safe" in n for n in notes) == 3
    assert sum("an osc action of 1113 characters left out" in n for n in notes) == 1
    assert sum("cue 3: its 2 osc actions (80 characters) left out" in n for n in notes) == 1
    assert sum("cue 2 is listed twice" in n for n in notes) == 1
    assert len(notes) == 7, notes


def _over_limit_doc(tmp_path) -> dict:
    """A patch document as an older version saved it: a node, and a show past the
    limits (an action of 2,000 characters, 300 recall safes, cues whose actions add
    up past the (lowered) CUE_TEXT_MAX, scenes past the (lowered) SCENE_VALUES_MAX)."""
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    try:
        s.add_node("gain", "g")
        s.commit()
        doc = to_doc(s)
    finally:
        s.close()
        engine.free()
    doc["show"] = {
        "scenes": {"A": _scene(50), "B": _scene(50), "C": _scene(50)},  # 500 values each
        "safes": [f"/node/s{i}/gain" for i in range(300)],
        "cues": [{"number": 1, "name": "long", "osc": ["/node/g/gain -6 " + "x" * 2000]},
                 *({"number": k, "name": f"c{k}", "osc": ["/node/g/gain -" + "1" * 86]}
                   for k in range(2, 12))],  # 100 characters each
        "playhead": 1,
    }
    return doc


SITE = """import mixgraph.server.cues as c, mixgraph.server.scenes as s
c.CUE_TEXT_MAX = 950  # lowered so that the test's autosave stays small and quick
s.SCENE_VALUES_MAX = 1200
"""


def test_a_daemon_starts_on_an_over_limit_autosave(tmp_path):
    """A real daemon on an autosave past every limit: it starts with the graph and the
    show, each left-out item is a warning in its log, the banner says how many, the
    snapshot as it was is kept as a patch, and the next autosave holds the trimmed
    show (a second start says nothing more)."""
    state = tmp_path / "state"
    state.mkdir()
    doc = _over_limit_doc(tmp_path)
    (state / "autosave.mgp").write_bytes(msgpack.packb(doc, use_bin_type=True))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    env = {"PYTHONPATH": str(site)}
    d = Daemon(state, "--backend", "null", env=env)
    try:
        out = d.output()
        assert "restored 1 nodes from autosave.mgp" in out, out[-2000:]
        assert out.count("state: recall safe '/node/s") == 300 - scenes_mod.SAFES_MAX, out
        assert "state: cue 1: an osc action of 2016 characters left out" in out, out
        assert "state: scene 'C' (500 values) left out" in out, out
        trimmed_cues = out.count("osc actions (100 characters) left out")
        assert trimmed_cues == 1, out  # 10 x 100 > 950: cue 11's go
        n = (300 - scenes_mod.SAFES_MAX) + 1 + 1 + trimmed_cues
        assert f"{n} show items past this version's limits left out" in out, out
        kept = list((state / "patches").glob("untrimmed-*-autosave.mgp"))
        assert len(kept) == 1, kept
        assert msgpack.unpackb(kept[0].read_bytes()) == doc  # the bytes as they were
        assert len(d.client.collect("/cue/list")) == 11
        assert [r[0] for r in d.client.collect("/scene/list")] == ["A", "B"]
    finally:
        assert d.stop() == 0
    saved = read_patch(state / "autosave.mgp")
    unseal(saved, "autosave")
    sh = saved["show"]
    assert list(sh["scenes"]) == ["A", "B"]
    assert sh["safes"] == doc["show"]["safes"][:scenes_mod.SAFES_MAX]
    assert [c["osc"] for c in sh["cues"]] == [
        [], *(c["osc"] for c in doc["show"]["cues"][1:10]), []]
    assert [c["name"] for c in sh["cues"]] == [c["name"] for c in doc["show"]["cues"]]
    d = Daemon(state, "--backend", "null", env=env)
    try:
        assert "left out" not in d.output(), d.output()
    finally:
        d.stop()


def test_the_cue_text_total_follows_every_edit(session, monkeypatch):
    """The cue list's running total of action text (CueList.text, what /cue/set checks
    against CUE_TEXT_MAX in O(1)) equals the sum after set, edit, delete, a cue file,
    a document, undo and redo; and the bound still holds at its edge."""
    from mixgraph.server.osc import Dispatcher

    monkeypatch.setattr(cues_mod, "CUE_TEXT_MAX", 200)
    d = Dispatcher(session, info={"backend": "offline", "block": 64})
    out: list = []

    def say(*m):
        d.dispatch(m[0], list(m[1:]), lambda a, r: out.append((a, r)))
        return out[-1]

    cl = show_of(session).cues

    def right() -> None:
        assert cl.text == cues_mod.osc_text(cl.cues.values()), (cl.text, cl.cues)

    a40 = "/node/g/gain -" + "1" * 26
    steps = [("/cue/set", 1, "osc", a40), ("/cue/set", 2, "osc", a40, "osc", a40),
             ("/cue/set", 1, "osc", a40[:-10]), ("/cue/set", 1, "name", "x"),
             ("/cue/delete", 2), ("/cue/set", 3, "osc", a40), ("/undo",), ("/undo",),
             ("/redo",), ("/cue/set", 2.5, "osc", a40, "osc", a40, "osc", a40)]
    for m in steps:
        assert say(*m)[0] == "/done", (m, out[-1])
        right()
    assert cl.text == 150
    assert say("/cue/set", 4, "osc", "/node/g/gain -" + "1" * 36)[0] == "/done"  # 200
    right()
    assert cl.text == 200
    a, r = say("/cue/set", 5, "osc", "/x 1")
    assert a == "/fail" and "204 characters, more than 200" in r[-1], r
    assert say("/cue/set", 4, "osc", "/x 1")[0] == "/done"  # an edit: its old text goes
    right()
    show_of(session).load({"cues": [{"number": 1, "osc": [a40]}]})
    right()
    assert cl.text == 40
    cl.load_text("1 osc '/a 1'\n2 osc '/b 22'\n")
    right()
    assert cl.text == 9
    assert say("/undo",)[0] == "/done"
    right()
    cl.load_put(7, {"number": 7, "osc": [a40]}, 7)
    right()
    cl.load_put(7, None, None)
    right()


@pytest.mark.parametrize("case, why", [
    ("channels_true", "channels must be a whole number, not true"),
    ("rate_string", "`sample_rate` must be a number of Hz > 0, not '48000'"),
    ("show_list", "`show` must be a map, not a list"),
    ("scenes_list", "show `scenes` must be a map, not a list"),
    ("cue_twice", "cue 2 is listed twice"),
])
def test_a_patch_s_oddities_fail_before_anything_changes(session, case, why):
    """Oddities a patch document used to pass silently: `channels: true` (one
    channel), a sample rate given as a string, `show: []` and `scenes: []` (read as
    empty), two cues of one number (the later one silently won). Each is a clear
    error, and the graph and show are as they were."""
    from mixgraph.server.patch import load_doc

    session.add_node("gain", "g")
    session.commit()
    show_of(session).load({"cues": [{"number": 1, "name": "one"}]})
    doc = to_doc(session)
    before = to_doc(session)
    doc["nodes"].append({"name": "h", "type": "gain", "channels": 2, "options": {},
                         "params": {}})
    if case == "channels_true":
        doc["nodes"][-1]["channels"] = True
    elif case == "rate_string":
        doc["sample_rate"] = "48000"
    elif case == "show_list":
        doc["show"] = []
    elif case == "scenes_list":
        doc["show"]["scenes"] = []
    else:
        doc["show"]["cues"] = [{"number": 2, "name": "a"}, {"number": 2.0, "name": "b"}]
    with pytest.raises(MixgraphError) as e:
        load_doc(session, doc)
    assert why in str(e.value), str(e.value)
    assert to_doc(session) == before
    del doc["nodes"][-1]
    doc.update(sample_rate=48000.0, show=before["show"])
    load_doc(session, doc)  # the same document without the oddity loads
