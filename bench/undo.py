"""What undo costs the control thread (issue 14: undo of a 200-value recall <= 5 ms).

    .venv/bin/python bench/undo.py [--repeats 50] [--values 200]

In process, the daemon's parts built as `mixgraph serve` builds them (state
directory, journal with fsync every 100 ms, autosave, the null clock running),
200 `gain` nodes into one output, and the control loop turned by hand as in
bench/journal_cost.py: one `/undo` (then one `/redo`) packet through the same
_packet() the selector loop calls, the replies flushed (the journal write is
there), then the loop's service() (plan commit, feedback). Timed with
perf_counter (wall) and thread_time (the control thread's CPU); median and
worst of the repeats. Two steps of 200 values:

- `record_values`: the step a scene recall records (server/history.py's API);
- `pattern set`: `/node/g*/gain <v>`, a client command moving 200 faders.

Then the price of the hooks on the flood path: control-thread CPU per
parameter set (batches of 64 through _packet, as bench/journal_cost.py),
with the history's wrappers in place and with them taken off."""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mixgraph.clients.protocol import encode  # noqa: E402

WRAPPED_SESSION = ("add_node", "remove_node", "connect", "disconnect", "set_bypass",
                   "set_param", "_record", "load_doc")
WRAPPED_DISPATCH = ("dispatch", "fast_set", "_apply_bundle", "_rollback")


def build(n: int, tmp: str):
    from mixgraph.server.backends import start_backend
    from mixgraph.server.daemon import Daemon as Serve
    from mixgraph.server.daemon import ServeOptions

    d = Serve(ServeOptions(backend="null", port=0, tcp_port=-1, state_dir=Path(tmp),
                           status=False, mlock=False, rate_limit=0))
    running = start_backend(d.config, d.engine)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    peer = d.server._udp_peer(sink.getsockname())
    disp = d.dispatcher
    disp.dispatch("/graph/add", ["output", "out"], peer.reply, 0, peer)
    for i in range(n):
        disp.dispatch("/graph/add", ["gain", f"g{i}"], peer.reply, 0, peer)
        disp.dispatch("/graph/connect", [f"g{i}", "out"], peer.reply, 0, peer)
    d.session.commit()
    return d, running, sink, peer


def drain(sink: socket.socket) -> None:
    while True:
        try:
            sink.recv(65536)
        except BlockingIOError:
            return


def turn(d, peer, sink, data: bytes) -> tuple[float, float]:
    """One packet through the control loop: (wall ms, cpu ms)."""
    srv = d.server
    w0, c0 = time.perf_counter(), time.thread_time()
    srv._holding = True
    srv._packet(data, peer, time.monotonic())
    srv._holding = False
    srv._flush_replies()
    srv.service()
    w, c = time.perf_counter() - w0, time.thread_time() - c0
    drain(sink)
    return w * 1e3, c * 1e3


def bench_undo(n: int, repeats: int, how: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"undo wall": [], "undo cpu": [], "redo wall": [],
                                   "redo cpu": []}
    with tempfile.TemporaryDirectory() as tmp:
        d, running, sink, peer = build(n, tmp)
        try:
            s, h = d.session, d.session.history
            for r in range(repeats):
                v = -1.0 - (r % 40) * 0.5
                if how == "record_values":
                    changes = []
                    for i in range(n):
                        before = s.get_param(f"g{i}", "gain")
                        s.set_param(f"g{i}", "gain", v)
                        changes.append((f"g{i}", "gain", before, v))
                    h.record_values("scene recall bench", changes)
                else:
                    turn(d, peer, sink, encode("/node/g*/gain", [v]))
                assert len(h.undo_steps[-1].ops) == n
                time.sleep(0.02)  # let the engine take the commands in
                w, c = turn(d, peer, sink, encode("/undo", []))
                out["undo wall"].append(w)
                out["undo cpu"].append(c)
                assert s.get_param("g0", "gain") != v
                time.sleep(0.02)
                w, c = turn(d, peer, sink, encode("/redo", []))
                out["redo wall"].append(w)
                out["redo cpu"].append(c)
                assert s.get_param("g0", "gain") == v
        finally:
            close(d, running, sink)
    return out


def bench_flood(batches: int, hooks: bool) -> float:
    """Control-thread CPU microseconds per parameter set (fast path)."""
    with tempfile.TemporaryDirectory() as tmp:
        d, running, sink, peer = build(8, tmp)
        try:
            if not hooks:
                for a in WRAPPED_SESSION:
                    delattr(d.session, a)
                for a in WRAPPED_DISPATCH:
                    delattr(d.dispatcher, a)
            srv = d.server
            pkts = [encode(f"/node/g{k % 8}/gain", [-60.0 + (k % 1000) * 0.01])
                    for k in range(64 * 16)]
            cpu = 0.0
            for b in range(batches):
                batch = pkts[(b % 16) * 64:(b % 16 + 1) * 64]
                t0 = time.thread_time()
                srv._holding = True
                now = time.monotonic()
                for data in batch:
                    srv._packet(data, peer, now)
                srv._holding = False
                srv._flush_replies()
                srv.service()
                cpu += time.thread_time() - t0
                drain(sink)
            return cpu / (batches * 64) * 1e6
        finally:
            close(d, running, sink)


def close(d, running, sink) -> None:
    running.stop()
    d.autosaver.close()
    if d.journal is not None:
        d.journal.close()
    sink.close()
    d.session.close()
    d.server.close()
    d.engine.free()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--values", type=int, default=200)
    ap.add_argument("--batches", type=int, default=200, help="flood: batches of 64 sets")
    a = ap.parse_args()
    print(f"undo/redo of a {a.values}-value step, {a.repeats} repeats (ms: median / worst)")
    for how in ("record_values", "pattern set"):
        r = bench_undo(a.values, a.repeats, how)
        print(f"  {how:14s} " + "  ".join(
            f"{k} {statistics.median(v):.2f} / {max(v):.2f}" for k, v in r.items()))
    on, off = [], []
    for _ in range(3):  # arms alternate: the machine is shared
        on.append(bench_flood(a.batches, True))
        off.append(bench_flood(a.batches, False))
    print(f"flood path, control CPU per set: {statistics.median(on):.1f} us with the "
          f"history's hooks, {statistics.median(off):.1f} us without (median of 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
