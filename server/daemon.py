"""`mixgraph serve`: the long-running daemon.

Threads: the audio thread (C: PortAudio callback or the null clock), the
control thread (OSC receive + dispatch + engine service), the disk worker,
the autosave writer, and the main thread, which only shows the status line
and waits for SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
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
from .diskio import DiskIO
from .engine import Engine
from .errors import MixgraphError
from .journal import Journal, read_journal
from .osc import Counters, Dispatcher
from .session import Session
from .state import AUTOSAVE, Autosaver, PatchStore, generation, read_patch
from .transport import ControlServer

log = logging.getLogger("mixgraph")

DEFAULT_PORT = 8000  # TouchOSC's default outgoing port


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
    fsync_ms: float = 100.0  # journal fdatasync period (power loss); 0 = before every reply
    keep_snapshots: int = 3  # autosave.mgp and its previous good versions
    journal: bool = True  # False only to measure what it costs: a crash loses edits


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
        self.memory = lock_memory() if opts.mlock else "not locked (--no-mlock)"
        self.config = choose_backend(opts.backend, opts.device, opts.sample_rate, opts.block,
                                     opts.inputs, opts.outputs)
        cfg = self.config
        self.engine = Engine(cfg.sample_rate, cfg.hw_in, cfg.hw_out)
        self.engine.set_ceiling_db(opts.ceiling_db)
        self.disk = DiskIO(cfg.sample_rate)
        self.session = self._new_session()
        (self.state_dir / "audio").mkdir(exist_ok=True)
        self.store = PatchStore(self.state_dir)
        self.autosave_path = self.state_dir / AUTOSAVE
        self._dirty = False
        self.restored, last_seq = self._restore()
        self.journal = Journal(self.state_dir, last_seq, opts.fsync_ms) if opts.journal else None
        self.autosaver = Autosaver(self.autosave_path, keep=opts.keep_snapshots,
                                   on_saved=self.journal.compact if self.journal else None)
        self._last_save_error = 0.0
        self.session.changed = self._mark_dirty
        if self.journal is not None:
            self.session.journal = self.journal
        self.counters = Counters()
        info = {"backend": cfg.kind, "device": cfg.device_name, "block": cfg.block,
                "inputs": cfg.hw_in, "outputs": cfg.hw_out}
        self.dispatcher = Dispatcher(self.session, self.store, info, self.counters)
        self.server = ControlServer(self.dispatcher, opts.host, opts.port, tick=self._tick,
                                    tcp_port=opts.tcp_port, allow=opts.allow,
                                    max_frame=opts.max_frame, rate=opts.rate_limit,
                                    burst=opts.rate_burst)
        if self.journal is not None:
            self.server.before_send = self.journal.flush
        self.running = None
        self._control: threading.Thread | None = None
        self._stop = threading.Event()

    def _new_session(self) -> Session:
        return Session(self.engine, data_dir=self.state_dir / "audio", confine_paths=True,
                       disk=self.disk)

    def _restore(self) -> tuple[str, int]:
        """Start-up state: the newest good snapshot (autosave.mgp, else the previous
        ones), then the journal records after it. A snapshot that cannot be read or
        loaded is set aside byte-identical. Returns what the banner says, and the
        last journal sequence number seen (new records follow it)."""
        s = self.session
        notes: list[str] = []
        used, seq = None, 0
        s.missing_ok = True  # a player whose file is gone is restored silent
        for i in range(max(1, self.opts.keep_snapshots)):
            path = generation(self.autosave_path, i)
            if not path.exists():
                continue
            try:
                doc = read_patch(path)
                seq = doc.get("journal_seq", 0)
                if type(seq) is not int or seq < 0:
                    raise MixgraphError(f"bad journal_seq {seq!r}")
                s.load_doc(doc)
                used = path
                break
            except Exception as e:  # noqa: BLE001 - whatever is wrong, the server starts
                seq = 0
                s.close()  # nothing was handed to the engine yet (no commit)
                s = self.session = self._new_session()
                s.missing_ok = True
                bad = self._set_aside(path)
                why = str(e) if isinstance(e, MixgraphError) else f"{type(e).__name__}: {e}"
                log.error("autosave %s unreadable (%s); set aside as %s", path.name, why,
                          bad.name)
                notes.append(f"{path.name} unreadable ({why[:200]}); set aside as {bad.name}")
        todo, top, jnotes = read_journal(self.state_dir, seq)
        for n in jnotes:
            log.warning("journal: %s", n)
        failed = 0
        for rec in todo:
            try:
                self._replay(rec)
            except Exception as e:  # noqa: BLE001 - one bad record must not stop the start
                failed += 1
                log.error("journal record %r not replayed: %s", rec[:3], e)
        s.missing_ok = False
        s.commit()
        if todo or notes:
            self._dirty = True  # a fresh snapshot soon, so the journal compacts
        n = len(s.graph.nodes)
        if used is not None:
            what = f"restored {n} nodes from {used.name}"
        elif todo:
            what = f"no snapshot; {n} nodes from the journal"
        elif notes:
            what = "starting empty"
        else:
            what = "empty graph"
        if todo:
            what += f" + {len(todo) - failed} journal records"
            if failed:
                what += f" ({failed} failed, see the log)"
        for name, why in sorted(s.missing.items()):
            notes.append(f"player {name}: file missing ({why}); restored silent")
        if notes or jnotes:
            what = "; ".join([*notes, *jnotes, what])
        log.info("state: %s", what)
        if used is None and notes:
            log.error("no good autosave: %s", what)
        return what, max(top, seq)

    def _set_aside(self, path: Path) -> Path:
        """Rename a bad state file out of the way, bytes untouched."""
        bad = path.with_name(f"{path.name}.bad-{int(time.time())}")
        k = 1
        while bad.exists():
            bad = path.with_name(f"{path.name}.bad-{int(time.time())}-{k}")
            k += 1
        path.rename(bad)
        return bad

    def _replay(self, rec: list) -> None:
        """Apply one journal record (server/journal.py) to the session."""
        s = self.session
        op, a = rec[0], rec[1:]
        if op == "set":
            s.set_param(a[0], a[1], a[2])
        elif op == "add":
            name, type_name, channels, options, params = a
            s.add_node(type_name, name, {**options, "channels": channels, **params})
        elif op == "rm":
            s.remove_node(a[0])
        elif op == "conn":
            s.connect(a[0], a[1])
        elif op == "disc":
            s.disconnect(a[0], a[1])
        elif op == "byp":
            s.set_bypass(a[0], bool(a[1]))
        elif op == "doc":
            s.load_doc(a[0])
        else:
            raise MixgraphError(f"unknown journal record {op!r}")

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _tick(self) -> None:
        if self._dirty:
            self._dirty = False
            try:
                self._save()
            except Exception as e:  # noqa: BLE001 - the control thread must live; retried
                self._dirty = True
                now = time.monotonic()
                if now - self._last_save_error > 10.0:
                    self._last_save_error = now
                    log.error("autosave snapshot failed (%s); retrying", e)

    def _save(self) -> None:
        seq = self.journal.rotate() if self.journal is not None else 0
        doc = self.session.to_doc()
        doc["journal_seq"] = seq
        self.autosaver.submit(doc, seq)

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
        t.add_row("state", f"{self.state_dir}  ({self.restored})")
        t.add_row("memory", self.memory)
        return Panel(t, title=f"mixgraph {__version__}", expand=False)

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
        if getattr(self, "zeroconf", None) is not None:
            self.zeroconf.close()
        self.server.stop()
        if self._control:
            self._control.join(timeout=5)
        if self.running is not None:
            self.running.stop()
        self.session.service()
        try:
            self._save()
        except Exception:  # noqa: BLE001 - the journal still holds every change
            log.exception("final autosave failed")
        self.autosaver.close()
        if self.journal is not None:
            self.journal.close()
        self.disk.stop()
        self.session.close()
        self.server.close()
        self.final_status = self.status_line()
        self.engine.free()


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
    print(f"mixgraph: ready on udp {host}:{port}" + (f" tcp {tcp[1]}" if tcp else ""),
          flush=True)
    try:
        d.wait()
    finally:
        console.print("mixgraph: shutting down")
        d.stop()
        console.print(d.final_status)
    sys.stdout.flush()
    return 0
