"""The mix64 reference session (shared/bench/mix64.md) in two peer systems,
for the side-by-side figure of bench/mix64.py --peers:

- scsynth (SuperCollider's server, Debian package supercollider-server) in
  non-real-time mode: the SynthDefs are written here in the SCgf v2 binary
  format and the score as an OSC bundle file, so no sclang is needed.
  Per channel: WhiteNoise at -20 dBFS RMS -> Compander as a gate (threshold
  -50 dBFS, slope 10 below, 1 ms / 100 ms) -> BHiPass 80 Hz -> BLowShelf
  100 Hz +2 dB -> BPeakEQ 400 Hz -3 dB Q 1 -> BPeakEQ 3 kHz +2 dB Q 1.5 ->
  BHiShelf 10 kHz +1.5 dB -> Compander as a compressor (-18 dB, 4:1, 5 ms /
  100 ms) x makeup +3 dB -> Pan2 -> fader -6 dB -> master bus, sends at
  -12 / -18 dB. Reverb bus: FreeVerb2 (room 0.9). Delay bus: CombN 375 ms
  with the decay of feedback 0.35. Master: BLowShelf 60 Hz +1 dB, BHiShelf
  12 kHz +1 dB, Compander (-10 dB, 2:1, 10 / 200 ms), Limiter (-1 dBFS, 5 ms).
  scsynth has no soft knee, gate hold, true-peak limiter or BS.1770 meter:
  it does less than mixgraph's session.
- Pedalboard (pip `pedalboard`, JUCE's DSP): the 64 strips as one board over
  a 64-channel buffer (NoiseGate, HighpassFilter, LowShelfFilter,
  2 x PeakFilter, HighShelfFilter, Compressor, Gain), pans, faders and sends
  in numpy, Reverb and Delay boards on the buses, a master board (shelves,
  Compressor, Limiter), every board at 64-frame buffers.

Install the peers with `pip install -e '.[bench]'` (Pedalboard) and
`apt-get install supercollider-server` (scsynth); a missing one is skipped with a
line that says so.

Cost is CPU time per 64-frame block: for scsynth, the difference between a
long and a short render of the same score (start-up and plug-in loading
cancel out), measured on the child process.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 48000
BLOCK = 64
NOISE_AMP = 0.1 * 3 ** 0.5  # uniform noise at -20 dBFS RMS


def _db(x: float) -> float:
    return 10.0 ** (x / 20.0)


# ---------------------------------------------------------------- SCgf v2

def _pstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">B", len(b)) + b


class _Def:
    """A SynthDef under construction: UGens in order, constants pooled."""

    def __init__(self, name: str, params: dict[str, float] | None = None) -> None:
        self.name = name
        self.consts: list[float] = []
        self.ugens: list[tuple[str, int, list[tuple[int, int]], int, int]] = []
        self.params = dict(params or {})
        self.ctl = self.ugen("Control", 1, [], len(self.params)) if self.params else None

    def c(self, v: float) -> tuple[int, int]:
        v = float(np.float32(v))
        if v not in self.consts:
            self.consts.append(v)
        return (-1, self.consts.index(v))

    def ugen(self, cls: str, rate: int, ins: list, nout: int = 1, special: int = 0) -> list:
        spec = [i if isinstance(i, tuple) else self.c(i) for i in ins]
        self.ugens.append((cls, rate, spec, nout, special))
        k = len(self.ugens) - 1
        return [(k, j) for j in range(nout)]

    def p(self, name: str) -> tuple[int, int]:
        assert self.ctl is not None
        return self.ctl[list(self.params).index(name)]

    def ar(self, cls: str, *ins, nout: int = 1, special: int = 0):
        r = self.ugen(cls, 2, list(ins), nout, special)
        return r[0] if nout == 1 else r

    def mul(self, a, b):
        return self.ar("BinaryOpUGen", a, b, special=2)

    def add(self, a, b):
        return self.ar("BinaryOpUGen", a, b, special=0)

    def encode(self) -> bytes:
        out = _pstr(self.name) + struct.pack(">i", len(self.consts))
        out += b"".join(struct.pack(">f", v) for v in self.consts)
        out += struct.pack(">i", len(self.params))
        out += b"".join(struct.pack(">f", v) for v in self.params.values())
        out += struct.pack(">i", len(self.params))
        out += b"".join(_pstr(n) + struct.pack(">i", i) for i, n in enumerate(self.params))
        out += struct.pack(">i", len(self.ugens))
        for cls, rate, ins, nout, special in self.ugens:
            out += _pstr(cls) + struct.pack(">biih", rate, len(ins), nout, special)
            out += b"".join(struct.pack(">ii", a, b) for a, b in ins)
            out += bytes([rate]) * nout
        return out + struct.pack(">h", 0)


MASTER_BUS, REV_BUS, DLY_BUS = 4, 6, 8  # private stereo buses (after 2 outputs)


def synthdefs(each: bool = False) -> bytes | list[bytes]:
    """The three SynthDefs of the session, as one SCgf v2 file (each: as
    three files of one SynthDef each, for supernova: its reader does not
    take the second SynthDef of a v2 file, 'corrupted synthdef')."""
    s = _Def("mg_strip", {"pan": 0.0})
    x = s.mul(s.ar("WhiteNoise"), NOISE_AMP)
    x = s.ar("Compander", x, x, _db(-50), 10.0, 1.0, 0.001, 0.1)            # gate
    x = s.ar("BHiPass", x, 80.0, 1 / 0.7071)
    x = s.ar("BLowShelf", x, 100.0, 1.0, 2.0)
    x = s.ar("BPeakEQ", x, 400.0, 1.0, -3.0)
    x = s.ar("BPeakEQ", x, 3000.0, 1 / 1.5, 2.0)
    x = s.ar("BHiShelf", x, 10000.0, 1.0, 1.5)
    x = s.ar("Compander", x, x, _db(-18), 1.0, 0.25, 0.005, 0.1)            # compressor
    lr = s.ar("Pan2", x, s.p("pan"), _db(3) * _db(-6), nout=2)              # makeup, fader
    s.ugen("Out", 2, [MASTER_BUS, *lr], 0)
    s.ugen("Out", 2, [REV_BUS, s.mul(lr[0], _db(-12)), s.mul(lr[1], _db(-12))], 0)
    s.ugen("Out", 2, [DLY_BUS, s.mul(lr[0], _db(-18)), s.mul(lr[1], _db(-18))], 0)

    f = _Def("mg_fx")
    rv = f.ar("In", REV_BUS, nout=2)
    wet = f.ar("FreeVerb2", rv[0], rv[1], 1.0, 0.9, 0.5, nout=2)
    f.ugen("Out", 2, [MASTER_BUS, *wet], 0)
    dl = f.ar("In", DLY_BUS, nout=2)
    decay = 0.375 * np.log(0.001) / np.log(0.35)  # feedback 0.35 as a -60 dB time
    f.ugen("Out", 2, [MASTER_BUS] + [f.ar("CombN", dl[k], 0.375, 0.375, decay) for k in (0, 1)], 0)

    m = _Def("mg_master")
    ms = m.ar("In", MASTER_BUS, nout=2)
    outs = []
    for k in (0, 1):
        y = m.ar("BLowShelf", ms[k], 60.0, 1.0, 1.0)
        y = m.ar("BHiShelf", y, 12000.0, 1.0, 1.0)
        outs.append(y)
    # linked: one detector on the sum, like the stereo compressor
    key = m.add(outs[0], outs[1])
    outs = [m.ar("Compander", y, key, _db(-10), 1.0, 0.5, 0.01, 0.2) for y in outs]
    outs = [m.ar("Limiter", y, _db(-1), 0.005) for y in outs]
    m.ugen("Out", 2, [0, *outs], 0)
    defs = [s, f, m]
    if each:
        return [b"SCgf" + struct.pack(">ih", 2, 1) + d.encode() for d in defs]
    return b"SCgf" + struct.pack(">ih", 2, len(defs)) + b"".join(d.encode() for d in defs)


# ---------------------------------------------------------------- OSC score

def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def _msg(addr: str, *args) -> bytes:
    tags, data = ",", b""
    for a in args:
        if isinstance(a, bytes):
            tags += "b"
            data += struct.pack(">i", len(a)) + a + b"\0" * (-len(a) % 4)
        elif isinstance(a, str):
            tags += "s"
            data += _pad(a.encode())
        elif isinstance(a, int):
            tags += "i"
            data += struct.pack(">i", a)
        else:
            tags += "f"
            data += struct.pack(">f", a)
    return _pad(addr.encode()) + _pad(tags.encode()) + data


def _bundle(t: float, *msgs: bytes) -> bytes:
    sec = int(t)
    frac = int((t - sec) * 2 ** 32)
    b = b"#bundle\0" + struct.pack(">II", sec, frac)
    b += b"".join(struct.pack(">i", len(m)) + m for m in msgs)
    return struct.pack(">i", len(b)) + b


def score(n: int, seconds: float, par: bool = False) -> bytes:
    """The NRT score: load the defs, n strips, the buses' effects, the master
    (in that order in the root group), end at `seconds`. par (supernova): the
    strips in a ParGroup (/p_new), which supernova's DSP threads run at once,
    the effects and the master after it; the SynthDefs one a file."""
    defs = synthdefs(each=True) if par else [synthdefs()]
    msgs = [_msg("/d_recv", d) for d in defs]
    group = 0
    if par:
        group = 2
        msgs.append(_msg("/p_new", group, 0, 0))
    nid = 1000
    for i in range(n):
        pan = -1.0 + 2.0 * i / max(1, n - 1)
        msgs.append(_msg("/s_new", "mg_strip", nid, 1, group, "pan", float(pan)))
        nid += 1
    msgs.append(_msg("/s_new", "mg_fx", nid, 1, 0))
    msgs.append(_msg("/s_new", "mg_master", nid + 1, 1, 0))
    return _bundle(0.0, *msgs) + _bundle(seconds, _msg("/c_set", 0, 0))


def scsynth_bin() -> str | None:
    return shutil.which("scsynth")


def _child_cpu(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def scsynth_us_per_block(n: int, seconds: float) -> float | None:
    """CPU us per 64-frame block of scsynth rendering the session with n
    channels: (long render - short render) / extra blocks. None when scsynth
    is not installed."""
    exe = scsynth_bin()
    if exe is None:
        return None
    short = 1.0
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        cost = []
        for secs in (short, short + seconds):
            sc = Path(tmp) / f"s{secs}.osc"
            sc.write_bytes(score(n, secs))
            cost.append(_child_cpu([exe, "-N", str(sc), "_", str(Path(tmp) / "o.wav"), str(RATE),
                                    "WAV", "float", "-o", "2", "-i", "0", "-z", str(BLOCK),
                                    "-m", "65536"]))
    return (cost[1] - cost[0]) / (seconds * RATE / BLOCK) * 1e6


def supernova_bin() -> str | None:
    return shutil.which("supernova")


def supernova_us_per_block(n: int, seconds: float, threads: int) -> float | None:
    """Wall-clock us per 64-frame block of supernova (SuperCollider's
    multi-threaded server, Debian package supercollider-supernova) rendering
    the session with n channels in NRT on `threads` DSP threads (-T), the
    strips in a ParGroup: supernova's own "Non-rt synthesis finished in"
    time (the render, without start-up and plug-in loading) over the blocks.
    None when supernova is not installed."""
    exe = supernova_bin()
    if exe is None:
        return None
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        sc = Path(tmp) / "s.osc"
        sc.write_bytes(score(n, seconds, par=True))
        r = subprocess.run([exe, "-N", str(sc), "_", str(Path(tmp) / "o.wav"), str(RATE), "WAV",
                            "float", "-o", "2", "-i", "0", "-z", str(BLOCK), "-m", "65536",
                            "-T", str(threads)],
                           check=True, capture_output=True, text=True)
    m = re.search(r"Non-rt synthesis finished in ([0-9.]+)s", r.stdout + r.stderr)
    if m is None:
        raise RuntimeError("supernova: no 'Non-rt synthesis finished' line:\n" + r.stdout[-500:])
    return float(m.group(1)) / (seconds * RATE / BLOCK) * 1e6


# ---------------------------------------------------------------- Pedalboard

def pedalboard_us_per_block(n: int, seconds: float) -> float | None:
    """CPU us per 64-frame block of the session through Pedalboard (boards at
    64-frame buffers, mixing in numpy). None when pedalboard is missing."""
    try:
        import pedalboard as pb
    except ImportError:
        return None
    frames = int(RATE * seconds)
    rng = np.random.default_rng(7)
    x = (rng.uniform(-1, 1, (n, frames)) * NOISE_AMP).astype(np.float32)
    strip = pb.Pedalboard([
        pb.NoiseGate(threshold_db=-50, ratio=10, attack_ms=1, release_ms=100),
        pb.HighpassFilter(cutoff_frequency_hz=80),
        pb.LowShelfFilter(cutoff_frequency_hz=100, gain_db=2, q=0.7071),
        pb.PeakFilter(cutoff_frequency_hz=400, gain_db=-3, q=1.0),
        pb.PeakFilter(cutoff_frequency_hz=3000, gain_db=2, q=1.5),
        pb.HighShelfFilter(cutoff_frequency_hz=10000, gain_db=1.5, q=0.7071),
        pb.Compressor(threshold_db=-18, ratio=4, attack_ms=5, release_ms=100),
        pb.Gain(gain_db=3 - 6),
    ])
    verb = pb.Pedalboard([pb.Reverb(room_size=0.9, wet_level=1.0, dry_level=0.0)])
    dly = pb.Pedalboard([pb.Delay(delay_seconds=0.375, feedback=0.35, mix=1.0)])
    master = pb.Pedalboard([
        pb.LowShelfFilter(cutoff_frequency_hz=60, gain_db=1),
        pb.HighShelfFilter(cutoff_frequency_hz=12000, gain_db=1),
        pb.Compressor(threshold_db=-10, ratio=2, attack_ms=10, release_ms=200),
        pb.Limiter(threshold_db=-1, release_ms=100),
    ])
    pans = -1.0 + 2.0 * np.arange(n) / max(1, n - 1)
    theta = (pans + 1.0) * np.pi / 4
    gl = np.cos(theta).astype(np.float32)[None, :]
    gr = np.sin(theta).astype(np.float32)[None, :]
    t0 = time.thread_time()
    y = strip(x, RATE, buffer_size=BLOCK, reset=True)
    lr = np.stack([gl @ y, gr @ y])[:, 0, :]  # pan and sum: (2, frames)
    bus = lr + verb(lr * np.float32(_db(-12)), RATE, buffer_size=BLOCK, reset=True)
    bus += dly(lr * np.float32(_db(-18)), RATE, buffer_size=BLOCK, reset=True)
    master(bus, RATE, buffer_size=BLOCK, reset=True)
    cpu = time.thread_time() - t0
    return cpu / (frames / BLOCK) * 1e6
