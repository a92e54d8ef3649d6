"""200 SIGKILL rounds with acknowledged-edit accounting (issue 13, hole 11).

Each round starts `mixgraph serve` on the same state directory, sends edits as
fast as the server answers (parameter sets, and now and then a node added and
connected), kills it with SIGKILL at a seeded random moment, restarts it and
counts the edits that had been answered /done and are missing from the
restored graph (tests/killloop.py; the suite runs 20 rounds of the same).

    .venv/bin/python bench/sigkill.py [--rounds 200] [--seed 13] [-- serve options]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from killloop import KillLoop  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--min-s", type=float, default=0.05, help="earliest kill, s")
    ap.add_argument("--max-s", type=float, default=0.5, help="latest kill, s")
    ap.add_argument("serve", nargs="*", help="extra `mixgraph serve` options (after --)")
    a = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        loop = KillLoop(Path(tmp) / "state", a.seed, tuple(a.serve), a.min_s, a.max_s)
        loop.setup()
        for r in range(a.rounds):
            lost = loop.round(r)
            if lost or (r + 1) % 20 == 0:
                t = loop.tally
                print(f"round {r + 1}: lost {lost}; so far {t.lost} of {t.acked} "
                      "acknowledged edits lost", flush=True)
    t = loop.tally
    print(f"{t.rounds} SIGKILL rounds in {time.monotonic() - t0:.0f} s: {t.acked} edits "
          f"acknowledged ({t.acked / max(t.seconds_editing, 1e-9):.0f}/s while editing), "
          f"{t.lost} lost ({t.rounds_losing} rounds lost any, worst round {t.worst})")
    for n in t.notes[:20]:
        print("  ", n)
    return 1 if t.lost else 0


if __name__ == "__main__":
    sys.exit(main())
