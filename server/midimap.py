"""A MIDI map's fields, checked: the one validator of every map, whether it comes
from /midi/map, /midi/learn, a /midi/load file, a patch's `midi` list, the
autosave or the journal (server/midi.py runs the maps).

check_map() checks the form of a map (the address's shape, kind, channel,
number and every option) using server/values.py's helpers, and raises only
MixgraphError. It does not ask whether the address's node is there: a map to
an absent node is kept and resolved when it is dispatched (docs/protocol.md,
MIDI). /midi/map adds the checks against the node as it is now
(MidiManager.make). `args` are only values the journal, the autosave and an
OSC message can carry: strings, int32, finite float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ._core import lib
from .errors import MixgraphError
from .values import _kind, _show, number, text, whole

log = logging.getLogger("mixgraph.midi")

KIND_NAMES = ("cc", "cc14", "nrpn", "pb", "note", "pc", "enc-r", "enc-l", "enc-2", "enc-b")
NUMBER_MAX = {"cc": 127, "cc14": 31, "nrpn": 16383, "pb": 0, "note": 127, "pc": 0,
              "enc-r": 127, "enc-l": 127, "enc-2": 127, "enc-b": 127}
MODE_NAMES = ("momentary", "toggle", "trigger")
OPTION_KEYS = ("min", "max", "pickup", "mode", "step", "feedback", "args")
FIELDS = ("address", "kind", "channel", "number")
# addresses that only answer (or manage the connection): never a map's target
QUERIES = {"/status", "/info", "/catalog", "/catalog/list", "/catalog/type", "/graph/dump",
           "/graph/nodes", "/graph/connections", "/patch/list", "/subscribe", "/unsubscribe",
           "/dump", "/meters/subscribe", "/meters/unsubscribe", "/reply-port", "/hello",
           "/sync"}
MAX_MAPS = lib.MG_MIDI_MAX_MAPS
MAX_ADDRESS = 256  # characters of a map's address
MAX_ARGS = 16      # leading arguments of a dispatched address
MAX_ARG_TEXT = 256  # characters of one string argument
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
FLOAT32_MAX = 3.4028234663852886e38
PATTERN_CHARS = set("*?[]{}# ")


@dataclass
class Map:
    """One binding of a MIDI control to an address, as /midi/map made it."""

    address: str
    kind: str
    channel: int  # 1-16
    number: int
    min: float | None = None
    max: float | None = None
    pickup: bool = False
    mode: str = "momentary"
    step: float = 1.0 / 127.0  # encoders: control travel per tick
    feedback: bool = True
    args: list = field(default_factory=list)  # leading arguments of a dispatched address
    slot: int = -1
    stamp: int = 0
    last: float | None = None  # the value this control shows (sent or moved to)

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.address, self.kind, self.channel, self.number)

    def doc(self) -> dict:
        d = {"address": self.address, "kind": self.kind, "channel": self.channel,
             "number": self.number}
        if self.min is not None:
            d["min"] = self.min
        if self.max is not None:
            d["max"] = self.max
        if self.pickup != (self.kind in ("cc", "pb")):
            d["pickup"] = int(self.pickup)
        if self.kind == "note":
            d["mode"] = self.mode
        if self.kind.startswith("enc"):
            d["step"] = self.step
        if not self.feedback:
            d["feedback"] = 0
        if self.args:
            d["args"] = list(self.args)
        return d

    def describe(self) -> list:
        """Its /midi/maps entry: address kind channel number key value ..."""
        out: list = [self.address, self.kind, self.channel, self.number]
        for k, v in self.doc().items():
            if k not in FIELDS:
                out += [k, " ".join(map(str, v)) if k == "args" else v]
        return out


def check_address(value) -> str:
    """A map's address, by its form: /node/<name>/<param>[/norm], or another
    address that is no query nor /midi/*. Whether it exists is not asked here."""
    a = text(value, "address", MAX_ADDRESS)
    if not a.startswith("/") or PATTERN_CHARS & set(a):
        raise MixgraphError("expected an OSC address (/node/<name>/<param> ...), "
                            f"not {_show(value)}")
    parts = a.split("/")
    if parts[1] == "node":
        if len(parts) not in (4, 5) or not parts[2] or not parts[3] or \
                (len(parts) == 5 and parts[4] != "norm"):
            raise MixgraphError(f"{a}: expected /node/<name>/<param>[/norm]")
    elif a.startswith("/midi/") or a in QUERIES or a == "/":
        raise MixgraphError(f"{a} cannot be the target of a map")
    return a


def _arg_value(text_: str):
    try:
        return int(text_)
    except ValueError:
        try:
            return float(text_)
        except ValueError:
            return text_


def check_arg(v, what: str = "args"):
    """One leading argument of a dispatched address: a string, an int32 or a finite
    float32 (what OSC, the journal and the autosave all carry)."""
    if isinstance(v, str):
        if len(v) > MAX_ARG_TEXT or "\0" in v:
            raise MixgraphError(f"{what}: strings hold at most {MAX_ARG_TEXT} characters "
                                "without NUL")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MixgraphError(f"{what}: expected strings and numbers, got {_kind(v)} {_show(v)}")
    if isinstance(v, int):
        if not INT32_MIN <= v <= INT32_MAX:
            raise MixgraphError(f"{what}: {_show(v)} does not fit a 32-bit integer")
        return v
    x = number(v, what)
    if abs(x) > FLOAT32_MAX:
        raise MixgraphError(f"{what}: {_show(v)} does not fit a 32-bit float")
    return x


def check_args(v) -> list:
    """`args`: one string of space-separated values (as /midi/map takes it) or a list."""
    if isinstance(v, str):
        if len(v) > MAX_ARGS * (MAX_ARG_TEXT + 1):
            raise MixgraphError(f"args: at most {MAX_ARGS} values")
        items = [_arg_value(x) for x in v.split()]
    elif isinstance(v, list | tuple):
        items = list(v)
    else:
        raise MixgraphError(f"args: expected a string or a list, got {_kind(v)} {_show(v)}")
    if len(items) > MAX_ARGS:
        raise MixgraphError(f"args: at most {MAX_ARGS} values")
    return [check_arg(x) for x in items]


def _limit(v, what: str) -> float:
    x = number(v, what)
    if isinstance(v, bool) or abs(x) > FLOAT32_MAX:
        raise MixgraphError(f"{what}: expected a number, got {_show(v)}")
    return x


def check_map(address, kind, channel, number_, opts, param: bool | None = None,
              hint: bool | None = None) -> Map:
    """A Map with every field checked (MixgraphError otherwise). param: whether the
    address is a parameter, when the caller knows it (/midi/map: its node is there);
    None when loading (the node may be absent: `args` are then kept, not refused,
    unless the address is a /norm one). hint: what a loading caller knows of it
    now, used only for a note's default mode."""
    if not isinstance(kind, str) or kind not in NUMBER_MAX:
        raise MixgraphError(f"kind {_show(kind)}: one of {', '.join(KIND_NAMES)}")
    channel = whole(channel, "channel", 1, 16)
    top = NUMBER_MAX[kind]
    try:
        number_ = whole(number_, "number", 0, top)
    except MixgraphError as e:
        raise MixgraphError(f"{e} for {kind}" + (" (cc14 is the MSB's number; its LSB is "
                                                 "number+32)" if kind == "cc14" else "")) \
            from None
    address = check_address(address)
    norm = address.endswith("/norm") and address.startswith("/node/")
    if norm:
        param = True
    m = Map(address, kind, channel, number_, pickup=kind in ("cc", "pb"))
    if kind == "note":
        p = param if param is not None else hint
        if p is None:  # loading, the node unknown: what a parameter's name suggests
            p = address.startswith("/node/") and address.split("/")[3] != "bypass"
        m.mode = "toggle" if p else "trigger"
    if isinstance(opts, list | tuple):
        if len(opts) % 2:
            raise MixgraphError("options come in pairs: <key> <value>")
        pairs = list(zip(opts[::2], opts[1::2], strict=True))
    elif isinstance(opts, dict):
        pairs = list(opts.items())
    else:
        raise MixgraphError(f"options: expected key/value pairs, got {_kind(opts)}")
    for k, v in pairs:
        if not isinstance(k, str) or k not in OPTION_KEYS:
            raise MixgraphError(f"unknown option {_show(k)}: {', '.join(OPTION_KEYS)}")
        if k == "mode":
            if kind != "note" or not isinstance(v, str) or v not in MODE_NAMES:
                raise MixgraphError("mode: momentary, toggle or trigger (notes only)")
            m.mode = v
        elif k == "args":
            if param:
                raise MixgraphError("args: only for an address that is no parameter "
                                    "(a parameter map sends the value alone)")
            m.args = check_args(v)
        elif k == "step":
            if not kind.startswith("enc"):
                raise MixgraphError(f"step: only for encoders (enc-*), not {kind}")
            s = _limit(v, "step")
            if not 0 < s <= 1 or s < 1e-6:
                raise MixgraphError("step: the control travel per tick, 1e-6..1")
            m.step = s
        elif k in ("min", "max"):
            x = _limit(v, k)
            if norm and not 0 <= x <= 1:
                raise MixgraphError(f"{k} {x:g} is outside 0..1 (norm)")
            setattr(m, k, x)
        else:  # pickup, feedback
            setattr(m, k, bool(whole(v, k, 0, 1)))
    return m


def check_maps(docs, strict: bool, what: str = "midi maps",
               hint: Callable[[str], bool | None] | None = None) -> list[Map]:
    """The maps of a document's list (a /midi/load file, a patch's `midi`, the
    autosave), each checked by check_map. strict: the first bad entry (or more
    than MAX_MAPS) is a MixgraphError naming it; else bad entries are logged and
    left out, and maps past MAX_MAPS dropped. hint(address): whether it names a
    parameter now (None: unknown), for a note map's default mode."""
    if not isinstance(docs, list):
        if strict:
            raise MixgraphError(f"{what}: expected a list, got {_kind(docs)}")
        log.warning("MIDI maps not restored: %s is %s, not a list", what, _kind(docs))
        return []
    if strict and len(docs) > MAX_MAPS:
        raise MixgraphError(f"{what}: at most {MAX_MAPS} maps, the file has {len(docs)}")
    made: dict[tuple, Map] = {}
    for i, d in enumerate(docs):
        try:
            if not isinstance(d, dict):
                raise MixgraphError(f"expected a map object, got {_kind(d)}")
            opts = {k: v for k, v in d.items() if k not in FIELDS}
            a = d.get("address")
            m = check_map(a, d.get("kind"), d.get("channel"), d.get("number"), opts,
                          hint=hint(a) if hint is not None and isinstance(a, str) else None)
        except MixgraphError as e:
            if strict:
                raise MixgraphError(f"{what}: map {i + 1}: {e}") from None
            log.warning("MIDI map %d not restored: %s", i + 1, e)
            continue
        if m.key not in made and len(made) >= MAX_MAPS:
            log.warning("MIDI map %d not restored: at most %d maps", i + 1, MAX_MAPS)
            continue
        made[m.key] = m  # a later map of the same control replaces the earlier
    return list(made.values())
