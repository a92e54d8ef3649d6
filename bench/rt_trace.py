"""Where a fader move's time goes inside the daemon: stage timestamps of each move of a
browser-like WebSocket client, the control loop's steps and Python's GC pauses.

    python bench/rt_trace.py [--channels 64] [--moves 300] [--gap 40] [--worst 10]
                             [--serve-arg=--some-flag ...]
    python bench/rt_trace.py --base DIR [--rounds 3] [--moves 250]

With --base, an A/B: DIR holds another version's Python package as mixgraph/server,
mixgraph/nodes, mixgraph/clients (e.g. `git archive <commit> server nodes clients`
unpacked and moved under DIR/mixgraph, with this checkout's built _core.abi3.so copied
into DIR/mixgraph/server when the C did not change), put first on the daemon's
PYTHONPATH; runs alternate A, B, B, A... and each prints the round trip's median, p99
and max; then per version the median of the runs' medians and p99s, and the pooled ones.

Starts a real daemon (null backend, the mix64 state of bench/browser.py: a meter after
each channel's fader) with hooks installed by a sitecustomize on its PYTHONPATH (the
daemon's code is not changed): each hook appends (time, what, ...) to a list that is
written at exit. Two raw WebSocket clients A and B do what two mixer pages do (a
/subscribe, every meter node at 30 Hz as blobs, /sync every 2 s); A holds /touch on
/node/fader0/gain and sends --moves `/norm` positions --gap ms apart; B's receipt of each
is timed. One clock: CLOCK_MONOTONIC in both processes.

Per move, the stages: A sent -> the daemon read it (select woke, recv) -> dispatch began
-> dispatch ended (the engine set queued) -> the feedback flush began -> B's frame written
-> B received it. Printed: median and p99 of each stage and of the whole, then the
--worst moves with every control-loop step, GC pause and thread-CPU gap that overlapped
them. "cpu" beside a step is the control thread's CPU time in it: a step much longer
than its CPU time waited (for a core, or for the GIL)."""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---- the daemon's side (imported by the sitecustomize) ------------------------------
def install(out: str) -> None:
    """Wrap the control loop's steps with timestamps; write them to `out` at exit."""
    import atexit
    import gc
    import selectors

    from mixgraph.server import daemon, feedback, journal, osc, session, state, transport, web

    ev: list[tuple] = []
    pc, tt = time.monotonic, time.thread_time
    gc_t0 = [0.0]

    def gccb(phase: str, info: dict) -> None:
        if phase == "start":
            gc_t0[0] = pc()
        else:
            ev.append((gc_t0[0], "gc", pc() - gc_t0[0], info["generation"],
                       threading.current_thread().name))

    gc.callbacks.append(gccb)

    def timed(cls, name: str, label: str | None = None) -> None:
        orig = getattr(cls, name)
        lab = label or name

        def w(*a, **k):
            t0, c0 = pc(), tt()
            try:
                return orig(*a, **k)
            finally:
                ev.append((t0, lab, pc() - t0, tt() - c0, None))
        setattr(cls, name, w)

    for cls, name in ((transport.ControlServer, "_work"), (transport.ControlServer, "service"),
                      (transport.ControlServer, "_close_idle"),
                      (transport.ControlServer, "_resume_paused"),
                      (feedback.Feedback, "service"), (feedback.Feedback, "_send_meters"),
                      (session.Session, "service"), (osc.Dispatcher, "service"),
                      (osc.Dispatcher, "commit_edits"), (daemon.Daemon, "_tick"),
                      (daemon.Daemon, "_save"), (journal.Journal, "rotate"),
                      (journal.Journal, "flush"), (state.Autosaver, "submit"),
                      (session.Session, "to_doc")):
        timed(cls, name, f"{cls.__name__}.{name}")

    sel_cls = selectors.DefaultSelector
    sel_orig = sel_cls.select

    def sel(self, timeout=None):
        t0 = pc()
        r = sel_orig(self, timeout)
        if threading.current_thread().name == "mixgraph-control":
            ev.append((t0, "select", pc() - t0, timeout, len(r)))
        return r
    sel_cls.select = sel

    read_orig = transport.ControlServer._read_conn

    def read_conn(self, c):
        t0 = pc()
        read_orig(self, c)
        ev.append((t0, "read", c.addr[1], len(c.inbuf), None))
    transport.ControlServer._read_conn = read_conn

    disp_orig = osc.Dispatcher.dispatch_packet

    def dispatch(self, msgs, client, bundle, reply=None):
        t0 = pc()
        try:
            return disp_orig(self, msgs, client, bundle, reply)
        finally:
            m = msgs[0]
            ev.append((t0, "dispatch", pc() - t0, m.address,
                       m.args[0] if m.args and isinstance(m.args[0], float) else None))
    osc.Dispatcher.dispatch_packet = dispatch

    flush_orig = feedback.Feedback._flush

    def flush(self):
        t0 = pc()
        try:
            return flush_orig(self)
        finally:
            ev.append((t0, "flush", pc() - t0, None, None))
    feedback.Feedback._flush = flush

    send_orig = web.WebConn.send_packet

    def send(self, data):
        t0 = pc()
        send_orig(self, data)
        if b"fader0/gain/norm" in data:
            ev.append((t0, "wssend", pc() - t0, self.addr[1], None))
    web.WebConn.send_packet = send

    def dump() -> None:
        with open(out, "wb") as f:
            pickle.dump(ev, f)
    atexit.register(dump)


SITE = """import os, sys
if os.environ.get("MIXGRAPH_RT_TRACE"):
    sys.path.insert(0, {here!r})
    import rt_trace
    rt_trace.install(os.environ["MIXGRAPH_RT_TRACE"])
"""


# ---- the driver -----------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def make_state(state: Path, channels: int) -> None:
    sys.path.insert(0, str(HERE))
    from mix64 import build_mix64

    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session
    from mixgraph.server.state import AUTOSAVE, write_patch

    s = Session(Engine(48000.0, 0, 2))
    build_mix64(s, channels)
    for i in range(channels):
        s.add_node("meter", f"mtr{i}", {"channels": 2})
        s.connect(f"fader{i}", f"mtr{i}")
    s.commit()
    write_patch(s.to_doc(), state / AUTOSAVE)


class Client:
    """A raw WebSocket client doing what a mixer page does, read by a thread."""

    def __init__(self, port: int, metered: list[str]) -> None:
        from pythonosc.osc_packet import OscPacket
        from test_http import WS

        self.OscPacket = OscPacket
        self.ws = WS(port)
        self.seen: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self.ws.send("/subscribe", 10.0)
        for n in metered:
            self.ws.send("/meters/subscribe", n, 30.0, "blob")
        self.stop = threading.Event()
        self.th = threading.Thread(target=self.read, daemon=True)
        self.th.start()
        self.beat = threading.Thread(target=self.heartbeat, daemon=True)
        self.beat.start()

    def send(self, address: str, *args) -> None:
        with self.lock:
            self.ws.send(address, *args)

    def heartbeat(self) -> None:
        while not self.stop.wait(2.0):
            self.send("/sync", 0)

    def read(self) -> None:
        while not self.stop.is_set():
            try:
                op, payload = self.ws.frame(0.5)
            except OSError:
                continue
            t = time.monotonic()
            if op == 0x9:
                with self.lock:
                    self.ws.send_frame(0xA, payload)
            elif op == 0x2 and b"fader0/gain/norm" in payload:
                for m in self.OscPacket(payload).messages:
                    if m.message.address == "/node/fader0/gain/norm":
                        self.seen.append((t, m.message.params[0]))
            elif op == -1:
                return

    def close(self) -> None:
        self.stop.set()
        self.th.join()
        self.ws.close()


def run(channels: int, moves: int, gap_ms: float, extra: list[str], tmp: Path,
        base: str | None = None) -> tuple:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_http import free_tcp_port

    from daemon_util import Daemon

    state = tmp / "state"
    state.mkdir()
    make_state(state, channels)
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE.format(here=str(HERE)))
    out = tmp / "trace.pkl"
    port = free_tcp_port()
    env = {"PYTHONPATH": os.pathsep.join([str(site)] + ([base] if base else [])
                                         + [os.environ.get("PYTHONPATH", "")]),
           "MIXGRAPH_RT_TRACE": str(out)}
    d = Daemon(state, "--backend", "null", "--http", str(port), *extra, env=env)
    try:
        metered = [f"mtr{i}" for i in range(channels)]
        a, b = Client(port, metered), Client(port, metered)
        b_port = b.ws.sock.getsockname()[1]
        time.sleep(1.0)
        a.send("/node/fader0/gain/touch", 1)
        sent = []
        for i in range(moves):
            v = 0.2 + 0.6 * i / moves
            import struct
            v = struct.unpack("f", struct.pack("f", v))[0]
            t = time.monotonic()
            a.send("/node/fader0/gain/norm", v)
            sent.append((t, v))
            time.sleep(gap_ms / 1e3)
        a.send("/node/fader0/gain/touch", 0)
        time.sleep(0.3)
        a.close()
        b.close()
    finally:
        d.stop()
    with open(out, "rb") as f:
        ev = pickle.load(f)
    return sent, b.seen, ev, b_port


def analyse(sent, seen, ev, b_port: int, worst: int, quiet: bool = False) -> list[float]:
    ev.sort(key=lambda e: e[0])
    disp = [e for e in ev if e[1] == "dispatch" and e[3] == "/node/fader0/gain/norm"
            and e[4] is not None]
    reads = [e for e in ev if e[1] == "read"]
    flushes = [e for e in ev if e[1] == "flush"]
    bsend = [e for e in ev if e[1] == "wssend" and e[3] == b_port]
    rows = []
    j = 0
    for t, v in sent:
        recv = next((r for r, x in seen if r >= t and abs(x - v) < 1e-4), None)
        dsp = next((e for e in disp if e[0] >= t and abs(e[4] - v) < 1e-6), None)
        if recv is None or dsp is None:
            continue
        rd = max((e[0] for e in reads if t <= e[0] <= dsp[0]), default=dsp[0])
        fl = next((e[0] for e in flushes if e[0] >= dsp[0]), None)
        ws = next((e[0] for e in bsend if e[0] >= dsp[0]), None)
        if fl is None or ws is None or ws > recv:
            continue
        rows.append((t, rd, dsp[0], dsp[0] + dsp[2], fl, ws, recv))
        j += 1
    names = ["sent->read", "read->dispatch", "dispatch", "applied->flush", "flush->written",
             "written->received", "TOTAL"]
    cols = [[r[k + 1] - r[k] for r in rows] for k in range(6)] + [[r[6] - r[0] for r in rows]]
    if quiet:
        return [r[6] - r[0] for r in rows]
    print(f"{len(rows)} of {len(sent)} moves traced")
    for n, c in zip(names, cols, strict=True):
        print(f"  {n:18s} median {1e3 * statistics.median(c):7.3f} ms  p99 "
              f"{1e3 * pct(c, 0.99):7.3f} ms  max {1e3 * max(c):7.3f} ms")
    gcs = [e for e in ev if e[1] == "gc"]
    if gcs:
        by = {}
        for e in gcs:
            by.setdefault((e[3], e[4]), []).append(e[2])
        for (g, th), xs in sorted(by.items()):
            print(f"  gc gen {g} on {th}: {len(xs)} pauses, median "
                  f"{1e3 * statistics.median(xs):.2f} ms, max {1e3 * max(xs):.2f} ms")
    steps = {}
    for e in ev:
        if e[1] not in ("gc", "read", "dispatch", "flush", "wssend", "select"):
            steps.setdefault(e[1], []).append(e[2])
    for n, xs in sorted(steps.items()):
        print(f"  step {n:28s} n={len(xs):6d} median {1e3 * statistics.median(xs):6.3f} ms "
              f"p99 {1e3 * pct(xs, 0.99):6.3f} max {1e3 * max(xs):7.3f} ms")
    for n in ("Journal.flush", "Journal.rotate", "Session.to_doc", "Daemon._save"):
        big = sorted((e for e in ev if e[1] == n), key=lambda e: e[2], reverse=True)[:3]
        if big:
            print(f"  longest {n}: " + ", ".join(
                f"{1e3 * e[2]:.1f} ms (cpu {1e3 * e[3]:.2f})" for e in big))
    order = sorted(range(len(rows)), key=lambda i: rows[i][6] - rows[i][0], reverse=True)
    for i in order[:worst]:
        r = rows[i]
        t0 = r[0]
        print(f"move at {t0:.3f}: total {1e3 * (r[6] - r[0]):.2f} ms = " + ", ".join(
            f"{n} {1e3 * (r[k + 1] - r[k]):.2f}" for k, n in enumerate(names[:6])))
        for e in ev:
            if e[0] + (e[2] if isinstance(e[2], float) else 0) >= t0 - 0.005 and e[0] <= r[6]:
                if e[1] in ("select",) and e[2] < 0.002:
                    continue
                if isinstance(e[2], float) and e[2] < 0.0005 and e[1] not in ("dispatch",
                                                                              "flush", "read"):
                    continue
                extra = f" cpu {1e3 * e[3]:.2f}" if isinstance(e[3], float) and e[1] not in (
                    "dispatch", "select") else ""
                dur = f" {1e3 * e[2]:.2f} ms" if isinstance(e[2], float) else ""
                print(f"    +{1e3 * (e[0] - t0):7.2f} {e[1]}{dur}{extra}"
                      + (f" gen {e[3]} {e[4]}" if e[1] == "gc" else ""))
    return cols[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--moves", type=int, default=300)
    ap.add_argument("--gap", type=float, default=40.0)
    ap.add_argument("--worst", type=int, default=8)
    ap.add_argument("--serve-arg", action="append", default=[])
    ap.add_argument("--base", help="A/B: a directory holding another mixgraph package "
                    "(mixgraph/server...) to run alternately with this one")
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (each runs A and B)")
    a = ap.parse_args()
    with open("/proc/loadavg") as f:
        print("load average before:", f.read().split()[0])
    if a.base:
        res: dict[str, list] = {"A (base)": [], "B (this)": []}
        for r in range(a.rounds):
            order = [("A (base)", a.base), ("B (this)", None)]
            for label, base in (order if r % 2 == 0 else order[::-1]):
                with tempfile.TemporaryDirectory() as tmp:
                    sent, seen, ev, bp = run(a.channels, a.moves, a.gap, a.serve_arg,
                                             Path(tmp), base)
                tot = [1e3 * x for x in analyse(sent, seen, ev, bp, 0, quiet=True)]
                res[label].append(tot)
                with open("/proc/loadavg") as f:
                    load = f.read().split()[0]
                print(f"round {r + 1} {label}: median {statistics.median(tot):.2f} ms, p99 "
                      f"{pct(tot, 0.99):.2f} ms, max {max(tot):.1f} ms ({len(tot)} moves, "
                      f"load {load})", flush=True)
        for label, runs in res.items():
            pooled = [x for t in runs for x in t]
            print(f"{label}: median of run medians "
                  f"{statistics.median(statistics.median(t) for t in runs):.2f} ms, of run "
                  f"p99s {statistics.median(pct(t, 0.99) for t in runs):.2f} ms; pooled "
                  f"{len(pooled)} moves: median {statistics.median(pooled):.2f} ms, p99 "
                  f"{pct(pooled, 0.99):.2f} ms, max {max(pooled):.1f} ms")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        sent, seen, ev, bp = run(a.channels, a.moves, a.gap, a.serve_arg, Path(tmp))
    analyse(sent, seen, ev, bp, a.worst)
    with open("/proc/loadavg") as f:
        print("load average after:", f.read().split()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
