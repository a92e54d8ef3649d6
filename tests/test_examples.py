"""The examples in other languages (clients/examples/) run against a live
server and print the replies they got: shell (liblo's oscsend/oscdump),
Node.js (the osc package), C (liblo, compiled here with cc) and Lua
(LuaSocket). Under CI a missing tool is a failure (.ci/run installs them)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mixgraph.clients import Client, MixgraphFail

from daemon_util import Daemon

EX = Path(__file__).resolve().parent.parent / "clients" / "examples"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("examples") / "state", "--backend", "null")
    yield d
    d.stop()


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 30) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def check_transcript(out: str, name: str) -> None:
    """The replies every example prints, in order, one `address args...` a line."""
    lines = [x for x in out.splitlines() if x and not x.startswith("#")]
    assert lines[0] == f"/done /graph/add {name}"
    assert re.fullmatch(rf"/done /node/{name}/gain -6(\.0)?", lines[1])
    assert re.fullmatch(rf"/node/{name}/gain -6(\.0)?", lines[2])  # the query's answer
    assert lines[3].startswith("/status.reply sample_rate 48000")
    assert " xruns 0" in lines[3] or " xruns " in lines[3]
    assert lines[4] == f"/done /graph/remove {name}"


def gone(d: Daemon, name: str) -> bool:
    return name not in {n["name"] for n in d.client.dump()["nodes"]}


def test_node_example(daemon, require):
    node = shutil.which("node")
    require(node is not None, "node is not installed (Debian: nodejs)")
    require((EX / "node" / "node_modules" / "osc").is_dir(),
            "the osc package is not installed: run `npm ci --ignore-scripts` in "
            "clients/examples/node (.ci/run does)")
    out = run([node, "mixgraph.js", "127.0.0.1", str(daemon.port), "js_g"], cwd=EX / "node")
    check_transcript(out, "js_g")
    assert gone(daemon, "js_g")


def test_node_example_tcp_slip(daemon, require):
    node = shutil.which("node")
    require(node is not None and (EX / "node" / "node_modules" / "osc").is_dir(),
            "node and the osc package are needed")
    r = subprocess.run([node, "mixgraph.js", "--tcp", "127.0.0.1", str(daemon.port), "jt_g"],
                       cwd=EX / "node", capture_output=True, text=True, timeout=30)
    if r.returncode == 2 and "ECONNREFUSED" in r.stderr:
        pytest.skip("this server has no TCP transport yet (server side of the OSC-surface issue)")
    assert r.returncode == 0, r.stderr
    check_transcript(r.stdout, "jt_g")


def test_c_example(daemon, require, tmp_path):
    cc = shutil.which("cc")
    require(cc is not None, "no C compiler (Debian: build-essential)")
    require(Path("/usr/include/lo/lo.h").exists(), "liblo headers missing (Debian: liblo-dev)")
    exe = tmp_path / "mixgraph_lo"
    run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
         str(EX / "c" / "mixgraph_lo.c"), "-llo"])
    out = run([str(exe), "127.0.0.1", str(daemon.port), "c_g"])
    lines = [x for x in out.splitlines() if not x.startswith("#")]
    check_transcript("\n".join(lines), "c_g")
    assert "# gain is -6 dB" in out
    assert gone(daemon, "c_g")


def test_lua_example(daemon, require):
    lua = shutil.which("lua5.4")
    require(lua is not None, "lua5.4 is not installed (Debian: lua5.4)")
    has_socket = subprocess.run([lua, "-e", "require('socket')"], capture_output=True)
    require(has_socket.returncode == 0, "LuaSocket is not installed (Debian: lua-socket)")
    out = run([lua, str(EX / "lua" / "mixgraph.lua"), "127.0.0.1", str(daemon.port), "lua_g"])
    check_transcript(out, "lua_g")
    assert gone(daemon, "lua_g")


def test_shell_example(require, tmp_path):
    for tool in ("oscsend", "oscdump"):
        require(shutil.which(tool) is not None, f"{tool} is not installed (Debian: liblo-tools)")
    # a server of its own: /reply-port may redirect every reply to this host
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        with Client("127.0.0.1", d.port) as probe:
            try:  # does this server know /reply-port? (replies to the probe's own port)
                probe.call("/reply-port", probe.sock.getsockname()[1])
                known = True
            except MixgraphFail as e:
                if not e.unknown_address:
                    raise
                known = False
        script = ["bash", str(EX / "shell" / "mixgraph.sh"), "127.0.0.1", str(d.port), "sh_g"]
        if not known:
            # the messages are still sent and applied; only the replies cannot come back
            run([*script, "0"])
            assert d.status()["nodes"] == 0
            pytest.skip("this server has no /reply-port yet, so oscdump gets no replies "
                        "(server side of the OSC-surface issue)")
        out = run([*script, str(free_port())])
        assert '/done ss "/graph/add" "sh_g"' in out
        assert re.search(r'/done sf "/node/sh_g/gain" -6(\.0+)?', out)
        assert re.search(r"/node/sh_g/gain f -6(\.0+)?", out)
        assert "/synced i 1" in out
        assert gone(d, "sh_g")
    finally:
        d.stop()


def free_port() -> int:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
