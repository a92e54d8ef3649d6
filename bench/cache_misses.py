"""Cache lines a cold cycle misses: the mix64 session (bench/mix64.py) run one
64-frame block at a time under callgrind's cache simulation, with N MB of
other memory written between blocks (as bench/cold_cache.py does natively),
and the simulated misses per block counted inside mg_engine_process_blocks
only.

    python bench/cache_misses.py [--channels 64] [--mb 4] [--blocks 40] [--sets 13]
                                 [--d1 32768,8,64] [--ll 2097152,16,64] [--top 25] [--hard]
                                 [--core SO] [--lines N]

A live cycle runs after jackd, the other clients and mixgraph's own control
thread have been through the caches (docs/scale-out.md "Where a live cycle's
~100 µs go"): what it costs is mostly the lines it touches that are no longer
there. This counts them with a model that does not move with the machine's
load: D1 misses (lines fetched into the first level: every line a block
touches that the other memory evicted) and LL misses (lines fetched from
beyond the simulated last level; with the default 2 MB and 4 MB written
between blocks, nearly every line the block touches). Both are split into
the engine's own code (csrc/: run_plan, the mixing, the ramps) and the node
types' (nodes/, the DSP headers), and the functions with the most are listed.

--hard counts the hard mix (bench/mix64.py --hard: denoise on channels 1-8,
autotune on 9-10); their frames fall one block in four, so --blocks a
multiple of 4.

--core SO counts that build of the C core (bench/ab_core.py's load_core)
instead of the installed one: an A/B of two builds, one run each.

--lines N lists the N source lines with the most LL misses, with their
code: which data a cold block fetches (a node's step line, the prebuilt
calls, parameter values, states, buffers, mix ops), since a function's
misses mix several. docs/scale-out.md ("What a cold cycle's lines are") sorts
them so.

--sets N sets N faders' gains per block (a fader move, each restarting that
fader's smoothing ramp), the OSC flood of bench/jackd.py (10,000 messages a
second is 13.3 per 64-frame block).

Runs itself under valgrind (it must be installed); the Python between blocks
(the writes, the sets) is simulated too, so the caches see it, but only
mg_engine_process_blocks is counted. A 64-channel run takes a few minutes.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(a: argparse.Namespace) -> None:
    """The part that runs under valgrind: build, warm up, then the blocks."""
    sys.path.insert(0, str(HERE))
    if a.core:
        from ab_core import load_core
        load_core(a.core)
    import numpy as np
    from mix64 import build_mix64

    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    e = Engine(48000, 0, 2, block=64)
    s = Session(e)
    build_mix64(s, a.channels, a.hard)
    out = np.zeros((64, 2), np.float32)
    e.process(64 * 50, None)  # warm-up: mg_engine_process, not counted
    junk = np.ones(max(1, (a.mb << 20) >> 3))
    n = (a.mb << 20) >> 3
    k = 0
    for _ in range(a.blocks):
        for _set in range(a.sets):
            k += 1
            s.set_param(f"fader{k % a.channels}", "gain", -6.0 - (k % 40) * 0.25)
        if n:
            junk[:n] += 1.0
        e.process(64, None, block=64, out=out)
    s.close()
    e.free()


EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def parse(ann: str) -> tuple[dict[str, int], list[tuple[str, dict[str, int]]]]:
    """callgrind_annotate's totals and per-function rows (its first table)."""
    total: dict[str, int] = {}
    rows: list[tuple[str, dict[str, int]]] = []
    events: list[str] = []
    section = 0
    for line in ann.splitlines():
        if line.startswith("Events shown:"):
            events = line.split(":", 1)[1].split()
            continue
        if line.rstrip().endswith("file:function"):
            section = 1
            continue
        if section == 1 and line.startswith("-- "):  # the annotated source after it
            break
        toks = re.sub(r"\(\s*[\d.]+%\)", " ", line).split()
        if not events or len(toks) <= len(events):
            continue
        if not all(re.fullmatch(r"[\d,]+|\.", t) for t in toks[: len(events)]):
            continue
        d = {ev: int(t.replace(",", "")) if t != "." else 0
             for ev, t in zip(events, toks[: len(events)], strict=True)}
        name = " ".join(toks[len(events):])
        if name == "PROGRAM TOTALS":
            total = d
        elif section == 1:
            rows.append((name, d))
    return total, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--mb", type=int, default=4, help="MB of other memory written between blocks")
    ap.add_argument("--blocks", type=int, default=40, help="blocks counted")
    ap.add_argument("--sets", type=int, default=13, help="fader gain sets per block")
    ap.add_argument("--d1", default="32768,8,64", help="size,assoc,line of the first level")
    ap.add_argument("--ll", default="2097152,16,64", help="size,assoc,line of the last level")
    ap.add_argument("--top", type=int, default=25, help="functions listed")
    ap.add_argument("--hard", action="store_true", help="denoise x8, autotune x2")
    ap.add_argument("--core", default=None, metavar="SO", help="this build of the C core")
    ap.add_argument("--lines", type=int, default=0, metavar="N",
                    help="also the N source lines with the most LL misses")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return
    with tempfile.TemporaryDirectory() as d:
        outf = Path(d) / "cg.out"
        cmd = ["valgrind", "--tool=callgrind", "--cache-sim=yes", f"--D1={a.d1}",
               f"--LL={a.ll}", f"--I1={a.d1}", "--toggle-collect=mg_engine_process_blocks",
               f"--callgrind-out-file={outf}", sys.executable, __file__, "--child",
               "--channels", str(a.channels), "--mb", str(a.mb), "--blocks", str(a.blocks),
               "--sets", str(a.sets)]
        cmd += (["--hard"] if a.hard else []) + (["--core", a.core] if a.core else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ann = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                              str(outf)], check=True, capture_output=True, text=True).stdout
        by_line = line_costs(outf) if a.lines else {}
    total, rows = parse(ann)
    nb = a.blocks
    print(f"# mix64{' --hard' if a.hard else ''} {a.channels} ch, {a.mb} MB written between "
          f"blocks, {a.sets} fader sets a block; callgrind D1 {a.d1}, LL {a.ll}; "
          f"per 64-frame block (mean of {nb})")
    print_rows(total, rows, nb, a.top)
    if a.lines:
        print_lines(by_line, nb, a.lines)


def print_rows(total: dict[str, int], rows: list[tuple[str, dict[str, int]]], nb: int,
               top: int) -> None:
    """The totals, the engine/node split and the top functions, per block."""
    def dm(d: dict[str, int]) -> tuple[int, int, int]:
        return (d.get("D1mr", 0) + d.get("D1mw", 0), d.get("DLmr", 0) + d.get("DLmw", 0),
                d.get("I1mr", 0))

    t = dm(total)
    print(f"{'':40} {'Ir':>9} {'D1 miss':>8} {'LL miss':>8} {'I1 miss':>8}")
    print(f"{'total':40} {total.get('Ir', 0) / nb:9.0f} {t[0] / nb:8.0f} {t[1] / nb:8.0f} "
          f"{t[2] / nb:8.0f}")
    groups: dict[str, list[int]] = {}
    for name, d in rows:
        f = name.split(":")[0]
        g = ("nodes (nodes/, csrc/dsp_*.h)" if "nodes/" in f or "dsp_" in f else
             "engine (csrc/)" if "csrc/" in f else "other (libc, libm)")
        v = groups.setdefault(g, [0, 0, 0, 0])
        x = dm(d)
        v[0] += d.get("Ir", 0)
        v[1] += x[0]
        v[2] += x[1]
        v[3] += x[2]
    for g, v in sorted(groups.items()):
        print(f"{g:40} {v[0] / nb:9.0f} {v[1] / nb:8.0f} {v[2] / nb:8.0f} {v[3] / nb:8.0f}")
    rows.sort(key=lambda r: -dm(r[1])[1])
    print(f"# the {top} functions with the most LL misses")
    for name, d in rows[:top]:
        x = dm(d)
        short = name.split(" [")[0].split("/")[-1].replace(".arch_x86_64_v3", "")[:40]
        print(f"{short:40} {d.get('Ir', 0) / nb:9.0f} {x[0] / nb:8.0f} {x[1] / nb:8.0f} "
              f"{x[2] / nb:8.0f}")


def line_costs(path: Path) -> dict[tuple[str, int], dict[str, int]]:
    """Self cost per (source file, line) from a callgrind output file (its
    name compression, relative line numbers and inlined files followed; the
    inclusive cost lines after `calls=` skipped)."""
    names: dict[str, str] = {}
    events: list[str] = []
    acc: dict[tuple[str, int], dict[str, int]] = {}
    fi = ""
    last = 0
    skip = False

    def name(v: str) -> str:
        m = re.match(r"\((\d+)\)(?:\s+(.*))?", v)
        if not m:
            return v
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), m.group(1))

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            key, eq, val = line.partition("=")
            if eq and key in ("fl", "fi", "fe"):
                fi = name(val)
                continue
            if eq and key in ("cfl", "cfi"):
                name(val)
                continue
            if eq and key == "calls":
                skip = True
                continue
            if eq or not line or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            toks = line.split()
            pos = toks[0]
            last = (last + int(pos[1:]) if pos[0] == "+" else last - int(pos[1:])
                    if pos[0] == "-" else last if pos == "*" else int(pos))
            if skip:
                skip = False
                continue
            d = acc.setdefault((fi, last), {})
            for ev, t in zip(events, toks[1:], strict=False):
                d[ev] = d.get(ev, 0) + int(t)
    return acc


def print_lines(acc: dict[tuple[str, int], dict[str, int]], nb: int, top: int) -> None:
    """The `top` source lines with the most LL misses per block, with their code."""
    def ll(d: dict[str, int]) -> int:
        return d.get("DLmr", 0) + d.get("DLmw", 0)

    rows = sorted(acc.items(), key=lambda kv: -ll(kv[1]))[:top]
    print(f"# the {top} source lines with the most LL misses (reads + writes) per block")
    root = HERE.parent
    for (f, n), d in rows:
        src = Path(f) if Path(f).is_absolute() else root / f
        try:
            code = src.read_text().splitlines()[n - 1].strip()
        except (OSError, IndexError):
            code = "?"
        short = f"{Path(f).parent.name}/{Path(f).name}:{n}"
        print(f"{ll(d) / nb:7.1f} {d.get('DLmw', 0) / nb:6.1f}w  {short:24} {code[:70]}")


if __name__ == "__main__":
    main()
