"""Patch documents on disk: msgpack (native) and JSON (for people and VCS),
atomic writes, and the autosave writer thread."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

import msgpack

from .errors import MixgraphError, shown

log = logging.getLogger("mixgraph.state")

PATCH_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # matched whole
AUTOSAVE = "autosave.mgp"
RETRY_S = 1.0  # a failed autosave is tried again this often until it succeeds


def encode(doc: dict, path: Path) -> bytes:
    """Serialise doc for path's format: .json gives indented JSON, anything else msgpack."""
    if path.suffix.lower() == ".json":
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
    return msgpack.packb(doc, use_bin_type=True)


def decode(data: bytes, what: str = "patch") -> dict:
    """Parse a patch from msgpack or JSON bytes (detected from the content)."""
    stripped = data.lstrip()
    try:
        if stripped[:1] == b"{":
            doc = json.loads(data.decode())
        else:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError) as e:
        raise MixgraphError(f"{what} is not valid msgpack or JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MixgraphError(f"{what} is not a patch document")
    return doc


def read_patch(path: str | Path) -> dict:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise MixgraphError(f"cannot read {p}: {e.strerror}") from None
    return decode(data, p.name)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write-and-rename with fsync: a crash leaves the old file or the new, never half."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_patch(doc: dict, path: str | Path) -> None:
    p = Path(path)
    write_atomic(p, encode(doc, p))


class PatchStore:
    """Named patches under <state_dir>/patches; names from the network are confined."""

    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir)
        self.patches = self.root / "patches"

    def path_for(self, name: str, must_exist: bool = False) -> Path:
        if not isinstance(name, str) or not PATCH_NAME_RE.fullmatch(name) or ".." in name:
            raise MixgraphError(
                f"bad patch name {shown(name)}: use letters, digits, _ . - (no paths)"
            )
        base = self.patches / name
        if must_exist:
            for cand in (base, base.with_name(name + ".mgp"), base.with_name(name + ".json")):
                if cand.is_file():
                    return cand
            raise MixgraphError(f"no saved patch named {name!r}")
        if base.suffix.lower() in (".mgp", ".json"):
            return base
        return base.with_name(name + ".mgp")

    def save(self, name: str, doc: dict) -> Path:
        p = self.path_for(name)
        write_patch(doc, p)
        return p

    def load(self, name: str) -> dict:
        return read_patch(self.path_for(name, must_exist=True))

    def names(self) -> list[str]:
        if not self.patches.is_dir():
            return []
        return sorted(p.stem for p in self.patches.iterdir() if p.suffix in (".mgp", ".json"))


class Autosaver:
    """Writes the latest snapshot on a worker thread, debounced; never blocks the caller."""

    def __init__(self, path: Path, min_interval_s: float = 0.2) -> None:
        self.path = path
        self.min_interval_s = min_interval_s
        self._pending: bytes | None = None
        self._cond = threading.Condition()
        self._stop = False
        self.saves = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="mixgraph-autosave", daemon=True)
        self._thread.start()

    def submit(self, doc: dict) -> None:
        data = encode(doc, self.path)
        with self._cond:
            self._pending = data
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                data, self._pending = self._pending, None
                stop = self._stop
            wait = self.min_interval_s
            if data is not None:
                try:
                    write_atomic(self.path, data)
                    self.saves += 1
                    if self.errors:
                        log.warning("autosave to %s works again", self.path)
                    self.errors = 0
                except OSError as e:
                    self.errors += 1
                    if self.errors == 1 or self.errors % 60 == 0:
                        log.error("autosave to %s failed (%s); retrying every %g s",
                                  self.path, e.strerror or e, RETRY_S)
                    with self._cond:  # retry this snapshot unless a newer one came
                        if self._pending is None:
                            self._pending = data
                    wait = RETRY_S
            if stop:
                return
            with self._cond:
                self._cond.wait(wait)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()


def confine_path(data_dir: Path, path: str, write: bool = False, confine: bool = True) -> Path:
    """A file path from the network (a player's or recorder's file): with
    confine, a relative path that stays inside data_dir, else a clear error.
    For reading, the file must exist; for writing, its folder is made."""
    if not isinstance(path, str) or not path:
        raise MixgraphError("path: expected a file name")
    p = Path(path)
    if confine:
        root = data_dir.resolve()
        full = (root / p).resolve()
        if p.is_absolute() or (full != root and root not in full.parents):
            raise MixgraphError(f"path {path!r} is outside the data directory")
        p = full
    elif not p.is_absolute():
        p = (data_dir / p).resolve()
    if write:
        p.parent.mkdir(parents=True, exist_ok=True)
    elif not p.is_file():
        raise MixgraphError(f"no such file: {path!r}")
    return p
