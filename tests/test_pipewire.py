"""mixgraph's JACK client unchanged under PipeWire's JACK (`pw-jack`).

The test runs its own PipeWire daemon (Debian's pipewire 0.3.x) by hand: a
private runtime directory, a core name of its own (so it can run beside
another), no session manager, the dummy driver and a null sink named "system"
as the graph's driver, 48 kHz with a 64-frame quantum. `mixgraph serve
--backend jack` runs with pw-jack's library path (what `pw-jack` does:
PipeWire's libjack.so.0 first on LD_LIBRARY_PATH), the binary built against
jackd2's headers, not rebuilt.

tests/jack_probe.c (PipeWire's libjack too) plays a signal into
mixgraph:in_1 and records mixgraph:out_1 through a gain: the level against
10^(dB/20), and the lag (0: one graph cycle, no period added). The quantum
forced at run time through PipeWire's settings metadata (`pw-metadata -n
settings 0 clock.force-quantum 256`) reaches mixgraph as a buffer-size change.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from test_netjack import RATE, TOL, period_shifts, probe  # noqa: F401 (probe: a fixture)

from daemon_util import Daemon

QUANTUM = 64
GAIN_DB = -6.0

CONF = """
context.properties = {{
    core.daemon = true
    core.name   = {core}
    link.max-buffers = 16
    default.clock.rate = {rate}
    default.clock.allowed-rates = [ {rate} ]
    default.clock.quantum = {quantum}
    default.clock.min-quantum = 32
    default.clock.max-quantum = 1024
    support.dbus = false
}}
context.spa-libs = {{
    audio.convert.* = audioconvert/libspa-audioconvert
    support.*       = support/libspa-support
}}
context.modules = [
    {{ name = libpipewire-module-protocol-native }}
    {{ name = libpipewire-module-metadata }}
    {{ name = libpipewire-module-spa-node-factory }}
    {{ name = libpipewire-module-client-node }}
    {{ name = libpipewire-module-access args = {{ }} }}
    {{ name = libpipewire-module-adapter }}
    {{ name = libpipewire-module-link-factory }}
]
context.objects = [
    {{ factory = metadata args = {{ metadata.name = default }} }}
    {{ factory = spa-node-factory
        args = {{ factory.name = support.node.driver node.name = Dummy-Driver
                 node.group = pipewire.dummy priority.driver = 20000 }} }}
    {{ factory = spa-node-factory
        args = {{ factory.name = support.node.driver node.name = Freewheel-Driver
                 priority.driver = 19000 node.group = pipewire.freewheel
                 node.freewheel = true }} }}
    {{ factory = adapter
        args = {{ factory.name = support.null-audio-sink node.name = "system"
                 media.class = "Audio/Duplex" audio.position = [ AUX0 AUX1 ]
                 node.driver = true priority.driver = 30000 object.linger = true
                 adapter.auto-port-config = {{ mode = dsp monitor = false control = false
                                              position = unknown }} }} }}
]
"""


class PipeWire:
    """A private pipewire daemon; `env` reaches it (and PipeWire's libjack)."""

    def __init__(self, tmp_path: Path, tag: str) -> None:
        exe = shutil.which("pipewire")
        require(exe is not None, "pipewire is not installed (Debian: pipewire)")
        require(shutil.which("pw-jack") is not None,
                "pw-jack is not installed (Debian: pipewire-jack)")
        libdir = subprocess.run(["pw-jack", "sh", "-c", "echo $LD_LIBRARY_PATH"],
                                capture_output=True, text=True, timeout=60).stdout.strip()
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700)
        self.core = f"mg-pw-{tag}"
        conf = tmp_path / "pipewire.conf"
        conf.write_text(CONF.format(core=self.core, rate=RATE, quantum=QUANTUM))
        self.env = {"XDG_RUNTIME_DIR": str(runtime), "PIPEWIRE_RUNTIME_DIR": str(runtime),
                    "PIPEWIRE_REMOTE": self.core, "LD_LIBRARY_PATH": libdir}
        self.log = tmp_path / "pipewire.log"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen([exe, "-c", str(conf)],
                                         env={**os.environ, **self.env},
                                         stdin=subprocess.DEVNULL, stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while "system:playback_1" not in self.lsp():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                pytest.fail(f"pipewire did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env={**os.environ, **self.env}, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=timeout)

    def lsp(self) -> str:
        return self.run("jack_lsp").stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def pw(tmp_path, request):
    tag = f"{os.getpid()}-{hashlib.sha1(request.node.name.encode()).hexdigest()[:8]}"
    p = PipeWire(tmp_path, tag)
    yield p
    p.close()


def serve(pw: PipeWire, tmp_path: Path, *extra: str) -> Daemon:
    """mixgraph on PipeWire's JACK, the PipeWire daemon named as the JACK
    server (`--jack-server <core name>`), with in_1 -> gain -> out_1."""
    d = Daemon(tmp_path / "state", "--backend", "jack", "--jack-server", pw.core,
               "--inputs", "1", "--outputs", "1", *extra, env=pw.env)
    d.client.timeout = 30.0
    d.call("/graph/add", "input", "in", "first", 1)
    d.call("/graph/add", "gain", "g", "gain", GAIN_DB)
    d.call("/graph/add", "output", "out", "channels", 1)
    d.call("/graph/connect", "in", "g")
    d.call("/graph/connect", "g", "out")
    d.sync(1)
    return d


def test_mixgraph_under_pipewire_jack(pw, probe, tmp_path):  # noqa: F811
    d = serve(pw, tmp_path)
    try:
        st = d.status()
        assert st["backend"] == "jack" and st["sample_rate"] == RATE, st
        assert st["block"] == QUANTUM, st
        ports = pw.lsp().split()
        assert {"mixgraph:in_1", "mixgraph:out_1"} <= set(ports), ports
        # PipeWire, not jackd: the client is a node of this pipewire daemon
        nodes = pw.run("pw-cli", "ls", "Node").stdout
        assert 'node.name = "mixgraph"' in nodes, nodes

        n = RATE
        t = np.arange(n) / RATE
        x = (0.1 * np.sin(2 * np.pi * 997.0 * t)).astype(np.float32)
        x[: RATE // 10] = 0.0
        sig, rec = tmp_path / "sig.f32", tmp_path / "rec.f32"
        x.tofile(sig)
        for attempt in (1, 2):
            # once (a fresh-clone CI run, 2 loaded cores) the hand-run PipeWire, which has
            # no session manager, never scheduled the probe's own client and the probe
            # timed out with mixgraph idle and well: a second probe is a new client. A
            # fault of mixgraph's fails both.
            r = pw.run(str(probe), pw.core, "probe", str(sig), str(rec), str(8 * QUANTUM),
                       "1", "mixgraph:in_1", "mixgraph:out_1", timeout=120)
            if r.returncode == 0 or "did not finish" not in r.stderr or attempt == 2:
                break
        assert r.returncode == 0, f"attempt {attempt}: {r.stdout}{r.stderr}"
        y = np.fromfile(rec, np.float32)
        g = 10 ** (GAIN_DB / 20)
        # one graph cycle: probe_tx -> mixgraph -> probe_rx, no period added,
        # so what comes back is aligned with what was played (lag 0)
        tone = RATE // 10
        shifts = period_shifts(x[tone:].astype(np.float64) * g, y[tone:].astype(np.float64))
        # every period the sent tone times the gain (TOL), most at lag 0; when
        # a client is late on this loaded host PipeWire runs the cycle without
        # it (a period lost) or with its previous buffer (a period late)
        counts = Counter(shifts)
        assert counts[0] >= 0.6 * len(shifts) and counts[None] <= 0.02 * len(shifts), counts
        idx = np.concatenate([np.arange(i * QUANTUM, (i + 1) * QUANTUM)
                              for i, k in enumerate(shifts) if k == 0])
        back, sent = y[tone:][idx].astype(np.float64), x[tone:][idx].astype(np.float64)
        level = 20 * np.log10(np.dot(back, sent) / np.dot(sent, sent))
        assert abs(level - GAIN_DB) < 1e-4 and np.max(np.abs(back - g * sent)) <= TOL, level
        print(f"\n  [measured] under PipeWire {QUANTUM}/{RATE}: {level:+.5f} dB for "
              f"{GAIN_DB} dB, lag 0 frames; periods {dict(counts)}")
    finally:
        d.stop()


def test_connect_pairs_under_pipewire(pw, tmp_path):
    """`--jack-connect` pairs by regular expression over PipeWire's JACK port
    names. (`--jack-connect system` goes by JACK's physical-port flag, which
    PipeWire sets on its devices' ports: this null sink is not a device.)"""
    d = serve(pw, tmp_path, "--jack-connect", "out_1=system:playback_2")
    try:
        text = pw.run("jack_lsp", "-c").stdout
        assert re.search(r"^mixgraph:out_1\n\s+system:playback_2$", text, re.M), text
    finally:
        d.stop()


def test_pipewire_quantum_change_reaches_mixgraph(pw, tmp_path):
    """clock.force-quantum in PipeWire's settings metadata: a buffer-size
    change for JACK clients; mixgraph follows it with its graph intact."""
    d = serve(pw, tmp_path)
    try:
        assert d.status()["block"] == QUANTUM
        r = pw.run("pw-metadata", "-n", "settings", "0", "clock.force-quantum", "256")
        assert r.returncode == 0, r.stdout + r.stderr
        deadline = time.monotonic() + 30
        while (st := d.status())["block"] != 256:
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["nodes"] == 3 and st["backend"] == "jack" and st["device_state"] == "running"
        assert d.request("/node/g/gain")[1] == [GAIN_DB]
    finally:
        d.stop()
