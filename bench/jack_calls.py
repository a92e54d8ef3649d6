"""What makes a long JACK process call: the engine's call trace and the kernel's
view of the real-time thread, over the issue-15 figure's window.

    python bench/jack_calls.py [--seconds 60] [--midi-rate 1000] [--osc-rate 10000]
                               [--perf] [--over-us 400] [--show 15]

Runs bench/jackd.py's figure (mix64 64 ch on JACK dummy, 64 frames, beside
jack_metro and the load-matched burner) with two recorders:

- the engine's call trace (mg_engine_call_trace, started in the daemon by a
  sitecustomize on its PYTHONPATH; the daemon's code is not changed): per
  process call, CLOCK_MONOTONIC at the JACK callback's start, at the engine
  call's start (the MIDI port read before it), after the commands were drained,
  at the end; the thread's CPU time over the call (CLOCK_THREAD_CPUTIME_ID,
  which leaves out time the vCPU was stolen, other threads' time and, with
  IRQ time accounting, interrupts); commands drained, parameter sets applied,
  plans swapped in;
- with --syscalls, `perf stat` on the real-time threads of mixgraph and
  jack_metro: system calls, page faults, context switches and migrations
  per cycle (libjack's own hand-over is the same in both: what mixgraph
  adds is its callback's; run it with --no-trace, whose clock reads are
  system calls);
- with --sched S, `perf record -a` of the scheduler's events (switch,
  waking, migrate) for S seconds from the window's start, and every
  migration of mixgraph's and jack_metro's real-time threads sorted by what
  ran on the CPU it left at that moment (jackd's FIFO 80 thread, another
  client's FIFO 75 thread, a thread of the daemon, another process) and how
  (moved at its wake-up, or pushed/pulled while runnable);
- jackd's log stamped with CLOCK_MONOTONIC (bench/jackd.py dummy(stamp=True)):
  each cycle in which jackd caught mixgraph late, matched with the longest
  traced call just before it (a late cycle with no long call was late outside
  the callback: woken late, or a short cycle); with --sched, the lengths of
  jackd's cycles (its driver thread's wake-ups: a timer late by d under a
  period gives a cycle of period - d) and the real-time threads' timeline in
  the 4 ms before each cycle mixgraph alone was caught in;
- with --perf, `perf record -k mono` on the real-time thread: its sched_switch
  (prev_state R: preempted; S: it slept inside the call), page faults, system
  calls, hard and soft interrupts while it ran.

A call is long when its wall time exceeds --over-us. For each: wall, CPU,
what ran in it, and the kernel's events inside it, sorted into
  preempted  - switched out runnable inside the call
  blocked    - slept inside the call (a lock, a page fault that waited, I/O)
  irq        - interrupts inside the call took the missing time
  more work  - CPU time itself long (the engine did more: cmds/applied/swaps)
  stolen     - wall >> CPU with none of the above: the vCPU did not run
               (the hypervisor's steal; /proc/stat steal over the window beside)
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SITE = """import os
if os.environ.get("MIXGRAPH_CALL_TRACE"):
    import atexit, pickle
    from mixgraph.server import engine as _eng
    _init = _eng.Engine.__init__
    _made = []

    def _traced(self, *a, **k):
        _init(self, *a, **k)
        self.call_trace_start(int(os.environ.get("MIXGRAPH_CALL_TRACE_CAP", "200000")))
        _made.append(self)

    _eng.Engine.__init__ = _traced
    _free = _eng.Engine.free

    def _freed(self):
        if self.ptr is not None and self in _made:
            self._calls = self.call_trace_read()
        _free(self)

    _eng.Engine.free = _freed

    def _dump():
        out = []
        for e in _made:
            calls = getattr(e, "_calls", None)
            if calls is None:
                calls = e.call_trace_read()
            out.append(calls)
        best = max(out, key=len) if out else []
        with open(os.environ["MIXGRAPH_CALL_TRACE"], "wb") as f:
            pickle.dump(best, f)

    atexit.register(_dump)
"""

EVENTS = ["sched:sched_switch", "sched:sched_migrate_task", "raw_syscalls:sys_enter",
          "exceptions:page_fault_user", "exceptions:page_fault_kernel",
          "irq:irq_handler_entry", "irq:irq_handler_exit", "irq:softirq_entry",
          "irq:softirq_exit"]


def site_env(tmp: Path, out: Path) -> dict[str, str]:
    """The daemon's environment for the call trace."""
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE)
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
            "MIXGRAPH_CALL_TRACE": str(out)}


def rt_tid(pid: int) -> int:
    """The SCHED_FIFO thread of `pid` (JACK's process thread)."""
    from jackd import task_stats
    for tid, f in task_stats(pid):
        if int(f[38]) in (1, 2):
            return tid
    return 0


class Perf:
    """perf record -k mono on one thread; `events()` parses its script."""

    def __init__(self, tid: int, path: Path) -> None:
        self.path = path
        self.tid = tid
        self.proc = subprocess.Popen(
            ["perf", "record", "-q", "-k", "mono", "-t", str(tid), "-o", str(path),
             *sum((["-e", e] for e in EVENTS), [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def events(self) -> list[tuple[float, str, str]]:
        """(seconds CLOCK_MONOTONIC, event, its text) of every sample."""
        r = subprocess.run(["perf", "script", "-i", str(self.path), "-F", "time,event,trace"],
                           capture_output=True, text=True)
        out = []
        for line in r.stdout.splitlines():
            m = re.match(r"\s*(\d+\.\d+):\s+(\S+?):?\s+(.*)", line)
            if m:
                out.append((float(m.group(1)), m.group(2).rstrip(":"), m.group(3)))
        return out


SCHED_EVENTS = ["sched:sched_switch", "sched:sched_waking", "sched:sched_migrate_task"]


def sched_record(path: Path, seconds: float) -> subprocess.Popen:
    """perf record -a of the scheduler's events for `seconds`."""
    return subprocess.Popen(["perf", "record", "-q", "-a", "-k", "mono", "-o", str(path),
                             *sum((["-e", e] for e in SCHED_EVENTS), []),
                             "--", "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def migrations(path: Path, tids: dict[str, int], pids: dict[str, int]) -> dict[str, dict]:
    """Each migration of the threads `tids` (name -> thread id) in a --sched
    recording, counted by (how, what ran on the CPU it left): `how` is
    `wakeup` (moved as it was woken: its CPU was busy with a thread of equal or
    higher priority) or `runnable` (pushed or pulled while it waited for a
    CPU); what ran is named by its process (`pids`: name -> process id) and
    priority (sched_switch's prio: 24 = FIFO 75, 19 = FIFO 80, 120 = normal)."""
    r = subprocess.run(["perf", "script", "-i", str(path), "-F", "cpu,time,event,trace"],
                       capture_output=True, text=True)
    tgid = {}
    for name, pid in pids.items():
        for t in Path(f"/proc/{pid}/task").glob("*"):
            tgid[int(t.name)] = name
    running: dict[int, tuple[int, str, int]] = {}  # cpu -> (pid, comm, prio)
    waking: dict[int, float] = {}
    waker: dict[int, tuple[int, str, int]] = {}  # who woke the thread last (on its CPU)
    out: dict[str, dict] = {n: {} for n in tids}
    by_tid = {v: k for k, v in tids.items()}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*\[(\d+)\]\s+(\d+\.\d+):\s+(\S+?):?\s+(.*)", line)
        if not m:
            continue
        cpu, t, ev, text = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        if ev.endswith("sched_switch"):
            n = re.search(r"next_comm=(.+?) next_pid=(\d+) next_prio=(\d+)", text)
            if n:
                running[cpu] = (int(n.group(2)), n.group(1), int(n.group(3)))
        elif ev.endswith("sched_waking"):
            n = re.search(r"pid=(\d+)", text)
            if n and int(n.group(1)) in by_tid:
                waking[int(n.group(1))] = t
                waker[int(n.group(1))] = running.get(cpu, (0, "?", 0))
        elif ev.endswith("sched_migrate_task"):
            n = re.search(r"pid=(\d+) prio=\d+ orig_cpu=(\d+) dest_cpu=(\d+)", text)
            if not n or int(n.group(1)) not in by_tid:
                continue
            tid, orig = int(n.group(1)), int(n.group(2))
            how = "wakeup" if t - waking.get(tid, -1.0) < 50e-6 else "runnable"

            def name(x: tuple[int, str, int]) -> str:
                return f"{tgid.get(x[0]) or ('idle' if x[0] == 0 else x[1])} prio {x[2]}"

            key = f"{how}, on the CPU it left: {name(running.get(orig, (0, '?', 0)))}"
            if how == "wakeup":
                key += f"; woken by {name(waker.get(tid, (0, '?', 0)))}"
            d = out[by_tid[tid]]
            d[key] = d.get(key, 0) + 1
    return out


def classify(call: tuple, evs: list, period_us: float) -> tuple[str, dict]:
    """Why one call was long (see the module docstring)."""
    wall = call[3] / 1e3
    cpu = call[4] / 1e3
    kinds: dict[str, float] = {}
    n: dict[str, int] = {}
    open_irq: dict[str, float] = {}
    for t, ev, text in evs:
        n[ev] = n.get(ev, 0) + 1
        if ev == "sched:sched_switch":
            m = re.search(r"prev_state=(\S+)", text)
            st = m.group(1) if m else "?"
            n["switch_" + st] = n.get("switch_" + st, 0) + 1
        if ev.endswith("_entry"):
            open_irq[ev] = t
        elif ev.endswith("_exit") and ev.replace("_exit", "_entry") in open_irq:
            key = ev.replace("_exit", "")
            kinds[key] = kinds.get(key, 0.0) + 1e6 * (t - open_irq.pop(ev.replace("_exit",
                                                                                  "_entry")))
    irq_us = sum(kinds.values())
    if any(k.startswith("switch_R") for k in n):
        why = "preempted"
    elif any(k.startswith("switch_") for k in n):
        why = "blocked"
    elif cpu > period_us * 0.5:
        why = "more work"
    elif irq_us > 0.5 * (wall - cpu):
        why = "irq"
    elif wall - cpu > 0.5 * wall:
        why = "stolen"
    else:
        why = "more work"
    return why, {"n": n, "irq_us": round(irq_us, 1)}


_PARSED: dict = {}  # sched_timeline's parsed recording, kept between calls


def sched_timeline(lines: list[str], tids: dict[str, int], t0: float, t1: float) -> list[str]:
    """The scheduler's events (a --sched recording's perf script lines, -k
    mono) between t0 and t1 s that involve the named real-time threads, as
    short strings: `+0.123 ms cpu1 mixgraph woken`, `... cpu0 burn in (after
    X)`, `... out (R|S)`."""
    import bisect

    name = {str(v): k for k, v in tids.items()}
    key = id(lines)
    if _PARSED.get("key") != key:
        rows = []
        for line in lines:
            m = re.match(r"\s*\[(\d+)\]\s+(\d+\.\d+):\s+(\S+?):?\s+(.*)", line)
            if m:
                rows.append((float(m.group(2)), m.group(1), m.group(3), m.group(4)))
        _PARSED.update(key=key, rows=rows, times=[r[0] for r in rows])
    rows, times = _PARSED["rows"], _PARSED["times"]
    out = []
    for t, cpu, ev, text in rows[bisect.bisect_left(times, t0):bisect.bisect_right(times, t1)]:
        at = f"{(t - t1) * 1e3:+.3f} ms cpu{cpu}"
        if ev.endswith("sched_switch"):
            p = re.search(r"prev_comm=(.+?) prev_pid=(\d+) .*prev_state=(\S+) ==> "
                          r"next_comm=(.+?) next_pid=(\d+)", text)
            if not p:
                continue
            a, b = name.get(p.group(2)), name.get(p.group(5))
            if a:
                out.append(f"{at} {a} out ({p.group(3)}) -> {b or p.group(4)}")
            if b:
                out.append(f"{at} {b} in (after {a or p.group(1)})")
        elif ev.endswith("sched_waking"):
            p = re.search(r"pid=(\d+)", text)
            if p and p.group(1) in name:
                out.append(f"{at} {name[p.group(1)]} woken")
        elif ev.endswith("sched_migrate_task"):
            p = re.search(r"pid=(\d+) .*orig_cpu=(\d+) dest_cpu=(\d+)", text)
            if p and p.group(1) in name:
                out.append(f"{at} {name[p.group(1)]} moved cpu{p.group(2)}->cpu{p.group(3)}")
    return out


def cycle_lengths(lines: list[str], jackd_tid: int) -> list[float]:
    """jackd's cycle starts in a --sched recording (its real-time thread
    switched in after a timer wake-up) as the intervals between them, µs.
    The dummy driver keeps its schedule anchored: a timer that wakes d late
    (d under a period) makes that cycle start d late and the next one d
    early, so the clients get period - d, with no `Process XRun` line; over
    a period, the catch-up cycle starts at once."""
    starts: list[float] = []
    woken = False
    for line in lines:
        m = re.match(r"\s*\[(\d+)\]\s+(\d+\.\d+):\s+(\S+?):?\s+(.*)", line)
        if not m:
            continue
        ev, text = m.group(3), m.group(4)
        if ev.endswith("sched_waking") and re.search(rf"pid={jackd_tid}\b", text):
            woken = True
        elif ev.endswith("sched_switch") and woken and \
                re.search(rf"next_pid={jackd_tid}\b", text):
            starts.append(float(m.group(2)))
            woken = False
    return [(b - a) * 1e6 for a, b in zip(starts, starts[1:], strict=False)]


def late_vs_calls(log_text: str, calls: list, sched: list[str] | None = None,
                  tids: dict[str, int] | None = None, span_ms: float = 8.0) -> None:
    """mixgraph's late cycles (jackd's stamped log, bench/jackd.py
    dummy(stamp=True)) against its process calls: for each cycle in which
    jackd caught mixgraph unfinished, the longest call that started within
    span_ms before the line was read (the stamp is late by the pipe's and the
    stamper's delay, up to a few ms on a loaded host). A late cycle with no
    call over a period there was late outside the callback (the thread woke
    late, or stalled in libjack's hand-over); one with a long call is the
    call's (its CPU time says whether it worked or waited)."""
    import bisect

    from jackd import LATE, TIMER
    starts = [c[0] for c in calls]
    rows = {"catch_up": [], "full": []}
    prev_timer = False
    group: dict[str, str] = {}
    t_line = 0
    for line in log_text.splitlines() + ["0 end"]:
        ts, _, rest = line.partition(" ")
        if not ts.isdigit():
            continue
        m = LATE.search(rest)
        if m:
            if not group:
                t_line = int(ts)
                catch = prev_timer
            group[m.group(1) or m.group(3)] = m.group(2) or "after"
            prev_timer = False
            continue
        if group:
            if "mixgraph" in group:
                lo = bisect.bisect_left(starts, t_line - span_ms * 1e6)
                hi = bisect.bisect_right(starts, t_line)
                near = calls[lo:hi]
                longest = max(near, key=lambda c: c[3]) if near else None
                alone = len(group) == 1 or set(group) <= {"mixgraph", "mgbench"}
                rows["catch_up" if catch else "full"].append((group["mixgraph"], alone, longest))
                if sched and alone and not catch:
                    tl = sched_timeline(sched, tids or {}, t_line / 1e9 - 0.004, t_line / 1e9)
                    if tl:
                        print(f"  mixgraph caught {group['mixgraph']} alone "
                              f"({'+'.join(sorted(group))}), the RT threads' last 4 ms before "
                              f"the line was read:\n      " + "\n      ".join(tl[-40:]))
            group = {}
        prev_timer = bool(TIMER.search(rest))
    period_us = 64 / 48000 * 1e6
    for kind, rs in rows.items():
        if not rs:
            continue
        long_ = [r for r in rs if r[2] is not None and r[2][3] / 1e3 > period_us]
        alone = [r for r in rs if r[1]]
        alone_long = [r for r in alone if r[2] is not None and r[2][3] / 1e3 > period_us]
        print(f"  mixgraph's late {kind} cycles: {len(rs)}; with a call over a period "
              f"({period_us:.0f} µs) in the {span_ms:g} ms before: {len(long_)}; caught "
              f"alone (no other client but its MIDI source): {len(alone)}, of them with "
              f"such a call {len(alone_long)}")
        for st, al, c in rs[:40]:
            if c is None:
                print(f"    {st}{' alone' if al else ''}: no call traced in the span")
            else:
                print(f"    {st}{' alone' if al else ''}: longest call near it wall "
                      f"{c[3] / 1e3:.0f} µs, CPU {c[4] / 1e3:.0f} µs, cmds {c[5]}, cpu {c[9]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--osc-rate", type=int, default=10000)
    ap.add_argument("--midi-rate", type=int, default=1000)
    ap.add_argument("--perf", action="store_true", help="perf record the RT thread too")
    ap.add_argument("--syscalls", action="store_true",
                    help="perf stat the RT threads of mixgraph and jack_metro: system calls, "
                         "page faults, context switches and migrations per cycle")
    ap.add_argument("--sched", type=float, default=0.0, metavar="S",
                    help="perf record -a the scheduler for S seconds from the window's "
                         "start: what made the real-time threads migrate")
    ap.add_argument("--jack-cpu", default=None, metavar="N|off",
                    help="the daemon's --jack-cpu (default: its default, off)")
    ap.add_argument("--no-trace", action="store_true",
                    help="no call trace (its clock reads are 2 system calls a call)")
    ap.add_argument("--over-us", type=float, default=400.0, help="a long call")
    ap.add_argument("--show", type=int, default=15, help="long calls printed in full")
    ap.add_argument("--keep", help="a file for the calls and events (pickle)")
    a = ap.parse_args()
    from jackd import BLOCK, RATE, mix64_live, steal_ticks, summary

    period_us = BLOCK / RATE * 1e6
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        out = tmp / "calls.pkl"
        env = {} if a.no_trace else site_env(tmp, out)
        perf: list[Perf] = []
        marks: dict[str, float] = {}

        stats: list[tuple[str, subprocess.Popen, Path]] = []
        sched: list[subprocess.Popen] = []
        sched_pids: dict[str, int] = {}
        sched_tids: dict[str, int] = {}
        sched_lines: list[str] = []

        def on_window(pids: dict[str, int], phase: str) -> None:
            marks[phase] = time.monotonic()
            marks[phase + "_steal"] = steal_ticks()
            if phase == "start" and a.perf:
                perf.append(Perf(rt_tid(pids["mixgraph"]), tmp / "perf.data"))
            if phase == "start" and a.sched:
                sched.append(sched_record(tmp / "sched.data", a.sched))
                sched_pids.update(pids)
                for who in ("mixgraph", "metro", "burn", "mgbench", "jackd"):
                    if who in pids:
                        sched_tids[who] = rt_tid(pids[who])
            if phase == "start" and a.syscalls:
                for who in ("mixgraph", "metro"):
                    f = tmp / f"stat_{who}.txt"
                    stats.append((who, subprocess.Popen(
                        ["perf", "stat", "-x", ",", "-o", str(f), "-e",
                         "raw_syscalls:sys_enter,page-faults,context-switches,cpu-migrations",
                         "-t", str(rt_tid(pids[who]))],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), f))
            elif phase == "end":
                if perf:
                    perf[0].stop()
                for _, p, _ in stats:
                    p.send_signal(2)
                    p.wait(30)
                if sched:
                    sched[0].wait(120)
                    moved = migrations(tmp / "sched.data", sched_tids, sched_pids)
                    sched_lines.extend(subprocess.run(
                        ["perf", "script", "-i", str(tmp / "sched.data"), "-F",
                         "cpu,time,event,trace"], capture_output=True, text=True).stdout
                        .splitlines())
                    for who, d in moved.items():
                        print(f"  {who}'s RT thread migrations in the first {a.sched:g} s: "
                              f"{sum(d.values())}; by how and what ran on the CPU it left: "
                              + (", ".join(f"{k}: {v}" for k, v in
                                           sorted(d.items(), key=lambda x: -x[1])) or "-"),
                              flush=True)

        print(f"# load average before {os.getloadavg()[0]:.1f}", flush=True)
        extra = ("--jack-cpu", a.jack_cpu) if a.jack_cpu is not None else ()
        jlog = tmp / "jackd.log"
        r = mix64_live(a.seconds, a.osc_rate, a.midi_rate, env=env, on_window=on_window,
                       extra=extra, stamp_log=not a.no_trace, keep_log=jlog)
        print(summary(r))
        print(f"# load average after {os.getloadavg()[0]:.1f}", flush=True)
        cycles = (marks["end"] - marks["start"]) * RATE / BLOCK
        for who, _, f in stats:
            counts = {}
            for line in f.read_text().splitlines():
                x = line.split(",")
                if len(x) > 2 and x[0].strip().isdigit():
                    counts[x[2]] = int(x[0])
            print(f"  {who}'s RT thread over the window, per cycle: " + ", ".join(
                f"{k} {v / cycles:.3f}" for k, v in counts.items()) + f" ({cycles:.0f} cycles)")
        if a.no_trace:
            return 0
        with open(out, "rb") as f:
            calls = pickle.load(f)
        evs = perf[0].events() if perf else []
        jlog_text = jlog.read_text(errors="replace")
    t0, t1 = marks["start"], marks["end"]
    win = [c for c in calls if t0 * 1e9 <= c[0] <= t1 * 1e9]
    walls = sorted(c[3] / 1e3 for c in win)
    cpus = sorted(c[4] / 1e3 for c in win)

    def q(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0

    print(f"{len(win)} calls in the window ({len(calls)} traced): wall median {q(walls, .5):.1f} "
          f"p99 {q(walls, .99):.1f} p99.9 {q(walls, .999):.1f} max {walls[-1]:.1f} µs; CPU "
          f"median {q(cpus, .5):.1f} p99 {q(cpus, .99):.1f} max {cpus[-1]:.1f} µs")
    cmds = [c[5] for c in win]
    applied = [c[6] for c in win]
    print(f"  commands a call: median {statistics.median(cmds)}, max {max(cmds)}; "
          f"parameter sets applied a call: median {statistics.median(applied)}, max "
          f"{max(applied)}; calls with a plan swap: {sum(1 for c in win if c[7])}")
    steal = (marks["end_steal"] - marks["start_steal"]) / os.sysconf("SC_CLK_TCK")
    print(f"  steal over the window: {steal:.2f} s of {2 * (t1 - t0):.0f} core-s")
    long_ = [c for c in win if c[3] / 1e3 > a.over_us]
    evs.sort()
    times = [e[0] for e in evs]
    import bisect
    whys: dict[str, int] = {}
    rows = []
    for c in long_:
        s, e = c[0] / 1e9, (c[0] + c[3]) / 1e9
        inside = evs[bisect.bisect_left(times, s):bisect.bisect_right(times, e)]
        why, info = classify(c, inside, period_us) if perf else (
            ("more work" if c[4] / 1e3 > period_us * 0.5 else
             "not on a core (preempted/stolen/irq)" if c[4] < 0.5 * c[3] else "more work"), {})
        whys[why] = whys.get(why, 0) + 1
        rows.append((c, why, info))
    print(f"  calls over {a.over_us:g} µs: {len(long_)}; by cause: {whys}")
    for c, why, info in sorted(rows, key=lambda r: -r[0][3])[:a.show]:
        print(f"    at {c[0] / 1e9 - t0:7.3f} s: wall {c[3] / 1e3:7.1f} µs, CPU {c[4] / 1e3:6.1f},"
              f" midi part {c[1] / 1e3:6.1f}, drained by {c[2] / 1e3:6.1f}; cmds {c[5]}, "
              f"applied {c[6]}, swaps {c[7]}: {why} {info}")
    # the work's link to the length: CPU time by commands drained
    by: dict[int, list[float]] = {}
    for c in win:
        by.setdefault(min(c[5] // 8 * 8, 64), []).append(c[4] / 1e3)
    print("  CPU µs by commands drained in the call (bucket: n, median, p99, max): " + "; ".join(
        f"{k}+: {len(v)}, {statistics.median(v):.0f}, {q(sorted(v), .99):.0f}, {max(v):.0f}"
        for k, v in sorted(by.items())))
    # a call on another CPU than the one before (the thread migrated between
    # cycles): its caches are the other core's
    moved = [c[4] / 1e3 for p, c in zip(win, win[1:], strict=False) if c[9] != p[9]]
    stayed = [c[4] / 1e3 for p, c in zip(win, win[1:], strict=False) if c[9] == p[9]]
    if moved and stayed:
        print(f"  calls on another CPU than the call before: {len(moved)} of {len(win)}; CPU "
              f"median {statistics.median(moved):.1f} µs (p99 {q(sorted(moved), .99):.0f}) "
              f"against {statistics.median(stayed):.1f} (p99 {q(sorted(stayed), .99):.0f}) "
              f"on the same CPU")
    if a.keep:
        with open(a.keep, "wb") as f:
            pickle.dump({"calls": win, "events": evs, "marks": marks, "result": r,
                         "sched": sched_lines, "tids": sched_tids, "jackd_log": jlog_text}, f)
    late_vs_calls(jlog_text, win, sched_lines, sched_tids)
    if sched_lines and sched_tids.get("jackd"):
        gaps = cycle_lengths(sched_lines, sched_tids["jackd"])
        edges = [0, 150, 300, 600, 1000, 1250, 1420, 2000, 1e12]
        hist = [sum(1 for g in gaps if lo <= g < hi) for lo, hi in zip(edges, edges[1:],
                                                                            strict=False)]
        names = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges, edges[1:-1], strict=False)]
        names.append(f"{edges[-2]:g}+")
        print(f"  jackd's cycles in the --sched recording: {len(gaps)}; µs from one start to "
              f"the next: " + ", ".join(f"{k}: {n}" for k, n in zip(names, hist, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
