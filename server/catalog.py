"""The node catalog, read from the C tables (the single source of truth)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._core import ffi, lib

MAP_NAMES = {lib.MG_MAP_LIN: "lin", lib.MG_MAP_DB: "db", lib.MG_MAP_LOG: "log"}
TAPER_NAMES = {
    lib.MG_TAPER_LIN: "linear",
    lib.MG_TAPER_LOG: "log",
    lib.MG_TAPER_FADER: "fader",
    lib.MG_TAPER_STEP: "stepped",
}


def _s(p) -> str:
    return ffi.string(p).decode() if p != ffi.NULL else ""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its unit, range, default, taper and smoothing time."""

    index: int
    name: str
    unit: str
    doc: str
    min: float
    max: float
    default: float
    map: str
    taper: str
    smooth_ms: float
    choices: tuple[str, ...] = ()  # stepped: the name of each step from min (C table)

    def choice_name(self, value: float) -> str:
        """The name of a stepped value ("low shelf"), "" if it has none."""
        k = int(round(value - self.min))
        return self.choices[k] if self.choices and 0 <= k < len(self.choices) else ""

    def choice_value(self, name: str) -> float | None:
        """The value a choice name stands for: exact, or ignoring case, spaces, `_` and
        inner hyphens ("low shelf", "LowShelf", "low_shelf"); None if it names none."""
        want = choice_key(name)
        for k, c in enumerate(self.choices):
            if c == name or choice_key(c) == want:
                return self.min + k
        return None


def choice_key(name: str) -> str:
    """A choice name as it is matched: lower case, no spaces, `_` or inner hyphens."""
    s = re.sub(r"[\s_]", "", name.lower())
    return s[:1] + s[1:].replace("-", "")


@dataclass(frozen=True)
class PortSpec:
    """One port; channels == 0 means the node's own channel count."""

    index: int
    name: str
    direction: str  # "in" or "out"
    channels: int

    def channel_count(self, node_channels: int) -> int:
        return self.channels or node_channels


@dataclass(frozen=True)
class ReadoutSpec:
    """A value the node publishes (meters, positions, counters)."""

    name: str
    unit: str
    map: str
    per_channel: bool


@dataclass(frozen=True)
class NodeType:
    """A node type as the C table declares it."""

    index: int
    name: str
    doc: str
    default_channels: int
    min_channels: int
    max_channels: int
    needs_fifo: bool
    params: tuple[ParamSpec, ...]
    ports: tuple[PortSpec, ...]
    readouts: tuple[ReadoutSpec, ...]
    param_index: dict[str, int] = field(default_factory=dict, compare=False)
    has_state: bool = False  # C restore hook: `capture` is state that patches keep
    # a type made at run time for one LV2 plugin (server/lv2.py): the plugin's URI
    # and its C type (mg_node_new_type); "" and None for the built-in types
    uri: str = field(default="", compare=False)
    ctype: object = field(default=None, compare=False, repr=False)

    def param(self, name: str) -> ParamSpec | None:
        i = self.param_index.get(name)
        return None if i is None else self.params[i]

    def port(self, name: str | None, direction: str) -> PortSpec | None:
        """A port by name; None (bare node name) gives the first port of that direction."""
        for p in self.ports:
            if p.direction == direction and (name is None or p.name == name):
                return p
        return None

    def describe(self) -> dict:
        """A plain-data description (for /catalog, docs and the CLI table)."""
        return {
            "name": self.name,
            "doc": self.doc,
            "channels": {
                "default": self.default_channels,
                "min": self.min_channels,
                "max": self.max_channels,
            },
            "ports": [
                {"name": p.name, "direction": p.direction, "channels": p.channels or "node"}
                for p in self.ports
            ],
            "params": [
                {
                    "name": p.name,
                    "unit": p.unit,
                    "min": p.min,
                    "max": p.max,
                    "default": p.default,
                    "taper": p.taper,
                    "smooth_ms": p.smooth_ms,
                    "doc": p.doc,
                    **({"choices": list(p.choices)} if p.choices else {}),
                }
                for p in self.params
            ],
            "readouts": [
                {"name": r.name, "unit": r.unit, "per_channel": r.per_channel}
                for r in self.readouts
            ],
        }


def _choices(t) -> dict[str, tuple[str, ...]]:
    """The stepped parameters' choice names of a C type, checked against its params:
    every entry names a stepped parameter and has one name per step, names are unique,
    and every stepped parameter has an entry (names NULL: an integer quantity)."""
    tname = _s(t.name)
    out: dict[str, tuple[str, ...]] = {}
    entries = [(_s(t.choices[k].param), t.choices[k].names) for k in range(t.n_choices)]
    # exact names by lookup, `#` patterns (eq's band#_type) by a regex each: an LV2
    # plugin has hundreds of parameters and choice entries, so no pairwise regex
    exact: dict[str, list] = {}
    wild: list[tuple[re.Pattern, str, object]] = []
    for key, names in entries:
        if "#" in key:
            wild.append((re.compile(re.escape(key).replace("\\#", "[0-9]+")), key, names))
        else:
            exact.setdefault(key, []).append(names)
    pnames = [_s(t.params[k].name) for k in range(t.n_params)]
    for k, name in enumerate(pnames):
        ps = t.params[k]
        hits = exact.get(name, []) + [names for rx, _, names in wild if rx.fullmatch(name)]
        if ps.taper != lib.MG_TAPER_STEP:
            if hits:
                raise RuntimeError(f"{tname}.{name}: choice names for a parameter that "
                                   "is not stepped")
            continue
        if len(hits) != 1:
            raise RuntimeError(f"{tname}.{name}: stepped, needs one mg_choice_spec "
                               f"(found {len(hits)})")
        if hits[0] == ffi.NULL:
            continue
        names = tuple(ffi.string(hits[0]).decode().split("|"))
        steps = int(round(float(ps.max) - float(ps.min))) + 1
        if len(names) != steps or len({choice_key(n) for n in names}) != steps:
            raise RuntimeError(f"{tname}.{name}: {steps} steps but choice names "
                               f"{'|'.join(names)}")
        out[name] = names
    known = set(pnames)
    for key in exact:
        if key not in known:
            raise RuntimeError(f"{tname}: choice names for {key!r}, which is no parameter")
    for rx, key, _ in wild:
        if not any(rx.fullmatch(n) for n in pnames):
            raise RuntimeError(f"{tname}: choice names for {key!r}, which is no parameter")
    return out


def from_c(i: int, t, uri: str = "") -> NodeType:
    """The NodeType of C type t (registry index i); a run-time type (an LV2
    plugin's) gives its URI and keeps t for mg_node_new_type."""
    choices = _choices(t)
    params = tuple(
        ParamSpec(
            k,
            _s(t.params[k].name),
            _s(t.params[k].unit),
            _s(t.params[k].doc),
            float(t.params[k].min),
            float(t.params[k].max),
            float(getattr(t.params[k], "def")),
            MAP_NAMES[t.params[k].map],
            TAPER_NAMES[t.params[k].taper],
            float(t.params[k].smooth_ms),
            choices.get(_s(t.params[k].name), ()),
        )
        for k in range(t.n_params)
    )
    ports = tuple(
        PortSpec(
            k,
            _s(t.ports[k].name),
            "in" if t.ports[k].dir == lib.MG_PORT_IN else "out",
            int(t.ports[k].channels),
        )
        for k in range(t.n_ports)
    )
    readouts = tuple(
        ReadoutSpec(
            _s(t.readouts[k].name),
            _s(t.readouts[k].unit),
            MAP_NAMES[t.readouts[k].map],
            bool(t.readouts[k].per_channel),
        )
        for k in range(t.n_readouts)
    )
    return NodeType(
        i,
        _s(t.name),
        _s(t.doc),
        int(t.default_channels),
        int(t.min_channels),
        int(t.max_channels),
        bool(t.needs_fifo),
        params,
        ports,
        readouts,
        {p.name: p.index for p in params},
        has_state=t.restore != ffi.NULL,
        uri=uri,
        ctype=t if uri else None,
    )


def _load() -> dict[str, NodeType]:
    types: dict[str, NodeType] = {}
    for i in range(lib.mg_type_count()):
        nt = from_c(i, lib.mg_type_get(i))
        types[nt.name] = nt
    return types


CATALOG: dict[str, NodeType] = _load()
