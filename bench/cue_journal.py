"""What building a cue list costs the control thread and the journal: --cues
/cue/set messages (each a new cue with a name and an OSC action) dispatched in
process to the daemon's parts built as `mixgraph serve` builds them (state
directory, journal, autosave, history), the journal flushed after each as
the server flushes it before a reply, counting the bytes of its records.

    .venv/bin/python bench/cue_journal.py [--cues 10000] [--every 1000]

Prints the control thread's CPU time for each --every cues (a cost that grows
with the list shows as a growing figure), the total, and the bytes the
journal wrote (its records; segments are compacted as snapshots are taken,
so the files on disk hold less).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

from undo import close  # the in-process daemon's teardown (bench/undo.py)


def main() -> int:
    from mixgraph.server.backends import start_backend
    from mixgraph.server.daemon import Daemon as Serve
    from mixgraph.server.daemon import ServeOptions

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cues", type=int, default=10000)
    ap.add_argument("--every", type=int, default=1000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Serve(ServeOptions(backend="null", port=0, tcp_port=-1, state_dir=Path(tmp),
                               status=False, mlock=False, rate_limit=0))
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        running = start_backend(d.config, d.engine)
        fails: list = []

        def reply(addr: str, args: list) -> None:
            if addr != "/done":
                fails.append((addr, args))

        try:
            disp = d.dispatcher
            j = d.journal
            written = [0]
            record = j._record

            def counted() -> None:  # the bytes of each record the journal makes
                n = len(j._buf)
                record()
                written[0] += len(j._buf) - n

            j._record = counted
            disp.dispatch("/graph/add", ["gain", "f0"], reply, 0, None)
            steps = []
            t_all = time.thread_time()
            t0 = t_all
            for i in range(1, a.cues + 1):
                disp.dispatch("/cue/set", [i, "name", f"cue {i}", "prewait", 0.5,
                                           "osc", f"/node/f0/gain {-(i % 40)}"], reply, 0, None)
                j.flush()  # as the server does before it sends the reply
                if i % a.every == 0:
                    t1 = time.thread_time()
                    steps.append(t1 - t0)
                    t0 = t1
            total = time.thread_time() - t_all
            assert not fails, fails[:3]
        finally:
            close(d, running, sink)
    print(f"{a.cues} cues set: control-thread CPU {total:.2f} s; journal records "
          f"{written[0]:,} bytes")
    print(f"  CPU s per {a.every} cues: " + " ".join(f"{x:.2f}" for x in steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
