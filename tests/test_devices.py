"""Devices that come and go (issue 16 item 3) on the PortAudio path: a
`--device` that is not there at start, and one that goes away.

The device is PortAudio's JACK host API on a jackd (dummy driver) that the
test starts and kills under a unique server name. The native JACK client's
loss and return are in tests/test_jack_native.py."""

from __future__ import annotations

import os
import time

from test_jack_native import start_jackd, stop_jackd

from daemon_util import Daemon


def wait_for(d: Daemon, state: str, seconds: float = 30.0) -> dict:
    deadline = time.monotonic() + seconds
    while (st := d.status())["device_state"] != state:
        assert time.monotonic() < deadline, (st, d.output())
        time.sleep(0.1)
    return st


def test_portaudio_device_that_comes_and_goes(tmp_path):
    name = f"mg-devices-{os.getpid()}"
    env = {"JACK_DEFAULT_SERVER": name}
    # no JACK server yet: PortAudio lists no JACK device, and the daemon waits for it
    d = Daemon(tmp_path / "state", "--backend", "portaudio", "--device", "JACK", env=env)
    d.client.timeout = 30.0
    server = None
    try:
        st = d.status()
        assert (st["device_state"], st["backend"]) == ("waiting", "null (waiting for JACK)"), st
        d.call("/graph/add", "sine", "osc", "level", -20.0)
        d.call("/graph/add", "meter", "m", "channels", 1)
        d.call("/graph/connect", "osc", "m")
        d.sync(1)
        t = d.status()["time"]
        time.sleep(0.3)
        assert d.status()["time"] > t, "the null clock runs while the device is missing"

        server = start_jackd(name, tmp_path / "jackd.log")
        st = wait_for(d, "running")
        assert st["backend"] == "portaudio" and st["nodes"] == 2, st
        t = st["time"]
        time.sleep(0.5)
        assert d.status()["time"] - t > 48000 // 10, "the device's clock does not run"
        assert abs(d.request("/node/m/peak")[1][0] - (-20.0)) < 0.1

        # the server goes away under PortAudio: the daemon answers, on the null clock,
        # with its graph; it says so in /status and in the log
        stop_jackd(server)
        server = None
        st = wait_for(d, "waiting")
        assert st["backend"] == "null (waiting for JACK Audio Connection Kit (system))", st
        assert st["nodes"] == 2
        t = st["time"]
        time.sleep(0.3)
        assert d.status()["time"] > t
        assert "lost JACK Audio Connection Kit (system)" in d.output()
    finally:
        code = d.stop(timeout=15.0)
        if server is not None:
            stop_jackd(server)
    assert code == 0, d.output()
