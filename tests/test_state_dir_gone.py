"""The state directory removed while the server runs (attack3 A3).

An operator's `rm -rf`, or a tmp cleaner, takes the state directory away. The
autosave made it again, but the journal went on appending to its unlinked segment
(rotate gave up: 'cannot start a new segment'), so edits acknowledged after the next
autosave were lost by a SIGKILL."""

from __future__ import annotations

import shutil
import signal
import time

from daemon_util import Daemon, wait_autosaved


def test_edits_after_the_state_dir_was_removed_survive_sigkill(tmp_path):
    state = tmp_path / "state"
    d = Daemon(state, "--backend", "null")
    try:
        d.call("/graph/add", "gain", "before")
        wait_autosaved(state)  # autosaved (waited for: was a 0.6 s sleep)
        shutil.rmtree(state)
        for i in range(3):
            d.call("/graph/add", "gain", f"a{i}")
        deadline = time.monotonic() + 30
        while not (state / "autosave.mgp").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the next autosave makes the directory again
        time.sleep(0.3)
        for i in range(3):
            d.call("/graph/add", "gain", f"b{i}")  # acknowledged: journaled before /done
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        names = sorted(row[0] for row in d.client.collect("/graph/nodes"))
        assert names == ["a0", "a1", "a2", "b0", "b1", "b2", "before"], d.output()[-2000:]
    finally:
        d.stop()


def test_a_state_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    import subprocess
    import sys

    f = tmp_path / "afile"
    f.write_text("x")
    for sd in (f, f / "sub"):
        r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "serve", "--backend",
                            "null", "--state-dir", str(sd), "--no-status", "--port", "0"],
                           capture_output=True, text=True, timeout=60)
        out = " ".join((r.stdout + r.stderr).split())  # rich wraps long lines
        assert r.returncode == 2, out
        assert "Traceback" not in out, out
        assert "as the state directory (--state-dir): a file is in the way" in out, out
