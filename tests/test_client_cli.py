"""The client-side commands against a real server: `mixgraph ctl` (UDP, --tcp)
and `mixgraph top --once`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mixgraph.server.catalog import CATALOG

from daemon_util import Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("cli") / "state", "--backend", "null")
    for a in [("/graph/add", "sine", "osc", "freq", 1000.0, "level", -6.0),
              ("/graph/add", "gain", "g", "gain", -6.0), ("/graph/add", "output", "out"),
              ("/graph/add", "meter", "m", "channels", 1), ("/graph/connect", "osc", "g"),
              ("/graph/connect", "g", "out"), ("/graph/connect", "g:out", "m:in")]:
        d.call(*a)
    yield d
    d.stop()


def mg(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="120", NO_COLOR="1")
    return subprocess.run([sys.executable, "-m", "mixgraph.server.cli", *args],
                          capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


def test_ctl_udp(daemon):
    r = mg("ctl", "--port", str(daemon.port), "/node/g/gain", "-9")
    assert r.returncode == 0 and r.stdout.split() == ["/done", "/node/g/gain", "-9.0"]
    r = mg("ctl", "--port", str(daemon.port), "/node/g/gain")
    assert r.stdout.split() == ["/node/g/gain", "-9.0"]
    r = mg("ctl", "--port", str(daemon.port), "/graph/connect", "g", "nowhere")
    assert r.returncode == 1 and r.stdout.startswith("/fail /graph/connect g nowhere")
    mg("ctl", "--port", str(daemon.port), "/node/g/gain", "-6")


def test_ctl_without_server_is_a_message_not_a_traceback():
    r = mg("ctl", "--port", "9", "--timeout", "0.3", "/status")
    assert r.returncode == 2 and "no reply" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("framing", ["size", "slip"])
def test_ctl_tcp(daemon, framing):
    r = mg("ctl", "--tcp", "--framing", framing, "--port", str(daemon.port), "/node/g/gain")
    if r.returncode == 2 and "refused" in r.stderr:
        pytest.skip("this server has no TCP transport yet (server side of the OSC-surface issue)")
    assert r.returncode == 0 and r.stdout.split() == ["/node/g/gain", "-6.0"]


def test_top_once(daemon):
    # let the meter see the tone: waited for (was a 0.3 s sleep; a loaded host's null
    # clock and meter publishing run late)
    deadline = time.monotonic() + 30
    while abs(daemon.request("/node/m/peak")[1][0] - -12.0) > 0.05 \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    r = mg("top", "--once", "--port", str(daemon.port))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "DSP" in out and "xruns" in out and "clients" in out and "nodes 4" in out
    for name in ("osc", "g", "out", "m", "sine", "gain", "meter"):
        assert name in out
    assert "g:in" in out and "out:in" in out  # connections
    # the meter bar of m.peak: the sine at -6 dBFS through -6 dB reads about -12 dBFS
    line = next(x for x in out.splitlines() if "m.peak" in x)
    assert "█" in line and "-12.0 dB" in line


# ---- issue 12, item 9: ctl prints every reply, at float32 precision, typed arguments ----

def test_ctl_prints_every_reply_up_to_done(daemon):
    r = mg("ctl", "--port", str(daemon.port), "/graph/nodes")
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stderr
    assert [x.split()[0] for x in lines] == ["/graph/nodes.reply"] * 4 + ["/done"]
    assert lines[-1] == "/done /graph/nodes 4"
    r = mg("ctl", "--port", str(daemon.port), "/catalog/list")
    lines = r.stdout.splitlines()
    assert len(lines) == len(CATALOG) + 1 and lines[-1] == f"/done /catalog/list {len(CATALOG)}"
    r = mg("ctl", "--port", str(daemon.port), "/dump")
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("/done /dump ") and "/node/g/gain -6.0" in lines
    assert len(lines) == int(lines[-1].split()[-1]) + 1
    # a query with no /done still ends (at once, not after the timeout): one line
    r = mg("ctl", "--port", str(daemon.port), "--timeout", "30", "/status")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1
    assert r.stdout.startswith("/status.reply sample_rate 48000.0")


def test_ctl_prints_float32_at_float32_precision(daemon):
    r = mg("ctl", "--port", str(daemon.port), "/node/osc/freq", "3.371")
    assert r.stdout.split() == ["/done", "/node/osc/freq", "3.371"]
    r = mg("ctl", "--port", str(daemon.port), "/node/osc/freq")
    assert r.stdout.split() == ["/node/osc/freq", "3.371"]
    mg("ctl", "--port", str(daemon.port), "/node/osc/freq", "1000")


def test_ctl_typed_arguments(daemon):
    """s:2024 sends the string "2024" (a node can be named 2024), i:/f: an int/float,
    T/F booleans."""
    port = str(daemon.port)
    r = mg("ctl", "--port", port, "/graph/add", "gain", "s:2024")
    assert r.returncode == 0 and r.stdout.split() == ["/done", "/graph/add", "2024"], r
    r = mg("ctl", "--port", port, "/node/2024/gain", "i:-3")
    assert r.stdout.split() == ["/done", "/node/2024/gain", "-3.0"]
    r = mg("ctl", "--port", port, "/node/2024/mute", "T")
    assert r.stdout.split() == ["/done", "/node/2024/mute", "1.0"]
    r = mg("ctl", "--port", port, "/node/2024/mute", "F")
    assert r.stdout.split() == ["/done", "/node/2024/mute", "0.0"]
    r = mg("ctl", "--port", port, "/node/2024/gain", "f:1")
    assert r.stdout.split() == ["/done", "/node/2024/gain", "1.0"]
    r = mg("ctl", "--port", port, "/node/2024/gain", "i:x")
    assert r.returncode == 2 and "integer" in r.stderr
    mg("ctl", "--port", port, "/graph/remove", "s:2024")


def test_ctl_refuses_an_address_without_slash_at_once(daemon):
    # a --timeout far past mg's own 60 s limit: a CLI that waited for a reply instead of
    # refusing at once would be stopped there (TimeoutExpired), however slow the host
    r = mg("ctl", "--port", str(daemon.port), "--timeout", "600", "status")
    assert r.returncode == 2 and "start with /" in r.stderr


# ---- issue 12, item 10: the CLI a newcomer meets ----

def test_version_and_bare_help():
    from mixgraph.server import __version__

    r = mg("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"mixgraph {__version__}"
    r = mg()
    assert r.returncode == 0 and "usage: mixgraph" in r.stdout and "serve" in r.stdout


def test_nodes_table_details_and_unknown_type():
    r = mg("nodes")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    for t in CATALOG.values():
        assert any(x.split()[:1] == [t.name] for x in lines), t.name
    assert len(lines) == len(CATALOG) + 2  # title, header, one line a type
    r = mg("nodes", "compressor")
    assert r.returncode == 0
    for p in CATALOG["compressor"].params:
        assert p.name in r.stdout
    assert "time constant of decreasing gain reduction" in r.stdout  # the descriptions
    r = mg("nodes", "compresor")
    assert r.returncode == 2 and "compresor" in r.stderr and "compressor" in r.stderr


def test_devices_says_portaudio_is_missing(tmp_path):
    """With a sounddevice that cannot load PortAudio (what sounddevice raises when
    libportaudio is absent), `devices` says PortAudio is missing, not "no devices"."""
    (tmp_path / "sounddevice.py").write_text(
        "raise OSError('PortAudio library not found')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), COLUMNS="200", NO_COLOR="1")
    r = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "devices"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "PortAudio is missing" in r.stdout, r
    assert "libportaudio2" in r.stdout
    r = mg("devices")  # the real one: installed here (CI installs libportaudio2)
    assert "PortAudio is missing" not in r.stdout


def test_analyze_missing_file_says_so(tmp_path):
    r = mg("analyze", str(tmp_path / "nope.wav"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


# ---- issue 12, item 10: top quits on q, shows its keys, fits 80x24 ----

def test_top_quits_on_q_in_a_terminal(daemon):
    """`mixgraph top` in a real pseudo-terminal of 80x24: it draws frames that show its
    keys and stops on q."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: mixgraph top on the pty
        os.execve(sys.executable, [sys.executable, "-m", "mixgraph.server.cli", "top",
                                   "--port", str(daemon.port), "--interval", "0.2"],
                  dict(os.environ, TERM="xterm", COLUMNS="80", LINES="24"))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    out = b""
    deadline = time.monotonic() + 30
    while b"q quit" not in out and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    assert b"q quit" in out, out[-2000:]
    os.write(fd, b"q")
    deadline = time.monotonic() + 20  # a bound against a hang, not a speed figure
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                os.read(fd, 65536)
            except OSError:
                pass
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("top did not quit on q")
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_top_frame_fits_80x24_names_truncated_not_meters():
    from rich.console import Console

    from mixgraph.server import top

    nodes = [{"name": f"a_very_long_channel_name_{i:02d}", "type": "compressor", "channels": 2,
              "params": {"threshold": -20.0, "ratio": 4.0, "attack": 10.0, "release": 100.0}}
             for i in range(30)]
    doc = {"nodes": nodes, "connections": [[f"{n['name']}:out", "bus:in"] for n in nodes]}
    meters = [(f"a_very_long_meter_name_number_{i}", "truepeak", [-3.0, -6.0]) for i in range(8)]
    snap = top.Snapshot({"load": 12.0, "xruns": 0, "clients": 1, "nodes": 30,
                         "backend": "null", "sample_rate": 48000.0, "block": 64},
                        doc, meters, "127.0.0.1", 8000, "udp")
    con = Console(width=80, height=24, record=True, color_system=None, file=open(os.devnull, "w"))
    con.print(top.render(snap, 80, 24))
    lines = con.export_text().rstrip("\n").splitlines()
    assert len(lines) <= 24 and max(len(x) for x in lines) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    assert "q quit" in text and "held maximum" in text
    mlines = [x for x in lines if "truepeak max" in x]
    assert mlines, text
    for x in mlines:  # the whole bar and its reading: the name was cut, not the meter
        assert x.count("█") + x.count("·") == 24 and " dB" in x and "…" in x


def test_top_gain_reduction_bars_grow_with_the_reduction():
    """A gr readout (0 dB: nothing reduced) draws an empty bar at 0 dB and a longer
    one the more is reduced; a level bar is full at 0 dBFS."""
    from rich.console import Console

    from mixgraph.server import top

    def filled(text) -> int:
        con = Console(width=80, record=True, color_system=None, file=open(os.devnull, "w"))
        con.print(text)
        return con.export_text().count("█")

    assert filled(top.gr_bar(0.0, 24)) == 0
    assert filled(top.gr_bar(-6.0, 24)) == 6
    assert filled(top.gr_bar(-40.0, 24)) == 24
    assert filled(top.bar(0.0, 24)) == 24
    snap = top.Snapshot({"load": 1.0, "xruns": 0, "clients": 1, "nodes": 1, "backend": "null",
                         "sample_rate": 48000.0, "block": 64},
                        {"nodes": [], "connections": []},
                        [("lim", "gr", [0.0]), ("comp", "gr", [-12.0])], "127.0.0.1", 8000,
                        "udp")
    con = Console(width=80, height=24, record=True, color_system=None,
                  file=open(os.devnull, "w"))
    con.print(top.render(snap, 80, 24))
    rows = {x.split()[1]: x for x in con.export_text().splitlines() if ".gr " in x}
    assert rows["lim.gr"].count("█") == 0 and rows["comp.gr"].count("█") == 12, rows


def test_output_into_a_closed_pipe_is_quiet():
    """`mixgraph nodes eq | head -1`: the reader stops early; no BrokenPipeError traceback."""
    # `true` has gone before mixgraph writes: its first write meets a closed pipe
    r = subprocess.run(f"{sys.executable} -m mixgraph.server.cli nodes eq | true",
                       shell=True, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
