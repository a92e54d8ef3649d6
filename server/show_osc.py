"""The OSC addresses of the show: /scene/* and /cue/* (server/scenes.py, server/cues.py).

handlers(dispatcher) gives the Dispatcher its literal addresses (one line in
server/osc.py); each handler raises MixgraphError for bad input before it
changes anything (the dispatcher answers /fail <address> <reason>)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cues import fmt_number
from .errors import GraphWorkRefused, MixgraphError
from .scenes import Show, show_of
from .state import PATCH_NAME_RE, read_bounded
from .values import number

if TYPE_CHECKING:
    from collections.abc import Callable

    from .osc import Dispatcher

CUE_FILE_MAX = 1 << 20


def _want(args: list, n: int, usage: str) -> None:
    if len(args) != n:
        raise MixgraphError(f"usage: {usage}")


MORPH_HELD_MAX = 64  # morphs held for the whole-graph budget, all hosts and scene pairs


def hold_morph(d: Dispatcher, args: list, reply: Callable, t: int, client) -> bool:
    """A /scene/morph the host's whole-graph budget refused: held (the latest for
    the host and the two scenes wins; the one it replaces is answered
    `/done /scene/morph a b x 0 superseded`, counted in morphs_coalesced) and
    applied by the control loop once the budget allows (apply_held_morphs), so a
    crossfader's last position always lands. Not in a bundle (atomic: refused
    whole) nor for a timed one; False when it cannot be held (then refused)."""
    from .ratelog import source_of

    if client is None or t or d._bundle is not None:
        return False
    number(args[2], "x")  # a bad position fails now, not when held
    key = (source_of(client.key), str(args[0]), str(args[1]))
    old = d.morph_held.pop(key, None)
    if old is not None:
        _superseded(d, old)
    elif len(d.morph_held) >= MORPH_HELD_MAX:
        return False
    d.morph_held[key] = (list(args), reply, client)
    return True


def _superseded(d: Dispatcher, held: tuple) -> None:
    args, reply, _ = held
    d.counters.morphs_coalesced += 1
    reply("/done", ["/scene/morph", args[0], args[1], float(number(args[2], "x")), 0,
                    "superseded"])


def apply_held_morphs(d: Dispatcher) -> None:
    """Apply the held morphs whose host's budget has refilled (Dispatcher.service)."""
    for key in list(d.morph_held):
        args, reply, client = d.morph_held[key]
        try:
            with d.graph_work(client, "/scene/morph"):
                del d.morph_held[key]
                n = show_of(d.session).morph(args[0], args[1], args[2], 0)
                d._commit()
        except GraphWorkRefused:
            continue  # still spent: it waits
        except MixgraphError as e:  # a scene deleted meanwhile...
            reply("/fail", ["/scene/morph", *args, str(e)])
            continue
        reply("/done", ["/scene/morph", args[0], args[1], float(number(args[2], "x")), n])


def bind(d: Dispatcher) -> Show:
    """The session's show, wired to this dispatcher (feedback, OSC actions)."""
    sh = show_of(d.session)
    sh.notify = lambda n, p, v: d._changed(n, p, v, None)
    sh.cues.dispatch = lambda a, args, reply, t: d.dispatch(a, args, reply, t, None)
    sh.cues.publish = lambda a, args: d.feedback.message(a, args) if d.feedback else None
    sh.cues.lead = d._lead()
    return sh


def handlers(d: Dispatcher) -> dict[str, Callable]:
    """The show's addresses for Dispatcher._literal."""
    def sh() -> Show:
        return bind(d)

    def commit() -> None:
        d._commit()

    def scene_store(args, reply, _t, client=None):
        if not args:
            raise MixgraphError("usage: /scene/store <name> [<address-pattern>...]")
        with d.graph_work(client, "/scene/store"):
            n = sh().store(args[0], list(args[1:]))
        reply("/done", ["/scene/store", args[0], n])

    def scene_recall(args, reply, t, client=None):
        if len(args) not in (1, 2):
            raise MixgraphError("usage: /scene/recall <name> [<fade_s>]")
        with d.graph_work(client, "/scene/recall"):
            skipped = sh().recall(args[0], args[1] if len(args) == 2 else None, t)
            commit()
        extra = [f"skipped {len(skipped)}: " + " ".join(skipped)[:900]] if skipped else []
        reply("/done", ["/scene/recall", args[0], *extra])

    def scene_morph(args, reply, t, client=None):
        if len(args) != 3:
            raise MixgraphError("usage: /scene/morph <a> <b> <x>")
        try:
            with d.graph_work(client, "/scene/morph"):
                n = sh().morph(args[0], args[1], args[2], t)
                commit()
        except GraphWorkRefused:
            if not hold_morph(d, args, reply, t, client):
                raise
            return
        reply("/done", ["/scene/morph", args[0], args[1], float(number(args[2], "x")), n])

    def scene_fade(args, reply, _t, client=None):
        if len(args) not in (1, 2, 3):
            raise MixgraphError("usage: /scene/fade <name> [<seconds> [linear|scurve]]")
        s = sh()
        if len(args) == 1:
            sc = s.get(args[0])
            reply("/scene/fade", [args[0], float(sc.fade), sc.curve])
            return
        s.set_fade(args[0], args[1], args[2] if len(args) == 3 else None)
        sc = s.get(args[0])
        reply("/done", ["/scene/fade", args[0], float(sc.fade), sc.curve])

    def scene_list(args, reply, _t, client=None):
        s = sh()
        for name, sc in s.scenes.items():
            reply("/scene/list.reply", [name, sc.count(), float(sc.fade)])
        reply("/done", ["/scene/list", len(s.scenes)])

    def scene_delete(args, reply, _t, client=None):
        d._want(args, 1, "/scene/delete <name>")
        sh().delete(args[0])
        reply("/done", ["/scene/delete", args[0]])

    def scene_rename(args, reply, _t, client=None):
        d._want(args, 2, "/scene/rename <old> <new>")
        sh().rename(args[0], args[1])
        reply("/done", ["/scene/rename", args[0], args[1]])

    def scene_safe(args, reply, _t, client=None):
        s = sh()
        if not args:
            for p in s.safes:
                reply("/scene/safe.reply", [p])
            reply("/done", ["/scene/safe", len(s.safes)])
            return
        _want(args, 2, "/scene/safe <address-pattern> 1|0")
        on = number(args[1], "safe") != 0.0
        s.set_safe(args[0], on)
        reply("/done", ["/scene/safe", args[0], int(on)])

    def cue_set(args, reply, _t, client=None):
        if not args:
            raise MixgraphError("usage: /cue/set <number> [<key> <value>]...")
        c = sh().cues.set(args[0], list(args[1:]))
        reply("/done", ["/cue/set", fmt_number(c.number), c.line()])

    def cue_go(args, reply, t, client=None):
        if len(args) > 1:
            raise MixgraphError("usage: /cue/go [<number>]")
        with d.graph_work(client, "/cue/go"):
            c = sh().cues.go(t, args[0] if args else None)
            commit()
        reply("/done", ["/cue/go", fmt_number(c.number), c.name])

    def cue_standby(args, reply, _t, client=None):
        _want(args, 1, "/cue/standby <number>")
        c = sh().cues.standby(args[0])
        reply("/done", ["/cue/standby", fmt_number(c.number), c.name])

    def cue_stop(args, reply, _t, client=None):
        n = sh().cues.stop()
        commit()
        reply("/done", ["/cue/stop", n])

    def cue_list(args, reply, _t, client=None):
        cl = sh().cues
        for c in cl.sorted():
            reply("/cue/list.reply", [fmt_number(c.number), c.line()])
        ph = cl.playhead
        reply("/done", ["/cue/list", len(cl.cues), fmt_number(ph) if ph is not None else ""])

    def cue_delete(args, reply, _t, client=None):
        _want(args, 1, "/cue/delete <number>")
        sh().cues.delete(args[0])
        reply("/done", ["/cue/delete", args[0]])

    def cue_load(args, reply, _t, client=None):
        d._want(args, 1, "/cue/load <file-name>")
        name = args[0]
        if not isinstance(name, str) or not PATCH_NAME_RE.fullmatch(name) or ".." in name:
            raise MixgraphError("bad file name: use letters, digits, _ . - (no paths)")
        path = d._need_store().root / name
        if not path.is_file():
            raise MixgraphError(f"no file {name!r} in the state directory")
        data = read_bounded(path, CUE_FILE_MAX, "cue file")  # not the whole of a big file
        n = sh().cues.load_text(data.decode("utf-8", "replace"))
        reply("/done", ["/cue/load", name, n])

    return {
        "/scene/store": scene_store, "/scene/recall": scene_recall,
        "/scene/morph": scene_morph, "/scene/fade": scene_fade, "/scene/list": scene_list,
        "/scene/delete": scene_delete, "/scene/rename": scene_rename,
        "/scene/safe": scene_safe,
        "/cue/set": cue_set, "/cue/go": cue_go, "/cue/standby": cue_standby,
        "/cue/stop": cue_stop, "/cue/list": cue_list, "/cue/delete": cue_delete,
        "/cue/load": cue_load,
    }
