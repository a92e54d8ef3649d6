"""The journal: every state change, on disk before its `/done` goes out.

State = snapshot + journal (docs/operations.md). The control thread notes
every state change (a node added or removed, a connection made or broken, a
parameter or bypass set, a whole document loaded) as an op in a list, and the
transports call flush() before any reply leaves: the ops noted since the last
flush become one record, and one os.write puts it in the kernel's page cache,
which survives the process being killed (SIGKILL, a crash). Against power
loss the file is fdatasync'ed at most every `fsync_ms` by a worker thread
(0: before the replies go out, at every flush).

A record is [u32 length][u32 crc32][msgpack [seq, [[op, *args], ...]]]; seq
counts up by one, so a torn or corrupt record (power loss in the middle of a
write) is detected and replay stops there; no reply of a record's ops left
before the record was written, so dropping a torn one loses nothing that was
acknowledged. Records live in segments
`journal.<first seq, 16 hex>.mgj`; each autosave rotates to a new segment and,
once the snapshot is on disk, deletes the segments every kept snapshot covers.

Sequence numbers stay at or below SEQ_MAX (2^53: a million records a second
would take 285 years to get there), well inside the 16 hex digits of a segment
name and what msgpack holds; a snapshot or record numbered beyond it is corrupt
(the daemon sets such a snapshot aside; replay ignores such records). An op is
encoded when it is noted, so a record is only assembled from bytes and cannot
fail; an op that cannot be encoded is not journaled and the edit's `/done`
becomes a `/fail` (Journal.guard).
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("mixgraph.state")

MAGIC = b"MGJ1"
HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
MAX_RECORD = 256 << 20
SEGMENT_RE = re.compile(r"^journal\.([0-9a-f]{16})\.mgj$")
SEQ_MAX = 1 << 53  # the highest sequence number a record or snapshot may carry
# records kept in memory while they cannot be written (a full disk), bytes: past this
# they are dropped and the journal waits for a snapshot that holds them (see flush)
MAX_UNWRITTEN = int(float(os.environ.get("MIXGRAPH_JOURNAL_MAX_UNWRITTEN_MB", "32")) * (1 << 20))
_ARRAY2 = b"\x92"  # msgpack: an array of 2 ([seq, ops])


def segment_path(state_dir: Path, first_seq: int) -> Path:
    """Where the segment whose first record is first_seq lives."""
    return state_dir / f"journal.{first_seq:016x}.mgj"


def segments(state_dir: Path) -> list[tuple[int, Path]]:
    """The journal segments in a state directory, oldest first: (first seq, path)."""
    out = []
    for p in state_dir.iterdir():
        m = SEGMENT_RE.match(p.name)
        if m:
            out.append((int(m.group(1), 16), p))
    return sorted(out)


def encode_record(seq: int, ops: list) -> bytes:
    """One framed record: length, checksum, msgpack [seq, ops]."""
    payload = msgpack.packb([seq, ops], use_bin_type=True)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_segment(path: Path) -> tuple[list[tuple[int, list]], str | None]:
    """The records of one segment in file order, and why reading stopped early
    (a torn or corrupt record: everything from there on is ignored), or None."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return [], f"cannot read {path.name}: {e.strerror}"
    if data[:4] != MAGIC:
        return [], f"{path.name} is not a journal segment" if data else None
    pos, out = 4, []
    while pos < len(data):
        if pos + HEADER.size > len(data):
            return out, f"{path.name}: torn record header at byte {pos}"
        n, crc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + n
        if n > MAX_RECORD or end > len(data):
            return out, f"{path.name}: torn record at byte {pos}"
        payload = data[pos + HEADER.size:end]
        if zlib.crc32(payload) != crc:
            return out, f"{path.name}: bad checksum at byte {pos}"
        try:
            rec = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except Exception as e:  # noqa: BLE001 - any decoding failure ends the segment
            return out, f"{path.name}: undecodable record at byte {pos} ({e})"
        if not (isinstance(rec, list) and len(rec) == 2 and type(rec[0]) is int
                and isinstance(rec[1], list)
                and all(isinstance(op, list) and op and isinstance(op[0], str)
                        for op in rec[1])):
            return out, f"{path.name}: malformed record at byte {pos}"
        out.append((rec[0], rec[1]))
        pos = end
    return out, None


def read_journal(state_dir: Path, after: int) -> tuple[list[list], int, list[str]]:
    """What replay needs: the ops of the records after seq `after`, in order
    (contiguous: replay stops at the first gap, a torn or a corrupt record), the
    highest seq any segment holds (new records are numbered after it), and notes
    on anything skipped."""
    todo: list[list] = []
    notes: list[str] = []
    top = after
    want = after + 1
    stopped = False
    for _, path in segments(state_dir):
        recs, why = read_segment(path)
        if why:
            notes.append(why)
        for seq, ops in recs:
            if seq > SEQ_MAX:
                if not stopped:
                    notes.append(f"{path.name}: record numbered {seq}, beyond what the "
                                 "journal numbers: it and the records after it were not "
                                 "replayed")
                stopped = True
                continue
            top = max(top, seq)
            if stopped or seq < want:
                continue
            if seq > want:
                notes.append(f"journal gap: record {want} is missing, records from {seq} on "
                             "were not replayed")
                stopped = True
                continue
            todo += ops
            want += 1
    return todo, top, notes


class Journal:
    """The append side (control thread) and its fdatasync worker."""

    def __init__(self, state_dir: Path, last_seq: int, fsync_ms: float = 100.0) -> None:
        if not 0 <= last_seq <= SEQ_MAX:
            raise ValueError(f"journal sequence {last_seq} is outside 0..{SEQ_MAX}")
        self.dir = Path(state_dir)
        self.seq = last_seq  # the last sequence number given out
        self.fsync_ms = float(fsync_ms)
        self.errors = 0
        self.writes = 0
        self.syncs = 0
        self._buf = bytearray()
        self._ops: list[bytes] = []  # the ops noted since the last record, encoded
        self._pack = msgpack.Packer(use_bin_type=True)
        self.lost: str | None = None  # why an op noted since guard() was not journaled
        # unwritten records past MAX_UNWRITTEN were dropped (a full disk for hours: the
        # buffer grew ~50 kB/s under a moving fader, without bound): the segment on disk
        # now misses records, so nothing is written (and no /done goes out) until a
        # snapshot taken after the drop (rotate: _cover, its seq) is on disk (_saved)
        self._hole = False
        self._cover: int | None = None
        self._saved = -1  # the seq of the newest snapshot written (autosave thread)
        self.dropped = 0  # bytes of unwritten records dropped so, all told
        self.unwritten: str | None = None  # why the last flush left bytes unwritten
        # parameter sets since the last other op, latest value per (node, param): a
        # flood of sets to a few faders is a few ops per record, not one per message
        self.sets: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # segments, fd and retired fds vs the worker
        # [first seq, path, last seq (None: the current segment)]; an older segment ends
        # where the next begins
        old = segments(self.dir)
        self._segments: list[list] = [[s, p, n - 1] for (s, p), (n, _)
                                       in zip(old, old[1:], strict=False)]
        if old:
            self._segments.append([old[-1][0], old[-1][1], None])
        self._retired: list[int] = []  # closed segments' fds, for the worker to sync+close
        self._unsynced = False
        self._last_err_log = 0.0
        # the current segment's descriptor; None while none could be opened (a full disk
        # at start-up: the server still starts, the records wait in memory, and the
        # segment is opened, numbered from _first, at the first flush that can)
        self._fd: int | None = None
        self._first = self.seq + 1
        try:
            self._fd = self._open(self._first)
        except OSError as e:
            self.errors += 1
            self._last_err_log = time.monotonic()
            log.error("journal: cannot start a segment in %s (%s); edits are kept in memory "
                      "and written once it can be", self.dir, e.strerror or e)
        self._stop = threading.Event()
        self._thread = None
        if self.fsync_ms > 0:
            self._thread = threading.Thread(target=self._run, name="mixgraph-journal",
                                            daemon=True)
            self._thread.start()

    # ---- control thread ---------------------------------------------------------
    def _open(self, first: int) -> int:
        path = segment_path(self.dir, first)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
                     0o644)
        try:
            if os.write(fd, MAGIC) != len(MAGIC):
                raise OSError(28, "No space left on device")
        except OSError:
            os.close(fd)
            raise
        with self._lock:
            self._segments = [s for s in self._segments if s[1] != path]
            if self._segments and self._segments[-1][2] is None:
                self._segments[-1][2] = first - 1
            self._segments.append([first, path, None])
        if self.fsync_ms <= 0:
            _fsync_dir(self.dir)
        return fd

    def add(self, op: tuple) -> None:
        """Note a state change (op, *args) for the next record, encoded now: one that
        cannot be (a value msgpack cannot hold, the sequence numbers used up) is left
        out, logged, and makes the edit's /done a /fail (guard)."""
        if self.sets:
            self._sets()
        if self.seq >= SEQ_MAX:
            why = "the journal's sequence numbers are used up"
        else:
            try:
                self._ops.append(self._pack.pack(op))
                return
            except (TypeError, ValueError, OverflowError) as e:
                self._pack = msgpack.Packer(use_bin_type=True)  # a failed pack may leave bytes
                why = f"{op[0]} {str(op[1:3])[:80]} cannot be journaled ({e})"
        log.error("journal: %s", why)
        self.lost = why

    def _sets(self) -> None:
        pack = self._pack.pack
        self._ops += [pack(("set", n, p, v)) for (n, p), v in self.sets.items()]
        self.sets.clear()

    def guard(self, reply: Callable[[str, list], None]) -> Callable[[str, list], None]:
        """The reply function for one command (the dispatcher wraps every command's
        reply with it): a `/done` for a command whose change could not be journaled
        goes out as `/fail <address> not journaled: ...` instead (no `/done` for a
        change a restart would lose)."""
        self.lost = None

        def checked(address: str, args: list) -> None:
            why = self.lost
            if why is not None and address == "/done":
                self.lost = None
                reply("/fail", [args[0] if args else "",
                                f"applied but not journaled (a restart loses it): {why}"])
            else:
                reply(address, args)
        return checked

    def set(self, node: str, param: str, value: float) -> None:
        """Note a parameter set (only the latest value per record counts). The flood
        path (Session.apply_param) writes `sets[(node, param)] = value` itself."""
        self.sets[(node, param)] = value

    def _record(self) -> None:
        """The ops noted since the last flush become the next record (bytes encoded
        when they were noted: nothing here can fail)."""
        if self.sets:
            self._sets()
        ops = self._ops
        self._ops = []
        pack = self._pack
        payload = b"".join((_ARRAY2, pack.pack(self.seq + 1), pack.pack_array_header(len(ops)),
                            *ops))
        self.seq += 1
        self._buf += HEADER.pack(len(payload), zlib.crc32(payload))
        self._buf += payload

    def flush(self) -> bool:
        """Hand what is noted to the kernel: called before any reply is sent (the
        replies of a batch wait for one write: a group commit). False when some of it
        could not be written (kept for the next flush; `unwritten` says why): then no
        reply may say /done (ControlServer.journal_first)."""
        if self._ops or self.sets:
            self._record()
        if self._hole:
            if self._cover is None or self._saved < self._cover:
                self._bound()
                self.unwritten = ("journal write failed (records were dropped); waiting for "
                                  "a snapshot to hold them")
                return False
            self._hole = False  # the snapshot holds everything up to _cover: go on
            self._cover = None  # in a new segment from _cover + 1 (rotate set _first)
            log.warning("journal: a snapshot holds the dropped records; journaling again")
        buf = self._buf
        if not buf:
            self.unwritten = None
            return True
        try:
            if self._fd is None:
                self._fd = self._open(self._first)
            while buf:
                n = os.write(self._fd, buf)
                del buf[:n]
            self.writes += 1
            if self.fsync_ms <= 0:
                os.fdatasync(self._fd)
                self.syncs += 1
            else:
                self._unsynced = True
            self.unwritten = None
            return True
        except OSError as e:
            # kept in the buffer and written at the next flush; the operator is told
            self.unwritten = f"journal write failed: {e.strerror}"
            self.errors += 1
            now = time.monotonic()
            if now - self._last_err_log > 5.0:
                self._last_err_log = now
                log.error("journal write failed (%s); %d bytes wait for the next attempt",
                          e.strerror, len(buf))
            self._bound()
            return False

    def _bound(self) -> None:
        """Unwritten records past MAX_UNWRITTEN are dropped: none was acknowledged (their
        replies said `not journaled`), and the next snapshot taken holds their effect."""
        if len(self._buf) <= MAX_UNWRITTEN:
            return
        self.dropped += len(self._buf)
        log.error("journal: %d MB of records could not be written (disk full?): dropped; "
                  "the next snapshot holds them, edits are journaled again once it is on "
                  "disk", len(self._buf) >> 20)
        self._buf.clear()
        self._hole = True
        self._cover = None  # a snapshot taken from now on (rotate)

    def snapshot_written(self, seq: int) -> None:
        """The autosave wrote a snapshot covering records up to seq (autosave thread)."""
        self._saved = max(self._saved, seq)

    def rotate(self) -> int:
        """Start a new segment (before a snapshot is taken); the seq the snapshot covers."""
        self.flush()
        if self._hole:
            # records were dropped: the snapshot about to be taken holds everything up
            # to seq, so what is unwritten up to there is not needed, and the records
            # after it go to a new segment (from seq + 1) once that snapshot is on disk
            self._buf.clear()
            self._cover = self.seq
            self._first = self.seq + 1
            old, self._fd = self._fd, None
            if old is not None:
                self._retire(old)
            return self.seq
        with self._lock:
            first = self._segments[-1][0] if self._segments else None
        if first == self.seq + 1 or self._buf or self._fd is None:
            return self.seq  # nothing written since the last rotation (or a write failed)
        try:
            try:
                fd = self._open(self.seq + 1)
            except FileNotFoundError:
                # the state directory was removed while the server runs (rm -rf, a tmp
                # cleaner): make it again, or every record from here on would go to a
                # segment no name reaches and a crash would lose acknowledged edits
                self.dir.mkdir(parents=True, exist_ok=True)
                fd = self._open(self.seq + 1)
                log.error("journal: the state directory %s was gone; made it again (the "
                          "next snapshot holds everything before)", self.dir)
        except OSError as e:
            log.error("journal: cannot start a new segment (%s); the current one grows",
                      e.strerror)
            return self.seq
        old, self._fd = self._fd, fd
        self._retire(old)
        return self.seq

    def _retire(self, fd: int) -> None:
        """Close a segment's descriptor that rotation replaced: at once without a
        flusher, else after the flusher's next fsync of it."""
        if self.fsync_ms <= 0:
            os.close(fd)
        else:
            with self._lock:
                self._retired.append(fd)

    # ---- autosave thread ------------------------------------------------------------
    def compact(self, covered: int) -> None:
        """Delete the segments whose every record is at or before seq `covered`
        (called once the snapshots that cover them are on disk)."""
        with self._lock:
            gone = [s for s in self._segments[:-1] if s[2] is not None and s[2] <= covered]
            self._segments = [s for s in self._segments if s not in gone]
        for _, path, _ in gone:
            try:
                path.unlink()
            except OSError as e:
                log.warning("journal: cannot delete %s (%s)", path.name, e.strerror)

    # ---- the fdatasync worker -----------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.fsync_ms / 1000.0):
            self.sync()

    def sync(self) -> None:
        """Make what was written durable (power loss): the worker's step."""
        with self._lock:
            retired, self._retired = self._retired, []
            fd = self._fd
            unsynced, self._unsynced = self._unsynced, False
        try:
            for r in retired:
                os.fdatasync(r)
                os.close(r)
            if retired:
                _fsync_dir(self.dir)
            if unsynced and fd is not None:
                os.fdatasync(fd)
                self.syncs += 1
        except OSError as e:
            self.errors += 1
            log.error("journal fdatasync failed: %s", e.strerror)

    def close(self) -> None:
        """Write, sync and close (shutdown)."""
        self.flush()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._unsynced = True
        self.sync()
        if self._fd is not None:
            os.close(self._fd)


def _fsync_dir(path: Path) -> None:
    dfd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
