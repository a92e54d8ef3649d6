"""What one /cue/set costs the control thread on a list of 10,000 cues (in process).

    python bench/cue_set_cost.py

Sets cue 5000's osc action 200 times through the dispatcher and prints the median,
beside the median of the whole-list text check (cues.check_text) that /cue/set ran
before it kept a running total (CueList.text): a figure, not an assertion.
"""
import statistics
import time

from mixgraph.server import cues as cm
from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher
from mixgraph.server.scenes import show_of
from mixgraph.server.session import Session

e = Engine(48000, 0, 2)
s = Session(e)
d = Dispatcher(s, info={"backend": "offline", "block": 64})
show_of(s).cues.load_text("".join(f"{k} osc '/node/g/gain -{k % 60}'\n" for k in range(1, 10001)))
cl = show_of(s).cues
out: list = []


def one(k: int) -> float:
    """Seconds of one /cue/set of cue 5000's action."""
    t = time.perf_counter()
    d.dispatch("/cue/set", [5000, "osc", f"/node/g/gain -{k}"], lambda a, r: out.append(a))
    return time.perf_counter() - t


ts = [one(k) for k in range(200)]
assert out[-1] == "/done"
t2 = []
for _ in range(200):
    t = time.perf_counter()
    cm.check_text(cl.cues.values(), "x")
    t2.append(time.perf_counter() - t)
print(f"/cue/set at 10,000 cues: median {statistics.median(ts) * 1e3:.2f} ms; the old "
      f"whole-list check alone: median {statistics.median(t2) * 1e3:.2f} ms")
