"""Scene and cue names without control characters (attack9: a newline in a scene or
cue name was taken, and broke the one-line forms of /cue/list and the log). A new
name with one is refused with a reason; a show saved before, with such a name, still
loads; names in any script (not control characters) are taken."""

from __future__ import annotations

import pytest

from mixgraph.server.errors import MixgraphError
from mixgraph.server.scenes import scene_name
from mixgraph.server.values import has_control

from daemon_util import Daemon

CONTROL = ["a\nb", "a\rb", "tab\there", "esc\x1b[31m", "del\x7f", "c1\x85x", "bell\x07"]


@pytest.mark.parametrize("text", CONTROL)
def test_control_characters_are_found(text):
    assert has_control(text)


@pytest.mark.parametrize("text", ["Verse 2", "Strophe – zwei", "サビ", "חזרה", "emoji ✓🎛"])
def test_names_in_any_script_are_not_control(text):
    assert not has_control(text)
    assert scene_name(text, new=True) == text


def test_a_saved_name_with_one_still_loads_but_a_new_one_is_refused():
    assert scene_name("old\nname") == "old\nname"  # read from a show saved before
    with pytest.raises(MixgraphError, match="control characters"):
        scene_name("old\nname", new=True)


def test_store_rename_and_cue_name_refuse_control_characters(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/scene/store", "verse")
        for bad in CONTROL:
            for address, args in (("/scene/store", [bad]),
                                  ("/scene/rename", ["verse", bad]),
                                  ("/cue/set", [1.0, "name", bad])):
                d.client.send(address, *args)
                addr, got = d.client.receive(30.0)
                assert addr == "/fail" and got[0] == address, (addr, got)
                assert "control characters" in got[-1], got
        d.call("/scene/store", "サビ ✓")
        d.call("/cue/set", 1.0, "name", "Strophe – zwei")
        d.call("/scene/recall", "サビ ✓")  # stored under that name
        d.client.send("/scene/recall", "a\nb")  # and none of the refused ones was
        assert d.client.receive(30.0)[0] == "/fail"
    finally:
        d.stop()
