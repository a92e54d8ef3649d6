"""Disk streaming: the player and recorder nodes with server/diskio.py,
checked against the files' own samples (soundfile as the reference)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf

from mixgraph.server.diskio import DiskIO
from mixgraph.server.engine import Engine
from mixgraph.server.errors import MixgraphError
from mixgraph.server.session import Session

SR = 48000
BLOCK = 512


@pytest.fixture
def make(tmp_path):
    made = []

    def _make(hw_out=2, **kw):
        e = Engine(SR, 0, hw_out)
        s = Session(e, data_dir=tmp_path, confine_paths=False, **kw)
        made.append((s, e))
        return s, e

    yield _make
    for s, e in made:
        s.close()
        e.free()


def render(s: Session, e: Engine, frames: int, pump: bool = True) -> np.ndarray:
    """Offline loop: one disk pass between blocks, as the render backend does."""
    out = []
    for pos in range(0, frames, BLOCK):
        out.append(e.process(min(BLOCK, frames - pos)))
        s.service()
        if pump:
            s.disk.pump()
    return np.concatenate(out)


def noise_file(path, frames, channels, seed=1, **kw):
    data = np.random.default_rng(seed).uniform(-0.8, 0.8, (frames, channels)).astype(np.float32)
    sf.write(str(path), data, SR, **kw)
    # what the file holds, as libsndfile decodes it (FLAC is quantised)
    return sf.read(str(path), dtype="float32", always_2d=True)[0]


def player_patch(s, path, **opts):
    s.add_node("player", "pl", {"path": str(path), **opts})
    s.add_node("output", "out")
    s.connect("pl", "out")
    s.commit()


# ---- player ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt,subtype", [("wav", "FLOAT"), ("wav", "PCM_16"),
                                         ("flac", "PCM_24"), ("flac", "PCM_16")])
def test_player_output_equals_file(make, tmp_path, fmt, subtype):
    s, e = make()
    path = tmp_path / f"in.{fmt}"
    data = noise_file(path, 20000, 2, subtype=subtype)
    player_patch(s, path)
    s.set_param("pl", "play", 1, time=1000)  # starts at an exact sample
    y = render(s, e, 30000)
    assert not np.any(y[:1000])
    assert np.array_equal(y[1000:21000], data)  # bit-exact: level 0 dB is 1.0
    assert not np.any(y[21000:])  # end of file: silence
    assert s.readout("pl", "underruns") == [0.0]  # the end of the file is not an underrun
    assert abs(s.readout("pl", "position")[0] - 20000 / SR) < 1e-6


def test_mono_file_into_stereo_player_duplicates(make, tmp_path):
    s, e = make()
    path = tmp_path / "mono.wav"
    data = noise_file(path, 6000, 1, subtype="FLOAT")
    player_patch(s, path, channels=2, play=1)
    y = render(s, e, 8000)
    assert np.array_equal(y[:6000, 0], data[:, 0])
    assert np.array_equal(y[:6000, 1], data[:, 0])
    assert not np.any(y[6000:])


def test_player_loop(make, tmp_path):
    s, e = make()
    path = tmp_path / "loop.flac"
    data = noise_file(path, 5000, 2, subtype="PCM_24")
    player_patch(s, path, loop=1, play=1)
    y = render(s, e, 23 * 1024)
    reps = np.tile(data, (len(y) // 5000 + 1, 1))[: len(y)]
    assert np.array_equal(y, reps)  # seamless: the file again and again
    assert s.readout("pl", "underruns") == [0.0]
    # the position is where in the file the output is, not the time played in all
    assert abs(s.readout("pl", "position")[0] - (len(y) % 5000) / SR) < 1e-6


def test_player_stop_rewinds_and_level(make, tmp_path):
    s, e = make()
    path = tmp_path / "in.wav"
    data = noise_file(path, 48000, 2, subtype="FLOAT")
    player_patch(s, path, level=-6)
    s.set_param("pl", "play", 1, time=0)
    s.set_param("pl", "play", 0, time=10000)  # stop: silence, rewind
    s.set_param("pl", "play", 1, time=20000)  # play again: from the start
    y = render(s, e, 40000)
    g = np.float32(10 ** (-6 / 20))
    assert np.max(np.abs(y[:10000] - data[:10000] * g)) < 1e-7  # one float32 product
    assert not np.any(y[10000:20000])
    assert np.max(np.abs(y[20000:] - data[:20000] * g)) < 1e-7


def test_player_restart_of_a_long_file_does_not_underrun(make, tmp_path):
    # a file longer than the player's fifo: when it is stopped the fifo is full
    # of data from the old position, which must make room for the new start
    s, e = make()
    path = tmp_path / "long.wav"
    data = noise_file(path, 4 * SR, 2, subtype="FLOAT")
    player_patch(s, path, play=1)
    render(s, e, SR // 2)
    s.set_param("pl", "play", 0)
    render(s, e, 4096)
    t = e.time + 3 * BLOCK
    s.set_param("pl", "play", 1, time=t)
    y = render(s, e, SR // 2)
    k = 3 * BLOCK
    assert not np.any(y[:k])
    assert np.array_equal(y[k:], data[: len(y) - k])
    assert s.readout("pl", "underruns") == [0.0]


def test_player_underrun_counted_when_disk_is_not_pumped(make, tmp_path):
    s, e = make()
    path = tmp_path / "long.wav"
    data = noise_file(path, 4 * SR, 2, subtype="FLOAT")
    player_patch(s, path, play=1)
    y = render(s, e, 3 * SR, pump=False)
    have = len(y) - s.readout("pl", "underruns")[0]  # what the fifo held at open
    assert 0 < have < 3 * SR
    assert np.array_equal(y[: int(have)], data[: int(have)])
    assert not np.any(y[int(have):])


def test_player_wrong_sample_rate(make, tmp_path):
    s, _ = make()
    path = tmp_path / "cd.wav"
    sf.write(str(path), np.zeros((1000, 2), np.float32), 44100)
    with pytest.raises(MixgraphError, match=r"cd\.wav is 44100 Hz; the engine runs at 48000 Hz"):
        player_patch(s, path)
    assert "pl" not in s.graph.nodes and not s.disk._streams


def test_player_bad_files(make, tmp_path):
    s, _ = make()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not a sound file" * 10)
    with pytest.raises(MixgraphError, match=r"cannot open junk\.wav"):
        s.add_node("player", "a", {"path": str(junk)})
    with pytest.raises(MixgraphError, match="no such file"):
        s.add_node("player", "a", {"path": str(tmp_path / "missing.wav")})
    st = tmp_path / "st.wav"
    sf.write(str(st), np.zeros((100, 2), np.float32), SR)
    with pytest.raises(MixgraphError, match=r"st\.wav has 2 channels; the player has 4"):
        s.add_node("player", "a", {"path": str(st), "channels": 4})
    with pytest.raises(MixgraphError, match="needs a `path` option"):
        s.add_node("player", "a")
    assert not s.graph.nodes and not s.disk._streams


def test_paths_confined_to_data_dir(tmp_path):
    e = Engine(SR, 0, 2)
    s = Session(e, data_dir=tmp_path / "data")
    try:
        (tmp_path / "data").mkdir()
        sf.write(str(tmp_path / "outside.wav"), np.zeros((10, 2), np.float32), SR)
        for p in ["../outside.wav", str(tmp_path / "outside.wav")]:
            with pytest.raises(MixgraphError, match="outside the data directory"):
                s.add_node("player", "a", {"path": p})
        s.add_node("recorder", "r", {"path": "takes/one.wav"})
        assert (tmp_path / "data" / "takes" / "one.wav").exists()
    finally:
        s.close()
        e.free()


# ---- recorder -----------------------------------------------------------------------

def recorder_patch(s, path, **opts):
    s.add_node("sine", "osc", {"freq": 997, "level": -3})
    s.add_node("noise", "nz", {"seed": 5, "level": -30})
    s.add_node("pan", "p", {"pan": 0.3})
    s.add_node("recorder", "rec", {"path": str(path), **opts})
    s.add_node("output", "out")
    for a, b in [("osc", "p"), ("nz", "p"), ("p", "rec"), ("p", "out")]:
        s.connect(a, b)
    s.commit()


def test_recorder_wav_equals_rendered_signal(make, tmp_path):
    s, e = make()
    path = tmp_path / "take.wav"
    recorder_patch(s, path, record=1)
    s.set_param("rec", "record", 0, time=SR)  # stop after exactly 1 s
    y = render(s, e, SR + 3 * BLOCK)[:SR]
    assert abs(s.readout("rec", "recorded")[0] - 1.0) < 1e-6
    s.remove_node("rec")  # closes the file once the audio thread lets go
    for _ in range(10):
        render(s, e, BLOCK)
    assert "rec" not in s.live and not s.disk._streams
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.format, info.subtype) == (SR, 2, "WAV", "FLOAT")
    data, _ = sf.read(str(path), dtype="float32")
    assert np.array_equal(data, y)  # float WAV: bit-exact


def test_recorder_removed_while_recording_ends_with_a_fade(make, tmp_path):
    s, e = make()
    path = tmp_path / "take.wav"
    recorder_patch(s, path, record=1)
    y = render(s, e, SR // 4)
    s.remove_node("rec")
    s.commit()  # edits take effect at the commit (the daemon commits after each batch)
    for _ in range(10):
        render(s, e, BLOCK)
    assert not s.disk._streams
    data, _ = sf.read(str(path), dtype="float32")
    assert np.array_equal(data[: len(y)], y)
    tail = data[len(y):]
    fade = int(0.005 * SR)
    # the input's connection fades out over 5 ms; what follows until the node
    # leaves the plan is silence, not a click
    assert len(tail) <= fade + 2 * BLOCK
    assert not np.any(tail[fade:])
    assert np.max(np.abs(np.diff(data[len(y) - 1:], axis=0))) <= np.max(
        np.abs(np.diff(y, axis=0))) * 1.001


def test_recorder_flac(make, tmp_path):
    s, e = make()
    path = tmp_path / "take.flac"
    recorder_patch(s, path, record=1)
    y = render(s, e, SR // 2)
    s.close()
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.frames) == ("FLAC", "PCM_24", SR // 2)
    data, _ = sf.read(str(path), dtype="float64")
    # 24-bit: within one LSB (2^-23) of the float signal
    assert np.max(np.abs(data - y)) <= 2.0 ** -23
    assert np.max(np.abs(y)) > 0.5


def test_recorder_pause_is_sample_exact(make, tmp_path):
    s, e = make()
    path = tmp_path / "take.wav"
    recorder_patch(s, path)
    s.set_param("rec", "record", 1, time=1000)
    s.set_param("rec", "record", 0, time=5000)
    s.set_param("rec", "record", 1, time=9111)
    y = render(s, e, 12000)
    s.close()
    data, _ = sf.read(str(path), dtype="float32")
    assert np.array_equal(data, np.concatenate([y[1000:5000], y[9111:]]))


def test_recorder_bad_format(make, tmp_path):
    s, _ = make()
    with pytest.raises(MixgraphError, match="recorder format 'mp3': use wav or flac"):
        s.add_node("recorder", "r", {"path": str(tmp_path / "x.mp3")})
    assert not s.graph.nodes


def test_recorder_overflow_is_counted(make, tmp_path):
    s, e = make(hw_out=1)
    path = tmp_path / "take.wav"
    s.add_node("sine", "osc", {"freq": 440, "level": -6})
    s.add_node("recorder", "rec", {"path": str(path), "channels": 1, "record": 1})
    s.add_node("output", "out", {"channels": 1})
    s.connect("osc", "rec")
    s.connect("osc", "out")
    s.commit()
    capacity = s.live["rec"].stream.fifo.writable
    y = render(s, e, 3 * SR, pump=False)  # the disk worker never runs
    assert capacity < 3 * SR
    # every frame that did not fit is counted, none silently
    assert s.readout("rec", "dropped") == [float(3 * SR - capacity)]
    assert abs(s.readout("rec", "recorded")[0] - capacity / SR) < 1e-6
    s.close()
    data, _ = sf.read(str(path), dtype="float32")
    assert np.array_equal(data, y[:capacity, 0])


CHILD = textwrap.dedent("""
    import sys, time
    from mixgraph.server.diskio import DiskIO
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    e = Engine(48000, 0, 2)
    disk = DiskIO(48000, period_s=0.005, flush_s=0.05)
    s = Session(e, confine_paths=False, disk=disk)
    s.add_node("sine", "osc", {"freq": 997, "level": -3})
    s.add_node("noise", "nz", {"seed": 5, "level": -30})
    s.add_node("pan", "p", {"pan": 0.3})
    s.add_node("recorder", "rec", {"path": sys.argv[1], "record": 1})
    s.add_node("output", "out")
    for a, b in [("osc", "p"), ("nz", "p"), ("p", "rec"), ("p", "out")]:
        s.connect(a, b)
    s.commit()
    disk.start()
    e.null_start(64)
    print("STARTED", flush=True)
    while True:
        time.sleep(0.01)
        s.service()
""")


def test_recorder_survives_sigkill(make, tmp_path):
    path = tmp_path / "killed.wav"
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "STARTED"
        time.sleep(1.0)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    assert p.returncode == -signal.SIGKILL
    data, sr = sf.read(str(path), dtype="float32")  # readable as it was left
    assert sr == SR and data.shape[1] == 2
    # flushed every 50 ms: most of the second is there (a loose lower bound, for
    # loaded machines: the point is that what is there is right)
    assert SR // 4 < len(data) < 2 * SR
    # ... and it is exactly what the patch renders (offline reference)
    s, e = make()
    recorder_patch(s, tmp_path / "ref.wav", record=1)
    y = render(s, e, len(data))
    assert np.array_equal(data, y)


def test_diskio_thread_keeps_a_recorder_going(tmp_path):
    # the worker thread alone (no manual pumping) drains the recorder: 6 s of
    # audio rendered at about 10x real time through a fifo that holds 2.7 s
    e = Engine(SR, 0, 2)
    disk = DiskIO(SR, period_s=0.005, flush_s=0.05)
    s = Session(e, data_dir=tmp_path, confine_paths=False, disk=disk)
    try:
        recorder_patch(s, tmp_path / "t.wav", record=1)
        capacity = s.live["rec"].stream.fifo.writable
        total = 6 * SR
        assert capacity < total / 2
        disk.start()
        out = []
        for _ in range(total // BLOCK):
            out.append(e.process(BLOCK))
            time.sleep(0.001)
        time.sleep(0.1)
        assert s.readout("rec", "dropped") == [0.0]
        disk.stop()
    finally:
        s.close()
        e.free()
    data, _ = sf.read(str(tmp_path / "t.wav"), dtype="float32")
    assert np.array_equal(data, np.concatenate(out))
