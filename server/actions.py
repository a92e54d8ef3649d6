"""Node actions: OSC commands on a node that are not parameters.

A parameter is a value the engine smooths; an action is something a node is
asked to *do*, which may take audio time and answer later: learn a noise
profile for two seconds, measure the offset of a channel against a
reference. Actions are plain Python on the control thread. They talk to the
audio thread only through the node's parameters (triggers), its readouts and
its C ``capture`` hook, so nothing here ever runs on the audio thread.

A node type's actions live in ``mixgraph.nodes.<type>`` (the module is
imported the first time the type's actions are looked up)::

    @action("denoise", "learn", usage="/node/<name>/learn <seconds>")
    def learn(a: Action, args: list) -> None:
        secs = a.number(args, 0, "seconds", lo=0.1, hi=30)
        a.set("learn", secs)
        a.after(secs, lambda: a.done(secs))

Every action ends in exactly one ``/done <address> ...`` or
``/fail <address> <reason>`` (the address names the node, as for every
/node/ command), possibly after audio time has passed.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._core import ffi, lib
from .errors import MixgraphError
from .values import number

if TYPE_CHECKING:  # the session hands itself in; no import at run time
    from .session import Session

log = logging.getLogger("mixgraph.actions")

Reply = Callable[[str, list], None]


@dataclass(frozen=True)
class ActionSpec:
    """One registered action: the function, its usage line and what it is for."""

    type_name: str
    name: str
    fn: Callable[[Action, list], None]
    usage: str
    doc: str
    triggers: tuple[str, ...] = ()  # parameters the action drives (not saved, not wildcarded)


_REGISTRY: dict[str, dict[str, ActionSpec]] = {}
_LOADED: set[str] = set()


def action(type_name: str, name: str, usage: str = "",
           triggers: tuple[str, ...] = ()) -> Callable:
    """Register fn(a: Action, args) as /node/<name>/<action> for nodes of a type.

    triggers: the node's parameters the action sets to start and stop its work
    (align's `capture`, denoise's `listen`): they are left out of saved patches
    and of wildcard sets, so loading a patch or `/node/x/* 0` never starts one."""

    def register(fn: Callable[[Action, list], None]) -> Callable[[Action, list], None]:
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        _REGISTRY.setdefault(type_name, {})[name] = ActionSpec(
            type_name, name, fn, usage or f"/node/<name>/{name}", doc, tuple(triggers))
        return fn

    return register


def actions_for(type_name: str) -> dict[str, ActionSpec]:
    """The actions of a node type (imports mixgraph.nodes.<type> once)."""
    if type_name not in _LOADED:
        _LOADED.add(type_name)
        module = f"mixgraph.nodes.{type_name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    return _REGISTRY.get(type_name, {})


STALL_S = 5.0  # wall-clock grace beyond the audio time an action asked for


def expire_actions(session: Session, now: float | None = None) -> int:
    """Fail actions whose audio never came: live, a stopped clock (a lost device)
    would otherwise leave them unanswered. Called by the daemon's control loop."""
    now = time.monotonic() if now is None else now
    n = 0
    for a in list(session.actions_running.values()):
        if not a.finished and now - a.started > a.audio_s + STALL_S:
            a.fail("no answer: the audio clock has not advanced (is the device running?)")
            n += 1
    return n


_TRIGGERS: dict[str, tuple[int, frozenset[str]]] = {}  # type -> (its actions, triggers)


def triggers_for(type_name: str) -> frozenset[str]:
    """Parameters of a node type that only its actions drive (kept per type: the
    autosave's snapshot asks for every node, four times a second while faders move)."""
    acts = actions_for(type_name)
    hit = _TRIGGERS.get(type_name)
    if hit is None or hit[0] != len(acts):
        hit = _TRIGGERS[type_name] = (len(acts), frozenset(
            t for a in acts.values() for t in a.triggers))
    return hit[1]


def is_action_or_trigger(type_name: str, name: str) -> bool:
    return name in actions_for(type_name) or name in triggers_for(type_name)


class Action:
    """One running action: its node, its reply path and helpers to finish it."""

    def __init__(self, session: Session, name: str, spec: ActionSpec, address: str,
                 reply: Reply, changed: Callable[[str, str, float], None] | None = None) -> None:
        self.session = session
        self._changed = changed
        self.name = name
        self.spec = spec
        self.address = address
        # a pattern dispatch collects immediate replies; later ones go to the sender
        self._reply = reply
        self._later = getattr(reply, "outer", None) or reply
        self.finished = False
        # wall-clock bound: audio seconds asked for so far, checked by expire()
        self.started = time.monotonic()
        self.audio_s = 0.0
        self._node = session.live[name]

    # ---- what the action works with -------------------------------------------
    @property
    def node(self):
        """The LiveNode; MixgraphError once the node has been removed."""
        if self._node.dead or self.session.live.get(self.name) is not self._node:
            raise MixgraphError(f"node {self.name!r} was removed")
        return self._node

    @property
    def rate(self) -> float:
        return self.session.engine.sample_rate

    def number(self, args: list, i: int, what: str, lo: float | None = None,
               hi: float | None = None, default: float | None = None) -> float:
        """Argument i as a finite number within lo..hi, else a clear error."""
        if i >= len(args):
            if default is not None:
                return default
            raise MixgraphError(f"usage: {self.spec.usage}")
        x = number(args[i], f"{self.name}/{self.spec.name} {what}")
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise MixgraphError(f"{what} must be within {lo:g}..{hi:g}, got {x:g}")
        return x

    def set(self, param: str, value: float) -> float:
        """Set a parameter of this node now; returns the value applied."""
        self.node  # noqa: B018 - raises when removed
        v = self.session.set_param(self.name, param, value)[0]
        if self._changed is not None:
            self._changed(self.name, param, v)  # subscribers hear about it
        return v

    def readout(self, what: str) -> list[float]:
        self.node  # noqa: B018
        return self.session.readout(self.name, what)

    def capture(self, n: int) -> np.ndarray:
        """Up to n floats the node captured (its C capture hook), as float32."""
        buf = np.zeros(max(int(n), 0), np.float32)
        got = lib.mg_node_capture(self.node.ptr, ffi.cast("float *", buf.ctypes.data), buf.size)
        if got < 0:
            raise MixgraphError(f"{self.name} ({self.spec.type_name}) captures nothing")
        return buf[:got]

    def after(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run fn on the control thread once `seconds` more audio has been processed."""
        self.audio_s += seconds
        due = self.session.engine.time + max(int(round(seconds * self.rate)), 1)

        def run() -> None:
            if self.finished:
                return
            try:
                self.node  # noqa: B018
                fn()
            except MixgraphError as e:
                self.fail(str(e))
            except Exception as e:  # a bug must not take the control thread down
                log.exception("action %s failed", self.address)
                self.fail(f"internal error: {e}")

        self.session.at(due, run)

    def when(self, ready: Callable[[], bool], then: Callable[[], None], after_s: float,
             give_up: Callable[[], None] | None = None, patience_s: float = 2.0) -> None:
        """After after_s of audio, look at ready() every 50 ms of audio and run then()
        once it is true. When patience_s more audio passes without it (the node is not
        in a running plan, or nothing reaches it), run give_up() and fail."""
        left = [int(patience_s / 0.05)]

        def look() -> None:
            if ready():
                then()
                return
            left[0] -= 1
            if left[0] < 0:
                if give_up is not None:
                    give_up()
                self.fail("no audio reached the node: is it connected and running?")
                return
            self.after(0.05, look)

        self.after(after_s, look)

    # ---- how it ends --------------------------------------------------------------
    def done(self, *values) -> None:
        """Reply /done <address> <values...> (once)."""
        self._finish("/done", [self.address, *values])

    def fail(self, reason: str) -> None:
        """Reply /fail <address> <reason> (once), like any failed /node/ command."""
        self._finish("/fail", [self.address, reason])

    def _finish(self, address: str, args: list) -> None:
        if self.finished:
            return
        self.finished = True
        try:
            (self._reply if self._immediate else self._later)(address, args)
        except Exception:  # a vanished client must not break the control loop
            log.exception("reply to %s failed", self.address)

    _immediate = True


def run_action(session: Session, name: str, spec: ActionSpec, address: str, args: list,
               reply: Reply, changed: Callable[[str, str, float], None] | None = None) -> None:
    """Start an action; MixgraphError raised before it is under way becomes the /fail.

    changed(node, param, value) is told of every parameter the action sets."""
    a = Action(session, name, spec, address, reply, changed)
    try:
        spec.fn(a, list(args))
    except BaseException:
        a.finished = True  # the dispatcher replies /fail; nothing scheduled may answer
        raise
    finally:
        a._immediate = False
    # the node restarted its work for this request: an earlier one still waiting
    # cannot finish with data that is not its own
    old = session.actions_running.get((name, spec.name))
    if old is not None and not old.finished:
        old.fail(f"superseded by a newer {spec.name} on {name}")
    session.actions_running[(name, spec.name)] = a
