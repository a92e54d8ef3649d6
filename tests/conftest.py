"""Shared fixtures: a private JACK server on the dummy driver, subprocess helpers.

Real-time behaviour is tested against a real audio driver with no hardware:
jackd's dummy backend, reached through PortAudio's JACK host API (Debian's
libportaudio2). Under CI (env CI set) a missing tool is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

JACK_RATE = 48000
JACK_PERIOD = 64


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing; under CI fail instead."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI is set: missing prerequisites are failures)", pytrace=False)
    pytest.skip(reason)


def _jack_up(server: str, env: dict) -> bool:
    r = subprocess.run(["jack_lsp", "-s", server], env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                       timeout=10)
    return r.returncode == 0 and "system:playback_1" in r.stdout


class JackServer:
    """A running jackd: its name (also in JACK_DEFAULT_SERVER), rate, period, log."""

    def __init__(self, name: str, proc: subprocess.Popen, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.rate = JACK_RATE
        self.period = JACK_PERIOD

    def ports(self, connections: bool = False) -> str:
        args = ["jack_lsp", "-s", self.name] + (["-c"] if connections else [])
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=10).stdout

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="session")
def jackd(tmp_path_factory):
    """jackd --no-realtime -d dummy -r 48000 -p 64 under a private server name.

    The name goes into os.environ["JACK_DEFAULT_SERVER"], so PortAudio's JACK
    host API (which connects to the default server) in this process and in
    every subprocess finds it; PortAudio is re-initialised here because it
    enumerates devices once, when it starts."""
    exe = shutil.which("jackd")
    require(exe is not None, "jackd is not installed (Debian: jackd2)")
    require(shutil.which("jack_lsp") is not None, "jack_lsp is not installed (Debian: jackd2)")
    name = f"mixgraph-test-{os.getpid()}"
    log = tmp_path_factory.mktemp("jackd") / "jackd.log"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [exe, "--no-realtime", "-n", name, "-d", "dummy", "-r", str(JACK_RATE),
             "-p", str(JACK_PERIOD)],
            env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = JackServer(name, proc, log)
    old = os.environ.get("JACK_DEFAULT_SERVER")
    try:
        deadline = time.monotonic() + 15.0
        while not _jack_up(name, env):
            if proc.poll() is not None:
                pytest.fail(f"jackd exited with status {proc.returncode}:\n{server.log_text()}",
                            pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"jackd did not come up within 15 s:\n{server.log_text()}",
                            pytrace=False)
            time.sleep(0.1)
        os.environ["JACK_DEFAULT_SERVER"] = name
        _rescan()
        yield server
    finally:
        reopen = _close_portaudio()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        if reopen:
            sys.modules["sounddevice"]._initialize()


def _rescan() -> None:
    """Make this process's PortAudio see the devices that exist now."""
    try:
        from mixgraph.server.backends import rescan_devices
    except ImportError:
        return
    rescan_devices()


def _close_portaudio() -> bool:
    """Let PortAudio's JACK client leave before its server goes away; True if
    PortAudio was running (and is to be re-initialised afterwards)."""
    sd = sys.modules.get("sounddevice")
    if sd is None or getattr(sd, "_initialized", 0) <= 0:
        return False
    sd._terminate()
    return True


@pytest.fixture(name="require")
def require_fixture():
    """`require(condition, reason)`: skip, or under CI fail, when a prerequisite is missing."""
    return require


@pytest.fixture
def run_python():
    """Run Python code in a fresh interpreter (fresh PortAudio); returns its
    stdout's last line parsed as JSON. The environment (JACK_DEFAULT_SERVER
    included) is inherited."""

    def run(code: str, timeout: float = 60.0):
        r = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"subprocess failed ({r.returncode}):\n{r.stderr}"
        lines = r.stdout.strip().splitlines()
        assert lines, f"subprocess printed nothing:\n{r.stderr}"
        return json.loads(lines[-1])

    return run


# ---- offline sessions for node tests ---------------------------------------------------

class Sessions:
    """Makes offline engine + session pairs and frees them all at the end of a test."""

    def __init__(self, rate: int = 48000) -> None:
        self.rate = rate
        self.made: list = []

    def __call__(self, hw_in: int, hw_out: int, rate: int | None = None):
        from mixgraph.server.engine import Engine
        from mixgraph.server.session import Session

        e = Engine(rate or self.rate, hw_in, hw_out)
        s = Session(e)
        self.made.append((s, e))
        return s, e

    def chain(self, type_name: str, name: str, settings: dict, in_ch: int, out_ch: int,
              rate: int | None = None):
        """input -> NODE -> output, committed; returns (session, engine)."""
        s, e = self(in_ch, out_ch, rate)
        s.add_node("input", "in", {"channels": in_ch})
        s.add_node(type_name, name, settings)
        s.add_node("output", "out", {"channels": out_ch})
        s.connect("in", name)
        s.connect(name, "out")
        s.commit()
        return s, e

    def close(self) -> None:
        for s, e in self.made:
            s.close()
            e.free()
        self.made.clear()


@pytest.fixture
def sessions():
    """`sessions(hw_in, hw_out)` -> (session, engine); `sessions.chain(...)` builds
    input -> node -> output. Everything is freed after the test."""
    made = Sessions()
    yield made
    made.close()
