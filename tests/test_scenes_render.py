"""Scenes, morphs and cues in offline renders (server/render.py with a score):
the trajectories and sample times are computed here from the published rules
(the fader law, the curves, the cue timing of docs/protocol.md)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mixgraph.server.render import render

RATE = 48000
FADER = [(0.0, -120.0), (0.0625, -60.0), (0.25, -30.0), (0.5, -10.0), (0.75, 0.0), (1.0, 24.0)]


def fader_norm(db: float) -> float:
    return float(np.interp(db, [d for _, d in FADER], [n for n, _ in FADER]))


def fader_db(x) -> np.ndarray:
    return np.interp(x, [n for n, _ in FADER], [d for _, d in FADER])


def amp(db):
    return 10 ** (np.asarray(db) / 20)


def patch() -> dict:
    """DC 1.0 in -> g (a fader) -> m (a mute) -> out: the output is g's gain."""
    return {
        "format": "mixgraph-patch", "version": 2, "sample_rate": RATE,
        "nodes": [
            {"name": "in", "type": "input", "channels": 1, "options": {}, "params": {}},
            {"name": "g", "type": "gain", "channels": 1, "options": {},
             "params": {"gain": -20.0}},
            {"name": "m", "type": "gain", "channels": 1, "options": {}, "params": {}},
            {"name": "out", "type": "output", "channels": 1, "options": {}, "params": {}},
        ],
        "connections": [["in:out", "g:in"], ["g:out", "m:in"], ["m:out", "out:in"]],
        "metadata": {},
    }


def run(tmp_path, score: str, seconds: float) -> tuple[np.ndarray, list]:
    dc = tmp_path / "dc.wav"
    sf.write(dc, np.ones(int(seconds * RATE) + 10, dtype=np.float32), RATE, subtype="FLOAT")
    s = tmp_path / "s.txt"
    s.write_text(score)
    out = tmp_path / "o.wav"
    res = render(patch(), out, score=s, duration_s=seconds, inputs={"in": str(dc)})
    y, _ = sf.read(out, dtype="float64")
    return y, res.failures


SCENES = """0 /node/g/gain 6
0 /node/m/mute 1
0 /scene/store B
0 /node/g/gain -20
0 /node/m/mute 0
0 /scene/store A
"""


@pytest.mark.parametrize("curve", ["linear", "scurve"])
def test_recall_fade_follows_taper_every_sample(tmp_path, curve):
    """A 2 s recall from A (-20 dB, unmuted) to B (+6 dB, muted) at 0.1 s: the
    fader moves along the fader law in position, curve(j / N) for j = 1..N, at
    every sample (tolerance 2e-6 relative: float32 output of a double
    computation); the mute, which cuts sound, switches at the end of the fade
    (its own 10 ms fade starts at sample s0 + N)."""
    y, fails = run(tmp_path, SCENES + f"0 /scene/fade B 2 {curve}\n0.1 /scene/recall B\n", 2.4)
    assert fails == []
    s0, n = int(0.1 * RATE), 2 * RATE
    np.testing.assert_allclose(y[:s0], amp(-20), rtol=1e-6)
    j = np.arange(1, n + 1) / n
    c = j if curve == "linear" else j * j * (3 - 2 * j)
    p0, p1 = fader_norm(-20), fader_norm(6)
    want = amp(fader_db(p0 + (p1 - p0) * c))
    np.testing.assert_allclose(y[s0:s0 + n], want, rtol=2e-6)
    # the mute: not before the end, then its 10 ms (480-sample) linear fade
    k = np.arange(1, 481) / 480
    np.testing.assert_allclose(y[s0 + n:s0 + n + 480], amp(6) * (1 - k), rtol=1e-5, atol=1e-7)
    assert np.all(y[s0 + n + 480:] == 0.0)


def test_unmute_switches_at_start(tmp_path):
    """From B (muted) back to A with a 1 s fade: the unmute starts at the fade's
    first sample, while the fader is still near B's level."""
    score = SCENES + "0 /scene/recall B 0\n0.5 /scene/recall A 1\n"
    y, fails = run(tmp_path, score, 1.7)
    assert fails == []
    s0 = int(0.5 * RATE)
    assert np.all(y[s0 - 100:s0] == 0.0)
    # unmute fade 10 ms from s0; fader from +6 dB along the law
    p0, p1 = fader_norm(6), fader_norm(-20)
    want = amp(fader_db(p0 + (p1 - p0) * np.arange(1, 481) / RATE)) * np.arange(1, 481) / 480
    np.testing.assert_allclose(y[s0:s0 + 480], want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y[-1000:], amp(-20), rtol=1e-6)


@pytest.mark.parametrize("x,db", [(0.0, -20.0), (0.5, None), (1.0, 6.0)])
def test_morph_points(tmp_path, x, db):
    """Morph A->B at 0, 0.5 and 1: A's level, the taper midpoint, B's level (read
    with the mute kept out of both scenes' way by a safe, then with it)."""
    score = SCENES + f"0.1 /scene/morph A B {x}\n"
    y, fails = run(tmp_path, score, 0.3)
    assert fails == []
    if db is None:
        db = float(fader_db((fader_norm(-20) + fader_norm(6)) / 2))
    # the mute (stepped) is A's (off) below 0.5 and B's (on) from 0.5: silence then
    want = 0.0 if x >= 0.5 else amp(db)
    np.testing.assert_allclose(y[-1000:], want, rtol=1e-6)


CUES = """0 /scene/store X /node/g/gain
0 /node/g/gain -20
0 /cue/set 1 name one prewait 0.1 postwait 0.2 continue auto-continue osc "/node/g/gain -10"
0 /cue/set 2 name two prewait 0.05 scene X fade 0.3 continue auto-follow
0 /cue/set 3 name three prewait 0.1 osc "/node/g/gain 0"
0.5 /cue/go
"""


def test_cue_waits_land_on_their_sample(tmp_path):
    """GO at 0.5 s: cue 1's action after its 0.1 s pre-wait (0.6 s); cue 2
    auto-continues 0.2 s after that (0.8 s) and acts after its 0.05 s pre-wait
    (0.85 s, a 0.3 s fade to scene X); cue 3 auto-follows when that fade ends
    (1.15 s) and acts after its 0.1 s pre-wait (1.25 s). Each change starts at
    exactly its sample: the sample before is still the old level."""
    score = CUES.replace("0 /scene/store X /node/g/gain\n",
                         "0 /node/g/gain -30\n0 /scene/store X /node/g/gain\n")
    y, fails = run(tmp_path, score, 1.5)
    assert fails == []
    t1, t2, t3 = int(0.6 * RATE), int(0.85 * RATE), int(1.25 * RATE)
    np.testing.assert_allclose(y[:t1], amp(-20), rtol=1e-6)
    assert y[t1] > amp(-20) + 1e-6  # the set's smoothing starts at t1
    np.testing.assert_allclose(y[t2 - 100:t2], amp(-10), rtol=1e-6)
    p0, p1 = fader_norm(-10), fader_norm(-30)
    n = int(0.3 * RATE)
    want = amp(fader_db(p0 + (p1 - p0) * np.arange(1, n + 1) / n))
    np.testing.assert_allclose(y[t2:t2 + n], want, rtol=2e-6)
    np.testing.assert_allclose(y[t2 + n:t3], amp(-30), rtol=1e-6)
    assert y[t3] > amp(-30) + 1e-6
    np.testing.assert_allclose(y[-100:], amp(0), rtol=1e-6)


def test_score_cues_are_deterministic(tmp_path):
    """The same score rendered with different blocks is the same to the sample."""
    score = CUES.replace("0 /scene/store X /node/g/gain\n",
                         "0 /node/g/gain -30\n0 /scene/store X /node/g/gain\n")
    a, _ = run(tmp_path, score, 1.4)
    (tmp_path / "o.wav").rename(tmp_path / "a.wav")
    dc = tmp_path / "dc.wav"
    s = tmp_path / "s.txt"
    render(patch(), tmp_path / "b.wav", score=s, duration_s=1.4, inputs={"in": str(dc)},
           block=256)
    b, _ = sf.read(tmp_path / "b.wav", dtype="float64")
    np.testing.assert_array_equal(a, b)


def test_bad_inputs_fail_and_change_nothing(tmp_path):
    """Each bad input gets a /fail and the output stays at -20 dB throughout."""
    bad = ["/scene/recall nope", "/scene/recall A -1", "/scene/recall A nan",
           "/scene/recall A 3601", "/scene/morph A B 1.5", "/scene/morph A B -0.1",
           "/scene/morph A nope 0.5", "/scene/store C /node/zz*/gain",
           "/scene/safe /node/zz/* 1", "/cue/standby 9", "/cue/delete 9",
           "/cue/set 1 scene nope", "/cue/set 1 prewait -1", "/cue/set 1 fade 4000",
           "/cue/set 1 continue sometimes", "/cue/set 1 bogus 1", "/cue/go",
           "/scene/delete nope", "/scene/rename nope x", "/scene/fade A nan"]
    score = "0 /scene/store A\n" + "".join(f"0.1 {b}\n" for b in bad)
    y, fails = run(tmp_path, score, 0.3)
    assert len(fails) == len(bad), fails
    np.testing.assert_allclose(y, amp(-20), rtol=1e-6)


def test_cue_stop_holds_fades_where_they_are(tmp_path):
    """A cue's 2 s fade stopped after 1 s stays at the level it had reached (the
    taper interpolation at that sample, within 1e-5), and the next cue, set to
    auto-follow, never fires."""
    score = (SCENES + "0 /cue/set 1 scene B fade 2 continue auto-follow\n"
             "0 /cue/set 2 osc \"/node/g/gain -60\"\n"
             "0.1 /cue/go\n1.1 /cue/stop\n")
    score = score.replace("0 /node/m/mute 1\n", "")
    y, fails = run(tmp_path, score, 2.6)
    assert fails == []
    s0, n, stop = int(0.1 * RATE), 2 * RATE, int(1.1 * RATE)
    p0, p1 = fader_norm(-20), fader_norm(6)
    held = amp(fader_db(p0 + (p1 - p0) * (stop - s0) / n))
    np.testing.assert_allclose(y[stop:], held, rtol=1e-5)
