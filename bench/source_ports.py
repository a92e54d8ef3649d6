"""Many UDP source ports against a real daemon: its memory and control-thread CPU.

    python bench/source_ports.py [--ports 20000] [--reply-port] [--rounds 1]

Each port sends one message (`/reply-port <port>` with --reply-port, else
`/status`) from its own socket, closed at once (what `oscsend` in a loop does),
in rounds of --ports; after each round: the daemon's resident memory, its
control thread's CPU time and the latency of one /status from a steady client.
Figures, not assertions (the machine is shared: quote several runs).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mixgraph.clients.protocol import encode  # noqa: E402

from daemon_util import Daemon, control_cpu_s, rss_mb  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--reply-port", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp) / "state", "--backend", "null")
        d.client.timeout = 120.0
        try:
            d.call("/status")
            pid = d.proc.pid
            print(f"start: rss {rss_mb(pid):.1f} MB, control cpu {control_cpu_s(pid):.2f} s")
            for r in range(a.rounds):
                for i in range(a.ports):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.bind(("127.0.0.1", 0))
                    pkt = encode("/reply-port", [40000 + i % 20000]) if a.reply_port \
                        else encode("/status", [])
                    s.sendto(pkt, ("127.0.0.1", d.port))
                    s.close()
                    if i % 500 == 499:
                        time.sleep(0.02)
                t0 = time.monotonic()
                d.call("/status")
                dt = time.monotonic() - t0
                print(f"round {r + 1}: rss {rss_mb(pid):.1f} MB, control cpu "
                      f"{control_cpu_s(pid):.2f} s, /status after the round {dt * 1e3:.0f} ms")
        finally:
            d.stop()


if __name__ == "__main__":
    main()
