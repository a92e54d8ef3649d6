"""What a live cycle costs when the machine's other work has been through the
caches since the last one: the mix64 session (bench/mix64.py) rendered one
64-frame block at a time on one core, with N MB of other memory written
between blocks, in alternating rounds.

    python bench/cold_cache.py [--channels 64] [--mb 0 1 4 16 64] [--rounds 4] [--cpu N]
                               [--code-warm] [--idle-us 1250 [--idle-spin]]

A live JACK client runs for ~100 µs out of every 1333 µs; in between, jackd,
the other clients, mixgraph's own control thread (parsing 10,000 OSC messages
a second) and everything else on the machine use the same cores and caches.
The burner of bench/jackd.py touches no memory, so its time per cycle does
not depend on that; mixgraph's does. This prints the CPU time per block
(median of the rounds' medians) after 0, 1, 4, 16, 64 MB written between
blocks: the 0 MB row is the hot-cache figure of bench/mix64.py, and the row
that matches the live DSP time (`/status` load x period) says how much other
memory traffic a live cycle sees.

--idle-us adds a row with that long asleep between blocks and nothing
written (a JACK cycle at 64 frames is ~80 µs of work and ~1250 µs of
waiting), and --idle-spin one spinning on the core for that long instead:
what the time away alone costs the next block (on a shared VM, more than 4 MB
of the guest's own writes: the caches are shared with what runs outside it).

--code-warm adds, for every size but 0, a row where a second mix64 engine
(its own nodes and buffers, the same code) renders a block after the other
memory is written and before the timed block: the code is then warm and the
timed engine's data still cold, so the rows split a cold cycle's extra time
into code (instruction fetch) and data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mix64 import build_mix64  # noqa: E402  bench/mix64.py

from mixgraph.server.engine import Engine  # noqa: E402
from mixgraph.server.session import Session  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--mb", type=int, nargs="+", default=[0, 1, 4, 16, 64],
                    help="MB of other memory written between two blocks")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--blocks", type=int, default=150, help="blocks per size per round")
    ap.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                    help="the core to run on (-1: not pinned)")
    ap.add_argument("--code-warm", action="store_true",
                    help="also each size with the code warmed by a second engine's block")
    ap.add_argument("--idle-us", type=float, default=0.0, metavar="US",
                    help="also a row with this long asleep between blocks and nothing "
                         "written (1250: a JACK cycle's idle time at 64 frames): what the "
                         "CPU's idle time alone costs the next block")
    ap.add_argument("--idle-spin", action="store_true",
                    help="with --idle-us: also a row that spends that time spinning on "
                         "the core (touching no memory) instead of asleep, so that no other "
                         "thread runs there in between")
    a = ap.parse_args()
    if a.cpu >= 0:
        os.sched_setaffinity(0, {a.cpu})
    e = Engine(48000, 0, 2, block=64)
    s = Session(e)
    build_mix64(s, a.channels)
    e2 = s2 = None
    if a.code_warm:
        e2 = Engine(48000, 0, 2, block=64)
        s2 = Session(e2)
        build_mix64(s2, a.channels)
    out = np.zeros((64, 2), np.float32)
    junk = np.ones((max(a.mb) << 20) >> 3)
    for _ in range(300):
        e.process(64, None, block=64, out=out)
        if e2 is not None:
            e2.process(64, None, block=64, out=out)
    rows = [(mb, False, 0.0) for mb in a.mb]
    rows += [(mb, True, 0.0) for mb in a.mb if mb and a.code_warm]
    rows += [(0, False, a.idle_us / 1e6)] if a.idle_us > 0 else []
    rows += [(0, False, -a.idle_us / 1e6)] if a.idle_us > 0 and a.idle_spin else []
    res: dict[tuple[int, bool, float], list[float]] = {}
    for _ in range(a.rounds):
        for mb, warm_code, idle_s in rows:
            n = (mb << 20) >> 3
            ts = []
            for _ in range(a.blocks):
                if n:
                    junk[:n] += 1.0
                if idle_s > 0:
                    time.sleep(idle_s)
                elif idle_s < 0:  # spin: the core stays ours (unless preempted)
                    t_end = time.perf_counter() - idle_s
                    while time.perf_counter() < t_end:
                        pass
                if warm_code:
                    e2.process(64, None, block=64, out=out)
                t0 = time.thread_time_ns()
                e.process(64, None, block=64, out=out)
                ts.append(time.thread_time_ns() - t0)
            res.setdefault((mb, warm_code, idle_s), []).append(statistics.median(ts) / 1e3)
    print(f"# mix64, {a.channels} channels, 64-frame blocks, one core; CPU µs per block "
          f"(median of {a.rounds} rounds' medians; load average {os.getloadavg()[0]:.1f})")
    for (mb, warm_code, idle_s), v in res.items():
        what = ", code warmed" if warm_code else ""
        what += (f", {idle_s * 1e6:.0f} µs asleep" if idle_s > 0 else
                 f", {-idle_s * 1e6:.0f} µs spinning" if idle_s < 0 else "")
        print(f"{mb:4} MB written between blocks{what}: {statistics.median(v):7.1f} µs  "
              f"(rounds {', '.join(f'{x:.1f}' for x in v)})")
    for x, y in ((s, e), (s2, e2)):
        if x is not None:
            x.close()
            y.free()


if __name__ == "__main__":
    main()
