"""MIDI controllers mapped to anything in the OSC address space (control thread).

`/midi/map <address> <kind> <channel> <number> [<key> <value>]...` binds a
control (a CC, a 14-bit CC, an NRPN, pitch bend, a note, program change or a
relative encoder) to a parameter (`/node/vox/gain`, `/node/vox/gain/norm`) or
to any other settable address (`/cue/go`, dispatched as OSC).

On JACK the maps run in C on the audio thread (csrc/midi.c): this module
builds the map table, with each parameter's taper as a lookup table, and
publishes it; the process callback applies a control at the frame it arrived
plus one period. What the audio thread did comes back through a ring: here the
value goes into the model (queries, subscribers, the autosave), addresses that
are no parameter are dispatched, learning picks the control that moved, and a
mapped parameter changed from anywhere else goes out on midi_out (never to the
control that moved it). Without JACK, python-rtmidi's ALSA sequencer ports
(when /dev/snd/seq exists) feed the same decoder from this thread, and the
values are set through the dispatcher. docs/protocol.md lists the addresses.
"""

from __future__ import annotations

import json
import logging
import os
import time
from functools import lru_cache
from pathlib import Path

import msgpack
import numpy as np

from . import tapers
from ._core import ffi, lib
from .actions import actions_for
from .errors import GRAPH_WORK_REFUSED, MixgraphError
from .midimap import MAX_MAPS, QUERIES, Map, check_map, check_maps
from .state import PATCH_NAME_RE, check_room, confine_path, read_bounded, write_atomic
from .values import whole

log = logging.getLogger("mixgraph.midi")

KINDS = {"cc": lib.MG_MIDI_CC, "cc14": lib.MG_MIDI_CC14, "nrpn": lib.MG_MIDI_NRPN,
         "pb": lib.MG_MIDI_PB, "note": lib.MG_MIDI_NOTE, "pc": lib.MG_MIDI_PC,
         "enc-r": lib.MG_MIDI_ENC_R, "enc-l": lib.MG_MIDI_ENC_L,
         "enc-2": lib.MG_MIDI_ENC_2, "enc-b": lib.MG_MIDI_ENC_B}
KIND_NAMES = {v: k for k, v in KINDS.items()}
MODES = {"momentary": lib.MG_MIDI_MOMENTARY, "toggle": lib.MG_MIDI_TOGGLE,
         "trigger": lib.MG_MIDI_TRIGGER}
# a CC waits this long for its LSB (cc14) or an NRPN to show, on the engine's clock
# (the MIDI's own time: a JACK server that stalls stalls it too), or LEARN_STALL_S on
# the wall clock when the engine's clock does not move
LEARN_WINDOW_S = 0.15
LEARN_STALL_S = 2.0
MIDI_HOST = "midi"  # the budget host MIDI's whole-graph work is charged to (osc.graph_work)
POLL_MAX = 8192        # events handled per service call (a flood waits for the next)
ALSA_QUEUE = 65536     # messages python-rtmidi holds for the control thread
MAP_FILE_VERSION = 1  # the "version" of a /midi/save file (one without is taken as this)
MAP_FILE_MAX = 16 << 20  # bytes of a /midi/load file
# kinds whose value is a position (absolute, or an encoder's running position): of
# several moves of one such map in one drain, only the latest is dispatched
POSITIONAL = frozenset({"cc", "cc14", "nrpn", "pb", "enc-r", "enc-l", "enc-2", "enc-b"})
STATS = ("events", "applied", "pickup_waits", "malformed", "sysex", "lost", "sent",
         "out_dropped", "unmapped", "held")


def _lut_size(kind: str) -> int:
    return 128 if kind in ("cc", "note", "pc") else 16384


@lru_cache(maxsize=64)
def _lut(taper: str, lo: float, hi: float, n_lo: float, n_hi: float, size: int) -> bytes:
    """The parameter values at `size` evenly spaced control positions (float32),
    through the published taper (server/tapers.py), over the part n_lo..n_hi of
    its travel."""
    vals = [tapers.to_value(taper, lo, hi, n_lo + (n_hi - n_lo) * i / (size - 1))
            for i in range(size)]
    return bytes(ffi.buffer(ffi.new("float[]", vals)))


@lru_cache(maxsize=64)
def _linear_lut(lo: float, hi: float, size: int) -> bytes:
    """The values lo..hi at `size` evenly spaced control positions (float32), for an
    address that is no parameter. Cached: a publish rebuilds the table of every map."""
    x = lo + (hi - lo) * np.arange(size, dtype=np.float64) / (size - 1)
    return x.astype(np.float32).tobytes()


class MidiManager:
    """The MIDI maps of one dispatcher: /midi/* handlers, the C table, the rings."""

    def __init__(self, dispatcher) -> None:
        self.d = dispatcher
        self.session = dispatcher.session
        self.session.midi = self  # patch.py saves and loads the maps through it
        self.maps: dict[tuple[str, str, int, int], Map] = {}
        self.ptr = ffi.NULL  # the engine's mg_midi, made at the first map or learn
        self._gen = 0
        self._stamp = 0
        self._tables: list[tuple[int, object, list[int]]] = []  # (gen, table, ref keys)
        self._sig: tuple | None = None
        self._resolved: dict[int, tuple] = {}  # slot -> a playing parameter's resolution
        self._learning: dict | None = None
        self._ev = ffi.new("mg_midi_event *")
        self._fail_log = 0.0
        self._held: set[int] = set()  # map slots held by a touch (_hold_touched)
        self._applied = 0  # parameters set by _dispatch (the ALSA / rtmidi path)
        self._coalesced = 0  # positional moves superseded by a later one (_drain)
        self._retry: dict[int, list] = {}  # slot -> [map, out, value] refused by the budget
        self._alsa = None
        self.mode, self.why = self._probe()  # the daemon's configure() says it in the log
        pending = getattr(self.session, "midi_doc", None)
        if pending:
            self.load_doc(pending, strict=False)

    # ---- where MIDI comes from ------------------------------------------------------
    def configure(self, api: str = "auto", jack_server: str | None = None,
                  jack_name: str = "mixgraph") -> None:
        """Choose where MIDI comes from (`serve --midi-api`): auto (the JACK backend's own
        ports, else the ALSA sequencer), alsa, or jack (python-rtmidi's JACK client, for
        MIDI on a JACK server while the audio runs on another backend)."""
        if api not in ("auto", "alsa", "jack"):
            raise MixgraphError(f"--midi-api: expected auto, alsa or jack, not {api!r}")
        self._api, self._jack_server, self._jack_name = api, jack_server, jack_name
        self.mode, self.why = self._probe()
        log.info("MIDI: %s", self.why)
        if self.mode in ("alsa", "rtmidi-jack") and api != "auto":
            self._ensure()  # asked for by name: open the ports now, so the banner is true

    def _probe(self) -> tuple[str, str]:
        api = getattr(self, "_api", "auto")
        backend = str(self.d.info.get("backend", ""))
        if api != "alsa" and backend.startswith("jack") and lib.mg_jack_available():
            name = getattr(self, "_jack_name", "mixgraph")
            return "jack", f"JACK MIDI ports {name}:midi_in and {name}:midi_out"
        if api == "jack":
            try:
                import rtmidi  # noqa: F401  (python-rtmidi, the `midi` extra)
            except ImportError:
                return "unavailable", ("unavailable: --midi-api jack needs python-rtmidi "
                                       "(pip install 'mixgraph[midi]')")
            name = getattr(self, "_jack_name", "mixgraph")
            return "rtmidi-jack", (f"python-rtmidi's JACK clients: ports {name}:midi_in and "
                                   f"{name}-out:midi_out")
        if not os.path.exists("/dev/snd/seq"):
            return "unavailable", ("unavailable: no JACK backend (--backend jack) and no ALSA "
                                   "sequencer (/dev/snd/seq is missing)")
        try:
            import rtmidi  # noqa: F401,F811
        except ImportError:
            return "unavailable", ("unavailable: no JACK backend, and python-rtmidi is not "
                                   "installed for the ALSA sequencer (pip install "
                                   "'mixgraph[midi]')")
        return "alsa", "ALSA sequencer ports mixgraph:midi_in and mixgraph:midi_out"

    def _ensure(self) -> None:
        """The C side exists (it is made at the first map or learn)."""
        if self.ptr != ffi.NULL:
            return
        m = lib.mg_midi_new()
        if m == ffi.NULL:
            raise MixgraphError("out of memory for the MIDI maps")
        self.ptr = m
        lib.mg_engine_set_midi(self.session.engine.ptr, m)  # freed with the engine
        if self.mode in ("alsa", "rtmidi-jack"):
            self._open_alsa()

    def _open_alsa(self) -> None:
        """Open the python-rtmidi ports of the control-thread path: the ALSA sequencer's,
        or (mode rtmidi-jack) a JACK client's. Events from them go through the same C
        decoder and maps as the JACK backend's, applied by the dispatcher."""
        try:
            import rtmidi

            if self.mode == "rtmidi-jack":
                if self._jack_server:  # libjack reads the server's name from here
                    os.environ["JACK_DEFAULT_SERVER"] = self._jack_server
                api, name_in = rtmidi.API_UNIX_JACK, self._jack_name
                name_out = f"{self._jack_name}-out"
            else:
                api, name_in, name_out = rtmidi.API_LINUX_ALSA, "mixgraph", "mixgraph"
            # polled by the control thread (_alsa_in), no callback: python-rtmidi's
            # input thread queues each message without the GIL, so a cc14's MSB and
            # LSB of one period are queued together; a Python callback took the GIL
            # per message, and on a loaded host the LSB could reach the queue after
            # the learning window had closed on the MSB alone (learned as a 7-bit cc)
            mi = rtmidi.MidiIn(api, name_in, queue_size_limit=ALSA_QUEUE)
            mi.ignore_types(sysex=False)
            mi.open_virtual_port("midi_in")
            mo = rtmidi.MidiOut(api, name_out)
            mo.open_virtual_port("midi_out")
            self._alsa = (mi, mo)
        except Exception as e:  # noqa: BLE001 - a missing sequencer must not stop the server
            where = "JACK (python-rtmidi)" if self.mode == "rtmidi-jack" else "ALSA sequencer"
            self.mode, self.why = "unavailable", f"unavailable: {where}: {e}"
            log.warning("MIDI: %s", self.why)

    # ---- the address space --------------------------------------------------------
    def handlers(self) -> dict:
        return {"/midi/map": self._map, "/midi/unmap": self._unmap, "/midi/maps": self._list,
                "/midi/learn": self._learn, "/midi/save": self._save, "/midi/load": self._load,
                "/midi/status": self._status}

    def status(self) -> list:
        """What /status adds: midi <state>, midi_maps, and the counters once in use."""
        out: list = ["midi", self.mode, "midi_maps", len(self.maps)]
        if self.ptr != ffi.NULL:
            st = ffi.new(f"uint64_t[{len(STATS)}]")
            lib.mg_midi_stats(self.ptr, st, len(STATS))
            st[STATS.index("applied")] += self._applied  # the control thread's path
            out += [x for k, v in zip(STATS, st, strict=True) for x in (f"midi_{k}", int(v))]
        return out

    def _status(self, args: list, reply, _t: int, client=None) -> None:
        reply("/midi/status.reply", ["state", self.mode, "why", self.why, *self.status()[2:]])

    def target(self, address: str) -> tuple:
        """What an address names now: ("param", node, param, norm) or ("osc",);
        MixgraphError when it does not exist or cannot be set."""
        if not isinstance(address, str) or not address.startswith("/"):
            raise MixgraphError("expected an OSC address (/node/<name>/<param> ...)")
        parts = address.split("/")
        if parts[1] == "node":
            if len(parts) not in (4, 5) or not parts[2] or not parts[3] or \
                    (len(parts) == 5 and parts[4] != "norm"):
                raise MixgraphError(f"{address}: expected /node/<name>/<param>[/norm]")
            name, param = parts[2], parts[3]
            node = self.session.live.get(name)
            if node is None:
                raise MixgraphError(f"no node named {name!r}")
            spec = node.g.type.param(param)
            if spec is None:
                if len(parts) == 4 and (param in actions_for(node.g.type.name)
                                        or param == "bypass"):
                    return ("osc",)
                if self.session.has_readout(name, param):
                    raise MixgraphError(f"{param} is a read-only value")
                raise MixgraphError(f"{name} ({node.g.type.name}) has no parameter {param!r}")
            return ("param", name, param, len(parts) == 5)
        if address.startswith("/midi/") or address in QUERIES:
            raise MixgraphError(f"{address} cannot be the target of a map")
        if address not in self.d._literal:
            raise MixgraphError(f"no such address: {address}")
        return ("osc",)

    def make(self, address: str, kind: str, channel, number, opts: list | dict) -> Map:
        """A checked Map (not yet added) for /midi/map and /midi/learn: its form
        (server/midimap.py), then against the address as it is now: the node is
        there, has that parameter, min/max lie in its range, no `args` for a
        parameter."""
        check_map(address, kind, channel, number, opts)  # the form's reasons first
        t = self.target(address)
        m = check_map(address, kind, channel, number, opts, param=t[0] == "param")
        if t[0] == "param":
            spec = self.session.live[t[1]].g.type.param(t[2])
            lo, hi = (0.0, 1.0) if t[3] else (spec.min, spec.max)
            for k in ("min", "max"):
                v = getattr(m, k)
                if v is not None and not lo <= v <= hi:
                    raise MixgraphError(f"{k} {v:g} is outside {t[1]}/{t[2]}'s range "
                                        f"{lo:g}..{hi:g}{' (norm)' if t[3] else ''}")
        return m

    @staticmethod
    def _journalable(docs: list[dict]) -> None:
        """MixgraphError unless the journal and the autosave can hold these maps: checked
        before a change, so no /done goes out for an edit that could not be saved."""
        try:
            msgpack.packb(docs, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            raise MixgraphError(f"the map cannot be saved ({e})") from None

    def add(self, m: Map) -> None:
        old = self.maps.get(m.key)
        if old is None and len(self.maps) >= MAX_MAPS:
            raise MixgraphError(f"at most {MAX_MAPS} maps")
        self._journalable([m.doc()])
        self._ensure()
        used = {x.slot for x in self.maps.values()}
        m.slot = old.slot if old else min(set(range(MAX_MAPS)) - used)
        self._stamp += 1
        m.stamp = self._stamp
        self.maps[m.key] = m
        self._changed()

    def _changed(self) -> None:
        self._sig = None  # rebuild the table at the next service
        self.session._touch()  # the autosave

    def _journal(self) -> None:
        """The maps as one journal op, before the reply that acknowledges a change
        leaves (server/journal.py): a SIGKILL right after it loses nothing."""
        self.session._log(("midi", self.to_doc()))

    def _map(self, args: list, reply, _t: int, client=None) -> None:
        if len(args) < 4:
            raise MixgraphError("usage: /midi/map <address> <kind> <channel 1-16> <number> "
                                "[<key> <value>]...")
        m = self.make(args[0], args[1], args[2], args[3], list(args[4:]))
        self.add(m)
        self._journal()
        reply("/done", ["/midi/map", *m.describe()])

    def _unmap(self, args: list, reply, _t: int, client=None) -> None:
        if not args:
            raise MixgraphError("usage: /midi/unmap <address> [<kind> <channel> <number>]")
        which = tuple(args[1:4])
        if which and len(which) != 3:
            raise MixgraphError("usage: /midi/unmap <address> [<kind> <channel> <number>]")
        if which:
            which = (which[0], whole(which[1], "channel"), whole(which[2], "number"))
        gone = [k for k in self.maps if k[0] == args[0] and (not which or k[1:] == which)]
        if not gone:
            raise MixgraphError(f"no map to {args[0]}")
        for k in gone:
            del self.maps[k]
        self._changed()
        self._journal()
        reply("/done", ["/midi/unmap", args[0], len(gone)])

    def _list(self, args: list, reply, _t: int, client=None) -> None:
        out: list = []
        for m in self.maps.values():
            out += m.describe() + [";"]
        reply("/midi/maps", [len(self.maps), *out])

    def _learn(self, args: list, reply, _t: int, client=None) -> None:
        if not args:
            self._learning = None
            if self.ptr != ffi.NULL:
                lib.mg_midi_set_learn(self.ptr, 0)
            reply("/done", ["/midi/learn", "cancelled"])
            return
        address = args[0]
        kind = args[1] if len(args) > 1 and isinstance(args[1], str) and args[1] in KINDS \
            else None
        opts = list(args[2:] if kind else args[1:])
        self.make(address, kind or "cc", 1, 0, opts)  # checks the address and options now
        if self.mode == "unavailable":
            raise MixgraphError(f"MIDI is {self.why}")
        self._ensure()
        self._learning = {"address": address, "kind": kind, "opts": opts, "reply": reply,
                          "seen": [], "first": None}
        lib.mg_midi_set_learn(self.ptr, 1)
        reply("/done", ["/midi/learn", address, "move a control"])

    # ---- files and the patch document ------------------------------------------
    def to_doc(self) -> list[dict]:
        return [m.doc() for m in self.maps.values()]

    def load_doc(self, docs, strict: bool = True) -> None:
        """Replace the maps with docs' (each checked by server/midimap.py, by its form:
        a map to a node that is not there is kept). strict: all or nothing
        (MixgraphError, the maps as they were); else (the autosave, the journal) a
        map that fails is logged and left out. The new set is built whole, then
        swapped in."""
        made = check_maps(docs, strict, hint=self._is_param)
        self.install(made)

    def _is_param(self, address: str) -> bool | None:
        """Whether address names a parameter now; None when it cannot be told."""
        t = self.target_or_none(address)
        return None if t is None else t[0] == "param"

    def install(self, made: list[Map]) -> None:
        """Make `made` (checked maps, at most MAX_MAPS) the maps, all at once."""
        self._journalable([m.doc() for m in made])
        self._retry = {}  # slots are numbered again
        if made:
            self._ensure()
        new: dict[tuple[str, str, int, int], Map] = {}
        for slot, m in enumerate(made):
            self._stamp += 1
            m.slot, m.stamp = slot, self._stamp
            new[m.key] = m
        self.maps = new
        self._changed()

    def _path(self, name) -> Path:
        if not isinstance(name, str) or not PATCH_NAME_RE.fullmatch(name) or ".." in name:
            raise MixgraphError("bad map file name: use letters, digits, _ . - (no paths)")
        root = Path(self.d.store.root) if self.d.store is not None else self.session.data_dir
        return confine_path(root, f"midi/{name}.json", write=True)

    def _save(self, args: list, reply, _t: int, client=None) -> None:
        if len(args) != 1:
            raise MixgraphError("usage: /midi/save <name>")
        p = self._path(args[0])
        text = json.dumps({"format": "mixgraph-midi", "version": MAP_FILE_VERSION,
                           "maps": self.to_doc()}, indent=1) + "\n"
        if self.d.store is not None:  # as a patch: never the journal's last MBs
            check_room(p.parent, len(text), self.d.store.min_free, "a saved MIDI map file")
        # as a patch: write-and-rename with fsync (a power cut leaves the old file or
        # the new, never an empty one; a kill's partial write is removed at start-up)
        write_atomic(p, text.encode())
        reply("/done", ["/midi/save", args[0], len(self.maps)])

    def _load(self, args: list, reply, _t: int, client=None) -> None:
        if len(args) != 1:
            raise MixgraphError("usage: /midi/load <name>")
        p = self._path(args[0])
        if not p.is_file():
            raise MixgraphError(f"no saved MIDI maps named {args[0]!r}")
        try:  # bounded as a patch or a score is (a map file is a few hundred kB)
            doc = json.loads(read_bounded(p, MAP_FILE_MAX, "MIDI map file").decode())
        except RecursionError:
            raise MixgraphError(f"{args[0]}: not a MIDI map file (nested too deep)") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise MixgraphError(f"{args[0]}: not a MIDI map file ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != "mixgraph-midi":
            raise MixgraphError(f"{args[0]}: not a MIDI map file")
        if doc.get("version", MAP_FILE_VERSION) != MAP_FILE_VERSION:
            # a newer server's file: its maps may mean something else, and loading
            # would replace the maps (a version 99 file of no maps emptied them; attack10)
            raise MixgraphError(f"{args[0]}: MIDI map file version {doc.get('version')!r} "
                                f"is not supported (this server reads {MAP_FILE_VERSION})")
        self.load_doc(doc.get("maps"), strict=True)
        self._journal()
        reply("/done", ["/midi/load", args[0], len(self.maps)])

    # ---- the table the audio thread uses --------------------------------------------
    def _resolve(self, m: Map):
        """(node, spec, n_lo, n_hi) of a parameter map whose node plays, None for
        an address that is no parameter, False when its node is away."""
        t = self.target_or_none(m.address)
        if t is None:
            return False
        if t[0] == "osc":
            return None
        node = self.session.live.get(t[1])
        if node is None or not node.published:
            return False
        spec = node.g.type.param(t[2])
        if t[3]:
            n_lo = 0.0 if m.min is None else m.min
            n_hi = 1.0 if m.max is None else m.max
        else:
            def n(v, dflt):
                return dflt if v is None else tapers.to_norm(spec.taper, spec.min, spec.max, v)
            n_lo, n_hi = n(m.min, 0.0), n(m.max, 1.0)
        return node, spec, t[2], n_lo, n_hi

    def target_or_none(self, address: str):
        try:
            return self.target(address)
        except MixgraphError:
            return None

    def _signature(self) -> tuple:
        live = self.session.live
        sig = []
        for m in self.maps.values():
            name = m.address.split("/")[2] if m.address.startswith("/node/") else ""
            node = live.get(name) if name else None
            sig.append((m.slot, m.stamp, id(node) if node is not None and node.published
                        else None))
        return tuple(sig)

    def _publish(self) -> None:
        self._gen += 1
        maps = list(self.maps.values())
        t = lib.mg_midi_table_new(len(maps), self._gen)
        if t == ffi.NULL:
            raise MixgraphError("out of memory for the MIDI map table")
        keys: list[int] = []
        self._resolved: dict[int, tuple] = {}
        for m in maps:
            r = self._resolve(m)
            if r is False:
                continue
            size = _lut_size(m.kind)
            if r is None:
                lo = 0.0 if m.min is None else m.min
                hi = 1.0 if m.max is None else m.max
                lut, node, index = _linear_lut(lo, hi, size), ffi.NULL, 0
            else:
                node, spec, _param, n_lo, n_hi = r
                lut = _lut(spec.taper, spec.min, spec.max, n_lo, n_hi, size)
                index = spec.index
                keys += self.session.refs.ref_all([node])
                self._resolved[m.slot] = r
                node = node.ptr
            mode = MODES[m.mode] if m.kind == "note" else 0
            if lib.mg_midi_table_add(t, m.slot, m.stamp, KINDS[m.kind], m.channel - 1,
                                     m.number, mode, node, index, int(m.pickup),
                                     ffi.from_buffer("float[]", lut), size, m.step) != 0:
                log.error("MIDI: cannot add the map to %s to the table", m.address)
        self._tables.append((self._gen, t, keys))
        old = lib.mg_midi_publish(self.ptr, t)
        if old != ffi.NULL:  # never taken by the audio thread: ours to free
            self._free_table(old)

    def _free_table(self, t) -> None:
        for i, (_g, tt, keys) in enumerate(self._tables):
            if tt == t:
                lib.mg_midi_table_free(tt)
                self.session.refs.unref(keys)
                del self._tables[i]
                return

    def _collect_tables(self) -> None:
        adopted = lib.mg_midi_adopted(self.ptr)
        for g, t, _k in list(self._tables):
            if g < adopted:
                self._free_table(t)

    # ---- the control loop ------------------------------------------------------------
    def service(self) -> None:
        """Called by the dispatcher's service: tables, events, learning, feedback."""
        if self.ptr == ffi.NULL:
            return
        sig = self._signature()
        if sig != self._sig:
            self._publish()
            self._sig = sig
        self._collect_tables()
        self._hold_touched()
        if self._alsa is not None:
            self._alsa_in()
        now = self.session.engine.time  # before the drain: every event up to now is in
        self._drain()
        ln = self._learning
        if ln is not None and ln["first"] is not None and (
                now - ln["first"] >= LEARN_WINDOW_S * self.session.engine.sample_rate
                or time.monotonic() - ln["first_s"] >= LEARN_STALL_S):
            self._learn_decide()
        self._feedback()
        if self._alsa is not None:
            self._alsa_out()

    def _hold_touched(self) -> None:
        """A parameter a client touches (/touch, a finger on a fader) is not moved by
        MIDI: its maps are held in the engine until the touch ends or lapses."""
        if not self.d.touch and not self._held:
            return
        held = set()
        for m in self.maps.values():
            r = self._resolved.get(m.slot)
            if r is not None and self.d.touch_holder(r[0].g.name, r[2]) is not None:
                held.add(m.slot)
        for slot in held ^ self._held:
            lib.mg_midi_set_held(self.ptr, slot, int(slot in held))
        self._held = held

    def _drain(self) -> None:
        """Take the events the decoder posted: parameters the audio thread moved are
        recorded, and the moves of maps it does not apply are dispatched as OSC. A
        control sweeps through many positions between two drains (a fader, a pitch
        bend, up to 8,192 events), and an address that is no parameter can be a
        whole-graph edit (`/scene/morph`, 34 ms of control-thread CPU for two scenes
        of 100 eq8; a patch load): each positional map is dispatched once per drain
        at its latest position, in the order its first move came. Notes and program
        changes are presses and each is dispatched (attack9: 300 CCs of one fader
        mapped to /scene/morph held the control thread 127 s, 10 s of CPU)."""
        by_slot = {m.slot: m for m in self.maps.values()}
        latest: dict[int, float] = {}  # parameter values moved by the audio thread
        moves: list[list] = []  # [map, out, value] to dispatch, in order
        at: dict[int, int] = {}  # slot of a positional map -> its index in moves
        # a control's latest position refused by the "midi" host's whole-graph budget
        # goes again (unless it moved since): a fader's last morph must land
        for slot, mv in self._retry.items():
            at[slot] = len(moves)
            moves.append(mv)
        self._retry = {}
        ev = self._ev
        for _ in range(POLL_MAX):
            if not lib.mg_midi_poll(self.ptr, ev):
                break
            m = by_slot.get(ev.slot)
            if ev.slot < 0 or self._learning is not None:
                self._learn_event(ev, m)
                if ev.slot < 0:
                    continue
            if m is None or ev.flags & lib.MG_MIDI_F_PICKUP:
                continue
            if ev.flags & lib.MG_MIDI_F_APPLIED:
                latest[ev.slot] = float(ev.out)
            elif ev.flags & lib.MG_MIDI_F_DISPATCH:
                k = at.get(ev.slot)
                if k is not None:  # a later position of the same control
                    moves[k][1:] = [float(ev.out), int(ev.value)]
                    self._coalesced += 1
                    continue
                if m.kind in POSITIONAL:
                    at[ev.slot] = len(moves)
                moves.append([m, float(ev.out), int(ev.value)])
        for m, out, value in moves:
            if self.maps.get(m.key) is m:  # not unmapped by an earlier move's address
                if self._dispatch(m, out, value) and m.kind in POSITIONAL:
                    self._retry[m.slot] = [m, out, value]
        for slot, v in latest.items():
            m = by_slot[slot]
            r = self._resolved.get(slot)
            if r is None:
                continue
            node, _spec, param, _lo, _hi = r
            if self.session.live.get(node.g.name) is not node:
                continue
            self.session._record(node, param, v)
            if node.g.type.name == "vca":
                self.session._apply_vca()
            m.last = node.g.params[param]
            self.d._changed(node.g.name, param, v, None)

    def _dispatch(self, m: Map, out: float, value: int) -> bool:
        """A control moved a map the audio thread does not apply: send it as OSC
        (out: the value the map made of the move, value: the control's raw value).
        True when the "midi" host's whole-graph budget refused it."""
        t = self.target_or_none(m.address)
        if t is None:
            return False
        if t[0] == "param":  # the ALSA path: set through the dispatcher
            address = f"/node/{t[1]}/{t[2]}"
            args = [out]
        elif m.kind == "note" and m.mode == "trigger":
            address, args = m.address, list(m.args)
        elif m.kind == "pc":
            address, args = m.address, [*m.args, value]
        else:
            address, args = m.address, [*m.args, out]
        failed = []

        def reply(a: str, r: list) -> None:
            if a == "/fail":
                failed.append(r)
            self._reply(a, r)

        # whole-graph work (a note on /scene/recall, /cue/go, /patch/load) is charged
        # to the "midi" host's budget as a network host's is (osc.graph_work): a
        # controller's pads could otherwise drive unbounded control work (attack10)
        self.d.charged_to = MIDI_HOST
        try:
            self.d.dispatch(address, args, reply)
        finally:
            self.d.charged_to = None
        if t[0] == "param" and not failed:
            self._applied += 1
        if t[0] == "param":
            node = self.session.live.get(t[1])
            if node is not None:
                m.last = node.g.params.get(t[2])
        else:
            m.last = out
        return any(r and isinstance(r[-1], str) and GRAPH_WORK_REFUSED in r[-1]
                   for r in failed)

    def _reply(self, address: str, args: list) -> None:
        if address == "/fail":
            now = time.monotonic()
            if now - self._fail_log >= 1.0:
                self._fail_log = now
                log.warning("MIDI: %s", " ".join(str(a) for a in args))

    # ---- learning ----------------------------------------------------------------------
    def _learn_event(self, ev, m: Map | None) -> None:
        ln = self._learning
        if ln is None or ev.flags & lib.MG_MIDI_F_OFF:
            return
        kind = KIND_NAMES.get(ev.kind)
        if m is not None:  # a control already mapped elsewhere: learn it as it is mapped
            kind = m.kind
        ln["seen"].append((kind, ev.channel + 1, ev.number))
        if ln["first"] is None:  # the sample time it came in (a cc14's LSB follows it)
            ln["first"], ln["first_s"] = int(ev.time), time.monotonic()
        if kind in ("note", "pb", "pc") and (ln["kind"] in (None, kind)):
            self._learn_decide()

    def _learn_decide(self) -> None:
        ln, self._learning = self._learning, None
        lib.mg_midi_set_learn(self.ptr, 0)
        seen = ln["seen"]
        want = ln["kind"]
        pick = None
        if want is not None:
            base = "cc" if want.startswith("enc") else want
            pick = next(((want, c, n) for k, c, n in seen if k == base), None)
        else:
            for k in ("note", "pb", "pc", "nrpn"):
                pick = next(((k, c, n) for kk, c, n in seen if kk == k), None)
                if pick:
                    break
            if pick is None:
                ccs = [(c, n) for k, c, n in seen if k == "cc"]
                lsb = next(((c, n - 32) for c, n in ccs if 32 <= n < 64 and (c, n - 32) in ccs),
                           None)
                if lsb:
                    pick = ("cc14", *lsb)
                elif ccs:
                    pick = ("cc", *ccs[0])
        reply = ln["reply"]
        if pick is None:  # only other kinds moved: keep waiting for the one asked for
            ln["seen"], ln["first"] = [], None
            self._learning = ln
            lib.mg_midi_set_learn(self.ptr, 1)
            return
        try:
            m = self.make(ln["address"], pick[0], pick[1], pick[2], ln["opts"])
            self.add(m)
            self._journal()
        except MixgraphError as e:
            reply("/fail", ["/midi/learn", ln["address"], str(e)])
            return
        log.info("MIDI: learned %s %s channel %d number %d", m.address, m.kind, m.channel,
                 m.number)
        reply("/midi/learn.reply", m.describe())

    # ---- feedback to midi_out ----------------------------------------------------
    def _feedback(self) -> None:
        live = self.session.live
        for m in self.maps.values():
            if not m.feedback or m.kind == "note" and m.mode == "trigger":
                continue
            r = self._resolved.get(m.slot)
            if r is None:
                continue
            node, spec, param, n_lo, n_hi = r
            if live.get(node.g.name) is not node:
                continue
            v = node.g.params.get(param)
            if v is None or v == m.last:
                continue
            m.last = v
            if m.kind == "pc":
                pos = None
                prog = min(max(int(round(v)), 0), 127)
            else:
                n = tapers.to_norm(spec.taper, spec.min, spec.max, v)
                pos = 0.0 if n_hi == n_lo else min(max((n - n_lo) / (n_hi - n_lo), 0.0), 1.0)
            for msg in self._encode(m, pos, prog if pos is None else 0):
                lib.mg_midi_send(self.ptr, msg, len(msg))

    @staticmethod
    def _encode(m: Map, pos: float | None, prog: int) -> list[bytes]:
        ch = m.channel - 1
        if m.kind == "pc":
            return [bytes([0xC0 | ch, prog])]
        if m.kind in ("cc14", "nrpn", "pb"):
            x = int(round(pos * 16383))
            hi, lo = x >> 7, x & 0x7F
            if m.kind == "pb":
                return [bytes([0xE0 | ch, lo, hi])]
            if m.kind == "cc14":
                return [bytes([0xB0 | ch, m.number, hi]), bytes([0xB0 | ch, m.number + 32, lo])]
            return [bytes([0xB0 | ch, 99, m.number >> 7]), bytes([0xB0 | ch, 98, m.number & 0x7F]),
                    bytes([0xB0 | ch, 6, hi]), bytes([0xB0 | ch, 38, lo])]
        if m.kind == "note":
            return [bytes([0x90 | ch, m.number, 127]) if pos >= 0.5
                    else bytes([0x80 | ch, m.number, 0])]
        return [bytes([0xB0 | ch, m.number, int(round(pos * 127))])]  # cc, encoders' rings

    # ---- the ALSA sequencer path (no JACK) -------------------------------------------
    def _alsa_in(self) -> None:
        mi = self._alsa[0]
        msg = mi.get_message()
        if msg is None:
            return
        for m in self.maps.values():  # soft takeover and encoders read the model here
            r = self._resolved.get(m.slot)
            if r is not None:
                lib.mg_midi_set_current(self.ptr, m.slot, float(r[0].g.params[r[2]]))
        lib.mg_midi_begin(self.ptr)
        now = self.session.engine.time
        for k in range(POLL_MAX):  # a flood waits in python-rtmidi's queue for the next
            if k:
                msg = mi.get_message()
                if msg is None:
                    break
            b = bytes(msg[0])
            lib.mg_midi_input(self.ptr, ffi.NULL, b, len(b), now, 0)

    def _alsa_out(self) -> None:
        buf = ffi.new("uint8_t[16]")
        out = self._alsa[1]
        while (n := lib.mg_midi_next_out(self.ptr, buf)) > 0:
            out.send_message(list(bytes(ffi.buffer(buf, n))))
