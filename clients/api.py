"""The commands both clients offer, written once.

Each method builds (kind, address, args, post) and hands it to the client's
`_run`: the blocking Client runs it and returns the result, the AsyncClient
returns an awaitable. kind "call" raises MixgraphFail on /fail; "request"
returns whatever came back."""

from __future__ import annotations

from typing import Any

import msgpack

from .protocol import pairs


class MixgraphFail(Exception):
    """The server answered /fail.

    .address  the command's address (as sent)
    .keys     the arguments the server echoed to match the request (node name, ...)
    .reason   the readable reason
    .args     keys + [reason], as received"""

    def __init__(self, address: str, args: list) -> None:
        super().__init__(*args)
        self.address = address
        self.keys = list(args[:-1])
        self.reason = str(args[-1]) if args else ""

    def __str__(self) -> str:
        keys = " ".join(str(k) for k in self.keys)
        return f"{self.address}{' ' + keys if keys else ''}: {self.reason}"

    def __reduce__(self):
        return (MixgraphFail, (self.address, list(self.args)))

    @property
    def unknown_address(self) -> bool:
        """The server does not know this address (e.g. an older server)."""
        return self.reason.startswith("unknown address")


class MixgraphTimeout(TimeoutError):
    """No reply within the client's timeout."""


_NOT_FEEDBACK = ("/done", "/fail", "/synced")


def is_feedback(address: str) -> bool:
    """Messages a subscriber's callback gets: everything but command replies."""
    return address not in _NOT_FEEDBACK and not address.endswith(".reply")


def _settings(params: dict) -> list:
    out: list = []
    for k, v in params.items():
        out += [k, v]
    return out


def _value(addr: str, rargs: list):
    if addr == "/fail":
        raise MixgraphFail(rargs[0] if rargs else "", rargs[1:])
    return rargs[0] if len(rargs) == 1 else list(rargs)


def _first(r: list):
    return r[1] if len(r) > 1 else None


def _none(_r) -> None:
    return None


def _ident(r):
    return r


def _history(r: list) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {"undo": [], "redo": []}
    for i in range(2, len(r) - 2, 3):
        out["undo" if r[i] > 0 else "redo"].append((r[i + 1], r[i + 2]))
    return out


def _blob(r: list):
    return msgpack.unpackb(r[0], raw=False, strict_map_key=False)


class CommandsMixin:
    """High-level commands over `_run(kind, address, args, post)`."""

    def _run(self, kind: str, address: str, args: tuple, post,
             timeout: float | None = None):  # pragma: no cover
        raise NotImplementedError

    # ---- graph ------------------------------------------------------------------------
    def add(self, type: str, name: str, **params: Any):
        """Create a node: add("eq", "q", channels=2, freq=1000.0). Returns its name."""
        return self._run("call", "/graph/add", (type, name, *_settings(params)), _first)

    def remove(self, name: str):
        return self._run("call", "/graph/remove", (name,), _none)

    def connect(self, src: str, dst: str):
        """connect("osc", "g") or with ports: connect("g:out", "m:in")."""
        return self._run("call", "/graph/connect", (src, dst), _none)

    def disconnect(self, src: str, dst: str):
        return self._run("call", "/graph/disconnect", (src, dst), _none)

    def clear(self):
        return self._run("call", "/graph/clear", (), _none)

    def dump(self):
        """The whole graph: the patch document (dict) decoded from /graph/dump's msgpack."""
        return self._run("call", "/graph/dump", (), _blob)

    def catalog(self):
        """Every node type with ports, parameters (unit, min, max, default, taper) and
        readouts, decoded from /catalog's msgpack."""
        return self._run("call", "/catalog", (), _blob)

    # ---- parameters ----------------------------------------------------------------------
    def set(self, name: str, param: str, value):
        """Set a parameter in its units (dB, Hz, ms, ...); returns the value applied
        (clamped to the range)."""
        return self._run("call", f"/node/{name}/{param}", (value,), _first)

    def action(self, name: str, action: str, *args: Any, timeout: float = 30.0):
        """Run a node action, e.g. ``action("al", "measure", 2.0)`` or
        ``action("dn", "learn", 1.5)``: sent once (an action is not safe to
        repeat), waits up to `timeout` s for its /done and returns the values
        after the address; /fail raises MixgraphFail with the reason."""
        return self._run("action", f"/node/{name}/{action}", args, lambda r: list(r[1:]),
                         timeout=timeout)

    def get(self, name: str, param: str):
        """A parameter's value, or a readout (a list for per-channel readouts)."""
        return self._run("request", f"/node/{name}/{param}", (), _value)

    def set_norm(self, name: str, param: str, norm: float):
        """Set a parameter on its published 0..1 taper (what a TouchOSC control sends)."""
        return self._run("call", f"/node/{name}/{param}/norm", (float(norm),), _first)

    def get_norm(self, name: str, param: str):
        return self._run("request", f"/node/{name}/{param}/norm", (), _value)

    def touch(self, name: str, param: str, held: bool = True):
        """Hold a control (changes by others are held back) or release it."""
        return self._run("call", f"/node/{name}/{param}/touch", (1 if held else 0,), _none)

    def bypass(self, name: str, on: bool = True):
        return self._run("call", f"/node/{name}/bypass", (1 if on else 0,), _none)

    # ---- server -----------------------------------------------------------------------------
    def status(self):
        """/status as a dict: sample_rate, block, nodes, load, xruns, clients, ..."""
        return self._run("call", "/status", (), pairs)

    def info(self):
        return self._run("call", "/info", (), pairs)

    def sync(self, token: int = 1):
        """Returns once everything sent before has taken effect in the engine."""
        return self._run("call", "/sync", (int(token),), lambda r: r[0])

    def patch_save(self, name: str):
        return self._run("call", "/patch/save", (name,), _none)

    def patch_load(self, name: str):
        return self._run("call", "/patch/load", (name,), _none)

    # ---- undo and redo ------------------------------------------------------------------
    def undo(self, steps: int = 1):
        """Undo the newest `steps` steps (all or none: MixgraphFail with the reason,
        e.g. nothing to undo); returns their labels, newest first (the first 16)."""
        return self._run("call", "/undo", (int(steps),), lambda r: list(r[2:]))

    def redo(self, steps: int = 1):
        """Redo the last `steps` undone steps; returns their labels."""
        return self._run("call", "/redo", (int(steps),), lambda r: list(r[2:]))

    def history(self, count: int = 20):
        """The server's history: {"undo": [(label, what it did), ...] newest first,
        "redo": [...] next first} (at most `count` of each)."""
        return self._run("call", "/history", (int(count),), _history)

    def patch_list(self):
        return self._run("call", "/patch/list", (), _ident)

    def meters_subscribe(self, pattern: str, rate_hz: float = 30.0):
        """Ask for meter messages of the nodes matching `pattern` at `rate_hz`
        (they arrive through subscribe()/on_message() callbacks)."""
        return self._run("call", "/meters/subscribe", (pattern, float(rate_hz)), _ident)

    def meters_unsubscribe(self, pattern: str | None = None):
        """Stop this client's meter streams: one pattern as given to meters_subscribe(),
        or all of them (no pattern). A pattern it does not hold fails."""
        args = () if pattern is None else (pattern,)
        return self._run("call", "/meters/unsubscribe", args, _ident)

    def reply_port(self, port: int):
        """Ask the server to send replies and feedback to this UDP port instead."""
        return self._run("call", "/reply-port", (int(port),), _ident)

    # ---- show: ramps, scenes, safes, cues, undo (docs/protocol.md) ---------------------
    def ramp(self, name: str, param: str, target: float, seconds: float,
             curve: str = "linear"):
        """Move a parameter to target over seconds in the engine, along its taper
        (curve linear, scurve or exp); returns [target, seconds, curve]."""
        return self._run("call", f"/node/{name}/{param}/ramp",
                         (float(target), float(seconds), curve), lambda r: list(r[1:]))

    def scene_store(self, name: str, *patterns: str):
        """Store the current values (of what the patterns match) as a scene; returns
        how many values it holds."""
        return self._run("call", "/scene/store", (name, *patterns), lambda r: r[2])

    def scene_recall(self, name: str, fade: float | None = None):
        """Start recalling a scene (fade in seconds; None: the scene's own). Returns
        what it skipped (a string) or None."""
        args = (name,) if fade is None else (name, float(fade))
        return self._run("call", "/scene/recall", args, lambda r: r[2] if len(r) > 2 else None)

    def scene_morph(self, a: str, b: str, x: float):
        """Set every parameter in both scenes to the point x (0..1) between them."""
        return self._run("call", "/scene/morph", (a, b, float(x)), lambda r: r[-1])

    def scene_fade(self, name: str, seconds: float, curve: str | None = None):
        args = (name, float(seconds)) + ((curve,) if curve else ())
        return self._run("call", "/scene/fade", args, _none)

    def scene_delete(self, name: str):
        return self._run("call", "/scene/delete", (name,), _none)

    def scene_rename(self, old: str, new: str):
        return self._run("call", "/scene/rename", (old, new), _none)

    def scene_safe(self, pattern: str, on: bool = True):
        """Mark (or unmark) what an address pattern matches as recall safe."""
        return self._run("call", "/scene/safe", (pattern, 1 if on else 0), _none)

    def cue_set(self, number: float, osc: list[str] | None = None, **keys: Any):
        """Create or edit a cue: cue_set(2, name="Half", scene="half", fade=5,
        continue_="auto-follow", osc=["/node/fx/mix 0.3"]). Returns its text line."""
        args: list = []
        for k, v in keys.items():
            args += [k.rstrip("_"), v]
        for m in osc or []:
            args += ["osc", m]
        return self._run("call", "/cue/set", (number, *args), lambda r: r[2])

    def cue_go(self):
        """GO: fire the cue at the playhead; returns [number, name]."""
        return self._run("call", "/cue/go", (), lambda r: list(r[1:]))

    def cue_standby(self, number: float):
        return self._run("call", "/cue/standby", (number,), lambda r: list(r[1:]))

    def cue_stop(self):
        return self._run("call", "/cue/stop", (), lambda r: r[1])

    def cue_delete(self, number: float):
        return self._run("call", "/cue/delete", (number,), _none)

    def cue_load(self, file_name: str):
        """Replace the cue list with a text file in the server's state directory."""
        return self._run("call", "/cue/load", (file_name,), lambda r: r[2])
