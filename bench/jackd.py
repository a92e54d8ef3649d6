"""JACK's dummy driver as a real audio clock for the live benches, with its own
log kept so that an xrun can be told apart by cause; run as a script, the
issue-15 figure: the 64-channel mix64 session live on JACK beside JACK's own
example client, under load.

    python bench/jackd.py [--seconds 60] [--osc-rate 10000] [--midi-rate 1000]

The script: jackd on the dummy driver at 48 kHz / 64 frames; `mixgraph serve
--backend jack` (native JACK client) with the mix64 session of bench/mix64.py
(64 channels: gate, EQ, compressor, pan, fader, two sends; reverb, delay,
master chain), started from a patch file; jack_metro on the same jackd at the
same time; a sender at --osc-rate parameter messages per second (fader moves
over the 64 channels) and, when mixgraph has a `mixgraph:midi_in` port,
--midi-rate control changes per second into it through python-rtmidi's JACK
API. Over the measured window: mixgraph's xruns (/status, its xrun callback:
every xrun jackd reports, whoever caused it) and jackd's log of the window by
cause, with the late-client lines per client, so mixgraph's client-late count
stands beside jack_metro's in the same window, and beside a load-matched peer
(bench/jack_burn.c, a client that uses as much CPU per cycle as mixgraph did
just before the window: a stall of a shared host lands in whichever client
is running, so the longer client is hit more often).

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

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TIMER = re.compile(r"JackTimedDriver::Process XRun")
CLIENT = re.compile(r"not finished|was not triggered|client .* xrun", re.IGNORECASE)
LATE = re.compile(r"client = (\S+) was not (?:finished|triggered)")
ANY_XRUN = re.compile(r"xrun", re.IGNORECASE)


class JackLog:
    """jackd's captured stderr/stdout; `mark()` then `xruns(since)` count a window."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """The log's current length: the start of a measured window."""
        return self.path.stat().st_size

    def text(self, since: int = 0) -> str:
        with open(self.path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")

    def late_clients(self, since: int = 0) -> dict[str, int]:
        """Late-client lines logged after `since`, per client name
        (`JackEngine::XRun: client = NAME was not finished`)."""
        counts: dict[str, int] = {}
        for m in LATE.finditer(self.text(since)):
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts

    def xruns(self, since: int = 0) -> dict[str, int]:
        """Xrun lines logged after `since`, by cause (see the module docstring)."""
        text = self.text(since)
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
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from jack_registry import reclaim  # slots of servers killed earlier (jackd2 has 8)

    reclaim()
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
def metro(name: str, client: str = "metro") -> Iterator[None]:
    """JACK's example client jack_metro (a metronome, a few operations per
    sample) on the jackd named `name`: the peer a mixgraph run is compared with."""
    if shutil.which("jack_metro") is None:
        raise RuntimeError("jack_metro not installed (Debian: jackd2)")
    proc = subprocess.Popen(["jack_metro", "-b", "120", "-n", client],
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


# ---- the issue-15 figure: mix64 on JACK dummy beside jack_metro, under load ----

RATE = 48000
BLOCK = 64


def mix64_patch(path: Path, channels: int = 64) -> None:
    """The mix64 session (bench/mix64.py) as a patch file a daemon starts from."""
    from mix64 import build_mix64  # bench/mix64.py

    from mixgraph.server.engine import Engine
    from mixgraph.server.patch import to_doc
    from mixgraph.server.session import Session
    from mixgraph.server.state import write_patch

    e = Engine(RATE, 0, 2)
    s = Session(e)
    build_mix64(s, channels)
    write_patch(to_doc(s), path)
    s.close()
    e.free()


def free_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def thread_line(state: Path) -> str:
    """The daemon's line about its JACK client (real-time or not)."""
    text = (state / "serve.log").read_text(errors="replace")
    m = re.search(r"mixgraph: JACK client .*(?:\n.*\))?", text)
    return m.group(0) if m else ""


def start_daemon(state: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """`mixgraph serve` on a free port, up when it says it is ready."""
    port = free_port()
    log = state / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port", str(port),
             "--state-dir", str(state), "--no-status", *extra],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "ready on udp" in log.read_text():
            return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(log.read_text()[-2000:])


class MidiSender:
    """Control changes into mixgraph:midi_in through python-rtmidi's JACK API,
    or the reason it cannot (no port yet: MIDI lands from another branch)."""

    def __init__(self, server: str, client: str) -> None:
        self.out = None
        self.reason = ""
        ports = subprocess.run(["jack_lsp", "-s", server], capture_output=True, text=True,
                               timeout=10).stdout.split()
        if f"{client}:midi_in" not in ports:
            self.reason = f"{client}:midi_in does not exist (this build has no JACK MIDI)"
            return
        try:
            import rtmidi
        except ImportError:
            self.reason = "python-rtmidi is not installed"
            return
        os.environ["JACK_DEFAULT_SERVER"] = server
        self.out = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name="mgbench")
        self.out.open_virtual_port("cc")
        time.sleep(0.3)
        mine = [p for p in subprocess.run(["jack_lsp", "-s", server], capture_output=True,
                                          text=True, timeout=10).stdout.split()
                if p.startswith("mgbench")]
        for p in mine:
            subprocess.run(["jack_connect", "-s", server, p, f"{client}:midi_in"],
                           capture_output=True, timeout=10)

    def send(self, k: int) -> None:
        # CC 7 on channels 1-16 in turn, the value sweeping 0..127
        self.out.send_message([0xB0 | (k % 16), 7, (k // 16) % 128])

    def close(self) -> None:
        if self.out is not None:
            self.out.close_port()
            del self.out


def load(port: int, seconds: float, osc_rate: int, midi: MidiSender | None,
         midi_rate: int) -> tuple[int, int]:
    """osc_rate fader moves per second over the 64 channels (UDP, replies
    drained) and midi_rate control changes per second, for `seconds`."""
    from mixgraph.clients.protocol import encode

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = midis = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        due = int(elapsed * osc_rate)
        while sent < due:
            sock.sendto(encode(f"/node/fader{sent % 64}/gain", [-6.0 - (sent % 40) * 0.25]),
                        ("127.0.0.1", port))
            sent += 1
        if midi is not None:
            due = int(elapsed * midi_rate)
            while midis < due:
                midi.send(midis)
                midis += 1
        try:
            while True:
                sock.recv(512)
        except (BlockingIOError, ConnectionRefusedError):
            pass
        time.sleep(0.001)
    sock.close()
    return sent, midis


def status(c) -> dict:
    _, a = c.request("/status")
    return dict(zip(a[::2], a[1::2], strict=True))


def burn_peer(server: str, client: str, burn_us: float, seconds: float) -> subprocess.Popen:
    """bench/jack_burn.c (built here with cc -ljack): a JACK client that uses
    burn_us of CPU every cycle, the load-matched peer (a host stall lands in
    whichever client runs, so a longer client is hit more often)."""
    exe = Path(tempfile.gettempdir()) / f"mg_jack_burn_{os.getpid()}"
    if not exe.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
        subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra",
                        str(Path(__file__).with_name("jack_burn.c")), "-o", str(exe),
                        "-ljack"], check=True)
    proc = subprocess.Popen([str(exe), client, f"{burn_us:.1f}", str(int(seconds))],
                            env=dict(os.environ, JACK_DEFAULT_SERVER=server),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("jack_burn did not start")
    return proc


def mix64_live(seconds: float, osc_rate: int, midi_rate: int) -> dict:
    """The figure: mixgraph (native JACK, mix64) and jack_metro on one jackd,
    one measured window under the load; each one's late-client count."""
    from mixgraph.clients import Client

    name = f"mgj64-{os.getpid()}"
    with dummy(name, RATE, BLOCK) as log, metro(name, "metro"), \
            tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        from mixgraph.server.state import AUTOSAVE
        mix64_patch(state / AUTOSAVE)
        proc, port = start_daemon(state, "--backend", "jack", "--jack-server", name,
                                  "--jack-name", "mixgraph", "--outputs", "2",
                                  "--rate-limit", "0")
        midi = None
        try:
            c = Client("127.0.0.1", port, timeout=30)
            st = status(c)
            if st["backend"] != "jack" or st["nodes"] < 64 * 7:
                raise RuntimeError(f"not the mix64 session on JACK: {st}")
            if midi_rate:
                midi = MidiSender(name, "mixgraph")
                if midi.out is None:
                    print(f"# --midi-rate {midi_rate}: skipped, {midi.reason}", flush=True)
                    midi = None
                else:
                    # the CCs move fader0 where /midi/map exists; else they are
                    # still read and counted by the JACK MIDI port
                    addr, args = c.request("/midi/map", "/node/fader0/gain", "cc", 1, 7)
                    if addr != "/done":
                        print(f"# /midi/map: {addr} {args}", flush=True)
            time.sleep(1.0)
            burn_us = float(status(c)["load"]) / 100 * BLOCK / RATE * 1e6
            burner = burn_peer(name, "burn", burn_us, seconds + 10)
            x0 = status(c)["xruns"]
            m0 = log.mark()
            try:
                sent, midis = load(port, seconds, osc_rate, midi, midi_rate)
            finally:
                burner.kill()
                burner.wait()
            st = status(c)
            late = log.late_clients(m0)
            return {"seconds": seconds, "osc_sent": sent, "osc_per_s": round(sent / seconds),
                    "midi_sent": midis, "midi_per_s": round(midis / seconds),
                    "mixgraph_xruns_status": st["xruns"] - x0,
                    "mixgraph_late": late.get("mixgraph", 0),
                    "jack_metro_late": late.get("metro", 0),
                    "burn_us": round(burn_us, 1), "burn_peer_late": late.get("burn", 0),
                    "late_by_client": late, "jackd_log": log.xruns(m0),
                    "dsp_load_pct": st["load"], "worst_us": st.get("worst_us"),
                    "nodes": st["nodes"], "mixgraph_client": thread_line(state)}
        finally:
            if midi is not None:
                midi.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    ap.add_argument("--osc-rate", type=int, default=10000,
                    help="parameter messages per second during the window")
    ap.add_argument("--midi-rate", type=int, default=0,
                    help="MIDI control changes per second into mixgraph:midi_in (skipped, "
                         "with a message, when that port does not exist)")
    ap.add_argument("--baseline", action="store_true",
                    help="also run jackd alone for the same time (the host's own xruns)")
    a = ap.parse_args()
    if not available():
        raise SystemExit("jackd is not installed (Debian: jackd2)")
    print(f"# mix64 (64 channels) on JACK dummy, {RATE} Hz, {BLOCK} frames, "
          f"{a.seconds:g} s window, {a.osc_rate} OSC messages/s"
          + (f", {a.midi_rate} MIDI CCs/s" if a.midi_rate else "")
          + (", jackd realtime" if os.environ.get("MIXGRAPH_JACK_RT") else
             ", jackd --no-realtime (MIXGRAPH_JACK_RT=1 for -R)"), flush=True)
    r = mix64_live(a.seconds, a.osc_rate, a.midi_rate)
    print(r)
    verdict = "within" if r["mixgraph_late"] <= r["jack_metro_late"] else "OVER"
    print(f"client-late in the same window: mixgraph {r['mixgraph_late']}, jack_metro "
          f"{r['jack_metro_late']} ({verdict} the peer's), a client that burns mixgraph's "
          f"{r['burn_us']} µs per cycle {r['burn_peer_late']}; every xrun mixgraph was told "
          f"of: {r['mixgraph_xruns_status']}; jackd's timer woke late "
          f"{r['jackd_log']['timer']} times; DSP load {r['dsp_load_pct']}%")
    if a.baseline:
        print(f"jackd alone, no client, {a.seconds:g} s: {baseline(a.seconds, RATE, BLOCK)}")


if __name__ == "__main__":
    main()
