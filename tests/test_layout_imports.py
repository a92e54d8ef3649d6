"""The house has no import circles: no Python module of the server imports
itself back through others (type-only imports under TYPE_CHECKING aside), and
no C file of the core uses a function from a file that uses one of its own
(the allocator is its own file: engine.c, plan.c and ring.c all use it)."""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"server": "mixgraph.server", "nodes": "mixgraph.nodes", "clients": "mixgraph.clients"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Modules of mixgraph this file imports at run time (anywhere in it)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks never run
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    package = module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if not base.startswith("mixgraph"):
                continue
            for alias in node.names:  # `from . import patch` names a module
                found.add(f"{base}.{alias.name}")
            found.add(base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mixgraph"))
    return found


def test_no_python_import_circle():
    modules = {}
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).glob("*.py")):
            name = pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"
            modules[name] = f
    graph = {m: {d for d in _imports(f, m) if d in modules and d != m}
             for m, f in modules.items()}
    # a package's __init__ is imported by each of its modules: not a dependency edge
    graph = {m: {d for d in deps if d not in PACKAGES.values()} for m, deps in graph.items()}
    assert len(modules) > 20 and sum(map(len, graph.values())) > 20
    assert _cycles(graph) == []


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None,
                    reason="needs gcc and nm")
def test_no_c_file_circle(tmp_path):
    spec = importlib.util.spec_from_file_location("build_core", ROOT / "csrc" / "build_core.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    sources = [ROOT / "csrc" / f for f in build.CORE] + sorted(build.NODES.glob("*.c"))
    defined: dict[str, str] = {}
    undefined: dict[str, set[str]] = {}
    for src in sources:
        obj = tmp_path / (src.stem + ".o")
        # -O0: quick, and every call it makes stays a visible symbol reference
        flags = [f for f in build.CFLAGS if not f.startswith("-O")] + ["-O0"]
        subprocess.run(["gcc", *flags, "-D_POSIX_C_SOURCE=200809L",
                        f"-I{ROOT / 'csrc'}", "-c", str(src), "-o", str(obj)], check=True)
        syms = subprocess.run(["nm", str(obj)], capture_output=True, text=True,
                              check=True).stdout
        undefined[src.name] = set()
        for line in syms.splitlines():
            m = re.match(r"\s*(?:[0-9a-f]+\s+)?([A-Za-z])\s+(\S+)$", line)
            if not m:
                continue
            kind, sym = m.groups()
            if kind in "TDBR":
                defined[sym] = src.name
            elif kind == "U":
                undefined[src.name].add(sym)
    graph = {f: {defined[s] for s in syms if s in defined} - {f}
             for f, syms in undefined.items()}
    assert graph["ring.c"] == {"alloc.c"}, graph["ring.c"]  # rings need only the allocator
    assert "engine.c" not in graph["alloc.c"]
    assert _cycles(graph) == []


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_the_worked_node_example_in_the_docs_compiles(tmp_path):
    """docs/architecture.md shows a whole node type: it compiles against the headers."""
    spec = importlib.util.spec_from_file_location("build_core", ROOT / "csrc" / "build_core.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    text = (ROOT / "docs" / "architecture.md").read_text()
    code = re.search(r"```c\n(/\* trim:.*?)```", text, re.S).group(1)
    src = tmp_path / "trim.c"
    src.write_text(code)
    r = subprocess.run(["gcc", *build.CFLAGS, "-Werror", "-D_POSIX_C_SOURCE=200809L",
                        f"-I{ROOT / 'csrc'}", "-c", str(src), "-o", str(tmp_path / "trim.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    syms = subprocess.run(["nm", str(tmp_path / "trim.o")], capture_output=True, text=True).stdout
    assert re.search(r"\bR mg_type_trim\b|\bD mg_type_trim\b", syms), syms
