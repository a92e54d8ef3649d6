"""reverb: RT60 by Schroeder backward integration, cheap silent tail, mix, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

SR = 48000


@pytest.fixture
def make(sessions):
    """make(settings) -> (session, engine) for input -> reverb -> output (stereo)."""
    return lambda settings: sessions.chain("reverb", "r", settings, 2, 2)


def schroeder_rt60(h, lo=-5.0, hi=-35.0, band=None):
    """T30 (default) from the Schroeder backward integral, extrapolated to 60 dB (ISO 3382)."""
    if band is not None:
        h = signal.sosfilt(signal.butter(4, band, "bandpass", fs=SR, output="sos"), h)
    edc = np.cumsum(h[::-1] ** 2)[::-1]
    edc = 10 * np.log10(edc / edc[0])
    a, b = np.argmax(edc < lo), np.argmax(edc < hi)
    slope = np.polyfit(np.arange(a, b) / SR, edc[a:b], 1)[0]
    return -60 / slope


def impulse_response(e, n):
    x = np.zeros((n, 2), np.float32)
    x[0] = 0.5
    return e.process(n, x, block=64).astype(np.float64)


@pytest.mark.parametrize("rt", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("size", [20, 50, 90])
def test_rt60_by_schroeder_integration(make, rt, size):
    s, e = make({"decay": rt, "damping": 0, "size": size, "mix": 100})
    h = impulse_response(e, int(SR * (1.1 * rt + 0.2)))
    for c in range(2):
        # the tolerance: T30 within 10 % of the setting (we see ~3 %)
        assert abs(schroeder_rt60(h[:, c]) / rt - 1) < 0.10
        # and T20 (-5..-25 dB) agrees
        assert abs(schroeder_rt60(h[:, c], hi=-25) / rt - 1) < 0.10


def test_damping_shortens_the_highs_only(make):
    s, e = make({"decay": 2.0, "damping": 80, "mix": 100})
    h = impulse_response(e, int(SR * 2.4))[:, 0]
    low = schroeder_rt60(h, band=[150, 600])
    high = schroeder_rt60(h, band=[8000, 16000])
    assert abs(low / 2.0 - 1) < 0.15  # octave-band estimate: looser than broadband
    # at Nyquist RT60 is (1 - 0.9*0.8) * 2 = 0.56 s; 8-16 kHz lies in between
    assert high < 0.6 * low


def test_silent_tail_has_no_denormals_and_reaches_zero(make):
    """The tail decays to exact zeros and never through subnormal floats.

    Denormals are what make a silent tail slow; the engine flushes them
    (FTZ/DAZ) on every call, so none may reach the output. The tail's cost
    against noise is measured in bench/nodes.py (``--tail``), not here.
    """
    s, e = make({"decay": 0.5, "damping": 20, "mix": 100})
    n = 10 * SR
    x = np.zeros((n, 2), np.float32)
    x[0] = 0.9
    y = e.process(n, x, block=64)
    assert np.all(np.isfinite(y))
    tiny = np.finfo(np.float32).tiny  # smallest normal float32
    nonzero = np.abs(y[y != 0])
    assert nonzero.size > SR // 2 and np.all(nonzero >= tiny)
    assert not np.any(y[-SR:])  # 10 s at RT60 0.5 s is -1200 dB: exact zeros


def test_mix_zero_is_dry(make):
    s, e = make({"mix": 0, "decay": 3})
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (8192, 2)).astype(np.float32)
    assert np.array_equal(e.process(8192, x, block=64), x)


def test_mix_blends_dry_and_wet(make):
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.3, 0.3, (8192, 2)).astype(np.float32)
    s, e = make({"mix": 100, "decay": 1})
    wet = e.process(8192, x, block=64).astype(np.float64)
    s2, e2 = make({"mix": 25, "decay": 1})
    y = e2.process(8192, x, block=64).astype(np.float64)
    assert np.max(np.abs(y - (0.75 * x + 0.25 * wet))) < 1e-6  # float32


def test_predelay_shifts_the_onset(make):
    onsets = []
    for pd in (0, 50):
        s, e = make({"predelay": pd, "mix": 100})
        h = impulse_response(e, 8000)
        onsets.append(np.argmax(np.any(np.abs(h) > 1e-5, axis=1)))
    assert abs(onsets[1] - onsets[0] - 2400) <= 1  # 50 ms; +-1 from the line modulation


def test_width(make):
    s, e = make({"width": 0, "mix": 100})
    h = impulse_response(e, SR)
    assert np.array_equal(h[:, 0], h[:, 1])  # width 0: the wet signal is mono
    s, e = make({"width": 100, "mix": 100})
    h = impulse_response(e, SR)
    assert abs(np.corrcoef(h[:, 0], h[:, 1])[0, 1]) < 0.2  # decorrelated sides


def test_parameter_sweeps_do_not_click(make):
    n = SR // 2
    t = np.arange(6 * n) / SR
    fade = np.minimum(t / 0.1, 1.0)  # a 100 ms fade-in: no onset click to reverberate
    x = np.stack([0.3 * fade * np.sin(2 * np.pi * 220 * t)] * 2, 1).astype(np.float32)
    s, e = make({"mix": 50, "decay": 1.5})
    e.set_ceiling_db(100)
    ys = [e.process(n, x[:n], block=64)]
    for k, (p, v) in enumerate([("size", 100), ("predelay", 250), ("size", 0),
                                ("predelay", 0), ("decay", 0.2)], start=1):
        s.set_param("r", p, v)
        ys.append(e.process(n, x[k * n:(k + 1) * n], block=64))
    y = np.vstack(ys).astype(np.float64)
    # the reverb is linear: a 220 Hz input gives (Doppler-shifted while lengths
    # move) 220 Hz out. Clicks and zipper steps are broadband: above 2 kHz the
    # output must stay 60 dB under the 0.3 input (stepping the read positions
    # once per 16 samples gave -37 dB here, and the loop gains -44 dB)
    hp = signal.butter(8, 2000, "highpass", fs=SR, output="sos")
    hf = signal.sosfilt(hp, y, axis=0)[4000:]
    assert np.max(np.abs(hf)) < 0.3e-3
    # and the largest step stays that of a 220-230 Hz signal of the segment's level
    for k in range(6):
        seg = y[max(k * n - 1, 0):(k + 1) * n]
        step = 2 * np.pi * 235 / SR * np.max(np.abs(seg))
        assert np.max(np.abs(np.diff(seg, axis=0))) < 1.2 * step


def test_bad_input_never_nan(make):
    s, e = make({"mix": 60, "decay": 20, "damping": 0})
    e.set_ceiling_db(200)
    n = 4 * SR
    x = np.zeros((n, 2), np.float32)
    x[:SR] = np.where(np.arange(SR) % 64 < 32, 1.0, -1.0)[:, None]  # full-scale square
    x[SR:SR + 100] = np.nan
    x[SR + 200:SR + 300, 0] = np.inf
    x[SR + 400:SR + 500, 1] = -np.inf
    x[SR + 600:2 * SR] = 1.0  # DC
    y = e.process(n, x, block=64)
    assert np.all(np.isfinite(y)) and e.stats().nan_scrubbed == 0
    assert np.max(np.abs(y)) < 100


@pytest.mark.parametrize("fs", [44100, 96000])
def test_rt60_at_other_rates(fs):
    e = Engine(fs, 2, 2)
    s = Session(e)
    try:
        s.add_node("input", "in", {"channels": 2})
        s.add_node("reverb", "r", {"decay": 2.0, "damping": 0, "mix": 100})
        s.add_node("output", "out")
        s.connect("in", "r")
        s.connect("r", "out")
        s.commit()
        n = int(fs * 2.4)
        x = np.zeros((n, 2), np.float32)
        x[0] = 0.5
        h = e.process(n, x, block=64).astype(np.float64)
        edc = np.cumsum(h[::-1, 0] ** 2)[::-1]
        edc = 10 * np.log10(edc / edc[0])
        a, b = np.argmax(edc < -5), np.argmax(edc < -35)
        rt = -60 / np.polyfit(np.arange(a, b) / fs, edc[a:b], 1)[0]
        assert abs(rt / 2.0 - 1) < 0.10  # T30, the 10 %
    finally:
        s.close()
        e.free()


@pytest.mark.parametrize("size", [0, 50, 100])
def test_tail_is_dense_like_noise(make, size):
    """Normalized echo density (Abel & Huang, AES 2006): the fraction of samples
    outside one standard deviation in 20 ms windows, over erfc(1/sqrt 2); 1 for
    Gaussian noise, far below 1 for sparse echoes or ringing."""
    from scipy.special import erfc

    s, e = make({"decay": 2.0, "damping": 0, "size": size, "mix": 100})
    h = impulse_response(e, SR)[:, 0]
    w = int(0.020 * SR)
    ned = [np.mean(np.abs(seg) > np.sqrt(np.mean(seg ** 2))) / erfc(1 / np.sqrt(2))
           for seg in (h[a:a + w] for a in range(int(0.3 * SR), SR - w, w // 2))]
    assert min(ned) > 0.85


def test_extreme_settings_still_decay_to_zero(make):
    # the shortest decay on the longest lines with full damping: line gains
    # underflow; the damping poles must not hold a value forever
    s, e = make({"decay": 0.1, "size": 100, "damping": 100, "mix": 100})
    x = np.zeros((SR, 2), np.float32)
    x[:100] = 0.5
    y = e.process(SR, x, block=64)
    assert np.all(np.isfinite(y))
    # -600 dB after a second, then below the smallest normal float: zeros
    assert not np.any(e.process(SR, None, block=64)[SR // 2:])


def test_fdn_widths_give_the_same_bits():
    """The FDN runs its 16 lines in one sixteen-float vector where the CPU has
    AVX-512 and as two halves of eight elsewhere (nodes/reverb.c fdn_block);
    MIXGRAPH_RV_NARROW=1 takes the halves on any CPU. Both, in child
    processes, give the same bits for noise through a reverb whose decay and
    damping glide (the loop gains' per-sample glide) and whose size moves (the
    per-sample path in between)."""
    from conftest import require_avx512

    require_avx512("the reverb's FDN widths")
    code = (
        "import hashlib, numpy as np\n"
        "from mixgraph.server.engine import Engine\n"
        "from mixgraph.server.session import Session\n"
        "e = Engine(48000, 2, 2); s = Session(e)\n"
        "s.add_node('input', 'i', {'channels': 2}); s.add_node('reverb', 'r', {'decay': 1.5})\n"
        "s.add_node('output', 'o', {'channels': 2}); s.connect('i', 'r'); s.connect('r', 'o')\n"
        "s.commit()\n"
        "x = (np.random.default_rng(3).standard_normal((48000, 2)) * 0.3).astype(np.float32)\n"
        "a = e.process(12000, x[:12000], block=64).copy()\n"
        "s.set_param('r', 'decay', 4.0, time=200); s.set_param('r', 'damping', 70.0, time=200)\n"
        "b = e.process(12000, x[12000:24000], block=64).copy()\n"
        "s.set_param('r', 'size', 80.0)\n"
        "c = e.process(24000, x[24000:], block=100).copy()\n"
        "y = np.concatenate([a, b, c]); assert np.abs(y).max() > 0.01\n"
        "print(hashlib.sha256(y.tobytes()).hexdigest())\n"
    )
    outs = _renders(code, "MIXGRAPH_RV_NARROW")
    assert len(outs[0]) == 64 and outs[0] == outs[1]


def _renders(code: str, switch: str) -> list[str]:
    """What `code` prints in two child processes, with `switch` 0 and 1 in the
    environment."""
    import os
    import subprocess
    import sys

    outs = []
    for on in ("0", "1"):
        env = {**os.environ, switch: on}
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(r.stdout.strip())
    return outs


def test_split_block_gives_the_same_bits():
    """A steady block runs its FDN side and its input side as two parts
    (nodes/reverb.c process_split, on two threads where one is free);
    MIXGRAPH_RV_NOSPLIT=1 runs every block through the general path. Both
    give the same bits: noise through a steady reverb in 64-frame blocks and in
    blocks of 100 (sub-blocks of 16 across calls), a pre-delay change (the
    input side's moving tap), a decay/damping glide and a size move (the
    general path) and back to steady, on one thread and on two (a worker
    takes the input side, in the cycles it runs)."""
    code = (
        "import hashlib, numpy as np\n"
        "from mixgraph.server.engine import Engine\n"
        "from mixgraph.server.session import Session\n"
        "h = hashlib.sha256()\n"
        "for threads in (1, 2):\n"
        "    e = Engine(48000, 2, 2, threads=threads); s = Session(e)\n"
        "    if threads > 1: e.set_sched(50, 0)\n"
        "    s.add_node('input', 'i', {'channels': 2})\n"
        "    s.add_node('reverb', 'r', {'decay': 1.5, 'mix': 60})\n"
        "    s.add_node('output', 'o', {'channels': 2}); s.connect('i', 'r'); s.connect('r', 'o')\n"
        "    s.commit()\n"
        "    x = (np.random.default_rng(5).standard_normal((96000, 2)) * 0.3).astype(np.float32)\n"
        "    ys = [e.process(12000, x[:12000], block=64).copy()]\n"
        "    ys.append(e.process(12000, x[12000:24000], block=100).copy())\n"
        "    s.set_param('r', 'predelay', 35.0)\n"
        "    ys.append(e.process(12000, x[24000:36000], block=64).copy())\n"
        "    s.set_param('r', 'decay', 4.0, time=100)\n"
        "    s.set_param('r', 'damping', 70.0, time=100)\n"
        "    ys.append(e.process(12000, x[36000:48000], block=64).copy())\n"
        "    s.set_param('r', 'size', 80.0)\n"
        "    ys.append(e.process(48000, x[48000:], block=100).copy())\n"
        "    y = np.concatenate(ys); assert np.abs(y).max() > 0.01\n"
        "    h.update(y.tobytes()); s.close()\n"
        "print(h.hexdigest())\n"
    )
    outs = _renders(code, "MIXGRAPH_RV_NOSPLIT")
    assert len(outs[0]) == 64 and outs[0] == outs[1]


@pytest.mark.parametrize("moves", [
    "size 37",                                        # the lines slew (per-sample positions)
    "size 90",                                        # longer lines
    "decay 7.5\n{t} /node/r/damping 80",              # loop gains and poles glide
    "size 20\n{t} /node/r/decay 0.4\n{t} /node/r/predelay 92",
])
def test_moves_give_the_same_bits_at_every_block_size(tmp_path, moves):
    """A score's parameter moves land at their exact sample, and what the reverb
    does with them runs on its own clock (sub-blocks of 16 samples), so a render
    at 1, 17, 100 or 256 frames a call is the 64-frame render bit for bit. (A size
    move used to switch the modulators between per-sample and per-sub-block
    stepping wherever a call boundary fell: tails 0.48 apart from block to block;
    coefficient glides ran per call: ~1e-4.)"""
    import soundfile as sf

    from mixgraph.server.render import render

    e = Engine(SR, 0, 2)
    s = Session(e)
    try:
        s.add_node("noise", "n", {"seed": 3, "level": -10.0, "channels": 2})
        s.add_node("reverb", "r", {"decay": 2.0})
        s.add_node("output", "out", {"channels": 2})
        s.connect("n", "r")
        s.connect("r", "out")
        s.commit()
        doc = s.to_doc()
    finally:
        s.close()
        e.free()
    t = 0.0133  # sample 638: inside a call at every block size below
    score = tmp_path / "score.txt"
    score.write_text(f"{t} /node/r/" + moves.format(t=t) + "\n")
    out = {}
    for block in (64, 1, 17, 100, 256):
        wav = tmp_path / f"{block}.wav"
        render(doc, wav, score=score, duration_s=0.4, block=block, progress=False)
        out[block] = sf.read(wav, dtype="float32")[0]
    ref = out.pop(64)
    assert np.max(np.abs(ref[1400:])) > 0.01, "the moved reverb's tail is in the render"
    for block, x in out.items():
        diff = np.flatnonzero(np.any(x != ref, axis=1))
        assert diff.size == 0, (f"{block}-frame calls differ from 64 from sample {diff[0]}: "
                                f"{np.max(np.abs(x - ref)):.3g}")
