"""JACK's dummy driver as a real audio clock for the live benches, with its own
log kept so that an xrun can be told apart by cause; run as a script, the
issue-15 figure: the 64-channel mix64 session live on JACK beside JACK's own
example client, under load.

    python bench/jackd.py [--seconds 60] [--osc-rate 10000] [--midi-rate 1000]
                          [--channels 64] [--block 64]

The script: jackd on the dummy driver at 48 kHz / 64 frames; `mixgraph serve
--backend jack` (native JACK client) with the mix64 session of bench/mix64.py
(64 channels: gate, EQ, compressor, pan, fader, two sends; reverb, delay,
master chain), started from a patch file; jack_metro on the same jackd at the
same time (JACK's example metronome: no input, so JACK runs it at the
graph's start, beside the MIDI client); jack_midisine, JACK's example MIDI
synth (MIDI in -> sine out), fed by the bench's MIDI client with the same
port fan-out as mixgraph, so that JACK runs it after that client, at
mixgraph's place in the graph, with the same 1,000 events a second; a
sender at --osc-rate parameter messages per second (fader moves
over the 64 channels) and, when mixgraph has a `mixgraph:midi_in` port,
--midi-rate control changes per second into it through python-rtmidi's JACK
API; a load-matched peer (bench/jack_burn.c, a client that uses as much CPU
per cycle as mixgraph's thread under the same load, measured in a warm-up,
less jack_metro's, since the burner has libjack's own part too:
a stall of a shared host lands in whichever client is running, so the longer
client is hit more often).

What jackd counts (jack2 1.9.21, common/JackEngine.cpp, JackDriver.cpp,
JackConnectionManager.cpp; jackd asynchronous, as started here): at every
cycle's start the driver asks whether the previous cycle's graph finished
(JackGraphManager::IsFinishedGraph: every client it waits for signalled). If
not, and the last graph switch is less than the client timeout ago (with -R
and no -t: two periods), JackEngine::ProcessCurrent -> CheckXRun(cycle start)
walks every active client and logs, for each:
  `client = X was not finished, state = S` when X is neither NotTriggered
    nor Finished: `Triggered` (its input counter was signalled by the driver
    or the last client feeding it, but its thread has not come back from
    its wait: not started, whether it had no core or its sources were
    late), `Running` (in its process callback, or in libjack around it
    before it signals its successors);
  `client X finished after current callback` when X finished (ResumeRefNum's
    time stamp, after its callback returned, as it signals its successors)
    after the cycle's start.
The deadline is therefore the next cycle's start, one period after this
one's (1333 µs at 48 kHz / 64 frames), for the whole chain a client is in;
a line says a client was not done, not that its own work was long. Each line
sends the xrun callback to every client (mixgraph's `/status` xruns count
every client's lines). A graph still unfinished past the timeout is
switched over without a check (JackEngine::Process -> ProcessNext), so a
stall of several periods counts in fewer lines than the cycles it spans.
The dummy driver's `JackTimedDriver::Process XRun` (its timer woke late)
notifies nobody and is not a client line.

The window is the same for every client: it starts once the burner runs and
ends while the load still runs and before any client stops (a killed client
is caught unfinished at every cycle until jackd notices: those lines are
reported apart, `after_window`). Every client's late lines are the same two
of jackd's (`client = X was not finished, state = S`: caught at the next
cycle's start, S Triggered = woken but not started, Running = not done; and
`client X finished after current callback`). They are counted in two parts:
`full` cycles, and the `catch_up` cycle jackd's dummy driver starts at once
after its timer woke more than a period late (`JackTimedDriver::Process
XRun`), which gives the clients ~20 µs, so that every client longer than that
is caught there whatever it does: those lines are the host's, and the timer
line counts them already. Beside the counts: each client's time on a core and
waiting for one per cycle (schedstat of its SCHED_FIFO thread), mixgraph's
real-time thread (policy, page faults in the window), its control thread's
CPU, the host's steal time, and which clients were caught late together
(a host stall catches several; a client's own overrun, one).
bench/jack_attr.py runs the figure one factor at a time.

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
import threading
import time
from collections.abc import Iterator
from pathlib import Path

TIMER = re.compile(r"JackTimedDriver::Process XRun")
CLIENT = re.compile(r"not finished|was not triggered|finished after current callback"
                    r"|client .* xrun", re.IGNORECASE)
# a client caught unfinished at the next cycle's start (state Triggered: it
# had not started; Running: it had not finished), or one that finished after
# that start: jackd's two late-client lines (JackEngine::CheckXRun)
LATE = re.compile(r"client = (\S+) was not (?:finished|triggered)(?:, state = (\w+))?"
                  r"|client (\S+) finished after current callback()")
ANY_XRUN = re.compile(r"xrun", re.IGNORECASE)


class JackLog:
    """jackd's captured stderr/stdout; `mark()` then `xruns(since)` count a window."""

    def __init__(self, path: Path, pid: int = 0) -> None:
        self.path = path
        self.pid = pid  # jackd's process id

    def mark(self) -> int:
        """The log's current length: the start of a measured window."""
        return self.path.stat().st_size

    def text(self, since: int = 0, until: int | None = None) -> str:
        """The log from byte `since` to byte `until` (the end when None)."""
        with open(self.path, "rb") as f:
            f.seek(since)
            data = f.read() if until is None else f.read(max(0, until - since))
        return data.decode("utf-8", "replace")

    def late_clients(self, since: int = 0, until: int | None = None) -> dict[str, int]:
        """Late-client lines logged between `since` and `until`, per client
        name (`client = NAME was not finished, state = ...` and `client NAME
        finished after current callback`)."""
        counts: dict[str, int] = {}
        for name, _ in late_lines(self.text(since, until)):
            counts[name] = counts.get(name, 0) + 1
        return counts

    def late_split(self, since: int = 0,
                   until: int | None = None) -> tuple[dict[str, int], dict[str, int]]:
        """Late-client lines per client, split in two: (full, catch_up).

        When the dummy driver's timer wakes more than a period late it logs
        `JackTimedDriver::Process XRun` and starts the next cycle at once
        (it sleeps 0 and re-anchors), about 20 µs after it triggered the
        clients: every client that needs more than that is caught
        unfinished in that catch-up cycle, whatever it does. `catch_up`
        counts the lines of the cycle right after such a timer line (the
        host's lateness, which the timer line records); `full` the others,
        cycles in which the clients had their whole period."""
        full: dict[str, int] = {}
        catch_up: dict[str, int] = {}
        after_timer = False
        for line in self.text(since, until).splitlines():
            m = LATE.search(line)
            if m:
                d = catch_up if after_timer else full
                name = m.group(1) or m.group(3)
                d[name] = d.get(name, 0) + 1
            else:  # the timer line, or the end of a cycle's checks
                after_timer = bool(TIMER.search(line))
        return full, catch_up

    def late_states(self, since: int = 0, until: int | None = None) -> dict[str, dict]:
        """The late-client lines per client and per state: `Triggered` (woken,
        not started: the thread did not get a core in time), `Running`
        (started, not done), `after` (finished after the next cycle began)."""
        out: dict[str, dict[str, int]] = {}
        for name, state in late_lines(self.text(since, until)):
            d = out.setdefault(name, {})
            d[state] = d.get(state, 0) + 1
        return out

    def late_sets(self, since: int = 0, until: int | None = None) -> dict[str, int]:
        """How often each set of clients was caught late together: jackd logs
        every late client of one cycle in consecutive lines, so a host stall
        shows as several clients in one set and a client's own overrun as a
        set of one. Keys are the names joined by `+`."""
        sets: dict[str, int] = {}
        group: set[str] = set()
        for line in self.text(since, until).splitlines() + [""]:
            m = LATE.search(line)
            if m:
                group.add(m.group(1) or m.group(3))
            elif group:
                key = "+".join(sorted(group))
                sets[key] = sets.get(key, 0) + 1
                group = set()
        return sets

    def late_cycles(self, since: int = 0,
                    until: int | None = None) -> list[tuple[bool, dict[str, str]]]:
        """Every cycle with late clients: (catch_up, {client: state}).

        jackd checks the clients only when the graph is unfinished at a
        cycle's start (JackEngine::Process -> ProcessCurrent -> CheckXRun),
        logs one line per client that has not finished (state `Triggered`:
        woken or due, not started; `Running`: not done) or finished after
        that start (`after`), then `ProcessGraphAsyncMaster: Process error`:
        that line (or the next timer line) closes a cycle's group. `catch_up`:
        the group right after a `JackTimedDriver::Process XRun` line, the
        cycle the dummy driver starts at once after its timer woke late."""
        out: list[tuple[bool, dict[str, str]]] = []
        cur: dict[str, str] = {}
        catch = prev_timer = False
        for line in self.text(since, until).splitlines():
            m = LATE.search(line)
            if m:
                if not cur:
                    catch = prev_timer
                cur[m.group(1) or m.group(3)] = m.group(2) or "after"
                prev_timer = False
                continue
            if "Process error" in line or TIMER.search(line):
                if cur:
                    out.append((catch, cur))
                    cur = {}
                prev_timer = bool(TIMER.search(line))
        if cur:
            out.append((catch, cur))
        return out

    def xruns(self, since: int = 0, until: int | None = None) -> dict[str, int]:
        """Xrun lines logged between `since` and `until`, by cause (see the
        module docstring)."""
        text = self.text(since, until)
        counts = {"timer": 0, "client": 0, "other": 0}
        for line in text.splitlines():
            if TIMER.search(line):
                counts["timer"] += 1
            elif CLIENT.search(line):
                counts["client"] += 1
            elif ANY_XRUN.search(line):
                counts["other"] += 1
        return counts


def late_detail(cycles: list[tuple[bool, dict[str, str]]], who: str = "mixgraph",
                source: str = "mgbench") -> dict[str, dict[str, int]]:
    """`who`'s late cycles (JackLog.late_cycles) by kind of cycle (`catch_up`,
    `full`) and how it was caught: `behind_source` (not started, and its MIDI
    source `source`, which JACK runs before it, not finished either: `who`
    could not have run yet whatever its own cost), `Triggered` (not started,
    its source done or absent), `Running`, `after` (finished between the
    cycle's start and jackd's check)."""
    out: dict[str, dict[str, int]] = {"catch_up": {}, "full": {}}
    for catch, group in cycles:
        st = group.get(who)
        if st is None:
            continue
        if st == "Triggered" and group.get(source) in ("Triggered", "Running", "after"):
            st = "behind_source"
        d = out["catch_up" if catch else "full"]
        d[st] = d.get(st, 0) + 1
    return out


def late_lines(text: str) -> list[tuple[str, str]]:
    """(client, state) of every late-client line in `text`."""
    return [(m.group(1), m.group(2) or "?") if m.group(1) else (m.group(3), "after")
            for m in LATE.finditer(text)]


def available() -> bool:
    """True when jackd is installed (Debian: jackd2)."""
    return shutil.which("jackd") is not None


@contextlib.contextmanager
def dummy(name: str, rate: int, block: int, stamp: bool = False) -> Iterator[JackLog]:
    """jackd on the dummy driver under server name `name`, realtime when
    MIXGRAPH_JACK_RT is set (needs rtprio: root or limits.conf); stopped on exit.
    Clients find it through JACK_DEFAULT_SERVER, which the caller sets.
    `stamp`: every log line starts with CLOCK_MONOTONIC in ns as a process
    of its own read it from jackd's pipe (a few ms late at worst on a loaded
    host; the lines' regexes search, so the prefix changes no count): for
    matching late lines with the engine's call trace (bench/jack_calls.py)."""
    rt = ["-R", "-P", "80"] if os.environ.get("MIXGRAPH_JACK_RT") else ["--no-realtime"]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from jack_registry import reclaim  # slots of servers killed earlier (jackd2 has 8)

    reclaim()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jackd.log"
        stamper = None
        with open(path, "wb") as log:
            jack = subprocess.Popen(
                ["jackd", "-n", name, *rt, "-d", "dummy", "-r", str(rate), "-p", str(block)],
                env={**os.environ, "JACK_DEFAULT_SERVER": name},
                stdout=subprocess.PIPE if stamp else log,
                stderr=subprocess.STDOUT,
            )
            if stamp:
                stamper = subprocess.Popen(
                    [sys.executable, "-c", STAMP], stdin=jack.stdout, stdout=log)
                jack.stdout.close()
        try:
            time.sleep(1.5)
            if jack.poll() is not None:
                raise RuntimeError(f"jackd exited at start-up: {path.read_text()[-500:]}")
            yield JackLog(path, jack.pid)
        finally:
            jack.send_signal(signal.SIGTERM)
            try:
                jack.wait(10)
            except subprocess.TimeoutExpired:
                jack.kill()
                jack.wait()
            if stamper is not None:
                stamper.wait(10)


# dummy(stamp=True)'s line stamper: CLOCK_MONOTONIC ns, a space, the line
STAMP = ("import sys, time\n"
         "for line in sys.stdin.buffer:\n"
         "    sys.stdout.buffer.write(b'%d ' % time.monotonic_ns() + line)\n"
         "    sys.stdout.buffer.flush()\n")


@contextlib.contextmanager
def metro(name: str, client: str = "metro") -> Iterator[int]:
    """JACK's example client jack_metro (a metronome, a few operations per
    sample) on the jackd named `name`: the peer a mixgraph run is compared
    with. Yields its process id."""
    if shutil.which("jack_metro") is None:
        raise RuntimeError("jack_metro not installed (Debian: jackd2)")
    proc = subprocess.Popen(["jack_metro", "-b", "120", "-n", client],
                            env={**os.environ, "JACK_DEFAULT_SERVER": name},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


MIDISINE = "midisine"  # jack_midisine's client name (fixed in its source)


@contextlib.contextmanager
def midisine(name: str) -> Iterator[int]:
    """JACK's example client jack_midisine (MIDI in -> a sine out: per
    cycle it reads its `midisine:midi_in` events and computes 64 frames of
    a sine) on the jackd named `name`: the peer that is JACK's own client
    under mixgraph's load when the bench's MIDI client feeds it too
    (MidiSender.feed), since JACK then runs it after that client, at
    mixgraph's place in the graph, with the same events. Yields its process
    id, or 0 when jack_midisine is not installed (Debian: jackd2 <= 1.9.21,
    later jack-example-tools). Its process callback printf()s when a cycle
    holds more than one event: stdout goes to /dev/null (fully buffered, so
    a write(2) per ~4 KB of those lines, on its real-time thread: part of
    what the example client does)."""
    exe = shutil.which("jack_midisine")
    if exe is None:
        yield 0
        return
    # JackNullOption: it would start a default server if `name` were gone;
    # JACK_DEFAULT_SERVER names ours, which runs
    proc = subprocess.Popen([exe], env={**os.environ, "JACK_DEFAULT_SERVER": name},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            ports = subprocess.run(["jack_lsp", "-s", name], capture_output=True, text=True,
                                   timeout=10).stdout.split()
            if f"{MIDISINE}:midi_in" in ports:
                break
            time.sleep(0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"jack_midisine exited at start-up ({proc.returncode})")
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def start_daemon(state: Path, *extra: str,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """`mixgraph serve` on a free port, up when it says it is ready; `env`:
    variables added to its environment."""
    port = free_port()
    log = state / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port", str(port),
             "--state-dir", str(state), "--no-status", *extra],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})})
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
        self.server = server
        self.ports = mine
        for p in mine:
            subprocess.run(["jack_connect", "-s", server, p, f"{client}:midi_in"],
                           capture_output=True, timeout=10)

    def feed(self, client: str) -> None:
        """Connect this MIDI client to `client:midi_in` too: JACK then runs
        `client` after this one, at mixgraph's place in the graph."""
        for p in self.ports:
            subprocess.run(["jack_connect", "-s", self.server, p, f"{client}:midi_in"],
                           capture_output=True, timeout=10)
        if not self.feeds(client):
            raise RuntimeError(f"the bench's MIDI client could not feed {client}:midi_in")

    def feeds(self, client: str) -> bool:
        """Whether this MIDI client's port is connected to `client:midi_in`
        (jack_lsp -c: a port's connections indented under it)."""
        text = subprocess.run(["jack_lsp", "-s", self.server, "-c", f"{client}:midi_in"],
                              capture_output=True, text=True, timeout=10).stdout
        return any(line.strip() in self.ports for line in text.splitlines()
                   if line.startswith((" ", "\t")))

    def send(self, k: int) -> None:
        # CC 7 on channels 1-16 in turn, the value sweeping 0..127
        self.out.send_message([0xB0 | (k % 16), 7, (k // 16) % 128])

    def close(self) -> None:
        if self.out is not None:
            self.out.close_port()
            del self.out


def load(port: int, seconds: float, osc_rate: int, midi: MidiSender | None,
         midi_rate: int, stop: threading.Event | None = None) -> tuple[int, int]:
    """osc_rate fader moves per second over the 64 channels (UDP, replies
    drained) and midi_rate control changes per second, for `seconds` or
    until `stop` is set."""
    from mixgraph.clients.protocol import encode

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = midis = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds and not (stop and stop.is_set()):
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


def status(c, tries: int = 4) -> dict:
    """/status, asked again when a reply does not come: under the OSC load on
    a busy host the request can be dropped with the load's datagrams when the
    daemon's socket buffer is full."""
    from mixgraph.clients.api import MixgraphTimeout

    for k in range(tries):
        try:
            _, a = c.request("/status")
            return dict(zip(a[::2], a[1::2], strict=True))
        except MixgraphTimeout:
            if k == tries - 1:
                raise
    raise AssertionError("unreachable")


def burn_peer(server: str, client: str, burn_us: float, seconds: float,
              midi: bool = False, touch_kb: int = 0) -> subprocess.Popen:
    """bench/jack_burn.c (built here with cc -ljack): a JACK client that uses
    burn_us of CPU every cycle, the load-matched peer (a host stall lands in
    whichever client runs, so a longer client is hit more often); `midi`:
    with a MIDI input port `midi_in`, to be fed by the bench's MIDI client;
    `touch_kb`: it also touches every line of that much memory of its own a
    cycle (within burn_us): mixgraph's footprint as well as its time."""
    exe = Path(tempfile.gettempdir()) / f"mg_jack_burn_{os.getpid()}"
    if not exe.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
        subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra",
                        str(Path(__file__).with_name("jack_burn.c")), "-o", str(exe),
                        "-ljack"], check=True)
    proc = subprocess.Popen([str(exe), client, f"{burn_us:.1f}", str(int(seconds)),
                             *(["midi"] if midi else []),
                             *([f"touch={touch_kb}"] if touch_kb else [])],
                            env=dict(os.environ, JACK_DEFAULT_SERVER=server),
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("jack_burn did not start")
    return proc


def rt_sched(pid: int) -> tuple[int, int, int]:
    """(ns on a core, ns waiting on a run queue, times run) summed over the
    SCHED_FIFO/SCHED_RR threads of process `pid` (/proc/<pid>/task/*/schedstat):
    a JACK client's process thread, when the server runs real-time."""
    run = wait = slices = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
            ss = (task / "schedstat").read_text().split()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[38]) in (1, 2):  # field 41: policy
            run, wait, slices = run + int(ss[0]), wait + int(ss[1]), slices + int(ss[2])
    return run, wait, slices


def rt_migrations(pid: int) -> int:
    """Times the SCHED_FIFO/SCHED_RR threads of process `pid` moved to another
    CPU (/proc/<pid>/task/*/sched, se.nr_migrations): a JACK client's process
    thread, whose caches stay behind on the CPU it left."""
    n = 0
    for tid, f in task_stats(pid):
        if int(f[38]) not in (1, 2):
            continue
        try:
            text = Path(f"/proc/{pid}/task/{tid}/sched").read_text()
        except OSError:
            continue
        m = re.search(r"se\.nr_migrations\s*:\s*(\d+)", text)
        n += int(m.group(1)) if m else 0
    return n


def task_stats(pid: int):
    """(thread id, /proc/<pid>/task/<tid>/stat fields after the name) of each
    thread of `pid` that is still there."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            f = (task / "stat").read_text()
        except OSError:
            continue
        yield int(task.name), f[f.rindex(")") + 2:].split()


def rt_threads(pid: int) -> list[str]:
    """`policy/priority` of the process's real-time threads (FIFO 75: JACK's
    client thread of a jackd started with -P 80)."""
    return [f"{'FIFO' if f[38] == '1' else 'RR'} {f[37]}"
            for _, f in task_stats(pid) if int(f[38]) in (1, 2)]


def steal_ticks() -> int:
    """Time the hypervisor ran something else while this guest's cores had
    work (/proc/stat's steal column, all cores), in clock ticks."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def thread_faults(pid: int) -> dict[int, tuple[int, float, int]]:
    """Per thread of `pid`: (minor page faults, CPU seconds, scheduling policy)."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid, f in task_stats(pid):
        out[tid] = (int(f[7]), (int(f[11]) + int(f[12])) / tck, int(f[38]))
    return out


def mix64_live(seconds: float, osc_rate: int, midi_rate: int, channels: int = 64,
               warm: float = 3.0, extra: tuple[str, ...] = (), block: int = BLOCK,
               keep_log: Path | None = None, env: dict[str, str] | None = None,
               on_window=None, windows: int = 1, burn_fixed_us: float | None = None,
               behind_midi: bool = False, burn_touch_kb: int = 0,
               stamp_log: bool = False) -> dict:
    """The figure: mixgraph (native JACK, the mix64 session with `channels`
    strips; 0: an empty graph), jack_metro, jack_midisine (fed by the bench's
    MIDI client when there is one: JACK runs it at mixgraph's place) and the
    load-matched burner on one jackd, one measured window under the load;
    each one's late-client count.

    The counts are comparable: one window of jackd's log, the same lines for
    every client (LATE), the window closed while the load still runs and
    before any client is stopped (a killed client is caught unfinished at every cycle
    until jackd notices). The load runs `warm` seconds before the window, and
    the burner is matched to mixgraph's time on a core under it. `keep_log`: a
    file for jackd's log of the window. `env`: added to the daemon's
    environment; `on_window(pids, "start" | "end")`: called as the window opens
    and closes (bench/jack_calls.py starts its recorders there). `windows`:
    that many consecutive windows of `seconds` each under the same load, each
    one's counts in `windows` of the result (the totals cover them all).
    `burn_fixed_us`: the burner's CPU per cycle, instead of matching it to
    mixgraph's (an empty graph against a full-size burner, for attribution).
    `behind_midi`: the burner has a MIDI input fed by the bench's MIDI client
    (JACK runs it after that client, as it runs mixgraph: load- and
    depth-matched), and a fourth client `tail` (jack_burn at 0 µs: libjack's
    own part, jack_metro's cost) is fed the same way: jack_metro's cost at
    mixgraph's place in the graph. `burn_touch_kb`: the burner touches
    that much memory of its own every cycle (jack_burn.c touch=KB).
    `stamp_log`: jackd's log lines start with CLOCK_MONOTONIC ns (dummy)."""
    from mixgraph.clients import Client
    from mixgraph.server.state import AUTOSAVE

    name = f"mgj64-{os.getpid()}"
    with dummy(name, RATE, block, stamp_log) as log, metro(name, "metro") as metro_pid, \
            midisine(name) as sine_pid, tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        if channels:
            mix64_patch(state / AUTOSAVE, channels)
        proc, port = start_daemon(state, "--backend", "jack", "--jack-server", name,
                                  "--jack-name", "mixgraph", "--outputs", "2",
                                  "--rate-limit", "0", *extra, env=env)
        midi = None
        stop = threading.Event()
        sender: threading.Thread | None = None
        try:
            c = Client("127.0.0.1", port, timeout=10)
            st = status(c)
            if st["backend"] != "jack" or st["nodes"] < channels * 7:
                raise RuntimeError(f"not the mix64 session on JACK: {st}")
            if midi_rate:
                midi = MidiSender(name, "mixgraph")
                if midi.out is None:
                    print(f"# --midi-rate {midi_rate}: skipped, {midi.reason}", flush=True)
                    midi = None
                elif channels:
                    # the CCs move fader0; else they are still read and
                    # counted by the JACK MIDI port
                    addr, args = c.request("/midi/map", "/node/fader0/gain", "cc", 1, 7)
                    if addr != "/done":
                        print(f"# /midi/map: {addr} {args}", flush=True)
            if midi is not None and sine_pid:
                # JACK's own example client behind the same MIDI client,
                # with the same events: at mixgraph's place in the graph
                midi.feed(MIDISINE)
            time.sleep(1.0)
            sent: list[int] = []
            sender = threading.Thread(
                target=lambda: sent.extend(load(port, 1e9, osc_rate, midi, midi_rate, stop)))
            load_t0 = time.monotonic()
            sender.start()
            time.sleep(warm / 2)
            # the burner's cost: mixgraph's time on a core per cycle under the
            # load, less jack_metro's (libjack's own part, which the burner has too)
            w0 = rt_sched(proc.pid)[0], rt_sched(metro_pid)[0], time.monotonic()
            time.sleep(warm / 2)
            w1 = rt_sched(proc.pid)[0], rt_sched(metro_pid)[0], time.monotonic()
            warm_cycles = (w1[2] - w0[2]) * RATE / block
            warm_us = (w1[0] - w0[0]) / warm_cycles / 1e3  # mixgraph's, in the warm-up
            burn_us = max(0.0, ((w1[0] - w0[0]) - (w1[1] - w0[1])) / warm_cycles / 1e3)
            if burn_fixed_us is not None:
                burn_us = burn_fixed_us
            # (long enough for the windows' /status calls too: a burner gone
            # before the window ends would leave it unmatched)
            life = seconds * windows * 1.5 + 30
            deep = behind_midi and midi is not None
            burner = burn_peer(name, "burn", burn_us, life, midi=deep, touch_kb=burn_touch_kb)
            tail = burn_peer(name, "tail", 0.0, life, midi=True) if deep else None
            if deep:
                midi.feed("burn")
                midi.feed("tail")
            pids = {"mixgraph": proc.pid, "metro": metro_pid, "burn": burner.pid,
                    "jackd": log.pid}
            if tail is not None:
                pids["tail"] = tail.pid
            if sine_pid:
                pids[MIDISINE] = sine_pid
            if midi is not None:
                pids["mgbench"] = os.getpid()  # python-rtmidi's JACK client is ours
            try:
                time.sleep(0.5)  # the burner's first cycles
                x0 = status(c)["xruns"]
                steal0 = steal_ticks()
                f0 = thread_faults(proc.pid)
                s0 = {k: rt_sched(v) for k, v in pids.items()}
                if on_window is not None:
                    on_window(pids, "start")
                m0 = log.mark()
                t0 = time.monotonic()
                # the engine's longest process call, every 5 s (its figure
                # covers the last 10 s): a late cycle with no long call was
                # late outside mixgraph's process function
                worst = 0.0
                wins = []  # per window: its log span, steal, load average, migrations
                clients = ("mixgraph", "metro", "burn") + ((MIDISINE,) if sine_pid else ())
                wm, wsteal, wt = m0, steal0, t0
                wmig = {k: rt_migrations(pids[k]) for k in clients}
                for k in range(1, windows + 1):
                    while (left := k * seconds - (time.monotonic() - t0)) > 0:
                        time.sleep(min(5.0, left))
                        worst = max(worst, float(status(c).get("worst_recent_us", 0.0)))
                    mk, sk, tk = log.mark(), steal_ticks(), time.monotonic()
                    mig = {k: rt_migrations(pids[k]) for k in clients}
                    wins.append((wm, mk, sk - wsteal, tk - wt, os.getloadavg()[0],
                                 {k: mig[k] - wmig[k] for k in clients}))
                    wm, wsteal, wt, wmig = mk, sk, tk, mig
                m1 = log.mark()  # the window ends before the load or any client stops
                window = time.monotonic() - t0
                if on_window is not None:
                    on_window(pids, "end")
                x1 = status(c)["xruns"]
                steal = steal_ticks() - steal0
                s1 = {k: rt_sched(v) for k, v in pids.items()}
                f1 = thread_faults(proc.pid)
            finally:
                stop.set()
                sender.join()
                loaded = time.monotonic() - load_t0
                for b in (burner, tail):
                    if b is not None:
                        b.kill()
                        b.wait()
            st = status(c)
            # the count as this bench took it before (for the before/after):
            # one kind of line, the log read to its end after the burner was killed
            old = {}
            for m in re.finditer(r"client = (\S+) was not (?:finished|triggered)", log.text(m0)):
                old[m.group(1)] = old.get(m.group(1), 0) + 1
            late = log.late_clients(m0, m1)
            full, catch_up = log.late_split(m0, m1)
            if keep_log is not None:
                keep_log.write_text(log.text(m0, m1))
            cycles = window * RATE / block
            per_cycle = {k: {"run_us": round((s1[k][0] - s0[k][0]) / cycles / 1e3, 1),
                             "wait_us": round((s1[k][1] - s0[k][1]) / cycles / 1e3, 1)}
                         for k in pids}
            rt_faults = sum(f1[t][0] - f0[t][0] for t in f1 if t in f0 and f1[t][2] in (1, 2))
            control_cpu = sum(f1[t][1] - f0[t][1] for t in f1 if t in f0 and f1[t][2] == 0)
            osc_sent, midis = sent or (0, 0)
            tck = os.sysconf("SC_CLK_TCK")
            per_window = []
            for a, b, st_ticks, secs, la, mig in wins:
                lw = log.late_clients(a, b)
                fw, _ = log.late_split(a, b)
                per_window.append({
                    "mixgraph": lw.get("mixgraph", 0), "metro": lw.get("metro", 0),
                    "burn": lw.get("burn", 0), "tail": lw.get("tail"),
                    MIDISINE: lw.get(MIDISINE, 0) if sine_pid else None,
                    "full": {k: fw.get(k, 0) for k in ("mixgraph", "metro", "burn", MIDISINE)},
                    "timer": log.xruns(a, b)["timer"],
                    "steal_pct": round(100 * st_ticks / tck / secs / (os.cpu_count() or 1), 1),
                    "loadavg": round(la, 1),
                    "migrations_per_cycle": {k: round(v / (secs * RATE / block), 4)
                                             for k, v in mig.items()}})
            return {"seconds": round(window, 1), "channels": channels,
                    "osc_per_s": round(osc_sent / loaded), "midi_per_s": round(midis / loaded),
                    "steal_pct": round(100 * steal / os.sysconf("SC_CLK_TCK") / window
                                       / (os.cpu_count() or 1), 1),
                    "mixgraph_xruns_status": x1 - x0,
                    "mixgraph_late": late.get("mixgraph", 0),
                    "jack_metro_late": late.get("metro", 0),
                    "midisine_late": late.get(MIDISINE, 0) if sine_pid else None,
                    "midisine_fed": bool(sine_pid and midi is not None),
                    "burn_us": round(burn_us, 1), "burn_peer_late": late.get("burn", 0),
                    "mixgraph_warm_us": round(warm_us, 1),
                    "late_by_client": late, "late_states": log.late_states(m0, m1),
                    "full_cycle_late": full, "catch_up_late": catch_up,
                    "late_sets": log.late_sets(m0, m1),
                    "mixgraph_late_detail": late_detail(log.late_cycles(m0, m1)),
                    "metro_late_detail": late_detail(log.late_cycles(m0, m1), "metro", ""),
                    "midisine_late_detail": late_detail(log.late_cycles(m0, m1), MIDISINE)
                    if sine_pid else None,
                    "tail_late": late.get("tail", 0) if tail is not None else None,
                    "jackd_log": log.xruns(m0, m1),
                    "after_window": log.late_clients(m1), "old_count": old,
                    "per_cycle": per_cycle,
                    "rt_thread": rt_threads(proc.pid), "rt_thread_faults": rt_faults,
                    "control_cpu_pct": round(100 * control_cpu / window),
                    "dsp_load_pct": round(float(st["load"]), 1), "worst_us": st.get("worst_us"),
                    "worst_window_us": round(worst, 1),
                    "nodes": st["nodes"], "loadavg": os.getloadavg()[0],
                    "windows": per_window,
                    "mixgraph_client": thread_line(state)}
        finally:
            stop.set()
            if sender is not None and sender.is_alive():
                sender.join()
            if midi is not None:
                midi.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def summary(r: dict) -> str:
    """The figure's lines: each client's late count in the window (all of
    jackd's late-client lines, and those of full cycles), mixgraph's against
    both of JACK's example clients (jack_metro at the graph's start, and
    jack_midisine behind the MIDI client, as mixgraph is)."""
    sine = r.get("midisine_late") is not None

    def counts(d: dict) -> tuple[int, ...]:
        return tuple(d.get(k, 0) for k in ("mixgraph", "metro", "burn")
                     + ((MIDISINE,) if sine else ()))

    def verdict(c: tuple[int, ...]) -> str:
        out = f"{'within' if c[0] <= c[1] else 'OVER'} jack_metro's"
        if sine:
            out += f", {'within' if c[0] <= c[3] else 'OVER'} jack_midisine's"
        return out

    def row(c: tuple[int, ...]) -> str:
        return " / ".join(str(x) for x in c)

    every, old = counts(r["late_by_client"]), counts(r["old_count"])
    full, catch = counts(r["full_cycle_late"]), counts(r["catch_up_late"])
    pc = r["per_cycle"]
    names = "mixgraph / jack_metro / a client burning mixgraph's " \
        f"{r['burn_us']} µs per cycle" + (" / jack_midisine" + (
            " (fed by the MIDI client, as mixgraph is)" if r.get("midisine_fed")
            else " (not fed: no MIDI)") if sine else "")
    on_core = " / ".join(f"{pc[k]['run_us']}" for k in ("mixgraph", "metro", "burn")
                         + ((MIDISINE,) if sine else ()))
    return (f"client-late in the same {r['seconds']:g} s window ({names}):\n"
            f"  as counted before (the log read after the burner was killed): {row(old)}\n"
            f"  all of jackd's late-client lines: {row(every)} ({verdict(every)})\n"
            f"  in full cycles: {row(full)} ({verdict(full)})\n"
            f"  in the catch-up cycle after jackd's timer woke late "
            f"({r['jackd_log']['timer']} times; ~20 µs given): {row(catch)}\n"
            f"  how mixgraph / jack_metro / jack_midisine were caught (behind_source: not "
            f"started while the MIDI client JACK runs before it had not finished either): "
            f"{r.get('mixgraph_late_detail')} / {r.get('metro_late_detail')} / "
            f"{r.get('midisine_late_detail')}\n"
            + (f"  tail (jack_burn at 0 µs, fed by the MIDI client as mixgraph is): "
               f"{r['tail_late']} late lines, {pc['tail']['run_us']} µs on a core per cycle\n"
               if r.get("tail_late") is not None else "")
            + f"  on a core per cycle: {on_core} µs (mixgraph's in the warm-up the burner "
            f"was matched to: {r['mixgraph_warm_us']} µs); every xrun mixgraph was told of "
            f"(jackd notifies every client of every late line): "
            f"{r['mixgraph_xruns_status']}; DSP load {r['dsp_load_pct']}%, its longest "
            f"process call in the window {r['worst_window_us']} µs; "
            f"load average {r['loadavg']:.1f}, steal {r['steal_pct']}% of the cores")


def windows_summary(wins: list[dict], seconds: float) -> str:
    """Per window of `seconds`: each client's late lines (all, and in full
    cycles), jackd's late timer, steal, load average; then the medians and
    how many windows met the figure (mixgraph's count <= jack_metro's, and
    <= jack_midisine's when it ran)."""
    import statistics

    sine = all(w.get(MIDISINE) is not None for w in wins)
    keys = ("mixgraph", "metro", "burn") + ((MIDISINE,) if sine else ())
    lines = [f"per {seconds:g} s window: mixgraph / jack_metro / burner"
             + (" / jack_midisine" if sine else "") + " late lines "
             "(in full cycles), jackd's timer late, steal, load average, RT-thread "
             "migrations per cycle (mixgraph / jack_metro / burner):"]
    for i, w in enumerate(wins, 1):
        f = w["full"]
        mig = w.get("migrations_per_cycle", {})
        over = [p for p, k in (("jack_metro", "metro"), ("jack_midisine", MIDISINE))
                if k in keys and w["mixgraph"] > w[k]]
        lines.append(f"  {i}: " + " / ".join(str(w[k]) for k in keys)
                     + " (" + " / ".join(str(f.get(k, 0)) for k in keys) + f"), timer "
                     f"{w['timer']}, steal {w['steal_pct']}%, load {w['loadavg']}, migrations "
                     + " / ".join(f"{mig.get(k, 0):.4f}" for k in ("mixgraph", "metro", "burn"))
                     + (f", tail (0 µs behind the MIDI client) {w['tail']}"
                        if w.get("tail") is not None else "")
                     + (f"  OVER {' and '.join(over)}" if over else ""))

    def med(k: str) -> float:
        return statistics.median(w[k] for w in wins)

    def met(k: str) -> int:
        return sum(1 for w in wins if w["mixgraph"] <= w[k])

    lines.append("  medians: " + " / ".join(f"{med(k):g}" for k in keys)
                 + f"; mixgraph <= jack_metro in {met('metro')} of {len(wins)} windows"
                 + (f", <= jack_midisine in {met(MIDISINE)}" if sine else "")
                 + f", <= the burner in {met('burn')}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    ap.add_argument("--osc-rate", type=int, default=10000,
                    help="parameter messages per second during the window")
    ap.add_argument("--midi-rate", type=int, default=0,
                    help="MIDI control changes per second into mixgraph:midi_in (skipped, "
                         "with a message, when that port does not exist)")
    ap.add_argument("--channels", type=int, default=64,
                    help="mix64 strips (0: an empty graph, for attribution)")
    ap.add_argument("--block", type=int, default=BLOCK, help="frames per JACK period")
    ap.add_argument("--windows", type=int, default=1,
                    help="consecutive windows of --seconds under one load, each counted "
                         "on its own, with the medians")
    ap.add_argument("--jack-cpu", default=None, metavar="N|off",
                    help="the daemon's --jack-cpu (pin its JACK process thread; default: "
                         "the daemon's default, off)")
    ap.add_argument("--burn-us", type=float, default=None, metavar="US",
                    help="the burner's CPU per cycle (default: matched to mixgraph's in the "
                         "warm-up); with --channels 0, an empty mixgraph beside a full-size "
                         "burner")
    ap.add_argument("--behind-midi", action="store_true",
                    help="the burner fed by the bench's MIDI client as mixgraph is (JACK runs "
                         "it after that client), and a zero-cost client `tail` fed the same "
                         "way: peers at mixgraph's place in the graph (needs --midi-rate)")
    ap.add_argument("--burn-touch-kb", type=int, default=0, metavar="KB",
                    help="the burner also touches every cache line of KB of its own memory "
                         "each cycle (within its time): mixgraph's footprint (~400) too")
    ap.add_argument("--baseline", action="store_true",
                    help="also run jackd alone for the same time (the host's own xruns)")
    a = ap.parse_args()
    if not available():
        raise SystemExit("jackd is not installed (Debian: jackd2)")
    print(f"# mix64 ({a.channels} channels) on JACK dummy, {RATE} Hz, {a.block} frames, "
          f"{a.seconds:g} s window, {a.osc_rate} OSC messages/s"
          + (f", {a.midi_rate} MIDI CCs/s" if a.midi_rate else "")
          + (", jackd realtime" if os.environ.get("MIXGRAPH_JACK_RT") else
             ", jackd --no-realtime (MIXGRAPH_JACK_RT=1 for -R)"), flush=True)
    extra = ("--jack-cpu", a.jack_cpu) if a.jack_cpu is not None else ()
    print(f"# load average at the start {os.getloadavg()[0]:.1f}"
          + (f", daemon --jack-cpu {a.jack_cpu}" if extra else ""), flush=True)
    r = mix64_live(a.seconds, a.osc_rate, a.midi_rate, a.channels, block=a.block,
                   windows=a.windows, extra=extra, burn_fixed_us=a.burn_us,
                   behind_midi=a.behind_midi, burn_touch_kb=a.burn_touch_kb)
    print(r)
    print(summary(r))
    if a.windows > 1:
        print(windows_summary(r["windows"], a.seconds))
    if a.baseline:
        print(f"jackd alone, no client, {a.seconds:g} s: {baseline(a.seconds, RATE, a.block)}")


if __name__ == "__main__":
    main()
