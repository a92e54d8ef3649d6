"""cffi build script for mixgraph's C core (API mode).

Reads csrc/mg_api.h as the cdef, compiles the shared core (csrc/*.c: engine,
plan, ring, allocator) and every node type's file in nodes/ (nodes/<type>.c),
and generates the node registry from the `mg_type_<name>` definitions found
there, so adding a node type is adding one C file.
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# one C file per node type: nodes/<type>.c (the Python package mixgraph.nodes)
NODES = HERE.parent / "nodes"
# the shared core, in link order
CORE = ("engine.c", "plan.c", "ring.c", "alloc.c", "jack.c", "midi.c", "lv2host.c", "pool.c",
        "workers.c", "fft_check.c", "layout.c")
# -fno-trapping-math: FP operations are assumed not to trap (mixgraph never
# unmasks FP exceptions), so GCC may if-convert selects and vectorise loops
# such as denoise's gain rule. Values are unchanged: NaN and Inf keep their
# IEEE behaviour, which the NaN guards rely on (fast-math flags would break them).
# -ffp-contract=fast: a * b + c may become one fused multiply-add (rounded
# once, so at least as accurate) where the CPU has FMA, i.e. in the hot loops'
# x86-64-v3 clones (mg_node.h). No reassociation, no change to NaN/Inf; only
# the last bits differ from a CPU without FMA.
CFLAGS = ["-std=c11", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-fast-math",
          "-fno-trapping-math", "-ffp-contract=fast"]


def api_cdef(text: str | None = None) -> str:
    """The public header (`text`, else csrc/mg_api.h) without preprocessor lines
    (integer #defines kept): cffi's cdef (bench/ab_core.py uses it on old headers)."""
    lines = []
    if text is None:
        text = (HERE / "mg_api.h").read_text()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            if re.match(r"#define\s+MG_\w+\s+-?\w+\s*(/\*.*)?$", s):
                lines.append(re.sub(r"/\*.*", "", s))
            continue
        lines.append(line)
    return "\n".join(lines)


def node_types() -> list[str]:
    """Names of node types, in file-name order (the catalog's order)."""
    names = []
    for path in sorted(NODES.glob("*.c")):
        names += re.findall(r"^const mg_node_type mg_type_(\w+)\s*=", path.read_text(), re.M)
    return names


def registry_source() -> str:
    names = node_types()
    decls = "".join(f"extern const mg_node_type mg_type_{n};\n" for n in names)
    table = ", ".join(f"&mg_type_{n}" for n in names)
    return (
        '#include "mg_api.h"\n'
        + decls
        + f"const mg_node_type *const mg_types[] = {{{table}}};\n"
        + f"const int mg_n_types = {len(names)};\n"
    )


def have_jack() -> bool:
    """True when <jack/jack.h> compiles (Debian: libjack-jackd2-dev) and libjack
    links: then csrc/jack.c is the native JACK client, else a stub that says
    the build has no JACK. The build never fails for want of libjack."""
    import os
    import shutil
    import subprocess
    import tempfile

    if os.environ.get("MIXGRAPH_NO_JACK"):
        return False
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("#include <jack/jack.h>\n"
                       "int main(void) { return jack_get_version_string() == 0; }\n")
        r = subprocess.run([*cc.split(), str(src), "-o", str(Path(tmp) / "t"), "-ljack"],
                           capture_output=True)
    return r.returncode == 0


HAVE_JACK = have_jack()


def lilv_flags() -> tuple[list[str], list[str]] | None:
    """(include dirs, libraries) of lilv when pkg-config knows lilv-0 and
    <lilv/lilv.h> compiles (Debian: liblilv-dev): then LV2 plugins can be
    hosted (csrc/lv2host.c, nodes/lv2.c, MG_HAVE_LILV), else the lv2 type
    says the build has no LV2 support. The build never fails for want of lilv."""
    import os
    import shutil
    import subprocess
    import tempfile

    if os.environ.get("MIXGRAPH_NO_LILV") or not shutil.which("pkg-config"):
        return None
    r = subprocess.run(["pkg-config", "--cflags", "--libs", "lilv-0"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        return None
    words = r.stdout.split()
    incs = [w[2:] for w in words if w.startswith("-I")]
    libs = [w[2:] for w in words if w.startswith("-l")]
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("#include <lilv/lilv.h>\n#include <lv2/options/options.h>\n"
                       "int main(void) { LilvWorld *w = lilv_world_new(); "
                       "lilv_world_free(w); return 0; }\n")
        r2 = subprocess.run([*cc.split(), str(src), "-o", str(Path(tmp) / "t"), *words],
                            capture_output=True)
    return (incs, libs) if r2.returncode == 0 else None


LILV = lilv_flags()
HAVE_LILV = LILV is not None

ffibuilder = FFI()
ffibuilder.cdef(api_cdef())
_sources = [str(HERE / f) for f in CORE]
_sources += [str(p) for p in sorted(NODES.glob("*.c"))]
ffibuilder.set_source(
    "mixgraph.server._core",
    registry_source(),
    sources=[str(Path(s).relative_to(HERE.parent)) for s in _sources],
    include_dirs=["csrc"] + (LILV[0] if LILV else []),
    define_macros=[("_POSIX_C_SOURCE", "200809L")] + ([("MG_HAVE_JACK", "1")] if HAVE_JACK else [])
    + ([("MG_HAVE_LILV", "1")] if HAVE_LILV else []),
    extra_compile_args=CFLAGS,
    libraries=["m", "pthread"] + (["jack"] if HAVE_JACK else []) + (LILV[1] if LILV else []),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
