"""Scene recall cost (issue 14, "Figures"): a 200-node scene recalled with a fade.

    python bench/scenes.py [--nodes 200] [--fade 2] [--rounds 10] [--curve linear|scurve]

In one process: an engine on the null clock (real time, 48 kHz, 64-frame
blocks, its own C thread) runs N stereo faders into an output, and the OSC
dispatcher (server/osc.py) recalls scene A or B (every fader at another
level) with a fade, alternately, once per fade time. Measured:

1. the control thread's time to start a recall (dispatch of /scene/recall to
   its /done: checks, N ramp commands pushed, the model updated), median and
   worst of --rounds;
2. the engine's worst block (`take_worst_us`) over --rounds fade times with
   no recall, then over as long with the recalls' fades running (N faders
   evaluating their taper at every sample), against the 1333 us budget.

With --mix64 N: the N-channel mix64 session of bench/mix64.py instead,
scenes A and B holding every parameter of every node (about 40 per channel:
each continuous one at another value in B), recalled with the scenes' own
fade (0 by default: an instant recall, every value due at the same frame).
That is the heaviest recall a console operator makes: a whole-desk snapshot.

Figures, not assertions: the machine is shared, so quote the medians of a
few runs. Targets: starting a 200-node recall <= 5 ms; no increase of the
worst block that stands out from the run-to-run noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

from mix64 import build_mix64

from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.session import Session

RATE, BLOCK = 48000, 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--fade", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--curve", default="linear", choices=("linear", "scurve"),
                    help="the scenes' fade curve (scurve: the taper at every sample)")
    ap.add_argument("--mix64", type=int, default=0, metavar="N",
                    help="recall whole-desk scenes of the N-channel mix64 session")
    a = ap.parse_args()
    if a.mix64 and "--fade" not in " ".join(__import__("sys").argv):
        a.fade = 0.0
    engine = Engine(RATE, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "null", "block": BLOCK})
    replies: list = []

    def reply(addr: str, args: list) -> None:
        replies.append((addr, args))

    if a.mix64:
        build_mix64(s, a.mix64)
        d.dispatch("/scene/store", ["A"], reply)
        moved = whole_desk_b(s)
        d.dispatch("/scene/store", ["B"], reply)
        what = (f"mix64 at {a.mix64} channels, whole-desk scenes "
                f"({s.show.scenes['A'].count()} values, {moved} differ)")
    else:
        s.add_node("output", "out", {"channels": 2})
        for i in range(a.nodes):
            s.add_node("gain", f"g{i}", {"channels": 2, "gain": -10.0})
            s.connect(f"g{i}", "out")
        s.commit()
        d.dispatch("/scene/store", ["A", "/node/g*/gain"], reply)
        for i in range(a.nodes):
            s.set_param(f"g{i}", "gain", -30.0 + (i % 20))
        d.dispatch("/scene/store", ["B", "/node/g*/gain"], reply)
        what = f"{a.nodes} faders ({a.nodes} ramps each)"
    assert all(r[0] == "/done" for r in replies), replies
    for sc in ("A", "B"):
        d.dispatch("/scene/fade", [sc, a.fade, a.curve], reply)
    engine.null_start(BLOCK)

    def run_for(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            s.service()
            d.service()
            time.sleep(0.002)

    try:
        run_for(0.5)
        engine.take_worst_us()
        idle_mean = []
        for _ in range(a.rounds):
            run_for(max(a.fade, 0.2))
            idle_mean.append(engine.stats().mean_us)
        idle_worst = engine.take_worst_us()
        starts = []
        fade_mean: list[float] = []
        for k in range(a.rounds):
            t0 = time.perf_counter()
            d.dispatch("/scene/recall", ["A" if k % 2 else "B", a.fade], reply)
            starts.append((time.perf_counter() - t0) * 1e3)
            assert replies[-1][0] == "/done", replies[-1]
            run_for(max(a.fade, 0.2) * 0.9)
            fade_mean.append(engine.stats().mean_us)  # the fade still running
            run_for(max(a.fade, 0.2) * 0.1)
        fade_worst = engine.take_worst_us()
    finally:
        engine.null_stop()
    print(f"{what}: {a.fade:g} s {a.curve} fades, {a.rounds} recalls")
    print(f"  start a recall (control thread): median {statistics.median(starts):.2f} ms, "
          f"worst {max(starts):.2f} ms (target <= 5 ms)")
    print(f"  worst block: {idle_worst:.0f} us without recalls, {fade_worst:.0f} us with "
          f"their fades running (budget {BLOCK / RATE * 1e6:.0f} us)")
    print(f"  mean block (median of {a.rounds} readings): "
          f"{statistics.median(idle_mean):.1f} us without, "
          f"{statistics.median(fade_mean):.1f} us during fades")
    s.close()
    engine.free()


def whole_desk_b(s: Session) -> int:
    """Move every continuous parameter of every node to another point of its taper
    (a quarter of the way across, wrapping), for scene B. Returns how many moved."""
    from mixgraph.server import tapers
    from mixgraph.server.actions import triggers_for
    moved = 0
    for name, node in list(s.live.items()):
        t = node.g.type
        skip = triggers_for(t.name)
        for p in t.params:
            if p.taper == "stepped" or p.name in skip or p.name == "vca":
                continue
            cur = tapers.to_norm(p.taper, p.min, p.max, node.g.params[p.name])
            v = tapers.to_value(p.taper, p.min, p.max, (cur + 0.25) % 1.0)
            s.set_param(name, p.name, v)
            moved += 1
    return moved


if __name__ == "__main__":
    main()
