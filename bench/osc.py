"""OSC control-surface benchmarks (issue: control from anywhere).

1. udp:    parameter messages per second handled over UDP by a daemon pinned to
           one core (all its threads: control and audio), with a 1,000-node graph
           (333 strips noise -> gain -> pan into a stereo bus -> output); a
           window of messages in flight (--udp-window, 256: mind net.core.rmem_max
           when it is small), every /done counted; --rate-limit 0, one client floods.
           With --jack the
           daemon runs live on JACK's dummy driver at 64 frames and the xruns
           during the run are reported (0 is the target).
2. fanout: latency of a fader move (/node/ch0/gain/norm) from one client to 15
           other subscribed clients: for each move, the time until each
           subscriber has the feedback; median / 95th percentile / max over all
           (move, subscriber) pairs. Needs /subscribe (server side of the issue).
3. tcp:    1,000,000 parameter messages over one TCP connection (OSC 1.0 size
           framing, or --framing slip); counts the /done replies and checks every
           gain node's final value. Needs the TCP transport.

    python bench/osc.py                      # all three, null backend
    python bench/osc.py --only udp --jack    # UDP while live on JACK dummy
    python bench/osc.py --only tcp --tcp-messages 100000

Prints one JSON object per benchmark and a summary against the targets
(>= 50,000 msg/s with 0 xruns; <= 50 ms to 15 clients; 1,000,000 of 1,000,000).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jackd  # bench/jackd.py
import msgpack

from mixgraph.clients import Client, MixgraphFail
from mixgraph.clients.protocol import decode, encode, frame

STRIPS = 333  # 333 x (noise, gain, pan) + bus + output = 1,001 nodes
BLOCK = 64


# ---- a daemon --------------------------------------------------------------------------

def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def patch_doc(strips: int) -> dict:
    nodes = [{"name": "master", "type": "bus", "channels": 2, "options": {}, "params": {}},
             {"name": "out", "type": "output", "channels": 2, "options": {}, "params": {}}]
    conns = [["master:out", "out:in"]]
    for i in range(strips):
        nodes += [
            {"name": f"src{i}", "type": "noise", "channels": 1, "options": {"seed": i + 1},
             "params": {"level": -40.0}},
            {"name": f"ch{i}", "type": "gain", "channels": 1, "options": {},
             "params": {"gain": -6.0}},
            {"name": f"pan{i}", "type": "pan", "channels": 1, "options": {},
             "params": {"pan": -1 + 2 * i / max(1, strips - 1)}},
        ]
        conns += [[f"src{i}:out", f"ch{i}:in"], [f"ch{i}:out", f"pan{i}:in"],
                  [f"pan{i}:out", "master:in"]]
    return {"format": "mixgraph-patch", "version": 1, "sample_rate": 48000.0,
            "nodes": nodes, "connections": conns, "metadata": {}}


class Server:
    """`mixgraph serve` pinned to `cpu` (None: not pinned), with the big patch loaded."""

    def __init__(self, state: Path, cpu: int | None, *extra: str, env: dict | None = None):
        self.port = free_port()
        (state / "patches").mkdir(parents=True, exist_ok=True)
        (state / "patches" / "bench.mgp").write_bytes(
            msgpack.packb(patch_doc(STRIPS), use_bin_type=True))
        self.log = state / "serve.log"
        pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port", str(self.port),
             "--state-dir", str(state), "--no-status", "--block", str(BLOCK), *extra],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115
            stdin=subprocess.DEVNULL, preexec_fn=pre, env=env)
        for _ in range(600):
            if "ready on udp" in self.log.read_text():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.05)
        else:
            raise RuntimeError("daemon not ready:\n" + self.log.read_text())
        with Client("127.0.0.1", self.port, timeout=60) as c:
            c.patch_load("bench")
            c.sync(1)
            self.nodes = c.status()["nodes"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pin_self(cpu: int | None) -> None:
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass


# ---- 1. UDP throughput ------------------------------------------------------------------------

_DONE = b"/done\0\0\0,"
_FAIL = b"/fail\0\0\0,"


def count_replies(buf: bytearray, n: int) -> tuple[int, int]:
    """(/done, /fail) replies in one datagram: a bare message, or a bundle of them
    (the server coalesces a flooding client's replies into bundles)."""
    data = bytes(buf[:n])
    if data[:8] == b"#bundle\0":
        return data.count(_DONE), data.count(_FAIL)
    return int(data[:9] == _DONE), int(data[:9] == _FAIL)


def udp_throughput(port: int, n_msgs: int, window: int = 256) -> dict:
    values = [-6.0 - 0.5 * j for j in range(8)]
    table = [[encode(f"/node/ch{i}/gain", [v]) for v in values] for i in range(STRIPS)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
    sock.bind(("127.0.0.1", 0))
    dst = ("127.0.0.1", port)
    sent = done = failed = 0
    buf = bytearray(65536)
    t0 = time.perf_counter()
    while sent < n_msgs:
        end = min(n_msgs, sent + 64)
        for k in range(sent, end):
            sock.sendto(table[k % STRIPS][(k // STRIPS) % 8], dst)
        sent = end
        # drain; block while too many are in flight: the window keeps the kernel's
        # socket buffers (net.core.rmem_max caps them, often at 208 KiB, a few hundred
        # small datagrams) from overflowing, so nothing is dropped
        while True:
            sock.settimeout(0 if sent - done - failed <= window else 5.0)
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, TimeoutError):
                if sent - done - failed <= window:
                    break
                raise RuntimeError(f"replies stopped at {done} of {sent}") from None
            d, f = count_replies(buf, n)
            done += d
            failed += f
    sock.settimeout(2.0)
    while done + failed < n_msgs:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            break
        d, f = count_replies(buf, n)
        done += d
        failed += f
    dt = time.perf_counter() - t0
    sock.close()
    return {"messages": n_msgs, "done": done, "failed": failed, "seconds": round(dt, 3),
            "msgs_per_s": round(done / dt)}


def bench_udp(a) -> dict:
    """UDP throughput on the null backend, or with --jack live on JACK dummy,
    followed (unless --no-baseline) by the peer run: the same flood to a
    null-backend daemon while JACK's example client jack_metro is on jackd."""
    if not a.jack:
        return _bench_udp(a, None, ("--backend", "null"), None)
    if not jackd.available():
        return {"bench": "udp", "error": "jackd not installed (Debian: jackd2)"}
    name = f"mgoscbench{os.getpid()}"
    env = {**os.environ, "JACK_DEFAULT_SERVER": name}
    with jackd.dummy(name, 48000, BLOCK) as log:
        r = _bench_udp(a, log, ("--backend", "portaudio", "--device", "JACK"), env)
    if "error" not in r and not a.no_baseline:
        with jackd.dummy(name, 48000, BLOCK) as log, jackd.metro(name):
            peer = _bench_udp(a, log, ("--backend", "null"), env)
        r["peer_jack_metro"] = {k: peer.get(k) for k in ("msgs_per_s_median", "jackd_log")}
    return r


def _bench_udp(a, log, backend: tuple[str, ...], env: dict | None) -> dict:
    """The UDP flood against a daemon on `backend`; with a jackd log, also
    jackd's own xrun lines over the measured window (see bench/jackd.py)."""
    # one client floods: the per-client limit (20,000/s by default) would drop it
    extra = (*backend, "--rate-limit", "0")
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), a.server_cpu, *extra, *a.serve_args.split(), env=env)
        try:
            with Client("127.0.0.1", srv.port, timeout=10) as c:
                udp_throughput(srv.port, 20000)  # warm up
                c.sync(2)
                x0 = c.status()["xruns"]
                m0 = log.mark() if log else 0
                runs = [udp_throughput(srv.port, a.udp_messages, a.udp_window)
                        for _ in range(a.repeats)]
                st = c.status()
            best = statistics.median(r["msgs_per_s"] for r in runs)
            r = {"bench": "udp", "nodes": srv.nodes, "backend": st["backend"],
                 "block": BLOCK, "server_cpu": a.server_cpu,
                 "msgs_per_s_median": best, "runs": runs,
                 "xruns_during": st["xruns"] - x0, "dsp_load_pct": st["load"],
                 "target": ">= 50000 msg/s, 0 xruns"}
            if log:
                r["jackd_log"] = log.xruns(m0)
            return r
        finally:
            srv.stop()


# ---- 2. fan-out latency -------------------------------------------------------------------------

def bench_fanout(a) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), a.server_cpu, "--backend", "null", *a.serve_args.split())
        subs: list[Client] = []
        try:
            for _ in range(a.subscribers):
                c = Client("127.0.0.1", srv.port, timeout=10)
                subs.append(c)
                try:
                    c.call("/subscribe", 60.0)
                except MixgraphFail as e:
                    return {"bench": "fanout", "error": f"/subscribe refused: {e.reason} "
                            "(needs the server side of the OSC-surface issue)"}
            time.sleep(0.5)
            for c in subs:  # drop the state dumps
                c.sock.setblocking(False)
                try:
                    while True:
                        c.sock.recv(65536)
                except BlockingIOError:
                    pass
            mover = Client("127.0.0.1", srv.port, timeout=10)
            try:
                mover.set_norm("ch0", "gain", 0.5)
            except MixgraphFail as e:
                return {"bench": "fanout", "error": f"/norm refused: {e.reason}"}
            time.sleep(0.2)
            socks = {c.sock.fileno(): c.sock for c in subs}
            lat: list[float] = []
            missing = 0
            for k in range(a.moves):
                v = 0.30 + 0.004 * (k % 100)
                want = set(socks)
                t0 = time.perf_counter()
                mover.send("/node/ch0/gain/norm", v)
                deadline = t0 + 1.0
                while want and time.perf_counter() < deadline:
                    r, _, _ = select.select(list(want), [], [], 0.05)
                    now = time.perf_counter()
                    for fd in r:
                        try:
                            while True:
                                data = socks[fd].recv(65536)
                                for addr, args in decode(data):
                                    ours = (addr == "/node/ch0/gain" or (
                                        addr == "/node/ch0/gain/norm" and args
                                        and abs(float(args[0]) - v) < 1e-3))
                                    if ours and fd in want:
                                        want.discard(fd)
                                        lat.append((now - t0) * 1e3)
                        except BlockingIOError:
                            pass
                missing += len(want)
                mover.sock.setblocking(False)
                try:
                    while True:
                        mover.sock.recv(65536)
                except BlockingIOError:
                    pass
                time.sleep(a.move_interval)
            mover.close()
            if not lat:
                return {"bench": "fanout", "error": "no feedback arrived"}
            lat.sort()
            return {"bench": "fanout", "subscribers": a.subscribers, "moves": a.moves,
                    "deliveries": len(lat), "missing": missing,
                    "ms_median": round(statistics.median(lat), 2),
                    "ms_p95": round(lat[int(0.95 * (len(lat) - 1))], 2),
                    "ms_max": round(lat[-1], 2), "target": "<= 50 ms to all 15"}
        finally:
            for c in subs:
                c.close()
            srv.stop()


# ---- 3. TCP: nothing lost -----------------------------------------------------------------

def bench_tcp(a) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), a.server_cpu, "--backend", "null", *a.serve_args.split())
        try:
            try:
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            except ConnectionRefusedError:
                return {"bench": "tcp", "error": "TCP connection refused (needs the server side "
                        "of the OSC-surface issue: TCP on the OSC port)"}
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            values = [-6.0 - 0.5 * j for j in range(8)]
            table = [[frame(encode(f"/node/ch{i}/gain", [v]), a.framing) for v in values]
                     for i in range(STRIPS)]
            n = a.tcp_messages
            counts = {"done": 0, "fail": 0, "other": 0}
            finished = threading.Event()

            def reader() -> None:
                from mixgraph.clients.protocol import decoder

                dec = decoder(a.framing)
                sock.settimeout(60)
                try:
                    while counts["done"] + counts["fail"] < n:
                        data = sock.recv(1 << 20)
                        if not data:
                            break
                        for f in dec.feed(data):
                            key = f[:5]
                            if key == b"/done":
                                counts["done"] += 1
                            elif key == b"/fail":
                                counts["fail"] += 1
                            else:
                                counts["other"] += 1
                except (TimeoutError, OSError):
                    pass
                finished.set()

            th = threading.Thread(target=reader, daemon=True)
            th.start()
            t0 = time.perf_counter()
            batch = 5000
            for start in range(0, n, batch):
                sock.sendall(b"".join(table[k % STRIPS][(k // STRIPS) % 8]
                                      for k in range(start, min(n, start + batch))))
            t_sent = time.perf_counter() - t0
            finished.wait(300)
            dt = time.perf_counter() - t0
            expected = {}
            for i in range(STRIPS):
                last = max(k for k in range(max(0, n - STRIPS * 2), n) if k % STRIPS == i) \
                    if n >= STRIPS else None
                if last is not None:
                    expected[i] = values[(last // STRIPS) % 8]
            wrong = 0
            with Client("127.0.0.1", srv.port, timeout=10) as c:
                c.sync(3)
                for i, v in expected.items():
                    if abs(c.get(f"ch{i}", "gain") - v) > 1e-4:
                        wrong += 1
            sock.close()
            return {"bench": "tcp", "framing": a.framing, "sent": n, "done": counts["done"],
                    "failed": counts["fail"], "final_values_wrong": wrong,
                    "seconds": round(dt, 2), "send_seconds": round(t_sent, 2),
                    "msgs_per_s": round(counts["done"] / dt),
                    "target": f"{n} sent, {n} applied"}
        finally:
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["udp", "fanout", "tcp"], action="append")
    ap.add_argument("--udp-messages", type=int, default=200000)
    ap.add_argument("--udp-window", type=int, default=256,
                    help="UDP messages in flight (a datagram is ~1 KiB of the server's "
                         "receive buffer: keep window x 1 KiB under net.core.rmem_max)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jack", action="store_true", help="UDP bench live on JACK dummy (64 frames)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="with --jack, skip the peer run (the same flood to a null-backend "
                         "daemon while jack_metro is on jackd)")
    ap.add_argument("--subscribers", type=int, default=15)
    ap.add_argument("--moves", type=int, default=100)
    ap.add_argument("--move-interval", type=float, default=0.04, help="seconds between moves")
    ap.add_argument("--tcp-messages", type=int, default=1_000_000)
    ap.add_argument("--framing", choices=["size", "slip"], default="size")
    ncpu = os.cpu_count() or 1
    ap.add_argument("--server-cpu", type=int, default=ncpu - 1 if ncpu > 1 else -1,
                    help="pin the daemon (all its threads) to this CPU (-1: do not pin)")
    ap.add_argument("--serve-args", default="",
                    help="extra `mixgraph serve` options, e.g. '--rate-limit 0'")
    a = ap.parse_args()
    if a.server_cpu < 0:
        a.server_cpu = None
    if a.server_cpu is not None and ncpu > 1:
        pin_self(0 if a.server_cpu != 0 else 1)  # the load generator on another core
    results = []
    for name in a.only or ["udp", "fanout", "tcp"]:
        r = {"udp": bench_udp, "fanout": bench_fanout, "tcp": bench_tcp}[name](a)
        print(json.dumps(r), flush=True)
        results.append(r)


if __name__ == "__main__":
    main()
