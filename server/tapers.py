"""Published tapers: a parameter's value <-> a normalised 0..1 control position.

- "fader": a console fader law, piecewise linear in dB between breakpoints
  (the X32/most-consoles shape): 0 -> the parameter's minimum (silence),
  0.0625 -> -60 dB, 0.25 -> -30 dB, 0.5 -> -10 dB, 0.75 -> 0 dB (unity),
  1 -> the parameter's maximum. Breakpoints outside (min, max) are dropped.
- "log": log-linear between min and max (frequencies, times); linear when
  min <= 0.
- "linear": linear between min and max.
- "stepped": linear, then rounded to an integer (choices, switches).

fader_points(spec) gives the exact (norm, value) breakpoints published in
/catalog; everything here is pure arithmetic on ParamSpec fields."""

from __future__ import annotations

import math
from bisect import bisect_right
from functools import lru_cache

FADER_POINTS = ((0.0625, -60.0), (0.25, -30.0), (0.5, -10.0), (0.75, 0.0))


@lru_cache(maxsize=256)
def _fader(lo: float, hi: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pts = [(0.0, lo)] + [(n, d) for n, d in FADER_POINTS if lo < d < hi] + [(1.0, hi)]
    return tuple(p[0] for p in pts), tuple(p[1] for p in pts)


def fader_points(lo: float, hi: float) -> list[list[float]]:
    """The (norm, dB) breakpoints of the fader law for a range."""
    ns, ds = _fader(lo, hi)
    return [[n, d] for n, d in zip(ns, ds, strict=True)]


def _interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    i = min(max(bisect_right(xs, x) - 1, 0), len(xs) - 2)
    x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
    if x1 == x0:
        return y0
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def to_value(taper: str, lo: float, hi: float, norm: float) -> float:
    """The parameter value at control position norm (clamped to 0..1)."""
    n = min(max(float(norm), 0.0), 1.0)
    if hi <= lo:
        return lo
    if taper == "fader":
        ns, ds = _fader(lo, hi)
        return _interp(n, ns, ds)
    if taper == "log" and lo > 0:
        return lo * (hi / lo) ** n
    v = lo + (hi - lo) * n
    if taper == "stepped":
        v = float(round(v))
        v = min(max(v, math.ceil(lo)), math.floor(hi))
    return v


def to_norm(taper: str, lo: float, hi: float, value: float) -> float:
    """The control position (0..1) of a parameter value (clamped to its range)."""
    if hi <= lo:
        return 0.0
    v = min(max(float(value), lo), hi)
    if taper == "fader":
        ns, ds = _fader(lo, hi)
        return _interp(v, ds, ns)
    if taper == "log" and lo > 0:
        return math.log(v / lo) / math.log(hi / lo)
    return (v - lo) / (hi - lo)


def describe(taper: str, lo: float, hi: float) -> dict:
    """What /catalog publishes about a parameter's taper."""
    d: dict = {"taper": taper}
    if taper == "fader":
        d["points"] = fader_points(lo, hi)
    elif taper == "log" and lo <= 0:
        d["taper"] = "linear"
    return d
