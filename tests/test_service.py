"""The unattended box (issue 16): the systemd unit, sd_notify with a watchdog that
follows the audio clock, one server per state directory, and `mixgraph health`.

Real parts: systemd's own `systemd-analyze verify` checks the generated unit; a
real AF_UNIX datagram socket stands in for systemd's notify socket; real daemon
processes (one SIGKILLed) compete for a state directory."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require

from mixgraph.server import service

from daemon_util import Daemon, free_udp_port

CLI = [sys.executable, "-m", "mixgraph.server.cli"]


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    require(shutil.which("systemd-analyze") is not None,
            "systemd-analyze is not installed (Debian: systemd)")
    # install through the CLI, into a file of our own (not /etc)
    unit = tmp_path / "mixgraph.service"
    exe = tmp_path / "mixgraph"  # verify checks that ExecStart's program exists
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    text = service.unit_text(["--backend", "null", "--port", "9000"], exe=str(exe))
    unit.write_text(text)
    for key in ("Type=notify", "Restart=always", "RestartSec=1", "LimitRTPRIO=95",
                "LimitMEMLOCK=infinity", "WatchdogSec=5", "KillSignal=SIGINT",
                "After=sound.target"):
        assert key in text, key
    assert f"ExecStart={exe} serve --no-status --backend null --port 9000" in text
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    errors = [ln for ln in (r.stdout + r.stderr).splitlines() if "mixgraph.service" in ln]
    assert r.returncode == 0 and not errors, r.stdout + r.stderr
    jack = service.unit_text(["--backend", "jack"], exe=str(exe))
    assert "jack.service" in jack.split("[Service]")[0]


def test_service_install_and_uninstall_for_a_user(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    r = subprocess.run([*CLI, "service", "install", "--user", "--", "--backend", "null"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "cfg" / "systemd" / "user" / "mixgraph.service"
    assert unit.exists() and "--backend null" in unit.read_text()
    assert "systemctl --user enable --now mixgraph.service" in r.stdout
    assert "systemctl --user daemon-reload" in r.stdout
    r = subprocess.run([*CLI, "service", "uninstall", "--user"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0 and not unit.exists(), r.stdout + r.stderr


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.2)
    return s, path


def _read_all(s: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append((time.monotonic(), s.recv(4096).decode()))
        except TimeoutError:
            pass
    return out


def test_sd_notify_ready_status_watchdog_and_stopping(tmp_path):
    """READY=1 after the state is restored (the restored node is in the graph when
    it arrives), STATUS= lines, WATCHDOG=1 about every second while the audio clock
    runs, STOPPING=1 on SIGTERM."""
    sock, path = _notify_socket(tmp_path)
    state = tmp_path / "state"
    first = Daemon(state, "--backend", "null")
    first.call("/graph/add", "gain", "kept")
    assert first.stop() == 0
    d = Daemon(state, "--backend", "null",
               env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        msgs = _read_all(sock, 3.5)
        text = [m for _, m in msgs]
        ready = [m for m in text if "READY=1" in m]
        assert len(ready) == 1 and "STATUS=null" in ready[0], text
        assert d.status()["nodes"] == 1  # restored before READY went out
        pings = [t for t, m in msgs if m == "WATCHDOG=1"]
        assert len(pings) >= 2, text  # every second with WATCHDOG_USEC = 2 s
        assert all(b - a < 1.9 for a, b in zip(pings, pings[1:], strict=False)), pings
        assert any(m.startswith("STATUS=") and "xruns" in m for m in text), text
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(15)
    tail = [m for _, m in _read_all(sock, 0.5)]
    assert any("STOPPING=1" in m for m in tail), tail
    sock.close()


def test_the_watchdog_stops_when_the_audio_clock_stops(tmp_path):
    """A test hook stops the null clock 1.5 s after the start (a stalled audio
    thread): WATCHDOG=1 keeps coming before, and none comes after."""
    sock, path = _notify_socket(tmp_path)
    d = Daemon(tmp_path / "state", "--backend", "null",
               env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000",
                    "MIXGRAPH_TEST_STALL_AUDIO_S": "1.5"})
    try:
        t0 = time.monotonic()
        msgs = _read_all(sock, 4.5)
        pings = [t - t0 for t, m in msgs if m == "WATCHDOG=1"]
        assert pings and pings[0] < 1.5, pings
        assert not [t for t in pings if t > 2.3], pings  # nothing after the stall
        assert d.status()["uptime"] > 0  # the control thread still answers
        r = subprocess.run([*CLI, "health", "--port", str(d.port)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1 and r.stdout.startswith("CRITICAL"), r.stdout
    finally:
        d.stop()
        sock.close()


def test_health_is_ok_for_a_running_server_and_critical_for_none(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        r = subprocess.run([*CLI, "health", "--port", str(d.port)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.startswith("OK - null"), r.stdout + r.stderr
        assert len(r.stdout.strip().splitlines()) == 1
        assert re.search(r"worst \d+\.\d us of 1333\.3 in 10 s \(\d+\.\d since the start\)",
                         r.stdout), r.stdout
    finally:
        d.stop()
    r = subprocess.run([*CLI, "health", "--port", str(free_udp_port()), "--timeout", "0.5"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stdout.startswith("CRITICAL"), r.stdout


def test_one_server_per_state_directory(tmp_path):
    """A second server on the same --state-dir refuses, naming the first one's PID;
    after a SIGKILL of the first, a new one starts (the kernel dropped the lock)."""
    state = tmp_path / "state"
    first = Daemon(state, "--backend", "null")
    try:
        r = subprocess.run([*CLI, "serve", "--backend", "null", "--port", str(free_udp_port()),
                            "--state-dir", str(state), "--no-status"],
                           capture_output=True, text=True, timeout=180,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"pid {first.proc.pid}" in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        first.stop(signal.SIGKILL)
    second = Daemon(state, "--backend", "null")
    try:
        assert second.status()["backend"] == "null"
    finally:
        second.stop()


@pytest.mark.parametrize("addr", ["@mixgraph-test-abstract"])
def test_notifier_handles_the_abstract_namespace(addr):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = addr + str(os.getpid())
    s.bind("\0" + name[1:])
    s.settimeout(2)
    n = service.Notifier({"NOTIFY_SOCKET": name})
    assert n.notify("READY=1")
    assert s.recv(100) == b"READY=1"
    n.close()
    s.close()
    assert not service.Notifier({}).notify("READY=1")  # no socket: a quiet no-op
