"""Big graphs: how building and editing a 10,000-node graph scales (issue 13, "Scale").

    python bench/scale.py [--nodes 10000] [--connects 50] [--parts daemon,inproc]

Part `daemon` runs a real `mixgraph serve` on the null clock (real time, 48 kHz,
64-frame blocks) and measures, in one run:

1. patch load: a chain of N stereo gains into an output, as a patch file,
   loaded by `/patch/load` (seconds, from the request to its /done, then to
   the /synced of a `/sync` sent after it, which answers once every node has
   joined the engine's plans (a big load joins in batches: server/admit.py),
   and again on a second load of the same patch, which is a diff that changes
   nothing);
2. N adds by OSC over TCP, pipelined (every /graph/add sent at once, then every
   reply read): seconds until the last /done, then `/sync`;
3. a connect (and its disconnect) on the N-node graph: the round trip of each,
   median and worst of --connects rounds;
4. the engine's worst block during all of it (`/status` worst_us, the worst
   since the start, so it is also printed after each phase: the load, a
   `/graph/clear` of the loaded chain, the adds, the connects), against the
   1333 us budget of a 64-frame block, and which phase set it. Beside it, per
   phase, the worst block that swapped in a plan (`/status` worst_swap_us),
   and what happened to the audio thread (`mg-audio`, read from /proc): how
   often the kernel preempted it (nonvoluntary context switches) and its page
   faults. A worst block in a phase where the thread was preempted, while the
   blocks that swapped plans stayed in budget, is the machine, not the plan.

The daemon's round trips cannot show what a connect costs the control thread (the
reply goes out before the batch's plan is built, and the old plan is freed later),
nor what one block costs the audio thread. Part `inproc` measures both in this
process, with a Session on an Engine driven block by block (Engine.process: the
audio thread's work, timed by the engine itself):

5. a connect (and its disconnect) on the N-node chain plus a second output:
   control-thread CPU time (time.thread_time) of the edit, its commit (the plan
   build) and every service() until the edit is done (the old plan handed back
   and freed, the fade finished), median and worst of --connects rounds;
6. audio: the median block of the steady chain, and the block that swaps in a
   new plan (worst over the connects), with the part of it the swap itself
   took (apply_plan and the op refresh it causes: mg_stats.worst_swap_us) and
   the nodes, edges and ops it visited (mg_stats.swap_work);
7. removing every node (as /graph/clear does) and running blocks until the
   session is idle: control CPU of the removals and commit, and every block's
   time (median, worst, and how many were over budget).

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
    ap.add_argument("--parts", default="daemon,inproc",
                    help="comma-separated: daemon, inproc (default both)")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    if "daemon" in parts:
        daemon(a.nodes, a.connects)
    if "inproc" in parts:
        inproc(a.nodes, a.connects)


BUDGET_US = 64 / 48000 * 1e6


def inproc(n: int, connects: int) -> None:
    """Parts 5-7 (see the module docstring): control-thread CPU per connect and
    per-block audio time, in this process."""
    import numpy as np

    from mixgraph.server._core import lib
    from mixgraph.server.engine import Engine
    from mixgraph.server.session import Session

    e = Engine(48000, 0, 2)
    s = Session(e)
    silence = np.zeros((64, 0), np.float32)

    last = [None]  # the engine's counters after the latest block

    def block() -> float:  # the engine's own timing of the block (mg_engine_process)
        lib.mg_engine_take_worst_us(e.ptr)
        e.process(64, silence, block=64)
        last[0] = e.stats()
        return lib.mg_engine_take_worst_us(e.ptr)

    t0 = time.thread_time()
    s.load_doc(chain_patch(n))
    s.add_node("output", "o2", {"channels": 2})
    s.commit()
    print(f"[inproc] {n}-node chain built and committed: {time.thread_time() - t0:.2f} s CPU")
    steady = []
    for _ in range(50):
        steady.append(block())
        s.service()
    ctl, swap, part, work = [], [], [], []
    for i in range(connects):
        src = f"g{(i * 7919) % n}"
        for edit in (s.connect, s.disconnect):
            t = time.thread_time()
            edit(src, "o2")
            s.commit()
            c = time.thread_time() - t
            swap.append(block())  # the block that takes the new plan
            st = last[0]
            part.append(st.last_swap_us)
            work.append(st.swap_work)
            for _ in range(40):  # until the fade is over and the old plan is freed
                t = time.thread_time()
                s.service()
                c += time.thread_time() - t
                if s.idle():
                    break
                block()
            ctl.append(c * 1e3)
    print(f"[inproc] connect or disconnect on {n + 1} nodes, {len(ctl)} edits: control-thread "
          f"CPU (edit + commit + service until idle) median {statistics.median(ctl):.2f} ms, "
          f"worst {max(ctl):.2f} ms")
    print(f"[inproc] audio: steady block median {statistics.median(steady):.0f} us; the block "
          f"that swaps in a plan median {statistics.median(swap):.0f} us, worst "
          f"{max(swap):.0f} us (budget {BUDGET_US:.0f} us); of it the swap itself median "
          f"{statistics.median(part):.0f} us, worst {max(part):.0f} us, visiting "
          f"{int(statistics.median(work))} nodes, edges and ops")
    t = time.thread_time()
    for name in list(s.graph.nodes):
        s.remove_node(name)
    s.commit()
    clear_cpu = time.thread_time() - t
    blocks, svc = [], []
    while len(blocks) < 2000:
        blocks.append(block())
        t = time.thread_time()
        s.service()
        svc.append((time.thread_time() - t) * 1e3)
        if s.idle() and not s.refs.owners:
            break
    over = sum(b > BUDGET_US for b in blocks)
    print(f"[inproc] clear: removals + commit {clear_cpu * 1e3:.0f} ms CPU; {len(blocks)} "
          f"blocks until idle: median {statistics.median(blocks):.0f} us, worst "
          f"{max(blocks):.0f} us, {over} over budget; service() worst {max(svc):.1f} ms CPU")
    s.close()
    e.free()


def audio_thread(pid: int) -> Path | None:
    """/proc/<pid>/task/<tid> of the daemon's audio thread (named mg-audio)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() == "mg-audio":
                return task
        except OSError:
            continue
    return None


def thread_counts(task: Path | None) -> tuple[int, int]:
    """(nonvoluntary context switches, page faults) of a thread so far."""
    if task is None:
        return 0, 0
    try:
        status = (task / "status").read_text()
        stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    preempted = next((int(line.split()[1]) for line in status.splitlines()
                      if line.startswith("nonvoluntary_ctxt_switches")), 0)
    return preempted, int(stat[7]) + int(stat[9])  # minflt + majflt (fields 10 and 12)


class Phases:
    """Per phase of the daemon part: the engine's worst block and worst
    swapping block so far (/status keeps the worst since the start), and what
    the audio thread went through during the phase."""

    def __init__(self, c: Client, task: Path | None) -> None:
        self.c, self.task = c, task
        self.rows: list[tuple] = []
        self.worst = 0.0
        self.mark = thread_counts(task)

    def end(self, name: str) -> None:
        st = status(self.c)
        counts = thread_counts(self.task)
        worst = float(st.get("worst_us", 0.0))
        self.rows.append((name, worst, float(st.get("worst_swap_us", 0.0)), worst > self.worst,
                          counts[0] - self.mark[0], counts[1] - self.mark[1]))
        self.worst = max(self.worst, worst)
        self.mark = counts

    def report(self) -> None:
        print("phase        worst block  worst swap block  set the worst  audio thread: "
              "preempted  page faults   (us, so far; counts in the phase)")
        for name, worst, swap, new, pre, faults in self.rows:
            print(f"{name:<12} {worst:>11.0f}  {swap:>16.0f}  {'yes' if new else '':>13}  "
                  f"{pre:>23}  {faults:>11}")
        setters = [r for r in self.rows if r[3]]
        if setters:
            name, worst, swap, _, pre, faults = setters[-1]
            cause = ("the audio thread was preempted in it" if pre else
                     "page faults" if faults else "no preemption nor fault was seen")
            print(f"worst block {worst:.0f} us (budget {BUDGET_US:.0f} us) during {name}; worst "
                  f"block that swapped in a plan by then {swap:.0f} us; {cause} "
                  f"({pre} preemptions, {faults} page faults)")


def daemon(n: int, connects: int) -> None:
    """Parts 1-4 (see the module docstring), against a real daemon."""
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
            ph = Phases(c, audio_thread(proc.pid))
            ph.end("start")
            t0 = time.perf_counter()
            c.call("/patch/load", "chain.json", timeout=300)
            load_s = time.perf_counter() - t0
            c.request("/sync", 3, timeout=300)  # every node in the engine (server/admit.py)
            load_sync_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            c.call("/patch/load", "chain.json", timeout=300)
            reload_s = time.perf_counter() - t0
            ph.end("load")
            st = status(c)
            print(f"patch load, {n}-node chain: {load_s:.2f} s to /done, {load_sync_s:.2f} s "
                  f"to /synced (every node in the engine's plan; again, unchanged: "
                  f"{reload_s:.2f} s)")

            worst_load = st.get("worst_us")
            t0 = time.perf_counter()
            c.call("/graph/clear", timeout=300)
            clear_s = time.perf_counter() - t0
            c.request("/sync", 1, timeout=300)
            time.sleep(0.5)  # the removal's fades and the plan without the nodes
            worst_clear = status(c).get("worst_us")
            ph.end("clear")
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
            ph.end("adds")
            print(f"{n} adds by OSC over TCP (pipelined): {adds_s:.2f} s to the last /done, "
                  f"{adds_sync_s:.2f} s to /synced")

            rt = []
            for i in range(connects):
                src = f"a{(i * 7919) % n}"
                t0 = time.perf_counter()
                c.call("/graph/connect", src, "o2")
                t1 = time.perf_counter()
                c.call("/graph/disconnect", src, "o2")
                rt.append((t1 - t0) * 1e3)
                rt.append((time.perf_counter() - t1) * 1e3)
            print(f"connect/disconnect on {n + 1} nodes, {len(rt)} round trips: median "
                  f"{statistics.median(rt):.2f} ms, worst {max(rt):.2f} ms")
            ph.end("connects")
            st = status(c)
            worst = st.get("worst_us")
            print(f"engine: worst block so far after the load {worst_load} us, after the clear "
                  f"{worst_clear} us, after the adds {worst_adds} us, after the connects "
                  f"{worst} us (budget 1333 us; wall-clock time, so a shared machine's "
                  "preemption counts)")
            print(f"engine: worst block {worst} us (budget 1333 us), DSP load now "
                  f"{st.get('load')}% with {st.get('nodes')} nodes; xruns {st.get('xruns')}; "
                  f"{st.get('plans')} plans built")
            ph.report()
            c.close()
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


if __name__ == "__main__":
    main()
