"""The box that runs unattended: a systemd unit for `mixgraph serve`, the
sd_notify protocol (ready, status, watchdog, stopping) and the lock that keeps
one server per state directory.

`mixgraph service install|uninstall|status` writes and removes the unit;
the daemon (server/daemon.py) holds a `StateLock` for its whole life and
talks to systemd through a `Notifier`: READY=1 once its state is restored and
audio runs, STATUS= with its one-line summary, WATCHDOG=1 from the control
loop only while the engine's sample clock advances (so a hung audio path or a
stuck control thread gets the service restarted), STOPPING=1 on shutdown.
No dependency: sd_notify is one datagram on the socket systemd names in
NOTIFY_SOCKET."""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from .errors import MixgraphError

UNIT_NAME = "mixgraph.service"


# ---- one server per state directory -----------------------------------------------------
class StateLock:
    """An advisory lock (flock) on `<state dir>/serve.lock`, holding our PID.

    The kernel drops the lock when the process dies, however it dies (SIGKILL
    included), so a stale file never blocks a restart."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "serve.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise MixgraphError naming the PID that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:  # a read-only disk, no room: one line, not a traceback
            raise MixgraphError(
                f"cannot use {self.path.parent} as the state directory (--state-dir): "
                f"{e.strerror or e} (the server keeps its lock, journal and autosave "
                "there, so it must be writable)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise MixgraphError(
                f"another mixgraph server (pid {holder}) is using the state directory "
                f"{self.path.parent}; stop it, or give this one its own --state-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ---- sd_notify -------------------------------------------------------------------------
class Notifier:
    """sd_notify(3) over the datagram socket in NOTIFY_SOCKET (a no-op without it)."""

    def __init__(self, env: dict | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.sock: socket.socket | None = None
        self.addr: str | bytes = ""
        if addr and addr[0] in "/@":
            self.addr = "\0" + addr[1:] if addr[0] == "@" else addr  # '@': abstract namespace
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.watchdog_s = 0.0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines; False (never an exception) if it could not go."""
        if self.sock is None:
            return False
        try:
            self.sock.sendto("\n".join(fields).encode(), self.addr)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Watchdog:
    """Decides when the control loop may tell systemd it is alive: only when
    the engine's sample clock has moved since the last time, so a stalled
    audio thread stops the pings as surely as a stuck control loop does."""

    def __init__(self, notifier: Notifier, clock, every_s: float = 1.0) -> None:
        self.notifier = notifier
        self.clock = clock  # () -> the engine's sample time
        self.every_s = every_s
        self._last_time = -1
        self._last_ping = 0.0

    def tick(self, now: float) -> bool:
        """Called from the control loop; True when a WATCHDOG=1 went out."""
        if not self.notifier.enabled or now - self._last_ping < self.every_s:
            return False
        t = self.clock()
        if t == self._last_time:
            return False  # the audio clock is stuck: say nothing, let systemd act
        self._last_time = t
        self._last_ping = now
        return self.notifier.notify("WATCHDOG=1")


# ---- the unit ---------------------------------------------------------------------------
def unit_text(serve_args: list[str], user: bool = False, exe: str | None = None) -> str:
    """The systemd unit that runs `mixgraph serve <serve_args>` as a notify service."""
    cmd = [exe or _mixgraph_exe(), "serve", "--no-status", *serve_args]
    jack = _wants_jack(serve_args)
    after = ["sound.target", "network.target"] + (["jack.service"] if jack else [])
    lines = [
        "[Unit]",
        "Description=mixgraph audio-graph server",
        f"After={' '.join(after)}",
        *(["Wants=jack.service"] if jack else []),
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={' '.join(shlex.quote(c) for c in cmd)}",
        "Restart=always",
        "RestartSec=1",
        "WatchdogSec=5",
        "KillSignal=SIGINT",
        "TimeoutStopSec=10",
        "LimitRTPRIO=95",
        "LimitMEMLOCK=infinity",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def _wants_jack(serve_args: list[str]) -> bool:
    for i, a in enumerate(serve_args):
        if a == "--backend" and i + 1 < len(serve_args) and serve_args[i + 1] == "jack":
            return True
        if a == "--backend=jack":
            return True
    return False


def _mixgraph_exe() -> str:
    """The mixgraph command as an absolute path (a unit cannot rely on PATH)."""
    here = Path(sys.argv[0])
    if here.name == "mixgraph" and here.exists():
        return str(here.resolve())
    found = shutil.which("mixgraph")
    if found:
        return str(Path(found).resolve())
    exe = Path(sys.executable).parent / "mixgraph"
    return str(exe)


def unit_path(user: bool) -> Path:
    if user:
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "systemd" / "user" / UNIT_NAME
    return Path("/etc/systemd/system") / UNIT_NAME


def install(serve_args: list[str], user: bool = False, path: Path | None = None) -> Path:
    """Write the unit; prints what it wrote and how to enable it."""
    p = path or unit_path(user)
    text = unit_text(serve_args, user)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    ctl = "systemctl --user" if user else "systemctl"
    print(f"wrote {p}:\n\n{text}")
    print("enable and start it with:")
    print(f"    {ctl} daemon-reload")
    print(f"    {ctl} enable --now {UNIT_NAME}")
    if user:
        print("(and `loginctl enable-linger $USER` so it starts at boot without a login)")
    return p


def uninstall(user: bool = False, path: Path | None = None) -> bool:
    """Remove the unit file (after `systemctl disable --now`); False if there was none."""
    p = path or unit_path(user)
    if not p.exists():
        print(f"no unit at {p}")
        return False
    p.unlink()
    ctl = "systemctl --user" if user else "systemctl"
    print(f"removed {p}; run `{ctl} daemon-reload` (and `{ctl} disable --now {UNIT_NAME}` "
          "first if it was running)")
    return True


def status(user: bool = False) -> int:
    """`systemctl status` of the unit; its exit code."""
    p = unit_path(user)
    if not p.exists():
        print(f"not installed ({p} does not exist): `mixgraph service install` writes it")
        return 3
    cmd = ["systemctl", *(["--user"] if user else []), "status", "--no-pager", UNIT_NAME]
    if shutil.which("systemctl") is None:
        print(f"installed at {p}; systemctl is not available here")
        return 0
    return subprocess.run(cmd, check=False).returncode
