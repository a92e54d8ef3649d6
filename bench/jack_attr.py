"""One factor at a time: what mixgraph's late JACK cycles in the issue-15
figure (bench/jackd.py) come from.

Every run is the figure's setup (jackd dummy at 48 kHz, mixgraph with the
mix64 session, jack_metro and the load-matched burner on the same jackd, one
window under the load) with one factor changed; the ratios to the two peers
in the same window are the result, since the shared machine's load changes
from run to run. The runs alternate over `--rounds`, so a change of the
machine's load lands on every factor alike.

    python bench/jack_attr.py [--seconds 20] [--rounds 2] [--factors figure osc-off ...]

Factors: figure (64 channels, 10,000 OSC messages/s, 1,000 MIDI CCs/s),
osc-off, midi-off, quiet (neither), empty (no nodes, the same load: OSC to
nodes that do not exist), no-mlock (`serve --no-mlock`). Each row: the late
count of each client (jackd's log, the same lines for all) and its count in
full cycles (without the catch-up cycle after jackd's timer woke late), the
states they were caught in (T: woken, not started; R: started, not finished;
A: finished after the next cycle began), each client's time on a core and
waiting for one per cycle (schedstat), jackd's timer xruns, mixgraph's
real-time thread (policy, minor page faults in the window), its other
threads' CPU use (the control thread), the host's steal time, and the sets of
clients caught late in one cycle. --logs keeps jackd's log of each window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jackd  # noqa: E402  bench/jackd.py

FACTORS = {
    "figure": dict(channels=64, osc_rate=10000, midi_rate=1000),
    "osc-off": dict(channels=64, osc_rate=0, midi_rate=1000),
    "midi-off": dict(channels=64, osc_rate=10000, midi_rate=0),
    "quiet": dict(channels=64, osc_rate=0, midi_rate=0),
    "empty": dict(channels=0, osc_rate=10000, midi_rate=1000),
    "no-mlock": dict(channels=64, osc_rate=10000, midi_rate=1000, extra=("--no-mlock",)),
}


def states(d: dict) -> str:
    return "".join(f"{k[0].upper()}{v}" for k, v in sorted(d.items()))


def row(factor: str, r: dict) -> str:
    mg, me, bu = r["mixgraph_late"], r["jack_metro_late"], r["burn_peer_late"]
    full = r["full_cycle_late"]
    fmg, fme, fbu = full.get("mixgraph", 0), full.get("metro", 0), full.get("burn", 0)
    st = r["late_states"]
    pc = r["per_cycle"]
    return (f"{factor:9} late mg {mg:4} metro {me:4} burn {bu:4} | mg/metro "
            f"{mg / me if me else float('nan'):5.2f} mg/burn {mg / bu if bu else float('nan'):5.2f}"
            f" | full cycles mg {fmg} metro {fme} burn {fbu}"
            f" | states mg {states(st.get('mixgraph', {})) or '-'} metro "
            f"{states(st.get('metro', {})) or '-'} burn {states(st.get('burn', {})) or '-'}"
            f" | on core/wait µs mg {pc['mixgraph']['run_us']}/{pc['mixgraph']['wait_us']}"
            f" metro {pc['metro']['run_us']}/{pc['metro']['wait_us']}"
            f" burn {pc['burn']['run_us']}/{pc['burn']['wait_us']}"
            f" | timer {r['jackd_log']['timer']} | rt {','.join(r['rt_thread'])} faults "
            f"{r['rt_thread_faults']} | control {r['control_cpu_pct']}% | DSP "
            f"{r['dsp_load_pct']}% worst {r['worst_us']:.0f} µs | load avg {r['loadavg']:.1f}"
            f" steal {r['steal_pct']}% | after the window (clients stopping) {r['after_window']}"
            f"\n          caught late together: {r['late_sets']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--factors", nargs="+", default=list(FACTORS), choices=list(FACTORS))
    ap.add_argument("--logs", help="a directory for jackd's log of each window")
    a = ap.parse_args()
    totals: dict[str, list[int]] = {}
    for _ in range(a.rounds):
        for f in a.factors:
            r = jackd.mix64_live(a.seconds, **FACTORS[f],
                                 keep_log=Path(a.logs) / f"jackd-{f}-{_}.log" if a.logs else None)
            print(row(f, r), flush=True)
            t = totals.setdefault(f, [0] * 6)
            full = r["full_cycle_late"]
            for k, n in enumerate((r["mixgraph_late"], r["jack_metro_late"],
                                   r["burn_peer_late"], full.get("mixgraph", 0),
                                   full.get("metro", 0), full.get("burn", 0))):
                t[k] += n
    if a.rounds > 1:
        for f, t in totals.items():
            print(f"{f:9} total late mg {t[0]} metro {t[1]} burn {t[2]}; "
                  f"in full cycles mg {t[3]} metro {t[4]} burn {t[5]}")


if __name__ == "__main__":
    main()
