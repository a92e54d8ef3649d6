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

Figures, not assertions: the machine is shared, so quote the medians of a
few runs. Targets: starting a 200-node recall <= 5 ms; no increase of the
worst block that stands out from the run-to-run noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

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
    a = ap.parse_args()
    engine = Engine(RATE, 0, 2)
    s = Session(engine)
    d = Dispatcher(s, info={"backend": "null", "block": BLOCK})
    s.add_node("output", "out", {"channels": 2})
    for i in range(a.nodes):
        s.add_node("gain", f"g{i}", {"channels": 2, "gain": -10.0})
        s.connect(f"g{i}", "out")
    s.commit()
    replies: list = []

    def reply(addr: str, args: list) -> None:
        replies.append((addr, args))

    d.dispatch("/scene/store", ["A", "/node/g*/gain"], reply)
    for i in range(a.nodes):
        s.set_param(f"g{i}", "gain", -30.0 + (i % 20))
    d.dispatch("/scene/store", ["B", "/node/g*/gain"], reply)
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
            run_for(a.fade)
            idle_mean.append(engine.stats().mean_us)
        idle_worst = engine.take_worst_us()
        starts = []
        fade_mean: list[float] = []
        for k in range(a.rounds):
            t0 = time.perf_counter()
            d.dispatch("/scene/recall", ["A" if k % 2 else "B", a.fade], reply)
            starts.append((time.perf_counter() - t0) * 1e3)
            assert replies[-1][0] == "/done", replies[-1]
            run_for(a.fade * 0.9)
            fade_mean.append(engine.stats().mean_us)  # the fade still running
            run_for(a.fade * 0.1)
        fade_worst = engine.take_worst_us()
    finally:
        engine.null_stop()
    print(f"{a.nodes} faders, {a.fade:g} s {a.curve} fades, {a.rounds} recalls "
          f"({a.nodes} ramps each)")
    print(f"  start a recall (control thread): median {statistics.median(starts):.2f} ms, "
          f"worst {max(starts):.2f} ms (target <= 5 ms)")
    print(f"  worst block: {idle_worst:.0f} us without recalls, {fade_worst:.0f} us with "
          f"their fades running (budget {BLOCK / RATE * 1e6:.0f} us)")
    print(f"  mean block (median of {a.rounds} readings): "
          f"{statistics.median(idle_mean):.1f} us without, "
          f"{statistics.median(fade_mean):.1f} us during fades")
    s.close()
    engine.free()


if __name__ == "__main__":
    main()
