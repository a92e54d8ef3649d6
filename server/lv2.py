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

import logging
from collections.abc import Collection, Mapping

from ._core import ffi, lib
from .catalog import NodeType, from_c
from .errors import MixgraphError
from .graph import check_name

log = logging.getLogger("mixgraph.lv2")

_TYPES: dict[str, NodeType] = {}
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
    (unknown URI, a required feature the host lacks, a port it cannot connect)."""
    t = _TYPES.get(uri)
    if t is None:
        err = ffi.new("char[512]")
        ct = lib.mg_lv2_type(uri.encode(), err, 512)
        if ct == ffi.NULL:
            raise MixgraphError(ffi.string(err).decode())
        t = _TYPES[uri] = from_c(lib.mg_type_find(b"lv2"), ct, uri)
    return t


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
    return pt


def port_layout(t: NodeType) -> str:
    """A node's mono ports as the `ports` option keeps them: `in1,in2>out1,out2`."""
    return (",".join(p.name for p in t.ports if p.direction == "in") + ">"
            + ",".join(p.name for p in t.ports if p.direction == "out"))


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
            if n:
                check_name(n)
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
    """A plugin as the catalog describes a type, with its LV2 facts under `lv2`."""
    t = plugin_type(uri)
    return {**t.describe(), "lv2": info(t)}


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
    print("ports: " + (", ".join(f"{p['name']} ({p['direction']})" for p in d["ports"])
                       or "none"))
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
