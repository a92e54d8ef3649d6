"""JACK's server registry: free the slots of servers that died without saying so.

jackd2 keeps the servers of a machine in one shared-memory segment,
/dev/shm/jack-shm-registry, with room for 8 (MAX_SERVERS). A server that ends
cleanly frees its slot; one that is killed (SIGKILL, a crash, a test run
stopped by a timeout) leaves it taken for ever, and once 8 are taken every new
jackd exits with "Too many servers already active". The tests start named
servers (one per test, so they can run side by side), so they free the slots
of dead processes before they start one, as jackd itself does for a dead
server of the same name.

The layout is jackd2's jack_shm_header_t (common/shm.h): magic u32, protocol
u16 (+2), type i32, size i32, hdr_len i32, entry_len i32, then MAX_SERVERS x
{pid_t pid; char name[JACK_SERVER_NAME_SIZE + 1]} (264 bytes each).
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

REGISTRY = Path("/dev/shm/jack-shm-registry")
MAGIC = 0x4A41434B  # "JACK"
SERVERS_AT = 24
SLOT = 264
MAX_SERVERS = 8


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reclaim(path: Path = REGISTRY) -> list[str]:
    """Free the registry slots whose server process no longer exists; the names
    of the servers freed (none when the registry is absent or not jackd2's)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return []
    freed: list[str] = []
    try:
        size = os.fstat(fd).st_size
        if size < SERVERS_AT + MAX_SERVERS * SLOT:
            return []
        with mmap.mmap(fd, SERVERS_AT + MAX_SERVERS * SLOT) as m:
            magic, = struct.unpack_from("<I", m, 0)
            hdr_len, = struct.unpack_from("<i", m, 16)
            if magic != MAGIC or hdr_len != SERVERS_AT + MAX_SERVERS * SLOT:
                return []
            for i in range(MAX_SERVERS):
                at = SERVERS_AT + i * SLOT
                pid, = struct.unpack_from("<i", m, at)
                if pid > 0 and not _alive(pid):
                    freed.append(bytes(m[at + 4:at + SLOT]).split(b"\0")[0].decode(
                        "utf-8", "replace"))
                    m[at:at + SLOT] = bytes(SLOT)
    finally:
        os.close(fd)
    return freed


if __name__ == "__main__":
    print("\n".join(reclaim()) or "no stale servers")
