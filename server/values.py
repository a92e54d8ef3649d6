"""Numbers from the network: the checks every layer applies to an incoming value
(an OSC argument, a CLI option, a field of a patch document) before it changes
anything."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .catalog import NodeType, ParamSpec
from .errors import MixgraphError
from .graph import GNode


def number(value, what: str) -> float:
    """A finite number from an OSC argument (int, float, bool); else a clear error."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float):
        raise MixgraphError(f"{what}: expected a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise MixgraphError(f"{what}: {value!r} is not a finite number")
    return v


def param_value(spec: ParamSpec, value, what: str) -> float:
    """A parameter value from the network: a number, or for a stepped parameter the
    name of one of its choices ("low shelf" for an EQ band type)."""
    if isinstance(value, str) and spec.choices:
        v = spec.choice_value(value)
        if v is None:
            names = ", ".join(f"{int(spec.min) + k} {c}" for k, c in enumerate(spec.choices))
            raise MixgraphError(f"{what}: {value!r} is none of its choices ({names})")
        return v
    return number(value, what)


def whole(value, what: str) -> int:
    """A whole number from an OSC argument (2 and 2.0 are fine, 2.5 is not)."""
    v = number(value, what)
    if v != int(v):
        raise MixgraphError(f"{what}: expected a whole number, got {value!r}")
    return int(v)


# creation options: everything else given to /graph/add must be a parameter
OPTIONS = {"channels", "first", "seed", "path", "format", "members"}
MAX_HW_CHANNEL = 256  # the engine's limit on hardware channels (mg_engine_new)


@dataclass
class Creation:
    """What /graph/add (or a patch) gives a new node, checked against its type."""

    options: dict  # creation options kept in the model (all but channels)
    params: dict[str, float]  # parameter values, clamped to their ranges
    clamped: list[str]  # parameters whose value was outside the range
    channels: int | None  # None: the type's default (or a player's file)
    first: int  # first hardware channel, from 0
    seed: int  # 64-bit generator seed


def creation_settings(t: NodeType, name: str, settings: dict) -> Creation:
    """Split and check a new node's settings (creation options and parameter
    values) against its type, before anything is created."""
    settings = dict(settings)
    options = {k: settings.pop(k) for k in list(settings) if k in OPTIONS}
    params: dict[str, float] = {}
    clamped = []
    for k, v in settings.items():
        spec = t.param(k)
        if spec is None:
            known = sorted([p.name for p in t.params] + list(OPTIONS))
            raise MixgraphError(
                f"{t.name} has no parameter or option {k!r} (known: {', '.join(known)})"
            )
        x = param_value(spec, v, f"{name}/{k}")
        params[k] = min(max(x, spec.min), spec.max)
        if params[k] != x:
            clamped.append(k)
    channels = options.pop("channels", None)
    if channels is not None:
        channels = whole(channels, "channels")
    first = whole(options.get("first", 1), "first")
    if not 1 <= first <= MAX_HW_CHANNEL:
        raise MixgraphError(f"first: hardware channels count from 1 to {MAX_HW_CHANNEL}, "
                            f"not {first}")
    seed = whole(options.get("seed", 1), "seed") & 0xFFFFFFFFFFFFFFFF
    return Creation(options, params, clamped, channels, first - 1, seed)


def vca_members(vca: str, members, nodes: Mapping[str, GNode]) -> list[str]:
    """Member names of a VCA (a comma-separated string or a list): nodes in
    nodes that have a `vca` parameter (faders); else a clear error."""
    if isinstance(members, str):
        names = [m.strip() for m in members.split(",") if m.strip()]
    elif isinstance(members, list | tuple):
        names = [str(m).strip() for m in members if str(m).strip()]
    else:
        raise MixgraphError(f"{vca}: members must be a comma-separated list of fader names")
    for m in names:
        g = nodes.get(m)
        if g is None:
            raise MixgraphError(f"{vca}: no member node named {m!r}")
        if g.type.param("vca") is None:
            raise MixgraphError(f"{vca}: {m} ({g.type.name}) cannot be a VCA member")
    return names
