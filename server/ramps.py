"""Ramps: one parameter moved by the engine along its taper (control thread).

A ramp is one command to the C engine (MG_CMD_RAMP, csrc/mg_taper.h): the
parameter moves from where it is to a target over a number of samples, in
*taper position* (fader position for a fader, log frequency for a log
taper), shaped by a curve: `linear` in position, `scurve` (smoothstep) or
`exp` ((e^4t - 1)/(e^4 - 1), slow then fast). The taper is evaluated on the
audio thread at every sample with the formulas of server/tapers.py, so a
ramp is sample-accurate and renders offline exactly as it plays live. A new
set or ramp of the same parameter takes over from where the ramp has got to.

Scenes, morphs and cues (server/scenes.py, server/cues.py) use ramp() too.
The model (queries, the autosave) holds a ramp's target from its start;
stop() pins a parameter where its ramp has got to."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._core import lib
from .errors import MixgraphError
from .values import number, param_value

if TYPE_CHECKING:
    from .live import LiveNode
    from .session import Session

CURVES = {"linear": lib.MG_CURVE_LINEAR, "scurve": lib.MG_CURVE_SCURVE, "exp": lib.MG_CURVE_EXP}
MAX_SECONDS = 3600.0  # a fade, ramp or wait longer than an hour is refused


def seconds(value, what: str) -> float:
    """A duration in seconds: finite, 0..1 hour; else MixgraphError."""
    v = number(value, what)
    if not 0.0 <= v <= MAX_SECONDS:
        raise MixgraphError(f"{what}: {v:g} s is outside 0..{MAX_SECONDS:g} s")
    return v


def curve_code(name, what: str = "curve") -> int:
    """The engine's code of a curve name (linear, scurve, exp)."""
    if not isinstance(name, str) or name not in CURVES:
        raise MixgraphError(f"{what}: expected one of {', '.join(CURVES)}, got {str(name)[:32]!r}")
    return CURVES[name]


def ramp(session: Session, name: str, param: str, target, secs: float, curve: str = "linear",
         time: int = 0) -> float:
    """Start a ramp of name/param to target (its units) over secs, at sample time
    `time` (0: the next block). A stepped parameter, or 0 s, is simply set.
    Returns the target applied (clamped to the range)."""
    node = session.live.get(name)
    if node is None:
        raise MixgraphError(f"no node named {name!r}")
    spec = node.g.type.param(param)
    if spec is None:
        raise MixgraphError(f"{name} ({node.g.type.name}) has no parameter {param!r}")
    code = curve_code(curve)
    v, _ = param_value(node.g.type, name, param, target)
    frames = int(round(secs * session.engine.sample_rate))
    if frames <= 0 or spec.taper == "stepped" or not node.published:
        session.set_param(name, param, v, time)
        return v
    start(session, node, spec, v, frames, code, time)
    return v


def start(session: Session, node: LiveNode, spec, v: float, frames: int, code: int,
          time: int = 0) -> None:
    """Push a checked ramp (v in range, frames > 0, node published, continuous) and
    record its target: the part of ramp() a scene recall shares."""
    param = spec.name
    session.engine.push_ramp(node.ptr, spec.index, v, frames, code, time)
    _record_at(session, node, param, v, time)
    if node.g.type.name == "vca":  # its members' offsets ramp with it
        for m, want in _vca_offsets(session, node.g.name, v).items():
            mn = session.live.get(m)
            if mn is not None and mn.published and mn.g.params.get("vca") != want:
                session.engine.push_ramp(mn.ptr, mn.g.type.param("vca").index, want, frames,
                                         code, time)
                _record_at(session, mn, "vca", want, time)


def _vca_offsets(session: Session, name: str, level: float) -> dict[str, float]:
    """Each member fader's `vca` offset once VCA `name` is at `level`."""
    offsets: dict[str, float] = {}
    for v, node in session.live.items():
        if node.g.type.name != "vca":
            continue
        lvl = level if v == name else node.g.params["level"]
        for m in node.g.options.get("members", "").split(","):
            if m:
                offsets[m] = offsets.get(m, 0.0) + lvl
    return offsets


def _record_at(session: Session, node: LiveNode, param: str, v: float, time: int) -> None:
    if time and session.will_defer(node, time):
        session.at(time, lambda: _record(session, node, param, v))
    else:
        _record(session, node, param, v)


def _record(session: Session, node: LiveNode, param: str, v: float) -> None:
    if session.live.get(node.g.name) is node:
        session._record(node, param, v)


def now(session: Session, name: str, param: str) -> float:
    """A parameter's value at this moment in the engine (a ramp's current point)."""
    node = session.live[name]
    spec = node.g.type.param(param)
    if not node.published:
        return node.g.params[param]
    v = float(lib.mg_node_param_now(node.ptr, spec.index))
    return v if math.isfinite(v) else node.g.params[param]


def stop(session: Session, name: str, param: str) -> float:
    """Pin a parameter where it is now (a ramp under way stops there)."""
    v = now(session, name, param)
    session.set_param(name, param, v)
    return v


def check_args(name: str, param: str, args: list) -> tuple[float, str]:
    """The checks of a ramp's arguments (target, seconds, curve) that a bundle runs
    before applying any of its messages; (seconds, curve)."""
    if len(args) not in (2, 3):
        raise MixgraphError("usage: /node/<name>/<param>/ramp <target> <seconds> "
                            "[linear|scurve|exp]")
    if not isinstance(args[0], str):
        number(args[0], f"{name}/{param}/ramp target")
    secs = seconds(args[1], f"{name}/{param}/ramp seconds")
    curve = args[2] if len(args) == 3 else "linear"
    curve_code(curve)
    return secs, curve


def osc_ramp(session: Session, name: str, param: str, args: list, time: int = 0) -> list:
    """`/node/<name>/<param>/ramp <target> <seconds> [linear|scurve|exp]`: the
    reply's arguments after the address (target applied, seconds, curve)."""
    secs, curve = check_args(name, param, args)
    v = ramp(session, name, param, args[0], secs, curve, time)
    return [float(v), float(secs), curve]
