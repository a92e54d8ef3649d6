""".ci/setup.sh (shared by .ci/serve and .ci/run; issue 12, item 8): a second set-up
installs nothing that is installed and current (no apt-get update, no pip), and it
says where the `mixgraph` command is when that is not on PATH, with a link in
~/.local/bin when asked (MIXGRAPH_LINK=1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def setup(home: Path) -> subprocess.CompletedProcess:
    # bash is installed on every Debian system: the apt step has nothing to do
    script = (f'set -euo pipefail\nAPT_PACKAGES=(bash)\nMIXGRAPH_EXTRAS="[test]"\n'
              f'PYTHON={sys.executable}\nsource {ROOT}/.ci/setup.sh\necho "PY=$PY"\n')
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != Path(venv_bin).resolve())
    env = dict(os.environ, HOME=str(home), PATH=path, MIXGRAPH_LINK="1")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=900, stdin=subprocess.DEVNULL)


def test_setup_skips_what_is_current_and_says_where_mixgraph_is(tmp_path):
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests' Python is not a venv: set-up would install into it")
    mg = Path(sys.executable).parent / "mixgraph"
    first = setup(tmp_path)  # installs only if this checkout changed since the last one
    assert first.returncode == 0, first.stdout + first.stderr
    assert "system packages: all installed" in first.stdout
    assert f"the mixgraph command is {mg}, which is not on your PATH" in first.stdout
    link = tmp_path / ".local" / "bin" / "mixgraph"
    assert link.is_symlink() and link.resolve() == mg.resolve()
    second = setup(tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout + second.stderr
    assert "skipping pip" in out and "apt-get" not in out and "install mixgraph" not in out
    assert f"linked from {link}" in out
    assert f"PY={sys.executable}" in out


def test_ci_run_with_test_paths_runs_those_alone(tmp_path):
    """`bash .ci/run tests/test_docs.py` ran the whole suite and that file again
    (pytest got `tests` first whatever the arguments): a new user asking for the
    structural tests got 15 minutes of everything. Test paths among the arguments
    now run alone; options alone still run the suite. Collected, not run."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests' Python is not a venv: set-up would install into it")
    env = dict(os.environ, HOME=str(tmp_path), PYTHON=sys.executable, MIXGRAPH_SKIP_APT="1",
               MIXGRAPH_LINK="0")

    def collected(*args: str) -> int:
        r = subprocess.run(["bash", str(ROOT / ".ci" / "run"), *args, "--collect-only"],
                           capture_output=True, text=True, env=env, timeout=900,
                           stdin=subprocess.DEVNULL, cwd=tmp_path)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        # pytest -q --collect-only: "N tests collected" or "K/N tests collected (M
        # deselected)" after the node ids
        last = [x for x in r.stdout.splitlines() if "collected" in x]
        assert last, r.stdout[-2000:]
        return int(last[-1].split()[0].split("/")[0])

    one = collected("tests/test_ci_setup.py")
    assert one == len([n for n in globals() if n.startswith("test_")]), one
    assert collected("-k", "test_ci_run_with_test_paths") == 1
