"""Start a real `mixgraph serve` process for end-to-end tests."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mixgraph.clients import Client


def _below_ephemeral() -> range:
    """Ports to pick a server's from: below the kernel's ephemeral range, from which it
    hands out the local ports of clients' connections; a port picked from that range
    can be taken by some connection between the check and the daemon's bind (seen
    in CI: "Address already in use")."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - 12000), low)


def _free_port(udp: bool) -> int:
    """A port below the ephemeral range free for TCP on every address, and with udp
    also for UDP on loopback."""
    ports = _below_ephemeral()
    for _ in range(200):
        port = random.choice(ports)
        socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM)]
        if udp:
            socks.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        try:
            socks[0].bind(("0.0.0.0", port))
            if udp:
                socks[1].bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no port free")


def free_udp_port() -> int:
    """A port number free for UDP and for TCP (the daemon listens on both: its TCP
    port is the UDP port's number by default)."""
    return _free_port(udp=True)


def free_tcp_port() -> int:
    """A TCP port number free on every address (a server's: see _below_ephemeral)."""
    return _free_port(udp=False)


def tcp_frames(sock: socket.socket, limit_s: float = 120.0) -> Iterator[bytes]:
    """The size-prefixed OSC frames (OSC 1.0 over TCP) arriving on `sock`, one at a time,
    for `limit_s` at most (AssertionError after). Read as fast as the server writes,
    with no quadratic copies: a slow reader leaves the control thread idle, refilling
    the budgets a flood test means to spend."""
    import struct
    buf, pos = bytearray(), 0
    end = time.monotonic() + limit_s
    sock.settimeout(60.0)
    while time.monotonic() < end:
        while len(buf) - pos >= 4:
            n = struct.unpack_from(">i", buf, pos)[0]
            if len(buf) - pos < 4 + n:
                break
            pos += 4 + n
            yield bytes(buf[pos - n:pos])
        del buf[:pos]
        pos = 0
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    raise AssertionError(f"frames ran out or {limit_s} s passed")


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (VmRSS of /proc/<pid>/status): the one
    reading of a daemon's memory for the tests and bench/ (attack.py, source_ports.py).
    Raises LookupError for a process that has none (exited: a zombie)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise LookupError(f"no VmRSS for process {pid}: it has exited")


def control_cpu_s(pid: int) -> float:
    """CPU seconds of a daemon's control thread (named mg-control, else the busiest
    thread of process `pid`): what the host budgets of server/budget.py charge, so a
    bound on it holds on a slow or loaded host as on a fast one, where a bound on wall
    time does not."""
    best = 0.0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (t / "comm").read_text().strip()
            f = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        if name == "mg-control":
            return cpu
        best = max(best, cpu)
    return best


def wait_autosaved(state_dir: Path, timeout: float = 30.0) -> None:
    """Until the autosave snapshot holds every record the journal has (its
    journal_seq reaches the journal's highest): what a test slept a second for
    ("the autosave"), which a loaded host's autosave worker can take longer than."""
    import msgpack

    from mixgraph.server.journal import read_journal

    deadline = time.monotonic() + timeout
    while True:
        top = read_journal(state_dir, 0)[1]
        try:
            seq = msgpack.unpackb((state_dir / "autosave.mgp").read_bytes())["journal_seq"]
        except (OSError, ValueError, KeyError, TypeError):
            seq = -1
        if seq >= top:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the autosave holds journal record {seq}, the journal "
                                 f"{top}, after {timeout} s")
        time.sleep(0.05)


@contextmanager
def in_process_dispatcher() -> Iterator:
    """(dispatcher, say): an in-process session and OSC dispatcher over a 2-in/2-out
    engine on the null clock (so /sync is answered); say(address, *args) dispatches
    one message and returns its last reply. Freed in order on exit."""
    from mixgraph.server.engine import Engine
    from mixgraph.server.osc import Dispatcher
    from mixgraph.server.session import Session

    e = Engine(48000, 2, 2)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    out: list = []

    def say(*m):
        d.dispatch(m[0], list(m[1:]), lambda a, r: out.append((a, r)))
        return out[-1]
    e.null_start(64)
    try:
        yield d, say
    finally:
        e.null_stop()
        s.close()
        e.free()


@contextmanager
def in_process_server(**kw) -> Iterator:
    """A ControlServer in this process on ephemeral ports over in_process_dispatcher's
    dispatcher, with no loop: the test drives it. kw goes to ControlServer (rate,
    burst, ...)."""
    from mixgraph.server.transport import ControlServer

    with in_process_dispatcher() as (d, _say):
        srv = ControlServer(d, "127.0.0.1", 0, **kw)
        try:
            yield srv
        finally:
            srv.close()


class FakeMidiIn:
    """python-rtmidi's MidiIn as the control thread polls it (get_message): the raw
    MIDI messages given, one a poll."""

    def __init__(self, msgs: list[list[int]]) -> None:
        self.q = list(msgs)

    def get_message(self):
        return (self.q.pop(0), 0.0) if self.q else None


class FakeMidiOut:
    """python-rtmidi's MidiOut that drops the feedback sent to it."""

    def send_message(self, _m) -> None:
        pass


class Daemon:
    """A `mixgraph serve` subprocess and a client connected to it."""

    def __init__(self, state_dir: Path, *extra: str, port: int | None = None,
                 env: dict | None = None, preexec_fn=None) -> None:
        self.state_dir = state_dir
        for attempt in range(3):
            # a port found free can be taken by someone else before the daemon binds it
            # (another test's client): then try another, unless the caller chose it
            self.port = port or free_udp_port()
            self.log_path = state_dir.parent / f"serve-{self.port}.log"
            self.log = open(self.log_path, "w")  # noqa: SIM115
            cmd = [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port",
                   str(self.port), "--state-dir", str(state_dir), "--no-status", *extra]
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})},
                                         preexec_fn=preexec_fn)
            # 30 s: a reply is ms on a quiet machine, but on 2 cores at load 10+ each
            # thread hand-off waits for a time slice and a one-node /patch/load took 1-3 s
            self.client = Client("127.0.0.1", self.port, timeout=30.0)
            try:
                self._wait_ready()
                return
            except RuntimeError:
                taken = f"127.0.0.1:{self.port}: Address already in use" in self.output()
                # a daemon that is slow to start must not outlive the test: left running
                # (mlockall, ~200 MB each) they piled up and slowed every later start
                self._kill()
                if port is not None or not taken or attempt == 2:
                    self.client.close()
                    self.log.close()
                    raise
                self.client.close()
                self.log.close()

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """Until the daemon logs "ready on udp": a start (Python, numpy, the C core,
        mlockall) takes a second on a quiet machine and far longer at load 10+ on 2
        cores; the deadline only ends a daemon that will not start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.output()}")
            if "ready on udp" in self.output():
                return
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout} s:\n{self.output()}")

    def cpu_s(self) -> float:
        """CPU seconds the daemon has used (all its threads, user and system: /proc),
        for bounds on work that a loaded host's waits must not count in."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def call(self, address: str, *args):
        return self.client.call(address, *args)

    def request(self, address: str, *args):
        return self.client.request(address, *args)

    def status(self) -> dict:
        _, args = self.client.request("/status")
        return dict(zip(args[::2], args[1::2], strict=True))

    def sync(self, token: int = 1) -> None:
        addr, args = self.client.request("/sync", token)
        assert (addr, args) == ("/synced", [token])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()
        self.log.close()
        return self.proc.returncode
