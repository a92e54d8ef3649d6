"""Instructions per JACK cycle of the live daemon, for A/B comparisons of the
JACK path on a loaded machine (callgrind counts do not move with the load).

    python bench/jack_callgrind.py [--seconds 60] [--channels 64] [--osc-rate 0]
                                   [--midi-rate 0] [--out FILE]

Starts jackd on the dummy driver (`--no-realtime -t 100000`: under valgrind
every cycle is late, and a long client timeout keeps jackd from switching
the graph over mid-cycle), then `mixgraph serve --backend jack` with the
mix64 session (bench/mix64.py, as bench/jackd.py runs it) under `valgrind
--tool=callgrind --toggle-collect=process_cb`: only csrc/jack.c's process
callback and what it calls are counted. After `--seconds` of cycles (with
`--osc-rate` fader moves a second and `--midi-rate` CCs into mixgraph:midi_in
if asked: the daemon under valgrind runs ~10x slower, so a rate here is not
the live figure's per cycle) the profile is dumped (callgrind_control -d;
the daemon under valgrind does not stop on SIGTERM in good time) and the
daemon killed. Prints the process callback's calls, its instructions per
call, the engine's part of them (mg_engine_process_planar) and the
callback's own (port buffers, MIDI in/out, the trace check), to set against
bench/callgrind_mix.py's instructions per block of the same session offline.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jackd  # noqa: E402  bench/jackd.py


def calls_and_inclusive(path: Path) -> dict[str, tuple[int, int]]:
    """(calls, inclusive instructions) of every function called in a
    callgrind output file, by name (summed over its callers)."""
    names: dict[str, str] = {}
    out: dict[str, list[int]] = {}
    callee = None
    expect_cost = False
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2)
            callee = names.get(m.group(1)) if line.startswith("cfn=") else None
            continue
        if line.startswith("calls=") and callee is not None:
            n = int(line.split("=")[1].split()[0])
            rec = out.setdefault(callee, [0, 0])
            rec[0] += n
            expect_cost = True
            continue
        if expect_cost:  # the line after calls=: position, then inclusive cost
            parts = line.split()
            if len(parts) >= 2 and callee is not None:
                out[callee][1] += int(parts[1])
            expect_cost = False
            callee = None
    return {k: (v[0], v[1]) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="cycles collected for this long")
    ap.add_argument("--channels", type=int, default=64, help="mix64 strips")
    ap.add_argument("--osc-rate", type=int, default=0, help="fader moves per second")
    ap.add_argument("--midi-rate", type=int, default=0, help="CCs per second into midi_in")
    ap.add_argument("--out", type=Path, default=None, help="keep the callgrind file here")
    a = ap.parse_args()
    name = f"mgjcg{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="mg_jack_callgrind_"))
    out = a.out or tmp / "callgrind.out"
    jk = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-t", "100000", "-d", "dummy",
                           "-r", str(jackd.RATE), "-p", str(jackd.BLOCK)],
                          env={**os.environ, "JACK_DEFAULT_SERVER": name},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = None
    midi = None
    try:
        time.sleep(1.5)
        from mixgraph.server.state import AUTOSAVE
        jackd.mix64_patch(tmp / AUTOSAVE, a.channels)
        port = jackd.free_port()
        log = tmp / "serve.log"
        with open(log, "w") as fh:
            d = subprocess.Popen(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 "--collect-atstart=no", "--toggle-collect=process_cb", sys.executable, "-m",
                 "mixgraph.server.cli", "serve", "--port", str(port), "--state-dir", str(tmp),
                 "--no-status", "--backend", "jack", "--jack-server", name, "--jack-name",
                 "mixgraph", "--outputs", "2", "--rate-limit", "0"],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "JACK_DEFAULT_SERVER": name})
        deadline = time.monotonic() + 900
        while "ready on udp" not in log.read_text():
            if d.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        if a.midi_rate:
            from mixgraph.clients import Client
            midi = jackd.MidiSender(name, "mixgraph")
            if midi.out is None:
                raise SystemExit(midi.reason)
            Client("127.0.0.1", port, timeout=120).request("/midi/map", "/node/fader0/gain",
                                                           "cc", 1, 7)
        sent: list[int] = []
        th = threading.Thread(target=lambda: sent.extend(
            jackd.load(port, a.seconds, a.osc_rate, midi, a.midi_rate)))
        th.start()
        th.join()
        subprocess.run(["callgrind_control", "-d", str(d.pid)], capture_output=True,
                       timeout=300)
    finally:
        if midi is not None:
            midi.close()
        if d is not None:
            d.send_signal(signal.SIGKILL)
            d.wait(60)
        jk.send_signal(signal.SIGTERM)
        try:
            jk.wait(20)
        except subprocess.TimeoutExpired:
            jk.kill()
    dumps = sorted(out.parent.glob(out.name + ".*")) or [out]
    c = calls_and_inclusive(dumps[-1])
    n, cb = c.get("process_cb", (0, 0))
    _, eng = c.get("mg_engine_process_planar", (0, 0))
    if not n:
        raise SystemExit(f"no process_cb call in {dumps[-1]}")
    print(f"# {dumps[-1]}: {n} JACK cycles, OSC {sent[0] if sent else 0}, "
          f"MIDI {sent[1] if sent else 0} sent")
    print(f"instructions per JACK cycle: {cb / n:,.0f} (the engine's "
          f"mg_engine_process_planar {eng / n:,.0f}; the callback's own: ports, MIDI, trace "
          f"check {(cb - eng) / n:,.0f})")


if __name__ == "__main__":
    main()
