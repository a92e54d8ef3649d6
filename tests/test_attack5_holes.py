"""Holes found by the fifth attack run (/tmp/attack5-findings), against a real daemon
(null backend) over real sockets where the defect needed one."""

from __future__ import annotations

import socket
import struct

import pytest

from mixgraph.clients.client import MixgraphFail
from mixgraph.server import cues as cues_mod
from mixgraph.server import scenes as scenes_mod
from mixgraph.server.engine import Engine
from mixgraph.server.errors import MixgraphError
from mixgraph.server.osc import Dispatcher
from mixgraph.server.scenes import show_of
from mixgraph.server.session import Session

from daemon_util import Daemon


@pytest.fixture
def rig():
    """An in-process session and dispatcher; say() returns the last reply."""
    engine = Engine(48000, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "offline", "block": 64})
    out: list = []

    def say(*m):
        d.dispatch(m[0], list(m[1:]), lambda a, r: out.append((a, r)))
        return out[-1]
    try:
        yield s, say
    finally:
        s.close()
        engine.free()


def _ostr(x: str) -> bytes:
    b = x.encode()
    return b + b"\0" * (4 - len(b) % 4)


def _tcp_request(port: int, address: str, *args: str | float) -> bytes:
    """One size-prefixed OSC message over TCP; its first reply frame."""
    tags, data = ",", b""
    for a in args:
        if isinstance(a, str):
            tags, data = tags + "s", data + _ostr(a)
        else:
            tags, data = tags + "f", data + struct.pack(">f", a)
    m = _ostr(address) + _ostr(tags) + data
    with socket.create_connection(("127.0.0.1", port), timeout=30) as t:
        t.sendall(struct.pack(">i", len(m)) + m)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = t.recv(1 << 16)
            assert chunk, "connection closed without a reply"
            buf += chunk
        return buf[4:4 + struct.unpack(">i", buf[:4])[0]]


def test_a_cue_action_longer_than_the_bound_is_refused(daemon):
    """attack5 A1: a cue's osc action was any length: 500 cues of 60 kB actions over
    TCP took the daemon to 402 MB and another client's /status to 1.6 s (the autosave
    re-encodes the cue list 4 times a second); 10,000 of them would have made an
    autosave too big to read back. An action past OSC_TEXT_MAX characters is refused
    with the reason; a short one is still taken."""
    daemon.call("/graph/add", "gain", "g")
    long = "/node/g/gain -6 " + "x" * 60000
    reply = _tcp_request(daemon.port, "/cue/set", 1.0, "osc", long)
    assert reply.startswith(b"/fail"), reply[:80]
    assert b"at most 1024 characters" in reply, reply[-200:]
    daemon.call("/cue/set", 1.0, "osc", "/node/g/gain -6")
    _, args = daemon.request("/cue/list")
    assert args == ["1", "1 osc '/node/g/gain -6'"], args


def test_the_cue_list_s_actions_are_bounded_together(rig, monkeypatch):
    """The whole list's osc text is bounded too (CUE_TEXT_MAX), in /cue/set, a cue file
    and a patch document alike; editing a cue that is already in the list does not
    count its old actions twice."""
    monkeypatch.setattr(cues_mod, "CUE_TEXT_MAX", 100)
    s, say = rig
    s.add_node("gain", "g")
    s.commit()
    act = "/node/g/gain -" + "1" * 26  # 40 characters
    assert say("/cue/set", 1, "osc", act)[0] == "/done"
    assert say("/cue/set", 2, "osc", act)[0] == "/done"
    assert say("/cue/set", 2, "osc", act[:-1])[0] == "/done"  # an edit: 79 in all
    a, r = say("/cue/set", 3, "osc", act)
    assert a == "/fail" and "more than 100" in r[-1], r
    assert sorted(show_of(s).cues.cues) == [1.0, 2.0]
    with pytest.raises(MixgraphError, match="more than 100"):
        cues_mod.parse_text("\n".join(f"{i} osc '{act}'" for i in (1, 2, 3)))
    doc = {"cues": [{"number": i, "osc": [act]} for i in (1, 2, 3)]}
    with pytest.raises(MixgraphError, match="more than 100"):
        show_of(s).cues.parse_dict(doc)


def test_stored_scene_values_are_bounded(rig, monkeypatch):
    """attack5 A2: every scene could hold the whole console: SCENES_MAX (1,000)
    scenes of 1,000 eq8 are 47 M values (41 of them took the daemon from 210 to
    574 MB). A store that would take the show's scenes past SCENE_VALUES_MAX is
    refused with the reason; storing a scene again over its old self, a scoped
    store and a delete make room as they should."""
    s, say = rig
    for i in range(4):
        s.add_node("eq8", f"e{i}")
    s.commit()
    assert say("/scene/store", "A")[0] == "/done"
    whole = show_of(s).scenes["A"].count()
    monkeypatch.setattr(scenes_mod, "SCENE_VALUES_MAX", 2 * whole + 10)
    assert say("/scene/store", "B")[0] == "/done"
    assert say("/scene/store", "B")[0] == "/done"  # again: replaces itself
    a, r = say("/scene/store", "C")
    assert a == "/fail" and f"more than {2 * whole + 10}" in r[-1], r
    assert say("/scene/store", "C", "/node/e0/b1gain")[0] == "/done"  # scoped: 1 value
    assert say("/scene/delete", "B")[0] == "/done"
    assert say("/scene/store", "D")[0] == "/done"
    assert sorted(show_of(s).scenes) == ["A", "C", "D"]
    doc = show_of(s).to_dict()
    doc["scenes"]["E"] = doc["scenes"]["A"]
    with pytest.raises(MixgraphError, match="scenes would hold"):
        show_of(s).load(doc)


def test_partial_writes_left_by_a_kill_mid_save_are_removed_at_start(tmp_path):
    """attack5 A3: a SIGKILL while the autosave was being written left its temporary
    file (`.autosave.mgp.xxxxxxxx`, a whole snapshot) in the state directory forever:
    6 kills mid-save of a 2 MB show left 6 files, 10 MB, and a crash loop fills the
    disk. The next start removes them (and a patch save's), and nothing else."""
    import signal

    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    d.call("/graph/add", "gain", "g")
    d.call("/node/g/gain", -7.0)
    d.call("/patch/save", "p")
    d.stop(signal.SIGKILL)
    left = [state / ".autosave.mgp.k2j4x9_a", state / ".autosave.mgp.00000000",
            state / "patches" / ".p.mgp.abcdefgh"]
    for p in left:
        p.write_bytes(b"\x80" * 100_000)
    keep = [state / ".autosave.mgp.short", state / "notes.txt",
            state / "patches" / ".hidden"]
    for p in keep:
        p.write_bytes(b"mine")
    d = Daemon(state, "--backend", "null")
    try:
        assert d.request("/node/g/gain")[1] == [-7.0]
        assert not [p for p in left if p.exists()]
        assert all(p.read_bytes() == b"mine" for p in keep)
        assert "removed 2 partial write(s)" in d.output()
        assert "removed 1 partial write(s)" in d.output()
    finally:
        d.stop()


def _keep_show(d: Daemon) -> None:
    d.call("/graph/add", "sine", "osc")
    d.call("/graph/add", "gain", "keep")
    d.call("/graph/add", "output", "out")
    d.call("/graph/connect", "osc", "keep")
    d.call("/graph/connect", "keep", "out")
    d.call("/node/keep/gain", -3.0)


def _doc(*nodes: dict) -> dict:
    return {"format": "mixgraph-patch", "version": 2, "sample_rate": 48000.0,
            "metadata": {}, "nodes": list(nodes), "connections": []}


@pytest.mark.parametrize("node", [
    {"name": "p", "type": "player", "options": {"path": "/etc/passwd"}},
    {"name": "p", "type": "player", "options": {"path": "../../../etc/passwd"}},
    {"name": "p", "type": "player", "options": {"path": "not-there.wav"}},
    {"name": "r", "type": "recorder", "options": {"path": "../../x.wav"}},
])
def test_a_patch_with_a_bad_file_fails_without_touching_the_graph(daemon, node):
    """attack5 A4: /patch/load of a document whose player or recorder has a path
    outside the data directory (or no file) answered /fail only after every node of
    the running graph had been removed: the mix went silent and the show was gone.
    Now it fails before anything changes."""
    import json

    _keep_show(daemon)
    patches = daemon.state_dir / "patches"
    patches.mkdir(exist_ok=True)
    (patches / "bad.json").write_text(json.dumps(_doc(node)))
    steps = daemon.request("/history")[1][:2]
    with pytest.raises(MixgraphFail, match="outside the data directory|no such file"):
        daemon.call("/patch/load", "bad")
    assert daemon.request("/history")[1][:2] == steps  # a failed command is no step
    assert daemon.request("/node/keep/gain")[1] == [-3.0]
    assert daemon.status()["nodes"] == 3
    with pytest.raises(MixgraphFail, match="already connected"):
        daemon.call("/graph/connect", "keep", "out")


def test_a_patch_that_fails_halfway_puts_the_graph_back(tmp_path):
    """A failure only adding a node can find (the recorder quota: the second of two
    recorders passes --max-recorder-channels) comes after nodes were removed and
    added: the graph is put back as it was, and the error says so."""
    import json

    d = Daemon(tmp_path / "state", "--backend", "null", "--max-recorder-channels", "2")
    try:
        _keep_show(d)
        patches = d.state_dir / "patches"
        patches.mkdir(exist_ok=True)
        (patches / "two.json").write_text(json.dumps(_doc(
            {"name": "r1", "type": "recorder", "channels": 2, "options": {"path": "a.wav"}},
            {"name": "r2", "type": "recorder", "channels": 2, "options": {"path": "b.wav"}})))
        steps = d.request("/history")[1][:2]
        with pytest.raises(MixgraphFail, match="recorder quota.*nothing loaded"):
            d.call("/patch/load", "two")
        assert d.request("/history")[1][:2] == steps
        assert d.request("/node/keep/gain")[1] == [-3.0]
        assert d.status()["nodes"] == 3
        with pytest.raises(MixgraphFail, match="already connected"):
            d.call("/graph/connect", "keep", "out")
    finally:
        d.stop()


def test_a_document_s_recall_safes_are_bounded_as_scene_safe_is(rig):
    """A patch's `safes` list was not held to SAFES_MAX (256), which /scene/safe
    enforces: a document of 5,000 loaded (the control thread compiling them for
    seconds, and every recall checking them)."""
    s, _ = rig
    many = {"safes": [f"/node/a{i}/gain" for i in range(scenes_mod.SAFES_MAX + 1)]}
    with pytest.raises(MixgraphError, match="more than 256 recall safes"):
        show_of(s).load(many)
    show_of(s).load({"safes": many["safes"][:256]})
    assert len(show_of(s).safes) == 256


def test_a_read_only_state_dir_is_one_line_not_a_traceback(tmp_path):
    """attack5 A5: `serve --state-dir` on a read-only file system (a tmpfs remounted
    ro, a card locked) ended in an OSError traceback from the lock file (exit 1); now
    it is one line naming the directory and the cause (exit 2), as a file in the way
    already was. Needs mount (root); skipped where it is not allowed."""
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "state").mkdir()
        (mnt / "state" / "serve.lock").write_text("1\n")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        logs = tmp_path / "logs"
        logs.mkdir()
        link = logs / "state"  # the daemon's log goes beside the state dir: keep it writable
        link.symlink_to(mnt / "state")
        with pytest.raises(RuntimeError) as e:
            Daemon(link, "--backend", "null")
        text = " ".join(str(e.value).split())  # the console wraps lines
        assert "daemon exited 2" in text, text
        assert "Traceback" not in text, text
        assert "as the state directory (--state-dir): Read-only file system" in text, text
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_midi_map_files_are_written_and_read_as_patches_are(tmp_path):
    """/midi/save wrote `<name>.tmp` and renamed it without fsync (a power cut could
    leave an empty map file; a full disk left the .tmp), and /midi/load read a file
    of any size. Now a map file is written with write_atomic, a kill's partial write
    in midi/ is removed at the next start, and a file past 16 MB is refused."""
    import signal

    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    d.call("/graph/add", "gain", "g")
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7)
    d.call("/midi/save", "desk")
    midi = state / "midi"
    assert sorted(p.name for p in midi.iterdir()) == ["desk.json"]
    (midi / "big.json").write_bytes(b" " * (16 << 20) + b"{}")
    with pytest.raises(MixgraphFail, match="larger than 16 MB"):
        d.call("/midi/load", "big")
    d.stop(signal.SIGKILL)
    (midi / ".desk.json.k2j4x9_a").write_bytes(b"{")
    d = Daemon(state, "--backend", "null")
    try:
        assert not (midi / ".desk.json.k2j4x9_a").exists()
        assert d.request("/midi/load", "desk")[1][-1] == 1
    finally:
        d.stop()
