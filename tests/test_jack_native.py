"""mixgraph as a native JACK client (`--backend jack`), on a real jackd.

Every test starts its own jackd on the dummy driver under a unique server
name (so tests can run side by side), runs `mixgraph serve --backend jack
--jack-server <name>` as a real process, and looks at it from outside:
jack_lsp for ports, connections and latencies, jack_rec (jackd2's example
client) to record what reaches mixgraph:out_1, jack_bufsize to change the
period, and killing/restarting jackd for a server that goes away."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import JackServer, launch_jackd, require, stop_jackd

from mixgraph.clients import Client

from daemon_util import Daemon

RATE = 48000
PERIOD = 64


def start_jackd(name: str, log: Path, rate: int = RATE, period: int = PERIOD) -> JackServer:
    server = launch_jackd(name, log, ["--no-realtime"],
                          ["-d", "dummy", "-r", str(rate), "-p", str(period)])
    server.rate, server.period = rate, period
    return server


@pytest.fixture
def server_name(request):
    return f"mg-native-{os.getpid()}-{request.node.name[:20]}"


@pytest.fixture
def jack(server_name, tmp_path):
    server = start_jackd(server_name, tmp_path / "jackd.log")
    yield server
    stop_jackd(server)


def serve(tmp_path: Path, server: str, *extra: str) -> Daemon:
    d = Daemon(tmp_path / "state", "--backend", "jack", "--jack-server", server, *extra)
    d.client.timeout = 30.0
    return d


def jack_env(name: str) -> dict:
    return dict(os.environ, JACK_DEFAULT_SERVER=name)


def record(name: str, port: str, path: Path, seconds: int = 1) -> np.ndarray:
    """What reaches `port`, recorded by jack_rec (jackd2's example client)."""
    require(shutil.which("jack_rec") is not None, "jack_rec is not installed (Debian: jackd2)")
    path.unlink(missing_ok=True)
    r = subprocess.run(["jack_rec", "-f", str(path), "-d", str(seconds), "-b", "32", port],
                       env=jack_env(name), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and path.exists(), r.stdout + r.stderr
    x, sr = soundfile.read(path, dtype="float64", always_2d=True)
    assert sr == RATE
    return x[:, 0]


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-30)


def ports(name: str, *flags: str) -> str:
    return subprocess.run(["jack_lsp", "-s", name, *flags], capture_output=True, text=True,
                          env=jack_env(name), timeout=60).stdout


def tone_patch(d: Daemon) -> None:
    """A -20 dBFS-peak 1 kHz sine through -6 dB to hardware output 1."""
    d.call("/graph/add", "sine", "osc", "freq", 1000.0, "level", -20.0)
    d.call("/graph/add", "gain", "g", "gain", -6.0)
    d.call("/graph/add", "output", "out", "channels", 1)
    d.call("/graph/connect", "osc", "g")
    d.call("/graph/connect", "g", "out")
    d.sync(1)


# a sine of peak A has RMS A / sqrt(2): -20 - 6 dBFS peak is this RMS
TONE_RMS_DB = -26.0 - 10 * np.log10(2)


def assert_tone(x: np.ndarray, what: str) -> None:
    x = x[RATE // 10:]  # past jack_rec's first buffers
    assert len(x) > RATE // 4, what
    level = rms_db(x)
    assert abs(level - TONE_RMS_DB) < 0.1, f"{what}: {level:.2f} dBFS RMS, want {TONE_RMS_DB:.2f}"
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.argmax(spectrum) * RATE / len(x)
    assert abs(peak_hz - 1000.0) < 5.0, f"{what}: spectral peak at {peak_hz:.1f} Hz"


def test_ports_and_a_tone_at_the_right_level(jack, tmp_path):
    d = serve(tmp_path, jack.name, "--inputs", "2", "--outputs", "3")
    try:
        st = d.status()
        assert st["backend"] == "jack" and st["device_state"] == "running", st
        listed = ports(jack.name).split()
        mine = sorted(p for p in listed if p.startswith("mixgraph:"))
        assert mine == ["mixgraph:in_1", "mixgraph:in_2", "mixgraph:midi_in",
                        "mixgraph:midi_out", "mixgraph:out_1", "mixgraph:out_2",
                        "mixgraph:out_3"], listed
        tone_patch(d)
        # the engine's process function is JACK's process callback: its sample
        # clock moves with JACK's periods
        t0 = d.status()["time"]
        assert_tone(record(jack.name, "mixgraph:out_1", tmp_path / "out1.wav"), "out_1")
        assert d.status()["time"] - t0 >= RATE // 2
        # out_2 carries nothing
        assert np.max(np.abs(record(jack.name, "mixgraph:out_2", tmp_path / "o2.wav"))) == 0.0
    finally:
        d.stop()


def test_inputs_reach_the_graph(jack, tmp_path):
    """in_1 -> input node -> meter, fed from out_1 through a JACK connection."""
    d = serve(tmp_path, jack.name, "--inputs", "1", "--outputs", "1")
    try:
        tone_patch(d)
        d.call("/graph/add", "input", "in", "channels", 1)
        d.call("/graph/add", "meter", "m", "channels", 1)
        d.call("/graph/connect", "in", "m")
        d.sync(2)
        subprocess.run(["jack_connect", "-s", jack.name, "mixgraph:out_1", "mixgraph:in_1"],
                       check=True, timeout=60)
        deadline = time.monotonic() + 30  # the meter's reading, waited for (was 1 s)
        while abs((peak := d.request("/node/m/peak")[1])[0] - (-26.0)) >= 0.1 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert abs(peak[0] - (-26.0)) < 0.1, peak
    finally:
        d.stop()


def test_port_counts_come_from_the_patch(jack, tmp_path):
    """Without --inputs/--outputs, the saved patch's input/output nodes decide."""
    d = serve(tmp_path, jack.name, "--inputs", "8", "--outputs", "8")
    try:
        d.call("/graph/add", "output", "out", "channels", 2, "first", 3)
        d.call("/graph/add", "input", "in", "channels", 3)
        d.sync(1)
    finally:
        assert d.stop() == 0  # the autosave is written at stop
    d = serve(tmp_path, jack.name)
    try:
        mine = sorted(p for p in ports(jack.name).split() if p.startswith("mixgraph:"))
        assert mine == ["mixgraph:in_1", "mixgraph:in_2", "mixgraph:in_3", "mixgraph:midi_in",
                        "mixgraph:midi_out", "mixgraph:out_1", "mixgraph:out_2",
                        "mixgraph:out_3", "mixgraph:out_4"], mine
        assert d.status()["nodes"] == 2
    finally:
        d.stop()


def test_jack_name_and_connect_pairs(jack, tmp_path):
    d = serve(tmp_path, jack.name, "--jack-name", "fohmix", "--outputs", "2", "--inputs", "1",
              "--jack-connect", "out_1=system:playback_2,out_2=system:playback_1",
              "--jack-connect", "in_1=system:capture_2")
    try:
        text = ports(jack.name, "-c")
        conns = {}
        current = None
        for line in text.splitlines():
            if line.startswith((" ", "\t")):
                conns.setdefault(current, []).append(line.strip())
            else:
                current = line.strip()
        assert conns.get("fohmix:out_1") == ["system:playback_2"], text
        assert conns.get("fohmix:out_2") == ["system:playback_1"], text
        assert conns.get("fohmix:in_1") == ["system:capture_2"], text
    finally:
        d.stop()


def test_connect_system(jack, tmp_path):
    d = serve(tmp_path, jack.name, "--jack-connect", "system")
    try:
        text = ports(jack.name, "-c")
        for ours, theirs in (("in_1", "system:capture_1"), ("in_2", "system:capture_2"),
                             ("out_1", "system:playback_1"), ("out_2", "system:playback_2")):
            assert re.search(rf"^mixgraph:{ours}\n\s+{theirs}$", text, re.M), text
    finally:
        d.stop()


def test_bad_connect_spec_is_refused(jack, tmp_path):
    with pytest.raises(RuntimeError, match="our_port=their_port_pattern"):
        serve(tmp_path, jack.name, "--jack-connect", "out_1")


def test_auto_picks_a_running_jack_server(jack, tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "auto", env={"JACK_DEFAULT_SERVER": jack.name})
    try:
        assert d.status()["backend"] == "jack"
        assert "mixgraph:out_1" in ports(jack.name)
    finally:
        d.stop()


def test_graph_latency_is_reported_on_the_output_ports(jack, tmp_path):
    d = serve(tmp_path, jack.name, "--inputs", "1", "--outputs", "1")
    try:
        d.call("/graph/add", "sine", "osc")
        d.call("/graph/add", "limiter", "lim", "channels", 1)
        d.call("/graph/add", "output", "out", "channels", 1)
        d.call("/graph/connect", "osc", "lim")
        d.call("/graph/connect", "lim", "out")
        d.sync(1)
        # the limiter's documented latency: 5 ms + 64 samples (docs/nodes.md)
        want = round(0.005 * RATE) + 64
        deadline = time.monotonic() + 30
        while True:
            text = ports(jack.name, "-l")
            m = re.search(r"^mixgraph:out_1\n(?:\s+.*\n)*?"
                          r"\s+port capture latency = \[ (\d+) (\d+) \]", text, re.M)
            if m and (int(m.group(1)), int(m.group(2))) == (want, want):
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.25)
    finally:
        d.stop()


def test_xruns_are_counted_in_status(jack, tmp_path):
    """Stop the daemon for a moment: JACK's cycle misses its client and tells
    it (the xrun callback), which /status counts."""
    d = serve(tmp_path, jack.name)
    try:
        time.sleep(0.5)
        before = d.status()["xruns"]
        for _ in range(3):
            os.kill(d.proc.pid, signal.SIGSTOP)
            time.sleep(0.05)
            os.kill(d.proc.pid, signal.SIGCONT)
            time.sleep(0.3)
        st = d.status()
        assert st["xruns"] > before, (before, st)
        assert st["device_state"] == "running" and st["backend"] == "jack", st
    finally:
        d.stop()


def test_buffer_size_change_keeps_the_graph(jack, tmp_path):
    require(shutil.which("jack_bufsize") is not None, "jack_bufsize is not installed (jackd2)")
    d = serve(tmp_path, jack.name, "--outputs", "1")
    try:
        tone_patch(d)
        assert d.status()["block"] == PERIOD
        subprocess.run(["jack_bufsize", "256"], env=jack_env(jack.name), check=True,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while d.status()["block"] != 256:
            assert time.monotonic() < deadline, d.status()
            time.sleep(0.1)
        st = d.status()
        assert st["nodes"] == 3 and st["backend"] == "jack", st
        assert_tone(record(jack.name, "mixgraph:out_1", tmp_path / "out.wav"), "after 256")
    finally:
        d.stop()


def test_sample_rate_mismatch_is_a_clear_error(server_name, tmp_path):
    server = start_jackd(server_name, tmp_path / "jackd.log", rate=44100)
    try:
        with pytest.raises(RuntimeError) as info:
            serve(tmp_path, server.name, "--rate", "48000")
        text = " ".join(str(info.value).split())  # the console wraps lines
        assert "runs at 44100 Hz" in text and "--rate 44100" in text, text
        assert "daemon exited 2" in text
    finally:
        stop_jackd(server)


def test_server_killed_and_restarted(jack, server_name, tmp_path):
    """The daemon keeps its graph on the null clock while the server is gone
    (/status: waiting), and goes back to JACK, audio flowing, when it returns."""
    d = serve(tmp_path, jack.name, "--outputs", "1")
    again = None
    events: list = []
    watcher = None
    try:
        watcher = Client("127.0.0.1", d.port, timeout=30.0)
        tone_patch(d)
        watcher.subscribe(lambda addr, args: events.append((addr, args))
                          if addr == "/device/state" else None)
        stop_jackd(jack)
        deadline = time.monotonic() + 30
        while (st := d.status())["device_state"] != "waiting":
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["backend"] == f"null (waiting for JACK server '{jack.name}')", st
        t = st["time"]
        # the null clock runs on: a tenth of a second of frames, within 30 s (a starved
        # host's clock thread ran 36 % of real time; a fixed 0.5 s wait was the test)
        deadline = time.monotonic() + 30
        while (st := d.status())["time"] - t <= RATE // 10:
            assert time.monotonic() < deadline, "the null clock is not running"
            time.sleep(0.1)
        assert st["nodes"] == 3 and d.request("/node/g/gain")[1] == [-6.0]
        assert d.proc.poll() is None
        assert "lost JACK server" in d.output()

        t0 = time.monotonic()
        again = start_jackd(server_name, tmp_path / "jackd2.log")
        t_up = time.monotonic()
        deadline = t_up + 10.0
        while (st := d.status())["device_state"] != "running":
            assert time.monotonic() < deadline, st
            time.sleep(0.05)
        t_back = time.monotonic()
        assert st["backend"] == "jack" and st["nodes"] == 3, st
        assert_tone(record(server_name, "mixgraph:out_1", tmp_path / "back.wav"), "after return")
        t_audio = time.monotonic()
        assert t_audio - t_up < 10.0
        assert "is back after" in d.output()
        waiting = f"null (waiting for JACK server '{server_name}')"
        deadline = time.monotonic() + 30
        while len(events) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events == [("/device/state", ["waiting", waiting]),
                          ("/device/state", ["running", "jack"])], events
        print(f"\n  [measured] server up {t_up - t0:.2f} s after start; mixgraph back on JACK "
              f"{t_back - t_up:.2f} s after the server was up; tone recorded at the right "
              f"level {t_audio - t_up:.2f} s after (includes jack_rec's 1 s)")
    finally:
        if watcher is not None:
            watcher.close()
        d.stop()
        if again is not None:
            stop_jackd(again)


def test_a_server_back_at_another_rate_is_refused_until_it_matches(jack, server_name,
                                                                   tmp_path):
    d = serve(tmp_path, jack.name, "--outputs", "1")
    servers = []
    try:
        tone_patch(d)
        stop_jackd(jack)
        servers.append(start_jackd(server_name, tmp_path / "jackd2.log", rate=44100))
        deadline = time.monotonic() + 30
        while "runs at 44100 Hz" not in d.output():
            assert time.monotonic() < deadline, d.output()
            time.sleep(0.1)
        st = d.status()
        assert st["device_state"] == "waiting" and st["sample_rate"] == 48000.0, st
        assert st["nodes"] == 3
        stop_jackd(servers[-1])
        servers.append(start_jackd(server_name, tmp_path / "jackd3.log"))
        deadline = time.monotonic() + 30
        while d.status()["device_state"] != "running":
            assert time.monotonic() < deadline, d.output()
            time.sleep(0.1)
        assert_tone(record(server_name, "mixgraph:out_1", tmp_path / "back.wav"), "at 48 kHz")
    finally:
        d.stop()
        for server in servers:
            stop_jackd(server)


def _thread_cpus(pid: int) -> dict[int, set[int]]:
    """Each thread of `pid`: the CPUs it may run on."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = os.sched_getaffinity(int(task.name))
        except OSError:
            continue
    return out


def test_jack_cpu_pins_the_process_thread_and_keeps_the_others_off(jack, tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    require(len(cpus) >= 2, "--jack-cpu needs two CPUs")
    cpu = cpus[-1]
    d = serve(tmp_path, jack.name, "--jack-cpu", str(cpu))
    try:
        tone_patch(d)
        assert f"pinned to CPU {cpu}" in " ".join(d.output().split())
        threads = _thread_cpus(d.proc.pid)
        pinned = [t for t, c in threads.items() if c == {cpu}]
        assert len(pinned) == 1, threads  # JACK's process thread
        others = [c for t, c in threads.items() if t != pinned[0]]
        assert others and all(cpu not in c for c in others), threads
        assert_tone(record(jack.name, "mixgraph:out_1", tmp_path / "pin.wav"), "pinned")
    finally:
        d.stop()
    # off (the default): nothing is restricted
    d = serve(tmp_path, jack.name)
    try:
        assert "pinned" not in d.output()
        assert all(c == set(cpus) for c in _thread_cpus(d.proc.pid).values())
    finally:
        d.stop()


def test_a_bad_jack_cpu_is_refused(jack, tmp_path):
    for bad, why in (("9999", "may run on CPUs"), ("x", "a CPU number or off")):
        with pytest.raises(RuntimeError) as info:
            serve(tmp_path, jack.name, "--jack-cpu", bad)
        assert why in " ".join(str(info.value).split())


def test_realtime_server_gives_a_fifo_thread_and_memory_is_locked(server_name, tmp_path):
    """With jackd -R the process callback runs on JACK's SCHED_FIFO thread
    (mixgraph says so), and the daemon's memory is locked (mlockall)."""
    server = launch_jackd(server_name, tmp_path / "jackd.log", ["-R", "-P", "70"],
                          ["-d", "dummy", "-r", str(RATE), "-p", str(PERIOD)])
    try:
        d = serve(tmp_path, server.name)
        try:
            text = " ".join(d.output().split())
            if "not real-time" in text:
                pytest.skip("jackd -R got no real-time scheduling here (rtprio limits)")
            assert "real-time (JACK's SCHED_FIFO thread)" in text, text
            fifo = []
            for task in Path(f"/proc/{d.proc.pid}/task").iterdir():
                try:
                    if os.sched_getscheduler(int(task.name)) == os.SCHED_FIFO:
                        fifo.append(os.sched_getparam(int(task.name)).sched_priority)
                except OSError:
                    continue
            assert fifo, "no SCHED_FIFO thread in the daemon"
            assert max(fifo) < 70  # below the server's own (-P 70)
            status = Path(f"/proc/{d.proc.pid}/status").read_text()
            locked_kb = int(re.search(r"VmLck:\s+(\d+)", status).group(1))
            if "memory locked (mlockall)" in text:
                assert locked_kb > 10_000, status
            else:  # no RLIMIT_MEMLOCK here: the banner says why
                assert "memory not locked (" in text, text
        finally:
            d.stop()
    finally:
        stop_jackd(server)
