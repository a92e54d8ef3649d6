"""Garbage over UDP against a real daemon: what rejecting it costs the control thread.

    python bench/garbage.py [--kind random|slash|tags|bundle|all] [--rate 4000]
                            [--seconds 5] [--size 65000]

Sends --size byte datagrams of one kind of garbage at --rate a second for
--seconds, from one socket, while a steady client asks /status every 50 ms; prints
the control thread's share of a core over the flood (its /proc CPU time over the
wall time: thread `mg-control`), the /status latencies (median, max), the
packets the daemon counted as garbage, and the daemon's memory. Kinds: random
bytes; `/` then no NUL (an address without end); an OSC message whose type tags
claim far more arguments than it holds; a bundle of thousands of well-formed
elements with a truncated last one. Figures, not assertions (quote several runs).
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_ports import control_cpu_s, rss_mb  # noqa: E402

from daemon_util import Daemon  # noqa: E402


def garbage(kind: str, size: int, rng: random.Random) -> bytes:
    size -= size % 4
    if kind == "random":
        b = bytearray(rng.randbytes(size))
        b[0] = ord("x")  # not '/' nor '#'
        return bytes(b)
    if kind == "slash":
        return b"/" + b"a" * (size - 1)
    if kind == "tags":
        return b"/a\0\0," + b"f" * (size - 8) + b"\0\0\0"
    if kind == "bundle":
        el = struct.pack(">i", 8) + b"/a\0\0,\0\0\0"
        n = (size - 20) // len(el)
        return b"#bundle\0" + b"\0" * 8 + el * n + struct.pack(">i", 64)
    raise ValueError(kind)


def run(kind: str, a) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp) / "state", "--backend", "null")
        d.client.timeout = 60.0
        try:
            d.call("/status")
            pid = d.proc.pid
            pkt = garbage(kind, a.size, random.Random(1))
            lat: list[float] = []
            done = threading.Event()

            def probe() -> None:
                while not done.is_set():
                    t0 = time.monotonic()
                    d.call("/status")
                    lat.append(time.monotonic() - t0)
                    time.sleep(0.05)

            g0 = d.status()["garbage"]
            th = threading.Thread(target=probe)
            c0, t0 = control_cpu_s(pid), time.monotonic()
            th.start()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            sent = 0
            end = t0 + a.seconds
            while (now := time.monotonic()) < end:
                due = int((now - t0) * a.rate)
                while sent < due:
                    try:
                        s.sendto(pkt, ("127.0.0.1", d.port))
                    except OSError:
                        pass
                    sent += 1
                time.sleep(0.001)
            cpu = (control_cpu_s(pid) - c0) / (time.monotonic() - t0)
            done.set()
            th.join()
            g = d.status()["garbage"] - g0
            print(f"{kind:7s} {len(pkt)} B x {sent}: control thread {cpu * 100:.0f} % of a "
                  f"core, /status median {statistics.median(lat) * 1e3:.1f} ms max "
                  f"{max(lat) * 1e3:.0f} ms ({len(lat)}), garbage counted {g}, rss "
                  f"{rss_mb(pid):.0f} MB")
            s.close()
        finally:
            d.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="all")
    ap.add_argument("--rate", type=float, default=4000.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=65000)
    a = ap.parse_args()
    for kind in (["random", "slash", "tags", "bundle"] if a.kind == "all" else [a.kind]):
        run(kind, a)


if __name__ == "__main__":
    main()
