"""send: a small session (two channels, faders, post/pre-fader sends, aux bus) vs numpy."""

from __future__ import annotations

import numpy as np
import pytest

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

SR = 48000


def db(x):
    return 10 ** (x / 20)


@pytest.fixture
def session():
    e = Engine(SR, 2, 2)
    s = Session(e)
    yield s, e
    s.close()
    e.free()


def build(s, send_a, send_b):
    """in1 -> fader a -> pan -> master; in2 -> fader b -> pan -> master;
    sends from each channel into a stereo aux bus (-3 dB) -> master."""
    s.add_node("input", "in1", {"channels": 1, "first": 1})
    s.add_node("input", "in2", {"channels": 1, "first": 2})
    s.add_node("gain", "fa", {"gain": -6})
    s.add_node("gain", "fb", {"gain": 3})
    s.add_node("pan", "pa", {"pan": -0.5})
    s.add_node("pan", "pb", {"pan": 0.7})
    s.add_node("send", "sa", send_a)
    s.add_node("send", "sb", send_b)
    s.add_node("bus", "aux", {"gain": -3})
    s.add_node("bus", "master")
    s.add_node("output", "out")
    for a, b in [("in1", "fa"), ("fa", "pa"), ("pa", "master"),
                 ("in2", "fb"), ("fb", "pb"), ("pb", "master"),
                 ("fa", "sa:post"), ("in1", "sa:pre"), ("fb", "sb:post"), ("in2", "sb:pre"),
                 ("sa", "aux"), ("sb", "aux"), ("aux", "master"), ("master", "out")]:
        s.connect(a, b)
    s.commit()


def reference(x, la, lb, pre_a=False, pre_b=False, on_a=1, on_b=1):
    x = x.astype(np.float64)
    a, b = x[:, 0] * db(-6), x[:, 1] * db(3)
    ta, tb = (-0.5 + 1) * np.pi / 4, (0.7 + 1) * np.pi / 4
    main_l = a * np.cos(ta) + b * np.cos(tb)
    main_r = a * np.sin(ta) + b * np.sin(tb)
    send = (on_a * db(la) * (x[:, 0] if pre_a else a) + on_b * db(lb) * (x[:, 1] if pre_b else b))
    aux = db(-3) * send  # the mono sends fan out to both aux channels
    return np.stack([main_l + aux, main_r + aux], 1)


def test_post_fader_sends_numpy_mix(session):
    s, e = session
    build(s, {"level": -10}, {"level": -4})
    x = np.random.default_rng(0).uniform(-0.2, 0.2, (8192, 2)).astype(np.float32)
    y = e.process(8192, x, block=64).astype(np.float64)
    # float32 arithmetic through five stages: 1e-6 absolute
    assert np.max(np.abs(y - reference(x, -10, -4))) < 1e-6


def test_pre_fader_and_off(session):
    s, e = session
    build(s, {"level": -2, "mode": 1}, {"level": -8, "on": 0})
    x = np.random.default_rng(1).uniform(-0.2, 0.2, (8192, 2)).astype(np.float32)
    y = e.process(8192, x, block=64).astype(np.float64)
    assert np.max(np.abs(y - reference(x, -2, -8, pre_a=True, on_b=0))) < 1e-6


def test_switching_is_click_free_and_lands_exactly(session):
    s, e = session
    build(s, {"level": 0}, {"level": 0})
    n = 4800
    t = np.arange(4 * n) / SR
    x = np.stack([0.2 + 0.05 * np.sin(2 * np.pi * 150 * t), 0.1 * np.sin(2 * np.pi * 170 * t)], 1)
    x = x.astype(np.float32)
    ys = [e.process(n, x[:n], block=64)]
    s.set_param("sa", "mode", 1)  # post -> pre: the send jumps by 6 dB on a DC-ish signal
    ys.append(e.process(n, x[n:2 * n], block=64))
    s.set_param("sa", "on", 0)
    ys.append(e.process(n, x[2 * n:3 * n], block=64))
    s.set_param("sa", "on", 1)
    s.set_param("sa", "level", -30)
    ys.append(e.process(n, x[3 * n:], block=64))
    y = np.vstack(ys).astype(np.float64)
    # unmodulated steps are < 0.01 per sample; an instant switch would step by
    # 0.2 * (1 - 10^(-6/20)) * 10^(-3/20) = 0.07 (post -> pre) or 0.14 (off)
    assert np.max(np.abs(np.diff(y, axis=0))) < 0.01
    want = reference(x[3 * n:], -30, 0, pre_a=True)
    assert np.max(np.abs(y[3 * n + 2000:] - want[2000:])) < 1e-6
