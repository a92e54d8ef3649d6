"""`mixgraph serve`: the long-running daemon.

Threads: the audio thread (C: PortAudio callback or the null clock), the
control thread (OSC receive + dispatch + engine service), the disk worker,
the autosave writer, and the main thread, which only shows the status line
and waits for SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from . import __version__
from .backends import choose_backend, start_backend
from .diskio import DEFAULT_MAX_RECORDER_CHANNELS, DEFAULT_MIN_FREE_MB, DiskIO
from .engine import Engine
from .errors import MixgraphError
from .osc import Counters, Dispatcher
from .service import Notifier, StateLock, Watchdog
from .session import Session
from .state import AUTOSAVE, Autosaver, PatchStore, read_patch
from .transport import ControlServer, Limits, _is_loopback

log = logging.getLogger("mixgraph")

DEFAULT_PORT = 8000  # TouchOSC's default outgoing port
HTTP_TOKEN_FILE = "http-token"  # in the state dir: the browser surface's access token


@dataclass
class ServeOptions:
    """Everything `mixgraph serve` takes on its command line."""

    backend: str = "auto"
    device: str | None = None
    sample_rate: float = 48000.0
    block: int = 64
    inputs: int | None = None
    outputs: int | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    state_dir: Path | None = None
    status: bool = True
    ceiling_db: float = 0.0
    tcp_port: int | None = None  # None: the UDP port number; -1: no TCP
    allow: list[str] | None = None  # CIDR networks; None: loopback/private (see docs)
    max_frame: int = 65536
    rate_limit: float = 20000.0  # messages/s per client; 0 = unlimited
    rate_burst: float = 10000.0
    zeroconf: bool = False  # advertise _osc._udp / _osc._tcp (the zeroconf package)
    mlock: bool = True  # lock the process's memory so the audio thread never page-faults
    limits: Limits | None = None  # connection, subscriber and output caps (transport.Limits)
    max_lead_s: float = 600.0  # how far ahead a bundle's timetag may be (docs/protocol.md)
    max_recorder_channels: int = DEFAULT_MAX_RECORDER_CHANNELS  # all recorders together
    min_free_mb: float = DEFAULT_MIN_FREE_MB  # a recorder's disk must have this much free
    http_port: int | None = None  # the browser surface (HTTP + WebSocket); None: off
    http_token: str | None = None  # its access token; None: none on loopback, else generated
    http_read_only: bool = False  # browser clients may look, not change


def raise_fd_limit() -> str:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (at most 65536); says what
    it is, for the banner. Connections are capped below it (transport.Limits)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return str(soft)


def lock_memory() -> str:
    """mlockall the process (as audio servers do); says what happened, for the banner."""
    import errno
    import os

    from ._core import lib

    err = lib.mg_lock_memory()
    if err == 0:
        return "locked (mlockall)"
    return (f"not locked ({os.strerror(err)}; raise RLIMIT_MEMLOCK or run as root): "
            "page faults may cause xruns" if err in (errno.EPERM, errno.ENOMEM, errno.EAGAIN)
            else f"not locked ({os.strerror(err)})")


def default_state_dir() -> Path:
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mixgraph"


class Daemon:
    """The server's parts wired together; start(), then wait(), then stop()."""

    def __init__(self, opts: ServeOptions, console: Console | None = None) -> None:
        self.opts = opts
        self.console = console or Console(stderr=False)
        self.state_dir = Path(opts.state_dir or default_state_dir())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = StateLock(self.state_dir)  # one server per state directory
        self.lock.acquire()
        try:
            self._build(opts)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, opts: ServeOptions) -> None:
        self.started_at = time.monotonic()
        self.memory = lock_memory() if opts.mlock else "not locked (--no-mlock)"
        self.fd_limit = raise_fd_limit()
        self.config = choose_backend(opts.backend, opts.device, opts.sample_rate, opts.block,
                                     opts.inputs, opts.outputs)
        cfg = self.config
        self.engine = Engine(cfg.sample_rate, cfg.hw_in, cfg.hw_out)
        self.engine.set_ceiling_db(opts.ceiling_db)
        self.disk = DiskIO(cfg.sample_rate, max_recorder_channels=opts.max_recorder_channels,
                           min_free_bytes=int(opts.min_free_mb * (1 << 20)), enforce=False)
        self.session = Session(self.engine, data_dir=self.state_dir / "audio",
                               confine_paths=True, disk=self.disk)
        (self.state_dir / "audio").mkdir(exist_ok=True)
        self.store = PatchStore(self.state_dir)
        self.autosave_path = self.state_dir / AUTOSAVE
        self.restored = self._restore()
        self.disk.start_quota(self.state_dir / "audio")  # a restart keeps its recorders
        self.autosaver = Autosaver(self.autosave_path)
        self._dirty = False
        self._last_save_error = -1e9
        self.session.changed = self._mark_dirty
        self.counters = Counters()
        info = {"backend": cfg.kind, "device": cfg.device_name, "block": cfg.block,
                "inputs": cfg.hw_in, "outputs": cfg.hw_out}
        self.dispatcher = Dispatcher(self.session, self.store, info, self.counters,
                                     max_lead_s=opts.max_lead_s)
        self.server = ControlServer(self.dispatcher, opts.host, opts.port, tick=self._tick,
                                    tcp_port=opts.tcp_port, allow=opts.allow,
                                    max_frame=opts.max_frame, rate=opts.rate_limit,
                                    burst=opts.rate_burst, limits=opts.limits,
                                    http_port=opts.http_port,
                                    http_token=self._http_token(opts),
                                    http_read_only=opts.http_read_only)
        self.exposure = self._exposure()
        if self.exposure:
            log.warning("%s", self.exposure)
        self.running = None
        self._control: threading.Thread | None = None
        self._stop = threading.Event()
        # systemd: READY/STATUS/STOPPING, and WATCHDOG=1 while the sample clock moves
        self.notifier = Notifier()
        self.watchdog = Watchdog(self.notifier, lambda: self.engine.time,
                                 every_s=min(1.0, self.notifier.watchdog_s / 2 or 1.0))
        self._last_status = 0.0

    def _http_token(self, opts: ServeOptions) -> str:
        """The browser surface's access token: --http-token, else (when listening beyond
        loopback) the one kept in <state dir>/http-token, made at the first start; none
        on loopback."""
        if opts.http_port is None:
            return ""
        if opts.http_token:
            return opts.http_token
        if _is_loopback(opts.host):
            return ""
        path = self.state_dir / HTTP_TOKEN_FILE
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        if not token:
            token = secrets.token_urlsafe(12)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
        return token

    def _restore(self) -> str:
        if not self.autosave_path.exists():
            return "empty graph"
        try:
            self.session.load_doc(read_patch(self.autosave_path))
            self.session.commit()
            return f"restored {len(self.session.graph.nodes)} nodes from {self.autosave_path}"
        except MixgraphError as e:
            bad = self.autosave_path.with_suffix(f".bad-{int(time.time())}")
            self.autosave_path.rename(bad)
            log.error("autosave unreadable (%s); kept as %s, starting empty", e, bad)
            return f"autosave unreadable ({e}); kept as {bad.name}"

    def _exposure(self) -> str:
        """A warning when the server listens beyond loopback without an explicit --allow."""
        if _is_loopback(self.opts.host) or self.opts.allow is not None:
            return ""
        return (f"listening on {self.opts.host} without --allow: any host on a private "
                "network (10/8, 172.16/12, 192.168/16, link-local) may control this "
                "server; name the ones that should with --allow CIDR")

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _tick(self) -> None:
        """The autosave hook of the control loop: submit the latest snapshot. A
        snapshot that cannot be made or encoded is logged (at most every 10 s) and
        retried on the next tick; it never stops the control thread."""
        if self._dirty:
            self._dirty = False
            try:
                self.autosaver.submit(self.session.to_doc())
            except Exception:
                self._dirty = True
                now = time.monotonic()
                if now - self._last_save_error >= 10.0:
                    self._last_save_error = now
                    log.exception("autosave snapshot failed; retrying")
        now = time.monotonic()
        self.watchdog.tick(now)
        if self.notifier.enabled and now - self._last_status >= 2.0:
            self._last_status = now
            self.notifier.notify("STATUS=" + self.summary())

    def summary(self) -> str:
        """One line for systemd's STATUS= and `mixgraph health`."""
        st = self.engine.stats()
        cfg = self.config
        return (f"{cfg.kind} {cfg.sample_rate:g} Hz/{cfg.block}, load {st.load * 100:.1f}%, "
                f"xruns {st.xruns}, clients {self.counters.active_clients()}, "
                f"nodes {len(self.session.graph.nodes)}")

    def banner(self) -> Panel:
        cfg = self.config
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        t.add_row("backend", f"{cfg.kind}" + (f"  ({cfg.note})" if cfg.note else ""))
        t.add_row("device", cfg.device_name)
        t.add_row("audio", f"{cfg.sample_rate:g} Hz, {cfg.block} frames/block, "
                           f"{cfg.hw_in} in / {cfg.hw_out} out")
        host, port = self.server.address[:2]
        tcp = self.server.tcp_address
        t.add_row("osc", f"udp {host}:{port}" + (f", tcp {tcp[0]}:{tcp[1]}" if tcp else ""))
        if self.server.http_address:
            t.add_row("browser", self.http_url()
                      + ("  (read-only)" if self.server.http_read_only else ""))
        lim = self.server.limits
        t.add_row("limits", f"{self.server.max_conns} tcp connections ({lim.max_conns_per_host}"
                            f" per address, idle {lim.idle_timeout:g} s), "
                            f"{lim.max_subscribers} subscribers, descriptors {self.fd_limit}")
        if self.exposure:
            t.add_row("[bold red]warning[/]", f"[red]{escape(self.exposure)}[/]")
        t.add_row("state", f"{self.state_dir}  ({self.restored})")
        t.add_row("memory", self.memory)
        return Panel(t, title=f"mixgraph {__version__}", expand=False)

    def http_url(self) -> str:
        """The browser surface's address, as a user types it."""
        host, port = self.server.http_address[:2]
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        token = self.server.http_token
        return (f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
                + (f"?token={token}" if token else ""))

    def status_line(self) -> str:
        st = self.engine.stats()
        return (f"DSP {st.load * 100:5.1f}%  worst {st.worst_us:7.1f} µs  xruns {st.xruns}  "
                f"clients {self.counters.active_clients()}  nodes {len(self.session.graph.nodes)}"
                f"  msgs {self.counters.messages}  fails {self.counters.failed}"
                f"  garbage {self.counters.garbage}")

    def start(self) -> None:
        self.disk.start()
        self.running = start_backend(self.config, self.engine)
        self._control = threading.Thread(target=self.server.serve_forever,
                                         name="mixgraph-control", daemon=True)
        self._control.start()
        self.zeroconf = None
        if self.opts.zeroconf:
            from .discovery import advertise

            tcp = getattr(self.server, "tcp_address", None)
            self.zeroconf = advertise(self.server.address[1], self.opts.host,
                                      tcp_port=tcp[1] if tcp else None)
        stall = os.environ.get("MIXGRAPH_TEST_STALL_AUDIO_S")
        if stall:  # tests/test_service.py: stop the audio clock to see the watchdog stop
            threading.Timer(float(stall), self.running.stop).start()

    def wait(self) -> None:
        """Block the main thread until SIGINT/SIGTERM, showing the status line on a TTY."""
        def on_signal(signum, _frame):
            self._stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        if self.opts.status and self.console.is_terminal:
            with Live(self.status_line(), console=self.console, refresh_per_second=4,
                      transient=True) as live:
                while not self._stop.wait(0.25):
                    live.update(self.status_line())
                    self.engine.take_worst_us()
        else:
            while not self._stop.wait(0.25):
                pass

    def stop(self) -> None:
        self.notifier.notify("STOPPING=1")
        if getattr(self, "zeroconf", None) is not None:
            self.zeroconf.close()
        self.server.stop()
        if self._control:
            self._control.join(timeout=5)
        if self.running is not None:
            self.running.stop()
        self.session.service()
        self.autosaver.submit(self.session.to_doc())
        self.autosaver.close()
        self.disk.stop()
        self.session.close()
        self.server.close()
        self.final_status = self.status_line()
        self.engine.free()
        self.notifier.close()
        self.lock.release()


def serve(opts: ServeOptions) -> int:
    """Run the daemon until a signal; the exit code for the CLI."""
    console = Console()
    try:
        d = Daemon(opts, console)
    except MixgraphError as e:
        console.print(f"[bold red]mixgraph: {escape(str(e))}[/]")
        return 2
    console.print(d.banner())
    d.start()
    host, port = d.server.address[:2]
    tcp = d.server.tcp_address
    http = d.server.http_address
    if http:  # on a line of its own: the banner's panel may wrap a long URL
        print(f"mixgraph: browser console at {d.http_url()}", flush=True)
        if not _is_loopback(opts.host):  # a phone's camera takes it from the terminal
            from .web import qr_text

            print(qr_text(d.http_url()), end="", flush=True)
    print(f"mixgraph: ready on udp {host}:{port}" + (f" tcp {tcp[1]}" if tcp else "")
          + (f" http {http[1]}" if http else ""), flush=True)
    d.notifier.notify("READY=1", "STATUS=" + d.summary())
    try:
        d.wait()
    finally:
        console.print("mixgraph: shutting down")
        d.stop()
        console.print(d.final_status)
    sys.stdout.flush()
    return 0
