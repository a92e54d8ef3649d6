"""The one validator: every value entering the server (an OSC argument, a CLI
option, a field of a patch document read from a file) is checked here, against
the catalog's types and ranges, before it changes anything.

Parameters are numbers in their declared range (a finite value outside it is
clamped, and the reply says so). Creation options each have a declared kind
and range (OPTIONS below): strings are str of bounded length, numbers are
finite and in range, anything else (a blob, a timetag, a nested list, NaN, an
integer past 64 bits) is a MixgraphError naming the option and what it
expected. Values are returned normalised (whole numbers as int, a format in
lower case, VCA members as "a,b"), so what the model keeps, the autosave
writes and a reload compares is always plain, encodable data."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .catalog import NodeType, ParamSpec
from .errors import MixgraphError
from .graph import GNode, check_name
from .lv2 import check_state, group_of, is_placeholder, lv2_type, port_layout

INT64_MIN, UINT64_MAX = -(1 << 63), (1 << 64) - 1
MAX_HW_CHANNEL = 256  # the engine's limit on hardware channels (mg_engine_new)
MAX_PATH = 1024  # characters of a player/recorder path
MAX_MEMBERS = 256  # faders one VCA may lead
MAX_TEXT = 4096  # characters of any other string (metadata)
RECORDER_FORMATS = ("wav", "flac")


def _show(value) -> str:
    """A short, readable rendering of an offending value for a /fail reason."""
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _kind(value) -> str:
    if isinstance(value, tuple) and len(value) == 2 and type(value[0]).__name__ == "datetime":
        return "an OSC timetag"
    if isinstance(value, bytes | bytearray):
        return "a blob"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nil"
    return type(value).__name__


def number(value, what: str) -> float:
    """A finite number from an OSC argument or a document (int, float, bool); else a
    clear error. Integers past 64 bits are refused (no OSC type carries them)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int):
        if not INT64_MIN <= value <= UINT64_MAX:
            raise MixgraphError(f"{what}: {_show(value)} is too large (64-bit numbers only)")
        return float(value)
    if not isinstance(value, float):
        raise MixgraphError(f"{what}: expected a number, got {_kind(value)} {_show(value)}")
    if not math.isfinite(value):
        raise MixgraphError(f"{what}: {value!r} is not a finite number")
    return value


def in_range(value, what: str, lo: float, hi: float) -> float:
    """A finite number within lo..hi (a command-line option, a setting)."""
    v = number(value, what)
    if not lo <= v <= hi:
        raise MixgraphError(f"{what}: expected {lo:g}..{hi:g}, got {_show(value)}")
    return v


def choice_or_number(spec: ParamSpec, value, what: str) -> float:
    """A parameter value from the network: a number, or for a stepped parameter the
    name of one of its choices ("low shelf" for an EQ band type)."""
    if isinstance(value, str) and spec.choices:
        v = spec.choice_value(value)
        if v is None:
            names = ", ".join(f"{int(spec.min) + k} {c}" for k, c in enumerate(spec.choices))
            raise MixgraphError(f"{what}: {value!r} is none of its choices ({names})")
        return v
    return number(value, what)


def whole(value, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number (2 and 2.0 are fine, 2.5 is not), within lo..hi when given."""
    if isinstance(value, int) and not isinstance(value, bool):
        number(value, what)  # the 64-bit check
        v = value
    else:
        x = number(value, what)
        if x != int(x):
            raise MixgraphError(f"{what}: expected a whole number, got {_show(value)}")
        v = int(x)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise MixgraphError(f"{what}: expected a whole number in {lo}..{hi}, got {_show(value)}")
    return v


def text(value, what: str, max_len: int = MAX_TEXT) -> str:
    """A string of 1..max_len characters without NUL."""
    if not isinstance(value, str):
        raise MixgraphError(f"{what}: expected a string, got {_kind(value)} {_show(value)}")
    if not 1 <= len(value) <= max_len or "\0" in value:
        raise MixgraphError(f"{what}: expected 1..{max_len} characters without NUL, "
                            f"got {len(value)}")
    return value


# ---- creation options ------------------------------------------------------------
def _channels(t: NodeType, v, what: str):
    if v is None and t.needs_fifo:
        return None  # a player takes its file's channel count
    return whole(v, what, t.min_channels, t.max_channels)


def _first(t: NodeType, v, what: str) -> int:
    first = whole(v, what)
    if not 1 <= first <= MAX_HW_CHANNEL:
        raise MixgraphError(f"{what}: hardware channels count from 1 to {MAX_HW_CHANNEL}, "
                            f"not {_show(v)}")
    return first


def _seed(t: NodeType, v, what: str) -> int:
    return whole(v, what, INT64_MIN, UINT64_MAX) & UINT64_MAX


def _path(t: NodeType, v, what: str) -> str:
    return text(v, what, MAX_PATH)


def _format(t: NodeType, v, what: str) -> str:
    f = text(v, what, 8).lower()
    if f not in RECORDER_FORMATS:
        raise MixgraphError(f"{what}: expected one of {', '.join(RECORDER_FORMATS)}, "
                            f"got {_show(v)}")
    return f


def _members(t: NodeType, v, what: str) -> str:
    if isinstance(v, str):
        text(v, what, MAX_MEMBERS * 65)
        names = [m.strip() for m in v.split(",") if m.strip()]
    elif isinstance(v, list | tuple) and all(isinstance(m, str) for m in v):
        names = [m.strip() for m in v if m.strip()]
    else:
        raise MixgraphError(f"{what}: expected a comma-separated list of fader names, "
                            f"got {_kind(v)} {_show(v)}")
    if len(names) > MAX_MEMBERS:
        raise MixgraphError(f"{what}: at most {MAX_MEMBERS} members, got {len(names)}")
    for m in names:
        check_name(m)
    return ",".join(names)




@dataclass(frozen=True)
class Option:
    """A creation option: what it expects (for the catalog and errors) and its check."""

    name: str
    expects: str
    check: object  # (NodeType, value, what) -> normalised value
    types: frozenset[str] | None = None  # the built-in types that take it; None: all

    def takes(self, t: NodeType) -> bool:
        """Whether nodes of type `t` take this option (a plugin's type is named lv2 too)."""
        return self.types is None or t.name in self.types


_LV2 = frozenset({"lv2"})
OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("channels", "a whole number within the type's channel range", _channels),
    Option("first", f"the first hardware channel, 1..{MAX_HW_CHANNEL}", _first,
           frozenset({"input", "output"})),
    Option("seed", "a 64-bit whole number", _seed, frozenset({"noise", "dither"})),
    Option("path", f"a file path of 1..{MAX_PATH} characters", _path,
           frozenset({"player", "recorder"})),
    Option("format", f"a recorder format: {', '.join(RECORDER_FORMATS)}", _format,
           frozenset({"recorder"})),
    Option("members", f"up to {MAX_MEMBERS} fader names, comma-separated", _members,
           frozenset({"vca"})),
    Option("uri", "an lv2 node's plugin URI (`mixgraph lv2 list`)",
           lambda t, v, what: text(v, what, MAX_PATH), _LV2),
    Option("ports", "an lv2 node's audio ports, `in1,in2>out1,out2` (kept by itself)",
           lambda t, v, what: text(v, what, MAX_PATH), _LV2),
    Option("allow_non_rt", "1: run an lv2 plugin that is not hard real-time capable",
           lambda t, v, what: whole(v, what, 0, 1), _LV2),
    Option("group", "lv2: 1 (default) the plugin's main audio ports as one port `in` and one "
           "`out` of several channels, 0 one mono port per LV2 port",
           lambda t, v, what: whole(v, what, 0, 1), _LV2),
)}


def options_of(t: NodeType) -> list[str]:
    """The creation options nodes of type `t` take (for errors and the catalog)."""
    return [o.name for o in OPTIONS.values() if o.takes(t)]


def option(t: NodeType, node: str, key: str, value):
    """One creation option, checked and normalised."""
    spec = OPTIONS.get(key) if isinstance(key, str) else None
    if spec is None or not spec.takes(t):
        raise MixgraphError(f"{node}: {t.name} has no option {_show(key)} "
                            f"(options: {', '.join(options_of(t))})")
    return spec.check(t, value, f"{node}: option {key}")  # type: ignore[operator]


def param_value(t: NodeType, node: str, key: str, value) -> tuple[float, bool]:
    """A parameter value: (value clamped to its range, was it clamped?)."""
    spec = t.param(key) if isinstance(key, str) else None
    if spec is None:
        known = sorted([p.name for p in t.params] + options_of(t))
        raise MixgraphError(f"{node}: {t.name} has no parameter or option {_show(key)} "
                            f"(known: {', '.join(known)})")
    x = choice_or_number(spec, value, f"{node}/{key}")
    v = step_value(spec, min(max(x, spec.min), spec.max))
    return v, v != x


def step_value(spec: ParamSpec, v: float) -> float:
    """An in-range value of a stepped parameter (a switch, a choice) rounded to the
    nearest step, halves up (0.37 -> 0, 0.5 -> 1: the nodes read a switch as on from
    0.5): a switch is on or off, never a value a node would smooth through or read
    half on; other parameters are returned as they are. Every way in (OSC, a score,
    a patch, HTTP, a ramp) goes through param_value, so all agree."""
    if spec.taper != "stepped":
        return v
    return float(min(max(math.floor(v + 0.5), math.ceil(spec.min)), math.floor(spec.max)))


@dataclass
class Creation:
    """What /graph/add (or a patch) gives a new node, checked against its type."""

    options: dict  # creation options kept in the model (all but channels), normalised
    params: dict[str, float]  # parameter values, clamped to their ranges
    clamped: list[str]  # parameters whose value was outside the range
    channels: int | None  # None: the type's default (or a player's file)
    first: int  # first hardware channel, from 0
    seed: int  # 64-bit generator seed
    type: NodeType  # the node's type: an lv2 node's is its plugin's (server/lv2.py)
    missing: dict = field(default_factory=dict)  # {name: why} when a stand-in is made


def creation_settings(t: NodeType, name: str, settings: Mapping) -> Creation:
    """Split and check a new node's name and settings (creation options and
    parameter values) against its type, before anything is created."""
    check_name(name)
    if not isinstance(settings, Mapping):
        raise MixgraphError(f"{name}: settings must be a map")
    t = lv2_type(t, settings, OPTIONS)
    options: dict = {}
    params: dict[str, float] = {}
    clamped = []
    for k, v in settings.items():
        if isinstance(k, str) and k in OPTIONS:
            options[k] = option(t, name, k, v)
        else:
            params[k], was = param_value(t, name, k, v)
            if was:
                clamped.append(k)
    channels = options.pop("channels", None)
    missing = {}
    if t.uri:  # an lv2 node: its port layout is kept, for a stand-in where it is missing
        options["group"] = group_of(settings)
        options["ports"] = port_layout(t)
        if is_placeholder(t):
            missing[name] = t.doc
    if t.needs_fifo and "path" not in options:
        raise MixgraphError(f"{name}: {t.name} needs a `path` option")
    return Creation(options, params, clamped, channels, options.get("first", 1) - 1,
                    options.get("seed", 1), t, missing)


def vca_members(vca: str, members, nodes: Mapping[str, GNode],
                missing_ok: bool = False) -> list[str]:
    """Member names of a VCA (a comma-separated string or a list): nodes in
    nodes that have a `vca` parameter (faders); else a clear error. A VCA keeps
    the name of a member that was removed (a node of that name added again is a
    member again; undo of the removal needs nothing more), so a document may name
    members that do not exist (`missing_ok`); a new VCA may not."""
    names = [m for m in _members(None, members, f"{vca}: members").split(",") if m]
    for m in names:
        g = nodes.get(m)
        if g is None and missing_ok:
            continue
        if g is None:
            raise MixgraphError(f"{vca}: no member node named {m!r}")
        if g.type.param("vca") is None:
            raise MixgraphError(f"{vca}: {m} ({g.type.name}) cannot be a VCA member")
    return names


# ---- patch documents ------------------------------------------------------------------
MAX_DEPTH = 8  # nesting of metadata values


def plain(value, what: str, depth: int = 0):
    """Plain data for a document's metadata: None, bool, 64-bit int, finite float,
    bounded str, and lists/maps (str keys) of those, at most MAX_DEPTH deep."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        number(value, what)
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise MixgraphError(f"{what}: strings hold at most {MAX_TEXT} characters")
        return value
    if depth >= MAX_DEPTH:
        raise MixgraphError(f"{what}: nested deeper than {MAX_DEPTH}")
    if isinstance(value, list):
        return [plain(x, what, depth + 1) for x in value]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise MixgraphError(f"{what}: map keys must be strings, got {_show(k)}")
        return {k: plain(v, f"{what}.{k}", depth + 1) for k, v in value.items()}
    raise MixgraphError(f"{what}: {_kind(value)} is not plain data")


def doc_node(n, types: Mapping[str, NodeType], state_max: int) -> tuple[NodeType, dict]:
    """One node entry of a patch document, checked completely and normalised:
    (its type, {name, type, channels, options, params, bypass[, state]})."""
    if not isinstance(n, dict) or not isinstance(n.get("name"), str):
        raise MixgraphError(f"patch: bad node entry {_show(n)}")
    name = n["name"]
    tn = n.get("type")
    t = types.get(tn) if isinstance(tn, str) else None
    if t is None:
        raise MixgraphError(f"patch: node {name!r} has unknown type {_show(tn)}")
    opts = n.get("options") or {}
    params = n.get("params") or {}
    if not isinstance(opts, dict) or not isinstance(params, dict):
        raise MixgraphError(f"patch: node {name!r}: options/params must be maps")
    t = lv2_type(t, {**params, **opts}, OPTIONS)  # an lv2 node's type is its plugin's
    if any(k == "channels" for k in opts):
        raise MixgraphError(f"patch: node {name!r}: channels is not an option here")
    # a patch saved before options were checked per type may carry one its type never
    # used (a `seed` on a gain): it had no effect, so it is dropped, not the whole patch
    opts = {k: v for k, v in opts.items()
            if not (isinstance(k, str) and k in OPTIONS and not OPTIONS[k].takes(t))}
    for k in params:
        if not isinstance(k, str) or t.param(k) is None:
            raise MixgraphError(f"patch: {name} ({t.name}) has no parameter {_show(k)}")
    ch = n.get("channels", t.default_channels)
    if isinstance(ch, bool):  # true is not 1 channel in a document (whole() takes it)
        raise MixgraphError(f"patch: node {name!r}: channels must be a whole number, "
                            f"not {str(ch).lower()}")
    c = creation_settings(t, name, {**opts, "channels": ch, **params})
    bypass = n.get("bypass", False)
    if not isinstance(bypass, bool | int) or bypass not in (0, 1):
        raise MixgraphError(f"patch: node {name!r}: bypass must be true or false")
    out = {"name": name, "type": t.name, "channels": c.channels, "options": c.options,
           "params": c.params, "bypass": bool(bypass)}
    state = n.get("state")
    if state is not None:
        if not isinstance(state, list) or len(state) > state_max:
            raise MixgraphError(f"patch: {name}: state must be a list of at most "
                                f"{state_max} numbers")
        state = [number(x, f"patch: {name}: state") for x in state]
        if state:
            out["state"] = state
    if n.get("lv2_state") is not None:  # an LV2 plugin's own state (server/lv2.py)
        out["lv2_state"] = check_state(n["lv2_state"], f"patch: {name}")
    return t, out


def has_control(text: str) -> bool:
    """Whether text holds a control character (C0, DEL or C1): a newline or an escape in
    a scene or cue name broke the one-line forms (/cue/list, /scene/list) and a
    terminal's log."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text)
