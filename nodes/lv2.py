"""Actions of lv2 nodes (mixgraph.server.actions): presets.

    /node/<name>/preset                 -> /done <address> <n> <label>... (the plugin's presets)
    /node/<name>/preset <label-or-URI>  -> /done <address> <label> <values set>

A preset's control values become the node's parameter values, set as any
parameter is (so feedback, scenes, undo and saved patches see them); the
plugin's internal state beyond its ports (LV2 state extension) is not loaded."""

from __future__ import annotations

import math

import numpy as np

from mixgraph.server._core import ffi, lib
from mixgraph.server.actions import Action, action
from mixgraph.server.errors import MixgraphError
from mixgraph.server.lv2 import info


@action("lv2", "preset", usage="/node/<name>/preset [<label-or-URI>]")
def preset(a: Action, args: list) -> None:
    """List the plugin's presets, or load one (by label or URI) into the parameters."""
    t = a.node.g.type
    presets = info(t)["presets"]
    if not args:
        a.done(len(presets), *[p["label"] for p in presets])
        return
    if len(args) != 1 or not isinstance(args[0], str):
        raise MixgraphError(f"usage: {a.spec.usage}")
    want = args[0]
    hit = next((p for p in presets if want in (p["uri"], p["label"])), None)
    if hit is None:
        hit = next((p for p in presets if p["label"].lower() == want.lower()), None)
    if hit is None:
        names = ", ".join(p["label"] for p in presets) or "none"
        raise MixgraphError(f"{a.name}: no preset {want!r} (presets: {names})")
    vals = np.full(max(len(t.params), 1), np.nan, np.float32)
    n = lib.mg_lv2_preset_values(t.ctype, hit["uri"].encode(),
                                 ffi.cast("float *", vals.ctypes.data), len(vals))
    if n < 0:
        raise MixgraphError(f"{a.name}: preset {hit['uri']} could not be read")
    for k, p in enumerate(t.params):
        if not math.isnan(float(vals[k])):
            a.set(p.name, float(vals[k]))
    a.done(hit["label"], int(n))
