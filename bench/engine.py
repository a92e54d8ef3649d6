"""Engine benchmarks for the gain -> pan -> bus session (issue: engine and daemon).

Measures, for 16, 64 and 256 channels at 48 kHz / 64-frame blocks:
  - offline render speed on one core (x real time), median of --repeats runs,
    pinned to that core (--cpu; see bench/cpu.py);
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
    python bench/engine.py --jack --native --jack-only --seconds 20   # native vs PortAudio
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jackd  # bench/jackd.py
import numpy as np
from cpu import default_cpu, one_core  # bench/cpu.py
from osc import count_replies  # bench/osc.py: replies may come bundled

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
    """Offline render of the session: one engine call per 64-frame block (as live)
    and per 512-frame block (offline output is identical at any block size)."""
    e = Engine(RATE, n, 2)
    s = build_session(e, n)
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((RATE, n)) * 0.1).astype(np.float32)
    out = np.zeros((RATE, 2), np.float32)
    res = {"channels": n}
    for block in (BLOCK, 512):
        speeds = []
        for _ in range(repeats):
            t0 = time.thread_time()
            for _ in range(int(seconds)):
                e.process(RATE, noise, block=block, out=out)
            speeds.append(int(seconds) / (time.thread_time() - t0))
            s.service()
        res[f"x_realtime_{block}"] = statistics.median(speeds)
    e.take_worst_us()
    per_block = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        e.process(RATE, noise, block=BLOCK, out=out)
        per_block.append((time.perf_counter() - t0) / (RATE / BLOCK) * 1e6)
    st = e.stats()
    s.close()
    e.free()
    res["us_per_block"] = statistics.median(per_block)
    res["engine_worst_us"] = st.worst_us
    res["dsp_load_pct"] = res["us_per_block"] / (BLOCK / RATE * 1e6) * 100
    return res


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
        proc, port, _ = start_daemon(Path(tmp), "--backend", "null", "--rate-limit", "0")
        try:
            c = Client("127.0.0.1", port, timeout=30)
            build_over_osc(c, 16)
            c.request("/sync", 0)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.bind(("127.0.0.1", 0))
            per_msg = []
            window = 256  # replies outstanding at most: a closed-loop sender, nothing dropped
            for r in range(repeats):
                msgs = [encode(f"/node/ch{i % 16}/gain", [-6.0 - (i % 20) * 0.5])
                        for i in range(n_msgs)]
                replies = 0
                sock.settimeout(30)
                t0 = time.perf_counter()
                for k, m in enumerate(msgs):
                    while k - replies >= window:
                        pkt = sock.recv(65536)
                        replies += count_replies(pkt, len(pkt))[0]
                    sock.sendto(m, ("127.0.0.1", port))
                while replies < n_msgs:
                    pkt = sock.recv(65536)
                    replies += count_replies(pkt, len(pkt))[0]
                dt = time.perf_counter() - t0
                sock.sendto(encode("/sync", [r + 1]), ("127.0.0.1", port))
                while not sock.recv(65536).startswith(b"/synced"):
                    pass
                per_msg.append(dt / n_msgs * 1e6)
            return {"messages": n_msgs, "us_per_message": statistics.median(per_msg)}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def send_traffic(port: int, seconds: float, rate_msgs: int) -> int:
    """Fader moves to ch0..ch63 at rate_msgs per second for `seconds`, replies
    drained; returns the number sent."""
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
    sock.close()
    return sent


def jack_live(seconds: float, rate_msgs: int, peer: bool = False, native: bool = False) -> dict:
    """The 64-channel session live on JACK dummy while a client sends rate_msgs
    parameter messages per second: xruns as mixgraph counts them (PortAudio passes
    on every JACK xrun), and jackd's own log of the same window split by cause.

    peer=True is the side-by-side: the same daemon, session and traffic on the
    null backend (the same CPU load), while JACK's example client jack_metro is
    the one on jackd; its `client` count is what a trivial client nobody here
    wrote gets from this host under this load.

    native=True: mixgraph as a native JACK client (--backend jack), its process
    function JACK's process callback, instead of through PortAudio's JACK host API."""
    if not jackd.available():
        return {"error": "jackd not installed"}
    name = f"mgbench{os.getpid()}"
    with jackd.dummy(name, RATE, BLOCK) as log, contextlib.ExitStack() as stack:
        os.environ["JACK_DEFAULT_SERVER"] = name
        if peer:
            stack.enter_context(jackd.metro(name))
            backend: tuple[str, ...] = ("--backend", "null")
        elif native:
            backend = ("--backend", "jack", "--jack-server", name)
        else:
            backend = ("--backend", "portaudio", "--device", "JACK")
        with tempfile.TemporaryDirectory() as tmp:
            proc, port, _ = start_daemon(Path(tmp), *backend, "--block", str(BLOCK))
            try:
                c = Client("127.0.0.1", port, timeout=30)
                build_over_osc(c, 64)
                c.request("/sync", 0)
                time.sleep(0.5)
                x0 = status(c)["xruns"]
                m0 = log.mark()
                sent = send_traffic(port, seconds, rate_msgs)
                st = status(c)
                who = ("jack_metro" if peer else
                       "mixgraph (native JACK)" if native else "mixgraph (PortAudio-JACK)")
                return {"jack_client": who,
                        "seconds": seconds, "messages_sent": sent,
                        "msgs_per_s": round(sent / seconds), "jackd_log": log.xruns(m0),
                        "mixgraph_xruns": None if peer else st["xruns"] - x0,
                        "dsp_load_pct": st["load"], "backend": st["backend"]}
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)


def change_latency(trials: int = 50) -> dict:
    """Blocks from a parameter message's arrival at the UDP socket until the output
    changes: the control thread (OSC server), the null clock and an output tap all
    run in this process; the engine clock is read at the moment of sending."""
    import threading

    from mixgraph.server.engine import CMD_TAP, Fifo
    from mixgraph.server.osc import Dispatcher
    from mixgraph.server.transport import ControlServer

    e = Engine(RATE, 0, 1)
    s = Session(e)
    s.add_node("sine", "osc", {"freq": 1000.0, "level": -20.0})  # dc-free test tone
    s.add_node("gain", "g", {"gain": 0.0})
    s.add_node("output", "out", {"channels": 1})
    s.connect("osc", "g")
    s.connect("g", "out")
    s.commit()
    server = ControlServer(Dispatcher(s), "127.0.0.1", 0, tcp_port=-1)
    port = server.address[1]
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    tap = Fifo(1, RATE * 4)
    e.push(CMD_TAP, tap.ptr)
    e.null_start(BLOCK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    got = []
    captured = np.zeros(0, np.float32)
    base = 0  # engine time of captured[0]
    time.sleep(0.2)
    base = e.time
    captured = tap.read()[:, 0]
    base -= len(captured)
    for k in range(trials):
        level = -60.0 if k % 2 == 0 else 0.0
        time.sleep(0.05)
        t_send = e.time
        sock.sendto(encode("/node/g/gain", [level]), ("127.0.0.1", port))
        sock.recv(256)
        time.sleep(0.05)
        captured = np.concatenate([captured, tap.read()[:, 0]])
        i0 = t_send - base
        seg = np.abs(captured[i0:i0 + 20 * BLOCK])
        env = 0.1 * (10 ** (-60 / 20) if k % 2 == 0 else 1.0)
        prev_env = 0.1 if k % 2 == 0 else 0.1 * 10 ** (-60 / 20)
        # first 64-sample window whose peak leaves the previous level by 1 dB
        for b in range(0, len(seg) - BLOCK):
            pk = float(np.max(seg[b:b + BLOCK // 4]))
            if abs(20 * np.log10(max(pk, 1e-9) / prev_env)) > 1.0 and pk != 0:
                got.append(b / BLOCK)
                break
        del env
    e.null_stop()
    server.stop()
    th.join()
    server.close()
    s.close()
    e.free()
    return {"trials": len(got), "median_blocks": statistics.median(got),
            "max_blocks": max(got)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per offline run / live")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--channels", type=int, nargs="*", default=[16, 64, 256])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--jack", action="store_true", help="also run the live JACK dummy test")
    ap.add_argument("--jack-rate", type=int, default=10000,
                    help="parameter messages per second during the JACK test")
    ap.add_argument("--native", action="store_true",
                    help="with --jack, also run mixgraph as a native JACK client "
                         "(--backend jack) on the same session and traffic")
    ap.add_argument("--jack-only", action="store_true",
                    help="with --jack, only the live JACK runs (no offline/control figures)")
    ap.add_argument("--no-control", action="store_true")
    ap.add_argument("--no-baseline", action="store_true",
                    help="with --jack, skip the peer run (jack_metro on jackd, the same "
                         "traffic to a null-backend daemon) and the jackd-alone run")
    ap.add_argument("--cpu", type=int, default=default_cpu(),
                    help="core the offline renders are pinned to (default: the last one; "
                         "-1: no pinning)")
    a = ap.parse_args()
    print(f"# mixgraph engine bench: {RATE} Hz, {BLOCK}-frame blocks (budget "
          f"{BLOCK / RATE * 1e6:.0f} us), medians of {a.repeats}")
    print("| channels | offline x real time (64-frame blocks) | (512-frame blocks) | "
          "us per 64-frame block | worst us | DSP load % of one core |")
    print("|---|---|---|---|---|---|")
    for n in [] if a.jack_only else a.channels:
        with one_core(a.cpu):
            r = offline(n, a.seconds, a.repeats)
        print(f"| {n} | {r['x_realtime_64']:.0f}x | {r['x_realtime_512']:.0f}x | "
              f"{r['us_per_block']:.1f} | {r['engine_worst_us']:.0f} | "
              f"{r['dsp_load_pct']:.2f} |", flush=True)
    if not a.no_control and not a.jack_only:
        r = control_path(a.messages, 3)
        print(f"\ncontrol path: {r['us_per_message']:.1f} us per parameter message "
              f"(UDP socket -> dispatch -> engine ring, incl. /done reply; "
              f"{r['messages']} messages, median of 3)")
    r = change_latency() if not a.jack_only else None
    if r is not None:
        print(f"\nparameter change: audible {r['median_blocks']:.2f} blocks (median, max "
              f"{r['max_blocks']:.2f}) after its message was sent, over {r['trials']} trials "
              f"(null clock, {BLOCK}-frame blocks; the 20 ms ramp starts at the block "
              "boundary)")
    if a.jack:
        print("\nlive on JACK dummy, 64 ch gain->pan->bus, 64 frames, "
              f"{a.jack_rate} parameter messages/s; jackd's log of each window "
              "(timer: its driver thread woke late; client: a client missed its cycle):")
        runs = [(False, False)] + ([(False, True)] if a.native else [])
        runs += [(True, False)] if not a.no_baseline else []
        for peer, native in runs:
            print(jack_live(a.seconds, a.jack_rate, peer, native), flush=True)
        if not a.no_baseline:
            print(f"jackd alone, no client, {a.seconds:g} s: "
                  f"{jackd.baseline(a.seconds, RATE, BLOCK)}")

if __name__ == "__main__":
    main()
