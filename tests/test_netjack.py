"""netJACK2: mixgraph on a JACK slave, fed by a master over the network.

Two named jackd servers on this machine: a master on the dummy driver with
jackd2's `netmanager` loaded into it, and a slave on the `net` driver, which
finds the master at 127.0.0.1 (netJACK2's default is a multicast address; on
loopback the master is named directly) on a UDP port of the test's own. The
master gets the slave as a client with ports `<slave>:to_slave_<n>` and
`<slave>:from_slave_<n>`; on the slave, those channels are `system:capture_<n>`
and `system:playback_<n>`. `mixgraph serve --backend jack --jack-server
<slave>` processes them: a gain per channel. Both jackd run real-time where
the user may (root, rtprio limits): without it, on a loaded host, netJACK2
takes a third to a half of the periods a cycle or two late.

On the master, tests/jack_probe.c (compiled here) plays a signal into the
slave's channels and records what comes back, both indexed by JACK's frame
clock, so the lag of the returned signal is the round trip in frames. It is
checked against netJACK2's own figures, read in jack2's source: the master
takes, in its cycle k, what the slave returned for the master's cycle k - l,
where l is the slave's `-l` "network latency" (5 cycles by default;
JackNetMasterInterface::SyncRecv waits until the cycle offset reaches
fNetworkLatency), and a slave in jackd's default asynchronous mode sends back
the output of its previous cycle (JackAudioDriver::ProcessAsync: "Write output
buffers from the previous cycle"), one more; a slave started with `jackd -S`
(synchronous) does not. So the round trip is l + 1 cycles (async) or l (sync),
which is also what the master's netmanager reports as the latencies of its
to_slave and from_slave ports; mixgraph's gain adds no latency of its own.
The level that comes back is checked against the gain formula 10^(dB/20):
the samples travel as float32 (netJACK2's default encoder), so they come back
as mixgraph wrote them, period by period.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from conftest import JackServer, launch_jackd, require, stop_jackd

from daemon_util import Daemon, free_udp_port

HERE = Path(__file__).resolve().parent
RATE = 48000
PERIOD = 64
NET_LATENCY = 5  # cycles: the net driver's -l, given explicitly (it is also its default)
GAINS_DB = (-6.0, -12.0)  # mixgraph's gain on channel 1 and 2
LEVEL_DBFS = -20.0  # the tone's peak level
FREQS = (997.0, 1499.0)  # not a divisor of 48 kHz: no two cycles of the tone are alike


def realtime() -> list[str]:
    """jackd's scheduling: real-time where this user may (root, rtprio
    limits), so that netJACK2 keeps its periods in line on a loaded host;
    else --no-realtime."""
    try:
        ok = subprocess.run(["chrt", "-f", "10", "true"], capture_output=True,
                            timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return ["-R", "-P", "70"] if ok else ["--no-realtime"]


def start_server(name: str, log: Path, *args: str) -> JackServer:
    """jackd under server name `name` with `args` (`-d <driver> ...`), up when
    jack_lsp lists system:playback_1 on it; a failure says what jackd logged."""
    return launch_jackd(name, log, realtime(), list(args))


def stop_server(server: JackServer) -> None:
    stop_jackd(server)


def lsp(server: str, *flags: str) -> str:
    return subprocess.run(["jack_lsp", "-s", server, *flags], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60).stdout


TOL = 1e-7  # |returned - sent x gain| per sample: float32 products of a 0.05 peak are
# within 1e-8 of the exact value; a period from anywhere else is off by far more


def period_shifts(sent: np.ndarray, back: np.ndarray, reach: int = 16) -> list:
    """For each period of `back` (aligned with `sent` at the expected lag):
    how many periods late it is a copy of `sent` (within TOL), "lost" if it is
    silence, None if it is neither."""
    out: list = []
    cycles = min(len(sent), len(back)) // PERIOD
    for i in range(cycles):
        seg = back[i * PERIOD:(i + 1) * PERIOD]
        found = None
        for k in (0, *range(1, reach), *range(-1, -reach, -1)):
            j = i - k
            if 0 <= j < cycles and np.max(np.abs(seg - sent[j * PERIOD:(j + 1) * PERIOD])) <= TOL:
                found = k
                break
        out.append("lost" if found is None and not seg.any() else found)
    return out


def port_latency(server: str, port: str, mode: str) -> int:
    """A port's latency range as JACK reports it (jack_lsp -l); min == max here."""
    text = lsp(server, "-l")
    m = re.search(rf"^{re.escape(port)}\n(?:\s+.*\n)*?\s+port {mode} latency = "
                  rf"\[ (\d+) (\d+) \]", text, re.M)
    assert m and m.group(1) == m.group(2), text
    return int(m.group(1))


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    """tests/jack_probe.c, compiled against the system libjack."""
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "no C compiler")
    require(Path("/usr/include/jack/jack.h").exists(),
            "<jack/jack.h> is missing (Debian: libjack-jackd2-dev)")
    exe = tmp_path_factory.mktemp("probe") / "jack_probe"
    r = subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                        str(HERE / "jack_probe.c"), "-o", str(exe), "-ljack"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return exe


class NetRig:
    """A master (dummy driver + netmanager) and a slave (net driver) on loopback."""

    def __init__(self, tmp_path: Path, tag: str, sync: bool = False) -> None:
        require(shutil.which("jack_load") is not None, "jack_load is not installed (jackd2)")
        self.master_name = f"mgnj-m-{tag}"
        self.slave_name = f"mgnj-s-{tag}"
        self.client = f"mgslave{tag}"  # the slave's client name on the master
        self.udp = free_udp_port()
        self.servers: list[JackServer] = []
        try:
            self.master = start_server(self.master_name, tmp_path / "master.log", "-d",
                                       "dummy", "-r", str(RATE), "-p", str(PERIOD))
            self.servers.append(self.master)
            r = subprocess.run(["jack_load", "-s", self.master_name, "netmanager", "-i",
                                f"-a 127.0.0.1 -p {self.udp}"], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=20)
            assert r.returncode == 0, r.stdout + r.stderr
            self.sync = sync
            self.slave = start_server(self.slave_name, tmp_path / "slave.log",
                                      *(["-S"] if sync else []), "-d", "net",
                                      "-a", "127.0.0.1", "-p", str(self.udp), "-n", self.client,
                                      "-C", "2", "-P", "2", "-i", "0", "-o", "0",
                                      "-l", str(NET_LATENCY))
            self.servers.append(self.slave)
        except BaseException:
            self.close()  # a master already started is not left running
            raise

    def close(self) -> None:
        """netmanager out first: a master stopped with it loaded and a slave
        gone waits 12 s on the slave's client, and a jackd killed instead of
        stopped leaves its entry in JACK's server registry (8 entries for the
        whole machine: "Too many servers already active" for every user)."""
        if self.servers and self.master.proc.poll() is None:
            subprocess.run(["jack_unload", "netmanager", self.master_name], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        for server in reversed(self.servers):
            stop_server(server)


@pytest.fixture
def rig(tmp_path, request):
    """The two servers; `sync` (indirect parameter): the slave runs `jackd -S`."""
    # a fixed length: jackd2 1.9.21's jack_lsp aborts (a heap overflow) on a
    # server name of exactly 24 characters
    digest = hashlib.sha1(request.node.name.encode()).hexdigest()[:10]
    tag = f"{os.getpid():07d}-{digest}"
    r = NetRig(tmp_path, tag, sync=getattr(request, "param", False))
    yield r
    r.close()


def test_slave_ports_on_both_servers(rig):
    """The master sees the slave as a client with 2 channels each way; the
    slave's system ports are those channels, at the master's rate and period."""
    master = lsp(rig.master_name).split()
    for n in (1, 2):
        assert f"{rig.client}:to_slave_{n}" in master, master
        assert f"{rig.client}:from_slave_{n}" in master, master
    slave = lsp(rig.slave_name).split()
    assert sorted(p for p in slave if p.startswith("system:")) == [
        "system:capture_1", "system:capture_2", "system:playback_1", "system:playback_2"], slave
    assert f"Period size : {PERIOD} frames" in rig.slave.log_text()
    assert f"Sample rate : {RATE} frames" in rig.slave.log_text()


def signal_pair(seconds: float = 2.0) -> tuple[np.ndarray, int, int]:
    """Two channels: a burst of seeded noise at 0.1 s (marks the lag), then
    from 0.2 s a tone per channel at LEVEL_DBFS peak. Returns (frames x 2,
    first tone frame, marker frame)."""
    n = int(seconds * RATE)
    x = np.zeros((n, 2), np.float32)
    mark, tone = RATE // 10, RATE // 5
    rng = np.random.default_rng(15)
    x[mark:mark + 1024] = rng.uniform(-0.1, 0.1, (1024, 2))
    t = np.arange(n - tone) / RATE
    amp = 10 ** (LEVEL_DBFS / 20)
    for c, f in enumerate(FREQS):
        x[tone:, c] = amp * np.sin(2 * np.pi * f * t)
    return x, tone, mark


@pytest.mark.parametrize("rig", [False, True], indirect=True, ids=["async", "sync"])
def test_mixgraph_on_the_slave_gain_and_latency(rig, probe, tmp_path):
    """master probe -> netJACK2 -> mixgraph (gain per channel) on the slave ->
    netJACK2 -> master probe: each channel back at its gain, l + 1 cycles late
    with the slave asynchronous (jackd's default), l cycles synchronous."""
    d = Daemon(tmp_path / "state", "--backend", "jack", "--jack-server", rig.slave_name,
               "--inputs", "2", "--outputs", "2", "--jack-connect", "system")
    try:
        d.client.timeout = 30.0
        st = d.status()
        assert st["backend"] == "jack" and st["sample_rate"] == RATE, st
        assert st["block"] == PERIOD, st
        for c, gain in enumerate(GAINS_DB, 1):
            d.call("/graph/add", "input", f"in{c}", "first", c)
            d.call("/graph/add", "gain", f"g{c}", "gain", gain)
            d.call("/graph/add", "output", f"out{c}", "channels", 1, "first", c)
            d.call("/graph/connect", f"in{c}", f"g{c}")
            d.call("/graph/connect", f"g{c}", f"out{c}")
        d.sync(1)
        conns = lsp(rig.slave_name, "-c")
        for ours, theirs in (("in_1", "system:capture_1"), ("out_2", "system:playback_2")):
            assert re.search(rf"^mixgraph:{ours}\n\s+{theirs}$", conns, re.M), conns

        x, tone, mark = signal_pair()
        sig, rec = tmp_path / "signal.f32", tmp_path / "back.f32"
        x.tofile(sig)
        tail = 20 * PERIOD
        r = subprocess.run([str(probe), rig.master_name, "probe", str(sig), str(rec), str(tail),
                            "2", f"{rig.client}:to_slave_1", f"{rig.client}:to_slave_2",
                            f"{rig.client}:from_slave_1", f"{rig.client}:from_slave_2"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"period {PERIOD}" in r.stdout, r.stdout
        y = np.fromfile(rec, np.float32).reshape(-1, 2)
        assert len(y) == len(x) + tail
        assert d.status()["device_state"] == "running"
        reported = port_latency(rig.master_name, f"{rig.client}:to_slave_1", "playback") + \
            port_latency(rig.master_name, f"{rig.client}:from_slave_1", "capture")
    finally:
        d.stop()

    want_lag = (NET_LATENCY + (0 if rig.sync else 1)) * PERIOD
    assert reported == want_lag, f"the master's netmanager reports {reported} frames"
    report = []
    for c, gain in enumerate(GAINS_DB):
        g = 10 ** (gain / 20)
        # the marker burst comes back a whole number of periods late (the
        # cross-correlation's peak), at the expected lag unless netJACK2 was
        # catching up with the host's load at that moment (or lost it: then
        # the tone's periods below say it alone)
        burst = x[mark:mark + 1024, c].astype(np.float64)
        xc = scipy.signal.correlate(y[:tone + 4 * RATE // 100, c].astype(np.float64), burst,
                                    mode="valid", method="fft")
        lag = int(np.argmax(np.abs(xc))) - mark
        if np.max(np.abs(xc)) > 0.5 * g * np.dot(burst, burst):
            assert lag % PERIOD == 0 and abs(lag - want_lag) <= 2 * PERIOD, (
                f"channel {c + 1}: back after {lag} frames ({lag / PERIOD:.2f} cycles), "
                f"want {want_lag // PERIOD} cycles")
        else:
            lag = None
        # the tone, period by period: which period of the sent tone, times the
        # gain, each returned period is, sample for sample (TOL), counted from
        # the expected lag. On a loaded host netJACK2 loses a period now and
        # then, or takes one a period late while it catches up (the master logs
        # an xrun for each): the most common lag must be the expected one, and
        # every period that is not silence must be the sent tone times the
        # gain, a whole number of periods late.
        sent = x[tone:, c].astype(np.float64) * g
        back = y[tone + want_lag:, c].astype(np.float64)
        shifts = period_shifts(sent, back)
        n = len(shifts)
        counts = Counter(k for k in shifts if isinstance(k, int))
        in_place = counts[0] / n
        lost = shifts.count("lost") / n
        odd = [i for i, k in enumerate(shifts) if k is None]
        assert len(odd) <= 0.02 * n, (f"channel {c + 1}: periods {odd[:10]} are not the "
                                      f"tone times {gain} dB")
        assert counts and counts.most_common(1)[0][0] == 0, (f"channel {c + 1}: periods late by "
                                                  f"{sorted(counts.items())}")
        assert lost <= 0.5, f"channel {c + 1}: {lost:.0%} of the periods were lost"
        # the level: least squares over the periods in place, against the formula
        idx = np.concatenate([np.arange(i * PERIOD, (i + 1) * PERIOD)
                              for i, k in enumerate(shifts) if k == 0])
        est = float(np.dot(back[idx], sent[idx]) / np.dot(sent[idx], sent[idx])) * g
        level = 20 * np.log10(est)
        assert abs(level - gain) < 1e-4, f"channel {c + 1}: {level:.6f} dB, want {gain} dB"
        late = 1 - in_place - lost - len(odd) / n
        marker = "lost" if lag is None else lag // PERIOD
        report.append(f"ch{c + 1}: {gain:g} dB -> {level:+.5f} dB, {want_lag} frames = "
                      f"{want_lag // PERIOD} cycles (marker: {marker}); periods in "
                      f"place {in_place:.0%}, late {late:.0%}, lost {lost:.0%}")
    mode = "sync (jackd -S)" if rig.sync else "async"
    print(f"\n  [measured] netJACK2 round trip through mixgraph on a {mode} slave, "
          f"-l {NET_LATENCY}, {PERIOD} frames: " + "; ".join(report))
