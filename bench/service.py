"""The rack box's two figures (issue 16): start to READY=1, and device return to
audio flowing.

    python bench/service.py [--rounds 5] [--nodes 200]

1. Process start -> `READY=1` on a real `NOTIFY_SOCKET` (an AF_UNIX datagram
   socket, as systemd gives it), with a state directory holding a patch of
   --nodes nodes (a chain of stereo gains): READY=1 goes out only once that
   state is restored and the audio runs. Median and worst of --rounds starts.
2. A JACK server (jackd on the dummy driver, a named server of its own) killed
   and started again: from the moment the restarted server answers to the
   moment mixgraph runs on it again (`/status` device_state `running`), and to
   the moment audio flows (the engine's sample clock advancing on JACK and a
   meter after a sine reading its level). mixgraph retries every 2 s, so the
   expected worst is about 2 s plus the connection.

Targets of the issue: READY <= 1 s with a 200-node patch; device return to
audio <= 3 s. Figures, not assertions: quote medians."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from mixgraph.clients import Client  # noqa: E402

from daemon_util import free_udp_port  # noqa: E402

sys.path.insert(0, str(HERE))
from scale import chain_patch as chain_doc  # noqa: E402  (the same 10k-chain builder)


def serve_cmd(port: int, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port", str(port),
            "--state-dir", str(state), "--no-status", *extra]


def status(c: Client) -> dict:
    _, args = c.request("/status", timeout=10)
    return dict(zip(args[::2], args[1::2], strict=True))


def connect(port: int, proc: subprocess.Popen) -> Client:
    """A TCP client of a daemon that is starting: retried until it listens."""
    deadline = time.monotonic() + 60
    while True:
        try:
            c = Client("127.0.0.1", port, transport="tcp", timeout=10.0)
            status(c)
            return c
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ready_times(rounds: int, nodes: int, tmp: Path, floor: list[float]) -> list[float]:
    state = tmp / "state"
    port = free_udp_port()
    proc = subprocess.Popen(serve_cmd(port, state, "--backend", "null"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    c = connect(port, proc)
    (state / "patches").mkdir(parents=True, exist_ok=True)
    (state / "patches" / "chain.json").write_text(json.dumps(chain_doc(nodes)))
    c.call("/patch/load", "chain", timeout=30)
    assert status(c)["nodes"] == nodes + 1
    c.close()
    proc.terminate()
    proc.wait(30)

    out = []
    for _ in range(rounds):
        path = str(tmp / "notify.sock")
        Path(path).unlink(missing_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(30)
        t0 = time.monotonic()
        p = subprocess.Popen(serve_cmd(free_udp_port(), state, "--backend", "null"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, env={**os.environ, "NOTIFY_SOCKET": path})
        while "READY=1" not in s.recv(4096).decode():
            pass
        out.append(time.monotonic() - t0)
        p.terminate()
        p.wait(30)
        s.close()
        t0 = time.monotonic()  # the floor, under the same load: Python and the imports
        subprocess.run([sys.executable, "-c", "import mixgraph.server.cli, "
                        "mixgraph.server.daemon"], check=True)
        floor.append(time.monotonic() - t0)
    return out


def _jack_up(name: str) -> bool:
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    r = subprocess.run(["jack_lsp", "-s", name], env=env, capture_output=True, timeout=10)
    return r.returncode == 0


def start_jackd(name: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        p = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "48000",
                              "-p", "64"], env=dict(os.environ, JACK_DEFAULT_SERVER=name),
                             stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.monotonic() + 15
    while not _jack_up(name):
        if time.monotonic() > deadline or p.poll() is not None:
            raise RuntimeError(f"jackd did not come up: {log.read_text()[-500:]}")
        time.sleep(0.02)
    return p


def return_times(rounds: int, tmp: Path) -> list[tuple[float, float]]:
    name = f"mg-bench-service-{os.getpid()}"
    jackd = start_jackd(name, tmp / "jackd.log")
    port = free_udp_port()
    d = subprocess.Popen(serve_cmd(port, tmp / "jstate", "--backend", "jack", "--jack-server",
                                   name, "--outputs", "1"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    out = []
    try:
        c = connect(port, d)
        c.call("/graph/add", "sine", "osc", "freq", 1000.0, "level", -20.0)
        c.call("/graph/add", "meter", "m", "channels", 1)
        c.call("/graph/add", "output", "out", "channels", 1)
        c.call("/graph/connect", "osc", "m")
        c.call("/graph/connect", "osc", "out")
        for _ in range(rounds):
            jackd.terminate()
            jackd.wait(15)
            while status(c)["device_state"] != "waiting":
                time.sleep(0.05)
            time.sleep(0.5)
            jackd = start_jackd(name, tmp / "jackd.log")
            t_up = time.monotonic()
            while status(c)["device_state"] != "running":
                time.sleep(0.01)
            t_back = time.monotonic()
            t_then = status(c)["time"]
            while True:  # audio flowing on JACK: the clock moves and the meter reads the sine
                st = status(c)
                peak = c.request("/node/m/peak", timeout=5)[1]
                if st["time"] > t_then and peak and max(peak) > -30.0:
                    break
                time.sleep(0.01)
            out.append((t_back - t_up, time.monotonic() - t_up))
        c.close()
    finally:
        d.terminate()
        d.wait(30)
        jackd.terminate()
        jackd.wait(15)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        floor: list[float] = []
        r = ready_times(a.rounds, a.nodes, Path(tmp), floor)
        print(f"start -> READY=1 with a {a.nodes}-node patch: median {statistics.median(r):.3f} s,"
              f" worst {max(r):.3f} s over {len(r)} starts (target <= 1 s); of which Python "
              f"and the imports alone, in the same rounds: median {statistics.median(floor):.3f} s")
        if shutil.which("jackd") is None:
            print("device return: skipped (no jackd; Debian: jackd2)")
            return
        b = return_times(a.rounds, Path(tmp))
        back = [x for x, _ in b]
        audio = [y for _, y in b]
        print(f"JACK server back -> mixgraph on it: median {statistics.median(back):.2f} s, "
              f"worst {max(back):.2f} s; -> audio flowing (clock and meter): median "
              f"{statistics.median(audio):.2f} s, worst {max(audio):.2f} s over {len(b)} "
              f"returns (target <= 3 s)")


if __name__ == "__main__":
    main()
