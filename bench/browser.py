"""The browser surface (`mixgraph serve --http`): page size and load times, WebSocket
latency, the browser-to-browser round trip of a fader move, and the cost of 16 metered
browsers, with the mix64 graph.

    python bench/browser.py [--channels 64] [--parts load,ws,moves,meters]
                            [--moves 1000] [--browsers 16] [--seconds 10] [--raw 16]

Starts a real daemon (null backend) whose state is the mix64 reference session
(bench/mix64.py build_mix64, restored from its autosave) with a meter node after each
channel's fader (so each browser streams 65 meter nodes), then, by part:

- load: the page's size as served (and gzip -9 for comparison: it is served plain); in
  Debian's chromium (Playwright, the system executable) navigation start to
  first-contentful-paint, to the mixer built (the page's mark "built": /catalog and
  /graph/dump read, every strip in the DOM) and to the first frame painted after that
  (mark "painted"), median of 3 loads;
- ws: over WebSocket (a raw RFC 6455 client, two connections A and B both subscribed):
  request -> reply on one socket, and a set from A -> its feedback at B;
- moves: two chromium pages A and B on the mixer; --moves fader moves sent by page A
  (`/node/fader0/gain/norm`, holding `/touch` as a drag does), each timed from A's send
  to the moment B's fader has moved (a MutationObserver on its position, in B), on one
  clock (both pages' performance.timeOrigin + now()); median and 99th percentile; and the
  same moves as a raw WebSocket client in this process sees them (the transport's and the
  server's share, without a browser's), and the load average. Moves
  are spaced 40 ms apart so each is a lone change (feedback's 30 Hz coalescing sends a lone
  change at once; a drag's moves inside one 33 ms period are sent together at its end);
- meters: the daemon's control thread CPU (% of one core, from /proc: the thread whose
  CPU time grows most with a burst of OSC queries beyond its idle growth) and the audio's
  worst block (/status worst_us is the slowest engine call since the start: a window's
  own worst is shown when it set a new one, else "no block slower than the worst before
  it"), xruns, late blocks, meter frames dropped for slow readers and the load average,
  over --seconds with no browser, then over --seconds with --browsers chromium pages on
  the mixer (each in a context of its own, loaded in parallel; the daemon allows 64
  connections per host for them), each streaming every meter at 30 Hz, then after they
  closed. 16 pages of this mixer take minutes to load on a busy 2-core machine.
  With --raw N, first a window with N raw WebSocket clients streaming what a page
  streams (the server's share of 16 browsers without 16 chromium renderers on the same
  cores; --browsers 0 skips chromium).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mix64 import build_mix64  # noqa: E402
from pythonosc.osc_packet import OscPacket  # noqa: E402
from test_http import WS, free_tcp_port, osc  # noqa: E402

from mixgraph.server.engine import Engine  # noqa: E402
from mixgraph.server.session import Session  # noqa: E402
from mixgraph.server.state import AUTOSAVE, write_patch  # noqa: E402

from daemon_util import Daemon  # noqa: E402

READY = "document.body.dataset.ready === '1'"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(t)] = (int(f[11]) + int(f[12])) / tick
    return out


def control_thread(d: Daemon) -> int:
    """The daemon's control thread: the one whose CPU time grows most while it answers
    a burst of 5,000 UDP queries, beyond what it grows by in as long a time without them
    (the audio thread of a 586-node graph burns a steady fifth of a core and would
    otherwise be taken for it on a busy machine)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pkt = osc("/node/fader0/gain")
    t0, c0 = time.monotonic(), thread_cpu(d.proc.pid)
    time.sleep(1.0)
    t1, c1 = time.monotonic(), thread_cpu(d.proc.pid)
    for i in range(5000):
        s.sendto(pkt, ("127.0.0.1", d.port))
        if i % 100 == 99:
            time.sleep(0.01)
    s.close()
    d.sync()
    t2, c2 = time.monotonic(), thread_cpu(d.proc.pid)
    k = (t2 - t1) / (t1 - t0)

    def extra(t: int) -> float:
        return (c2[t] - c1.get(t, 0.0)) - k * (c1.get(t, 0.0) - c0.get(t, 0.0))

    return max(c2, key=extra)


def part_load(port: int, nodes: int, exe: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe)
        fcp, built, ready = [], [], []
        for _ in range(3):
            pg = b.new_page(viewport={"width": 1280, "height": 800})
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.wait_for_function(READY, timeout=60000)
            pg.wait_for_function("performance.getEntriesByName('painted').length > 0",
                                 timeout=60000)
            t = pg.evaluate("""() => [
                performance.getEntriesByName('first-contentful-paint')[0].startTime,
                performance.getEntriesByName('built')[0].startTime,
                performance.getEntriesByName('painted')[0].startTime,
                document.querySelectorAll('.strip').length]""")
            fcp.append(t[0])
            built.append(t[1])
            ready.append(t[2])
            strips = t[3]
            pg.close()
        b.close()
    print(f"first contentful paint: {statistics.median(fcp):.0f} ms; mixer built "
          f"({nodes} nodes in {strips} strips): {statistics.median(built):.0f} ms; "
          f"first frame painted after it: {statistics.median(ready):.0f} ms "
          "(median of 3 loads, from navigation start)")


def part_ws(port: int, moves: int) -> None:
    wa, wb = WS(port), WS(port)
    for w in (wa, wb):
        w.send("/subscribe", 60.0)
        w.until(lambda m: m[0] == "/done" and m[1][0] == "/subscribe", 30)
        w.send("/sync", 1)
        w.until(lambda m: m == ("/synced", [1]), 30)
    rtt = []
    for _ in range(moves):
        t0 = time.perf_counter()
        wa.send("/node/fader0/gain")
        wa.until(lambda m: m[0] == "/node/fader0/gain")
        rtt.append((time.perf_counter() - t0) * 1e3)
    fb = []
    target = "/node/fader0/gain"
    for i in range(moves):
        v = -20.0 + (i % 40) * 0.5
        t0 = time.perf_counter()
        wa.send(target, v)
        wb.until(lambda m, v=v: m[0] == target and abs(m[1][0] - v) < 1e-6)
        fb.append((time.perf_counter() - t0) * 1e3)
        wa.until(lambda m: m[0] == "/done")
        time.sleep(0.04)
    print(f"websocket request->reply: median {statistics.median(rtt):.2f} ms, "
          f"p99 {pct(rtt, 0.99):.2f} ms ({moves})")
    print(f"websocket set at A -> feedback at B: median {statistics.median(fb):.2f} ms, "
          f"p99 {pct(fb, 0.99):.2f} ms ({moves})")
    wa.close()
    wb.close()


WATCH = """() => { window.__seen = [];
  const f = document.querySelector(".fader[data-address='/node/fader0/gain']");
  new MutationObserver(() => window.__seen.push(
      [performance.timeOrigin + performance.now(), Number(f.dataset.norm)]))
    .observe(f, { attributes: true, attributeFilter: ["data-norm"] }); }"""
MOVE = """([n, gap]) => new Promise((done) => {
  const m = window.mixgraph, sent = []; let i = 0;
  m.send("/node/fader0/gain/touch", { i: 1 });
  const next = () => {
    if (i === n) { m.send("/node/fader0/gain/touch", { i: 0 }); done(sent); return; }
    const v = 0.2 + 0.6 * i / n;  // a slow ramp: each position sent once, so never mistaken
    sent.push([performance.timeOrigin + performance.now(), Math.fround(v)]);
    m.send("/node/fader0/gain/norm", v); i++; setTimeout(next, gap);
  };
  next(); })"""


def _match(sent: list, seen: list, slack: float = 0.0) -> list[float]:
    """In order: each move's first sighting after it was sent (the server's norm comes back
    through the taper and float32, so within 1e-4 of what A sent), in ms."""
    lat, j = [], 0
    for t, v in sent:
        k = j
        while k < len(seen) and not (seen[k][0] >= t - slack and abs(seen[k][1] - v) < 1e-4):
            k += 1
        if k < len(seen):
            lat.append(max(0.0, seen[k][0] - t))
            j = k + 1
    return lat


def part_moves(port: int, moves: int, exe: str) -> None:
    import threading

    from playwright.sync_api import sync_playwright

    # C: a raw WebSocket client (this process) seeing the same feedback as browser B, so
    # that the browser's share and the transport's + server's share can be told apart
    wc = WS(port)
    wc.send("/subscribe", 120.0)
    wc.until(lambda m: m[0] == "/done" and m[1][0] == "/subscribe", 30)
    at_c: list = []
    stop = threading.Event()

    def read_c() -> None:
        while not stop.is_set():
            try:
                op, payload = wc.frame(0.5)
            except OSError:
                continue
            if op == 0x9:
                wc.send_frame(0xA, payload)  # the server's heartbeat
            elif op == 0x2:
                for m in OscPacket(payload).messages:
                    if m.message.address == "/node/fader0/gain/norm":
                        at_c.append([time.time() * 1e3, m.message.params[0]])

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe)
        pa, pb = (b.new_context(viewport={"width": 1280, "height": 800}).new_page()
                  for _ in range(2))
        for pg in (pa, pb):
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.wait_for_function(READY, timeout=60000)
        pb.evaluate(WATCH)
        th = threading.Thread(target=read_c, daemon=True)
        th.start()
        sent = pa.evaluate(MOVE, [moves, 40])
        time.sleep(0.5)
        stop.set()
        th.join()
        seen = pb.evaluate("window.__seen")
        b.close()
    wc.close()
    lat = _match(sent, seen)
    print(f"browser A fader move -> server -> browser B fader moved: median "
          f"{statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, max {max(lat):.1f} ms "
          f"({len(lat)} of {len(sent)} moves seen at B; sent 40 ms apart: the ones not seen "
          "came less than a feedback period (33 ms) after the one before, and only the "
          "latest of those is sent)")
    lat_c = _match(sent, at_c, slack=1.0)  # two clocks (the page's and this process's)
    if lat_c:
        print(f"  the same moves at a raw WebSocket client: median {statistics.median(lat_c):.2f}"
              f" ms, p99 {pct(lat_c, 0.99):.2f} ms ({len(lat_c)} seen): the transport's and "
              "the server's share")
    with open("/proc/loadavg") as f:
        print(f"  load average during the run: {f.read().split()[0]}")


class RawPage:
    """A raw WebSocket client that streams what a mixer page streams (every meter node at
    30 Hz as blobs, the parameter subscription, /sync every 2 s), read by a thread: the
    server's share of a browser, without a chromium on the same 2 cores."""

    def __init__(self, port: int, metered: list[str]) -> None:
        import threading

        self.ws = WS(port)
        self.lock = threading.Lock()
        self.frames = 0
        self.stop = threading.Event()
        self.ws.send("/subscribe", 10.0)
        for n in metered:
            self.ws.send("/meters/subscribe", n, 30.0, "blob")
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self) -> None:
        beat = time.monotonic() + 2.0
        while not self.stop.is_set():
            if time.monotonic() > beat:
                beat += 2.0
                with self.lock:
                    self.ws.send("/sync", 0)
            try:
                op, payload = self.ws.frame(0.5)
            except OSError:
                continue
            if op == 0x9:
                with self.lock:
                    self.ws.send_frame(0xA, payload)
            elif op == 0x2 and b"/meters\0" in payload:
                self.frames += 1
            elif op == -1:
                return

    def close(self) -> None:
        self.stop.set()
        self.th.join()
        self.ws.close()


def part_meters(d: Daemon, port: int, browsers: int, seconds: float, exe: str,
                raw: int = 0, channels: int = 64) -> None:
    from playwright.sync_api import sync_playwright

    tid = control_thread(d)

    def window(what: str) -> None:
        # /status worst_us is the slowest block since the start: a window's own worst is
        # known only when it set a new one (else: no block slower than the one before)
        w0 = d.status()["worst_us"]
        c0 = thread_cpu(d.proc.pid).get(tid, 0.0)
        t0 = time.monotonic()
        time.sleep(seconds)
        c1 = thread_cpu(d.proc.pid).get(tid, 0.0)
        st = d.status()
        worst = (f"worst block {st['worst_us']:.0f} us, a new worst" if st["worst_us"] > w0
                 else f"no block slower than the worst before it ({w0:.0f} us)")
        print(f"  {what}: control thread {100 * (c1 - c0) / (time.monotonic() - t0):.1f} % of "
              f"a core; {worst} (budget {st['budget_us']:.0f} us); DSP load {st['load']:.1f} %; "
              f"xruns {st['xruns']}, late {st['late']}, meters_dropped {st['meters_dropped']}; "
              f"load average {open('/proc/loadavg').read().split()[0]}")

    print(f"meters: {seconds:g} s windows")
    window("no browser")
    if raw:
        pages = [RawPage(port, [f"mtr{i}" for i in range(channels)]) for _ in range(raw)]
        time.sleep(2)
        f0 = sum(r.frames for r in pages)
        window(f"{raw} raw WebSocket clients (no chromium), {channels} meter nodes each at 30 Hz")
        print(f"  they received {(sum(r.frames for r in pages) - f0) / raw / seconds:.1f} "
              "meter frames a second each")
        for r in pages:
            r.close()
        window("after they closed")
    if not browsers:
        return
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe)
        pages = []
        for _ in range(browsers):
            # a context each: a page of its own window, in front (a background tab is
            # throttled: it answers no ping and the server rightly closes it)
            pg = b.new_context(viewport={"width": 1280, "height": 800}).new_page()
            # "commit": the next page starts while this one builds (16 pages of a 586-node
            # mixer loading one after the other on a busy 2-core box take minutes)
            pg.goto(f"http://127.0.0.1:{port}/", wait_until="commit", timeout=120000)
            pages.append(pg)
        for pg in pages:
            pg.wait_for_function(READY, timeout=300000)
        n = pages[0].evaluate("Object.keys(window.mixgraph.meters).length")
        time.sleep(2)
        window(f"{browsers} browsers, {n} meter bars each at 30 Hz")
        counted = pages[-1].evaluate("""() => new Promise((ok) => {
            const box = [...window.mixgraph.meters['/meters/mtr0/peak/1']][0].box.cv;
            let k = 0; const o = new MutationObserver(() => k++);
            o.observe(box, { attributes: true, attributeFilter: ['data-level'] });
            setTimeout(() => { o.disconnect(); ok(k); }, 2000); })""")
        print(f"  the last browser's channel 1 meter was drawn {counted / 2:.0f} times a second")
        b.close()
    window("after they closed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--parts", default="load,ws,moves,meters")
    ap.add_argument("--moves", type=int, default=1000)
    ap.add_argument("--ws-moves", type=int, default=300)
    ap.add_argument("--browsers", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--raw", type=int, default=0, help="meters: first a window with this "
                    "many raw WebSocket clients streaming what a page streams (0: none; "
                    "--browsers 0 then skips chromium)")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    page = (resources.files("mixgraph.server") / "web" / "index.html").read_bytes()
    print(f"page: {len(page)} bytes ({len(gzip.compress(page, 9))} gzipped), one file")
    exe = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        s = Session(Engine(48000.0, 0, 2))
        build_mix64(s, a.channels)
        for i in range(a.channels):
            s.add_node("meter", f"mtr{i}", {"channels": 2})
            s.connect(f"fader{i}", f"mtr{i}")
        s.commit()
        write_patch(s.to_doc(), state / AUTOSAVE)
        port = free_tcp_port()
        d = Daemon(state, "--backend", "null", "--http", str(port),
                   "--max-conns-per-host", "64")  # 16 pages + their page loads, one host
        try:
            nodes = d.status()["nodes"]
            print(f"graph: mix{a.channels} and a meter per channel, {nodes} nodes")
            if not exe and parts - {"ws"} and not (a.raw and a.browsers == 0):
                print("no chromium: only the ws part runs")
                parts &= {"ws"}
            if "load" in parts:
                part_load(port, nodes, exe)
            if "ws" in parts:
                part_ws(port, a.ws_moves)
            if "moves" in parts:
                part_moves(port, a.moves, exe)
            if "meters" in parts:
                part_meters(d, port, a.browsers, a.seconds, exe, a.raw, a.channels)
        finally:
            d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
