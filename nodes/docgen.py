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


# prose for a type whose tables say too little (an lv2 node's tables are its plugin's)
EXTRA = {
    "lv2": """\
Hosting, through lilv: the LV2 world is loaded once, on first use, from
`LV2_PATH` (or lilv's default path: `~/.lv2`, `/usr/lib/lv2`, ...).
`/graph/add lv2 <name> uri <plugin-URI> [<symbol> <value>]...` (or a patch
node `{"type": "lv2", "options": {"uri": ...}, "params": {...}}`) makes a node
whose tables are the plugin's own; `mixgraph lv2 list` lists the plugins on the
machine (and why any is refused), `mixgraph lv2 show <uri>` and
`/catalog/type lv2 <uri>` describe one as this reference describes a type.

- **Ports**: the plugin's main audio inputs are one port `in` with as many
  channels, its audio outputs one port `out` (option `group 1`, the default),
  so a stereo plugin connects as a built-in stereo node does: `src -> fx ->
  dst` with stereo `src` and `dst` sends channel k to the plugin's k-th audio
  port (the order of the plugin's description, main inputs before side
  chains); a mono source fans out to every channel. Side chains
  (`lv2:isSideChain`) stay mono ports named by their LV2 symbol (`key -> fx:sc_l`).
  A mono plugin's ports are its symbols (`in`, `out`, or whatever they are
  called; a bare `fx` is its first input). With `group 0` every LV2 audio port
  is a mono port named by its symbol (`src_l -> fx:in_l`); a graph connection
  joins whole ports (channel counts equal, or a mono source), so a stereo
  node's `out` cannot feed one mono port: use `group 1` for that. A patch
  saved before the option existed (a `ports` layout of mono symbols and no
  `group`) loads with `group 0`, as it was made.
- **Parameters**: every control input, named by its symbol, with range and
  default from `lv2:minimum/maximum/default` and its unit's symbol
  (units extension). `lv2:toggled` is stepped `off|on`; `lv2:integer` and
  `lv2:enumeration` are stepped, with the scale points' labels as choice names
  when they name every step; `pprops:logarithmic` gives the log taper. Values
  reach the plugin as given (no engine smoothing: a plugin smooths itself or
  not), and an event inside a block splits `run()` at its frame.
- **Readouts**: every control output (meters, gain reduction, `latency`).
- **Latency**: the control output with `lv2:reportsLatency` (or designation
  `lv2:latency`) is read once when the node is made, with its creation
  values (the plugin runs silent blocks until it reports the same value twice,
  then is deactivated and activated afresh); the graph compensates it like any
  node's. A later parameter change that changes the plugin's latency is not
  followed: recreate the node.
- **Life**: instantiated at the engine's sample rate and activated when the
  node is made (control thread), deactivated and freed when it goes. Atom
  ports get an empty sequence in / a buffer out, CV ports silence in / a
  scratch buffer out, optional ports of other kinds NULL.
- **Host features**: `urid:map`, `urid:unmap`, `options` (block length 1..512,
  nominal 512, sample rate), `bufsz:boundedBlockLength`, `worker:schedule`
  (a thread per node that uses it; requests and responses go through
  lock-free rings, responses are delivered before the next `run()`, then
  `end_run()`), `state:makePath`, `state:mapPath`, `state:freePath` and
  `log:log`. A plugin that requires any other is refused with a `/fail`
  naming the feature.
- **Block splitting**: `run()` gets the engine's block (`--block`, the
  render's `block`), split at each parameter event inside it. Most plugins
  give the same samples however the audio is split; some do not: LSP's
  filters work a block at a time with SIMD code whose rounding depends on the
  frames per `run()` (its para EQ differs by up to 4e-6 between 1 and 64
  frames per call, in any host), and a partitioned convolver such as x42
  convoLV2 processes whole periods of the maximum block it is told (512) and
  is silent in a shorter `run()`, so it needs the engine at 512-frame blocks
  (`--block 512`, a render's `block 512`) and no parameter event inside a
  block (mixgraph tells every plugin 1..512 frames and splits `run()` at
  events, which such a plugin's `bufsz:minBlockLength` forbids).
  tests/test_lv2.py compares mixgraph's renders with lilv's `lv2apply` at
  one frame per `run()` (how it runs) and with tests/lv2/lv2ref.c (lv2apply
  with the frames per `run()` as an argument) at 64: bit-exact or within
  1e-6 at the same split.
- **State**: a plugin with the LV2 state extension (`state:interface`) saves
  what it holds beyond its controls (an impulse-response or sample file, a
  learned profile, a text) into the patch document as the node's `lv2_state`:
  a list of `{"key": <URI>, "type": <URI>, "flags": n, "value": ...}` (strings
  and paths as text, numbers as numbers, a URID as its URI, anything else as
  `"base64"`). It is saved with every patch save, autosave snapshot and
  therefore restart (the plugin's `save()` runs on the control thread, which
  the extension allows while `run()` goes on) and restored, on the control
  thread, before the node runs: a loaded patch whose `lv2_state` differs
  from the node's makes the node afresh with it, and the work the plugin
  schedules while restoring (loading a file) is finished before its first
  `run()`, so an offline render is exact from its first sample. A patch load
  is journaled with its document (state included); an undo that makes a
  removed node again gives its plugin the state it had (journaled as an
  `lv2_state` op). A placeholder keeps the saved `lv2_state` unchanged.
- **Files**: a plugin's own files (`state:makePath`) go in
  `<state dir>/lv2/<node>/` (the daemon's `--state-dir`; a temporary
  directory for an offline render): the path it asks for is taken relative
  to that directory with `..`, `.` and empty components dropped, so it cannot
  leave it; a saved path inside it is kept relative (`state:mapPath`), one
  outside it (a file the user chose) absolute.
- **Log**: a plugin's `log:log` lines (from any thread, the audio thread
  included, queued in a lock-free ring of 256 lines) are written to the
  daemon's log by the control thread as `<node>: plugin <level>: <text>`
  (trace lines at debug level), rate-limited per node as client warnings are
  (the first line at once, then one summary per 10 s); `/status` counts them
  in `lv2_log` and the lines lost to a full ring in `lv2_log_lost`. A line
  logged on the audio thread (from `run()`) is not formatted there, since
  glibc's printf may allocate (a `%.20000f` takes a work buffer from malloc):
  its format (255 bytes at most) and its arguments (16 at most, `%s` strings
  copied, 255 bytes in all) are copied into the ring and the control thread
  formats the line, conversion by conversion; a format is cut at a conversion
  past those bounds or one not passed on (`%n`, `%ls`, `%lc`). Lines from
  other threads (instantiate, the plugin's worker) are formatted at once.
- **Real time**: the daemon refuses a plugin that is not `lv2:hardRTCapable`
  unless the node is made with `allow_non_rt 1`; then the log says so when
  the node is made and `/status` names the node in `non_rt` (comma-separated,
  "" when none). Offline renders run any plugin.
- **Bad output**: NaN and Inf samples a plugin writes are replaced by 0 at its
  outputs and counted in the node's own readout `nonfinite`.
- **Presets**: `/node/<name>/preset` lists the plugin's presets;
  `/node/<name>/preset <label-or-URI>` sets the parameters to the preset's
  port values (as parameter changes: feedback, scenes and patches see them).
- **Missing plugins**: a node keeps its plugin's port layout in the option
  `ports` (`in*2>out*2`, or `in1,in2>out1,out2` with `group 0`; set by
  itself). A patch (or a restart) naming
  a plugin this machine lacks loads it as a placeholder with those ports and
  the saved parameter values, passing input k to output k; `/status` counts
  it in `missing_files`, the log says why, and saving keeps it unchanged.
- **Not yet**: a preset's state properties (a preset sets the controls
  only); atom messages to the plugin (`patch:Set` of a file parameter: a
  file reaches a plugin through `lv2_state` in a patch); following a
  latency that changes after the node is made; LV2 port groups beyond the
  main inputs and outputs (`group` takes the order of the description).
""",
}


def render() -> str:
    """The whole of docs/nodes.md."""
    out = [HEADER]
    out.append("| type | summary |\n|---|---|")
    for t in CATALOG.values():
        out.append(f"| [`{t.name}`](#{t.name}) | {t.doc} |")
    for t in CATALOG.values():
        out.append(f"\n## {t.name}\n\n{t.doc}\n")
        if t.name in EXTRA:
            out.append(EXTRA[t.name])
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
