"""`mixgraph render` with scores and durations that ask for no end (attack3 A5).

A score's last time sets the render's length: `1e12 /node/o/level -6` (a typo) or an
NRT score with absolute NTP timetags rendered for 31,000 years, 57 MB a second, until
the disk was full; `--duration inf` ended in an OverflowError traceback."""

from __future__ import annotations

import struct
import subprocess
import sys

from mixgraph.server.state import write_patch

PATCH = {
    "format": "mixgraph-patch", "version": 1, "sample_rate": 48000.0,
    "nodes": [{"name": "o", "type": "sine", "channels": 1, "options": {}, "params": {}},
              {"name": "out", "type": "output", "channels": 1, "options": {}, "params": {}}],
    "connections": [["o:out", "out:in"]], "metadata": {},
}


def _render(tmp_path, *args: str) -> subprocess.CompletedProcess:
    p = tmp_path / "p.mgp"
    write_patch(PATCH, p)
    # the timeout only protects against a hang (the old code rendered without end)
    return subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render", str(p),
                           "-o", str(tmp_path / "o.wav"), *args],
                          capture_output=True, text=True, timeout=120)


def test_a_score_ending_in_the_far_future_is_refused(tmp_path):
    (tmp_path / "s.txt").write_text("0 /node/o/level -6\n1e12 /node/o/level -12\n")
    r = _render(tmp_path, "--score", str(tmp_path / "s.txt"))
    out = " ".join(r.stderr.split())
    assert r.returncode == 2, out
    assert "the score ends at 1e+12 s (line 2: /node/o/level)" in out
    assert "give --duration" in out and "Traceback" not in out
    assert not (tmp_path / "o.wav").exists() or (tmp_path / "o.wav").stat().st_size < 1 << 20


def test_an_nrt_score_with_absolute_timetags_is_refused(tmp_path):
    msg = b"/x\0\0,\0\0\0"
    b = b"#bundle\0" + struct.pack(">II", 0xEE000000, 0) + struct.pack(">i", len(msg)) + msg
    (tmp_path / "s.osc").write_bytes(struct.pack(">i", len(b)) + b)
    r = _render(tmp_path, "--score", str(tmp_path / "s.osc"))
    assert r.returncode == 2 and "give --duration" in " ".join(r.stderr.split()), r.stderr


def test_a_far_score_renders_with_an_explicit_duration(tmp_path):
    (tmp_path / "s.txt").write_text("1e12 /node/o/level -12\n")
    r = _render(tmp_path, "--score", str(tmp_path / "s.txt"), "--duration", "0.1")
    assert r.returncode == 0, r.stderr


def test_an_infinite_duration_is_one_line(tmp_path):
    for d in ("inf", "-inf"):
        r = _render(tmp_path, "--duration", d)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def _as_limit() -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # the old code: no end


def test_a_score_that_never_ends_is_refused(tmp_path):
    """attack4 A7: `--score /dev/zero` (or a FIFO that never closes) read until memory
    ran out; now a score is read up to 256 MB and refused past it, in one line."""
    p = tmp_path / "p.mgp"
    write_patch(PATCH, p)
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "render", str(p),
                        "-o", str(tmp_path / "o.wav"), "--duration", "1", "--score",
                        "/dev/zero"], capture_output=True, text=True, timeout=120,
                       preexec_fn=_as_limit)
    out = " ".join(r.stderr.split())
    assert r.returncode != 0 and "score zero is larger than 256 MB" in out, out
    assert "Traceback" not in out
