"""The same C process function in every backend: an offline render equals a
null-backend (real-time clocked) render sample for sample."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mixgraph.server.engine import CMD_TAP, Engine, Fifo
from mixgraph.server.session import Session

SR = 48000
N = 24000  # 0.5 s
EVENTS = [  # (node, param, value, sample time)
    ("g", "gain", -12.0, 3000),
    ("p", "pan", 0.6, 7000),
    ("osc", "freq", 523.25, 9001),
    ("nz", "level", -30.0, 12345),
    ("g", "mute", 1.0, 15000),
    ("g", "mute", 0.0, 16500),
    ("p", "pan", -0.4, 20000),
    ("osc", "level", -3.0, 20000),
]


def build() -> tuple[Session, Engine]:
    e = Engine(SR, 0, 2)
    s = Session(e)
    s.add_node("sine", "osc", {"freq": 440, "level": -9})
    s.add_node("noise", "nz", {"seed": 1234, "level": -24})
    s.add_node("gain", "g", {"gain": -3})
    s.add_node("pan", "p", {"pan": -0.3})
    s.add_node("output", "out")
    s.connect("osc", "g")
    s.connect("nz", "g")
    s.connect("g", "p")
    s.connect("p", "out")
    s.commit()
    for node, param, value, t in EVENTS:
        s.set_param(node, param, value, time=t)
    return s, e


def render_offline(block: int) -> np.ndarray:
    s, e = build()
    try:
        out = []
        for pos in range(0, N, block):
            out.append(e.process(min(block, N - pos)))
        return np.concatenate(out)
    finally:
        s.close()
        e.free()


def render_null(block: int) -> np.ndarray:
    s, e = build()
    tap = Fifo(2, 1 << 17)  # holds the whole render: a slow reader cannot lose frames
    try:
        e.push(CMD_TAP, tap.ptr)
        e.null_start(block)
        got = []
        have = 0
        deadline = time.monotonic() + 30
        while have < N and time.monotonic() < deadline:
            time.sleep(0.02)
            chunk = tap.read()
            got.append(chunk)
            have += len(chunk)
        e.null_stop()
        got.append(tap.read())
        assert have >= N, f"the null clock produced only {have} frames in 10 s"
        assert tap.dropped == 0
        return np.concatenate(got)[:N]
    finally:
        e.null_stop()
        s.close()
        e.free()
        tap.free()


@pytest.fixture(scope="module")
def null_render():
    return render_null(64)


def test_null_render_is_not_trivial(null_render):
    # the comparison below means something: both signals, all events audible
    y = null_render
    assert y.shape == (N, 2)
    assert np.all(np.abs(y[:3000]).max(axis=0) > 0.05)
    assert np.all(y[15480:16500] == 0)  # muted from 15000 + 10 ms until 16500


@pytest.mark.parametrize("block", [64, 512, 1000, 4800])
def test_offline_equals_null_sample_for_sample(null_render, block):
    y = render_offline(block)
    # bit-exact, whatever the offline block size
    assert np.array_equal(y, null_render), np.flatnonzero(np.any(y != null_render, axis=1))[:5]
