"""The browser surface (`mixgraph serve --http`): page size, time to first paint and to a
ready mixer with the mix64 graph, and WebSocket latency.

    python bench/browser.py [--channels 64] [--moves 300]

Starts a real daemon (null backend) whose state is the mix64 reference session
(bench/mix64.py build_mix64, restored from its autosave), then:

- the page's size as served (bytes, and gzip -9 for comparison: it is served plain);
- in Debian's chromium (Playwright, the system executable): navigation start to
  first-contentful-paint (the header, before any OSC), to the mixer built (every strip in
  the DOM: /graph/nodes, /catalog/type per type, then the strips: the page's mark
  "built") and to the first frame painted after that (mark "painted"), median of 5 loads;
- over WebSocket (a raw RFC 6455 client, two connections A and B both subscribed):
  request -> reply on one socket (a query of `/node/fader0/gain`), and a set from A -> its
  feedback at B (`/node/fader0/gain`), median and 99th percentile of --moves round trips;
  the sets are spaced 40 ms apart so that each is a lone change (feedback's 30 Hz coalescing sends a
  lone change at once).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mix64 import build_mix64  # noqa: E402
from test_http import WS, free_tcp_port  # noqa: E402

from mixgraph.server.engine import Engine  # noqa: E402
from mixgraph.server.session import Session  # noqa: E402
from mixgraph.server.state import AUTOSAVE, write_patch  # noqa: E402

from daemon_util import Daemon  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--moves", type=int, default=300)
    a = ap.parse_args()
    page = (resources.files("mixgraph.server") / "web" / "index.html").read_bytes()
    print(f"page: {len(page)} bytes ({len(gzip.compress(page, 9))} gzipped), one file")
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        s = Session(Engine(48000.0, 0, 2))
        build_mix64(s, a.channels)
        doc = s.to_doc()
        write_patch(doc, state / AUTOSAVE)
        port = free_tcp_port()
        d = Daemon(state, "--backend", "null", "--http", str(port))
        try:
            nodes = d.status()["nodes"]
            print(f"graph: mix{a.channels}, {nodes} nodes")
            exe = shutil.which("chromium")
            if exe:
                from playwright.sync_api import sync_playwright

                with sync_playwright() as p:
                    b = p.chromium.launch(executable_path=exe)
                    fcp, built, ready = [], [], []
                    for _ in range(5):
                        pg = b.new_page(viewport={"width": 1280, "height": 800})
                        pg.goto(f"http://127.0.0.1:{port}/")
                        pg.wait_for_function("document.body.dataset.ready === '1'",
                                             timeout=30000)
                        pg.wait_for_function(
                            "performance.getEntriesByName('painted').length > 0",
                            timeout=30000)
                        t = pg.evaluate("""() => [
                            performance.getEntriesByName('first-contentful-paint')[0].startTime,
                            performance.getEntriesByName('built')[0].startTime,
                            performance.getEntriesByName('painted')[0].startTime,
                            document.querySelectorAll('.strip').length]""")
                        fcp.append(t[0])
                        built.append(t[1])
                        ready.append(t[2])
                        assert t[3] == nodes, t
                        pg.close()
                    b.close()
                print(f"first contentful paint: {statistics.median(fcp):.0f} ms; mixer built "
                      f"({nodes} strips in the DOM): {statistics.median(built):.0f} ms; "
                      f"first frame painted after it: {statistics.median(ready):.0f} ms "
                      "(median of 5 loads, from navigation start)")
            else:
                print("no chromium: paint times not measured")
            wa, wb = WS(port), WS(port)
            for w in (wa, wb):
                w.send("/subscribe", 60.0)
                w.until(lambda m: m[0] == "/done" and m[1][0] == "/subscribe", 30)
                w.send("/sync", 1)
                w.until(lambda m: m == ("/synced", [1]), 30)
            rtt = []
            for _ in range(a.moves):
                t0 = time.perf_counter()
                wa.send("/node/fader0/gain")
                wa.until(lambda m: m[0] == "/node/fader0/gain")
                rtt.append((time.perf_counter() - t0) * 1e3)
            fb = []
            target = "/node/fader0/gain"
            for i in range(a.moves):
                v = -20.0 + (i % 40) * 0.5
                t0 = time.perf_counter()
                wa.send(target, v)
                wb.until(lambda m, v=v: m[0] == target and abs(m[1][0] - v) < 1e-6)
                fb.append((time.perf_counter() - t0) * 1e3)
                wa.until(lambda m: m[0] == "/done")
                time.sleep(0.04)
            print(f"websocket request->reply: median {statistics.median(rtt):.2f} ms, "
                  f"p99 {pct(rtt, 0.99):.2f} ms ({a.moves})")
            print(f"websocket set at A -> feedback at B: median {statistics.median(fb):.2f} ms, "
                  f"p99 {pct(fb, 0.99):.2f} ms ({a.moves})")
        finally:
            d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
