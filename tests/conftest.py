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
from jack_registry import reclaim as reclaim_jack_registry

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
    """jack_lsp lists the server's system:playback_1 (False while it starts; also
    when a jack_lsp on a loaded host takes longer than its 30 s: asked again)."""
    try:
        r = subprocess.run(["jack_lsp", "-s", server], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=30)
    except subprocess.TimeoutExpired:
        return False
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
                              timeout=60).stdout

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


TOO_MANY = "Too many servers already active"


def launch_jackd(name: str, log: Path, opts: list[str], driver: list[str],
                 up_s: float = 60.0, slot_s: float = 120.0) -> JackServer:
    """jackd `opts` -n name `driver`, in a session of its own, its output in `log`;
    returned once jack_lsp lists system:playback_1 on it. A failure says what
    jackd logged. Registry slots of servers that died unannounced are freed
    first (tests/jack_registry.py: jackd2 has room for 8). When all 8 are held
    by live servers (another test run on the same host: the registry is the
    machine's), jackd exits saying so: started again, for up to slot_s, as
    servers end. up_s: a loaded host (load 10+ on 2 cores) takes seconds to
    start jackd and run each jack_lsp, and the start is no part of what a test
    checks, so the deadline is generous."""
    exe = shutil.which("jackd")
    require(exe is not None, "jackd is not installed (Debian: jackd2)")
    require(shutil.which("jack_lsp") is not None, "jack_lsp is not installed (Debian: jackd2)")
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    slot_by = time.monotonic() + slot_s
    while True:
        reclaim_jack_registry()
        start = log.stat().st_size if log.exists() else 0
        with open(log, "ab") as fh:
            proc = subprocess.Popen([exe, *opts, "-n", name, *driver], env=env,
                                    stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        server = JackServer(name, proc, log)
        deadline = time.monotonic() + up_s
        while not _jack_up(name, env):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return server
        said = log.read_bytes()[start:].decode("utf-8", "replace")
        if proc.poll() is not None and TOO_MANY in said and time.monotonic() < slot_by:
            time.sleep(1.0)
            continue
        if proc.poll() is not None:
            pytest.fail(f"jackd {name} exited with status {proc.returncode}:\n"
                        f"{server.log_text()[-3000:]}", pytrace=False)
        stop_jackd(server)
        pytest.fail(f"jackd {name} did not come up within {up_s:g} s:\n"
                    f"{server.log_text()[-3000:]}", pytrace=False)


def stop_jackd(server: JackServer, wait_s: float = 30.0) -> None:
    """SIGTERM and a generous wait: jackd leaves JACK's server registry on the way
    out, which SIGKILL (the last resort) skips."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def jackd(tmp_path_factory):
    """jackd --no-realtime -d dummy -r 48000 -p 64 under a private server name.

    The name goes into os.environ["JACK_DEFAULT_SERVER"], so PortAudio's JACK
    host API (which connects to the default server) in this process and in
    every subprocess finds it; PortAudio is re-initialised here because it
    enumerates devices once, when it starts."""
    name = f"mixgraph-test-{os.getpid()}"
    log = tmp_path_factory.mktemp("jackd") / "jackd.log"
    server = launch_jackd(name, log, ["--no-realtime"],
                          ["-d", "dummy", "-r", str(JACK_RATE), "-p", str(JACK_PERIOD)])
    old = os.environ.get("JACK_DEFAULT_SERVER")
    try:
        os.environ["JACK_DEFAULT_SERVER"] = name
        _rescan()
        yield server
    finally:
        reopen = _close_portaudio()
        stop_jackd(server)
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


def require_avx512(what: str) -> None:
    """Skip, saying why, where the CPU has no AVX-512: nodes whose sixteen-float path
    is chosen from CPUID at load (limiter.c tp_wide, reverb.c rv_wide) run only their
    eight-float path there, and their MIXGRAPH_*_NARROW switch can only take the
    narrow path, so a test comparing the two widths would compare a path with itself
    and pass without checking anything (as it did on the AMD EPYC host)."""
    try:
        flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    if " avx512f" not in flags:
        pytest.skip(f"{what}: this CPU has no AVX-512, so only the eight-float path can "
                    "run here (the sixteen-float one is chosen from CPUID at load and no "
                    "switch forces it); both runs would take the same path")


@pytest.fixture
def dispatch_rig():
    """(dispatcher, say): an in-process session and OSC dispatcher on the null clock,
    say(address, *args) returning the last reply (daemon_util.in_process_dispatcher)."""
    from daemon_util import in_process_dispatcher

    with in_process_dispatcher() as rig:
        yield rig


@pytest.fixture
def daemon(tmp_path):
    """A `mixgraph serve` on the null backend with its state in tmp_path/state, stopped
    after the test (tests/daemon_util.Daemon). A module that needs another start (a
    graph built first, --http) defines its own `daemon`, which takes precedence."""
    from daemon_util import Daemon

    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        yield d
    finally:
        d.stop()
