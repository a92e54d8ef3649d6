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


def render(s: Snapshot) -> Group:
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
    g = Table(title="graph", title_justify="left", expand=True)
    for col in ("node", "type", "ch", "parameters", "→ to"):
        g.add_column(col, overflow="fold")
    for n in s.doc.get("nodes", []):
        params = "  ".join(f"{k} {v:g}" if isinstance(v, float | int) else f"{k} {v}"
                           for k, v in n.get("params", {}).items())
        g.add_row(n["name"], n["type"], str(n.get("channels", "")), params,
                  ", ".join(outs.get(n["name"], [])))
    parts = [head, g]
    if s.meters:
        m = Table(title="meters", title_justify="left", expand=False, show_header=False)
        m.add_column("readout")
        m.add_column("level")
        for name, r, vals in s.meters:
            for ch, v in enumerate(vals):
                label = f"{name}.{r}" + (f"[{ch + 1}]" if len(vals) > 1 else "")
                m.add_row(label, bar(float(v)))
        parts.append(m)
    title = f"mixgraph top — {s.transport} {s.host}:{s.port}  {time.strftime('%H:%M:%S')}"
    return Group(Panel(Group(*parts), title=title, title_align="left"))


def run(host: str, port: int, transport: str = "udp", once: bool = False,
        interval: float = 0.5, console: Console | None = None, timeout: float = 2.0) -> int:
    console = console or Console()
    with Client(host, port, timeout=timeout, transport=transport) as c:
        dbs = readouts_by_type(c.catalog())
        if once:
            console.print(render(snapshot(c, dbs)))
            return 0
        from rich.live import Live

        with Live(render(snapshot(c, dbs)), console=console, refresh_per_second=8,
                  screen=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(render(snapshot(c, dbs)))
            except KeyboardInterrupt:
                pass
    return 0
