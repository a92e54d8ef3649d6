"""Seeded random patches rendered through every equivalent execution path.

The engine has several paths meant to give the same samples bit for bit:
fused strip tails (csrc/layout.c mg_plan_fuse, `Engine.set_fusing`), their
split and latency-compensated forms, ganged nodes and the strip head's
cached paths (`Engine.set_ganging`), the parallel form on two threads
(mg_par_*, scheduled every cycle, every other cycle, or every unit on the
audio thread), the reverb's split block (MIXGRAPH_RV_NOSPLIT=1 turns it off)
and the eq's glide skips (MIXGRAPH_EQ_GLIDE_PLAIN=1). The chosen-case tests
(test_mixfuse*.py, test_threads.py, test_head_cached.py,
test_eq_glide_paths.py) pin particular patches; this one draws them.

Each seed builds a patch through the Session API: channel strips in runs of
one shape (a source, 0-3 random inserts, panner, fader, pre/post sends into
aux buses, some under a VCA), stereo strips, subgroup buses into the master,
aux returns, bus chains, and a random feedback-free DAG of extra nodes. The
node types are read from the catalog (server/catalog.py), so a new type is
drawn without a change here; `test_every_catalog_type_is_drawn` fails if one
is never drawn over the default seeds (SKIP lists the one left out, with the
reason). Latency nodes (limiter, denoise, autotune, ...) put delay groups in
front of buses. Parameters start at random values and move during the render:
sets between calls, sets scheduled inside a call, ramps, bypass toggles. The
call size and the chunks between moves are random.

Each patch is rendered on the paths below, and every output must have the
bits of the first (fused, ganged, one thread), and every readout of every
node at the end must be the same; the output must be finite and the render
must raise nothing. The env-var switches are read once per process, so they
render in one child process for all seeds. `test_paths_differ` checks that
the seeds do exercise fused tails (the plans' fused strip counts) and the
parallel form (units of work), so the comparisons cannot pass vacuously.

Seeds: MIXGRAPH_FUZZ_SEEDS (default 24; e.g. 500 for a long local run),
MIXGRAPH_FUZZ_FIRST (default 0) for the first seed. A failing seed is
reproduced with MIXGRAPH_FUZZ_FIRST=<seed> MIXGRAPH_FUZZ_SEEDS=1, and
`python tests/test_plan_fuzz.py <seed>` prints its patch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mixgraph.server import ramps
from mixgraph.server._core import ffi, lib
from mixgraph.server.catalog import CATALOG, NodeType, ParamSpec
from mixgraph.server.engine import Engine
from mixgraph.server.session import Session

RATE = 48000
SEEDS = int(os.environ.get("MIXGRAPH_FUZZ_SEEDS", "24"))
FIRST = int(os.environ.get("MIXGRAPH_FUZZ_FIRST", "0"))
# a type made per plugin at run time (tests/test_lv2.py): "lv2" itself has no ports
SKIP = {"lv2"}
# the ends of a graph: hardware inputs and outputs (drawn, but placed by hand)
HW = {"input", "output"}
TYPES = sorted(t for t in CATALOG if t not in SKIP)
# ranks of the DAG's zones (connections go up): strips and extra nodes first,
# then the subgroups, the aux buses, the master and its chain, then the extra
# nodes that take from anything before them
GROUPS, AUXES, MASTER, POST = 2e5, 3e5, 5e5, 6e5

# the paths compared with the reference (fused, ganged, one thread)
ALWAYS = (0.0, 0.0)     # workers woken for every cycle
ALTERNATE = (50.0, -1.0)  # every other cycle on the audio thread alone
SOLO = (0.0, -2.0)       # the parallel form, every unit on the audio thread
PATHS: dict[str, dict] = {
    "steps": {"fusing": False},
    "alone": {"ganging": False},
    "t2": {"threads": 2, "sched": ALWAYS},
    "t2_steps": {"threads": 2, "sched": SOLO, "fusing": False},
    "t2_alt": {"threads": 2, "sched": ALTERNATE},
    "t2_default": {"threads": 2},
    "t2_solo_alone": {"threads": 2, "sched": SOLO, "ganging": False},
}
PLAIN_ENV = {"MIXGRAPH_RV_NOSPLIT": "1", "MIXGRAPH_EQ_GLIDE_PLAIN": "1"}


# ---- the patch: plain data, drawn from a seed ----------------------------------------
@dataclass
class Patch:
    """What one seed renders: the engine's shape, the edits that build the
    graph, and the moves made before each chunk of the render."""

    seed: int
    hw_in: int
    hw_out: int
    call: int                       # frames an engine call (the backend's period)
    chunks: list[int]               # frames between move points
    # ("add", type, name, settings), then ("conn", src, dst)
    ops: list[tuple] = field(default_factory=list)
    moves: dict[int, list[tuple]] = field(default_factory=dict)  # chunk -> moves
    types: set[str] = field(default_factory=set)


def _is_trigger(p: ParamSpec) -> bool:
    """A parameter that starts an action (meter reset, denoise learn, align
    capture): not a value to draw."""
    return p.doc.lower().startswith("trigger")


def _draw_value(rng: np.random.Generator, p: ParamSpec) -> float:
    """A value of p: its default, one of its ends, or anywhere in its range
    (evenly in its map: log parameters in log, steps as whole numbers)."""
    r = rng.random()
    if p.taper == "stepped":
        return float(rng.integers(int(p.min), int(p.max) + 1))
    if r < 0.3:
        return p.default
    if r < 0.4:
        return p.min if rng.random() < 0.5 else p.max
    if p.map == "log" and p.min > 0:
        return float(math.exp(rng.uniform(math.log(p.min), math.log(p.max))))
    if p.taper == "fader":  # most of a fader's travel is audible
        return float(rng.uniform(max(p.min, -40.0), p.max))
    return float(rng.uniform(p.min, p.max))


def _draw_params(rng: np.random.Generator, t: NodeType, share: float = 0.5) -> dict:
    """Random values for about `share` of t's parameters (the rest default).
    A gain is seldom muted, so the strips are heard."""
    out = {}
    for p in t.params:
        if _is_trigger(p) or rng.random() > share:
            continue
        if p.name in ("mute", "vca"):
            continue
        out[p.name] = _draw_value(rng, p)
    return out


def _ports(t: NodeType, direction: str):
    return [p for p in t.ports if p.direction == direction]


def _channels_ok(t: NodeType, ch: int) -> bool:
    return t.min_channels <= ch <= t.max_channels


def _in_ch(t: NodeType, ch: int) -> int:
    p = _ports(t, "in")[0]
    return p.channel_count(ch)


def _out_ch(t: NodeType, ch: int) -> int:
    p = _ports(t, "out")[0]
    return p.channel_count(ch)


def _inserts(ch: int) -> list[str]:
    """Processor types that can sit in a `ch`-channel path (in and out of ch)."""
    out = []
    for name in TYPES:
        t = CATALOG[name]
        if name in HW or not _ports(t, "in") or not _ports(t, "out") or t.needs_fifo:
            continue
        for k in range(t.min_channels, min(t.max_channels, 8) + 1):
            if _in_ch(t, k) == ch and _out_ch(t, k) == ch:
                out.append(name)
                break
        else:
            continue
    return out


def _insert_channels(t: NodeType, ch: int) -> int:
    """The node channel count that makes t a ch -> ch insert."""
    for k in range(t.min_channels, min(t.max_channels, 8) + 1):
        if _in_ch(t, k) == ch and _out_ch(t, k) == ch:
            return k
    raise AssertionError(f"{t.name} is no {ch}-channel insert")


class _Builder:
    """Draws a patch: keeps each node's output channels, so every connection
    fits (equal counts, or mono fanning out) and goes from an earlier node to
    a later one (no cycle)."""

    def __init__(self, seed: int, tmp: Path) -> None:
        self.rng = np.random.default_rng(seed)
        self.tmp = tmp
        self.out_ch: dict[str, int] = {}
        self.node_ch: dict[str, int] = {}
        self.rank: dict[str, float] = {}
        self.conns: list[tuple] = []
        self.counter = 0
        self.order: list[str] = []
        self.kind: dict[str, str] = {}
        self.faders: list[str] = []
        self.n = 0
        rng = self.rng
        call = int(rng.choice([64, 64, 64, 64, 128, 128, 32, 256, 48, 16, 512, 37, 100, 13]))
        self.patch = Patch(seed, hw_in=8, hw_out=0, call=call, chunks=[])
        total = 0
        while total < 4800:
            k = call * int(rng.integers(1, 12)) if rng.random() < 0.8 else int(rng.integers(1, 900))
            self.patch.chunks.append(k)
            total += k

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def add(self, type_name: str, settings: dict | None = None, prefix: str | None = None,
            rank: float | None = None) -> str:
        """Add a node (rank: its place in the DAG; default, the next in the
        strips' zone). Connections only go to a higher rank."""
        t = CATALOG[type_name]
        name = self.name(prefix or type_name[:3])
        s = dict(settings or {})
        if type_name == "player":
            s.setdefault("path", "loop.wav")  # written by render()
            s.setdefault("play", 1.0)
            s.setdefault("loop", 1.0)
        if type_name == "recorder":
            s.setdefault("path", f"rec_{name}.wav")
        if t.needs_fifo and "channels" not in s:
            s["channels"] = t.default_channels
        if type_name in ("noise", "dither"):
            s.setdefault("seed", int(self.rng.integers(1, 1 << 30)))
        self.patch.ops.append(("add", type_name, name, s))
        self.patch.types.add(type_name)
        ch = int(s.get("channels", t.default_channels))
        outs = _ports(t, "out")
        self.out_ch[name] = outs[0].channel_count(ch) if outs else 0
        self.node_ch[name] = ch
        self.order.append(name)
        self.kind[name] = type_name
        if rank is None:
            self.counter += 1
            rank = self.counter
        self.rank[name] = rank
        return name

    def conn(self, a: str, b: str) -> None:
        assert self.rank[a] < self.rank[b.split(":")[0]], (a, b)
        self.conns.append(("conn", a, b))

    def before(self, n: str, ch: int) -> list[str]:
        """Nodes that may feed n from an output of ch channels (or mono)."""
        return [m for m in self.order if self.rank[m] < self.rank[n]
                and self.out_ch.get(m) in (ch, 1)]

    def output(self, src: str) -> None:
        """src to hardware outputs of its own."""
        ch = self.out_ch[src]
        o = self.add("output", {"first": self.patch.hw_out + 1, "channels": ch},
                     rank=self.rank[src] + 0.5)
        self.patch.hw_out += ch
        self.conn(src, o)

    def insert_chain(self, src: str, ch: int, k: int, pool: list[str]) -> str:
        """k random inserts after src (ch channels each side, ranks just
        above src's); returns the last."""
        for j in range(k):
            typ = str(self.rng.choice(pool))
            t = CATALOG[typ]
            s = {"channels": _insert_channels(t, ch), **_draw_params(self.rng, t, 0.4)}
            n = self.add(typ, s, rank=self.rank[src] + 0.01 * (j + 1) / (k + 1))
            self.conn(src, n)
            self._key_input(n)
            src = n
        return src

    def _key_input(self, n: str) -> None:
        """A node's second input (a sidechain key, align's reference): fed
        from an earlier node now and then."""
        t = CATALOG[self.kind[n]]
        extra = _ports(t, "in")[1:]
        if not extra or self.rng.random() < 0.5:
            return
        ch = self.node_ch[n]
        port = extra[0]
        want = port.channel_count(ch)
        cands = self.before(n, want)
        if cands:
            self.conn(str(self.rng.choice(cands)), f"{n}:{port.name}")

    def source(self, ch: int, rank: float | None = None) -> str:
        """A ch-channel source: hardware input mostly, else a generator type."""
        gens = [t for t in TYPES if t not in HW and not _ports(CATALOG[t], "in")
                and _ports(CATALOG[t], "out") and _channels_ok(CATALOG[t], ch)]
        if self.rng.random() < 0.75 or not gens:
            first = int(self.rng.integers(1, self.patch.hw_in - ch + 2))
            return self.add("input", {"first": first, "channels": ch}, "in", rank=rank)
        typ = str(self.rng.choice(gens))
        t = CATALOG[typ]
        s = {"channels": ch, **_draw_params(self.rng, t, 0.5)}
        if typ == "player":
            s["play"] = 1.0
        return self.add(typ, s, rank=rank)


def draw_patch(seed: int, tmp: Path) -> Patch:
    """The patch of one seed (see the module's docstring)."""
    b = _Builder(seed, tmp)
    rng = b.rng
    mono_ins, stereo_ins = _inserts(1), _inserts(2)
    latent = [t for t in ("limiter", "denoise", "autotune") if t in mono_ins]
    # buses: the master, 0-2 subgroups into it, 0-3 aux buses (returns or outputs)
    master = b.add("bus", {"channels": 2, **_draw_params(rng, CATALOG["bus"], 0.3)}, "master",
                   rank=MASTER)
    groups = [b.add("bus", {"channels": 2}, "grp", rank=GROUPS + i)
              for i in range(int(rng.integers(0, 3)))]
    auxes = [b.add("bus", {"channels": 2}, "aux", rank=AUXES + i)
             for i in range(int(rng.integers(0, 4)))]
    # the strips, in runs of one shape
    n_strips = int(rng.integers(1, 33))
    made = 0
    while made < n_strips:
        run = int(min(n_strips - made, rng.integers(1, 13)))
        stereo = rng.random() < 0.15
        ch = 2 if stereo else 1
        pool = stereo_ins if stereo else (mono_ins + latent * 2)
        k_ins = int(rng.choice([0, 0, 0, 1, 1, 2, 3]))
        ins_types = [str(rng.choice(pool)) for _ in range(k_ins)]
        if rng.random() < 0.3:  # a strip head: gate, eq, compressor, in some order
            head = [h for h in ("gate", "eq", "compressor") if h in pool and rng.random() < 0.8]
            ins_types = [str(h) for h in rng.permutation(head)] if rng.random() < 0.3 else head
        dest = str(rng.choice([master, *groups])) if rng.random() < 0.8 else master
        # (aux bus, the tap the send's mode picks, its post and pre inputs wired)
        sends = []
        for a in auxes:
            if rng.random() < 0.6:
                tap = "pre" if rng.random() < 0.3 else "post"
                sends.append((a, tap, tap == "post" or rng.random() < 0.5,
                              tap == "pre" or rng.random() < 0.1))
        for _ in range(run):
            src = b.source(ch)
            for typ in ins_types:
                t = CATALOG[typ]
                if rng.random() < 0.05:  # now and then a strip of the run differs
                    continue
                s = {"channels": _insert_channels(t, ch), **_draw_params(rng, t, 0.4)}
                n = b.add(typ, s)
                b.conn(src, n)
                b._key_input(n)
                src = n
            pan = None
            if not stereo:
                pan = b.add("pan", _draw_params(rng, CATALOG["pan"], 0.7), "pan")
                b.conn(src, pan)
                src = pan
            fader = b.add("gain", {"channels": 2, "gain": float(rng.uniform(-20, 6)),
                                   **({"polarity": 1.0} if rng.random() < 0.1 else {})}, "fad")
            b.faders.append(fader)
            b.conn(src, fader)
            b.conn(fader, dest)
            for aux, tap, wire_post, wire_pre in sends:
                lvl = float(rng.uniform(-30, 0)) if rng.random() < 0.9 else -120.0
                sn = b.add("send", {"channels": 2, "level": lvl,
                                    "mode": 1.0 if tap == "pre" else 0.0}, "snd")
                if wire_post:
                    b.conn(fader, f"{sn}:post")
                if wire_pre:
                    b.conn(pan or fader, f"{sn}:pre")
                b.conn(sn, aux)
            made += 1
    # a VCA over some faders
    if b.faders and "vca" in CATALOG and rng.random() < 0.5:
        members = [f for f in b.faders if rng.random() < 0.5] or b.faders[:1]
        b.add("vca", {"members": ",".join(members), "level": float(rng.uniform(-12, 6))}, "vca",
              rank=POST)
    # random extra nodes: every catalog type gets its turn over the seeds
    extra = [TYPES[(seed + k) % len(TYPES)] for k in range(2)]
    extra += [str(rng.choice(TYPES)) for _ in range(int(rng.integers(0, 6)))]
    for typ in extra:
        _extra_node(b, typ, [master, *groups, *auxes], post=rng.random() < 0.3)
    # bus chains: returns into the master or outputs of their own
    for g in groups:
        out = b.insert_chain(g, 2, int(rng.integers(0, 2)), stereo_ins)
        b.conn(out, master)
    for a in auxes:
        out = b.insert_chain(a, 2, int(rng.integers(0, 3)), stereo_ins)
        if rng.random() < 0.6:
            b.conn(out, master)
        else:
            b.output(out)
    out = b.insert_chain(master, 2, int(rng.integers(0, 4)), stereo_ins)
    b.output(out)
    for typ in ("meter", "recorder"):
        if typ in CATALOG and rng.random() < 0.4:
            m = b.add(typ, {"channels": 2}, rank=b.rank[out] + 0.5)
            b.conn(out, m)
    _draw_moves(b)
    b.patch.ops += b.conns
    return b.patch


def _extra_node(b: _Builder, typ: str, buses: list[str], post: bool) -> None:
    """One node of type typ wired into the DAG: its inputs from earlier nodes
    (or a new source), its output into a bus, a later node or an output. A
    `post` node sits after the buses (it may read them) and goes to an output."""
    rng = b.rng
    t = CATALOG[typ]
    if not t.ports:
        if typ == "vca" and b.faders:
            b.add("vca", {"members": str(rng.choice(b.faders)),
                          "level": float(rng.uniform(-12, 6))}, "vca", rank=POST)
        return
    ch = int(rng.integers(t.min_channels, min(t.max_channels, 4) + 1))
    s = {"channels": ch, **_draw_params(rng, t, 0.6)}
    if typ == "input":
        s = {"channels": ch, "first": int(rng.integers(1, b.patch.hw_in - ch + 2))}
    if typ == "output":
        s = {"channels": ch, "first": b.patch.hw_out + 1}
        b.patch.hw_out += ch
    rank = None
    if post:
        b.counter_post = getattr(b, "counter_post", POST) + 1
        rank = b.counter_post
    ins = _ports(t, "in")
    src_new = None
    if ins and rng.random() < 0.2:
        want = ins[0].channel_count(ch)
        src_new = b.source(want if want <= 2 else 1)
    n = b.add(typ, s, rank=rank)
    if ins:
        want = ins[0].channel_count(ch)
        cands = b.before(n, want)
        if src_new is None and not cands:
            src_new = b.source(1, rank=b.rank[n] - 0.5)
        srcs = [src_new] if src_new else [str(rng.choice(cands))]
        if cands and rng.random() < 0.3:  # a second source into the same port: a sum
            srcs.append(str(rng.choice(cands)))
        for src in dict.fromkeys(srcs):
            b.conn(src, f"{n}:{ins[0].name}")
        b._key_input(n)
    oc = b.out_ch[n]
    if oc:
        fits = [x for x in buses if b.rank[x] > b.rank[n]]
        if fits and oc <= 2 and rng.random() < 0.7:
            b.conn(n, str(rng.choice(fits)))
        else:
            b.output(n)


def _draw_moves(b: _Builder) -> None:
    """Moves before random chunks: a set now, a set timed inside the coming
    chunk or later, a ramp (now or timed), a bypass on or off, a connection
    removed or made again (its fade). Strip tails (panners, faders, sends)
    are picked more often: their moves make fused tails fall back and come
    back."""
    rng = b.rng
    names = [op[2] for op in b.patch.ops if op[0] == "add"]
    tails = [n for n in names if b.kind[n] in ("pan", "gain", "send")]
    n_chunks = len(b.patch.chunks)
    ks = sorted(int(rng.integers(1, n_chunks)) if n_chunks > 1 else 0
                for _ in range(int(rng.integers(0, 30))))
    live = [c[1:] for c in b.conns]  # connections in the graph at this move
    gone: list[tuple[str, str]] = []
    for k in ks:
        moves = b.patch.moves.setdefault(k, [])
        n = str(rng.choice(tails)) if tails and rng.random() < 0.6 else str(rng.choice(names))
        t = CATALOG[b.kind[n]]
        params = [p for p in t.params if not _is_trigger(p)]
        r = rng.random()
        if r < 0.08:
            if gone and (rng.random() < 0.5 or not live):
                c = gone.pop(int(rng.integers(0, len(gone))))
                live.append(c)
                moves.append(("connect", *c))
            elif live:
                c = live.pop(int(rng.integers(0, len(live))))
                gone.append(c)
                moves.append(("disconnect", *c))
            continue
        if r < 0.16 and _ports(t, "in") and _ports(t, "out") and b.kind[n] != "bus":
            ins, outs = _ports(t, "in")[0], _ports(t, "out")[0]
            if ins.channels == outs.channels:
                moves.append(("bypass", n, bool(rng.random() < 0.7)))
                continue
        if not params:
            continue
        p = params[int(rng.integers(0, len(params)))]
        if p.name == "vca" and b.kind[n] == "gain":
            continue
        v = _draw_value(rng, p)
        at = 0 if rng.random() < 0.5 else int(rng.integers(1, 2 * b.patch.chunks[k] + 2))
        if r < 0.5:
            moves.append(("set", n, p.name, v, at))
        else:
            secs = float(rng.choice([0.0005, 0.003, 0.02, 0.08]))
            moves.append(("ramp", n, p.name, v, secs, at))


# ---- rendering ------------------------------------------------------------------------
def _player_file(tmp: Path) -> None:
    """The players' file: 50 ms of mono noise (they loop it; any channel count)."""
    p = tmp / "loop.wav"
    if not p.exists():
        rng = np.random.default_rng(5)
        x = (rng.standard_normal(2400) * 0.2).astype(np.float32)
        sf.write(str(p), x, RATE, subtype="FLOAT")


def _signals(seed: int, frames: int, ch: int) -> np.ndarray:
    """Noise and tones in bursts at levels from -50 to -6 dBFS, one channel
    silent, one hot (the dynamics move; the limiters limit); in a fifth of
    the seeds NaN and infinite samples on one channel (the engine's safety
    stage keeps them from the outputs)."""
    rng = np.random.default_rng(1000 + seed)
    t = np.arange(frames) / RATE
    x = np.zeros((frames, ch), np.float32)
    for c in range(ch):
        lvl = 10 ** (rng.uniform(-50, -6) / 20)
        burst = (np.sin(2 * np.pi * rng.uniform(2, 12) * t + c) > -0.2)
        tone = np.sin(2 * np.pi * rng.uniform(80, 3000) * t)
        x[:, c] = (rng.standard_normal(frames) * 0.5 + tone) * lvl * burst
    x[:, 1] = 0.0
    x[:, 2] *= 30.0
    if rng.random() < 0.2:  # non-finite samples on one channel now and then
        c = int(rng.integers(0, ch))
        k = int(rng.integers(0, frames - 20))
        x[k:k + 5, c] = np.nan
        x[k + 10:k + 12, c] = np.inf
    return x


@dataclass
class Result:
    """One render: the output, every node's readouts at the end, the newest
    plan's fused strips and tails, and its units of work."""

    out: np.ndarray
    readouts: dict
    fused: tuple[int, int]
    units: int


def _build(s: Session, p) -> None:
    """p's nodes and connections into s, committed: its first plan."""
    for op in p.ops:
        if op[0] == "add":
            s.add_node(op[1], op[2], dict(op[3]))
        else:
            s.connect(op[1], op[2])
    s.commit()

def render(p: Patch, tmp: Path, fusing: bool = True, ganging: bool = True, threads: int = 1,
           sched: tuple[float, float] | None = None) -> Result:
    """Build p in a fresh engine and session and render it chunk by chunk,
    making its moves before each chunk."""
    e = Engine(RATE, p.hw_in, max(p.hw_out, 1), threads=threads, block=p.call)
    e.set_fusing(fusing)
    e.set_ganging(ganging)
    if sched is not None:
        e.set_sched(*sched)
    _player_file(tmp)
    s = Session(e, data_dir=tmp)
    try:
        _build(s, p)
        frames = sum(p.chunks)
        x = _signals(p.seed, frames, p.hw_in)
        outs, pos = [], 0
        fused, units = (0, 0), 0
        for k, n in enumerate(p.chunks):
            for mv in p.moves.get(k, []):
                _move(s, mv)
            s.service()
            s.disk.pump()
            rec = list(s._plans.values())[-1]
            tails = ffi.new("int *")
            strips = lib.mg_plan_fused_strips(rec.ptr, tails)
            fused = max(fused, (strips, tails[0]))
            units = max(units, lib.mg_plan_units(rec.ptr))
            outs.append(e.process(n, x[pos:pos + n], block=p.call).copy())
            pos += n
        s.disk.pump()
        readouts = {}
        for name, node in sorted(s.live.items()):
            for r in node.g.type.readouts:
                # as bits: a NaN readout equals itself
                readouts[f"{name}.{r.name}"] = np.asarray(
                    s.readout(name, r.name), np.float64).view(np.uint64).tolist()
        return Result(np.concatenate(outs), readouts, fused, units)
    finally:
        s.close()
        e.free()


def _move(s: Session, mv: tuple) -> None:
    t = s.engine.time
    if mv[0] == "set":
        _, n, param, v, at = mv
        s.set_param(n, param, v, time=t + at if at else 0)
    elif mv[0] == "ramp":
        _, n, param, v, secs, at = mv
        ramps.ramp(s, n, param, v, secs, time=t + at if at else 0)
    elif mv[0] == "connect":
        s.connect(mv[1], mv[2])
    elif mv[0] == "disconnect":
        s.disconnect(mv[1], mv[2])
    else:
        s.set_bypass(mv[1], mv[2])


def _digest(r: Result) -> str:
    h = hashlib.sha256(np.ascontiguousarray(r.out).tobytes())
    h.update(json.dumps(r.readouts, sort_keys=True).encode())
    return h.hexdigest()


def _diff(a: Result, b: Result) -> str:
    """Where b differs from a: the first frame and channel, or the readout."""
    if a.out.shape != b.out.shape:
        return f"shape {a.out.shape} != {b.out.shape}"
    bad = np.argwhere(a.out.view(np.uint32) != b.out.view(np.uint32))
    if bad.size:
        f, c = bad[0]
        return (f"frame {f} channel {c}: {a.out[f, c]!r} != {b.out[f, c]!r} "
                f"({len(bad)} samples differ)")
    for k in a.readouts:
        if a.readouts[k] != b.readouts.get(k):
            return f"readout {k}: {a.readouts[k]} != {b.readouts.get(k)}"
    return "same"


def seeds() -> list[int]:
    return list(range(FIRST, FIRST + SEEDS))


# ---- the tests ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def refs(tmp_path_factory) -> dict[int, tuple[Patch, Result]]:
    """The reference render of each seed (fused, ganged, one thread)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    out = {}
    for seed in seeds():
        p = draw_patch(seed, tmp)
        out[seed] = (p, render(p, tmp))
    return out


def test_references_are_finite_and_heard(refs):
    """No NaN or infinity at the outputs; most seeds make sound (a patch
    that is all silence compares nothing)."""
    heard = 0
    for seed, (_, r) in refs.items():
        assert np.all(np.isfinite(r.out)), f"seed {seed}: non-finite output"
        heard += float(np.abs(r.out).max()) > 1e-4
    assert heard >= 0.75 * len(refs), f"{heard} of {len(refs)} seeds make sound"


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_gives_the_same_bits(refs, path, tmp_path):
    """Every seed on one path against the reference: the same bits at every
    output, the same readouts."""
    bad = []
    for seed, (p, ref) in refs.items():
        got = render(p, tmp_path, **PATHS[path])
        assert np.all(np.isfinite(got.out)), f"seed {seed}: non-finite output"
        d = _diff(ref, got)
        if d != "same":
            bad.append(f"seed {seed}: {d}")
    assert not bad, f"{path}: {len(bad)} of {len(refs)} seeds differ:\n" + "\n".join(bad[:20])


CHILD = r"""
import json, sys, tempfile
from pathlib import Path
import test_plan_fuzz as t
tmp = Path(tempfile.mkdtemp())
out = {}
for seed in t.seeds():
    r = t.render(t.draw_patch(seed, tmp), tmp)
    out[seed] = t._digest(r)
print(json.dumps(out))
"""


def test_plain_paths_give_the_same_bits(refs):
    """The reverb's split block and the eq's glide skips off
    (MIXGRAPH_RV_NOSPLIT=1, MIXGRAPH_EQ_GLIDE_PLAIN=1, read once per process:
    a child renders every seed) against the reference."""
    path = str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = {**os.environ, **PLAIN_ENV, "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    bad = [s for s, (_, ref) in refs.items() if got[str(s)] != _digest(ref)]
    assert not bad, f"seeds that differ with the split/skips off: {bad}"


def _plan_shape(p: Patch, tmp: Path, threads: int) -> tuple[int, int]:
    """(fused strips, units of work) of p's first plan, built but not rendered."""
    _player_file(tmp)
    e = Engine(RATE, p.hw_in, max(p.hw_out, 1), threads=threads, block=p.call)
    s = Session(e, data_dir=tmp)
    try:
        _build(s, p)
        rec = list(s._plans.values())[-1]
        tails = ffi.new("int *")
        return lib.mg_plan_fused_strips(rec.ptr, tails), lib.mg_plan_units(rec.ptr)
    finally:
        s.close()
        e.free()


def test_paths_differ(tmp_path):
    """The comparisons are not vacuous: over the default seeds, a quarter or
    more have fused strip tails in their plan and calls of a multiple of 8
    frames (so the tails can run fused; 8 of 24 when written), and on two
    threads most plans have a parallel form (units of work; 24 of 24)."""
    fused = par = 0
    for seed in range(24):
        p = draw_patch(seed, tmp_path)
        fused += _plan_shape(p, tmp_path, 1)[0] > 0 and p.call % 8 == 0
        par += _plan_shape(p, tmp_path, 2)[1] > 1
    assert fused >= 6, f"fused tails in {fused} of 24 seeds"
    assert par >= 12, f"a parallel form in {par} of 24 seeds"


def test_every_catalog_type_is_drawn(tmp_path):
    """Over the default seeds every catalog type but SKIP is in some patch,
    so a new node type is fuzzed without a change here."""
    drawn: set[str] = set()
    for seed in range(24):
        drawn |= draw_patch(seed, tmp_path).types
    assert drawn >= set(TYPES), f"never drawn: {sorted(set(TYPES) - drawn)}"


if __name__ == "__main__":
    for a in sys.argv[1:]:
        pt = draw_patch(int(a), Path(tempfile.mkdtemp()))
        print(f"seed {pt.seed}: call {pt.call}, chunks {pt.chunks}, hw {pt.hw_in}/{pt.hw_out}")
        for op in pt.ops:
            print(" ", op)
        for k, mv in sorted(pt.moves.items()):
            print(f"  chunk {k}:", mv)
