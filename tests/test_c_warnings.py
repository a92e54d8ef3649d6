"""The C core compiles warning-free with the flags the build uses (-Wall -Wextra),
file by file: a warning the pip build prints goes unseen, so it fails here."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "csrc").glob("*.c")) + sorted((ROOT / "nodes").glob("*.c"))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_every_c_file_compiles_without_warnings():
    spec = importlib.util.spec_from_file_location("build_core", ROOT / "csrc" / "build_core.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)  # the flags the pip build compiles with
    bad = {}
    # csrc/jack.c twice where libjack is there: the native client and the stub
    runs = [(src, []) for src in SOURCES]
    runs += [(src, ["-DMG_HAVE_JACK=1"]) for src in SOURCES
             if src.name == "jack.c" and build.HAVE_JACK]
    for src, extra in runs:
        r = subprocess.run(["gcc", *build.CFLAGS, *extra, "-Werror", "-D_POSIX_C_SOURCE=200809L",
                            f"-I{ROOT / 'csrc'}", "-fsyntax-only", str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            bad[src.name + " ".join(extra)] = r.stderr.strip().splitlines()[:3]
    assert SOURCES and not bad, bad
