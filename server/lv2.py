"""LV2 plugins as nodes (control thread): the plugin list, a plugin's node type,
and the OSC/CLI descriptions of both.

The lilv world lives in C (csrc/lv2host.c), loaded once on first use
(LV2_PATH honoured). Each plugin gets its own node type, made once from the
plugin's description and kept for the process's life: its audio ports are
the node's ports (mono, by LV2 symbol), its control inputs the parameters,
its control outputs the readouts. An `lv2` node names its plugin with the
creation option `uri`; `lv2_type` turns the generic `lv2` catalog entry into
the plugin's type before anything else looks at the settings."""

from __future__ import annotations

import base64
import logging
import math
import os
import struct
from collections.abc import Collection, Mapping

from ._core import ffi, lib
from .catalog import NodeType, from_c
from .errors import MixgraphError
from .graph import check_name

log = logging.getLogger("mixgraph.lv2")

_TYPES: dict[str, NodeType] = {}
_REFUSED: dict[str, str] = {}  # URI -> why plugin_type refused it
REFUSED_MAX = 4096  # refusals kept (an unknown URI costs little to look up again)
# the daemon sets this: its engine runs live, where a plugin that is not
# lv2:hardRTCapable may block the audio thread (offline renders run any plugin)
REFUSE_NON_RT = False


def available() -> bool:
    """True when this build hosts LV2 plugins (lilv was there when it was built)."""
    return bool(lib.mg_lv2_available())


def _load() -> int:
    err = ffi.new("char[512]")
    n = lib.mg_lv2_load(err, 512)
    if n < 0:
        raise MixgraphError(ffi.string(err).decode())
    return n


def uris() -> list[str]:
    """The URIs of every LV2 plugin lilv finds (LV2_PATH or the default path)."""
    return [ffi.string(lib.mg_lv2_uri(i)).decode() for i in range(_load())]


def plugin_type(uri: str) -> NodeType:
    """The node type of the plugin with this URI; MixgraphError naming the reason
    (unknown URI, a required feature the host lacks, a port it cannot connect).
    The first look at a plugin reads its data files (lsp's take tens of ms); the
    answer, type or refusal, is kept (the plugins are loaded once per process)."""
    t = _TYPES.get(uri)
    if t is None:
        why = _REFUSED.get(uri)
        if why is not None:
            raise MixgraphError(why)
        err = ffi.new("char[512]")
        ct = lib.mg_lv2_type(uri.encode(), err, 512)
        if ct == ffi.NULL:
            why = ffi.string(err).decode()
            if len(_REFUSED) < REFUSED_MAX:
                _REFUSED[uri] = why
            raise MixgraphError(why)
        t = _TYPES[uri] = from_c(lib.mg_type_find(b"lv2"), ct, uri)
    return t


def known(uri: str) -> bool:
    """True when plugin_type(uri) answers at once (looked at before)."""
    return uri in _TYPES or uri in _REFUSED


def lv2_type(t: NodeType, settings: Mapping | None, options: Collection[str] = ()) -> NodeType:
    """t itself, or for the generic `lv2` type the type of the plugin that the
    settings' `uri` names (options: the keys of settings that are creation
    options, not parameters)."""
    if t.name != "lv2" or t.uri:
        return t
    uri = (settings or {}).get("uri")
    if not isinstance(uri, str) or not uri:
        raise MixgraphError("an lv2 node needs its plugin: `uri <plugin-URI>` "
                            "(`mixgraph lv2 list` lists them)")
    try:
        pt = plugin_type(uri)
    except MixgraphError as e:
        if not str(e).startswith("no LV2 plugin") or not isinstance(settings.get("ports"), str):
            raise
        return placeholder(uri, settings, str(e), options)
    if REFUSE_NON_RT and not info(pt)["hard_rt"] and (settings or {}).get("allow_non_rt") != 1:
        raise MixgraphError(f"{uri} is not lv2:hardRTCapable (it may block the live audio "
                            "thread): give `allow_non_rt 1` to run it anyway")
    return grouped(pt) if group_of(settings) else pt


def group_of(settings: Mapping | None) -> int:
    """The `group` option of an lv2 node: as given, else 1 for a new node and 0 for
    a node of a document saved before the option existed (it has `ports`, the
    layout of mono ports its connections name)."""
    s = settings or {}
    if "group" in s:
        return 1 if _num(s["group"]) == 1 else 0
    return 0 if "ports" in s else 1


_GROUPED: dict[str, NodeType] = {}


def grouped(t: NodeType) -> NodeType:
    """The plugin's type with its main audio inputs as one port `in` and its
    outputs as one port `out` (as many channels as the plugin has; side chains
    stay mono ports by symbol): a stereo node connects to a stereo plugin as to
    a built-in stereo node. t itself for a mono plugin."""
    g = _GROUPED.get(t.uri or "")
    if g is None:
        ct = lib.mg_lv2_grouped(t.ctype)
        if ct == ffi.NULL:
            raise MixgraphError(f"{t.uri}: out of memory")
        g = t if ct == t.ctype else from_c(lib.mg_type_find(b"lv2"), ct, t.uri)
        _GROUPED[t.uri or ""] = g
    return g


def port_layout(t: NodeType) -> str:
    """A node's ports as the `ports` option keeps them: `in1,in2>out1,out2`, a port
    of several channels as `name*N` (`in*2>out*2`)."""
    def one(p) -> str:
        n = p.channel_count(1)
        return p.name if n == 1 else f"{p.name}*{n}"
    return (",".join(one(p) for p in t.ports if p.direction == "in") + ">"
            + ",".join(one(p) for p in t.ports if p.direction == "out"))


def is_placeholder(t: NodeType) -> bool:
    """True for the stand-in of a plugin this machine lacks."""
    i = ffi.new("mg_lv2_info *")
    return t.ctype is not None and lib.mg_lv2_describe(t.ctype, i) != 0


_HOLES: dict[tuple, NodeType] = {}


def placeholder(uri: str, settings: Mapping, why: str, options: Collection[str] = ()) -> NodeType:
    """A stand-in for a plugin that is missing here (a patch made elsewhere, a
    package removed): the saved ports (option `ports`) and parameters, audio
    passed through, so the rest of the patch loads and the node keeps its
    values until the plugin is installed."""
    ins, _, outs = str(settings.get("ports", "")).partition(">")
    names = [k for k in settings if isinstance(k, str) and k not in options]
    key = (uri, ins, outs, tuple(names))
    t = _HOLES.get(key)
    if t is None:
        for n in [*ins.split(","), *outs.split(","), *names]:
            name, _, ch = n.partition("*")
            try:
                if name:
                    check_name(name)
            except MixgraphError:
                raise MixgraphError(f"{uri}: bad port {n!r} in the saved `ports` layout "
                                    "(`in1,in2>out1,out2`, names of 1-64 of A-Z a-z 0-9 _ -)"
                                    ) from None
            if ch and not (ch.isdigit() and 1 <= int(ch) <= 64):
                raise MixgraphError(f"{uri}: bad port {n!r} in the saved `ports` layout")
        defs = ffi.new("float[]", [_num(settings[k]) for k in names] or [0.0])
        doc = f"placeholder: {why}; audio passes through, values are kept"
        ct = lib.mg_lv2_placeholder(doc.encode(), ins.encode(), outs.encode(),
                                    ",".join(names).encode(), defs)
        if ct == ffi.NULL:
            raise MixgraphError(f"{uri}: out of memory for its placeholder")
        t = _HOLES[key] = from_c(lib.mg_type_find(b"lv2"), ct, uri)
        log.warning("%s", doc)
    return t


def _num(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if abs(x) < 1e30 else 0.0


def info(t: NodeType) -> dict:
    """What the plugin says of itself beyond the node tables."""
    i = ffi.new("mg_lv2_info *")
    if t.ctype is None or lib.mg_lv2_describe(t.ctype, i) != 0:
        raise MixgraphError(f"{t.name} is no LV2 plugin's type")

    def s(p) -> str:
        return ffi.string(p).decode() if p != ffi.NULL else ""

    label = ffi.new("char **")
    presets = []
    for k in range(i.n_presets):
        p = lib.mg_lv2_preset(t.ctype, k, ffi.cast("const char **", label))
        presets.append({"uri": s(p), "label": s(label[0])})
    return {"uri": s(i.uri), "name": s(i.name), "class": s(i.klass), "author": s(i.author),
            "hard_rt": bool(i.hard_rt), "audio_in": int(i.n_audio_in),
            "audio_out": int(i.n_audio_out),
            "latency_readout": (t.readouts[i.latency_readout].name
                                if i.latency_readout >= 0 else None),
            "presets": presets}


def listing() -> list[dict]:
    """One line per plugin: URI, name, class, and why it cannot be hosted if so."""
    out = []
    for uri in uris():
        try:
            d = info(plugin_type(uri))
            out.append({"uri": uri, "name": d["name"], "class": d["class"],
                        "audio": f"{d['audio_in']}/{d['audio_out']}", "refused": ""})
        except MixgraphError as e:
            out.append({"uri": uri, "name": "", "class": "", "audio": "", "refused": str(e)})
    return out


def describe(uri: str) -> dict:
    """A plugin as the catalog describes a type (the ports of a new node: grouped),
    with its LV2 facts under `lv2` (`mono_ports`: the ports with `group 0`)."""
    t = plugin_type(uri)
    return {**grouped(t).describe(), "lv2": {**info(t), "mono_ports": [
        {"name": p.name, "direction": p.direction} for p in t.ports]}}


def cli(a) -> int:
    """`mixgraph lv2 list` (URI, class, audio ins/outs, name; or why refused) and
    `mixgraph lv2 show <uri>` (the plugin as `mixgraph nodes` shows a type)."""
    import json
    import sys

    try:
        if a.what == "list":
            for d in listing():
                if d["refused"]:
                    print(f"{d['uri']}  refused: {d['refused']}")
                else:
                    print(f"{d['uri']}  [{d['class']}] {d['audio']}  {d['name']}")
            return 0
        if not a.uri:
            print("mixgraph lv2 show: give a plugin URI (`mixgraph lv2 list`)", file=sys.stderr)
            return 2
        d = describe(a.uri)
    except MixgraphError as e:
        print(f"mixgraph lv2: {e}", file=sys.stderr)
        return 1
    info_ = d["lv2"]
    print(f"{info_['name']} — {info_['uri']}")
    print(f"class {info_['class']}, by {info_['author'] or '?'}, "
          f"{'hard real-time capable' if info_['hard_rt'] else 'NOT hard real-time capable'}"
          + (f", latency reported by `{info_['latency_readout']}`"
             if info_["latency_readout"] else ""))
    print("ports: " + (", ".join(f"{p['name']} ({p['direction']}"
                                 + (f", {p['channels']} ch" if p["channels"] != 1 else "") + ")"
                                 for p in d["ports"]) or "none"))
    mono = ", ".join(p["name"] for p in info_["mono_ports"])
    if [p["name"] for p in d["ports"]] != [p["name"] for p in info_["mono_ports"]]:
        print(f"  with `group 0`: {mono}")
    for p in d["params"]:
        rng = (", ".join(f"{int(p['min']) + k} {c}" for k, c in enumerate(p["choices"]))
               if p.get("choices") else f"{p['min']:g}..{p['max']:g}")
        print(f"  {p['name']}  {p['unit'] + '  ' if p['unit'] else ''}{rng}  "
              f"default {p['default']:g}  ({p['taper']})  {p['doc']}")
    if d["readouts"]:
        print("readouts: " + ", ".join(r["name"] + (f" ({r['unit']})" if r["unit"] else "")
                                        for r in d["readouts"]))
    if info_["presets"]:
        print("presets: " + json.dumps([p["label"] for p in info_["presets"]]))
    return 0


# ---- a plugin's own files, state and log (nodes/lv2.c) ----------------------------
STATE_ROOT: str | None = None  # the daemon's state directory; None: a temporary one
_tmp_root: str | None = None
STATE_MAX_BYTES = 16 << 20  # of one plugin's saved state
STATE_MAX_PROPS = 4096
RESTORE_TIMEOUT_MS = 10_000  # for the work a plugin schedules while restoring
_HARD_RT: dict[str, bool] = {}


def node_dir(name: str) -> str:
    """The directory an lv2 node's plugin keeps its files in (state:makePath):
    <state dir>/lv2/<node name>, or under a temporary directory for an offline
    render. Made when the plugin first asks for a path in it."""
    global _tmp_root
    root = STATE_ROOT
    if root is None:
        if _tmp_root is None:
            import tempfile
            _tmp_root = tempfile.mkdtemp(prefix="mixgraph-lv2-")
        root = _tmp_root
    return os.path.join(root, "lv2", name)


def hard_rt(t: NodeType) -> bool:
    """True if the plugin of type t is lv2:hardRTCapable (placeholders are)."""
    v = _HARD_RT.get(t.uri or "")
    if v is None:
        v = _HARD_RT[t.uri or ""] = is_placeholder(t) or info(t)["hard_rt"]
    return v


def before_new(name: str, t: NodeType, options: Mapping) -> None:
    """Called just before the C node of an lv2 node is made: its name and state
    directory go to the plugin's features; a plugin that is not hard real-time
    capable but allowed on the live audio thread is said in the log."""
    lib.mg_lv2_next_node(name.encode(), node_dir(name).encode())
    if REFUSE_NON_RT and not hard_rt(t):
        log.warning("%s: %s is not lv2:hardRTCapable and runs on the live audio thread "
                    "(allow_non_rt 1): it may cause dropouts", name, t.uri)


def status(session) -> list:
    """/status fields: `non_rt`, the nodes running a plugin that is not hard
    real-time capable (comma-separated, "" if none); `lv2_log`, the lines plugins
    logged (each counted, not each written: drain_log), and `lv2_log_lost`, lines
    lost to a full ring."""
    names = [g.name for g in session.graph.nodes.values() if g.type.uri and not hard_rt(g.type)]
    return ["non_rt", ",".join(names), "lv2_log", _lines,
            "lv2_log_lost", int(lib.mg_lv2_log_dropped())]


_ATOM = "http://lv2plug.in/ns/ext/atom#"
_TEXT = {_ATOM + "Path", _ATOM + "String", _ATOM + "URI"}
_NUM = {_ATOM + "Int": "<i", _ATOM + "Long": "<q", _ATOM + "Bool": "<i",
        _ATOM + "Float": "<f", _ATOM + "Double": "<d"}


def _unurid(u: int) -> str:
    p = lib.mg_lv2_unurid(u)
    if p == ffi.NULL:
        raise MixgraphError(f"LV2 state: URID {u} is not mapped")
    return ffi.string(p).decode()


def _prop(key: int, typ: int, flags: int, raw: bytes) -> dict:
    """One saved property as plain data: strings and numbers as themselves, a URID
    as its URI, anything else base64."""
    t = _unurid(typ)
    out: dict = {"key": _unurid(key), "type": t, "flags": flags}
    if t in _TEXT and raw.endswith(b"\0"):
        try:
            out["value"] = raw[:-1].decode()
            return out
        except UnicodeDecodeError:
            pass
    elif t == _ATOM + "URID" and len(raw) == 4:
        out["value"] = _unurid(struct.unpack("<I", raw)[0])
        return out
    elif t in _NUM and len(raw) == struct.calcsize(_NUM[t]):
        v = struct.unpack(_NUM[t], raw)[0]
        if t == _ATOM + "Bool":
            v = bool(v)
        if not isinstance(v, float) or math.isfinite(v):
            out["value"] = v
            return out
    out["base64"] = base64.b64encode(raw).decode()
    return out


def _raw(p: dict) -> bytes:
    """A property's bytes, as the plugin stored them."""
    t = p["type"]
    if "base64" in p:
        return base64.b64decode(p["base64"], validate=True)  # "!!!" is refused, not b""
    v = p["value"]
    if t == _ATOM + "URID":
        return struct.pack("<I", lib.mg_lv2_urid(str(v).encode()))
    if t in _NUM:
        return struct.pack(_NUM[t], int(v) if _NUM[t] in ("<i", "<q") else float(v))
    return str(v).encode() + b"\0"


def check_state(v, what: str) -> list[dict]:
    """A saved plugin state from a patch document, checked completely: a list of
    at most STATE_MAX_PROPS properties {key, type, flags, value | base64}."""
    if not isinstance(v, list) or len(v) > STATE_MAX_PROPS:
        raise MixgraphError(f"{what}: lv2_state must be a list of at most "
                            f"{STATE_MAX_PROPS} properties")
    out, total = [], 0
    for p in v:
        if (not isinstance(p, dict) or not isinstance(p.get("key"), str)
                or not isinstance(p.get("type"), str) or not p["key"] or not p["type"]
                or not isinstance(p.get("flags", 0), int) or isinstance(p.get("flags"), bool)
                or not 0 <= p.get("flags", 0) < 2**32
                or ("value" in p) == ("base64" in p) or set(p) - {"key", "type", "flags",
                                                                   "value", "base64"}):
            raise MixgraphError(f"{what}: bad lv2_state property {str(p)[:120]}")
        t = p["type"]
        val = p.get("value")
        ok = ("base64" in p and isinstance(p["base64"], str)) or (
            (t in _TEXT or t == _ATOM + "URID") and isinstance(val, str)) or (
            t in _NUM and isinstance(val, int | float)
            and (isinstance(val, int) or math.isfinite(val)))
        if not ok:
            raise MixgraphError(f"{what}: lv2_state {p['key']}: value does not fit {t}")
        try:
            total += len(p["key"]) + len(t) + len(_raw(p)) + 32
        except (ValueError, struct.error) as e:
            raise MixgraphError(f"{what}: lv2_state {p['key']}: {e}") from None
        if total > STATE_MAX_BYTES:
            raise MixgraphError(f"{what}: lv2_state holds more than {STATE_MAX_BYTES} bytes")
        out.append({"key": p["key"], "type": t, "flags": int(p.get("flags", 0)),
                    **({"base64": p["base64"]} if "base64" in p else {"value": val})})
    return out


def node_state(session, name: str) -> list[dict] | None:
    """What an lv2 node's plugin saves of itself beyond its controls
    (LV2_State_Interface), as plain data for the patch document; None when it
    has no state interface. A placeholder gives back the state it was loaded
    with. Control thread; the plugin may be running (the LV2 state extension
    lets save run alongside run())."""
    g = session.graph.nodes.get(name)
    node = session.live.get(name)
    if g is None or node is None or not g.type.uri:
        return None
    if is_placeholder(g.type):
        return g.options.get("_lv2_state")
    cap = 1 << 20
    while True:
        buf = ffi.new("uint8_t[]", cap)
        n = lib.mg_lv2_state_save(node.ptr, buf, cap)
        if n == -2 and cap < STATE_MAX_BYTES and "larger" in _err():
            cap = STATE_MAX_BYTES
            continue
        break
    if n == -1:
        return None
    if n < 0:
        raise MixgraphError(f"{name}: {_err()}")
    raw = ffi.buffer(buf, n)[:]
    out, at = [], 0
    while at + 16 <= n:
        key, typ, flags, size = struct.unpack_from("<4I", raw, at)
        out.append(_prop(key, typ, flags, raw[at + 16: at + 16 + size]))
        at += 16 + ((size + 7) & ~7)
    return out


def _err() -> str:
    return ffi.string(lib.mg_lv2_last_error()).decode()


def restore_state(session, name: str, state: list[dict]) -> bool:
    """Give a node's plugin the state a patch saved, before the node is in any plan
    (LV2 restore must not run alongside run()); waits for the work the plugin
    schedules while restoring (loading a file). False, and a log line, if the
    plugin refuses it; a placeholder keeps it for saving."""
    g = session.graph.nodes.get(name)
    node = session.live.get(name)
    if g is None or node is None or not g.type.uri:
        return False
    if is_placeholder(g.type):
        g.options["_lv2_state"] = state
        return True
    if node.published:
        log.warning("%s: plugin state not restored: the node is already running", name)
        return False
    recs = bytearray()
    for p in state:
        raw = _raw(p)
        recs += struct.pack("<4I", lib.mg_lv2_urid(p["key"].encode()),
                            lib.mg_lv2_urid(p["type"].encode()), p["flags"], len(raw))
        recs += raw + b"\0" * (-len(raw) % 8)
    buf = ffi.new("uint8_t[]", bytes(recs) or b"\0")
    r = lib.mg_lv2_state_restore(node.ptr, buf, len(recs), RESTORE_TIMEOUT_MS)
    if r == -1:
        log.warning("%s: saved plugin state not restored: %s has no state interface",
                    name, g.type.uri)
        return False
    if r != 0:
        log.warning("%s: saved plugin state not restored: %s", name, _err())
        return False
    return True


_LEVELS = ("error", "warning", "note", "trace")
_ratelog = None
_lines = 0  # plugin log lines taken from the ring


def drain_log() -> int:
    """Write the lines plugins logged (any thread, through a lock-free ring in C)
    to the daemon's log, on the control thread: each node's first line at once,
    then at most one summary per interval (server/ratelog.py, as client
    warnings are). Trace lines are debug. How many lines were taken."""
    global _ratelog, _lines
    if _ratelog is None:
        from .ratelog import RateLog
        _ratelog = RateLog(logging.getLogger("mixgraph.lv2.plugin"))
    level, node, msg = ffi.new("int *"), ffi.new("char[64]"), ffi.new("char[256]")
    n = 0
    while n < 1000 and lib.mg_lv2_log_pop(level, node, 64, msg, 256):
        n += 1
        text = ffi.string(msg).decode(errors="replace")
        who = ffi.string(node).decode(errors="replace") or "lv2"
        if level[0] >= 3:
            log.debug("%s: plugin trace: %s", who, text)
        else:
            _ratelog.warn(who, "plugin %s: %s", _LEVELS[level[0]], text)
    _lines += n
    _ratelog.flush()
    return n
