"""A/B of two builds of the C core on mix64, alternating on one core.

    python bench/ab_core.py A.so B.so [--channels 64] [--rounds 15] [--blocks 1500]

Each build runs in a worker process of its own (the core is loaded from the
given file as mixgraph.server._core), with the mix64 session built and warmed
once; then the driver asks A and B in turn, round after round, to run
--blocks 64-frame blocks, and each reports the CPU time (thread time) per
block. Both workers are pinned to the same core and never run at once, so a
drift in the machine's load falls on both alike. Prints the median us per
block of each, and the median and range of the per-round ratio B / A.
To make A, copy server/_core.abi3.so aside before rebuilding.

--threads 2: each build runs the session on 2 audio threads, not pinned, and
reports wall-clock us per block (the figure several threads improve), still
in alternating rounds; --sched SPIN,MIN sets mg_engine_set_sched (0,-2: the
parallel form on the audio thread alone, CPU time again). Under `chrt -f 10`
(the workers take the audio thread's policy) a break before every turn lets
the real-time budget refill (bench/cpu.py, rt_break).

--hard: the hard mix (bench/mix64.py --hard: denoise on channels 1-8,
autotune on 9-10) in both builds; `--hard b` makes only B the hard mix
(give the same build twice: the hard stages' own cost, in alternating rounds).

--mb N writes N MB of other memory before every block (as bench/cold_cache.py
does) and times each block alone: a round's figure is then the median block
(not the mean), the cold-cache cost of each build.

Builds of another commit: a build runs with the Python side (server/,
nodes/, bench/mix64.py) of the commit it was built from, so an older .so
whose C API (csrc/mg_api.h) differs from this checkout's still loads. The
commit is, in this order: a suffix `@REV` on the argument (`old.so@e0aa4a1`);
a commit id of 7+ hex digits in the file's name (`base_e0aa4a1.so`), when its
mg_api.h is the build's API; else the newest commit in the history of
csrc/mg_api.h whose header declares exactly the build's API (the names of its
functions and their arity, the integer constants and their values, the
fields of its structs: compared with what the .so's cffi module holds).
A build whose API is this checkout's runs with this checkout. The other
commit's files come out of git (`git archive`) into a cache directory
(--trees, default $TMPDIR/mixgraph-ab-trees/<commit>); the worker loads
`mixgraph` from there. Each worker prints the sha256 of its first render
(48000 frames), and the summary says whether the two builds rendered the same
samples (a pure speed-up must) or the session differed (the two commits'
bench/mix64.py differ; the line says so).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from cpu import rt_break  # noqa: E402

# ---- which commit's Python side a build runs with ---------------------------

API_H = "csrc/mg_api.h"
# what a worker needs of a commit's tree: the packages and the session's script
TREE_PATHS = ("server", "nodes", "clients", "bench")


def git(*args: str) -> str:
    """Run git in this checkout; its stdout ('' when it fails)."""
    r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


def header_cdef(text: str) -> str:
    """mg_api.h's text as cffi's cdef: csrc/build_core.py's api_cdef."""
    spec = importlib.util.spec_from_file_location(
        "mg_build_core", HERE.parent / "csrc" / "build_core.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build.api_cdef(text)


def header_api(text: str) -> dict[str, Any]:
    """The API a version of mg_api.h declares (see build_api): functions and
    their arity, integer constants and their values, struct field names."""
    from cffi import FFI
    ffi = FFI()
    ffi.cdef(header_cdef(text))
    decls = ffi._parser._declarations  # noqa: SLF001 (cffi has no public form)
    funcs, structs = {}, {}
    for key, (tp, _q) in decls.items():
        kind, _, name = key.partition(" ")
        if kind == "function":
            funcs[name] = [len(tp.args), bool(tp.ellipsis)]
        elif kind in ("typedef", "struct") and getattr(tp, "fldnames", None) is not None:
            structs[("struct " if kind == "struct" else "") + name] = list(tp.fldnames)
    consts = {k: int(v) for k, v in ffi._parser._int_constants.items()}  # noqa: SLF001
    return {"functions": funcs, "constants": consts, "structs": structs}


def build_api(so: str) -> dict[str, Any]:
    """The API the build `so` holds (its cffi module's lib and types), in
    header_api's form."""
    load_core(so)
    mod = sys.modules["mixgraph.server._core"]
    ffi, lib = mod.ffi, mod.lib  # type: ignore[attr-defined]
    funcs, consts, structs = {}, {}, {}
    for name in dir(lib):
        obj = getattr(lib, name)
        if isinstance(obj, int):
            consts[name] = obj
            continue
        ct = ffi.typeof(obj)
        if ct.kind == "function":
            funcs[name] = [len(ct.args), bool(ct.ellipsis)]
    typedefs, snames, _unions = ffi.list_types()
    for name in typedefs + [f"struct {n}" for n in snames]:
        ct = ffi.typeof(name)
        if ct.kind != "struct":
            continue
        try:
            ffi.sizeof(ct)  # lays the struct out (reading .fields before aborts)
        except ffi.error:
            continue  # opaque
        structs[name] = [f for f, _ in ct.fields]
    return {"functions": funcs, "constants": consts, "structs": structs}


def api_at(rev: str) -> dict[str, Any] | None:
    """header_api of mg_api.h at commit rev (None: no such file there)."""
    text = git("show", f"{rev}:{API_H}")
    return header_api(text) if text else None


def commit_for(arg: str) -> tuple[str, str | None, str]:
    """Split `file.so[@REV]` and find the commit whose Python side the build
    runs with: (file, commit or None for this checkout, how it was found)."""
    so, _, rev = arg.partition("@")
    if not os.path.exists(so):
        sys.exit(f"ab_core: no file {so}")
    if rev:
        full = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
        if not full:
            sys.exit(f"ab_core: {rev} is no commit of {ROOT}")
        return so, full, f"given ({rev})"
    out = subprocess.run([sys.executable, __file__, "x", "x", "--api", so],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ab_core: cannot load {so}:\n{out.stderr}")
    api = json.loads(out.stdout)
    if api == header_api((ROOT / API_H).read_text()):
        return so, None, "its API is this checkout's"
    for hexid in re.findall(r"[0-9a-f]{7,40}", Path(so).name):
        full = git("rev-parse", "--verify", "--quiet", f"{hexid}^{{commit}}").strip()
        if full and api_at(full) == api:
            return so, full, f"named in the file ({hexid})"
    for full in git("log", "--format=%H", "--", API_H).split():
        if api_at(full) == api:
            return so, full, "the newest commit whose mg_api.h declares its API"
    sys.exit(f"ab_core: no commit of {ROOT} declares the API of {so}; give one: {so}@REV")


def tree_for(commit: str, trees: Path) -> Path:
    """A copy of the commit's Python side (TREE_PATHS, from git archive),
    made once under `trees`."""
    dest = trees / commit
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    have = [p for p in TREE_PATHS if git("ls-tree", "--name-only", commit, p).strip()]
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, *have],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / ".complete").write_text(commit + "\n")
    return dest


def use_tree(tree: Path) -> None:
    """Import `mixgraph` (server, nodes, clients) and bench/mix64.py from
    `tree` in this process instead of this checkout (before either is
    imported): the editable install's finder is taken off sys.meta_path."""
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not getattr(f, "__module__", "").startswith("__editable__")
                        and not type(f).__module__.startswith("__editable__")]
    pkg = types.ModuleType("mixgraph")
    pkg.__path__ = [str(tree)]
    sys.modules["mixgraph"] = pkg
    sys.path.insert(0, str(tree / "bench"))
    sys.modules.pop("cpu", None)  # its own bench's helpers, as its mix64.py expects


def load_core(so: str) -> None:
    """Make the build `so` the module mixgraph.server._core (before anything
    imports it): an A/B of two builds of the C core, one per process."""
    name = "mixgraph.server._core"
    loader = importlib.machinery.ExtensionFileLoader(name, so)
    spec = importlib.util.spec_from_file_location(name, so, loader=loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules[name] = mod


def worker(so: str, channels: int, blocks: int, threads: int = 1,
           sched: str | None = None, mb: int = 0, hard: bool = False,
           tree: str | None = None) -> None:
    """Serve rounds on stdin/stdout: each line in runs `blocks` blocks.
    tree: the Python side of the build's commit (tree_for), or None: this
    checkout's."""
    if tree:
        use_tree(Path(tree))
    else:
        sys.path.insert(0, str(HERE))
    load_core(so)
    import numpy as np
    from mix64 import build_mix64

    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    e = Engine(48000, 0, 2, threads=threads, block=64)
    if sched:
        e.set_sched(*(float(x) for x in sched.split(",")))
    s = Session(e)
    if hard:
        build_mix64(s, channels, hard)
    else:
        build_mix64(s, channels)
    out = np.zeros((blocks * 64, 2), np.float32)
    first = e.process(48000, None, block=64)
    print("ready " + hashlib.sha256(first.tobytes()).hexdigest()[:16], flush=True)
    clock = time.perf_counter if threads > 1 and sched != "0,-2" else time.thread_time
    n = (mb << 20) >> 3
    junk = np.ones(max(n, 1))
    one = np.zeros((64, 2), np.float32)
    for _ in sys.stdin:
        if n:
            ts = []
            for _ in range(blocks):
                junk[:n] += 1.0
                t0 = clock()
                e.process(64, None, block=64, out=one)
                ts.append(clock() - t0)
            s.service()
            print(f"{statistics.median(ts) * 1e6:.4f}", flush=True)
            continue
        t0 = clock()
        e.process(blocks * 64, None, block=64, out=out)
        dt = clock() - t0
        s.service()
        print(f"{dt / blocks * 1e6:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--blocks", type=int, default=1500)
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sched", default=None, metavar="SPIN,MIN")
    ap.add_argument("--mb", type=int, default=0, help="MB written before every block")
    ap.add_argument("--hard", nargs="?", const="ab", choices=("ab", "b"), default=None,
                    help="the hard mix in both builds (ab) or in B only (b)")
    ap.add_argument("--trees", default=os.path.join(tempfile.gettempdir(), "mixgraph-ab-trees"),
                    help="where other commits' Python sides are unpacked")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-hard", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-tree", help=argparse.SUPPRESS)
    ap.add_argument("--api", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.api:  # a build's API as JSON (commit_for asks in a process of its own)
        print(json.dumps(build_api(a.api)))
        return
    if a.worker:
        if a.threads < 2:
            os.sched_setaffinity(0, {a.cpu})
        worker(a.worker, a.channels, a.blocks, a.threads, a.sched, a.mb, a.worker_hard,
               a.worker_tree)
        return
    procs, hashes, trees = [], [], []
    for k, arg in enumerate((a.a, a.b)):
        so, commit, how = commit_for(arg)
        tree = tree_for(commit, Path(a.trees)) if commit else None
        trees.append(tree or ROOT)
        print(f"{'AB'[k]}: {so}, Python side of "
              f"{commit[:12] if commit else 'this checkout'} ({how})", flush=True)
        hard = a.hard == "ab" or (a.hard == "b" and k == 1)
        p = subprocess.Popen([sys.executable, __file__, "x", "x", "--worker", so,
                              "--channels", str(a.channels), "--blocks", str(a.blocks),
                              "--cpu", str(a.cpu), "--threads", str(a.threads), "--mb", str(a.mb)]
                             + (["--sched", a.sched] if a.sched else [])
                             + (["--worker-hard"] if hard else [])
                             + (["--worker-tree", str(tree)] if tree else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = p.stdout.readline().split()
        if not line or line[0] != "ready":
            sys.exit(f"ab_core: the worker of {so} did not start (its error is above)")
        hashes.append(line[1] if len(line) > 1 else "?")
        procs.append(p)
    same_script = all((t / "bench" / "mix64.py").read_bytes()
                      == (trees[0] / "bench" / "mix64.py").read_bytes() for t in trees)
    if hashes[0] == hashes[1]:
        print(f"renders: the same samples ({hashes[0]})", flush=True)
    else:
        why = (" (the two builds render differently: bench/mix64.py is the same)" if same_script
               else " (bench/mix64.py differs between the two commits too)")
        print(f"renders: DIFFER, A {hashes[0]}, B {hashes[1]}{why}", flush=True)
    runs: list[list[float]] = [[], []]
    for r in range(a.rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for k in order:
            rt_break()  # under chrt: the real-time budget refills (bench/cpu.py)
            p = procs[k]
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            runs[k].append(float(p.stdout.readline()))
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
    ma, mb = statistics.median(runs[0]), statistics.median(runs[1])
    ratios = sorted(y / x for x, y in zip(runs[0], runs[1], strict=True))
    where = f"core {a.cpu}" if a.threads < 2 else f"{a.threads} threads, wall-clock"
    cold = f", {a.mb} MB written before each block (median block)" if a.mb else ""
    mix = {"ab": " --hard", "b": " (B: --hard)"}.get(a.hard or "", "")
    print(f"mix64{mix} {a.channels} ch{cold}, {a.rounds} alternating rounds of {a.blocks} blocks "
          f"on {where} "
          f"(load {os.getloadavg()[0]:.1f}): A {ma:.2f} us/block, B {mb:.2f} "
          f"(B/A {mb / ma:.3f}; per round median {statistics.median(ratios):.3f}, "
          f"{ratios[0]:.3f}..{ratios[-1]:.3f}); best A {min(runs[0]):.2f}, B {min(runs[1]):.2f} "
          f"(B/A {min(runs[1]) / min(runs[0]):.3f})")


if __name__ == "__main__":
    main()
