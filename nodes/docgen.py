"""Generate docs/nodes.md from the C tables, so the reference cannot drift.

    python -m mixgraph.nodes.docgen > docs/nodes.md

tests/test_docs.py fails when docs/nodes.md differs from this output."""

from __future__ import annotations

import sys

from mixgraph.server.actions import actions_for
from mixgraph.server.catalog import CATALOG

HEADER = """# Node reference

Generated from the C tables (`nodes/*.c`) by `python -m mixgraph.nodes.docgen`;
do not edit by hand (a test fails when this file and the tables disagree).

Every parameter is set over OSC as `/node/<name>/<param> <value>` in the
unit shown, smoothed by the engine over the time shown (0: it jumps).
Tapers say how the normalised 0..1 control maps to the range: `fader` is a
console fader law for gains, `log` is logarithmic (frequencies, times),
`linear`, and `stepped` for switches and choices. A stepped parameter's
choices have names (shown with their numbers); `/node/<name>/<param>` takes
the name as well as the number (`/node/q/b1type "low shelf"`, case, spaces
and hyphens aside). Readouts are read-only
values queried on the same kind of address. Actions are commands a node
carries out, some over audio time; each ends in one `/done` or `/fail`.
Channels: a port marked `node` has the node's channel count, fixed when it
is created (`channels` option).
"""


def _num(x: float) -> str:
    return f"{x:g}"


def _default(p) -> str:
    return f"{_num(p.default)} ({p.choice_name(p.default)})" if p.choices else _num(p.default)


def _doc(p) -> str:
    if not p.choices:
        return p.doc
    names = ", ".join(f"`{int(p.min) + k}` {c}" for k, c in enumerate(p.choices))
    return f"{p.doc}. Choices: {names}"


def render() -> str:
    """The whole of docs/nodes.md."""
    out = [HEADER]
    out.append("| type | summary |\n|---|---|")
    for t in CATALOG.values():
        out.append(f"| [`{t.name}`](#{t.name}) | {t.doc} |")
    for t in CATALOG.values():
        out.append(f"\n## {t.name}\n\n{t.doc}\n")
        out.append(f"Channels: {t.min_channels}..{t.max_channels}, default "
                   f"{t.default_channels}." + (" Streams a file through the disk worker."
                                                if t.needs_fifo else ""))
        out.append("\n| port | direction | channels |\n|---|---|---|")
        for p in t.ports:
            out.append(f"| `{p.name}` | {p.direction} | {p.channels or 'node'} |")
        if t.params:
            out.append("\n| parameter | unit | min | max | default | taper | smoothing ms |"
                       " description |\n|---|---|---|---|---|---|---|---|")
            for p in t.params:
                out.append(f"| `{p.name}` | {p.unit or '-'} | {_num(p.min)} | {_num(p.max)} | "
                           f"{_default(p)} | {p.taper} | {_num(p.smooth_ms)} | {_doc(p)} |")
        if t.readouts:
            out.append("\n| readout | unit | per channel |\n|---|---|---|")
            for r in t.readouts:
                out.append(f"| `{r.name}` | {r.unit or '-'} | {'yes' if r.per_channel else 'no'} |")
        acts = actions_for(t.name)
        if acts:
            out.append("\n| action | usage | description |\n|---|---|---|")
            for a in acts.values():
                out.append(f"| `{a.name}` | `{a.usage}` | {a.doc} |")
    return "\n".join(out) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
