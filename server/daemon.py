"""`mixgraph serve`: the long-running daemon.

Threads: the audio thread (C: PortAudio callback or the null clock), the
control thread (OSC receive + dispatch + engine service), the disk worker,
the autosave writer, and the main thread, which only shows the status line
and waits for SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
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

from . import __version__, cues, heap, lv2
from .backends import BackendConfig, choose_backend
from .devices import DeviceWatch
from .diskio import DEFAULT_MAX_RECORDER_CHANNELS, DEFAULT_MIN_FREE_MB, DiskIO
from .engine import Engine
from .errors import DeviceMismatch, MixgraphError
from .jack import rt_errors as jack_rt_errors
from .journal import SEQ_MAX, Journal, read_journal
from .oplog import OpLog
from .osc import Counters, Dispatcher
from .patch import restore_state
from .pending import check_entries, reschedule
from .scenes import show_of, trimmer
from .service import Notifier, StateLock, Watchdog
from .session import Session
from .state import (
    AUDIO_DIR,
    AUTOSAVE,
    Autosaver,
    PatchStore,
    generation,
    read_patch,
    remove_partial_writes,
    unseal,
)
from .transport import ControlServer, Limits, _is_loopback

log = logging.getLogger("mixgraph")

DEFAULT_PORT = 8000  # TouchOSC's default outgoing port
CHAIN_SLICE_S = 0.05  # server/cues.py: seconds of a cue chain before others get a turn
HTTP_TOKEN_FILE = "http-token"  # in the state dir: the browser surface's access token


@dataclass
class ServeOptions:
    """Everything `mixgraph serve` takes on its command line."""

    backend: str = "auto"
    device: str | None = None
    sample_rate: float = 48000.0
    block: int = 64
    threads: int = 1  # audio threads (the audio thread and threads - 1 workers)
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
    max_nodes: int = 4096  # /graph/add (and a /patch/load over it) refused at this many nodes
    max_connections: int = 16384  # /graph/connect and /patch/load likewise
    max_recorder_channels: int = DEFAULT_MAX_RECORDER_CHANNELS  # all recorders together
    min_free_mb: float = DEFAULT_MIN_FREE_MB  # a recorder's disk must have this much free
    fsync_ms: float = 100.0  # journal fdatasync period (power loss); 0 = before every reply
    keep_snapshots: int = 3  # autosave.mgp and its previous good versions
    journal: bool = True  # False only to measure what it costs: a crash loses edits
    jack_server: str | None = None  # --jack-server: a named JACK server
    jack_name: str = "mixgraph"     # --jack-name: the client name (its ports' prefix)
    jack_connect: list[str] | None = None  # --jack-connect: system, none, or ours=theirs pairs
    jack_cpu: str | None = None  # --jack-cpu: N (pin JACK's process thread), off (None)
    midi_api: str = "auto"  # --midi-api: auto, alsa, or jack (python-rtmidi's JACK client)
    http_port: int | None = None  # the browser surface (HTTP + WebSocket); None: off
    http_token: str | None = None  # its access token; None: none on loopback, else generated
    http_read_only: bool = False  # browser clients may look, not change


def lan_address() -> str:
    """The address other machines reach this box at, for the browser URL and its QR
    code when listening on every interface: the source address of the default route
    (a UDP socket is connected, which sends nothing); a phone cannot resolve a bare
    host name. Falls back to the host name's address, then the name."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 9))
        ip = probe.getsockname()[0]
        if not ip.startswith("127.") and ip != "0.0.0.0":
            return ip
    except OSError:
        pass
    finally:
        probe.close()
    name = socket.gethostname()
    try:
        ip = socket.gethostbyname(name)
        return name if ip.startswith("127.") else ip
    except OSError:
        return name


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

    def __init__(self, opts: ServeOptions, console: Console | None = None,
                 stop: threading.Event | None = None) -> None:
        self.opts = opts
        self.console = console or Console(stderr=False)
        self.state_dir = Path(opts.state_dir or default_state_dir())
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file in the way, a read-only disk: say so, no traceback
            why = "a file is in the way" if isinstance(e, FileExistsError | NotADirectoryError) \
                else (e.strerror or str(e))
            raise MixgraphError(f"cannot use {self.state_dir} as the state directory "
                                f"(--state-dir): {why}") from None
        self.lock = StateLock(self.state_dir)  # one server per state directory
        self.lock.acquire()
        self._stop = stop if stop is not None else threading.Event()
        try:
            self._build(opts)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, opts: ServeOptions) -> None:
        self.started_at = time.monotonic()
        self.memory = lock_memory() if opts.mlock else "not locked (--no-mlock)"
        self.fd_limit = raise_fd_limit()
        self.config = self._choose(opts)
        cfg = self.config
        self.engine = Engine(cfg.sample_rate, cfg.hw_in, cfg.hw_out, threads=opts.threads,
                             block=cfg.block)
        self.engine.set_ceiling_db(opts.ceiling_db)
        # bounded work per block: a burst of parameter sets (a control thread
        # that paused, a flood) is applied over several blocks, in order
        self.engine.cap_sets(Engine.SET_CAP_LIVE)
        self.disk = DiskIO(cfg.sample_rate, max_recorder_channels=opts.max_recorder_channels,
                           min_free_bytes=int(opts.min_free_mb * (1 << 20)), enforce=False)
        self.session = self._new_session()
        (self.state_dir / AUDIO_DIR).mkdir(exist_ok=True)
        self.store = PatchStore(self.state_dir, min_free=int(opts.min_free_mb * (1 << 20)))
        self.autosave_path = self.state_dir / AUTOSAVE
        for folder in (self.state_dir, self.store.patches, self.state_dir / "midi"):
            n, size = remove_partial_writes(folder)
            if n:
                log.warning("removed %d partial write(s) (%d bytes) in %s left by a server "
                            "that died while saving", n, size, folder)
        self._dirty = False
        self.restored, last_seq = self._restore()
        self.disk.start_quota(self.state_dir / AUDIO_DIR)  # a restart keeps its recorders
        self.journal = Journal(self.state_dir, last_seq, opts.fsync_ms) if opts.journal else None
        self.autosaver = Autosaver(self.autosave_path, keep=opts.keep_snapshots,
                                   on_saved=self.journal.compact if self.journal else None,
                                   on_written=self.journal.snapshot_written if self.journal
                                   else None)
        self._last_save_error = -1e9
        self.session.changed = self._mark_dirty
        if self.journal is not None:
            self.session.journal = self.journal
        self.counters = Counters()
        info = {"backend": cfg.kind, "device": cfg.device_name, "block": cfg.block,
                "inputs": cfg.hw_in, "outputs": cfg.hw_out, "device_state": "running"}
        self.dispatcher = Dispatcher(self.session, self.store, info, self.counters,
                                     max_lead_s=opts.max_lead_s)
        self.dispatcher.max_nodes = int(opts.max_nodes)
        self.dispatcher.max_connections = int(opts.max_connections)
        self.server = ControlServer(self.dispatcher, opts.host, opts.port, tick=self._tick,
                                    tcp_port=opts.tcp_port, allow=opts.allow,
                                    max_frame=opts.max_frame, rate=opts.rate_limit,
                                    burst=opts.rate_burst, limits=opts.limits,
                                    http_port=opts.http_port,
                                    http_token=self._http_token(opts),
                                    http_read_only=opts.http_read_only)
        self.oplog = OpLog(extra=self._oplog_extra)  # operator lines: xruns, late, clients
        self.server.on_client = self.oplog.peer_seen
        self.exposure = self._exposure()
        if self.exposure:
            log.warning("%s", self.exposure)
        if self.journal is not None:
            self.server.before_send = self.journal.flush
        self.devices = DeviceWatch(cfg, self.engine, self._device_changed)
        self._latency_plans = -1
        self._jack_rt_errors = 0
        self._control: threading.Thread | None = None
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

    @property
    def running(self):
        """The backend driving the engine now (the device, or the null clock
        while the device is away)."""
        return self.devices.current if hasattr(self, "devices") else None

    def _choose(self, opts: ServeOptions) -> BackendConfig:
        from .jack import parse_connect, parse_cpu

        hw_in, hw_out = opts.inputs, opts.outputs
        need = (0, 0)  # what the saved show's input/output nodes use
        if hw_in is None or hw_out is None:
            need = self._patch_channels()
        try:
            cfg = choose_backend(opts.backend, opts.device, opts.sample_rate, opts.block,
                                 hw_in, hw_out, jack_server=opts.jack_server,
                                 jack_name=opts.jack_name,
                                 jack_connect=parse_connect(opts.jack_connect),
                                 jack_ports=need if opts.backend in ("jack", "auto") else (0, 0))
        except MixgraphError as e:
            # --device may name a device that is not there yet: wait for it
            if (opts.backend != "portaudio" or opts.device is None
                    or "no audio device" not in str(e)):
                raise
            cfg = BackendConfig("portaudio", str(opts.device), None, float(opts.sample_rate),
                                opts.block, 2 if hw_in is None else hw_in,
                                2 if hw_out is None else hw_out,
                                f"{e}: waiting for it", device_query=opts.device)
        cfg.jack_cpu = parse_cpu(opts.jack_cpu)
        if cfg.device is None and cfg.kind != "jack":  # no device (yet): the show decides
            cfg.hw_in = max(cfg.hw_in, need[0]) if hw_in is None else cfg.hw_in
            cfg.hw_out = max(cfg.hw_out, need[1]) if hw_out is None else cfg.hw_out
        return cfg

    def _patch_channels(self) -> tuple[int, int]:
        """Hardware inputs and outputs the saved patch's input/output nodes use
        (0 when it has none, or when the file is unreadable: _restore deals with that):
        the counts when --inputs/--outputs are not given and there is no device (yet)."""
        try:
            return self._patch_channels_of()
        except Exception:  # noqa: BLE001 - a corrupt autosave is _restore's to report
            return 0, 0

    def _patch_channels_of(self) -> tuple[int, int]:
        try:
            doc = read_patch(self.state_dir / AUTOSAVE) if (self.state_dir / AUTOSAVE).exists() \
                else {}
        except MixgraphError:
            return 0, 0
        need = {"input": 0, "output": 0}
        for n in doc.get("nodes", []) if isinstance(doc, dict) else []:
            if isinstance(n, dict) and isinstance(n.get("type"), str) and n["type"] in need:
                opts = n.get("options") or {}
                try:
                    top = int(opts.get("first", 1)) - 1 + int(n.get("channels", 2))
                except (TypeError, ValueError, AttributeError, OverflowError):
                    continue
                need[n["type"]] = max(need[n["type"]], min(top, 256))
        return need["input"], need["output"]

    def _device_changed(self, state: str, backend: str) -> None:
        """The device went away or came back: /status and subscribers hear of it."""
        self.dispatcher.info["backend"] = backend
        self.dispatcher.info["device_state"] = state
        self.dispatcher.info["block"] = self.devices.config.block
        fb = getattr(self.dispatcher, "feedback", None)
        if fb is not None:
            fb.device_changed(state, backend)

    def _new_session(self) -> Session:
        lv2.REFUSE_NON_RT = True  # a live engine: plugins must be hard real-time capable
        cues.CHAIN_SLICE_S = CHAIN_SLICE_S  # a long cue chain lets other clients in
        lv2.STATE_ROOT = str(self.state_dir)  # plugins' files: <state dir>/lv2/<node>
        return Session(self.engine, data_dir=self.state_dir / AUDIO_DIR, confine_paths=True,
                       disk=self.disk)

    def _restore(self) -> tuple[str, int]:
        """Start-up state: the newest good snapshot (autosave.mgp, else the previous
        ones), then the journal records after it. A snapshot that cannot be read or
        loaded is set aside byte-identical. Returns what the banner says, and the
        last journal sequence number seen (new records follow it)."""
        s = self.session
        notes: list[str] = []
        used, seq = None, 0
        self._resched: list = []  # timed sets still ahead: scheduled again once audio runs
        unfit = False
        s.missing_ok = True  # a player whose file is gone is restored silent
        for i in range(max(1, self.opts.keep_snapshots)):
            path = generation(self.autosave_path, i)
            if not path.exists():
                continue
            try:
                doc = read_patch(path)
                unseal(doc, path.name)  # a damaged snapshot: the previous one + the journal
                seq = doc.get("journal_seq", 0)
                if type(seq) is not int or not 0 <= seq <= SEQ_MAX:  # no journal numbers past it
                    raise MixgraphError(f"bad journal_seq {str(seq)[:40]}")
                s.load_doc(doc)
                used = path
                for e in check_entries(doc.get("scheduled", [])):
                    self._replay(("at", *e))
                break
            except Exception as e:  # noqa: BLE001 - whatever is wrong, the server starts
                s.close()  # nothing was handed to the engine yet (no commit)
                s = self.session = self._new_session()
                s.missing_ok = True
                if isinstance(e, DeviceMismatch):  # a good show, the wrong device
                    notes.append(self._keep_unfit(path, e))
                    unfit = True
                    break
                seq = 0
                bad = self._set_aside(path)
                why = str(e) if isinstance(e, MixgraphError) else f"{type(e).__name__}: {e}"
                log.error("autosave %s unreadable (%s); set aside as %s", path.name, why,
                          bad.name)
                notes.append(f"{path.name} unreadable ({why[:200]}); set aside as {bad.name}")
        todo, top, jnotes = read_journal(self.state_dir, seq)
        if unfit and todo:  # they edit the show kept aside, not an empty graph
            jnotes.append(f"{len(todo)} journal records after it not replayed")
            todo = []
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
        if s.trimmed:
            notes.append(self._keep_untrimmed(used, len(s.trimmed)))
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
            notes.append(f"{name}: {why}" if why.startswith("placeholder")  # an lv2 node
                         else f"player {name}: file missing ({why}); restored silent")
        if notes or jnotes:
            what = "; ".join([*notes, *jnotes, what])
        log.info("state: %s", what)
        if used is None and notes:
            log.error("no good autosave: %s", what)
        return what, max(top, seq)

    def _keep_unfit(self, path: Path, e: Exception) -> str:
        """A snapshot that needs hardware channels this device lacks: not corrupt, so it
        becomes a patch (`/patch/load <name>` once a device that fits is there) and is
        moved out of the autosave rotation; returns the note for the log and banner."""
        name = f"unfit-{time.strftime('%Y%m%d-%H%M%S')}-{path.stem}"
        dest = self.store.patches / f"{name}.mgp"
        self.store.patches.mkdir(parents=True, exist_ok=True)
        path.rename(dest)
        cfg = self.config
        note = (f"{path.name} does not fit this device ({e}; it has {cfg.hw_in} in / "
                f"{cfg.hw_out} out): kept as patch {name!r}; /patch/load {name} once the "
                "device is there, or start with --inputs/--outputs")
        log.error("state: %s", note)
        return note

    def _keep_untrimmed(self, used: Path | None, n: int) -> str:
        """Items of the show past this version's limits were left out at start-up
        (each has its warning in the log): the snapshot as it was is copied to a
        patch (the autosave overwrites it soon), so nothing is gone for good. Returns
        the note for the log and banner."""
        note = (f"{n} show items past this version's limits left out (each is a "
                "warning in the log)")
        if used is not None:
            name = f"untrimmed-{time.strftime('%Y%m%d-%H%M%S')}-{used.stem}"
            dest = self.store.patches / f"{name}.mgp"
            try:
                self.store.patches.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(used, dest)
                note += f"; the snapshot as it was is kept as {dest}"
            except OSError as e:
                note += f"; the snapshot as it was could not be kept ({e})"
        log.warning("state: %s", note)
        return note

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
        elif op == "at":  # a timed set (server/pending.py): ahead, or due while we were down
            (e,) = check_entries([a]) or [None]
            if e is not None and e[0] > time.time():
                self._resched.append(e)
            elif e is not None:
                s.set_param(e[1], e[2], e[3])
                log.warning("scheduled set %s.%s = %g was due while the server was down: "
                            "applied at start-up", e[1], e[2], e[3])
                self._dirty = True
        elif op == "state":  # learned state an undo gave back (server/history.py)
            restore_state(s, a[0], a[1])
        elif op == "lv2_state":  # an LV2 plugin's state an undo gave back
            lv2.restore_state(s, a[0], a[1])
        elif op == "order":  # the graph's order an undo put back
            s.history.reorder(a[0], a[1])
        elif op == "midi":  # the MIDI maps after a change (server/midi.py)
            if getattr(s, "midi", None) is not None:
                s.midi.load_doc(a[0], strict=False)
            else:  # before the dispatcher exists: its MidiManager loads them
                s.midi_doc = a[0]
        elif op == "show_part":  # some scenes, safes, cues, playhead (server/scenes.py)
            show_of(s).load_part(a[0], trimmer(s))
        elif op == "cue_put":  # one cue set or deleted, and the playhead (server/cues.py)
            show_of(s).cues.load_put(a[0], a[1], a[2], trimmer(s))
        elif op == "cue_playhead":  # GO, standby, a continue moved it (server/cues.py)
            show_of(s).cues.put_playhead(a[0])
        elif op == "show":  # the whole show (journals written before show_part)
            sh = show_of(s)
            sh.take(sh.check(a[0], trimmer(s)))
        else:
            raise MixgraphError(f"unknown journal record {op!r}")

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
                self._save()
            except Exception as e:  # noqa: BLE001 - the control thread must live; retried
                self._dirty = True
                now = time.monotonic()
                if now - self._last_save_error > 10.0:
                    self._last_save_error = now
                    log.error("autosave snapshot failed (%s); retrying", e)

        now = time.monotonic()
        self.engine.recent.tick(now)
        self.oplog.tick(now, self._op_counts())
        lv2.drain_log()  # plugins' log lines, rate-limited
        self.devices.tick(now)
        self._jack_tick()
        self.watchdog.tick(now)
        if self.notifier.enabled and now - self._last_status >= 2.0:
            self._last_status = now
            self.notifier.notify("STATUS=" + self.summary())

    def _jack_tick(self) -> None:
        """On JACK: follow buffer-size changes in /status, and report the graph's
        latency (the slowest path to an output node) on the ports."""
        jack = getattr(self.running, "jack", None)
        if jack is None:
            return
        errors = jack_rt_errors()
        if errors != self._jack_rt_errors:  # said here, not printed on JACK's thread
            log.warning("JACK reported %d error(s) on its process thread (%d in all)",
                        errors - self._jack_rt_errors, errors)
            self._jack_rt_errors = errors
        if jack.lost:
            return
        if self.dispatcher.info.get("block") != jack.period and jack.period:
            self.devices.config.block = jack.period
            self.dispatcher.info["block"] = jack.period
            log.info("audio: JACK buffer size is now %d frames", jack.period)
            if self.engine.block != self.engine.set_block(jack.period):
                self.session._dirty = True  # a plan whose buffers fit the new period
        plans = self.session.plans_built
        if plans != self._latency_plans:
            self._latency_plans = plans
            lat = self.session.latencies()
            outs = [lat.get(n, 0) for n, g in self.session.graph.nodes.items()
                    if g.type.name == "output"]
            jack.set_latency(max(outs, default=0))

    def _op_counts(self) -> dict[str, int]:
        st = self.engine.stats()
        c = self.counters
        return {"xruns": st.xruns, "late": st.late + c.late, "rate_limited": c.rate_limited,
                "denied": c.denied}

    def _budget_us(self) -> float:
        cfg = self.devices.config
        return cfg.block / cfg.sample_rate * 1e6 if cfg.sample_rate else 0.0

    def _oplog_extra(self, kind: str) -> str:
        if kind != "xruns":
            return ""
        return (f"worst block of the last 10 s {self.engine.recent.us:.0f} µs of "
                f"{self._budget_us():.0f}")

    def startup_line(self) -> str:
        """What the log says once the daemon runs: backend, device, rate, block,
        ports and the state restored (a rack box has no banner to read)."""
        cfg = self.devices.config
        host, port = self.server.address[:2]
        tcp, http = self.server.tcp_address, self.server.http_address
        ports = f"osc udp {host}:{port}" + (f", tcp {tcp[1]}" if tcp else "") + (
            f", http {http[1]}" if http else "")
        return (f"start: mixgraph {__version__}, backend {self.devices.backend_text()}, "
                f"device {cfg.device_name}, {cfg.sample_rate:g} Hz, {cfg.block} frames "
                f"({self._budget_us():.0f} µs), {cfg.hw_in} in / {cfg.hw_out} out, {ports}, "
                f"state {self.state_dir} ({self.restored})")

    def summary(self) -> str:
        """One line for systemd's STATUS= and `mixgraph health`."""
        st = self.engine.stats()
        cfg = self.devices.config
        return (f"{self.devices.backend_text()} {cfg.sample_rate:g} Hz/{cfg.block}, "
                f"load {st.load * 100:.1f}%, "
                f"xruns {st.xruns}, clients {self.counters.active_clients()}, "
                f"nodes {len(self.session.graph.nodes)}")

    def _save(self) -> None:
        seq = self.journal.rotate() if self.journal is not None else 0
        doc = self.session.to_doc()
        doc["journal_seq"] = seq
        doc["scheduled"] = self.session.pending.snapshot()
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
            host = lan_address()
        from .web import token_url

        return token_url(f"http://{'[' + host + ']' if ':' in host else host}:{port}/",
                         self.server.http_token)

    def status_line(self) -> str:
        st = self.engine.stats()
        return (f"DSP {st.load * 100:5.1f}%  worst {self.engine.recent.us:4.0f} µs of "
                f"{self._budget_us():.0f}  xruns {st.xruns}  "
                f"clients {self.counters.active_clients()}  nodes {len(self.session.graph.nodes)}"
                f"  msgs {self.counters.messages}  fails {self.counters.failed}"
                f"  garbage {self.counters.garbage}")

    def start(self) -> None:
        self.disk.start()
        self.devices.start()
        # MIDI from the backend's ports or where the user named (server/midi.py)
        self.dispatcher.midi.configure(self.opts.midi_api, self.opts.jack_server,
                                       self.opts.jack_name)
        if self._resched:  # timed sets restored, at their wall-clock times (before the
            # control thread, which owns the session from then on)
            s, e = self.session, self.engine
            later, _ = reschedule(self._resched, lambda n, p, v, t: s.set_param(n, p, v, t),
                                  e.sample_rate, e.time, time.time())
            log.info("state: %d scheduled sets restored for later", later)
            self._resched = []
        frozen = heap.settle()  # start-up's objects out of the collector's way
        log.debug("gc: %d objects frozen after start-up", frozen)
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
        if self.opts.status and self.console.is_terminal:
            with Live(self.status_line(), console=self.console, refresh_per_second=4,
                      transient=True) as live:
                while not self._stop.wait(0.25):
                    live.update(self.status_line())
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
        self.devices.stop()
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
        self.notifier.close()
        self.lock.release()


def _catch_signals() -> threading.Event:
    """An event that SIGINT/SIGTERM/SIGHUP set from now on: an orderly stop.

    Installed before the daemon loads its state and starts, so a signal at
    any point of the startup (systemd's stop, a Ctrl-C just after 'ready')
    still saves and closes instead of raising KeyboardInterrupt through it."""
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # a hangup (the terminal or ssh session of a foreground `mixgraph serve` closed)
    # killed the process with no final save, no log line and the lock left behind
    # (attack6): it stops as SIGTERM does
    signal.signal(signal.SIGHUP, on_signal)
    return stop


def serve(opts: ServeOptions) -> int:
    """Run the daemon until a signal; the exit code for the CLI."""
    console = Console()
    stop = _catch_signals()
    try:
        d = Daemon(opts, console, stop)
    except MixgraphError as e:
        console.print(f"[bold red]mixgraph: {escape(str(e))}[/]")
        return 2
    console.print(d.banner())
    try:
        d.start()
        _announce(d, opts)
        d.wait()
    finally:
        console.print("mixgraph: shutting down")
        d.stop()
        console.print(d.final_status)
    sys.stdout.flush()
    if d.devices.stuck:
        # PortAudio still holds the lost stream: its exit handler (Pa_Terminate)
        # would wait for it forever. Everything of ours is saved and closed.
        sys.stderr.flush()
        os._exit(0)
    return 0


def _pin_note(jack) -> str:
    """--jack-cpu's outcome for the JACK line: pinned, refused, or nothing (off)."""
    if jack.cpu is None:
        return ""
    end = time.monotonic() + 1.0  # the thread pins itself before its first period
    while jack.pinned == 0 and time.monotonic() < end:
        time.sleep(0.01)
    if jack.pinned > 0:
        return f", pinned to CPU {jack.cpu} (the other threads off it)"
    if jack.pinned < 0:
        return f", NOT pinned to CPU {jack.cpu}: {os.strerror(-jack.pinned)}"
    return f", not pinned to CPU {jack.cpu} yet (no period has run)"


def _announce(d: Daemon, opts: ServeOptions) -> None:
    """The startup lines after start(): JACK, MIDI, the browser URL, 'ready'."""
    console = d.console
    jack = getattr(d.running, "jack", None)
    if jack is not None:
        console.print(f"mixgraph: JACK client {jack.name}, {jack.n_in} in / {jack.n_out} out, "
                      f"{jack.period}-frame periods, "
                      + ("real-time (JACK's SCHED_FIFO thread)" if jack.realtime else
                         "not real-time (the server runs without -R)") + _pin_note(jack))
    print(f"mixgraph: MIDI: {d.dispatcher.midi.why}", flush=True)
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
    log.info("%s", d.startup_line())
    d.oplog.baseline(d._op_counts())
    d.notifier.notify("READY=1", "STATUS=" + d.summary())
    if os.environ.get("MIXGRAPH_TEST_SIGNAL_AFTER_READY"):  # tests/test_daemon.py
        os.kill(os.getpid(), signal.SIGINT)
