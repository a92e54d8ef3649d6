"""The MIDI maps' one validator (server/midimap.py) and the loading paths around it:
/midi/map, /midi/load, /patch/load, the autosave at start-up, `mixgraph render`.

No JACK needed: the maps are kept (and their tables published) whatever MIDI is
available, so a real daemon on the null backend shows every path. What a map
does when a control moves is tests/test_midi.py's."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from mixgraph.clients import MixgraphFail
from mixgraph.server.state import AUTOSAVE, PATCHES_DIR, read_patch, write_patch

from daemon_util import Daemon


def _maps_file(d: Daemon, name: str, maps, raw: str | None = None) -> None:
    p = d.state_dir / "midi" / f"{name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(raw if raw is not None else
                 json.dumps({"format": "mixgraph-midi", "version": 1, "maps": maps}))


def _fail(d: Daemon, address: str, *args) -> str:
    with pytest.raises(MixgraphFail) as e:
        d.call(address, *args)
    why = str(e.value)
    assert "internal error" not in why, (args, why)
    return why


@pytest.fixture
def d(tmp_path):
    daemon = Daemon(tmp_path / "state", "--backend", "null")
    daemon.call("/graph/add", "gain", "g")
    yield daemon
    daemon.stop()


def test_a_bad_map_in_the_autosave_is_left_out_and_the_server_starts(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/midi/map", "/node/g/gain", "cc", 1, 7)
    finally:
        d.stop()  # the final autosave holds the map
    path = tmp_path / "state" / AUTOSAVE
    doc = read_patch(path)
    doc.pop("checksum")  # an autosave edited by hand (or written before checksums)
    good = doc["midi"]
    assert len(good) == 1
    doc["midi"] = good + [
        {"address": "/graph/clear", "kind": "note", "channel": 1, "number": 1, "args": 5},
        {"address": "/graph/clear", "kind": "note", "channel": 1, "number": 2, "args": None},
        {"address": "/node/g/gain", "kind": "cc", "channel": math.nan, "number": 8},
        {"address": "/node/g/gain", "kind": "cc", "channel": 1, "number": math.inf},
        {"address": "/node/g/mute", "kind": "note", "channel": 1, "number": 3, "mode": ["x"]},
        {"address": "/scene/store", "kind": "note", "channel": 1, "number": 4,
         "args": [2 ** 40, "/node/g/gain"]},
    ]
    write_patch(doc, path)
    d = Daemon(tmp_path / "state", "--backend", "null")  # exited 1 with a TypeError before
    try:
        assert d.call("/midi/maps") == [1, "/node/g/gain", "cc", 1, 7, ";"]
        assert d.call("/graph/nodes")[::4] == ["g"]
        log = d.output()
        assert log.count("not restored") == 6, log
        assert "Traceback" not in log
    finally:
        d.stop()


def test_args_the_journal_cannot_hold_are_refused_when_the_map_is_made(d):
    big = _fail(d, "/midi/map", "/scene/store", "note", 1, 99,
                "args", "99999999999999999999 /node/g/gain")
    assert "32-bit" in big
    assert "32-bit" in _fail(d, "/midi/map", "/scene/store", "note", 1, 99,
                             "args", "1e300 /node/g/gain")
    assert "finite" in _fail(d, "/midi/map", "/scene/store", "note", 1, 99, "args", "nan")
    assert "at most" in _fail(d, "/midi/map", "/graph/clear", "note", 1, 99,
                              "args", "x" * 5000)
    assert "at most" in _fail(d, "/midi/map", "/graph/clear", "note", 1, 99,
                              "args", " ".join(["1"] * 17))
    # the same through a file: objects, null, booleans, Infinity, 2**70
    for i, bad in enumerate([{"a": 1}, None, ["x", 1], True, math.inf, 2 ** 70]):
        _maps_file(d, f"objargs{i}", [{"address": "/scene/store", "kind": "note",
                                       "channel": 2, "number": 1, "args": [bad, "/node/g/gain"]}])
        assert "map 1: args" in _fail(d, "/midi/load", f"objargs{i}")
    assert d.call("/midi/maps") == [0]
    # what fits is kept as given, and saved
    d.call("/midi/map", "/scene/store", "note", 1, 99, "args", "2147483647 -1.5 a")
    assert d.call("/midi/maps") == [1, "/scene/store", "note", 1, 99, "mode", "trigger",
                                    "args", "2147483647 -1.5 a", ";"]
    assert d.call("/patch/save", "fine") == ["/patch/save", "fine"]


def test_bad_fields_fail_with_a_reason_never_an_internal_error(d):
    nan, inf = math.nan, math.inf
    for args, why in [
        (("/node/g/gain", "cc", nan, 7), "channel"),
        (("/node/g/gain", "cc", inf, 7), "channel"),
        (("/node/g/gain", "cc", 1, nan), "number"),
        (("/node/g/gain", "cc", 1, inf), "number"),
        (("/node/g/gain", "cc", 1.5, 7), "channel"),
        (("/node/g/gain", "pb", 1, 0, "min", nan), "min"),
        (("/node/g/gain", "cc", 1, 9, "step", 0.5), "step: only for encoders"),
        (("/node/g/gain", "cc", 1, 12, "args", "a b"), "args: only for an address"),
        (("/node/g/gain", "cc", 1, 13, "pickup", "yes"), "pickup"),
        (("/node/g/gain", "cc", 1, 13, "feedback", -1), "feedback"),
        (("/node/g/gain", "cc", 1, 11, "mode", "toggle"), "notes only"),
        (("/node/*/gain", "cc", 1, 14), "OSC address"),
        (("/node/g/gain/norm", "cc", 1, 15, "min", 2.0), "0..1"),
        (("", "cc", 1, 21), "address"),
        (("/", "cc", 1, 22), "cannot be the target"),
    ]:
        assert why in _fail(d, "/midi/map", *args), args
    _fail(d, "/midi/unmap", "/node/g/gain", "cc", nan, 7)
    cases = {
        "nanchan": '{"format":"mixgraph-midi","version":1,"maps":[{"address":"/node/g/gain",'
                   '"kind":"cc","channel":NaN,"number":7}]}',
        "bigint": '{"format":"mixgraph-midi","version":1,"maps":[{"address":"/node/g/gain",'
                  '"kind":"cc","channel":' + "9" * 400 + ',"number":7}]}',
        "deep": '{"format":"mixgraph-midi","maps":' + "[" * 100000 + "]" * 100000 + "}",
        "maps_dict": '{"format":"mixgraph-midi","version":1,"maps":{"a":1}}',
    }
    for name, raw in cases.items():
        _maps_file(d, name, None, raw)
        _fail(d, "/midi/load", name)
    for name, entry in {"mode_list": {"mode": ["x"]}, "mode_int": {"mode": 5},
                        "kind_list": {"kind": ["cc"]}, "args_int": {"args": 5},
                        "key_odd": {"colour": 1}}.items():
        _maps_file(d, name, [{"address": "/node/g/mute", "kind": "note", "channel": 1,
                              "number": 4, **entry}])
        assert "map 1" in _fail(d, "/midi/load", name), name
    assert d.call("/midi/maps") == [0]
    assert "Traceback" not in d.output()


def test_midi_load_is_all_or_nothing(d):
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7)
    before = d.call("/midi/maps")
    _maps_file(d, "toomany", [{"address": "/node/g/gain", "kind": "nrpn", "channel": 1,
                               "number": i} for i in range(600)])
    assert "at most 512 maps" in _fail(d, "/midi/load", "toomany")
    _maps_file(d, "lastbad", [{"address": "/node/g/gain", "kind": "nrpn", "channel": 1,
                               "number": i} for i in range(20)] + [{"kind": "cc"}])
    assert "map 21" in _fail(d, "/midi/load", "lastbad")
    assert d.call("/midi/maps") == before


def test_a_patch_with_a_bad_map_is_refused_whole_and_render_says_why(d, tmp_path):
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7)
    d.call("/patch/save", "good")
    pdir = d.state_dir / PATCHES_DIR
    (saved,) = pdir.glob("good.*")
    doc = read_patch(saved)
    doc["nodes"].append({"name": "other", "type": "gain", "channels": 1, "options": {},
                         "params": {}})
    for i, bad in enumerate([{"channel": math.nan}, {"args": 5, "address": "/graph/clear"},
                             {"mode": ["x"], "kind": "note"}]):
        doc["midi"] = [{"address": "/node/g/gain", "kind": "cc", "channel": 1, "number": 9,
                        **bad}]
        (pdir / f"bad{i}.json").write_text(json.dumps(doc))
        why = _fail(d, "/patch/load", f"bad{i}")
        assert "patch: midi: map 1" in why, why
        assert d.call("/graph/nodes")[::4] == ["g"]  # nothing changed
        assert d.call("/midi/maps") == [1, "/node/g/gain", "cc", 1, 7, ";"]
    out = tmp_path / "x.wav"
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render",
                        str(pdir / "bad0.json"), "-o", str(out), "--duration", "0.1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Traceback" not in r.stdout + r.stderr
    assert "patch: midi: map 1: channel" in r.stdout + r.stderr


def test_maps_to_absent_nodes_are_kept_by_every_load(tmp_path):
    """docs/protocol.md: a map whose node is removed stays. It must survive a restart,
    a patch save and load, and a map file, also when a node of another type (whose
    range its min/max do not suit) has the name now."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "keep1")
        d.call("/graph/add", "compressor", "x")
        d.call("/midi/map", "/node/keep1/gain", "cc", 1, 7, "min", -30.0)
        d.call("/midi/map", "/node/x/threshold", "cc", 1, 30, "min", -60.0, "max", -50.0)
        want = d.call("/midi/maps")
        d.call("/graph/remove", "keep1")
        d.call("/graph/remove", "x")
        d.call("/graph/add", "denoise", "x")  # threshold -10..20 here
        assert d.call("/midi/maps") == want
        assert d.call("/midi/save", "desk") == ["/midi/save", "desk", 2]
        d.call("/midi/unmap", "/node/keep1/gain")
        assert d.call("/midi/load", "desk") == ["/midi/load", "desk", 2]
        assert d.call("/midi/maps") == want
        d.call("/patch/save", "p")
        d.call("/midi/unmap", "/node/x/threshold")
        d.call("/patch/load", "p")
        assert d.call("/midi/maps") == want
        time.sleep(0.6)  # the autosave runs at 4 Hz
    finally:
        d.stop()
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        assert d.call("/midi/maps") == want
        assert "not restored" not in d.output()
        # the node back: the map is there for it (and /midi/map still checks a present node)
        d.call("/graph/add", "gain", "keep1")
        assert "outside" in _fail(d, "/midi/map", "/node/x/threshold", "cc", 1, 31,
                                  "min", -60.0)
        assert "no node named" in _fail(d, "/midi/map", "/node/nope/gain", "cc", 1, 7)
    finally:
        d.stop()


def test_a_loaded_note_map_without_mode_gets_the_default_of_its_address(d):
    """A hand-written file may leave `mode` out: toggle for a parameter, trigger for
    an action or another address, as /midi/map would choose (a guess from the
    address's form when the node is not there)."""
    d.call("/graph/add", "denoise", "dn")
    _maps_file(d, "modes", [{"address": a, "kind": "note", "channel": 1, "number": i}
                            for i, a in enumerate(["/node/dn/threshold", "/node/dn/learn",
                                                   "/node/g/bypass", "/cue/go",
                                                   "/node/absent/gain"])])
    d.call("/midi/load", "modes")
    maps = d.call("/midi/maps")
    modes = [maps[i + 1] for i, x in enumerate(maps) if x == "mode"]
    assert modes == ["toggle", "trigger", "trigger", "trigger", "toggle"], maps


def test_many_14_bit_maps_to_other_addresses_do_not_stall_the_control_thread(d):
    """Each publish built a 16384-entry table in Python for every 14-bit map to an
    address that is no parameter: 300 of them held the control thread for seconds
    at every map change. A generous bound, against the stall only, on the daemon's
    CPU time (/proc: a loaded host stretches the wall time, not the work)."""
    _maps_file(d, "osc300", [{"address": "/cue/go", "kind": "nrpn", "channel": 1,
                              "number": i} for i in range(300)])
    d.call("/midi/load", "osc300")
    c0 = d.cpu_s()
    for i in range(10):
        d.call("/midi/map", "/cue/go", "cc14", 2, i)
        d.status()  # answered after the publish the map caused
    assert d.cpu_s() - c0 < 10.0
    assert d.status()["midi_maps"] == 310


def test_the_validator_alone():
    """check_map raises only MixgraphError, whatever a document holds."""
    from mixgraph.server.errors import MixgraphError
    from mixgraph.server.midimap import check_maps

    weird = [None, 1, "x", [], {}, {"address": 5}, {"address": "/a", "kind": "cc"},
             {"address": "/a", "kind": "cc", "channel": [1], "number": 1},
             {"address": "/a", "kind": "cc", "channel": 1, "number": 1, "min": "1"},
             {"address": "/a", "kind": "cc", "channel": 1, "number": 1, "min": 1e39},
             {"address": "/a", "kind": "cc", "channel": 1, "number": 1, 5: 1},
             {"address": "/a" * 200, "kind": "cc", "channel": 1, "number": 1},
             {"address": "/a", "kind": "enc-2", "channel": 1, "number": 1, "step": 0}]
    for w in weird:
        with pytest.raises(MixgraphError):
            check_maps([w], strict=True)
    assert check_maps(weird, strict=False) == []
    assert check_maps({"a": 1}, strict=False) == []
    ok = check_maps([{"address": "/node/a/b", "kind": "note", "channel": 1.0, "number": 3}],
                    strict=True)
    assert ok[0].channel == 1 and type(ok[0].channel) is int and ok[0].mode == "toggle"
