"""Big graphs: how building and editing a 10,000-node graph scales (issue 13, "Scale").

    python bench/scale.py [--nodes 10000] [--connects 50]

Runs a real `mixgraph serve` on the null clock (real time, 48 kHz, 64-frame
blocks) and measures, in one run:

1. patch load: a chain of N stereo gains into an output, as a patch file,
   loaded by `/patch/load` (seconds, from the request to its /done, and again
   on a second load of the same patch, which is a diff that changes nothing);
2. N adds by OSC over TCP, pipelined (every /graph/add sent at once, then every
   reply read): seconds until the last /done, then `/sync`;
3. a connect (and its disconnect) on the N-node graph: the round trip of each,
   median and worst of --connects rounds;
4. the engine's worst block during all of it (`/status` worst_us, the worst
   since the start, so it is also printed after each phase: the load, a
   `/graph/clear` of the loaded chain, the adds, the connects), against the
   1333 us budget of a 64-frame block.

Figures, not assertions: the machine is shared, so quote the medians of a few
runs. The targets of the issue are a 10,000-node load <= 2 s, 10,000 adds <= 5 s,
a connect <= 2 ms and no block over budget.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mixgraph.clients import Client  # noqa: E402
from mixgraph.clients.protocol import encode  # noqa: E402

from daemon_util import free_udp_port  # noqa: E402


def chain_patch(n: int) -> dict:
    nodes = [{"name": "out", "type": "output", "channels": 2}]
    nodes += [{"name": f"g{i}", "type": "gain", "channels": 2, "params": {"gain": -0.01}}
              for i in range(n)]
    conns = [[f"g{i}", f"g{i + 1}"] for i in range(n - 1)] + [[f"g{n - 1}", "out"]]
    return {"format": "mixgraph-patch", "version": 1, "nodes": nodes, "connections": conns}


def status(c: Client) -> dict:
    _, args = c.request("/status", timeout=30)
    return dict(zip(args[::2], args[1::2], strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--connects", type=int, default=50)
    a = ap.parse_args()
    n = a.nodes
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        (state / "patches").mkdir(parents=True)
        (state / "patches" / "chain.json").write_text(json.dumps(chain_patch(n)))
        port = free_udp_port()
        log = open(Path(tmp) / "serve.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixgraph.server.cli", "serve", "--port", str(port),
             "--state-dir", str(state), "--backend", "null", "--no-status"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ})
        try:
            deadline = time.monotonic() + 30
            while "ready on udp" not in (Path(tmp) / "serve.log").read_text():
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit("daemon did not start:\n" + (Path(tmp) / "serve.log").read_text())
                time.sleep(0.05)
            c = Client("127.0.0.1", port, timeout=120.0, transport="tcp")
            status(c)  # resets nothing; worst_us is the worst since start
            t0 = time.perf_counter()
            c.call("/patch/load", "chain.json", timeout=300)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            c.call("/patch/load", "chain.json", timeout=300)
            reload_s = time.perf_counter() - t0
            st = status(c)
            print(f"patch load, {n}-node chain: {load_s:.2f} s (again, unchanged: "
                  f"{reload_s:.2f} s)")

            worst_load = st.get("worst_us")
            t0 = time.perf_counter()
            c.call("/graph/clear", timeout=300)
            clear_s = time.perf_counter() - t0
            c.request("/sync", 1, timeout=300)
            time.sleep(0.5)  # the removal's fades and the plan without the nodes
            worst_clear = status(c).get("worst_us")
            print(f"/graph/clear of it: {clear_s:.2f} s to /done")
            pkts = [encode("/graph/add", ["output", "o2", "channels", 2])]
            pkts += [encode("/graph/add", ["gain", f"a{i}", "channels", 2]) for i in range(n)]
            t0 = time.perf_counter()
            c.send_many(pkts)
            got = 0
            while got < len(pkts):
                addr, args = c.receive(timeout=300)
                if addr in ("/done", "/fail") and args[:1] == ["/graph/add"]:
                    if addr == "/fail":
                        sys.exit(f"add failed: {args}")
                    got += 1
            adds_s = time.perf_counter() - t0
            c.request("/sync", 2, timeout=300)
            adds_sync_s = time.perf_counter() - t0
            worst_adds = status(c).get("worst_us")
            print(f"{n} adds by OSC over TCP (pipelined): {adds_s:.2f} s to the last /done, "
                  f"{adds_sync_s:.2f} s to /synced")

            rt = []
            for i in range(a.connects):
                src = f"a{(i * 7919) % n}"
                t0 = time.perf_counter()
                c.call("/graph/connect", src, "o2")
                t1 = time.perf_counter()
                c.call("/graph/disconnect", src, "o2")
                rt.append((t1 - t0) * 1e3)
                rt.append((time.perf_counter() - t1) * 1e3)
            print(f"connect/disconnect on {n + 1} nodes, {len(rt)} round trips: median "
                  f"{statistics.median(rt):.2f} ms, worst {max(rt):.2f} ms")
            st = status(c)
            worst = st.get("worst_us")
            print(f"engine: worst block so far after the load {worst_load} us, after the clear "
                  f"{worst_clear} us, after the adds {worst_adds} us, after the connects "
                  f"{worst} us (budget 1333 us; wall-clock time, so a shared machine's "
                  "preemption counts)")
            print(f"engine: worst block {worst} us (budget 1333 us), DSP load now "
                  f"{st.get('load')}% with {st.get('nodes')} nodes; xruns {st.get('xruns')}; "
                  f"{st.get('plans')} plans built")
            c.close()
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


if __name__ == "__main__":
    main()
