"""Patch documents on disk: msgpack (native) and JSON (for people and VCS),
atomic writes, and the autosave writer thread."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgpack

from .errors import MixgraphError, shown

log = logging.getLogger("mixgraph.state")

PATCH_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # matched whole
AUTOSAVE = "autosave.mgp"
AUDIO_DIR = "audio"  # <state>/audio: the data directory of players and recorders
PATCHES_DIR = "patches"  # <state>/patches: named patches
RETRY_S = 1.0  # a failed autosave is tried again this often until it succeeds


def encode(doc: dict, path: Path, memo: dict | None = None) -> bytes:
    """Serialise doc for path's format: .json gives indented JSON, anything else msgpack.
    memo: kept between calls by a caller that encodes the same show again and again
    (the autosave): see pack_doc."""
    if path.suffix.lower() == ".json":
        return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
    if memo is not None:
        return pack_doc(doc, memo)
    return msgpack.packb(doc, use_bin_type=True)


def pack_doc(doc: dict, memo: dict) -> bytes:
    """msgpack of a patch document, the same bytes as msgpack.packb, with each stored
    scene's `values` map encoded once and kept in memo (by the map's identity: a
    stored scene's values are never changed, server/scenes.py) for the next call. A
    show of 100 whole-console scenes is 14 MB of values; the autosave re-encoded all
    of it on the control thread up to 4 times a second while one fader moved (80-210
    ms each), and every other client waited. Only the scenes of this doc stay in
    memo."""
    show = doc.get("show")
    scenes = show.get("scenes") if isinstance(show, dict) else None
    if not isinstance(scenes, dict) or not scenes:
        memo.clear()
        return msgpack.packb(doc, use_bin_type=True)
    pk = msgpack.Packer(use_bin_type=True)
    kept: dict[int, tuple[dict, bytes]] = {}
    out: list[bytes] = []  # joined once at the end (a scene's bytes are not copied twice)

    def scene(sc) -> None:
        vals = sc.get("values") if isinstance(sc, dict) else None
        if not isinstance(vals, dict):
            out.append(pk.pack(sc))
            return
        hit = memo.get(id(vals))
        if hit is None or hit[0] is not vals:
            hit = (vals, pk.pack(vals))
        kept[id(vals)] = hit
        out.append(pk.pack_map_header(len(sc)))
        for k, v in sc.items():
            out.append(pk.pack(k))
            out.append(hit[1] if v is vals else pk.pack(v))

    out.append(pk.pack_map_header(len(doc)))
    for k, v in doc.items():
        out.append(pk.pack(k))
        if v is not show:
            out.append(pk.pack(v))
            continue
        out.append(pk.pack_map_header(len(show)))
        for sk, sv in show.items():
            out.append(pk.pack(sk))
            if sv is not scenes:
                out.append(pk.pack(sv))
                continue
            out.append(pk.pack_map_header(len(scenes)))
            for name, sc in scenes.items():
                out.append(pk.pack(name))
                scene(sc)
    memo.clear()
    memo.update(kept)
    return b"".join(out)


MAX_DEPTH = 16  # a patch document is 5 deep (doc, nodes, node, options, value)
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1  # what msgpack can hold


def check_plain(value, what: str, depth: int = 0, where: str = "") -> None:
    """Check that decoded data is plain patch data: maps with string keys, lists,
    strings, numbers msgpack can hold, booleans and nil, at most MAX_DEPTH deep.
    The error names where the bad value is (`nodes[1].options.format`)."""
    at = f"{what}: {where}" if where else what
    if depth > MAX_DEPTH:
        raise MixgraphError(f"{at}: nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, bool | float | str | bytes):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise MixgraphError(f"{at}: integer {value} is out of range")
        return
    # a scalar element is checked here, its path built only for an error: a call and
    # an f-string an element made a patch with a 2M-number state spend 21 s of the
    # control thread in this check alone before it was refused (attack10)
    inline = depth + 1 <= MAX_DEPTH
    if isinstance(value, list):
        for i, x in enumerate(value):
            t = type(x)
            if inline and (t is float or t is str or t is bool or x is None or t is bytes
                           or (t is int and _INT_MIN <= x <= _INT_MAX)):
                continue
            check_plain(x, what, depth + 1, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, x in value.items():
            if type(k) is not str:
                raise MixgraphError(f"{at}: a map key is a {type(k).__name__}, not a string")
            t = type(x)
            if inline and (t is float or t is str or t is bool or x is None or t is bytes
                           or (t is int and _INT_MIN <= x <= _INT_MAX)):
                continue
            check_plain(x, what, depth + 1, f"{where}.{k}" if where else k)
        return
    raise MixgraphError(f"{at}: unexpected {type(value).__name__} value")


def decode(data: bytes, what: str = "patch") -> dict:
    """Parse a patch from msgpack or JSON bytes (detected from the content), with a
    depth limit and strict types: whatever the bytes, the answer is a plain dict or
    a MixgraphError, never another exception."""
    stripped = data.lstrip()
    try:
        if stripped[:1] == b"{":
            # json's C parser counts its own recursion (RecursionError past ~1000
            # levels, caught below) and runs in linear time; a pre-scan with a regex
            # over strings was quadratic on a cut-off string with escaped quotes (a
            # 40 kB file stalled the control thread 42 s). check_plain bounds the rest.
            doc = json.loads(data.decode())
        else:
            # a list used as a map key is refused by the unpacker (strict_map_key)
            doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except RecursionError:
        raise MixgraphError(f"{what}: nested deeper than {MAX_DEPTH}") from None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, UnicodeDecodeError) as e:
        raise MixgraphError(f"{what} is not valid msgpack or JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MixgraphError(f"{what} is not a patch document")
    check_plain(doc, what)
    return doc


CHECKSUM = "checksum"  # the autosave's own crc32, the last key of its map (seal/unseal)


def seal(data: bytes) -> bytes:
    """A msgpack map document with one more key at its end, `checksum`: the crc32 of
    `data` (the map without it), so unseal() can tell a damaged snapshot: a byte flipped
    in a value's payload decoded as another value without a word (attack4). Readers
    that do not know the key ignore it (as they do journal_seq)."""
    b = data[:1]
    if b and 0x80 <= b[0] <= 0x8E:
        n, head = b[0] & 0x0F, 1
    elif b == b"\xde" and len(data) >= 3:
        n, head = int.from_bytes(data[1:3], "big"), 3
    else:
        return data  # not a map of fewer than 65,535 keys: left as it is
    pk = msgpack.Packer(use_bin_type=True)
    return b"".join((pk.pack_map_header(n + 1), data[head:], pk.pack(CHECKSUM),
                     pk.pack(zlib.crc32(data))))


def unseal(doc: dict, what: str) -> None:
    """Check and remove a sealed document's checksum (MixgraphError when it does not
    match: the file was damaged or changed by hand); a document without one passes."""
    if CHECKSUM not in doc:
        return
    want = doc.pop(CHECKSUM)
    if type(want) is not int or zlib.crc32(msgpack.packb(doc, use_bin_type=True)) != want:
        raise MixgraphError(f"{what}: checksum mismatch (the file is damaged, or was "
                            f"edited: remove its `{CHECKSUM}` key to load it anyway)")


MAX_DOC_BYTES = 512 << 20  # a patch document (an autosave of 100 whole-console scenes: 14 MB)


def read_bounded(path: str | Path, limit: int, what: str) -> bytes:
    """A file's bytes, refused (MixgraphError) past `limit`: `mixgraph render --score
    /dev/zero` (or a patch named so) read until memory ran out (attack4). A pipe or
    process substitution still works: only the size is bounded."""
    p = Path(path)
    chunks: list[bytes] = []
    n = 0
    try:
        with open(p, "rb") as f:
            st = os.fstat(f.fileno())
            regular = stat.S_ISREG(st.st_mode)
            if regular and st.st_size > limit:
                raise MixgraphError(f"{what} {p.name} is larger than {limit >> 20} MB")
            # never read(limit + 1): Python allocates that much at once, and under
            # mlockall(MCL_FUTURE) the kernel populated and locked all of it: every
            # /patch/load, however small the patch, held the control thread 0.5-0.9 s
            # clearing 512 MB of pages (attack8). A regular file in one read of its
            # size (and one more to see its end), a pipe a MB at a time
            step = st.st_size + 1 if regular else 1 << 20
            while n <= limit:
                want = min(step, limit + 1 - n)
                b = f.read(want)
                chunks.append(b)
                n += len(b)
                if not b or (regular and len(b) < want):  # the end (a file's is short)
                    break
                step = 1 << 20
    except OSError as e:
        raise MixgraphError(f"cannot read {what} {p}: {e.strerror}") from None
    if n > limit:
        raise MixgraphError(f"{what} {p.name} is larger than {limit >> 20} MB")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_patch(path: str | Path) -> dict:
    p = Path(path)
    return decode(read_bounded(p, MAX_DOC_BYTES, "patch"), p.name)


def generation(path: Path, i: int) -> Path:
    """The i-th older copy of a file kept by write_atomic(keep=...): autosave.1.mgp."""
    return path if i == 0 else path.with_name(f"{path.stem}.{i}{path.suffix}")


def write_atomic(path: str | Path, data: bytes, keep: int = 1) -> None:
    """Write-and-rename with fsync: a crash leaves the old file or the new, never half.
    With keep > 1 the previous versions stay as path.1, path.2, ... (newest first)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for i in range(keep - 1, 0, -1):  # at every step the newest good copy is the
            older = generation(p, i - 1)  # lowest-numbered one that exists
            if older.exists():
                os.replace(older, generation(p, i))
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


# what write_atomic's mkstemp names a file being written: `.autosave.mgp.k2j4x9_a`
_PARTIAL_RE = re.compile(r"\.(.+\.(?:mgp|json))\.[a-z0-9_]{8}")


def remove_partial_writes(folder: Path) -> tuple[int, int]:
    """Delete the files write_atomic was writing in folder when its process died (a
    SIGKILL or a power cut during an autosave leaves `.autosave.mgp.xxxxxxxx`, a whole
    snapshot's size, that nothing reads or removes: a crash loop filled the disk,
    attack5 A3). Only a server holding the state directory's lock writes them, so at
    start-up none is in use. Returns (files, bytes) removed."""
    n = size = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0, 0
    for e in entries:
        if not _PARTIAL_RE.fullmatch(e.name) or not e.is_file(follow_symlinks=False):
            continue
        try:
            b = e.stat(follow_symlinks=False).st_size
            os.unlink(e.path)
        except OSError as err:
            log.warning("cannot remove the partial write %s (%s)", e.path, err.strerror)
            continue
        n, size = n + 1, size + b
    return n, size


def write_patch(doc: dict, path: str | Path) -> None:
    p = Path(path)
    write_atomic(p, encode(doc, p))


def check_room(where: Path, need: int, min_free: int, what: str) -> None:
    """Refuse (MixgraphError) a write of `need` bytes under `where` that would leave
    less than `min_free` bytes free on its disk: a script saving a patch under a new
    name in a loop wrote 37 GB an hour, and a full state disk stops the journal and the
    autosave (attack4). The journal and the autosave themselves are never refused."""
    if min_free <= 0:
        return
    probe = where
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError as e:
        raise MixgraphError(f"cannot check the free space for {what}: {e.strerror}") from None
    if free - need < min_free:
        raise MixgraphError(f"the state disk is nearly full: {free >> 20} MB free, {what} "
                            f"must leave {min_free >> 20} MB for the journal and the "
                            "autosave (serve --min-free-mb)")


class PatchStore:
    """Named patches under <state_dir>/patches; names from the network are confined.
    A save that would leave less than `min_free` bytes on the disk is refused."""

    def __init__(self, state_dir: str | Path, min_free: int = 0) -> None:
        self.root = Path(state_dir)
        self.patches = self.root / PATCHES_DIR
        self.min_free = min_free

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
        if self.min_free > 0:
            data = encode(doc, p)
            check_room(self.patches, len(data), self.min_free, "a saved patch")
            self.patches.mkdir(parents=True, exist_ok=True)
            write_atomic(p, data)
        else:
            write_patch(doc, p)
        return p

    def load(self, name: str) -> dict:
        return read_patch(self.path_for(name, must_exist=True))

    def names(self) -> list[str]:
        if not self.patches.is_dir():
            return []
        return sorted(p.stem for p in self.patches.iterdir() if p.suffix in (".mgp", ".json"))


class Autosaver:
    """Writes the latest snapshot on a worker thread, debounced; never blocks the caller.
    Keeps the last `keep` snapshots (autosave.mgp, autosave.1.mgp, ...); a save that
    fails is retried (every retry_s) until one succeeds or a newer one replaces it.
    on_saved(seq) is called with the journal sequence that every kept snapshot covers,
    once `keep` snapshots were written by this process (the journal compacts to it)."""

    def __init__(self, path: Path, min_interval_s: float = 0.2, keep: int = 3,
                 on_saved: Callable[[int], None] | None = None, retry_s: float = 1.0,
                 on_written: Callable[[int], None] | None = None) -> None:
        self.path = path
        self.on_written = on_written  # each snapshot written, with its seq (Journal)
        self.min_interval_s = min_interval_s
        self.keep = keep
        self.on_saved = on_saved
        self.retry_s = retry_s
        self._pending: tuple[bytes, int] | None = None
        self._cond = threading.Condition()
        self._stop = False
        self.saves = 0
        self.errors = 0
        self._seqs: deque[int] = deque(maxlen=keep)
        self._last_err_log = 0.0
        self._memo: dict = {}  # the stored scenes' encoded values (state.pack_doc)
        self._thread = threading.Thread(target=self._run, name="mixgraph-autosave", daemon=True)
        self._thread.start()

    def submit(self, doc: dict, seq: int = 0) -> None:
        """Queue doc (covering journal records up to seq) to be written."""
        data = encode(doc, self.path, self._memo)
        with self._cond:
            self._pending = (data, seq)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                item, self._pending = self._pending, None
                stop = self._stop
            wait = self.min_interval_s
            if item is not None:
                data, seq = item
                try:
                    write_atomic(self.path, seal(data), keep=self.keep)
                    self.saves += 1
                    if self.on_written is not None:
                        self.on_written(seq)
                    self._seqs.append(seq)
                    if self.on_saved is not None and len(self._seqs) == self.keep:
                        try:
                            self.on_saved(self._seqs[0])
                        except Exception:  # noqa: BLE001 - compaction waits for the next save
                            log.exception("journal compaction failed")
                except OSError as e:
                    self.errors += 1
                    now = time.monotonic()
                    if now - self._last_err_log > 10.0:
                        self._last_err_log = now
                        log.error("autosave to %s failed (%s); retrying every %g s",
                                  self.path, e.strerror or e, self.retry_s)
                    with self._cond:
                        if self._pending is None:
                            self._pending = item  # a newer snapshot supersedes it
                    if stop:
                        return
                    wait = self.retry_s
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
