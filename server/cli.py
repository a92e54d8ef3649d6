"""The `mixgraph` command: serve, render, analyze, devices, nodes, patch, ctl, top, layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import MixgraphError
from .oplog import setup_logging


def _in_range(what: str, lo: float, hi: float):
    """An argparse type: a finite number in lo..hi, checked by server/values.py."""
    def parse(text: str) -> float:
        from .errors import MixgraphError
        from .values import in_range

        try:
            return in_range(float(text), what, lo, hi)
        except (ValueError, MixgraphError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _threads(text: str) -> int:
    """--threads: 1..64 audio threads."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads {text!r}: expected a whole number") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"--threads {n}: expected 1..64")
    return n


def _threads_or_default(n: int | None) -> int:
    """--threads, or its default: cores - 1, at least 1."""
    from .engine import default_threads

    return n if n is not None else default_threads()


def _cmd_serve(a: argparse.Namespace) -> int:
    from .daemon import ServeOptions, serve
    from .transport import Limits

    return serve(ServeOptions(
        backend=a.backend, device=a.device, sample_rate=a.rate, block=a.block,
        threads=a.threads or 1,  # live: one until workers are shown not to add xruns
        inputs=a.inputs, outputs=a.outputs, host=a.host, port=a.port,
        state_dir=Path(a.state_dir) if a.state_dir else None, status=not a.no_status,
        ceiling_db=a.ceiling_db, tcp_port=-1 if a.no_tcp else a.tcp_port, allow=a.allow,
        max_frame=a.max_frame, rate_limit=a.rate_limit, rate_burst=a.rate_burst,
        zeroconf=a.zeroconf, mlock=not a.no_mlock, max_lead_s=a.max_lead_s,
        max_nodes=a.max_nodes, max_connections=a.max_connections,
        http_port=a.http, http_token=a.http_token, http_read_only=a.http_read_only,
        limits=Limits(max_conns=a.max_conns, max_conns_per_host=a.max_conns_per_host,
                      idle_timeout=a.idle_timeout, max_subscribers=a.max_subscribers,
                      max_subscribers_per_host=a.max_subscribers_per_host,
                      max_output=int(a.max_output_mb * (1 << 20)),
                      trust_loopback=not a.prove_loopback, http_ping=a.http_ping),
        max_recorder_channels=a.max_recorder_channels, min_free_mb=a.min_free_mb,
        fsync_ms=a.fsync_ms, journal=not a.no_journal,
        jack_server=a.jack_server, jack_name=a.jack_name, jack_connect=a.jack_connect,
        jack_cpu=a.jack_cpu,
        midi_api=a.midi_api,
    ))


def _cmd_devices(a: argparse.Namespace) -> int:
    from .backends import device_report

    devs, problem = device_report()
    console = Console()
    if problem:
        console.print(f"PortAudio is missing: {escape(problem)}. Install it (Debian: "
                      "apt install libportaudio2); until then `serve` uses the null backend",
                      markup=True)
        return 1
    if not devs:
        console.print("PortAudio is installed but sees no audio device: `serve` uses the "
                      "null backend")
        return 0
    t = Table(title="audio devices")
    for col in ("index", "name", "host API", "in", "out", "default rate"):
        t.add_column(col)
    for d in devs:
        t.add_row(str(d["index"]), d["name"], str(d["hostapi"]), str(d["max_input_channels"]),
                  str(d["max_output_channels"]), f"{d['default_samplerate']:g}")
    console.print(t)
    return 0


def _param_range(p) -> str:
    """A parameter's range as `mixgraph nodes TYPE` shows it: the choice names of a
    stepped parameter (0 bell, 1 low shelf, ...), else min..max."""
    if p.choices:
        return ", ".join(f"{int(p.min) + k} {c}" for k, c in enumerate(p.choices))
    return f"{p.min:g}..{p.max:g}"


def _cmd_nodes(a: argparse.Namespace) -> int:
    from .actions import actions_for
    from .catalog import CATALOG

    console = Console()
    unknown = [x for x in a.type if x not in CATALOG]
    if unknown:
        Console(stderr=True).print(
            f"mixgraph nodes: unknown node type{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; the types are: {', '.join(CATALOG)}", markup=False)
        return 2
    if not a.type:
        t = Table(title="node types (`mixgraph nodes TYPE` for one type's details)",
                  title_justify="left", box=None, show_header=True)
        t.add_column("type", style="bold", no_wrap=True, min_width=max(map(len, CATALOG)))
        t.add_column("summary", no_wrap=True, overflow="ellipsis")
        for nt in CATALOG.values():
            t.add_row(nt.name, escape(nt.doc.split(". ")[0].rstrip(".")))
        console.print(t)
        return 0
    import shutil
    import textwrap

    width = max(60, shutil.get_terminal_size((100, 24)).columns)

    def para(text: str, indent: str) -> None:
        print(textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent))

    for i, name in enumerate(a.type):
        nt = CATALOG[name]
        if i:
            print()
        para(f"{nt.name} — {nt.doc}", "")
        print(f"channels {nt.min_channels}..{nt.max_channels}, default {nt.default_channels}")
        print("ports: " + ", ".join(
            f"{p.name} ({p.direction}, {f'{p.channels} ch' if p.channels else 'node channels'})"
            for p in nt.ports))
        if nt.params:
            print("parameters:")
        for p in nt.params:
            default = (f"{p.default:g} {p.choice_name(p.default)}" if p.choices
                       else f"{p.default:g}")
            smooth = f", smoothed {p.smooth_ms:g} ms" if p.smooth_ms else ""
            head = f"  {p.name}  {p.unit + '  ' if p.unit else ''}"
            if p.choices:
                print(f"{head}default {default}  ({p.taper}{smooth})")
                para("choices: " + _param_range(p), "      ")
            else:
                print(f"{head}{_param_range(p)}  default {default}  ({p.taper}{smooth})")
            para(p.doc, "      ")
        if nt.readouts:
            print("readouts: " + ", ".join(f"{r.name}{f' ({r.unit})' if r.unit else ''}"
                                           for r in nt.readouts))
        for act in actions_for(nt.name).values():
            print(f"action {act.usage}")
            para(act.doc, "      ")
    return 0


def _cmd_render(a: argparse.Namespace) -> int:
    from .render import render

    inputs = {}
    for spec in a.inputs or []:
        name, sep, path = spec.partition("=")
        if not sep:
            raise MixgraphError(f"--in {spec!r}: expected NAME=FILE")
        inputs[name] = path
    res = render(a.patch, a.output, score=a.score, duration_s=a.duration, inputs=inputs,
                 block=a.block, target_lufs=a.target_lufs, true_peak=a.true_peak,
                 subtype=a.subtype, threads=_threads_or_default(a.threads))
    console = Console(stderr=True)
    for f in res.failures:
        console.print(f"[yellow]score: {escape(str(f))}[/]")
    if res.mastering is not None:
        _print_mastering(console, res.mastering)
    console.print(f"wrote {a.output}: {res.frames / res.sample_rate:.3f} s, {res.channels} ch, "
                  f"{res.sample_rate:g} Hz, {res.peak_line()}", highlight=False)
    return 1 if res.failures and a.strict else 0


def _print_mastering(console: Console, m) -> None:
    def f(v, spec=".2f"):
        return "—" if v is None else f"{v:{spec}}"

    t = Table(title="loudness targeting (EBU R 128 / BS.1770-4)", title_justify="left")
    for col in ("", "before", "after", "target"):
        t.add_column(col, justify="right")
    b, a = m.before, m.after
    t.add_row("integrated (LUFS)", f(b.integrated), f(a.integrated), f(m.target_lufs, "g"))
    t.add_row("true peak (dBTP)", f(b.true_peak), f(a.true_peak),
              "—" if m.true_peak_limit is None else f"≤ {m.true_peak_limit:g}")
    t.add_row("true peak, long-filter check", f(b.true_peak_hq), f(a.true_peak_hq), "")
    t.add_row("sample peak (dBFS)", f(b.sample_peak), f(a.sample_peak), "")
    t.add_row("loudness range (LU)", f(b.lra, ".1f"), f(a.lra, ".1f"), "")
    console.print(t)
    console.print(f"gain applied: {m.gain_db:+.2f} dB ({m.passes} pass"
                  f"{'es' if m.passes > 1 else ''} after the render)")
    if m.limiter:
        msg = (f"true-peak limiter at {m.ceiling_db:.2f} dBTP: up to {m.max_gr_db:.2f} dB of "
               f"gain reduction, more than 0.1 dB on {m.limited_pct:.1f} % of the audio; it "
               f"took {m.limiter_lu:.2f} LU, made up by the gain")
        console.print(f"[yellow]{msg}[/]" if m.heavy else msg)
        if m.heavy:
            console.print("[yellow]heavy limiting: the target may be too loud for this "
                          "material[/]")
    elif m.true_peak_limit is not None:
        console.print("no limiting needed: the gained render's true peak is under the limit")


def _cmd_analyze(a: argparse.Namespace) -> int:
    import json

    from . import analyze

    if not Path(a.file).exists():
        print(f"mixgraph analyze: cannot read {a.file}: no such file", file=sys.stderr)
        return 2
    if a.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            # printed without rich markup, which would take [plot] for a style
            # plain print: rich would wrap the command in the middle
            print("mixgraph: --plot needs matplotlib, the [plot] extra: from the mixgraph "
                  f"checkout, {sys.executable} -m pip install -e '.[plot]' "
                  "(or `bash .ci/serve`, which installs it)", file=sys.stderr)
            return 2
    res = analyze.measure_file(a.file, curves=True, spectrum=bool(a.plot), hq=True)
    if a.plot:
        analyze.plot(res, a.plot)
    if a.json:
        d = res.to_dict()
        if a.plot:
            d["plot"] = a.plot
        print(json.dumps(d, indent=2))
    else:
        t = Table(title=f"analysis of {a.file}", title_justify="left", show_header=False)
        t.add_column("", style="bold")
        t.add_column("")
        for k, v in analyze.table_rows(res):
            t.add_row(k, v)
        Console().print(t)
        if a.plot:
            Console().print(f"wrote {a.plot}")
    return 0


def _cmd_patch(a: argparse.Namespace) -> int:
    from .patch import validate_doc
    from .state import read_patch, write_patch

    doc = read_patch(a.src)
    validate_doc(doc)
    write_patch(doc, a.dst)
    print(f"wrote {a.dst}")
    return 0


def _cmd_cues(a: argparse.Namespace) -> int:
    """Check a cue file offline (server/cues.py): print its cues, or the error's line."""
    from .cues import check_file

    try:
        text = Path(a.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MixgraphError(f"cannot read {a.file}: {e}") from None
    lines = check_file(text)
    for line in lines:
        print(line)
    print(f"{len(lines)} cues ok")
    return 0


def _client_errors(fn):
    """Client-side commands: a missing server or a /fail is a message, not a traceback."""
    import functools

    @functools.wraps(fn)
    def run(a: argparse.Namespace) -> int:
        from mixgraph.clients import MixgraphFail

        try:
            return fn(a)
        except (TimeoutError, OSError, MixgraphFail) as e:
            what = "no reply" if isinstance(e, TimeoutError) else str(e) or type(e).__name__
            Console(stderr=True).print(f"[bold red]mixgraph {a.cmd}: {escape(what)} "
                                       f"({a.host}:{a.port})[/]")
            return 2
    return run


def ctl_arg(tok: str) -> str | int | float | bool:
    """One `mixgraph ctl` argument. Typed forms send exactly that OSC type: `s:2024`
    (a string, even a numeric-looking one), `i:3`, `f:1`, `T`, `F`; an untyped token is
    an int, a float, true/false, or else a string."""
    from .score import parse_arg

    kind, sep, rest = tok.partition(":")
    if sep and kind in ("s", "i", "f"):
        try:
            return rest if kind == "s" else int(rest) if kind == "i" else float(rest)
        except ValueError:
            raise MixgraphError(f"{tok!r}: {'an integer' if kind == 'i' else 'a number'} "
                                f"after {kind}:") from None
    if tok in ("T", "F"):
        return tok == "T"
    return parse_arg(tok)


def format_value(x) -> str:
    """A reply value as `mixgraph ctl` prints it: OSC floats at float32 precision (the
    shortest decimal that reads back as the same float32: 3.371, not 3.371000051498413)."""
    if isinstance(x, bytes):
        return repr(x)
    if isinstance(x, float) and x == x and abs(x) != float("inf"):
        import numpy as np

        f32 = np.float32(x)
        if float(f32) == x:
            return str(f32)
    return str(x)


@_client_errors
def _cmd_ctl(a: argparse.Namespace) -> int:
    import time

    from mixgraph.clients.client import Client
    from mixgraph.clients.protocol import REPLY_ADDRESSES

    if not a.address.startswith("/"):
        raise MixgraphError(f"{a.address!r} is not an OSC address: addresses start with /")
    args = [ctl_arg(x) for x in a.args]
    status = 0
    with Client(a.host, a.port, timeout=a.timeout, transport="tcp" if a.tcp else "udp",
                framing=a.framing) as c:
        # sent once, like oscsend: the command may be a node action, never safe to repeat.
        # Every reply is printed up to its closing /done or /fail; a query answered
        # without one (/status, a parameter, a pattern) ends at a /sync sent after its
        # first answer, which the server answers after everything before it.
        c.send(a.address, *args)
        deadline = time.monotonic() + a.timeout
        token = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if token is None:
                    raise TimeoutError(f"no reply to {a.address} within {a.timeout} s")
                break
            addr, rargs = c.receive(left)
            if addr == "/synced" and token is not None and rargs == [token]:
                break
            print(format_reply(addr, rargs), flush=True)
            if addr in REPLY_ADDRESSES and rargs and rargs[0] == a.address:
                status = 1 if addr == "/fail" else 0
                if addr == "/done" and a.address == "/midi/learn" and args:
                    # the map comes when a control moves: wait for it (Ctrl-C cancels)
                    return _await_learn(c, a.address)
                break
            if token is None:
                token = int(time.monotonic_ns() & 0x3FFFFFFF)
                c.send("/sync", token)
    return status


def format_reply(addr: str, args: list) -> str:
    """A reply as `ctl` prints it: the address and its arguments on one line, except
    /history.reply (one message of every step: printed a step a line, the counts
    first, so the history reads as a list and not as one line of 20 steps)."""
    if addr == "/history.reply" and len(args) >= 2 and (len(args) - 2) % 3 == 0:
        lines = [f"{addr} {format_value(args[0])} {format_value(args[1])}"]
        for i in range(2, len(args), 3):
            n, label, what = args[i:i + 3]
            lines.append(f"{format_value(n):>4}  {format_value(label)}  {format_value(what)}")
        return "\n".join(lines)
    return " ".join([addr, *[format_value(x) for x in args]])


LEARN_WAIT_S = 120.0  # how long `ctl /midi/learn <address>` waits for a control to move


def _await_learn(c, address: str) -> int:
    """After /midi/learn's /done: print the learned map (/midi/learn.reply) or the
    /fail; Ctrl-C or LEARN_WAIT_S without a move cancels the learn on the server."""
    import time

    print("move the control to map (Ctrl-C cancels)", file=sys.stderr, flush=True)
    end = time.monotonic() + LEARN_WAIT_S
    try:
        while (left := end - time.monotonic()) > 0:
            try:
                addr, rargs = c.receive(min(left, 1.0))
            except TimeoutError:
                continue
            if addr == "/midi/learn.reply" or (addr == "/fail" and rargs[:1] == [address]):
                print(addr, *[format_value(x) for x in rargs], flush=True)
                return 1 if addr == "/fail" else 0
    except KeyboardInterrupt:
        pass
    c.send(address)  # no argument: cancel
    print(f"{address}: cancelled, no control moved", file=sys.stderr, flush=True)
    return 1


@_client_errors
def _cmd_top(a: argparse.Namespace) -> int:
    from .top import run

    return run(a.host, a.port, "tcp" if a.tcp else "udp", once=a.once, interval=a.interval,
               timeout=a.timeout)


@_client_errors
def _cmd_layout(a: argparse.Namespace) -> int:
    from . import layout

    if a.patch:
        from .patch import validate_doc
        from .state import read_patch

        doc = read_patch(a.patch)
        validate_doc(doc)
        catalog = layout.local_catalog()
        source = a.patch
    else:
        from mixgraph.clients import Client

        with Client(a.host, a.port, timeout=a.timeout, transport="tcp" if a.tcp else "udp") as c:
            doc, catalog = c.dump(), c.catalog()
        source = f"{a.host}:{a.port}"
    n = layout.write_tosc(a.touchosc, doc, catalog, width=a.width, height=a.height)
    print(f"wrote {a.touchosc}: {n} controls for {len(doc.get('nodes', []))} nodes of {source}")
    return 0


def _default_port() -> int:
    """The port client commands talk to: $MIXGRAPH_PORT, else 8000."""
    import os

    try:
        return int(os.environ.get("MIXGRAPH_PORT", "8000"))
    except ValueError:
        return 8000


def _cmd_service(a: argparse.Namespace) -> int:
    from . import service

    extra = list(a.serve_args)  # [--user] [-- serve options]
    cut = extra.index("--") if "--" in extra else len(extra)
    mine, extra = extra[:cut], extra[cut + 1:]
    if any(x != "--user" for x in mine) or (extra and a.action != "install"):
        raise MixgraphError(f"service {a.action}: serve options go after `--`, and only "
                            f"install takes them (got {a.serve_args})")
    user = a.user or "--user" in mine
    if a.action == "install":
        service.install(extra, user=user)
        return 0
    if a.action == "uninstall":
        return 0 if service.uninstall(user=user) else 1
    return service.status(user=user)


def _cmd_health(a: argparse.Namespace) -> int:
    """Nagios-style: one line, exit 0 when the server answers and its audio clock
    moves, 1 otherwise."""
    import time

    from mixgraph.clients import Client

    try:
        with Client(a.host, a.port, timeout=a.timeout) as c:
            _, r1 = c.request("/status")
            time.sleep(0.2)
            _, r2 = c.request("/status")
    except Exception as e:  # no server, a timeout, a refused socket: all are "down"
        print(f"CRITICAL - mixgraph at {a.host}:{a.port} does not answer ({e})")
        return 1
    s1, s2 = (dict(zip(r[::2], r[1::2], strict=False)) for r in (r1, r2))
    def num(key: str, fmt: str) -> str:
        v = s2.get(key)
        return format(v, fmt) if isinstance(v, int | float) else str(v)

    line = (f"{s2.get('backend')} load {num('load', '.1f')}% xruns {s2.get('xruns')} "
            f"worst {num('worst_recent_us', '.1f')} us of {num('budget_us', '.1f')} in 10 s "
            f"({num('worst_us', '.1f')} since the start) "
            f"nodes {s2.get('nodes')} uptime {num('uptime', '.0f')} s")
    if s2.get("time") == s1.get("time"):
        print(f"CRITICAL - the audio clock is not moving: {line}")
        return 1
    print(f"OK - {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="mixgraph", description="A headless audio-graph server.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument("--version", action="version", version=f"mixgraph {__version__}")
    sub = p.add_subparsers(dest="cmd")

    s = sub.add_parser("serve", help="run the daemon")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="what the daemon logs on stderr (default info: start-up, new client "
                   "addresses, device loss and return, xruns at most every 10 s)")
    s.add_argument("--log-json", action="store_true",
                   help="log one JSON object per line (ts, level, logger, msg, event)")
    s.add_argument("--backend", default="auto", choices=["auto", "jack", "portaudio", "null"],
                   help="auto: JACK when a server runs, else PortAudio, else null")
    s.add_argument("--device", help="PortAudio device: name (substring) or index "
                   "(may be one not plugged in yet: mixgraph waits for it)")
    s.add_argument("--jack-server", metavar="NAME", help="a named JACK server (jackd -n NAME)")
    s.add_argument("--jack-name", default="mixgraph",
                   help="JACK client name: ports are NAME:in_<n> / NAME:out_<n> "
                        "(and NAME:midi_in / NAME:midi_out)")
    s.add_argument("--jack-connect", action="append", metavar="SPEC",
                   help="system (physical ports in order), none, or our=their pairs, "
                        "e.g. 'out_1=system:playback_1,in_.*=system:capture_.*' "
                        "or 'midi_in=a2j:.*' (repeatable; see docs/operations.md)")
    s.add_argument("--jack-cpu", default="off", metavar="N|off",
                   help="pin JACK's process thread to CPU N and keep the daemon's other "
                        "threads off it (default off: the scheduler places it; see "
                        "docs/operations.md)")
    s.add_argument("--midi-api", default="auto", choices=["auto", "alsa", "jack"],
                   help="where MIDI comes from: auto (the JACK backend's own ports, else the "
                        "ALSA sequencer), alsa, or jack (a JACK client for MIDI while the "
                        "audio runs on another backend; see docs/operations.md)")
    s.add_argument("--rate", type=float, default=48000.0, help="sample rate in Hz")
    s.add_argument("--block", type=int, default=64, help="frames per block")
    s.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="audio threads: the audio thread and N-1 workers run the graph's "
                        "independent parts (default 1 live; see docs/operations.md)")
    s.add_argument("--inputs", type=int, help="hardware input channels")
    s.add_argument("--outputs", type=int, help="hardware output channels")
    s.add_argument("--host", "--listen", dest="host", default="127.0.0.1",
                   help="address to listen on (default loopback)")
    s.add_argument("--port", type=int, default=8000, help="OSC UDP port (default 8000)")
    s.add_argument("--allow", nargs="+", metavar="CIDR",
                   help="source networks allowed (default: loopback and private networks)")
    s.add_argument("--tcp-port", type=int, help="OSC TCP port (default: the UDP port)")
    s.add_argument("--no-tcp", action="store_true", help="no TCP listener")
    s.add_argument("--http", type=int, nargs="?", const=8080, metavar="PORT",
                   help="serve the browser control surface (HTTP + WebSocket OSC at /osc) "
                        "on PORT (8080 when given without one); --listen and --allow apply")
    s.add_argument("--http-token", metavar="TOKEN",
                   help="the browser surface's access token (default: none on loopback, else "
                        "one made at the first start and kept in the state dir)")
    s.add_argument("--http-read-only", action="store_true",
                   help="browser (WebSocket) clients may look and subscribe, not change anything")
    s.add_argument("--http-ping", type=_in_range("--http-ping", 0.2, 3600), default=20.0,
                   metavar="SECONDS",
                   help="the server pings each WebSocket client this often; one that has "
                        "not answered by the next ping is disconnected (default 20)")
    s.add_argument("--max-frame", type=int, default=65536, help="largest OSC packet, bytes")
    s.add_argument("--rate-limit", type=_in_range("--rate-limit", 0, 1e7), default=20000.0,
                   help="messages/s per client (0 = unlimited; default 20000)")
    s.add_argument("--rate-burst", type=_in_range("--rate-burst", 1, 1e7), default=10000.0,
                   help="rate-limit burst")
    s.add_argument("--max-lead-s", type=_in_range("--max-lead-s", 1, 86400), default=600.0,
                   help="how far ahead a bundle's timetag may be, seconds (default 600)")
    s.add_argument("--max-nodes", type=_in_range("--max-nodes", 1, 1e6), default=4096,
                   help="nodes /graph/add makes and /patch/load takes at most (default 4096)")
    s.add_argument("--max-connections", type=_in_range("--max-connections", 1, 1e7),
                   default=16384, help="connections /graph/connect makes and /patch/load "
                   "takes at most (default 16384)")
    s.add_argument("--max-conns", type=int, default=256,
                   help="TCP connections at once (default 256; also capped by descriptors)")
    s.add_argument("--max-conns-per-host", type=int, default=32,
                   help="TCP connections from one address (default 32)")
    s.add_argument("--idle-timeout", type=float, default=600.0,
                   help="close a TCP connection silent this many s (no subscription); "
                        "0 = never (default 600)")
    s.add_argument("--max-subscribers", type=int, default=32,
                   help="feedback/meter subscribers at once (default 32)")
    s.add_argument("--max-subscribers-per-host", type=int, default=16,
                   help="of those, from one address (default 16)")
    s.add_argument("--max-output-mb", type=float, default=64.0,
                   help="output queued for all TCP clients together, MiB (default 64)")
    s.add_argument("--prove-loopback", action="store_true",
                   help="loopback UDP clients must prove their address too (/hello)")
    s.add_argument("--state-dir", help="patches, autosave and audio files")
    s.add_argument("--fsync-ms", type=float, default=100.0, metavar="MS",
                   help="journal: fdatasync at most every MS ms (power loss can lose that "
                        "much); 0 = before every reply (default 100)")
    s.add_argument("--no-journal", action="store_true",
                   help="no journal (to measure its cost): a crash loses up to 0.25 s of "
                        "acknowledged edits")
    s.add_argument("--max-recorder-channels", type=int, default=128, metavar="N",
                   help="recorder channels in all recorders together (default 128)")
    s.add_argument("--min-free-mb", type=float, default=512, metavar="MB",
                   help="refuse a new recorder when its disk has less free (default 512)")
    s.add_argument("--ceiling-db", type=_in_range("--ceiling-db", -100, 24), default=0.0,
                   help="hard output ceiling, dBFS")
    s.add_argument("--no-status", action="store_true", help="no live status line")
    s.add_argument("--no-mlock", action="store_true",
                   help="do not lock the process's memory (mlockall)")
    s.add_argument("--zeroconf", action="store_true",
                   help="advertise _osc._udp and _osc._tcp on the network (needs zeroconf)")
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser("devices", help="list audio devices")
    s.set_defaults(func=_cmd_devices)

    s = sub.add_parser("nodes", help="list node types, ports and parameters")
    s.add_argument("type", nargs="*", help="only these types")
    s.set_defaults(func=_cmd_nodes)

    s = sub.add_parser("lv2", help="LV2 plugins on this machine: list, or show one as a node type")
    s.add_argument("what", choices=["list", "show"])
    s.add_argument("uri", nargs="?", help="show: the plugin's URI")
    s.set_defaults(func=lambda a: __import__("mixgraph.server.lv2", fromlist=["cli"]).cli(a))

    s = sub.add_parser("render", help="render a patch offline")
    s.add_argument("patch", help="patch file (.mgp msgpack or .json)")
    s.add_argument("-o", "--output", required=True, help="output sound file (.wav/.flac)")
    s.add_argument("--score", help="timed OSC messages: text or scsynth NRT binary")
    s.add_argument("--duration", type=float, help="seconds to render")
    s.add_argument("--in", dest="inputs", action="append", metavar="NAME=FILE",
                   help="feed FILE to input node NAME")
    s.add_argument("--block", type=int, default=64, help="frames per block")
    s.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="audio threads (default: cores - 1, at least 1); the same samples "
                        "with any number")
    s.add_argument("--strict", action="store_true", help="exit 1 if a score command failed")
    s.add_argument("--subtype", type=str.upper, metavar="SUBTYPE",
                   help="sample format: FLOAT (the default for .wav; keeps levels over "
                        "0 dBFS), DOUBLE, PCM_16, PCM_24 (integer: clipped at 0 dBFS)")
    s.add_argument("--target-lufs", type=float, metavar="LUFS",
                   help="master to this integrated loudness (two passes; e.g. -14, -23)")
    s.add_argument("--true-peak", type=float, metavar="DBTP",
                   help="true-peak limit in dBTP (limiter if needed; -1 with --target-lufs)")
    s.set_defaults(func=_cmd_render)

    s = sub.add_parser("analyze", help="loudness, loudness range, true peak of a sound file")
    s.add_argument("file", help="sound file (.wav, .flac, ...)")
    s.add_argument("--plot", metavar="OUT.png",
                   help="write loudness over time and the long-term spectrum (needs matplotlib)")
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
    s.set_defaults(func=_cmd_analyze)

    s = sub.add_parser("patch", help="convert a patch between msgpack (.mgp) and JSON (.json)")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(func=_cmd_patch)

    s = sub.add_parser("ctl", help="send one OSC command and print the reply")
    s.add_argument("address", help="OSC address, e.g. /node/g/gain")
    s.add_argument("args", nargs="*",
                   help="arguments: numbers, true/false, strings; typed: s:2024 i:3 f:1 T F")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=_default_port(),
                   help="the server's OSC port (default $MIXGRAPH_PORT or 8000)")
    s.add_argument("--timeout", type=float, default=2.0,
                   help="seconds to wait for the reply (a node action takes its own time)")
    s.add_argument("--tcp", action="store_true", help="use TCP instead of UDP")
    s.add_argument("--framing", default="size", choices=["size", "slip"],
                   help="TCP framing: OSC 1.0 size prefix (default) or OSC 1.1 SLIP")
    s.set_defaults(func=_cmd_ctl)

    s = sub.add_parser("top", help="live view of a running server: graph, load, xruns, meters")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=_default_port(),
                   help="the server's OSC port (default $MIXGRAPH_PORT or 8000)")
    s.add_argument("--tcp", action="store_true", help="use TCP instead of UDP")
    s.add_argument("--once", action="store_true", help="print one frame and exit")
    s.add_argument("--interval", type=float, default=0.5, help="seconds between frames")
    s.add_argument("--timeout", type=float, default=2.0)
    s.set_defaults(func=_cmd_top)

    s = sub.add_parser("service", help="install, remove or show the systemd unit for serve",
                       description="`mixgraph service install [--user] [-- SERVE OPTIONS]` "
                                   "writes a systemd unit running `mixgraph serve` with those "
                                   "options (Type=notify, a 5 s watchdog, restart always).")
    s.add_argument("action", choices=["install", "uninstall", "status"])
    s.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user)")
    s.add_argument("serve_args", nargs=argparse.REMAINDER,
                   help="options for `mixgraph serve` (after --)")
    s.set_defaults(func=_cmd_service)

    s = sub.add_parser("health", help="one line and exit 0 if a server answers and its audio "
                                      "clock moves, else 1 (for scripts and monitoring)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=_default_port(),
                   help="the server's OSC port (default $MIXGRAPH_PORT or 8000)")
    s.add_argument("--timeout", type=float, default=2.0)
    s.set_defaults(func=_cmd_health)

    s = sub.add_parser("layout", help="write a TouchOSC layout for the live graph or a patch")
    s.add_argument("--touchosc", required=True, metavar="OUT.tosc", help="output file")
    s.add_argument("--patch", help="patch file (.mgp/.json) instead of the live graph")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=_default_port(),
                   help="the server's OSC port (default $MIXGRAPH_PORT or 8000)")
    s.add_argument("--tcp", action="store_true", help="use TCP instead of UDP")
    s.add_argument("--timeout", type=float, default=2.0)
    s.add_argument("--width", type=int, default=1024, help="layout width in points")
    s.add_argument("--height", type=int, default=768, help="layout height in points")
    s.set_defaults(func=_cmd_layout)

    s = sub.add_parser("cues", help="check a cue list file (the text form of /cue/load)")
    s.add_argument("file")
    s.set_defaults(func=_cmd_cues)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mixgraph` console script."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.cmd is None:  # bare `mixgraph`: what it can do
        parser.print_help()
        return 0
    setup_logging("debug" if a.verbose else getattr(a, "log_level", "warning"),
                  json_lines=getattr(a, "log_json", False))
    try:
        return a.func(a)
    except MixgraphError as e:
        Console(stderr=True).print(f"[bold red]mixgraph: {escape(str(e))}[/]")
        return 2
    except BrokenPipeError:  # `mixgraph nodes eq | head`: the reader has enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
        return 0


if __name__ == "__main__":
    sys.exit(main())
