"""Cue numbers from an OSC controller (32-bit floats) are the cues of a cue file
(attack3 A1).

A cue file's `1.1` is the double 1.1; TouchOSC (and mixgraph.clients) send
`/cue/go 1.1` as the float32 1.100000023841858. The list used to key cues by the raw
float: GO answered `no cue 1.1`, and `/cue/set 1.3` from a controller made a second
cue beside the file's 1.3 that `/cue/list` showed with the same number."""

from __future__ import annotations

import struct

from mixgraph.clients.client import MixgraphFail

from daemon_util import Daemon


def _f32(x: float) -> float:
    return struct.unpack(">f", struct.pack(">f", x))[0]


def test_float32_cue_numbers_name_the_file_s_cues(tmp_path):
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        (state / "show.txt").write_text("1 name A\n1.1 name B\n1.2 name C\n1.3 name D\n"
                                        "2 name E\n")
        assert d.call("/cue/load", "show.txt") == ["/cue/load", "show.txt", 5]
        assert _f32(1.1) != 1.1  # what the client sends is not the double
        assert d.call("/cue/go", 1.1) == ["/cue/go", "1.1", "B"]
        assert d.call("/cue/standby", 1.2) == ["/cue/standby", "1.2", "C"]
        # an edit from the controller changes the file's cue, it does not add one
        d.call("/cue/set", 1.3, "name", "D2")
        d.call("/cue/set", 1.0000001, "name", "A2")  # shows as 1: it is cue 1
        assert _cue_lines(d) == ["1 name A2", "1.1 name B", "1.2 name C", "1.3 name D2", "2 name E"]
        d.call("/cue/delete", 1.1)
        assert [ln.split()[0] for ln in _cue_lines(d)] == ["1", "1.2", "1.3", "2"]
        try:
            d.call("/cue/go", 1.1)
            raise AssertionError("cue 1.1 was deleted")
        except MixgraphFail as e:
            assert "no cue 1.1" in str(e)
    finally:
        d.stop()


def _cue_lines(d: Daemon) -> list[str]:
    """The cue list's text lines."""
    return [row[1] for row in d.client.cue_list()]


def test_canonical_keeps_six_significant_digits():
    from mixgraph.server.cues import canonical

    for x in (1.1, 2.3, 10.7, 123.456, 0.5, 99999.9):
        assert canonical(_f32(x)) == canonical(x) == x
    assert canonical(1.0000001) == 1.0


def test_a_document_s_cue_osc_must_be_a_list():
    """attack3 (p09_docs_midi.py): a script's show with `"osc": "///"` loaded as three
    actions `/`, and `"osc": {"/node/g/gain": 1}` as the action `/node/g/gain` (the
    keys): one string, or a map, is not a list of messages."""
    import pytest

    from mixgraph.server.cues import CueList
    from mixgraph.server.errors import MixgraphError

    cl = CueList.__new__(CueList)
    for bad in ("///", {"/node/g/gain": 1}, "/node/g/gain -6"):
        with pytest.raises(MixgraphError, match="must be a list"):
            cl.parse_dict({"cues": [{"number": 1, "osc": bad}]})
    cues, _, _ = cl.parse_dict({"cues": [{"number": 1, "osc": ["/node/g/gain -6"]}]})
    assert cues[1.0].osc == ["/node/g/gain -6"]
