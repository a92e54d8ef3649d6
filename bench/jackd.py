"""JACK's dummy driver as a real audio clock for the live benches, with its own
log kept so that an xrun can be told apart by cause.

On a shared virtual machine jackd's dummy driver logs xruns with no client at
all: its timer thread wakes up late (`JackTimedDriver::Process XRun = N usec`).
PortAudio passes every JACK xrun on to its client, so the count mixgraph reports
includes those. This module starts jackd with its log captured and sorts the
lines of a measured window into
  - `timer`: the driver woke late (the host; it happens with no client);
  - `client`: a client did not finish its cycle in time (the graph was late);
  - `other`: any other line that names an xrun.
`baseline()` runs jackd alone for the same time, so a bench can print the
host's own figure beside mixgraph's in one run; engine.py also runs JACK's
example client `jack_metro` under the same load as a peer. Used by engine.py
and osc.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TIMER = re.compile(r"JackTimedDriver::Process XRun")
CLIENT = re.compile(r"not finished|was not triggered|client .* xrun", re.IGNORECASE)
ANY_XRUN = re.compile(r"xrun", re.IGNORECASE)


class JackLog:
    """jackd's captured stderr/stdout; `mark()` then `xruns(since)` count a window."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """The log's current length: the start of a measured window."""
        return self.path.stat().st_size

    def xruns(self, since: int = 0) -> dict[str, int]:
        """Xrun lines logged after `since`, by cause (see the module docstring)."""
        with open(self.path, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        counts = {"timer": 0, "client": 0, "other": 0}
        for line in text.splitlines():
            if TIMER.search(line):
                counts["timer"] += 1
            elif CLIENT.search(line):
                counts["client"] += 1
            elif ANY_XRUN.search(line):
                counts["other"] += 1
        return counts


def available() -> bool:
    """True when jackd is installed (Debian: jackd2)."""
    return shutil.which("jackd") is not None


@contextlib.contextmanager
def dummy(name: str, rate: int, block: int) -> Iterator[JackLog]:
    """jackd on the dummy driver under server name `name`, realtime when
    MIXGRAPH_JACK_RT is set (needs rtprio: root or limits.conf); stopped on exit.
    Clients find it through JACK_DEFAULT_SERVER, which the caller sets."""
    rt = ["-R", "-P", "80"] if os.environ.get("MIXGRAPH_JACK_RT") else ["--no-realtime"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jackd.log"
        with open(path, "wb") as log:
            jack = subprocess.Popen(
                ["jackd", "-n", name, *rt, "-d", "dummy", "-r", str(rate), "-p", str(block)],
                env={**os.environ, "JACK_DEFAULT_SERVER": name},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            time.sleep(1.5)
            if jack.poll() is not None:
                raise RuntimeError(f"jackd exited at start-up: {path.read_text()[-500:]}")
            yield JackLog(path)
        finally:
            jack.send_signal(signal.SIGTERM)
            try:
                jack.wait(10)
            except subprocess.TimeoutExpired:
                jack.kill()
                jack.wait()


@contextlib.contextmanager
def metro(name: str) -> Iterator[None]:
    """JACK's example client jack_metro (a metronome, a few operations per
    sample) on the jackd named `name`: the peer a mixgraph run is compared with."""
    if shutil.which("jack_metro") is None:
        raise RuntimeError("jack_metro not installed (Debian: jackd2)")
    proc = subprocess.Popen(["jack_metro", "-b", "120", "-n", "metro"],
                            env={**os.environ, "JACK_DEFAULT_SERVER": name},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def baseline(seconds: float, rate: int, block: int) -> dict[str, int]:
    """The xruns this host causes by itself: jackd's log over `seconds` on a
    fresh jackd with no client."""
    with dummy(f"mgbase{os.getpid()}", rate, block) as log:
        m = log.mark()
        time.sleep(seconds)
        return log.xruns(m)
