"""The README's tour runs as written (issue 12, item 7): its commands are read out of
README.md and run in order in a shell against a fresh `mixgraph serve`, so the tour
cannot rot. Each command must succeed, and each reply line the README shows must
come back (its address and first argument: /done /node/g/gain ..., /node/m/peak ...).

The only substitutions: the server runs on a free port (oscsend's `localhost 8000`
and $MIXGRAPH_PORT for `mixgraph`), HOME is a fresh directory (so
~/.local/state/mixgraph is the server's state), and `mixgraph serve` is the
daemon the test starts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_util import Daemon

README = Path(__file__).resolve().parent.parent / "README.md"


def tour_steps(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of every `$ ` line of the tour's code blocks;
    a heredoc (<<'EOF' ... EOF) belongs to its command."""
    tour = text[text.index("## A short tour"):text.index("## Documentation")]
    lines = [x[4:] for x in tour.splitlines() if x.startswith("    ")]
    steps: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("$ "):
            if steps and line.strip() and not line.startswith(("│", "╭", "╰")):
                steps[-1][1].append(line)
            continue
        cmd = line[2:]
        m = re.search(r"<<'(\w+)'", cmd)
        if m:
            body = []
            while lines[i] != m.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            cmd = "\n".join([cmd, *body, m.group(1)])
        steps.append((cmd, []))
    return steps


def test_tour_is_found():
    steps = tour_steps(README.read_text())
    cmds = [c for c, _ in steps]
    assert cmds[0] == "mixgraph serve"
    assert sum(c.startswith("oscsend") for c in cmds) == 7
    assert any("/node/dn/learn" in c for c in cmds) and any("--target-lufs" in c for c in cmds)
    assert any("analyze master.wav --plot" in c for c in cmds)


def test_readme_tour_runs(tmp_path):
    if shutil.which("oscsend") is None:
        if os.environ.get("CI"):
            pytest.fail("oscsend (liblo-tools) is missing")
        pytest.skip("oscsend (liblo-tools) is not installed")
    home = tmp_path / "home"
    (home / ".local" / "state").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    d = Daemon(home / ".local" / "state" / "mixgraph", "--backend", "null")
    env = dict(os.environ, HOME=str(home), MIXGRAPH_PORT=str(d.port), COLUMNS="120",
               NO_COLOR="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}"
               f"{os.environ.get('PATH', '')}")
    try:
        steps = tour_steps(README.read_text())
        for cmd, expect in steps:
            if cmd == "mixgraph serve":
                continue
            run = cmd.replace("localhost 8000 ", f"localhost {d.port} ")
            r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", run], cwd=work, env=env,
                               capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
            out = r.stdout + r.stderr
            assert r.returncode == 0, f"{cmd}\n{out}\n{d.output()[-2000:]}"
            got = [x.split() for x in out.splitlines()]
            for line in expect:
                if line.strip() == "...":
                    continue
                words = line.split("#")[0].split()
                key = words[:2] if words[0] in ("/done", "/fail") else words[:1]
                assert any(g[:len(key)] == key for g in got), f"{cmd}: wanted {line!r}\n{out}"
                if words[0].startswith("/") and (words[0] == "/done" or len(words) == 2):
                    # the reply's arguments as the README shows them (measured values
                    # within what a reader would call the same)
                    g = next(g for g in got if g[:len(key)] == key)
                    for w, v in zip(words[len(key):], g[len(key):], strict=False):
                        try:
                            assert float(v) == pytest.approx(float(w), abs=0.5, rel=0.02), \
                                f"{cmd}: wanted {line!r}, got {' '.join(g)}"
                        except ValueError:
                            assert v == w, f"{cmd}: wanted {line!r}, got {' '.join(g)}"
        assert (work / "master.png").stat().st_size > 1000
        assert "internal error" not in d.output() and "Traceback" not in d.output()
    finally:
        d.stop()
