"""The cue list: numbered cues fired by GO, timed on the audio clock (control thread).

A cue recalls a scene (with its fade, or the cue's) and/or sends OSC messages
to this server (`osc "/node/fx/mix 0.3"`, ramps included), after its
pre-wait; a message to a recall-safe parameter is not sent (safes are what no
recall, morph or cue may touch). `continue` says what follows: `none`; `auto-continue` fires the
next cue `postwait` seconds after this cue's action starts; `auto-follow`
fires it when this cue's action completes (its fade has run). Every time is a
sample time: a cue's action is dispatched with the exact sample time it is
due (a timer wakes the control thread two blocks earlier), so an offline
render of a score that fires /cue/go equals the live result.

The text form (`/cue/load <file>`, `mixgraph cues FILE`): one cue per line,
`<number> [<key> <value>]...` with the keys of /cue/set, values quoted with
"..." when they hold spaces, `#` starts a comment, e.g.

    1   name "Preshow" scene preshow fade 0
    2   name "House to half" scene half fade 5 continue auto-follow
    2.5 name "Lights cue" prewait 1 osc "/node/fx/mix 0.3" osc "/node/vox/gain/ramp -10 2"
"""

from __future__ import annotations

import copy
import logging
import shlex
import time
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import ramps
from .errors import MixgraphError
from .patterns import compile_pattern, is_pattern
from .values import has_control, number

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .scenes import Show

    Trim = Callable[[str], None]  # told of each item an old state held past a limit

log = logging.getLogger("mixgraph.session")

CONTINUE = ("none", "auto-continue", "auto-follow")
KEYS = ("name", "scene", "fade", "prewait", "postwait", "continue", "osc")
CUES_MAX = 10000
OSC_MAX = 64  # actions per cue
# characters of one osc action, and of all the list's actions together: a cue's action
# is a short OSC line, and a list of 10,000 cues of 64 actions of any length grew
# without bound (attack5 A1: 500 cues of 60 kB held the control thread re-encoding
# the autosave, and 10,000 would have made an autosave too big to be read back)
OSC_TEXT_MAX = 1024
CUE_TEXT_MAX = 4 << 20
CUE_LINE_MAX = 72 << 10  # characters of one line of a cue file (parse_text)
# significant digits a cue number keeps: what a 32-bit float holds exactly (FLT_DIG),
# and what fmt_number shows. A controller sends `/cue/go 1.1` as the float32
# 1.100000023841858, a cue file holds the double 1.1: both are cue 1.1.
CUE_DIGITS = 6
# the cue numbers a new cue may take: what CUE_DIGITS show as plain decimals (999999,
# 0.001): 1e300 was taken (attack8) and showed as `1e+300`, and above a million
# neighbouring integers are one cue (2147483647 and 2147483600 were both 2.14748e+09)
CUE_NUMBER_MIN = 0.001
CUE_NUMBER_MAX = 999999.0
# seconds (wall clock: what other clients wait) one run of due cue callbacks may take
# before the rest of
# a chain waits for the next turn of the control loop (other clients' commands are
# handled between): None runs a chain to its end at once, as offline renders and
# in-process sessions do (their output must not depend on how fast the host is); the
# daemon sets it (server/daemon.py). A GO of 300 chained recalls of a 100-eq8 scene
# held the control thread 30.6 s (attack9).
CHAIN_SLICE_S: float | None = None


@dataclass
class Cue:
    """One cue of the list."""

    number: float
    name: str = ""
    scene: str = ""
    fade: float | None = None  # None: the scene's own fade
    prewait: float = 0.0
    postwait: float = 0.0
    cont: str = "none"
    osc: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d: dict = {"number": self.number, "name": self.name, "scene": self.scene,
                   "prewait": self.prewait, "postwait": self.postwait, "continue": self.cont,
                   "osc": list(self.osc)}
        if self.fade is not None:
            d["fade"] = self.fade
        return d

    def line(self) -> str:
        """The cue in the text form."""
        parts = [fmt_number(self.number)]
        for k, v in (("name", self.name), ("scene", self.scene)):
            if v:
                parts += [k, shlex.quote(v)]
        for k, f in (("fade", self.fade), ("prewait", self.prewait), ("postwait", self.postwait)):
            if f:
                parts += [k, f"{f:g}"]
        if self.cont != "none":
            parts += ["continue", self.cont]
        for m in self.osc:
            parts += ["osc", shlex.quote(m)]
        return " ".join(parts)


def cue_from_dict(item, trim: Trim | None = None) -> Cue:
    """A cue from its document form (Cue.to_dict; a patch's show, a journal record),
    checked as /cue/set checks (any scene name: the scenes may load after it).
    trim (the state at start-up): an action longer than OSC_TEXT_MAX, which older
    versions took, is left out with a note instead of failing the cue."""
    if not isinstance(item, dict):
        raise MixgraphError("patch: a cue must be a map")
    num = cue_number(item.get("number"), new=trim is None)
    pairs: list = []
    for k in ("name", "scene", "prewait", "postwait", "continue"):
        if k in item:
            pairs += [k, item[k]]
    if item.get("fade") is not None:
        pairs += ["fade", item["fade"]]
    osc = item.get("osc") or []
    if not isinstance(osc, list):  # a string would be taken a character at a time
        raise MixgraphError(f"cue {fmt_number(num)}: `osc` must be a list of "
                            "messages, each one string \"/address args...\"")
    for m in osc:
        if trim is not None and isinstance(m, str) and len(m) > OSC_TEXT_MAX:
            trim(f"cue {fmt_number(num)}: an osc action of {len(m)} characters left out "
                 f"(at most {OSC_TEXT_MAX} since this version): {m[:80]!r}...")
            continue
        if trim is not None and isinstance(m, str):
            try:
                parse_osc(m)
            except MixgraphError as e:  # taken by an older version: left out, said
                trim(f"cue {fmt_number(num)}: an osc action left out: {e}")
                continue
        pairs += ["osc", m]
    return apply_keys(Cue(num), pairs, _Any())


def cue_text(c: Cue) -> int:
    """Characters of one cue's osc actions (what CUE_TEXT_MAX bounds, summed)."""
    return sum(len(m) for m in c.osc)


def fmt_number(n: float) -> str:
    return f"{n:.{CUE_DIGITS}g}"


def canonical(v: float) -> float:
    """A cue number as the list keys it: rounded to CUE_DIGITS significant digits, so
    the float32 an OSC controller sends (1.100000023841858) and the double a cue file
    or a patch holds (1.1) are the same cue, and two cues never show the same number."""
    return float(f"{v:.{CUE_DIGITS}g}")


def cue_number(value, what: str = "cue number", new: bool = True) -> float:
    """A cue number: finite, > 0 (1, 2.5 ...), as the list keys it (canonical). `new`
    (a cue made or named by a client, a cue file, a loaded patch): within
    CUE_NUMBER_MIN..CUE_NUMBER_MAX too; the state at start-up keeps what an older
    version took."""
    v = number(value, what)
    if not v > 0:
        raise MixgraphError(f"{what}: expected a number > 0, got {v:g}")
    v = canonical(v)
    if new and not CUE_NUMBER_MIN <= v <= CUE_NUMBER_MAX:
        raise MixgraphError(f"{what}: expected {CUE_NUMBER_MIN:g}..{CUE_NUMBER_MAX:.0f}, "
                            f"got {v:g}")
    return v


def parse_osc(text) -> tuple[str, list]:
    """An OSC action of a cue: "/address arg..." (not a /cue/ address)."""
    if not isinstance(text, str):
        raise MixgraphError("osc: expected one string \"/address args...\"")
    if len(text) > OSC_TEXT_MAX:
        raise MixgraphError(f"osc: an action is at most {OSC_TEXT_MAX} characters, "
                            f"not {len(text)}")
    try:
        toks = shlex.split(text)
    except ValueError as e:
        raise MixgraphError(f"osc: {e}") from None
    if not toks or not toks[0].startswith("/"):
        raise MixgraphError(f"osc: {text[:64]!r} does not start with an OSC address")
    addr = toks[0]
    if addr.startswith("/cue/"):
        raise MixgraphError("osc: a cue cannot send /cue/ messages (GO is the operator's)")
    # checked when the cue is made, not when it fires mid-show: `/`, a trailing `/`, a
    # control character or a malformed pattern would only fail at GO (attack10)
    if addr == "/" or addr.endswith("/") or has_control(addr) or " " in addr:
        raise MixgraphError(f"osc: {addr[:64]!r} is not an OSC address (/part/part..., "
                            "no empty last part, spaces or control characters)")
    if is_pattern(addr):
        try:
            compile_pattern(addr)
        except ValueError as e:
            raise MixgraphError(f"osc: {addr[:64]!r}: {e}") from None
    return addr, [parse_arg(a) for a in toks[1:]]


def apply_keys(cue: Cue, pairs: list, scenes: dict) -> Cue:
    """A copy of cue with key/value pairs applied (checked: /cue/set's rules)."""
    if len(pairs) % 2:
        raise MixgraphError("usage: /cue/set <number> [<key> <value>]...")
    c = copy.deepcopy(cue)
    new_osc: list[str] | None = None
    for k, v in zip(pairs[::2], pairs[1::2], strict=True):
        if k == "name":
            if not isinstance(v, str) or len(v) > 64:
                raise MixgraphError("name: expected a string of at most 64 characters")
            if has_control(v):
                raise MixgraphError("name: control characters (newlines, tabs, escapes) "
                                    "are not allowed in a name")
            c.name = v
        elif k == "scene":
            if v in ("", "none"):
                c.scene = ""
            elif not isinstance(v, str) or v not in scenes:
                raise MixgraphError(f"no scene named {str(v)[:64]!r}")
            else:
                c.scene = v
        elif k == "fade":
            c.fade = None if v in ("", "scene") else ramps.seconds(v, "fade")
        elif k in ("prewait", "postwait"):
            setattr(c, k, ramps.seconds(v, k))
        elif k == "continue":
            if v not in CONTINUE:
                raise MixgraphError(f"continue: expected one of {', '.join(CONTINUE)}")
            c.cont = v
        elif k == "osc":
            parse_osc(v)
            new_osc = (new_osc or []) + [v]
            if len(new_osc) > OSC_MAX:
                raise MixgraphError(f"osc: at most {OSC_MAX} actions per cue")
        else:
            raise MixgraphError(f"unknown cue key {str(k)[:32]!r} (keys: {', '.join(KEYS)})")
    if new_osc is not None:
        c.osc = new_osc
    return c


def parse_text(text: str, scenes: dict | None = None) -> dict[float, Cue]:
    """A cue list from its text form; a syntax error names its line."""
    out: dict[float, Cue] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        if len(raw) > CUE_LINE_MAX:
            # shlex builds a token a character at a time, in time quadratic in its
            # length: one 1 MB word held the control thread over 20 s (attack10)
            raise MixgraphError(f"cue file line {n}: longer than {CUE_LINE_MAX} characters "
                                f"({len(raw)}; a cue of {OSC_MAX} osc actions of "
                                f"{OSC_TEXT_MAX} needs less)")
        try:
            toks = shlex.split(raw, comments=True)
        except ValueError as e:
            raise MixgraphError(f"cue file line {n}: {e}") from None
        if not toks:
            continue
        try:
            num = cue_number(parse_arg(toks[0]))
            vals = [t if i % 2 == 0 else _value(t) for i, t in enumerate(toks[1:])]
            if num in out:
                raise MixgraphError(f"cue {fmt_number(num)} is listed twice")
            out[num] = apply_keys(Cue(num), vals, scenes if scenes is not None else _Any())
        except MixgraphError as e:
            raise MixgraphError(f"cue file line {n}: {e}") from None
        if len(out) > CUES_MAX:
            raise MixgraphError(f"cue file: more than {CUES_MAX} cues")
    check_text(out.values(), "cue file")
    return out


def osc_text(cues: Iterable[Cue]) -> int:
    """Characters of the cues' osc actions together (bounded by CUE_TEXT_MAX)."""
    return sum(cue_text(c) for c in cues)


def check_text(cues: Iterable[Cue], what: str) -> None:
    """Refuse a cue list whose osc actions add up past CUE_TEXT_MAX characters."""
    _check_total(osc_text(cues), what)


def _check_total(n: int, what: str) -> None:
    if n > CUE_TEXT_MAX:
        raise MixgraphError(f"{what}: the cue list's osc actions would hold {n} "
                            f"characters, more than {CUE_TEXT_MAX}")


def trim_text(cues: dict[float, Cue], trim: Trim) -> None:
    """Bring a cue list an older version saved within CUE_TEXT_MAX (the state at
    start-up): the last cues' osc actions are left out, a note for each cue."""
    n = osc_text(cues.values())
    for num in sorted(cues, reverse=True):
        if n <= CUE_TEXT_MAX:
            break
        c = cues[num]
        if not c.osc:
            continue
        k = cue_text(c)
        trim(f"cue {fmt_number(num)}: its {len(c.osc)} osc actions ({k} characters) left "
             f"out: the cue list's actions held {n} characters, more than {CUE_TEXT_MAX}"
             f" since this version; first: {c.osc[0][:80]!r}")
        cues[num] = copy.copy(c)
        cues[num].osc = []
        n -= k


def parse_arg(tok: str):
    """A cue-file or osc-action argument: an int, a float, true/false or a string
    (as the score format, server/score.py)."""
    low = tok.lower()
    if low in ("true", "t", "false", "f"):
        return low in ("true", "t")
    for kind in (int, float):
        try:
            return kind(tok)
        except ValueError:
            pass
    return tok


def _value(tok: str):
    v = parse_arg(tok)
    return v if isinstance(v, int | float) and not isinstance(v, bool) else tok


class _Any(dict):
    """Every scene name exists (checking a cue file offline)."""

    def __contains__(self, k) -> bool:
        return True


class CueList:
    """The cues, the playhead and the cues running now."""

    def __init__(self, show: Show) -> None:
        self.show = show
        self.cues: dict[float, Cue] = {}
        self.playhead: float | None = None
        self.running: dict[float, int] = {}  # cue number -> token of its run
        self.moving: dict[int, set[tuple[str, str]]] = {}  # token -> parameters it fades
        self._token = 0
        self._stopped: set[int] = set()  # runs cut short by /cue/stop: they never continue
        self.dispatch: Callable[[str, list, Callable, int], None] | None = None
        self.publish: Callable[[str, list], None] | None = None
        self.lead = 128  # frames a timer wakes before a cue action's sample time
        self._due: deque | None = None  # callbacks already due, run in order by _at
        self._keys: tuple[dict, list[float]] | None = None  # cues and their numbers, sorted
        self.text = 0  # osc_text(self.cues.values()), kept as cues change (CUE_TEXT_MAX)

    # ---- the document ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"cues": [c.to_dict() for c in self.sorted()], "playhead": self.playhead}

    def parse_dict(self, d: dict, trim: Trim | None = None
                   ) -> tuple[dict[float, Cue], float | None, bool]:
        """A document's cues, playhead and whether it stood past the end, checked.
        trim (the state at start-up): what an older version took past this one's
        limits is left out with a note each, and of two cues of one number the later
        is kept with a note, instead of failing the show."""
        raw = d.get("cues")
        raw = [] if raw is None else raw
        if not isinstance(raw, list):
            raise MixgraphError("patch: show `cues` must be a list")
        cues: dict[float, Cue] = {}
        for item in raw:
            c = cue_from_dict(item, trim)
            if c.number in cues:
                if trim is None:
                    raise MixgraphError(f"patch: cue {fmt_number(c.number)} is listed twice")
                trim(f"cue {fmt_number(c.number)} is listed twice: the later one kept, "
                     f"{cues[c.number].line()[:200]!r} left out")
            cues[c.number] = c
        if len(cues) > CUES_MAX:
            raise MixgraphError(f"patch: more than {CUES_MAX} cues")
        if trim is not None:
            trim_text(cues, trim)
        check_text(cues.values(), "patch")
        ph = d.get("playhead")
        at_end = "playhead" in d and ph is None  # saved after the last cue had run
        ph = None if ph is None else cue_number(ph, "playhead", new=trim is None)
        return cues, ph, at_end

    def install(self, cues: dict[float, Cue], playhead: float | None,
                at_end: bool = False) -> None:
        """Take a cue list; the playhead where it was saved (past the end of the list
        when `at_end`), else on the first cue."""
        self.cues = dict(sorted(cues.items()))
        self.text = osc_text(self.cues.values())
        if playhead in self.cues or (at_end and playhead is None):
            self.playhead = playhead
        else:
            self.playhead = self._first()

    def sorted(self) -> list[Cue]:
        return [self.cues[k] for k in sorted(self.cues)]

    def _first(self) -> float | None:
        return min(self.cues) if self.cues else None

    def _next(self, num: float) -> float | None:
        keys = self._keys
        if keys is None or keys[0] is not self.cues or len(keys[1]) != len(self.cues):
            keys = self._keys = (self.cues, sorted(self.cues))
        ks = keys[1]
        i = bisect_right(ks, num)
        return ks[i] if i < len(ks) else None

    def put_playhead(self, num) -> None:
        """Put the playhead where a journal record says (None: past the end of the
        list); a number the list does not hold leaves it where it is."""
        if num is None:
            self.playhead = None
        elif cue_number(num, "playhead", new=False) in self.cues:
            self.playhead = cue_number(num, "playhead", new=False)

    def _moved(self) -> None:
        """The playhead moved (GO, standby, a continue): autosave, and journal it
        alone (`cue_playhead`), not the cue list: a chain of n cues used to journal
        n whole cue lists."""
        s = self.show.session
        s._touch()
        if s.journal is not None and not s._quiet:
            s.journal.add(("cue_playhead", self.playhead))

    # ---- edits -----------------------------------------------------------------------
    def set(self, num, pairs: list) -> Cue:
        num = cue_number(num)
        if num not in self.cues and len(self.cues) >= CUES_MAX:
            raise MixgraphError(f"too many cues (at most {CUES_MAX})")
        old = self.cues.get(num)
        c = apply_keys(old or Cue(num), pairs, self.show.scenes)
        if c.osc and (old is None or c.osc != old.osc):  # the running total: O(1) an edit
            _check_total(self.text - (0 if old is None else cue_text(old)) + cue_text(c),
                         "cue set")
        # the first cue takes the playhead; past the end of a list stays there (the
        # next GO is a standby away)
        ph = self.playhead if self.cues else num
        self._edit(f"cue set {fmt_number(num)}", num, old, c, self.playhead, ph)
        self._announce()
        return c

    def delete(self, num) -> None:
        num = self.get(num).number
        ph = self._next(num) if self.playhead == num else self.playhead
        self._edit(f"cue delete {fmt_number(num)}", num, self.cues[num], None, self.playhead, ph)
        self._announce()

    def _edit(self, label: str, num: float, old: Cue | None, new: Cue | None,
              ph0: float | None, ph1: float | None) -> None:
        """One cue edited (old -> new, None: absent) and the playhead moved ph0 -> ph1:
        applied, journaled and kept for undo as that cue alone (put), so an edit costs
        the same in a list of ten cues or ten thousand (it used to journal and keep the
        whole list: building n cues wrote O(n^2) bytes)."""
        self.put(num, new, ph1)
        h = getattr(self.show.session, "history", None)
        if h:
            size = 300 * ((old is not None) + (new is not None))
            h.record(label, lambda: self.put(num, old, ph0), lambda: self.put(num, new, ph1),
                     size=size)

    def put(self, num: float, cue: Cue | None, playhead: float | None) -> None:
        """Put one cue (None: remove cue `num`) and the playhead: a cue edit, its undo
        and redo, and the replay of its journal record (`cue_put`); autosaved and
        journaled (when the session journals)."""
        old = self.cues.get(num)
        self.text += (0 if cue is None else cue_text(cue)) - (0 if old is None else cue_text(old))
        if cue is None:
            self.cues.pop(num, None)
        else:
            ahead = num not in self.cues and bool(self.cues) and num < next(reversed(self.cues))
            self.cues[num] = cue
            if ahead:  # kept in number order (appending keeps it so)
                self.cues = dict(sorted(self.cues.items()))
        self._keys = None
        self.playhead = playhead
        s = self.show.session
        s._touch()
        if s.journal is not None and not s._quiet:
            s.journal.add(("cue_put", num, None if cue is None else cue.to_dict(), playhead))

    def load_put(self, num, d: dict | None, playhead, trim: Trim | None = None) -> None:
        """Replay a `cue_put` journal record (put's arguments as journaled); trim: as
        parse_dict's, the cue list's total included."""
        num = cue_number(num, new=trim is None)
        cue = None if d is None else cue_from_dict(d, trim)
        if cue is not None and trim is not None:
            old = self.cues.get(num)
            n = self.text - (0 if old is None else cue_text(old)) + cue_text(cue)
            if n > CUE_TEXT_MAX:
                trim(f"cue {fmt_number(num)}: its {len(cue.osc)} osc actions "
                     f"({cue_text(cue)} characters) left out: the cue list's actions "
                     f"would hold {n} characters, more than {CUE_TEXT_MAX} since this "
                     f"version; first: {cue.osc[0][:80]!r}")
                cue.osc = []
        if cue is not None and cue.number != num:
            raise MixgraphError(f"cue_put: cue {fmt_number(cue.number)} journaled as "
                                f"{fmt_number(num)}")
        self.put(num, cue, None if playhead is None
                 else cue_number(playhead, "playhead", new=trim is None))

    def load_text(self, text: str) -> int:
        """Replace the cue list with a text file's (checked completely first)."""
        cues = parse_text(text, self.show.scenes)
        before = self.show.part()
        self.install(cues, None)
        self.show.changed("cue load", before)
        self._announce()
        return len(cues)

    def get(self, num) -> Cue:
        n = canonical(number(num, "cue number"))
        c = self.cues.get(n)
        if c is None:
            raise MixgraphError(f"no cue {fmt_number(n)}")
        return c

    def standby(self, num) -> Cue:
        c = self.get(num)
        self.playhead = c.number
        self._moved()
        self._announce()
        return c

    # ---- running -----------------------------------------------------------------------
    def go(self, time: int = 0, num=None) -> Cue:
        """Fire the cue at the playhead, or cue `num` (the playhead jumps there
        first), at sample `time` (0: now), and move the playhead to the next cue."""
        if num is not None:
            self.playhead = self.get(num).number
        if self.playhead is None or self.playhead not in self.cues:
            raise MixgraphError("no cue at the playhead")
        c = self.cues[self.playhead]
        self._fire(c, time or self.show.session.engine.time)
        return c

    def _fire(self, c: Cue, t0: int) -> None:
        s = self.show.session
        rate = s.engine.sample_rate
        self._token += 1
        token = self._token
        self.running[c.number] = token
        self.moving[token] = set()
        self.playhead = self._next(c.number)
        self._moved()
        self._announce()
        self._say("/cue/running", [fmt_number(c.number), 1])
        sc = self.show.scenes.get(c.scene) if c.scene else None
        fade = c.fade if c.fade is not None else (sc.fade if sc is not None else 0.0)
        t_act = t0 + _frames(c.prewait, rate)
        t_end = t_act + (_frames(fade, rate) if sc is not None else 0)

        def action() -> None:
            if self.running.get(c.number) != token:
                return
            when = t_act if t_act > s.engine.time else 0  # 0: now (the next block)
            if sc is not None and c.scene in self.show.scenes:
                try:
                    self.show.recall(c.scene, fade, when)
                except MixgraphError as e:
                    log.warning("cue %s: scene %s: %s", fmt_number(c.number), c.scene, e)
                if fade > 0:
                    self.moving[token] |= {(n, p) for n, ps in sc.values.items() for p in ps}
            for m in c.osc:
                addr, args = parse_osc(m)
                target = "/".join(addr.split("/")[:4])  # /node/<name>/<param>
                if addr.startswith("/node/") and self.show.safes and self.show.is_safe(target):
                    log.info("cue %s: %s is recall safe: not sent", fmt_number(c.number), addr)
                    continue
                if self.dispatch is not None:
                    self.dispatch(addr, args, _warn(c, addr), when)

        def end() -> None:
            if self.running.get(c.number) == token:
                del self.running[c.number]
                self.moving.pop(token, None)
                self._say("/cue/running", [fmt_number(c.number), 0])

        self._at(t_act, action)
        self._at(t_end, end)
        nxt = self._next(c.number)
        if nxt is not None and c.cont != "none":
            t_next = t_act + _frames(c.postwait, rate) if c.cont == "auto-continue" else t_end

            def follow() -> None:
                n2 = self.cues.get(nxt)
                if token not in self._stopped and n2 is not None:
                    self._fire(n2, t_next)
            self._at(t_next, follow)

    def _at(self, when: int, fn: Callable[[], None]) -> None:
        """Call fn from the control thread `lead` frames before sample time `when`
        (what it sends is timed to that sample), or at once when that has passed.
        Callbacks that come due while one runs (a chain of cues with no waits: each
        fires the next) wait in a queue and run in order after it, so a chain is a
        loop, not a recursion (400 cues ran out of stack); each cue's action still
        carries its own sample time."""
        s = self.show.session
        wake = when - self.lead
        if wake > s.engine.time:
            s.at(wake, fn)
            return
        if self._due is not None:  # inside a run of due callbacks: after them
            self._due.append(fn)
            return
        self._run_due(deque((fn,)))

    def _run_due(self, due: deque) -> None:
        """Run due callbacks in order; past CHAIN_SLICE_S the rest waits for the next
        block (Session.at), so that a long chain leaves room for other clients'
        commands between its parts (each part runs at least one callback)."""
        s = self.show.session
        limit = CHAIN_SLICE_S
        end = time.monotonic() + limit if limit is not None else None
        self._due = due
        try:
            while due:
                due.popleft()()
                if due and end is not None and time.monotonic() >= end:
                    s.at(s.engine.time + 1, lambda: self._run_due(due))
                    return
        finally:
            self._due = None

    def stop(self) -> int:
        """Stop every running cue and their fades where they are."""
        s = self.show.session
        n = len(self.running)
        for num, token in list(self.running.items()):
            self._stopped.add(token)
            for node, param in self.moving.pop(token, set()):
                if node in s.live and param in s.graph.nodes[node].params:
                    v = ramps.stop(s, node, param)
                    if self.show.notify is not None:
                        self.show.notify(node, param, v)
            del self.running[num]
            self._say("/cue/running", [fmt_number(num), 0])
        return n

    # ---- subscribers ---------------------------------------------------------------------
    def _announce(self) -> None:
        ph = self.playhead
        c = self.cues.get(ph) if ph is not None else None
        self._say("/cue/playhead", [fmt_number(ph) if ph is not None else "", c.name if c else ""])

    def _say(self, address: str, args: list) -> None:
        if self.publish is not None:
            self.publish(address, args)


def _frames(secs: float, rate: float) -> int:
    return int(round(secs * rate))


def _warn(c: Cue, addr: str):
    def reply(address: str, args: list) -> None:
        if address == "/fail":
            log.warning("cue %s: %s failed: %s", fmt_number(c.number), addr,
                        " ".join(str(a) for a in args[1:])[:200])
    return reply


def check_file(text: str) -> list[str]:
    """`mixgraph cues FILE`: the cues, one line each, or MixgraphError naming the line."""
    cues = parse_text(text)
    return [cues[k].line() for k in sorted(cues)]

