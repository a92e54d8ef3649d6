"""Engine benchmarks for the gain -> pan -> bus session (issue: engine and daemon).

Measures, for 16, 64 and 256 channels at 48 kHz / 64-frame blocks:
  - offline render speed on one core (x real time), median of --repeats runs;
  - cost per 64-frame block: the engine's own timing inside mg_engine_process
    (mean) and the wall-clock per block as seen from Python (median);
  - DSP load in % of one core (mean block cost / 1333 us);
and, against a real daemon process on the null backend,
  - the control path: us per parameter message from a UDP socket to the engine
    (10,000 messages, then /sync; includes the /done replies).
Optionally (--jack) the 64-channel session live on JACK's dummy driver while a
client sends 10,000 parameter messages per second, counting xruns.

    python bench/engine.py                # offline + control path
    python bench/engine.py --jack --seconds 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixgraph.clients import Client
from mixgraph.clients.client import encode
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
BLOCK = 64


def build_session(e: Engine, n: int, source: str = "input") -> Session:
    """n channels of source -> gain -> pan -> a stereo bus -> output."""
    s = Session(e)
    s.add_node("bus", "master", {"channels": 2})
    s.add_node("output", "out", {"channels": 2})
    s.connect("master", "out")
    for i in range(n):
        if source == "noise":
            s.add_node("noise", f"src{i}", {"seed": i + 1, "level": -20})
            src = f"src{i}"
        else:
            # one mono input node per channel keeps the strip independent
            s.add_node("input", f"src{i}", {"channels": 1, "first": i + 1})
            src = f"src{i}"
        s.add_node("gain", f"ch{i}", {"gain": -6})
        s.add_node("pan", f"pan{i}", {"pan": -1 + 2 * i / max(1, n - 1)})
        s.connect(src, f"ch{i}")
        s.connect(f"ch{i}", f"pan{i}")
        s.connect(f"pan{i}", "master")
    s.commit()
    return s


def offline(n: int, seconds: float, repeats: int) -> dict:
    e = Engine(RATE, n, 2)
    s = build_session(e, n)
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((RATE, n)) * 0.1).astype(np.float32)
    blocks = int(seconds * RATE) // BLOCK
    speeds, per_block_wall = [], []
    for _ in range(repeats):
        e.take_worst_us()
        t0 = time.process_time()
        w0 = time.perf_counter()
        for b in range(blocks):
            off = (b * BLOCK) % (RATE - BLOCK)
            e.process(BLOCK, noise[off:off + BLOCK])
        cpu = time.process_time() - t0
        wall = time.perf_counter() - w0
        speeds.append(seconds / cpu)
        per_block_wall.append(wall / blocks * 1e6)
        s.service()
    st = e.stats()
    s.close()
    e.free()
    mean_us = st.mean_us
    return {
        "channels": n,
        "x_realtime": statistics.median(speeds),
        "engine_us_per_block": mean_us,
        "engine_worst_us": st.worst_us,
        "python_wall_us_per_block": statistics.median(per_block_wall),
        "dsp_load_pct": mean_us / (BLOCK / RATE * 1e6) * 100,
    }


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_daemon(state: Path, *extra: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log = state / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port", str(port),
         "--state-dir", str(state), "--no-status", *extra],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    for _ in range(400):
        if "ready on udp" in log.read_text():
            return proc, port, log
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(log.read_text())


def build_over_osc(c: Client, n: int) -> None:
    c.call("/graph/add", "bus", "master", "channels", 2)
    c.call("/graph/add", "output", "out", "channels", 2)
    c.call("/graph/connect", "master", "out")
    for i in range(n):
        c.call("/graph/add", "noise", f"src{i}", "seed", i + 1)
        c.call("/graph/add", "gain", f"ch{i}", "gain", -6.0)
        c.call("/graph/add", "pan", f"pan{i}", "pan", -1 + 2 * i / max(1, n - 1))
        c.call("/graph/connect", f"src{i}", f"ch{i}")
        c.call("/graph/connect", f"ch{i}", f"pan{i}")
        c.call("/graph/connect", f"pan{i}", "master")


def status(c: Client) -> dict:
    _, a = c.request("/status")
    return dict(zip(a[::2], a[1::2], strict=True))


def control_path(n_msgs: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port, _ = start_daemon(Path(tmp), "--backend", "null")
        try:
            c = Client("127.0.0.1", port, timeout=30)
            build_over_osc(c, 16)
            c.request("/sync", 0)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.bind(("127.0.0.1", 0))
            per_msg = []
            for r in range(repeats):
                msgs = [encode(f"/node/ch{i % 16}/gain", [-6.0 - (i % 20) * 0.5])
                        for i in range(n_msgs)]
                replies = 0
                t0 = time.perf_counter()
                for k, m in enumerate(msgs):
                    sock.sendto(m, ("127.0.0.1", port))
                    if k % 200 == 199:  # keep within the kernel's socket buffers
                        sock.settimeout(0)
                        try:
                            while True:
                                sock.recv(512)
                                replies += 1
                        except (BlockingIOError, TimeoutError):
                            pass
                sock.sendto(encode("/sync", [r + 1]), ("127.0.0.1", port))
                sock.settimeout(30)
                while True:
                    data = sock.recv(512)
                    if data.startswith(b"/synced"):
                        break
                    replies += 1
                dt = time.perf_counter() - t0
                per_msg.append(dt / n_msgs * 1e6)
            return {"messages": n_msgs, "us_per_message": statistics.median(per_msg),
                    "replies_seen_last_run": replies}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def jack_live(seconds: float, rate_msgs: int) -> dict:
    if shutil.which("jackd") is None:
        return {"error": "jackd not installed"}
    name = f"mgbench{os.getpid()}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name}
    rt = ["-R", "-P", "80"] if os.environ.get("MIXGRAPH_JACK_RT") else ["--no-realtime"]
    jack = subprocess.Popen(["jackd", "-n", name, *rt, "-d", "dummy", "-r",
                             str(RATE), "-p", str(BLOCK)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            proc, port, log = start_daemon(Path(tmp), "--backend", "portaudio", "--device",
                                           "JACK", "--block", str(BLOCK))
            try:
                c = Client("127.0.0.1", port, timeout=30)
                build_over_osc(c, 64)
                c.request("/sync", 0)
                time.sleep(0.5)
                x0 = status(c)["xruns"]
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                sent = 0
                t0 = time.perf_counter()
                while (elapsed := time.perf_counter() - t0) < seconds:
                    due = int(elapsed * rate_msgs)
                    while sent < due:
                        sock.sendto(encode(f"/node/ch{sent % 64}/gain",
                                           [-6.0 - (sent % 40) * 0.25]), ("127.0.0.1", port))
                        sent += 1
                    try:
                        while True:
                            sock.recv(512)
                    except BlockingIOError:
                        pass
                    time.sleep(0.001)
                st = status(c)
                return {"seconds": seconds, "messages_sent": sent,
                        "msgs_per_s": sent / seconds, "xruns": st["xruns"] - x0,
                        "dsp_load_pct": st["load"], "backend": st["backend"]}
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    finally:
        jack.send_signal(signal.SIGTERM)
        jack.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per offline run / live")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--channels", type=int, nargs="*", default=[16, 64, 256])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--jack", action="store_true", help="also run the live JACK dummy test")
    ap.add_argument("--no-control", action="store_true")
    a = ap.parse_args()
    print(f"# mixgraph engine bench: {RATE} Hz, {BLOCK}-frame blocks (budget "
          f"{BLOCK / RATE * 1e6:.0f} us), medians of {a.repeats}")
    print("| channels | offline x real time | engine us/block (mean) | worst us | "
          "python wall us/block | DSP load % |")
    print("|---|---|---|---|---|---|")
    for n in a.channels:
        r = offline(n, a.seconds, a.repeats)
        print(f"| {n} | {r['x_realtime']:.0f}x | {r['engine_us_per_block']:.1f} | "
              f"{r['engine_worst_us']:.0f} | {r['python_wall_us_per_block']:.1f} | "
              f"{r['dsp_load_pct']:.2f} |", flush=True)
    if not a.no_control:
        r = control_path(a.messages, 3)
        print(f"\ncontrol path: {r['us_per_message']:.1f} us per parameter message "
              f"(UDP socket -> dispatch -> engine ring, incl. /done reply; "
              f"{r['messages']} messages, median of 3)")
    if a.jack:
        r = jack_live(a.seconds, 10000)
        print(f"\nlive on JACK dummy, 64 ch gain->pan->bus, {r}")


if __name__ == "__main__":
    main()
