"""`mixgraph top`: a live terminal view of a running server (rich).

Polls the server over OSC (UDP or TCP) with the client library: /status for
the DSP load, xruns, clients and counters, /graph/dump for the graph, and
the dB readouts (a meter node's peak and rms, gain reductions, ...) of every
node for the meter bars. `--once` prints one frame and exits."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mixgraph.clients import Client, MixgraphFail

FLOOR_DB = -60.0


# readouts that hold their maximum until reset (a meter's true peak): labelled so
HELD_MAX = {"truepeak"}
KEYS = "q quit · r reset held maxima (meters)"
WIDTH, HEIGHT = 80, 24  # what a frame must fit
LABEL_W = 22  # meter labels get at least this; names are truncated, never the bars


def bar(db: float, width: int = 24) -> Text:
    """A meter bar from FLOOR_DB to 0 dBFS: green, yellow above -18, red above -6."""
    frac = 0.0 if db != db or db <= FLOOR_DB else min(1.0, (db - FLOOR_DB) / -FLOOR_DB)
    n = int(round(frac * width))
    t = Text()
    for i in range(width):
        level = FLOOR_DB + (i + 0.5) / width * -FLOOR_DB
        style = "red" if level > -6 else "yellow" if level > -18 else "green"
        t.append("█" if i < n else "·", style=style if i < n else "grey37")
    t.append(f" {db:6.1f} dB" if db > -200 else "   -inf dB")
    return t


GR_RANGE_DB = 24.0  # a gain-reduction bar's full travel


def gr_bar(db: float, width: int = 24) -> Text:
    """A gain-reduction bar (readouts gr, gr1...: 0 dB = none, negative = reduction):
    empty at 0 dB, growing with the reduction up to GR_RANGE_DB, as a console's GR
    meter; a level bar would read full when nothing is reduced."""
    red = 0.0 if db != db else max(0.0, -db)
    n = int(round(min(1.0, red / GR_RANGE_DB) * width))
    t = Text()
    t.append("█" * n, style="yellow")
    t.append("·" * (width - n), style="grey37")
    t.append(f" {db:6.1f} dB" if db > -200 else "   -inf dB")
    return t


class Snapshot:
    """What one frame shows."""

    def __init__(self, status: dict, doc: dict, meters: list[tuple[str, str, list[float]]],
                 host: str, port: int, transport: str) -> None:
        self.status, self.doc, self.meters = status, doc, meters
        self.host, self.port, self.transport = host, port, transport


def readouts_by_type(catalog: list[dict]) -> dict[str, list[str]]:
    """dB readouts per node type (the ones shown as bars)."""
    return {t["name"]: [r["name"] for r in t.get("readouts", [])
                        if r.get("unit", "").startswith("dB")] for t in catalog}


def snapshot(c: Client, dbs: dict[str, list[str]]) -> Snapshot:
    st = c.status()
    doc = c.dump()
    meters = []
    for n in doc.get("nodes", []):
        for r in dbs.get(n["type"], []):
            try:
                v = c.get(n["name"], r)
            except MixgraphFail:
                continue
            meters.append((n["name"], r, v if isinstance(v, list) else [v]))
    return Snapshot(st, doc, meters, c.host, c.port, c.transport)


def render(s: Snapshot, width: int = WIDTH, height: int = HEIGHT) -> Group:
    """One frame, at most `width` columns and `height` lines."""
    st = s.status
    head = Table.grid(padding=(0, 2))
    for _ in range(6):
        head.add_column()
    load = float(st.get("load", 0.0))
    load_style = "red" if load > 70 else "yellow" if load > 40 else "green"
    head.add_row(
        Text(f"DSP {load:5.1f}%", style=f"bold {load_style}"),
        Text(f"xruns {st.get('xruns', 0)}", style="bold red" if st.get("xruns") else ""),
        f"clients {st.get('clients', 0)}",
        f"nodes {st.get('nodes', 0)}",
        f"{st.get('backend', '')} {float(st.get('sample_rate', 0)):g} Hz / {st.get('block', 0)}",
        f"late {st.get('late', 0)}  garbage {st.get('garbage', 0)}",
    )
    outs: dict[str, list[str]] = {}
    for src, dst in s.doc.get("connections", []):
        outs.setdefault(src.split(":")[0], []).append(dst)
    # one line a node (names, parameters and targets cut with …), so the frame keeps
    # to `height` lines: the meters get what the graph leaves
    g = Table(title="graph", title_justify="left", expand=True, box=None, padding=(0, 1))
    g.add_column("node", no_wrap=True, overflow="ellipsis", max_width=14)
    g.add_column("type", no_wrap=True, overflow="ellipsis", max_width=10)
    g.add_column("ch", no_wrap=True)
    g.add_column("parameters", no_wrap=True, overflow="ellipsis", ratio=2)
    g.add_column("→ to", no_wrap=True, overflow="ellipsis", ratio=1)
    meter_rows = sum(len(v) for _, _, v in s.meters)
    nodes = s.doc.get("nodes", [])
    # frame: panel border 2, head 1, graph title + header 2, meters title 1, keys 1,
    # and a line to spare (the terminal scrolls if the last line is written to)
    room = max(2, height - 8)
    g_rows = min(len(nodes), max(1, room - min(meter_rows, room // 2)))
    for n in nodes[:g_rows]:
        params = "  ".join(f"{k} {v:g}" if isinstance(v, float | int) else f"{k} {v}"
                           for k, v in n.get("params", {}).items())
        g.add_row(n["name"], n["type"], str(n.get("channels", "")), params,
                  ", ".join(outs.get(n["name"], [])))
    if len(nodes) > g_rows:
        g.add_row(f"… {len(nodes) - g_rows} more", "", "", "", "")
    parts = [head, g]
    m_room = max(0, room - g_rows - (1 if len(nodes) > g_rows else 0))
    if s.meters and m_room:
        bar_w = max(10, min(24, width - LABEL_W - 16))
        rows = [(name, r, ch, v, len(vals)) for name, r, vals in s.meters
                for ch, v in enumerate(vals)]
        longest = max(len(f"{n}.{r} max[{ch + 1}]") for n, r, ch, _, _ in rows)
        # what is left beside the bar, its reading (10), the panel (4) and padding (4)
        label_w = max(8, min(max(LABEL_W, longest), width - bar_w - 18))
        m = Table(title="meters (truepeak: held maximum, r resets)", title_justify="left",
                  expand=False, show_header=False, box=None, padding=(0, 1))
        m.add_column("readout", no_wrap=True, overflow="ellipsis", width=label_w)
        m.add_column("level", no_wrap=True, min_width=bar_w + 10)
        for name, r, ch, v, nch in rows[:m_room]:
            what = f"{r} max" if r in HELD_MAX else r
            suffix = f".{what}" + (f"[{ch + 1}]" if nch > 1 else "")
            room_name = max(1, label_w - len(suffix))
            short = name if len(name) <= room_name else name[:room_name - 1] + "…"
            draw = gr_bar if r.startswith("gr") else bar
            m.add_row(short + suffix, draw(float(v), bar_w))
        parts.append(m)
    parts.append(Text(KEYS, style="dim"))
    title = f"mixgraph top — {s.transport} {s.host}:{s.port}  {time.strftime('%H:%M:%S')}"
    return Group(Panel(Group(*parts), title=title, title_align="left", width=width))


def _keys():
    """A context that puts the terminal in cbreak mode and yields a function returning
    the key pressed since the last call (or ""); a no-op when stdin is no terminal."""
    import contextlib
    import os
    import select
    import sys

    @contextlib.contextmanager
    def ctx():
        if not sys.stdin.isatty():
            yield lambda timeout: (time.sleep(timeout), "")[1]
            return
        import termios
        import tty

        fd = sys.stdin.fileno()
        old = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)

            def key(timeout: float) -> str:
                r, _, _ = select.select([fd], [], [], timeout)
                return os.read(fd, 1).decode(errors="ignore") if r else ""

            yield key
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)

    return ctx()


def run(host: str, port: int, transport: str = "udp", once: bool = False,
        interval: float = 0.5, console: Console | None = None, timeout: float = 2.0) -> int:
    """`mixgraph top`: frames until q (or Ctrl-C); r resets the meters' held maxima."""
    console = console or Console()
    with Client(host, port, timeout=timeout, transport=transport) as c:
        dbs = readouts_by_type(c.catalog())

        def frame():
            size = console.size
            return render(snapshot(c, dbs), min(size.width, 200), size.height)

        if once:
            console.print(frame())
            return 0
        from rich.live import Live

        with _keys() as key, Live(frame(), console=console, refresh_per_second=8,
                                  screen=True) as live:
            try:
                while True:
                    k = key(interval).lower()
                    if k == "q":
                        break
                    if k == "r":
                        for n in c.dump().get("nodes", []):
                            if n["type"] == "meter":
                                c.set(n["name"], "reset", 1.0)  # a rising edge
                                c.set(n["name"], "reset", 0.0)
                    live.update(frame())
            except KeyboardInterrupt:
                pass
    return 0
