"""Start-up from a bad state directory (issue 13, hole 12): every corrupt
autosave is set aside byte-identical, the server starts from the previous
good snapshot (or empty) and says which, and a player whose file is missing
is restored with its connections. Each case runs a real daemon process."""

from __future__ import annotations

import json
import signal
import time

import msgpack
import numpy as np
import pytest
import soundfile as sf

from daemon_util import Daemon


def doc(nodes: list, conns: list | None = None, **extra) -> dict:
    """A patch document as the server writes it."""
    return {"format": "mixgraph-patch", "version": 1, "sample_rate": 48000.0,
            "nodes": nodes, "connections": conns or [], "metadata": {}, **extra}


def node(name: str, type_: str, **kw) -> dict:
    return {"name": name, "type": type_, "channels": kw.pop("channels", 1),
            "options": kw.pop("options", {}), "params": kw.pop("params", {}), **kw}


GOOD = doc([node("prev", "gain", params={"gain": -3.0})])

CORRUPT = {
    # JSON nested 100,000 deep: RecursionError in the parser
    "json_deep": b'{"format": "mixgraph-patch", "x": ' + b"[" * 100_000 + b"]" * 100_000
                 + b"}",
    # a map whose key is a list
    "msgpack_list_key": bytes.fromhex("81910102"),
    "type_is_list": msgpack.packb(doc([node("g", ["gain"])])),
    "type_is_map": msgpack.packb(doc([node("g", {"gain": 1})])),
    "input_first_2_62": msgpack.packb(doc([node("i", "input", options={"first": 2**62})])),
    "metadata_is_list": msgpack.packb(doc([node("g", "gain")], metadata=[1, 2])),
    # JSON can say what msgpack cannot hold: it used to start, then break dump and edits
    "seed_2_200": json.dumps(doc([node("n", "noise", options={"seed": 2**200})])).encode(),
}


def set_aside(state) -> list:
    return sorted(p for p in state.iterdir() if ".bad-" in p.name)


def dump(d: Daemon) -> dict:
    (blob,) = d.call("/graph/dump")
    return msgpack.unpackb(blob)


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_autosave_starts_empty_and_is_kept(tmp_path, case):
    state = tmp_path / "state"
    state.mkdir()
    data = CORRUPT[case]
    (state / "autosave.mgp").write_bytes(data)
    d = Daemon(state, "--backend", "null")
    try:
        out = d.output()
        assert "Traceback" not in out
        bad = set_aside(state)
        assert len(bad) == 1 and bad[0].read_bytes() == data  # byte-identical
        assert bad[0].name in out and "starting empty" in out
        assert dump(d)["nodes"] == []
        # the control thread lives and the next autosave is a normal one
        d.call("/graph/add", "gain", "after")
        assert [n["name"] for n in dump(d)["nodes"]] == ["after"]
        assert d.status()["nodes"] == 1
    finally:
        assert d.stop() == 0
    d2 = Daemon(state, "--backend", "null")
    try:
        assert [n["name"] for n in dump(d2)["nodes"]] == ["after"]
    finally:
        d2.stop()


def test_corrupt_autosave_falls_back_to_previous_snapshot(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "autosave.1.mgp").write_bytes(msgpack.packb(GOOD))
    (state / "autosave.mgp").write_bytes(CORRUPT["msgpack_list_key"])
    d = Daemon(state, "--backend", "null")
    try:
        out = d.output()
        assert "autosave.1.mgp" in out and "set aside" in out
        assert [n["name"] for n in dump(d)["nodes"]] == ["prev"]
        assert d.request("/node/prev/gain") == ("/node/prev/gain", [-3.0])
        bad = set_aside(state)
        assert len(bad) == 1 and bad[0].read_bytes() == CORRUPT["msgpack_list_key"]
    finally:
        d.stop()


def test_player_with_missing_file_keeps_its_connections(tmp_path):
    state = tmp_path / "state"
    (state / "audio").mkdir(parents=True)
    sf.write(str(state / "audio" / "here.wav"), np.zeros((4800, 1), np.float32), 48000)
    saved = doc([node("p", "player", options={"path": "gone.wav"}),
                 node("q", "player", options={"path": "here.wav"}),
                 node("g", "gain", params={"gain": -4.0}),
                 node("out", "output")],
                [["p:out", "g:in"], ["q:out", "g:in"], ["g:out", "out:in"]])
    (state / "autosave.mgp").write_bytes(msgpack.packb(saved))
    d = Daemon(state, "--backend", "null")
    try:
        out = d.output()
        assert "Traceback" not in out and "unreadable" not in out
        assert "gone.wav" in out and "missing" in out
        got = dump(d)
        assert sorted(n["name"] for n in got["nodes"]) == ["g", "out", "p", "q"]
        assert sorted(map(tuple, got["connections"])) == sorted(map(tuple, saved["connections"]))
        assert [n for n in got["nodes"] if n["name"] == "p"][0]["options"]["path"] == "gone.wav"
        assert d.status()["missing_files"] == 1
        assert set_aside(state) == []
    finally:
        assert d.stop(signal.SIGTERM) == 0


def test_a_restart_keeps_what_a_recorder_recorded(tmp_path):
    """A recorder running when the server is killed: after the restart the recorder
    records again, and the take it had made is still on disk, whole (it used to be
    truncated when the restored recorder opened its file again)."""
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "sine", "osc", "freq", 1000.0, "level", -12.0)
        d.call("/graph/add", "recorder", "rec", "channels", 1, "path", "take.wav")
        d.call("/graph/connect", "osc", "rec")
        d.call("/node/rec/record", 1.0)
        # the disk worker writes the take as it goes: waited for until a second is on
        # disk (192,000 bytes: 48,000 frames of mono float32, the recorder's format),
        # 30 s at most (was a 1.5 s sleep; a loaded host records late)
        take = state / "audio" / "take.wav"
        deadline = time.monotonic() + 30
        while (not take.exists() or take.stat().st_size < 192100) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        d.stop(signal.SIGKILL)
    assert take.stat().st_size > 48000, take.stat().st_size  # about a second is on disk
    d = Daemon(state, "--backend", "null")
    try:
        assert "rec" in [n["name"] for n in dump(d)["nodes"]]
        kept = state / "audio" / "take.take-1.wav"
        x, rate = sf.read(kept, dtype="float64")
        assert rate == 48000 and len(x) >= 24000, len(x)
        body = x[2400:-2400] if x.ndim == 1 else x[2400:-2400, 0]
        rms_db = 20 * np.log10(np.sqrt(np.mean(body ** 2)))
        assert abs(rms_db - (-12.0 - 3.0103)) < 0.1, rms_db  # the sine's RMS, as recorded
        assert "kept as take.take-1.wav" in d.output()
    finally:
        d.stop()


@pytest.mark.parametrize("size_kb", [40, 400])
def test_a_cut_off_json_patch_is_refused_at_once(size_kb):
    """A JSON patch cut inside a string full of escaped quotes (a full disk, an
    interrupted copy of a patch with an LV2 state) was scanned by a regex that
    went back to the end of the file from every escaped quote: 40 kB took 42 s on
    the control thread. It is refused as soon as the parser sees the end. (The
    bound only guards against a hang; it is 100x what the parser takes.)"""
    from mixgraph.server.errors import MixgraphError
    from mixgraph.server.state import decode

    text = '{"format": "mixgraph-patch", "version": 2, "metadata": {"note": "'
    text += '<p id=\\"1\\"/>' * (size_kb * 1024 // 13)
    t0 = time.thread_time()  # CPU: a loaded host's waits are no hang
    with pytest.raises(MixgraphError, match="not valid msgpack or JSON"):
        decode(text.encode(), "cut.json")
    assert time.thread_time() - t0 < 2.0
    # and a valid document nested too deep is still refused by depth, with a reason
    with pytest.raises(MixgraphError, match="nested deeper than"):
        decode(CORRUPT["json_deep"], "deep.json")
    with pytest.raises(MixgraphError, match="nested deeper than"):
        decode(json.dumps({"format": "mixgraph-patch", "x": [[[[1]]]] * 2 + [
            json.loads("[" * 200 + "]" * 200)]}).encode(), "deep200.json")


@pytest.mark.parametrize("seq", [2**64 - 1, 2**53 + 1])
def test_journal_seq_beyond_what_the_journal_numbers_is_set_aside(tmp_path, seq):
    """attack2 F9: an autosave whose journal_seq is past what the journal can number
    (segment names are 16 hex digits, msgpack holds at most 2^64 - 1) was accepted;
    edits then got /done, then internal errors, and a SIGKILL lost every one. Such a
    snapshot is corrupt: set aside, the previous one restored (the banner says so),
    and the edits after it are journaled and survive SIGKILL."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "autosave.1.mgp").write_bytes(msgpack.packb({**GOOD, "journal_seq": 0}))
    data = msgpack.packb(doc([node("cur", "gain")], journal_seq=seq))
    (state / "autosave.mgp").write_bytes(data)
    d = Daemon(state, "--backend", "null")
    try:
        out = d.output()
        assert "bad journal_seq" in out and "restored 1 nodes from autosave.1.mgp" in out
        bad = set_aside(state)
        assert len(bad) == 1 and bad[0].read_bytes() == data
        assert [n["name"] for n in dump(d)["nodes"]] == ["prev"]
        for i in range(10):
            assert d.call("/graph/add", "gain", f"n{i}") == ["/graph/add", f"n{i}"]
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        assert [n["name"] for n in dump(d)["nodes"]] == ["prev"] + [f"n{i}" for i in range(10)]
        assert "Traceback" not in d.output()
    finally:
        d.stop()
