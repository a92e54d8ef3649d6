"""Small TCP messages one at a time against a real daemon: control-thread CPU a read.

    python bench/tcp_reads.py [--messages 3000]

One TCP client sends `/sync n` and waits for `/synced n`, --messages times (each
message is one read of the daemon's); prints the daemon control thread's CPU
time per message and the median round trip. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_ports import control_cpu_s  # noqa: E402

from mixgraph.server.osc import encode_message  # noqa: E402

from daemon_util import Daemon  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp) / "state", "--backend", "null")
        try:
            s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rtt = []
            c0 = control_cpu_s(d.proc.pid)
            for i in range(a.messages):
                m = encode_message("/sync", [i])
                t0 = time.monotonic()
                s.sendall(struct.pack(">i", len(m)) + m)
                got = b""
                while len(got) < 4 or len(got) < 4 + struct.unpack(">i", got[:4])[0]:
                    got += s.recv(65536)
                rtt.append(time.monotonic() - t0)
            cpu = control_cpu_s(d.proc.pid) - c0
            print(f"{a.messages} messages: control thread {cpu / a.messages * 1e6:.0f} us "
                  f"of CPU a message, round trip median {statistics.median(rtt) * 1e6:.0f} us")
            s.close()
        finally:
            d.stop()


if __name__ == "__main__":
    main()
