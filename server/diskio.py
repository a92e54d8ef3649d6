"""Disk streaming for the player and recorder nodes.

A worker thread (or, offline, the render loop itself) keeps every player's
fifo filled from its file and drains every recorder's fifo to its file, so
the audio thread never touches the disk. Recorders flush and rewrite the
file header every `flush_s`, so a file is valid up to its last flush even if
the process is killed."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ._core import lib
from .engine import Fifo
from .errors import MixgraphError

log = logging.getLogger("mixgraph.disk")

FIFO_SECONDS = 2.0
# per server: recorder channels in all (each holds a FIFO_SECONDS float32 FIFO: 384 kB
# at 48 kHz), and the free space a recorder's disk must have when it is created
DEFAULT_MAX_RECORDER_CHANNELS = 128
DEFAULT_MIN_FREE_MB = 512
CHUNK_FRAMES = 4096
SFC_UPDATE_HEADER_NOW = 0x1060  # libsndfile's sf_command code


class PlayerStream:
    """A file being read into a player node's fifo."""

    def __init__(self, path: Path, channels: int | None, sample_rate: float) -> None:
        try:
            self.file = sf.SoundFile(str(path))
        except (RuntimeError, sf.LibsndfileError) as e:
            raise MixgraphError(f"cannot open {path.name}: {e}") from None
        if self.file.samplerate != int(sample_rate):
            self.file.close()
            raise MixgraphError(
                f"{path.name} is {self.file.samplerate} Hz; the engine runs at "
                f"{int(sample_rate)} Hz (resample it first)"
            )
        self.file_channels = self.file.channels
        self.channels = channels or self.file_channels
        if self.file_channels not in (1, self.channels):
            self.file.close()
            raise MixgraphError(
                f"{path.name} has {self.file_channels} channels; the player has {self.channels}"
            )
        self.fifo = Fifo(self.channels, int(sample_rate * FIFO_SECONDS))
        lib.mg_fifo_set_length(self.fifo.ptr, max(self.file.frames, 0))
        self.ack = 0
        self.eof = False
        self.path = path

    def pump(self) -> None:
        f = self.fifo.ptr
        req = lib.mg_fifo_rewind_request(f)
        if req != self.ack:
            self.file.seek(0)
            self.eof = False
            lib.mg_fifo_set_status(f, 0)
            lib.mg_fifo_rewind_ack(f, req)
            self.ack = req
        loop = bool(lib.mg_fifo_flags(f) & lib.MG_FIFO_FLAG_LOOP)
        if self.eof and loop:
            self.file.seek(0)
            self.eof = False
            lib.mg_fifo_set_status(f, 0)
        while not self.eof:
            room = self.fifo.writable
            if room < 256:
                return
            data = self.file.read(min(room, CHUNK_FRAMES), dtype="float32", always_2d=True)
            if len(data) == 0:
                if loop and self.file.frames > 0:
                    self.file.seek(0)
                    continue
                self.eof = True
                lib.mg_fifo_set_status(f, lib.MG_FIFO_STATUS_EOF)
                return
            if data.shape[1] != self.channels:
                data = np.repeat(data, self.channels, axis=1)
            self.fifo.write(data)

    def close(self) -> None:
        self.file.close()
        self.fifo.free()


class MissingStream:
    """Stands in for a player's file that is missing or unreadable at restore: an
    empty fifo marked at end of file, so the node is there, connected, and silent."""

    def __init__(self, path: str, channels: int, sample_rate: float) -> None:
        self.path = path
        self.channels = channels
        self.fifo = Fifo(channels, 1024)
        lib.mg_fifo_set_status(self.fifo.ptr, lib.MG_FIFO_STATUS_EOF)

    def pump(self) -> None:
        """Nothing to read."""

    def close(self) -> None:
        self.fifo.free()


class RecorderStream:
    """A file being written from a recorder node's fifo."""

    def __init__(self, path: Path, channels: int, sample_rate: float,
                 fmt: str | None, flush_s: float) -> None:
        fmt = (fmt or path.suffix.lstrip(".") or "wav").upper()
        if fmt not in ("WAV", "FLAC"):
            raise MixgraphError(f"recorder format {fmt.lower()!r}: use wav or flac")
        subtype = "FLOAT" if fmt == "WAV" else "PCM_24"
        try:
            self.file = sf.SoundFile(str(path), "w", int(sample_rate), channels, subtype,
                                     format=fmt)
        except (RuntimeError, sf.LibsndfileError) as e:
            raise MixgraphError(f"cannot create {path.name}: {e}") from None
        self.channels = channels
        self.fifo = Fifo(channels, int(sample_rate * FIFO_SECONDS))
        self.flush_s = flush_s
        self.last_flush = time.monotonic()
        self.unflushed = 0
        self.path = path

    def pump(self, force_flush: bool = False) -> None:
        while True:
            data = self.fifo.read(CHUNK_FRAMES)
            if len(data) == 0:
                break
            self.file.write(data)
            self.unflushed += len(data)
        now = time.monotonic()
        if self.unflushed and (force_flush or now - self.last_flush >= self.flush_s):
            self.flush()
            self.last_flush = now

    def flush(self) -> None:
        """Make the file valid as it stands: header rewritten, data on disk."""
        sf._snd.sf_command(self.file._file, SFC_UPDATE_HEADER_NOW, sf._ffi.NULL, 0)
        self.file.flush()
        self.unflushed = 0

    def close(self) -> None:
        self.pump(force_flush=True)
        self.file.close()
        self.fifo.free()


def keep_take(path: Path, name: str) -> Path | None:
    """Before a restored recorder opens its file again (which starts it afresh), move a
    recording already there aside as `<stem>.take-<n><suffix>`, so a restart never
    erases a take; returns where it went (None: nothing to keep)."""
    try:
        if path.stat().st_size == 0:
            return None
    except OSError:
        return None
    n = 1
    while (kept := path.with_name(f"{path.stem}.take-{n}{path.suffix}")).exists():
        n += 1
    path.rename(kept)
    log.warning("recorder %s: the recording already in %s is kept as %s", name, path.name,
                kept.name)
    return kept


class DiskIO:
    """Every open stream; pump() does one pass, start() runs it on a thread."""

    def __init__(self, sample_rate: float, period_s: float = 0.01, flush_s: float = 0.5,
                 max_recorder_channels: int = DEFAULT_MAX_RECORDER_CHANNELS,
                 min_free_bytes: int = DEFAULT_MIN_FREE_MB << 20, enforce: bool = True) -> None:
        self.sample_rate = sample_rate
        self.max_recorder_channels = max_recorder_channels
        self.min_free_bytes = min_free_bytes
        self.enforce = enforce  # False while a restart restores what was running
        self.period_s = period_s
        self.flush_s = flush_s
        self._streams: list[PlayerStream | RecorderStream] = []
        self._lock = threading.Lock()  # control thread vs worker; never the audio thread
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.errors = 0

    def open_player(self, path: Path, channels: int | None) -> PlayerStream:
        s = PlayerStream(path, channels, self.sample_rate)
        s.pump()
        with self._lock:
            self._streams.append(s)
        return s

    def recorder_channels(self) -> int:
        """Channels of the recorders open now (what the quota counts)."""
        return sum(s.channels for s in self._streams if isinstance(s, RecorderStream))
    def open_for(self, t, options: dict, channels: int | None, resolve,
                 missing: dict | None = None, name: str = ""):
        """The stream of a new player or recorder node of type t (its `path` option
        resolved by resolve(path, write)). With a `missing` map (a restore), a
        player whose file cannot be opened gets a silent stand-in and missing[name]
        says why."""
        if t.name != "player":
            path = resolve(options["path"], True)
            if missing is not None:  # a restore: what the recorder recorded before is kept
                keep_take(path, name)
            return self.open_recorder(path, channels or t.default_channels,
                                      options.get("format"))
        try:
            return self.open_player(resolve(options["path"], False), channels)
        except MixgraphError as e:
            if missing is None:
                raise
            missing[name] = str(e)
            log.warning("player %s restored silent: %s", name, e)
            return self.open_missing(options["path"], channels or t.default_channels)

    def open_missing(self, path: str, channels: int) -> MissingStream:
        """A silent stand-in for a player whose file cannot be opened (restore only)."""
        return MissingStream(path, channels, self.sample_rate)

    def open_recorder(self, path: Path, channels: int, fmt: str | None) -> RecorderStream:
        """A new recorder stream, unless it would pass the server's recorder channel
        quota or its disk has less than min_free_bytes free (MixgraphError)."""
        if self.enforce:
            self._check_quota(path, channels)
        s = RecorderStream(path, channels, self.sample_rate, fmt, self.flush_s)
        with self._lock:
            self._streams.append(s)
        return s

    def start_quota(self, data_dir: Path) -> None:
        """Check new recorders from now on; say so if what was restored is already over
        the quota or the disk is nearly full (restored recorders are kept)."""
        self.enforce = True
        if not self.recorder_channels():
            return
        try:
            self._check_quota(data_dir / "x", 0)
        except MixgraphError as e:
            log.warning("restored recorders: %s", e)

    def _check_quota(self, path: Path, channels: int) -> None:
        used = self.recorder_channels()
        if used + channels > self.max_recorder_channels:
            raise MixgraphError(
                f"recorder quota: {used} of {self.max_recorder_channels} recorder channels "
                f"in use, {channels} more would pass it (serve --max-recorder-channels)")
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError as e:
            raise MixgraphError(f"cannot check the free space for recordings: "
                                f"{e.strerror}") from None
        if free < self.min_free_bytes:
            raise MixgraphError(
                f"the disk for recordings is nearly full: {free >> 20} MB free, a recorder "
                f"needs {self.min_free_bytes >> 20} MB (serve --min-free-mb)")

    def close(self, stream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
            stream.close()

    def close_all(self) -> None:
        for s in list(self._streams):
            self.close(s)

    def pump(self) -> None:
        with self._lock:
            for s in self._streams:
                try:
                    s.pump()
                except Exception:  # a disk error must not stop the other streams
                    self.errors += 1
                    log.exception("disk stream %s failed", s.path)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mixgraph-disk", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.pump()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
