"""The patch document: a session as a plain, versioned document and back.

to_doc() writes what a session holds (nodes, options, parameters, learned
state, bypass, connections, metadata) as plain data for msgpack and JSON
(server/state.py reads and writes the files); validate_doc() checks a
document completely on a scratch graph before anything changes; load_doc()
makes a session equal to a document by a diff, so unchanged nodes keep
playing."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import lv2
from ._core import ffi, lib
from .actions import triggers_for
from .catalog import CATALOG
from .errors import MixgraphError
from .graph import Conn, Graph
from .midimap import check_maps
from .scenes import Show, show_of, trimmer
from .values import doc_node, plain, vca_members

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("mixgraph.session")

PATCH_FORMAT = "mixgraph-patch"
PATCH_VERSION = 2  # 2: scenes, recall safes and the cue list (`show`)
PATCH_VERSIONS = (1, 2)  # what load_doc reads (a version 1 patch has no show)
STATE_MAX = 1 << 16  # floats of saved node state (a profile: channels x bins)


def node_state(session: Session, name: str) -> list[float] | None:
    """What a stateful node (C restore hook) has learned, as floats; None if nothing."""
    node = session.live.get(name)
    if node is None or not node.g.type.has_state:
        return None
    buf = ffi.new("float[]", STATE_MAX)
    got = lib.mg_node_capture(node.ptr, buf, STATE_MAX)
    return [float(buf[i]) for i in range(got)] if got > 0 else None


def restore_state(session: Session, name: str, state: list) -> bool:
    """Load saved state into a node not yet in any plan; False (and a log line) if
    the node refuses it, e.g. a profile saved at another sample rate."""
    node = session.live.get(name)
    if node is None or not node.g.type.has_state or node.published:
        return False
    arr = ffi.new("float[]", [float(x) for x in state])
    if lib.mg_node_restore(node.ptr, arr, len(state)) != 0:
        log.warning("%s: saved state not restored (%d values; saved at another sample "
                    "rate or channel count?)", name, len(state))
        return False
    return True


def to_doc(session: Session) -> dict:
    """The patch as a plain document (msgpack/JSON)."""
    nodes = []
    for g in session.graph.nodes.values():
        opts = {k: v for k, v in g.options.items() if not k.startswith("_")} \
            if g.options else {}
        skip = triggers_for(g.type.name)  # an action's trigger is not state
        nodes.append({"name": g.name, "type": g.type.name, "channels": g.channels,
                      "options": opts,
                      "params": {k: v for k, v in g.params.items() if k not in skip}
                      if skip else dict(g.params)})  # (the autosave runs this at 4 Hz)
        state = node_state(session, g.name) if g.type.has_state else None
        if state:
            nodes[-1]["state"] = state
        plugin_state = lv2.node_state(session, g.name) if g.type.uri else None
        if plugin_state is not None:  # an LV2 plugin's own state (server/lv2.py)
            nodes[-1]["lv2_state"] = plugin_state
        if g.name in session.bypassed:
            nodes[-1]["bypass"] = True
    return {
        "format": PATCH_FORMAT,
        "version": PATCH_VERSION,
        "sample_rate": session.engine.sample_rate,
        "nodes": nodes,
        "connections": [[f"{c.src}:{c.src_port}", f"{c.dst}:{c.dst_port}"]
                        for c in session.graph.conns],
        "metadata": dict(session.metadata),
        **_midi_doc(session),
        "show": show_of(session).to_dict(),
    }


def _midi_doc(session: Session) -> dict:
    """The MIDI maps (server/midi.py), when there are any."""
    midi = getattr(session, "midi", None)
    maps = midi.to_doc() if midi is not None else getattr(session, "midi_doc", None)
    return {"midi": maps} if maps else {}



def load_doc(session: Session, doc: dict, _undo: bool = True) -> None:
    """Make the graph equal to doc, touching only what differs (a diff). A document
    that fails is refused before anything changes where that can be known (every
    value, the graph on a scratch copy, the players' and recorders' files), and
    anything that still fails halfway (a file that will not open, the engine
    refusing a node) puts the graph back as it was before the error goes out: a
    player's bad path used to fail the load after every other node was removed
    (attack5 A4)."""
    restoring = bool(getattr(session, "missing_ok", False))  # the autosave at start-up
    nodes, conns = validate_doc(doc, restoring)
    # checked before anything changes; restoring trims what an older version held
    # past this one's limits, a warning each, rather than start without the show
    show = Show(session).check(doc.get("show"), trimmer(session) if restoring else None)
    maps = None
    if "midi" in doc:  # checked before anything changes; restoring leaves a bad map out
        maps = check_maps(doc["midi"], not restoring, "patch: midi")
    if not restoring:
        _check_files(session, nodes)
    before = session.to_doc() if _undo and not restoring else None
    try:
        _load_checked(session, doc, nodes, conns, maps, show)
    except BaseException as e:
        if before is None:
            raise
        try:
            load_doc(session, before, _undo=False)
        except BaseException:  # noqa: BLE001 - the first error is the one to report
            log.exception("patch: putting the graph back after a failed load failed")
            raise e from None
        raise MixgraphError(f"{e} (nothing loaded: the graph is as it was)") from None


def _check_files(session: Session, nodes: list[dict]) -> None:
    """The file of each new player or recorder: inside the data directory, and for a
    player one that exists (what add_node would find only after the graph changed)."""
    for n in nodes:
        t = CATALOG.get(n["type"])
        g = session.graph.nodes.get(n["name"])
        if t is None or not t.needs_fifo or "path" not in n["options"]:
            continue
        if g is not None and g.type.name == t.name \
                and g.options.get("path") == n["options"]["path"]:
            continue
        session.resolve_path(n["options"]["path"], t.name != "player")


def _load_checked(session: Session, doc: dict, nodes: list[dict], conns: list,
                  maps: list | None, show: tuple) -> None:
    """load_doc's changes, the document and its maps checked."""
    for n in nodes:  # a trigger saved by an older version must not start an action
        skip = triggers_for(n["type"])
        if skip:
            n["params"] = {k: v for k, v in n["params"].items() if k not in skip}
    want = {n["name"]: n for n in nodes}
    for name in list(session.graph.nodes):
        g = session.graph.nodes[name]
        w = want.get(name)
        if (w is None or w["type"] != g.type.name or w["channels"] != g.channels
                or w["options"] != {k: v for k, v in g.options.items()
                                    if not k.startswith("_")}
                # saved state can only be loaded into a node in no plan yet
                or (g.type.has_state and w.get("state")
                    and w["state"] != node_state(session, name))
                or (g.type.uri and w.get("lv2_state") is not None
                    and w["lv2_state"] != lv2.node_state(session, name))):
            session.remove_node(name)
    # VCAs last: their members must exist
    for n in sorted(nodes, key=lambda n: n["type"] == "vca"):
        if n["name"] not in session.graph.nodes:
            session.add_node(n["type"], n["name"],
                          {**n["options"], "channels": n["channels"], **n["params"]})
            if n.get("state"):
                restore_state(session, n["name"], n["state"])
            if n.get("lv2_state") is not None:
                lv2.restore_state(session, n["name"], n["lv2_state"])
        else:
            g = session.graph.nodes[n["name"]]
            for k, v in n["params"].items():
                if g.params.get(k) != v:
                    session.set_param(n["name"], k, v)
    wanted: dict[Conn, tuple[str, str]] = {}  # each connection resolved once
    for src, dst in conns:
        s, sp, _ = session.graph.endpoint(src, "out")
        d, dp, _ = session.graph.endpoint(dst, "in")
        wanted[Conn(s.name, sp, d.name, dp)] = (src, dst)
    for c in list(session.graph.conns):
        if c not in wanted:
            session.disconnect(f"{c.src}:{c.src_port}", f"{c.dst}:{c.dst_port}")
    for c, (src, dst) in wanted.items():
        if c not in session.graph.conns:
            session.connect(src, dst)
    for n in nodes:
        if n["bypass"] != (n["name"] in session.bypassed):
            session.set_bypass(n["name"], n["bypass"])
    session.metadata = dict(doc.get("metadata") or {})
    if maps is not None:  # a document without maps leaves the maps as they are
        midi = getattr(session, "midi", None)
        if midi is not None:
            midi.install(maps)
        else:  # restored before the dispatcher exists: it loads them (MidiManager)
            session.midi_doc = [m.doc() for m in maps]
    show_of(session).take(show)  # a version 1 patch: no scenes, no cues



def validate_doc(doc, restoring: bool = False) -> tuple[list[dict], list[list[str]]]:
    """Check a patch document completely (every value through server/values.py, the
    graph on a scratch copy, the MIDI maps through server/midimap.py) before applying
    it; returns its nodes, normalised, and its connections. restoring (the autosave
    at start-up): a bad MIDI map is not an error here (load_doc leaves it out)."""
    if not isinstance(doc, dict) or doc.get("format") != PATCH_FORMAT:
        raise MixgraphError(f"not a {PATCH_FORMAT} document")
    if doc.get("version") not in PATCH_VERSIONS:
        raise MixgraphError(
            f"patch version {doc.get('version')!r} is not supported (this is {PATCH_VERSION})"
        )
    nodes = doc.get("nodes")
    conns = doc.get("connections")
    if not isinstance(doc.get("metadata") or {}, dict):
        raise MixgraphError("patch: `metadata` must be a map")
    if not isinstance(nodes, list) or not isinstance(conns, list):
        raise MixgraphError("patch: `nodes` and `connections` must be lists")
    meta = doc.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise MixgraphError("patch: `metadata` must be a map")
    plain(meta, "patch: metadata")
    rate = doc.get("sample_rate")  # what it was saved at (a node's saved state checks it)
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not 0 < rate < 1e7):
        raise MixgraphError(f"patch: `sample_rate` must be a number of Hz > 0, not "
                            f"{str(rate)[:40]!r}")
    if "midi" in doc and not restoring:
        check_maps(doc["midi"], True, "patch: midi")
    scratch = Graph()
    out = []
    for n in nodes:
        t, entry = doc_node(n, CATALOG, STATE_MAX)
        scratch.add_node(t, entry["name"], entry["channels"], entry["options"])
        out.append(entry)
    for n in out:
        if n["type"] == "vca":
            vca_members(f"patch: {n['name']}", n["options"].get("members", ""), scratch.nodes,
                        missing_ok=True)
    for c in conns:
        if not (isinstance(c, list | tuple) and len(c) == 2
                and all(isinstance(x, str) for x in c)):
            raise MixgraphError(f"patch: bad connection {c!r}"[:200])
        scratch.connect(c[0], c[1])
    return out, [list(c) for c in conns]
