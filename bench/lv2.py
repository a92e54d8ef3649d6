"""The cost of hosting LV2 plugins (issue 19, "Figures"):

    python bench/lv2.py [--seconds 10] [--repeat 3]

Offline, on this thread (no audio clock): an engine with input -> node ->
output, `--seconds` of noise in 64-frame blocks, mono. For each case, the
best of `--repeat` runs as µs per 64-frame block of the whole engine, and the
same minus an engine with a plain wire (input -> output), i.e. the node's
own cost:

- an LV2 trivial plugin (x42 nodelay, delay 0) against the built-in `gain`:
  the per-node overhead of hosting;
- x42-eq (fil4, 4 bell sections at +/-6 dB) and LSP para EQ x16 (4 bells) against
  the built-in `eq` with 4 bells;
- the LSP compressor against the built-in `compressor`;
- lv2apply (lilv-utils) on the same plugin and input, as a reference: it runs
  the plugin one frame per run() and reads/writes the files, so its figure is
  its whole wall time per 64 frames of audio.

Figures, not assertions; the machine is shared, so quote several runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
BLOCK = 64
FIL4 = "http://gareus.org/oss/lv2/fil4#mono"
LSPEQ = "http://lsp-plug.in/plugins/lv2/para_equalizer_x16_mono"
LSPCOMP = "http://lsp-plug.in/plugins/lv2/compressor_mono"
NODELAY = "http://gareus.org/oss/lv2/nodelay"

CASES = {
    "wire": (None, {}),
    "gain": ("gain", {"gain": -3.0}),
    "lv2 nodelay (0)": ("lv2", {"uri": NODELAY, "delay": 0}),
    "eq (4 bells)": ("eq", {"b1gain": 6.0, "b2gain": -6.0, "b3gain": 6.0, "b4gain": -6.0}),
    "lv2 x42-eq (4 bells)": ("lv2", {"uri": FIL4, "gain1": 6.0, "gain2": -6.0,
                                     "gain3": 6.0, "gain4": -6.0}),
    "lv2 LSP para x16 (4 bells)": ("lv2", {"uri": LSPEQ, **{f"ft_{k}": 1 for k in range(4)},
                                           **{f"g_{k}": 2.0 if k % 2 else 0.5
                                              for k in range(4)},
                                           "f_0": 100.0, "f_1": 500.0, "f_2": 2000.0,
                                           "f_3": 8000.0}),
    "compressor": ("compressor", {"threshold": -30.0}),
    "lv2 LSP compressor": ("lv2", {"uri": LSPCOMP, "al": 0.03}),
}
LV2APPLY = {"lv2 nodelay (0)": (NODELAY, {"delay": 0}),
            "lv2 x42-eq (4 bells)": None,  # lv2apply refuses x42-eq: it has atom ports
            "lv2 LSP para x16 (4 bells)": (LSPEQ, {"ft_0": 1, "g_0": 0.5}),
            "lv2 LSP compressor": (LSPCOMP, {"al": 0.03})}


def engine_us(typ: str | None, settings: dict, x: np.ndarray) -> float:
    """µs per 64-frame block of an engine running input -> node -> output."""
    e = Engine(RATE, 1, 1)
    s = Session(e, confine_paths=False)
    try:
        s.add_node("input", "in", {"channels": 1})
        s.add_node("output", "out", {"channels": 1})
        if typ is None:
            s.connect("in", "out")
        else:
            s.add_node(typ, "n", {**settings, **({} if typ == "lv2" else {"channels": 1})})
            s.connect("in", "n")
            s.connect("n", "out")
        s.commit()
        e.process(RATE // 10, x[: RATE // 10], block=BLOCK)  # warm up, fades done
        t0 = time.perf_counter()
        e.process(len(x), x, block=BLOCK)
        return (time.perf_counter() - t0) * 1e6 / (len(x) / BLOCK)
    finally:
        s.close()
        e.free()


def lv2apply_us(uri: str, params: dict, wav: Path, out: Path) -> float | None:
    exe = shutil.which("lv2apply")
    if exe is None:
        return None
    cmd = [exe, "-i", str(wav), "-o", str(out)]
    for k, v in params.items():
        cmd += ["-c", k, str(v)]
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, uri], capture_output=True)
    if r.returncode != 0:
        return None
    frames = sf.info(str(wav)).frames
    return (time.perf_counter() - t0) * 1e6 / (frames / BLOCK)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    n = int(a.seconds * RATE) // BLOCK * BLOCK
    x = (0.1 * np.random.default_rng(1).standard_normal((n, 1))).astype(np.float32)
    best = {name: min(engine_us(t, st, x) for _ in range(a.repeat))
            for name, (t, st) in CASES.items()}
    wire = best["wire"]
    print(f"{'case':32} {'engine µs/block':>16} {'node µs/block':>14} {'lv2apply µs/64 fr':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "in.wav"
        sf.write(wav, x, RATE, subtype="FLOAT")
        for name, us in best.items():
            ref = LV2APPLY.get(name)
            la = (min(v for v in (lv2apply_us(ref[0], ref[1], wav, Path(tmp) / "o.wav")
                                  for _ in range(a.repeat)) if v is not None)
                  if ref else None)
            print(f"{name:32} {us:16.2f} {us - wire:14.2f} "
                  f"{'' if la is None else f'{la:18.2f}'}")


if __name__ == "__main__":
    main()
