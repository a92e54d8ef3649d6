"""MIDI in -> parameter applied, in frames, on a jackd dummy server.

Starts `jackd -n <unique> -d dummy -r 48000 -p <period>`, mixgraph on it
(`--backend jack`: input -> gain -> output, CC 7 on channel 1 mapped to the
gain between -20 and 0 dB, no soft takeover), and bench/midi_probe.c (built
here with cc -ljack): a JACK client sends a DC level into mixgraph:in_1 and a
CC at a pseudo-random frame of a period into mixgraph:midi_in; a second
client watches mixgraph:out_1 for the first sample that changes. The latency
is that sample's absolute frame minus the event's. The design figure is one
period: the audio thread schedules the value at the event's frame plus the
period (csrc/midi.c), so the figure does not depend on the control thread.

    python bench/midi_latency.py [--seconds 20] [--period 64] [--every 32]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from jackd import dummy  # noqa: E402

from daemon_util import Daemon  # noqa: E402


def build_probe(tmp: Path) -> Path:
    exe = tmp / "midi_probe"
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", str(HERE / "midi_probe.c"),
                    "-o", str(exe), "-ljack", "-lm"], check=True)
    return exe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--period", type=int, default=64)
    ap.add_argument("--every", type=int, default=32, help="periods between CC events")
    a = ap.parse_args()
    name = f"mg-midibench-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name)
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        exe = build_probe(tmp)
        d = None
        with dummy(name, 48000, a.period):
            try:
                d = Daemon(tmp / "state", "--backend", "jack", "--jack-server", name,
                           "--inputs", "1", "--outputs", "1")
                d.client.timeout = 10.0
                d.call("/graph/add", "input", "in", "channels", 1)
                d.call("/graph/add", "gain", "g", "gain", -20.0)
                d.call("/graph/add", "output", "out", "channels", 1)
                d.call("/graph/connect", "in", "g")
                d.call("/graph/connect", "g", "out")
                d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "min", -20.0, "max", 0.0,
                       "pickup", 0)
                d.sync(1)
                r = subprocess.run([str(exe), "mixgraph", str(a.seconds), str(a.every)], env=env,
                                   capture_output=True, text=True, timeout=a.seconds + 30)
                if r.returncode != 0:
                    print(r.stdout, r.stderr, file=sys.stderr)
                    return 1
                lines = r.stdout.split("\n")
                head, lat = lines[0], [int(x) for x in lines[1:] if x.strip()]
                st = d.status()
            finally:
                if d is not None:
                    d.stop()
    if not lat:
        print("no change was seen at the output", head)
        return 1
    print(f"MIDI in -> parameter applied, jackd dummy {head}: {len(lat)} events, "
          f"latency frames median {statistics.median(lat):g}, min {min(lat)}, max {max(lat)} "
          f"(mixgraph: midi_events {st.get('midi_events')}, applied {st.get('midi_applied')}, "
          f"xruns {st.get('xruns')})")
    exact = sum(1 for x in lat if x == a.period)
    print(f"  exactly one period ({a.period} frames): {exact} of {len(lat)}; the others: "
          f"{sorted(x for x in lat if x != a.period)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
