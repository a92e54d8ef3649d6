"""Scenes, morphs and recall safes (control thread).

A scene is a named set of parameter values and bypass states of the graph's
nodes, with a scope (the address patterns it was stored with; none: every
parameter), a fade time and a curve. The show (scenes, safes, the cue list of
server/cues.py, its playhead) lives at `session.show` (show_of), is saved in
the patch document (`show`, patch version 2) and journaled as one `show_part`
record per change (Show.part: only the scenes the change touched, with the
safes, cues and playhead), so a SIGKILL and restart brings it back.

Recall with a fade: every continuous parameter moves from where it is to the
scene's value as an engine ramp along its taper (server/ramps.py), with the
scene's curve (`linear` or `scurve` in taper position). Stepped and switched
parameters (choices, mute, polarity) and bypass switch when the fade starts,
except a switch that cuts sound: a `mute` turning on switches when the fade
ends (so a mute never silences a channel before its fader has come down, and
an unmute is heard while the fader comes up). Recall safes (global address
patterns) are never touched by a recall, a morph or a cue."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import ramps, tapers
from .actions import triggers_for
from .errors import MixgraphError
from .patterns import compile_pattern, is_pattern
from .values import has_control, number

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .cues import Trim
    from .session import Session

NAME_MAX = 64
SCENES_MAX = 1000
SAFES_MAX = 256
# values (and bypass switches) of all stored scenes together: SCENES_MAX whole-console
# scenes of 1,000 eq8 would be 47 M values (~180 bytes each in memory, ~12 on disk);
# 2 M holds 200 whole-console scenes of a 200-channel eq8 console (attack5 A2: 41
# scenes of 1,000 eq8 took the daemon from 210 to 574 MB and the autosave to 61 MB)
SCENE_VALUES_MAX = 2_000_000
CURVES = ("linear", "scurve")
# A snap recall (no fade) of more values than the engine's bound on "now" sets
# per block (Engine.set_cap, 128 live) is scheduled for one sample a little
# ahead instead (the engine's scheduler is not capped), so every value changes
# on that sample, as a bundle's do. Up to this many values: the block that
# applies them does that much more work (measured, 400 eq8 on a loaded box:
# 1024 timed sets in one block ~0.4 ms CPU, 3600 ~1.2-2 ms, over the 1.33 ms of
# a 64-frame block); a larger snap recall lands over several blocks as before.
SNAP_ATOMIC_MAX = 1024
# The time the control thread is given to push one value of such a recall
# (µs; the schedule lies 2 blocks + this per value ahead, within DEFER_SAMPLES).
SNAP_PUSH_US = 4.0

log = logging.getLogger("mixgraph.session")


@dataclass
class Scene:
    """A stored scene: values[node][param], bypass[node], its scope, fade and curve."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    bypass: dict[str, bool] = field(default_factory=dict)
    scope: list[str] = field(default_factory=list)
    fade: float = 0.0
    curve: str = "linear"
    _count: int | None = field(default=None, repr=False, compare=False)

    def count(self) -> int:
        """Values and bypass switches held; kept after the first call, as a stored
        scene never changes (the show's bound sums it over every scene at each store:
        1,000 scenes of 1,000 nodes took 490 ms counted afresh)."""
        if self._count is None:
            self._count = sum(len(v) for v in self.values.values()) + len(self.bypass)
        return self._count

    def to_dict(self) -> dict:
        """The scene as a document. Its values are shared, not copied: a stored scene's
        values and bypass maps are never changed (a store makes a new Scene), and a
        whole-console scene holds thousands of them."""
        return {"values": self.values, "bypass": self.bypass,
                "scope": list(self.scope), "fade": self.fade, "curve": self.curve}

    @classmethod
    def from_dict(cls, d: Any, what: str) -> Scene:
        if not isinstance(d, dict):
            raise MixgraphError(f"{what}: a scene must be a map")
        vals = d.get("values") or {}
        byp = d.get("bypass") or {}
        if not isinstance(vals, dict) or not isinstance(byp, dict):
            raise MixgraphError(f"{what}: `values` and `bypass` must be maps")
        values: dict[str, dict[str, float]] = {}
        for n, ps in vals.items():
            if not isinstance(n, str) or not isinstance(ps, dict):
                raise MixgraphError(f"{what}: bad values for {str(n)[:64]!r}")
            values[n] = {str(p): number(v, f"{what} {n}/{p}") for p, v in ps.items()}
        scope = d.get("scope") or []
        if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
            raise MixgraphError(f"{what}: `scope` must be a list of patterns")
        curve = d.get("curve", "linear")
        if curve not in CURVES:
            raise MixgraphError(f"{what}: curve must be linear or scurve")
        bypass: dict[str, bool] = {}
        for n, on in byp.items():
            # as a patch's node bypass: true/false or 0/1, never bool() of anything
            # (bool("false") is True: a document saying "false" bypassed the node)
            if not isinstance(on, bool | int) or on not in (0, 1):
                raise MixgraphError(f"{what}: bypass of {str(n)[:64]!r} must be true or "
                                    f"false, not {str(on)[:32]!r}")
            bypass[str(n)] = bool(on)
        return cls(values, bypass, list(scope),
                   ramps.seconds(d.get("fade", 0.0), f"{what} fade"), curve)


def _check_values(scenes: Iterable[Scene], what: str) -> None:
    """Refuse scenes whose values add up past SCENE_VALUES_MAX."""
    n = sum(sc.count() for sc in scenes)
    if n > SCENE_VALUES_MAX:
        raise MixgraphError(f"{what}: the scenes would hold {n} values, more than "
                            f"{SCENE_VALUES_MAX}; delete scenes or store them with a scope")


def _trim_values(scenes: dict[str, Scene], trim: Trim) -> None:
    """Bring scenes an older version stored within SCENE_VALUES_MAX (the state at
    start-up): the last stored scenes are left out, a note for each."""
    n = sum(sc.count() for sc in scenes.values())
    for name in reversed(list(scenes)):
        if n <= SCENE_VALUES_MAX:
            break
        k = scenes.pop(name).count()
        trim(f"scene {name!r} ({k} values) left out: the scenes held {n} values, more "
             f"than {SCENE_VALUES_MAX} since this version")
        n -= k


def trimmer(session: Session) -> Trim:
    """What the start-up restore passes as `trim`: each note is a warning in the log
    and is kept in session.trimmed (the banner counts them; the daemon keeps the
    snapshot as it was beside the state)."""
    def note(what: str) -> None:
        log.warning("state: %s", what)
        session.trimmed.append(what)
    return note


def _kind(v: Any) -> str:
    return {list: "a list", str: "a string", bool: "true/false", int: "a number",
            float: "a number", dict: "a map"}.get(type(v), type(v).__name__)


def scene_name(value, what: str = "scene name", new: bool = False) -> str:
    """A scene (or cue) name: a non-empty string of at most 64 characters; a `new` one
    (stored or renamed now, not read from a saved show) without control characters."""
    if not isinstance(value, str) or not value or len(value) > NAME_MAX or "\0" in value:
        raise MixgraphError(f"{what}: expected a name of 1..{NAME_MAX} characters")
    if new and has_control(value):
        raise MixgraphError(f"{what}: control characters (newlines, tabs, escapes) are not "
                            "allowed in a name")
    return value


class Show:
    """The show of one session: scenes, recall safes and the cue list."""

    def __init__(self, session: Session) -> None:
        from .cues import CueList  # cues build on scenes

        self.session = session
        self.scenes: dict[str, Scene] = {}
        self.safes: list[str] = []
        self.cues = CueList(self)
        # set by the OSC layer: a value a recall/morph moved -> subscribers
        self.notify: Callable[[str, str, float], None] | None = None
        self.snap_late = 0  # atomic snap recalls pushed too late for their sample

    # ---- the document --------------------------------------------------------------
    def to_dict(self) -> dict:
        """The show as a plain document (the patch's `show`)."""
        return {"scenes": {k: s.to_dict() for k, s in self.scenes.items()},
                "safes": list(self.safes), **self.cues.to_dict()}

    def load(self, d: Any) -> None:
        """Replace the show with a document's (checked completely first)."""
        self.take(self.check(d))

    def check(self, d: Any, trim: Trim | None = None) -> tuple:
        """A document's show checked completely, for take(): (scenes, safes, cues).
        trim (the state at start-up, see trimmer): what an older version took past
        this one's limits (the scenes' values, the recall safes, the cues' actions) is
        left out with a note each, so the show still starts; else such a show fails."""
        d = {} if d is None else d
        if not isinstance(d, dict):
            raise MixgraphError(f"patch: `show` must be a map, not {_kind(d)}")
        raw = d.get("scenes")
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise MixgraphError(f"patch: show `scenes` must be a map, not {_kind(raw)}")
        scenes = {scene_name(k): Scene.from_dict(v, f"scene {k!r}") for k, v in raw.items()}
        if len(scenes) > SCENES_MAX:
            raise MixgraphError(f"patch: more than {SCENES_MAX} scenes")
        if trim is not None:
            _trim_values(scenes, trim)
        _check_values(scenes.values(), "patch")
        safes = d.get("safes")
        safes = [] if safes is None else safes
        if not isinstance(safes, list) or not all(isinstance(s, str) for s in safes):
            raise MixgraphError("patch: show `safes` must be a list of patterns")
        if trim is not None and len(safes) > SAFES_MAX:
            for p in safes[SAFES_MAX:]:
                trim(f"recall safe {p[:200]!r} left out: more than {SAFES_MAX} recall "
                     "safes since this version")
            safes = safes[:SAFES_MAX]
        if len(safes) > SAFES_MAX:  # as /scene/safe: each is compiled, and checked at
            # every recall (a document of 5,000 held the control thread 3.5 s, attack5)
            raise MixgraphError(f"patch: more than {SAFES_MAX} recall safes")
        for s in safes:
            _compile(s)
        return scenes, list(safes), self.cues.parse_dict(d, trim)

    def take(self, checked: tuple) -> None:
        """Install a show check() returned."""
        scenes, safes, cues = checked
        self.scenes, self.safes = scenes, safes
        self.cues.install(*cues)

    def part(self, names: Iterable[str] = ()) -> dict:
        """What an edit of the scenes `names` (and of the safes, cues and playhead) may
        change: those scenes (None: absent), the order of the scene names, the safes,
        the cues and the playhead. An edit journals and keeps for undo only this, so
        its cost does not grow with the scenes it leaves alone (a GO or a cue renamed
        used to write every scene of the show)."""
        return {"scenes": {n: (self.scenes[n].to_dict() if n in self.scenes else None)
                           for n in names},
                "order": list(self.scenes), "safes": list(self.safes), **self.cues.to_dict()}

    def load_part(self, d: Any, trim: Trim | None = None) -> None:
        """Put a part (Show.part) back: its scenes, the scene order, safes, cues and
        playhead (checked completely first); the other scenes stay as they are.
        trim: as check's, for a journal record replayed at start-up."""
        if not isinstance(d, dict) or not isinstance(d.get("scenes"), dict) \
                or not isinstance(d.get("order"), list):
            raise MixgraphError("show part: expected `scenes` and `order`")
        got = {scene_name(k): (None if v is None else Scene.from_dict(v, f"scene {k!r}"))
               for k, v in d["scenes"].items()}
        safes = d.get("safes") or []
        if not isinstance(safes, list) or not all(isinstance(s, str) for s in safes):
            raise MixgraphError("show part: `safes` must be a list of patterns")
        for s in safes:
            _compile(s)
        cues = self.cues.parse_dict(d, trim)
        scenes = dict(self.scenes)
        for k, v in got.items():
            if v is None:
                scenes.pop(k, None)
            else:
                scenes[k] = v
        order = [n for n in d["order"] if isinstance(n, str) and n in scenes]
        self.scenes = {**{n: scenes[n] for n in order}, **scenes}
        self.safes = list(safes)
        self.cues.install(*cues)

    def changed(self, label: str | None = None, before: dict | None = None,
                names: Iterable[str] = ()) -> None:
        """A show edit of the scenes `names` (and maybe the safes, cues, playhead):
        autosave, journal (one `show_part` record of what it may change) and history
        (`before`: the part as it was, from part(names))."""
        s = self.session
        s._touch()
        names = tuple(names)
        quiet = s.journal is None or s._quiet
        h = getattr(s, "history", None)
        keep = bool(h and label and before is not None)
        after = self.part(names) if keep or not quiet else None
        if not quiet:
            s.journal.add(("show_part", after))
        if keep:
            size = _part_size(before) + _part_size(after)
            h.record(label, lambda: self._restore(before), lambda: self._restore(after),
                     size=size)

    def _restore(self, d: dict) -> None:
        self.load_part(d)
        self.changed(names=d["scenes"])

    # ---- addresses ------------------------------------------------------------------
    def addresses(self) -> list[str]:
        """Every address a scene may hold: /node/<n>/<param> and /node/<n>/bypass."""
        out = []
        for name, node in self.session.live.items():
            t = node.g.type
            skip = triggers_for(t.name)
            for p in t.params:
                if p.name in skip or (p.name == "vca" and t.name != "vca"):
                    continue  # an action's trigger; a fader's VCA offset (set by its VCAs)
                out.append(f"/node/{name}/{p.name}")
            if t.param("bypass") is None and t.port(None, "in") and t.port(None, "out"):
                out.append(f"/node/{name}/bypass")
        return out

    def is_safe(self, address: str) -> bool:
        """True when a recall safe covers the address (one address; a recall, morph or
        GO resolves all its addresses at once with safe_among)."""
        return any(_compile(p).match(address) for p in self.safes)

    def safe_among(self, addresses: Iterable[str]) -> set[str]:
        """The addresses, of those given, that a recall safe covers (for each the same
        answer as is_safe). The safes are resolved once over them all, so a recall,
        morph or GO costs about values + safes x names, not values x safes (200 safes
        made a recall of 200 eq8 nodes take seconds): a literal safe is one set lookup;
        a pattern /node/<n>/<p> (no //) tests each distinct node name and parameter
        name once (patterns.Pattern.part_matchers) and then only the pairs both let
        through; anything else runs the pattern's filter over the addresses."""
        if not self.safes:
            return set()
        have = set(addresses)
        by_param: dict[str, set[str]] = {}  # /node/<n>/<p>: p -> {n} (not yet safe)
        other = []  # any other shape (none from a recall; kept exact all the same)
        for a in have:
            parts = a.split("/")
            if len(parts) == 4 and parts[0] == "" and parts[1] == "node":
                by_param.setdefault(parts[3], set()).add(parts[2])
            else:
                other.append(a)
        nodes = set().union(*by_param.values())
        out: set[str] = set()
        for pat in self.safes:
            if not is_pattern(pat):
                if pat in have:  # a literal pattern matches exactly its own address
                    out.add(pat)
                continue
            rx = _compile(pat)
            if other:
                out.update(rx.filter(other))
            m = rx.part_matchers()
            if m is None:  # OSC 1.1 //: any number of parts
                out.update(rx.filter(a for a in have if a not in out))
                continue
            if len(m) != 4 or not (m[0]("") and m[1]("node")):
                continue
            ps = [p for p, left in by_param.items() if left and m[3](p)]
            if not ps:
                continue
            ns = {n for n in nodes if m[2](n)}
            for p in ps:
                hit = by_param[p] & ns
                by_param[p] -= hit  # the nodes not yet found safe for p
                out.update([f"/node/{n}/{p}" for n in hit])
        return out

    # ---- scenes ----------------------------------------------------------------------
    def get(self, name) -> Scene:
        sc = self.scenes.get(name) if isinstance(name, str) else None
        if sc is None:
            raise MixgraphError(f"no scene named {str(name)[:64]!r}")
        return sc

    def store(self, name, patterns: list) -> int:
        """Store the current values (of what the patterns match) as scene `name`."""
        name = scene_name(name, new=True)
        if name not in self.scenes and len(self.scenes) >= SCENES_MAX:
            raise MixgraphError(f"too many scenes (at most {SCENES_MAX})")
        addrs = self.addresses()
        if patterns:
            chosen: set[str] = set()
            for p in patterns:
                if not isinstance(p, str):
                    raise MixgraphError("scene scope: expected address patterns")
                got = _compile(p).filter(addrs)
                if not got:
                    raise MixgraphError(f"the pattern {p[:64]!r} matches nothing")
                chosen.update(got)
            addrs = [a for a in addrs if a in chosen]
        old = self.scenes.get(name)
        sc = Scene(scope=[str(p) for p in patterns],
                   fade=old.fade if old else 0.0, curve=old.curve if old else "linear")
        s = self.session
        for a in addrs:
            _, _, n, p = a.split("/", 3)
            if p == "bypass":
                sc.bypass[n] = n in s.bypassed
            else:
                sc.values.setdefault(n, {})[p] = float(s.graph.nodes[n].params[p])
        _check_values((*(x for k, x in self.scenes.items() if k != name), sc),
                      f"scene {name!r}")
        before = self.part((name,))
        self.scenes[name] = sc
        self.changed(f"scene store {name}", before, (name,))
        return sc.count()

    def delete(self, name) -> None:
        self.get(name)
        before = self.part((name,))
        del self.scenes[name]
        self.changed(f"scene delete {name}", before, (name,))

    def rename(self, old, new) -> None:
        sc = self.get(old)
        new = scene_name(new, new=True)
        if new in self.scenes:
            raise MixgraphError(f"a scene named {new!r} already exists")
        before = self.part((old, new))
        self.scenes = {(new if k == old else k): v for k, v in self.scenes.items()}
        self.scenes[new] = sc
        self.changed(f"scene rename {old} {new}", before, (old, new))

    def set_fade(self, name, secs, curve=None) -> None:
        sc = self.get(name)
        f = ramps.seconds(secs, f"scene {name} fade")
        if curve is not None and curve not in CURVES:
            raise MixgraphError("curve: expected linear or scurve")
        before = self.part((name,))
        sc = self.scenes[name] = Scene(sc.values, sc.bypass, list(sc.scope), f,
                                       curve if curve is not None else sc.curve)
        self.changed(f"scene fade {name}", before, (name,))

    def set_safe(self, pattern, on: bool) -> None:
        """Mark (on) or unmark the parameters a pattern matches as recall safe."""
        if not isinstance(pattern, str):
            raise MixgraphError("usage: /scene/safe <address-pattern> 1|0")
        rx = _compile(pattern)
        if on:
            if not rx.filter(self.addresses()):
                raise MixgraphError(f"the pattern {pattern[:64]!r} matches nothing")
            if pattern in self.safes:
                return
            if len(self.safes) >= SAFES_MAX:
                raise MixgraphError(f"too many safes (at most {SAFES_MAX})")
        elif pattern not in self.safes:
            raise MixgraphError(f"{pattern[:64]!r} is not a recall safe")
        before = self.part()
        if on:
            self.safes.append(pattern)
        else:
            self.safes.remove(pattern)
        self.changed(f"safe {pattern} {int(on)}", before)

    # ---- recall and morph -----------------------------------------------------------
    def recall(self, name, fade=None, time: int = 0) -> list[str]:
        """Start recalling a scene (fade in seconds; None: the scene's own) at sample
        time `time` (0: now). Returns the addresses it skipped (gone from the graph)."""
        sc = self.get(name)
        secs = sc.fade if fade is None else ramps.seconds(fade, "fade")
        s = self.session
        frames = int(round(secs * s.engine.sample_rate))
        start = time or s.engine.time
        skipped: list[str] = []
        changes: list[tuple[str, str, float, float]] = []
        safe = self.safe_among(
            [f"/node/{n}/{p}" for n, ps in sc.values.items() for p in ps]
            + [f"/node/{n}/bypass" for n in sc.bypass]) if self.safes else None
        code = ramps.CURVES[sc.curve]
        # VCA masters first (as Ardour): their members' offsets follow them
        order = sorted(sc.values.items(), key=lambda kv: _type(s, kv[0]) != "vca")
        if frames == 0 and not time:
            snap = self._snap_atomic(order, safe)
            if snap is not None:
                changes = snap
                order = []
        for n, ps in order:
            node = s.live.get(n)
            params = node.g.params if node is not None else {}
            for p, v in ps.items():
                spec = node.g.type.param(p) if node is not None else None
                if spec is None:
                    skipped.append(f"/node/{n}/{p}")
                    continue
                if safe and f"/node/{n}/{p}" in safe:
                    continue
                before = params[p]
                v = min(max(v, spec.min), spec.max)
                if frames > 0 and spec.taper != "stepped" and node.published:
                    if before == v and not _moving(s, n, p):
                        continue
                    ramps.start(s, node, spec, v, frames, code, time)
                    after = v
                else:
                    if before == v:
                        continue
                    at_end = frames > 0 and p == "mute" and v > before
                    t = start + frames if at_end else time
                    after, _ = s.set_param(n, p, v, t)
                changes.append((n, p, before, after))
                if self.notify is not None:
                    self.notify(n, p, after)
        for n, on in sc.bypass.items():
            a = f"/node/{n}/bypass"
            if n not in s.live:
                skipped.append(a)
                continue
            if (safe and a in safe) or (n in s.bypassed) == on:
                continue
            self._bypass(n, on, time)
            changes.append((n, "bypass", float(not on), float(on)))
        h = getattr(s, "history", None)
        if h and changes:
            h.record_values(f"scene recall {name}", changes)
        return skipped

    def _snap_atomic(self, order, safe) -> list[tuple[str, str, float, float]] | None:
        """A snap recall's values, all on one sample (SNAP_ATOMIC_MAX): returns its
        changes, or None when the usual path applies (few enough values for one
        block, too many, an engine without a bound or not running, VCA nodes)."""
        s = self.session
        e = s.engine
        cap = getattr(e, "set_cap", 0)
        if not cap or e.time <= 0:
            return None
        sets = []
        for n, ps in order:
            node = s.live.get(n)
            if node is None:
                continue
            if not node.published or node.g.type.name == "vca":
                return None
            params = node.g.params
            for p, v in ps.items():
                spec = node.g.type.param(p)
                if spec is None or (safe and f"/node/{n}/{p}" in safe):
                    continue
                v = min(max(v, spec.min), spec.max)
                if params[p] != v:
                    sets.append((node, spec.index, p, v))
        if not cap < len(sets) <= SNAP_ATOMIC_MAX:
            return None
        from .engine import CMD_PARAM

        block = int(getattr(e, "block", 64) or 64)
        t = e.time + 2 * block + int(len(sets) * SNAP_PUSH_US * 1e-6 * e.sample_rate)
        for node, index, _p, v in sets:  # pushed first, all of them: the engine's time runs
            e.push(CMD_PARAM, node.ptr, index, v, t)
        if e.time + block > t:  # some may have come after the engine passed t
            self.snap_late += 1
            log.warning("snap recall of %d values: pushed too late for one sample", len(sets))
        changes = []
        for node, _index, p, v in sets:
            before = node.g.params[p]
            s._record(node, p, v)
            changes.append((node.g.name, p, before, v))
            if self.notify is not None:
                self.notify(node.g.name, p, v)
        return changes

    def _bypass(self, n: str, on: bool, time: int) -> None:
        s = self.session

        def go() -> None:
            if n in s.live:
                s.set_bypass(n, on)
                if self.notify is not None:
                    self.notify(n, "bypass", float(on))
        if time and time > s.engine.time:
            s.at(time, go)
        else:
            go()

    def morph(self, a, b, x, time: int = 0) -> int:
        """Set every parameter in both scenes to the point x (0..1) between them along
        its taper (stepped ones and bypass: a's below 0.5, b's from 0.5). Returns how
        many values it set."""
        sa, sb = self.get(a), self.get(b)
        x = number(x, "morph position")
        if not 0.0 <= x <= 1.0:
            raise MixgraphError(f"morph position {x:g} is outside 0..1")
        s = self.session
        changes = []
        safe = self.safe_among(
            [f"/node/{n}/{p}" for n, pa in sa.values.items() for p in pa
             if p in sb.values.get(n, ())]
            + [f"/node/{n}/bypass" for n in sa.bypass if n in sb.bypass])
        for n, pa in sa.values.items():
            pb = sb.values.get(n)
            node = s.live.get(n)
            if not pb or node is None:
                continue
            for p, va in pa.items():
                spec = node.g.type.param(p)
                if p not in pb or spec is None or f"/node/{n}/{p}" in safe:
                    continue
                vb = pb[p]
                if spec.taper == "stepped":
                    v = vb if x >= 0.5 else va
                else:
                    na = tapers.to_norm(spec.taper, spec.min, spec.max, va)
                    nb = tapers.to_norm(spec.taper, spec.min, spec.max, vb)
                    v = tapers.to_value(spec.taper, spec.min, spec.max, na + (nb - na) * x)
                before = node.g.params[p]
                after, _ = s.set_param(n, p, v, time)
                if after != before:
                    changes.append((n, p, before, after))
                    if self.notify is not None:
                        self.notify(n, p, after)
        for n, on_a in sa.bypass.items():
            if n in sb.bypass and n in s.live and f"/node/{n}/bypass" not in safe:
                on = sb.bypass[n] if x >= 0.5 else on_a
                if (n in s.bypassed) != on:
                    self._bypass(n, on, 0)
                    changes.append((n, "bypass", float(not on), float(on)))
        h = getattr(s, "history", None)
        if h and changes:
            h.record_values(f"scene morph {a} {b} {x:g}", changes)
        return len(changes)


def _part_size(d: dict) -> int:
    """About how many bytes a show part holds (history's memory budget)."""
    vals = sum(sum(len(v) for v in sc["values"].values()) + len(sc["bypass"])
               for sc in d["scenes"].values() if sc is not None)
    return 120 * vals + 80 * len(d["order"]) + 300 * len(d["cues"]) + 100 * len(d["safes"])


def _type(s: Session, n: str) -> str:
    node = s.live.get(n)
    return node.g.type.name if node is not None else ""


def _moving(s: Session, n: str, p: str) -> bool:
    """True when a parameter is not where the model says (a ramp under way)."""
    v = ramps.now(s, n, p)
    return not math.isclose(v, s.graph.nodes[n].params[p], rel_tol=1e-6, abs_tol=1e-9)


_RX: dict[str, Any] = {}


def _compile(pattern: str):
    rx = _RX.get(pattern)
    if rx is None:
        if not pattern.startswith("/node/"):
            raise MixgraphError(f"{pattern[:64]!r}: expected a /node/... address pattern")
        try:
            rx = compile_pattern(pattern)
        except ValueError as e:
            raise MixgraphError(str(e)) from None
        if len(_RX) > 4096:
            _RX.clear()
        _RX[pattern] = rx
    return rx


def show_of(session: Session) -> Show:
    """The session's show, made on first use."""
    sh = getattr(session, "show", None)
    if sh is None:
        sh = session.show = Show(session)
    return sh
