"""VCA groups: a VCA's level is added in dB to each member fader; several add up."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server.engine import Engine
from mixgraph.server.errors import MixgraphError
from mixgraph.server.session import Session


def strip(s: Session, name: str, gain_db: float) -> None:
    s.add_node("gain", name, {"gain": gain_db})


def level_db(e: Engine, n: int = 4800) -> np.ndarray:
    x = np.full((n, 2), 0.01, np.float32)  # -40 dBFS: far below the output ceiling
    y = e.process(n, x, block=64)
    return 20 * np.log10(np.abs(y[-1])) + 40.0



def build() -> tuple[Engine, Session]:
    e = Engine(48000, 2, 2)
    s = Session(e)
    s.add_node("input", "l", {"channels": 1, "first": 1})
    s.add_node("input", "r", {"channels": 1, "first": 2})
    strip(s, "a", -6.0)
    strip(s, "b", 3.0)
    s.add_node("output", "oa", {"channels": 1, "first": 1})
    s.add_node("output", "ob", {"channels": 1, "first": 2})
    for src, dst in (("l", "a"), ("r", "b"), ("a", "oa"), ("b", "ob")):
        s.connect(src, dst)
    s.commit()
    return e, s


def test_vca_offsets_add_exactly():
    e, s = build()
    # dB sums are exact: tolerance 1e-4 dB (float32 gain arithmetic)
    np.testing.assert_allclose(level_db(e), [-6.0, 3.0], atol=1e-4)
    s.add_node("vca", "v1", {"members": "a,b", "level": -3.0})
    s.add_node("vca", "v2", {"members": "b", "level": 1.5})
    s.service()
    np.testing.assert_allclose(level_db(e), [-9.0, 1.5], atol=1e-4)
    s.set_param("v1", "level", 2.25)
    s.service()
    np.testing.assert_allclose(level_db(e), [-3.75, 6.75], atol=1e-4)
    assert s.get_param("b", "vca") == pytest.approx(3.75)
    s.remove_node("v2")
    s.service()
    np.testing.assert_allclose(level_db(e), [-3.75, 5.25], atol=1e-4)
    # the fader itself still moves independently of its VCA
    s.set_param("a", "gain", 0.0)
    s.service()
    np.testing.assert_allclose(level_db(e), [2.25, 5.25], atol=1e-4)


def test_vca_move_is_smoothed():
    e, s = build()
    s.add_node("vca", "v", {"members": "a", "level": 0.0})
    s.service()
    e.process(4800, np.ones((4800, 2), np.float32), block=64)
    s.set_param("v", "level", -40.0)
    s.service()
    y = e.process(4800, np.ones((4800, 2), np.float32), block=64)[:, 0]
    # 20 ms geometric ramp: no step larger than the 40 dB over 960 samples implies
    assert np.max(np.abs(np.diff(y))) < 0.01
    assert 20 * np.log10(y[-1]) == pytest.approx(-46.0, abs=1e-3)


def test_vca_bad_members_fail_clearly():
    e, s = build()
    with pytest.raises(MixgraphError, match="no member node named 'zz'"):
        s.add_node("vca", "v", {"members": "a,zz"})
    with pytest.raises(MixgraphError, match="cannot be a VCA member"):
        s.add_node("vca", "v", {"members": "oa"})
    assert "v" not in s.graph.nodes


def test_vca_survives_patch_roundtrip():
    e, s = build()
    s.add_node("vca", "v", {"members": "a,b", "level": -2.0})
    doc = s.to_doc()
    e2 = Engine(48000, 2, 2)
    s2 = Session(e2)
    s2.load_doc(doc)
    s2.commit()
    np.testing.assert_allclose(level_db(e2), [-8.0, 1.0], atol=1e-4)



def test_a_removed_member_stays_named_and_the_patch_still_loads():
    """A VCA keeps a removed member's name (undo of the removal restores it as a
    member with nothing more); the saved document, and so the autosave a restart
    loads, must load with it. Before, it failed ('no member node named ...') and
    a restart set the whole show aside."""
    e, s = build()
    s.add_node("vca", "v", {"members": "a,b", "level": -2.0})
    s.remove_node("a")
    s.commit()
    e2 = Engine(48000, 2, 2)
    s2 = Session(e2)
    s2.load_doc(s.to_doc())
    s2.commit()
    assert sorted(s2.graph.nodes) == sorted(s.graph.nodes)
    assert s2.get_param("b", "vca") == -2.0
    s2.add_node("gain", "a", {"gain": -6.0})  # back under its name: a member again
    assert s2.get_param("a", "vca") == -2.0
    assert s2.graph.nodes["v"].options["members"] == "a,b"
    with pytest.raises(MixgraphError, match="no member node named 'zz'"):
        s2.add_node("vca", "x", {"members": "zz"})  # a new VCA still may not
