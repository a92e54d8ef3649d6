"""Offline render: patches + scores (text and scsynth NRT binary) through the CLI
and the API, checked against closed-form signals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mixgraph.server.errors import MixgraphError
from mixgraph.server.render import render
from mixgraph.server.score import ScoreEvent, build_binary, parse_text, read_score
from mixgraph.server.state import read_patch, write_patch

RATE = 48000


def tone_patch(gain_db: float = 0.0) -> dict:
    return {
        "format": "mixgraph-patch", "version": 1, "sample_rate": RATE,
        "nodes": [
            {"name": "osc", "type": "sine", "channels": 1, "options": {},
             "params": {"freq": 750.0, "level": -6.0}},
            {"name": "g", "type": "gain", "channels": 1, "options": {},
             "params": {"gain": gain_db}},
            {"name": "out", "type": "output", "channels": 1, "options": {}, "params": {}},
        ],
        "connections": [["osc:out", "g:in"], ["g:out", "out:in"]],
        "metadata": {"title": "tone"},
    }


def expected_tone(n: int, amp: float = 10 ** (-6 / 20)) -> np.ndarray:
    # the oscillator accumulates phase in double precision: sin(2*pi*f*k/fs)
    k = np.arange(n)
    return amp * np.sin(2 * np.pi * 750.0 * k / RATE)


def test_render_patch_matches_formula(tmp_path):
    p = tmp_path / "tone.json"
    write_patch(tone_patch(), p)
    out = tmp_path / "tone.wav"
    res = render(p, out, duration_s=0.5)
    y, rate = sf.read(out, dtype="float32")
    assert rate == RATE and len(y) == 24000 and res.failures == []
    # float32 output vs double reference: within 1e-6 absolute
    np.testing.assert_allclose(y, expected_tone(24000), atol=1e-6)


def test_text_score_event_at_exact_sample(tmp_path):
    p = tmp_path / "tone.mgp"
    write_patch(tone_patch(), p)
    score = tmp_path / "score.txt"
    score.write_text("# mute exactly at 0.25 s\n0.25 /node/g/mute 1\n")
    out = tmp_path / "o.wav"
    render(p, out, score=score, duration_s=0.5)
    y, _ = sf.read(out, dtype="float32")
    ref = expected_tone(24000)
    at = 12000
    # untouched before the event, to the sample
    np.testing.assert_allclose(y[:at], ref[:at], atol=1e-6)
    # the mute is a 10 ms linear fade starting at the event's sample
    ramp = 1.0 - np.arange(1, 481) / 480.0
    np.testing.assert_allclose(y[at:at + 480], ref[at:at + 480] * ramp, atol=2e-6)
    assert np.all(y[at + 480:] == 0.0)


def test_binary_nrt_score_equals_text_score(tmp_path):
    p = tmp_path / "tone.mgp"
    write_patch(tone_patch(), p)
    text = tmp_path / "s.txt"
    text.write_text("0.1 /node/g/gain -12\n0.2 /node/osc/freq 1500\n")
    binary = tmp_path / "s.osc"
    binary.write_bytes(build_binary(read_score(text)))
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    render(p, a, score=text, duration_s=0.3)
    render(p, b, score=binary, duration_s=0.3)
    ya, _ = sf.read(a, dtype="float32")
    yb, _ = sf.read(b, dtype="float32")
    assert np.array_equal(ya, yb)
    assert not np.array_equal(ya[4800:], expected_tone(14400)[4800:])


def test_scsynth_style_nrt_bytes(tmp_path):
    """A hand-built NRT file: int32 length + bundle, timetag 1.5 s from 0."""
    import struct

    msg = b"/node/g/gain\x00\x00\x00\x00,f\x00\x00" + struct.pack(">f", -20.0)
    bundle = b"#bundle\x00" + struct.pack(">II", 1, 1 << 31) + struct.pack(">i", len(msg)) + msg
    path = tmp_path / "x.osc"
    path.write_bytes(struct.pack(">i", len(bundle)) + bundle)
    (ev,) = read_score(path)
    assert ev.time_s == 1.5 and ev.address == "/node/g/gain" and ev.args == [-20.0]


def test_score_graph_edits_and_failures_reported(tmp_path):
    p = tmp_path / "tone.mgp"
    write_patch(tone_patch(), p)
    score = tmp_path / "s.txt"
    score.write_text(
        "0.1 /graph/add noise hiss level -30 seed 7\n"
        "0.1 /graph/connect hiss out\n"
        "0.2 /node/nobody/gain 0\n"
    )
    res = render(p, tmp_path / "o.wav", score=score, duration_s=0.3)
    assert len(res.failures) == 1 and "no node named 'nobody'" in res.failures[0]
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    resid = y[6000:] - expected_tone(14400)[6000:]
    # -30 dBFS RMS noise arrives (after its 5 ms fade-in): within 0.5 dB over 0.1 s
    assert 20 * np.log10(np.sqrt(np.mean(resid[1000:] ** 2))) == pytest.approx(-30, abs=0.5)


def test_render_with_input_file(tmp_path):
    doc = {
        "format": "mixgraph-patch", "version": 1, "sample_rate": RATE,
        "nodes": [
            {"name": "mic", "type": "input", "channels": 1, "options": {}, "params": {}},
            {"name": "g", "type": "gain", "channels": 1, "options": {}, "params": {"gain": -6}},
            {"name": "p", "type": "pan", "channels": 1, "options": {}, "params": {"pan": -1}},
            {"name": "out", "type": "output", "channels": 2, "options": {}, "params": {}},
        ],
        "connections": [["mic", "g"], ["g", "p"], ["p", "out"]],
    }
    p = tmp_path / "p.json"
    p.write_text(json.dumps(doc))
    rng = np.random.default_rng(1)
    x = (rng.uniform(-0.5, 0.5, 9600)).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, RATE, subtype="FLOAT")
    out = tmp_path / "o.wav"
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render", str(p), "-o",
                        str(out), "--in", f"mic={tmp_path / 'in.wav'}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(out, dtype="float32")
    assert y.shape == (9600, 2)
    # hard left, constant power: gL = cos(0) = 1, gR = sin(0) = 0; -6 dB = 10^(-6/20)
    np.testing.assert_allclose(y[:, 0], x * np.float32(10 ** (-6 / 20)), rtol=1e-6, atol=1e-7)
    assert np.max(np.abs(y[:, 1])) < 1e-7


def test_render_of_a_saved_show_finds_its_audio_files(tmp_path):
    """A patch saved by the daemon names its player files relative to
    <state>/audio, as the daemon reads them; rendering that patch file (and the
    autosave) finds them there, so the render plays what the show plays."""
    from daemon_util import Daemon

    state = tmp_path / "state"
    (state / "audio").mkdir(parents=True)
    x = (0.25 * np.sin(2 * np.pi * 500 * np.arange(4800) / RATE)).astype(np.float32)
    sf.write(state / "audio" / "loop.wav", x, RATE, subtype="FLOAT")
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "player", "pl", "path", "loop.wav", "channels", 1, "play", 1)
        d.call("/graph/add", "output", "out", "channels", 1)
        d.call("/graph/connect", "pl", "out")
        d.call("/patch/save", "show")
    finally:
        d.stop()
    for patch in (state / "patches" / "show.mgp", state / "autosave.mgp"):
        out = tmp_path / f"{patch.stem}.wav"
        r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render", str(patch),
                            "-o", str(out), "--duration", "0.1"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        y, _ = sf.read(out, dtype="float32", always_2d=True)
        assert np.max(np.abs(y[:, 0])) == pytest.approx(0.25, abs=1e-3), patch


def test_render_errors_are_clear(tmp_path):
    p = tmp_path / "tone.mgp"
    write_patch(tone_patch(), p)
    with pytest.raises(MixgraphError, match="--duration"):
        render(p, tmp_path / "o.wav")
    bad = dict(tone_patch())
    bad["connections"] = [["out", "osc"]]
    with pytest.raises(MixgraphError, match="no output port"):
        render(bad, tmp_path / "o.wav", duration_s=0.1)
    with pytest.raises(MixgraphError, match="no input node"):
        render(p, tmp_path / "o.wav", duration_s=0.1, inputs={"osc": "x.wav"})
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render", str(p), "-o",
                        str(tmp_path / "o.wav")], capture_output=True, text=True)
    assert r.returncode == 2 and "--duration" in r.stderr


def test_text_score_parsing():
    evs = parse_text('0 /graph/add sine "a b" freq 100\n1.5 /x T F 3 2.5 word # comment\n')
    assert evs[0] == ScoreEvent(0.0, "/graph/add", ["sine", "a b", "freq", 100], 1)
    assert evs[1].args == [True, False, 3, 2.5, "word"]
    for bad in ("x /a", "1 noaddress", "-1 /a", "1"):
        with pytest.raises(MixgraphError, match="score line 1"):
            parse_text(bad)


def test_patch_json_msgpack_roundtrip(tmp_path):
    doc = tone_patch()
    write_patch(doc, tmp_path / "a.mgp")
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "patch",
                        str(tmp_path / "a.mgp"), str(tmp_path / "a.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "a.json").read_text()) == doc
    assert read_patch(tmp_path / "a.json") == read_patch(tmp_path / "a.mgp") == doc
    (tmp_path / "bad.mgp").write_bytes(b"\xc1\xc1garbage")
    with pytest.raises(MixgraphError, match="not valid msgpack or JSON"):
        read_patch(tmp_path / "bad.mgp")


def test_score_actions_run_offline_and_unfinished_ones_are_reported(tmp_path):
    """A node action in a score runs against render time: align's measure on a noise
    split through a 2 ms delay sets the delay; one the render ends before finishing
    is reported as a failure, not dropped."""
    doc = {
        "format": "mixgraph-patch", "version": 1, "sample_rate": RATE,
        "nodes": [
            {"name": "n", "type": "noise", "channels": 1, "options": {"seed": 3},
             "params": {"level": -20}},
            {"name": "late", "type": "delay", "channels": 1, "options": {},
             "params": {"time": 2.0, "feedback": 0.0, "mix": 100.0}},
            {"name": "al", "type": "align", "channels": 1, "options": {}, "params": {}},
            {"name": "out", "type": "output", "channels": 1, "options": {}, "params": {}},
        ],
        "connections": [["n:out", "al:in"], ["n:out", "late:in"], ["late:out", "al:ref"],
                        ["al:out", "out:in"]],
        "metadata": {},
    }
    p = tmp_path / "al.json"
    write_patch(doc, p)
    score = tmp_path / "s.txt"
    score.write_text("0.1 /node/al/measure 0.5\n0.9 /node/al/measure 2\n")
    res = render(p, tmp_path / "o.wav", score=score, duration_s=1.2)
    assert len(res.failures) == 1, res.failures
    assert "line 2" in res.failures[0] and "render ended before" in res.failures[0]


def _hot_sine_patch() -> dict:
    """A full-scale 750 Hz sine through +6 dB of gain: peaks at 1.995 (+6.0 dBFS)."""
    doc = tone_patch(6.0)
    doc["nodes"][0]["params"]["level"] = 0.0
    return doc


def test_float_render_keeps_levels_over_full_scale_and_reports_them(tmp_path):
    """Issue 12 defect 6: a plain render clipped at 0 dBFS without a word (fails on
    main: the file peaks at 1.0 and the line says nothing of overs). A float file
    keeps +6 dBFS; an integer file clips and says how many samples it clipped."""
    p = tmp_path / "hot.json"
    write_patch(_hot_sine_patch(), p)
    n = RATE // 10
    amp = 10 ** (6 / 20)  # 1.995, +6.0 dBFS
    ref = amp * np.sin(2 * np.pi * 750.0 * np.arange(n) / RATE)  # the formula, not the code
    over = int(np.count_nonzero(np.abs(ref) > 1.0))
    assert over == int(np.count_nonzero(np.abs(ref) > 1.0 + 1e-4))  # none near the edge
    for sub, name in ((None, "hot.wav"), ("PCM_16", "hot16.wav")):
        out = tmp_path / name
        cmd = [sys.executable, "-m", "mixgraph.server.cli", "render", str(p), "-o", str(out),
               "--duration", str(n / RATE)] + (["--subtype", sub] if sub else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        y, _ = sf.read(out, dtype="float64")
        if sub is None:
            assert sf.info(str(out)).subtype == "FLOAT"
            np.testing.assert_allclose(y, ref, atol=2e-6)  # +6 dBFS peaks kept
            assert 20 * np.log10(np.max(np.abs(y))) == pytest.approx(6.0, abs=0.01)
            assert f"peak +6.0 dBFS, {over} samples over 0 dBFS" in r.stderr, r.stderr
        else:
            assert np.max(np.abs(y)) <= 1.0
            clipped = np.abs(ref) > 1.0
            # held at full scale where the formula is over it, the formula elsewhere
            assert np.all(np.abs(y[clipped]) >= 32766 / 32768)
            np.testing.assert_allclose(y[~clipped], ref[~clipped], atol=2 / 32768)
            assert f"peak +0.0 dBFS, {over} samples clipped at 0 dBFS" in r.stderr, r.stderr
    # the API says the same; NaN and Inf are still scrubbed without a ceiling (engine test)
    res = render(p, tmp_path / "api.wav", duration_s=n / RATE)
    assert res.float_file and res.overs == over and res.clipped == 0
    assert res.peak == pytest.approx(amp, abs=1e-4)


def test_engine_ceiling_per_engine_none_keeps_overs_and_still_scrubs_nan_inf():
    """Live backends keep the 0 dBFS ceiling (the default); an engine with none
    (offline renders to float files) passes +-3.0 through and still turns NaN
    and +-Inf into 0 (fails on main: set_ceiling_db(None) did not exist and
    +Inf was ignored by mg_engine_set_ceiling)."""
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    x = np.array([[3.0], [np.inf], [np.nan], [-3.0], [-np.inf], [0.5]] * 8, np.float32)
    want = {None: [3.0, 0.0, 0.0, -3.0, 0.0, 0.5], 0.0: [1.0, 0.0, 0.0, -1.0, 0.0, 0.5],
            -6.0: [10 ** (-6 / 20), 0.0, 0.0, -(10 ** (-6 / 20)), 0.0, 0.5]}
    for ceiling, vals in want.items():
        e = Engine(RATE, 1, 1)
        if ceiling != 0.0:
            e.set_ceiling_db(ceiling)
        s = Session(e)
        try:
            s.add_node("input", "in", {"channels": 1})
            s.add_node("output", "out", {"channels": 1})
            s.connect("in", "out")
            s.commit()
            e.process(4800, None)  # past the connection's fade-in
            y = e.process(len(x), x)[:, 0]
            np.testing.assert_allclose(y[:6], vals, rtol=1e-6)
            st = e.stats()
            assert st.nan_scrubbed == 24
            assert st.clipped == (0 if ceiling is None else 16)
        finally:
            s.close()
            e.free()
