"""The client-side commands against a real server: `mixgraph ctl` (UDP, --tcp)
and `mixgraph top --once`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from daemon_util import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("cli") / "state", "--backend", "null")
    for a in [("/graph/add", "sine", "osc", "freq", 1000.0, "level", -6.0),
              ("/graph/add", "gain", "g", "gain", -6.0), ("/graph/add", "output", "out"),
              ("/graph/add", "meter", "m", "channels", 1), ("/graph/connect", "osc", "g"),
              ("/graph/connect", "g", "out"), ("/graph/connect", "g:out", "m:in")]:
        d.call(*a)
    yield d
    d.stop()


def mg(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="120", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "mixgraph.server.cli", *args],
                          capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


def test_ctl_udp(daemon):
    r = mg("ctl", "--port", str(daemon.port), "/node/g/gain", "-9")
    assert r.returncode == 0 and r.stdout.split() == ["/done", "/node/g/gain", "-9.0"]
    r = mg("ctl", "--port", str(daemon.port), "/node/g/gain")
    assert r.stdout.split() == ["/node/g/gain", "-9.0"]
    r = mg("ctl", "--port", str(daemon.port), "/graph/connect", "g", "nowhere")
    assert r.returncode == 1 and r.stdout.startswith("/fail /graph/connect g nowhere")
    mg("ctl", "--port", str(daemon.port), "/node/g/gain", "-6")


def test_ctl_without_server_is_a_message_not_a_traceback():
    r = mg("ctl", "--port", "9", "--timeout", "0.3", "/status")
    assert r.returncode == 2 and "no reply" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("framing", ["size", "slip"])
def test_ctl_tcp(daemon, framing):
    r = mg("ctl", "--tcp", "--framing", framing, "--port", str(daemon.port), "/node/g/gain")
    if r.returncode == 2 and "refused" in r.stderr:
        pytest.skip("this server has no TCP transport yet (server side of the OSC-surface issue)")
    assert r.returncode == 0 and r.stdout.split() == ["/node/g/gain", "-6.0"]


def test_top_once(daemon):
    time.sleep(0.3)  # let the meter see the tone
    r = mg("top", "--once", "--port", str(daemon.port))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "DSP" in out and "xruns" in out and "clients" in out and "nodes 4" in out
    for name in ("osc", "g", "out", "m", "sine", "gain", "meter"):
        assert name in out
    assert "g:in" in out and "out:in" in out  # connections
    # the meter bar of m.peak: the sine at -6 dBFS through -6 dB reads about -12 dBFS
    line = next(x for x in out.splitlines() if "m.peak" in x)
    assert "█" in line and "-12.0 dB" in line
