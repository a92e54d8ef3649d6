"""Node actions end to end: a real `mixgraph serve` on the null clock, driven
over UDP by the client library (align's measure), including a bad request."""

from __future__ import annotations

import time

import pytest

from mixgraph.clients import Client, MixgraphFail

from daemon_util import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("actions") / "state", "--backend", "null")
    yield d
    d.stop()


def test_align_measure_over_udp(daemon):
    """One noise source split in two, one path 3.37 ms late (the delay node's
    fractional read): measure finds the offset within the issue's 0.05 ms and sets it."""
    with Client("127.0.0.1", daemon.port, timeout=30.0) as c:
        c.clear()
        c.add("noise", "a", seed=7, level=-20.0)
        c.add("delay", "late", channels=1, time=3.37, feedback=0.0, mix=100.0)
        c.add("align", "al")
        c.add("output", "out")
        c.connect("a", "al")
        c.connect("a", "late")
        c.connect("late", "al:ref")
        c.connect("al", "out")
        c.sync(1)
        delay_ms, confidence, invert = c.action("al", "measure", 0.5, timeout=10.0)
        assert abs(delay_ms - 3.37) < 0.05 and confidence > 0.9 and invert == 0
        assert c.get("al", "delay") == pytest.approx(delay_ms, abs=1e-3)
        with pytest.raises(MixgraphFail) as e:
            c.action("al", "measure", 99.0)
        assert e.value.address == "/node/al/measure" and "0.1..8" in e.value.reason
        c.disconnect("late", "al:ref")  # nothing on the reference any more
        c.sync(2)
        time.sleep(0.1)  # the edge's fade-out and the delay line's tail
        with pytest.raises(MixgraphFail) as e:
            c.action("al", "measure", 0.3, timeout=10.0)
        assert "reference is silent" in e.value.reason
        assert c.get("al", "delay") == pytest.approx(delay_ms, abs=1e-3)  # kept
