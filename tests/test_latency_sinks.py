"""Latency over the whole graph (issue 12, defect 5).

Every node type's real latency is measured from outside: white noise through
the node, the lag of the cross-correlation peak between the hardware input and
the hardware output (numpy FFT) - not the node's own latency() report - must
equal what the node declares. Every sink (output, recorder) receives its audio
at the graph's total latency: two outputs, one through a limiter and one dry,
arrive sample-aligned at the hardware outputs, two recorders likewise, and
/status reports the total."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from mixgraph.server.catalog import CATALOG
from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.render import render
from mixgraph.server.session import Session

SR = 48000

# settings that keep a clear direct path through each node (the latency is the
# lag of that path; what the node does to the level does not move the peak)
TRANSPARENT = {
    "autotune": {"amount": 0.0},
    "compressor": {"threshold": 0.0},
    "delay": {"mix": 0.0},
    "denoise": {"reduction": 0.0},
    "dither": {"on": 0.0},
    "expander": {"threshold": -80.0},
    "gate": {"threshold": -80.0},
    "leveler": {"freeze": 1.0},
    "limiter": {"ceiling": 0.0},
    "pitchshift": {"semitones": 0.0, "mix": 0.0},
    "reverb": {"mix": 0.0},
    "saturator": {"mix": 0.0},
}
THROUGH = sorted(t.name for t in CATALOG.values()
                 if t.port(None, "in") and t.port(None, "out") and t.name != "vca")


def xcorr_lag(x: np.ndarray, y: np.ndarray, max_lag: int,
              onset: bool = False) -> tuple[int, float]:
    """(lag of y behind x, peak / energy of x). The lag is the cross-correlation
    peak's, or with onset the first lag whose correlation reaches 10 % of the
    peak: with white noise the correlation is the impulse response, and a node's
    latency is where its response starts (an all-pass, such as the multiband's
    crossovers, peaks a little later, but delays nothing)."""
    n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    r = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)[:max_lag + 1]
    r = np.abs(r) / np.dot(x, x)
    k = int(np.argmax(r))
    peak = float(r[k])
    if onset:
        k = int(np.flatnonzero(r >= 0.1 * peak)[0])
    return k, peak


def measured_latency(typ: str) -> tuple[int, int, float]:
    """(measured lag, declared latency, correlation) of one node between input and output."""
    t = CATALOG[typ]
    cin = t.port(None, "in").channel_count(2 if t.min_channels > 1 else 1)
    ch = max(t.min_channels, 1)
    cout = t.port(None, "out").channel_count(ch)
    e = Engine(SR, cin, cout)
    s = Session(e)
    try:
        s.add_node("input", "in", {"channels": cin})
        s.add_node(typ, "n", {"channels": ch, **TRANSPARENT.get(typ, {})})
        s.add_node("output", "out", {"channels": cout})
        s.connect("in", "n")
        s.connect("n", "out")
        s.commit()
        declared = s.live["n"].latency
        rng = np.random.default_rng(7)
        n = SR
        x = (rng.standard_normal((n, cin)) * 0.05).astype(np.float32)  # -26 dBFS RMS
        y = e.process(n, x, block=64)
    finally:
        s.close()
        e.free()
    skip = SR // 4  # fades and warm-up
    lag, corr = xcorr_lag(x[skip:, 0].astype(np.float64), y[skip:, 0].astype(np.float64),
                          4096, onset=True)
    return lag, declared, corr


@pytest.mark.parametrize("typ", THROUGH)
def test_every_node_declares_the_latency_it_has(typ):
    lag, declared, corr = measured_latency(typ)
    assert corr > 0.2, f"{typ}: no direct path found (correlation {corr:.3f})"
    assert lag == declared, f"{typ}: measured {lag} samples, declares {declared}"


def test_the_sweep_covers_every_node_type_with_audio_through_it():
    assert {"align", "limiter", "denoise", "autotune", "pitchshift", "saturator",
            "gain", "eq", "reverb"} <= set(THROUGH)
    assert len(THROUGH) == sum(1 for t in CATALOG.values()
                               if t.port(None, "in") and t.port(None, "out"))


def two_outputs() -> tuple[Engine, Session]:
    """in -> limiter -> output 1, in -> output 2 (dry)."""
    e = Engine(SR, 1, 2)
    s = Session(e)
    s.add_node("input", "in", {"channels": 1})
    s.add_node("limiter", "lim", {"channels": 1, "ceiling": 0.0})
    s.add_node("output", "o1", {"channels": 1, "first": 1})
    s.add_node("output", "o2", {"channels": 1, "first": 2})
    for a, b in (("in", "lim"), ("lim", "o1"), ("in", "o2")):
        s.connect(a, b)
    s.commit()
    return e, s


# the limiter's documented latency (docs/nodes.md, docs/mastering.md): its 5 ms
# look-ahead plus the 64 samples of its true-peak detector's interpolation filter
LIM_LAT = round(5e-3 * SR) + 64


def test_two_outputs_one_through_a_limiter_arrive_sample_aligned():
    """The issue's case: a limiter on output 1 and a dry path on output 2 arrived
    252 samples (5.25 ms) apart; every sink is now aligned to the total latency."""
    e, s = two_outputs()
    try:
        lim = s.live["lim"].latency
        assert lim == LIM_LAT
        rng = np.random.default_rng(1)
        x = (rng.standard_normal((SR, 1)) * 0.05).astype(np.float32)
        y = e.process(SR, x, block=64).astype(np.float64)
    finally:
        s.close()
        e.free()
    skip = SR // 4
    lag, corr = xcorr_lag(y[skip:, 1], y[skip:, 0], 2048)  # output 1 behind output 2
    assert corr > 0.9 and lag == 0, (lag, corr)
    # and both are the input delayed by the total latency, sample for sample
    assert np.max(np.abs(y[lim:, 1] - x[:-lim, 0])) == 0.0
    assert np.max(np.abs(y[skip:, 0] - y[skip:, 1])) < 1e-6  # limiter below ceiling


def test_status_reports_the_total_latency():
    e, s = two_outputs()
    try:
        got = []
        Dispatcher(s).dispatch("/status", [], lambda a, args: got.append((a, args)))
        st = dict(zip(got[0][1][::2], got[0][1][1::2], strict=True))
        assert st["latency"] == LIM_LAT
        assert st["latency_ms"] == pytest.approx(LIM_LAT * 1000.0 / SR, abs=5e-4)
    finally:
        s.close()
        e.free()


def test_two_recorders_are_sample_aligned(tmp_path):
    """A recorder after a limiter and a recorder on the dry input take the same audio
    at the same sample (offline render, files compared by cross-correlation)."""
    patch = {
        "format": "mixgraph-patch", "version": 1, "sample_rate": float(SR),
        "nodes": [
            {"name": "in", "type": "input", "channels": 1, "options": {}, "params": {}},
            {"name": "lim", "type": "limiter", "channels": 1, "options": {},
             "params": {"ceiling": 0.0}},
            {"name": "r1", "type": "recorder", "channels": 1,
             "options": {"path": "r1.wav"}, "params": {"record": 1.0}},
            {"name": "r2", "type": "recorder", "channels": 1,
             "options": {"path": "r2.wav"}, "params": {"record": 1.0}},
            {"name": "out", "type": "output", "channels": 1, "options": {}, "params": {}},
        ],
        "connections": [["in:out", "lim:in"], ["lim:out", "r1:in"], ["in:out", "r2:in"],
                        ["in:out", "out:in"]],
        "metadata": {},
    }
    (tmp_path / "p.json").write_text(json.dumps(patch))
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(SR) * 0.05).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, SR, subtype="FLOAT")
    render(tmp_path / "p.json", tmp_path / "mix.wav", inputs={"in": str(tmp_path / "x.wav")},
           progress=False)
    r1, _ = sf.read(tmp_path / "r1.wav", dtype="float64")
    r2, _ = sf.read(tmp_path / "r2.wav", dtype="float64")
    mix, _ = sf.read(tmp_path / "mix.wav", dtype="float64")
    n = min(len(r1), len(r2)) - 4800
    skip = SR // 4
    lag, corr = xcorr_lag(r2[skip:n], r1[skip:n], 2048)
    assert corr > 0.9 and lag == 0, (lag, corr)
    lag, corr = xcorr_lag(mix[skip:n], r1[skip:n], 2048)  # and the output with them
    assert corr > 0.9 and lag == 0, (lag, corr)
    lag, _ = xcorr_lag(x[skip:n].astype(np.float64), r2[skip:n], 2048)
    assert lag == LIM_LAT  # everything at the graph's total latency
