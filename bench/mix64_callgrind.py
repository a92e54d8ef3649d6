"""Instructions per 64-frame block of mix64 (plain or --hard), per function,
under callgrind: the A/B figure that holds on a loaded machine.

    valgrind --tool=callgrind --toggle-collect=mg_engine_process_blocks \\
        --callgrind-out-file=cg.out python bench/mix64_callgrind.py [--hard] [--blocks 192]
    callgrind_annotate --inclusive=yes --auto=no cg.out | grep -E 'denoise|dsp_pitch|dsp_fft'

The session is bench/mix64.py's build_mix64 (64 channels unless --channels),
warmed for 375 blocks through mg_engine_process (not collected), then
--blocks blocks through mg_engine_process_blocks (collected): "Collected" /
blocks is the figure. Callgrind's call counts also count the warm-up's calls
(only its costs are left out), so divide costs, not calls. Under valgrind
the x86-64-v3 (AVX2) clones of the hot loops run, not the v4 ones.
"""

from __future__ import annotations

import argparse

import numpy as np
from mix64 import build_mix64

from mixgraph.server._core import ffi, lib
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hard", action="store_true", help="denoise on 8, autotune on 2 channels")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=192)
    a = ap.parse_args()
    e = Engine(48000, 0, 2, block=64)
    s = Session(e)
    build_mix64(s, a.channels, a.hard)
    out = np.zeros((max(a.blocks, 1) * 64, 2), np.float32)
    buf = ffi.from_buffer("float[]", out)
    for _ in range(375):  # warm: not collected
        lib.mg_engine_process(e.ptr, ffi.NULL, buf, 64)
    e.process(a.blocks * 64, None, block=64, out=out[: a.blocks * 64])
    s.close()
    e.free()


if __name__ == "__main__":
    main()
