"""OSC: packet parsing and encoding, and the address space (dispatch).

python-osc parses packets; replies are encoded here (a few struct calls).
Dispatch is our own: one dict lookup for literal addresses plus a split of
/node/<name>/<param>[/norm|/touch]; only addresses holding pattern characters
are matched (server/patterns.py, never backtracking) against the live
address set. Dispatch never sleeps: a bundle's future timetag becomes an
engine sample time. The transports live in transport.py, subscriptions and
meters in feedback.py."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import struct
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import msgpack
from pythonosc.osc_message import OscMessage

from mixgraph.clients.protocol import encode
from mixgraph.clients.protocol import ostr as _ostr

from . import __version__, heap, planner, ramps, readonly, show_osc, tapers
from .actions import actions_for, is_action_or_trigger, run_action
from .budget import Bucket, HostBudget
from .catalog import CATALOG
from .engine import EngineBusy
from .errors import GRAPH_WORK_REFUSED, GraphWorkRefused, MixgraphError, echo
from .errors import reason as _reason
from .lv2 import grouped, plugin_type
from .lv2 import known as lv2_known
from .lv2 import status as lv2_status
from .midi import MidiManager
from .patterns import compile_pattern, is_pattern
from .ratelog import RateLog, library_warnings, source_of
from .session import Session
from .state import PatchStore
from .values import number

log = logging.getLogger("mixgraph.osc")

Reply = Callable[[str, list], None]
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970
IMMEDIATE = (0, 1)
# a timetag of all zeros is not OSC's "immediately" (that is (0, 1)), but controllers
# and libraries that never set one send it: read as immediately, not as a bundle
# 127 years late (a /late reply for every bundle they send)
ZERO_TIMETAG = (0, 0)
MAX_BUNDLE_DEPTH = 8  # bundles inside bundles: a ninth level makes the packet garbage
MAX_ARRAY_DEPTH = 8  # OSC arrays inside arrays: deeper makes the packet garbage
# bytes of an OSC address (its NUL excluded): the longest that means anything here is a
# pattern (256 characters) or /node/<64>/<parameter>; a longer one is garbage, found
# before decoding: a 64 kB address without its NUL took python-osc 4.5 ms (attack8)
MAX_ADDRESS_BYTES = 1024
# arguments of one message (its type tags): no address takes more than a few hundred
MAX_ARGS = 4096
MAX_NODES = 4096  # nodes /graph/add makes at most (serve --max-nodes)
MAX_CONNECTIONS = 16384  # connections /graph/connect makes at most (serve --max-connections)
TOUCH_TIMEOUT_S = 10.0  # a touch whose holder stays silent this long lapses
# Scheduling budgets (docs/protocol.md, "Bundles"): how far ahead a timetag
# may be, how many timed messages one client may have pending (scheduled in the
# engine or held here), what the held bundles may hold in all, and the share of
# the engine's scheduler that future sets may take (the rest stays free for
# sets that apply now).
MAX_LEAD_S = 600.0
CLIENT_TIMED = 4096  # timed messages pending per client (scheduled + held)
LV2_JOBS = 4  # /catalog lv2 requests describing plugins a turn at a time, at once
# pattern matching is paid for in control-thread time: one packet may spend this much
# (more patterns in it fail), and one source host this much per second (a bucket)
PATTERN_PACKET_S = 0.05
PATTERN_HOST_S = 0.2
# and what the matches then do (the sets or queries of every match) this much a second
# per source host, after bursts of PATTERN_RUN_BURST_S (a pattern fader over 32
# channels at 60 Hz is about 40 ms a second on a quiet box). Every budget here is
# charged the control thread's CPU time and refilled on the time it could run
# (server/budget.py: one measure)
PATTERN_RUN_BURST_S = 1.0
PATTERN_RUN_RATE = 0.25
# control-thread time (s) the whole-state replies (/dump, /subscribe) of one source host
# may take: bursts of WHOLE_STATE_BURST_S, WHOLE_STATE_RATE a second after them
WHOLE_STATE_BURST_S = 0.6
WHOLE_STATE_RATE = 0.25
# the same for whole-graph edits (/patch/load, /undo, /redo, scene and cue recalls: a
# load of 40 eq8 nodes is 0.1-0.7 s): bursts of GRAPH_WORK_BURST_S, GRAPH_WORK_RATE a
# second after them, per source host
GRAPH_WORK_BURST_S = 3.0
GRAPH_WORK_RATE = 0.5
MATCH_MEMO = 256  # patterns whose matches are kept while the address set stays the same
CLIENT_HELD_BYTES = 1 << 20  # held bundles per client, bytes (estimated)
HELD_MAX = 32768  # held messages, all clients
HELD_BYTES_MAX = 16 << 20  # held bundles, all clients, bytes (estimated)
ENGINE_SHARE = 0.5  # of the engine's scheduler slots, for future sets


@dataclass
class Timed:
    """One message from a packet, with the raw OSC timetag of its bundle."""

    address: str
    args: list
    timetag: tuple[int, int] = IMMEDIATE


def parse_packet(data: bytes, timetag: tuple[int, int] = IMMEDIATE,
                 depth: int = 0) -> list[Timed]:
    """Messages of an OSC packet (bundles flattened, nested timetags kept)."""
    if data[:8] == b"#bundle\0":
        if depth >= MAX_BUNDLE_DEPTH:  # depth counts from 0 at the outermost bundle
            raise MixgraphError(f"bundles nested more than {MAX_BUNDLE_DEPTH} deep")
        if len(data) < 16:
            raise MixgraphError("truncated bundle")
        tt = struct.unpack(">II", data[8:16])
        elements = _bundle_elements(data)  # the whole frame checked before any element
        out: list[Timed] = []
        try:
            for pos, size in elements:
                out += parse_packet(data[pos:pos + size], tt, depth + 1)
        except MixgraphError as e:  # garbage costs its sender what its elements would
            e.elements = max(getattr(e, "elements", 0), len(elements))  # type: ignore
            raise
        return out
    if data[:1] != b"/":
        raise MixgraphError("not an OSC message or bundle")
    n = len(data)
    if n % 4:
        # python-osc pads a truncated argument with zeros; OSC sizes are multiples of 4
        raise MixgraphError(f"truncated OSC message ({n} bytes)")
    # a big frame is checked before it is decoded; a small one only when the fast
    # decoder leaves it (what it decodes pays nothing more)
    if n > 512 and (why := not_osc(data, n)) is not None:
        raise MixgraphError(why)
    fast = _parse_simple(data)
    if fast is not None:
        return [Timed(fast[0], fast[1], timetag)]
    if n <= 512 and (why := not_osc(data, n)) is not None:
        raise MixgraphError(why)
    end = data.find(b"\0")
    pos = (end + 4) & ~3
    if end > 0 and pos < len(data):
        # the type tag string follows the padded address (a ',' in the address is
        # part of the address); python-osc would skip a tag it does not know, with a
        # warning per tag and the arguments after it misread: it is garbage here
        t1 = data.find(b"\0", pos)
        tags = data[pos + 1:t1 if t1 > 0 else len(data)].decode("latin-1")
        if "[" in tags and _array_depth(tags) > MAX_ARRAY_DEPTH:
            # no address takes an array; a reason naming one nested 2,000 deep recursed
            # in repr() ("internal error: maximum recursion depth exceeded", attack4)
            raise MixgraphError(f"OSC arrays nested more than {MAX_ARRAY_DEPTH} deep")
        if data[pos:pos + 1] == b"," and not _LIBRARY_TAGS.issuperset(tags):
            bad = sorted(set(tags) - _LIBRARY_TAGS - _SIMPLE_TAGS)
            if bad:
                raise MixgraphError(f"unsupported OSC type tag {bad[0]!r}")
            if _SIMPLE_TAGS.issuperset(tags):
                raise MixgraphError("malformed OSC arguments (truncated or bad text)")
            raise MixgraphError("OSC type tags S c I cannot be mixed with b t [ ]")
    with library_warnings() as caught:
        try:
            msg = OscMessage(data)
        except Exception as e:  # python-osc raises several types for garbage
            raise MixgraphError(f"cannot parse OSC message: {e}") from None
    if caught.total:  # it skipped something (and misread what followed): garbage
        raise MixgraphError(f"python-osc logged {caught.total} warnings parsing it "
                            f"(first: {caught[0]})")
    return [Timed(msg.address, list(msg.params), timetag)]


def not_osc(data: bytes | bytearray, n: int) -> str | None:
    """Why the first n bytes of data cannot be an OSC message, from its frame alone,
    or None (a bundle: only its header; parse_packet checks its elements). Cheap and
    before any decoding: the receive path calls it on its buffer before copying, and
    parse_packet first; a 64 kB address without its NUL took python-osc 4.5 ms, and
    30,000 `f` tags without arguments 2.7 ms (attack8)."""
    if n == 0:
        return "an empty packet"
    first = data[0]
    if first == 35:  # '#'
        if data[:8] != b"#bundle\0":
            return "not an OSC message or bundle"
        return "truncated bundle" if n < 16 or n % 4 else None
    if first != 47:  # '/'
        return "not an OSC message or bundle"
    if n % 4:
        # python-osc pads a truncated argument with zeros; OSC sizes are multiples of 4
        return f"truncated OSC message ({n} bytes)"
    end = data.find(b"\0", 0, min(n, MAX_ADDRESS_BYTES + 1))
    if end < 0:
        return f"an OSC address longer than {MAX_ADDRESS_BYTES} bytes (or without its NUL)"
    pos = (end + 4) & ~3
    if pos >= n:
        return None  # no arguments
    if data[pos] != 44:  # not ','
        return "OSC arguments without type tags"
    t1 = data.find(b"\0", pos, min(n, pos + MAX_ARGS + 2))
    if t1 < 0:
        return f"more than {MAX_ARGS} OSC arguments (or type tags without their NUL)"
    if t1 - pos <= 32:
        return None  # a few tags: decoding them finds a short message at once
    have = n - ((t1 + 4) & ~3)
    need = _args_min_bytes(data, pos + 1, t1)
    if need > have:
        return (f"truncated OSC message: its {t1 - pos - 1} type tags need {need} bytes "
                f"of arguments, {have} follow")
    return None


def _bundle_elements(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of a bundle's elements, every size checked against the frame
    first: a bundle of 4,000 good elements and a bad last one was decoded element by
    element (22 ms) before it was found to be garbage (attack8)."""
    out: list[tuple[int, int]] = []
    pos, n = 16, len(data)
    while pos < n:
        if pos + 4 > n:
            e = MixgraphError("truncated bundle element size")
        else:
            (size,) = _unpack_i(data, pos)
            pos += 4
            if size > 0 and not size % 4 and pos + size <= n:
                out.append((pos, size))
                pos += size
                continue
            e = MixgraphError(f"bad bundle element size {size} (element {len(out) + 1})")
        e.elements = len(out)  # type: ignore[attr-defined]  # what its sender pays
        raise e
    return out


_unpack_i = struct.Struct(">i").unpack_from
_unpack_q = struct.Struct(">q").unpack_from
_unpack_u = struct.Struct(">I").unpack_from
_unpack_f = struct.Struct(">f").unpack_from
_unpack_d = struct.Struct(">d").unpack_from
# decoded here: OSC 1.0's required and optional types but blobs, timetags, arrays
def _adjusted(spec, raw, value: float) -> str:
    """What a /done says of a value set_param changed: clamped to the range, or (a
    stepped parameter given a value between steps: 0.37 for a switch) rounded."""
    x = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else value
    if spec.min <= x <= spec.max:
        return (f"rounded to {value:g}: {spec.name} is stepped (whole steps "
                f"{spec.min:g}..{spec.max:g})")
    return f"clamped to {spec.min:g}..{spec.max:g}"


def _array_depth(tags: str) -> int:
    """How deep the arrays of a type tag string nest ('[[f]]' is 2)."""
    depth = top = 0
    for c in tags:
        if c == "[":
            depth += 1
            top = max(top, depth)
        elif c == "]":
            depth -= 1
    return top


def _args_min_bytes(data: bytes | bytearray, start: int, end: int) -> int:
    """The fewest bytes the arguments of the type tags data[start:end] take (a string
    or a blob at least 4, a 64-bit number 8, T F N I and arrays none): a message
    whose tags claim more than it holds is garbage before anything is decoded (30,000
    `f` tags and no arguments took python-osc 2.7 ms, attack8)."""
    tags = bytes(data[start:end])
    sized = tags.translate(None, b"TFNI[]")
    n8 = len(sized) - len(sized.translate(None, b"hdt"))
    return 4 * len(sized) + 4 * n8


_SIMPLE_TAGS = frozenset("ifhdsTFSIcNrm")
# decoded by python-osc (without a warning); a mix of the two needs both, and is refused
_LIBRARY_TAGS = frozenset("ifhdsbtrmTFN[]")


def _parse_simple(data: bytes):
    """Messages without python-osc: tags from `ifhdsTFSIcNrm` only (S is a string, c a
    one-character string, I Infinitum as inf, N None, r an int, m 4 ints, as python-osc
    gives them); (address, args), or None to let python-osc decide (other tags, anything
    odd)."""
    end = data.find(b"\0")
    if end < 0:
        return None
    pos = (end + 4) & ~3
    if data[pos:pos + 1] != b",":
        return None
    tend = data.find(b"\0", pos)
    if tend < 0:
        return None
    try:
        address = data[:end].decode("utf-8")
        tags = data[pos + 1:tend].decode("ascii")
    except UnicodeDecodeError:
        return None
    if not _SIMPLE_TAGS.issuperset(tags):
        return None
    i = (tend + 4) & ~3
    n = len(data)
    args: list = []
    try:
        for t in tags:
            if t == "f":
                args.append(_unpack_f(data, i)[0])
                i += 4
            elif t == "i":
                args.append(_unpack_i(data, i)[0])
                i += 4
            elif t == "s" or t == "S":
                e = data.find(b"\0", i)
                if e < 0:
                    return None
                args.append(data[i:e].decode("utf-8"))
                i = (e + 4) & ~3
            elif t == "T":
                args.append(True)
            elif t == "F":
                args.append(False)
            elif t == "h":
                args.append(_unpack_q(data, i)[0])
                i += 8
            elif t == "d":
                args.append(_unpack_d(data, i)[0])
                i += 8
            elif t == "N":
                args.append(None)
            elif t == "I":
                args.append(math.inf)
            else:  # c, r, m: 32 bits
                (v,) = _unpack_u(data, i)
                i += 4
                if t == "c":
                    if v > 0x10FFFF:
                        return None
                    args.append(chr(v))
                else:
                    args.append(v if t == "r" else (v >> 24, (v >> 16) & 255, (v >> 8) & 255,
                                                    v & 255))
    except (struct.error, UnicodeDecodeError):
        return None
    if i > n:
        return None
    return address, args


# ---- encoding -------------------------------------------------------------------
_I = struct.Struct(">i").pack
_F = struct.Struct(">f").pack


def encode_message(address: str, args) -> bytes:
    """Encode an OSC message (mixgraph.clients.protocol.encode), with a fast path for
    the reply to every parameter set: /done <address> <value>."""
    if address == "/done" and len(args) == 2 and type(args[1]) is float \
            and type(args[0]) is str:
        try:
            return _DONE_SF + _ostr(args[0]) + _F(args[1])
        except OverflowError:
            pass
    return encode(address, args)


build_message = encode_message  # the historical name
_DONE_SF = _ostr("/done") + _ostr(",sf")


def encode_bundle(messages: list[bytes], timetag: tuple[int, int] = IMMEDIATE) -> bytes:
    out = [b"#bundle\0", struct.pack(">II", *timetag)]
    for m in messages:
        out.append(_I(len(m)))
        out.append(m)
    return b"".join(out)


def pack_bundles(messages: list[bytes], limit: int) -> list[bytes]:
    """Messages grouped into packets of at most ~limit bytes (a lone message stays bare)."""
    packets: list[bytes] = []
    cur: list[bytes] = []
    size = 16
    for m in messages:
        if cur and size + 4 + len(m) > limit:
            packets.append(cur[0] if len(cur) == 1 else encode_bundle(cur))
            cur, size = [], 16
        cur.append(m)
        size += 4 + len(m)
    if cur:
        packets.append(cur[0] if len(cur) == 1 else encode_bundle(cur))
    return packets


@dataclass
class Counters:
    """What the control side counts (shown in /status and the status line)."""

    messages: int = 0
    failed: int = 0
    garbage: int = 0
    late: int = 0
    denied: int = 0  # packets/connections from addresses not allowed
    rate_limited: int = 0  # messages dropped by the per-client rate limit
    oversized: int = 0  # frames/packets over the maximum size
    send_errors: int = 0  # replies the operating system refused to send
    refused: int = 0  # TCP connections refused at accept (connection caps, descriptors)
    idle_closed: int = 0  # TCP connections closed after the idle timeout
    slow_closed: int = 0  # TCP connections closed for not reading (output memory caps)
    meters_dropped: int = 0  # meter frames not queued for slow TCP readers
    unproven_refused: int = 0  # UDP replies withheld from unproven addresses (amplification)
    warnings: int = 0  # per-packet warnings (ratelog.RateLog), logged or not
    log_suppressed: int = 0  # of those, not written as a log line of their own
    internal_errors: int = 0  # control-loop steps that failed (logged, loop kept going)
    quota: int = 0  # timed messages refused by the scheduling budgets
    bad_http: int = 0  # HTTP/WebSocket connections closed for malformed input (server/web.py)
    backlog_dropped: int = 0  # UDP packets dropped: the server was behind (queue bounds)
    morphs_coalesced: int = 0  # queued /scene/morph not applied: a later one waited (transport)
    clients: dict = field(default_factory=dict)  # client key -> last seen (monotonic)

    def active_clients(self, window_s: float = 30.0) -> int:
        now = time.monotonic()
        return sum(1 for t in self.clients.values() if now - t < window_s)


class Peer:
    """A client as dispatch sees it: an identity, a way to send it packets, and a
    datagram size limit for feedback. Transports make these; None = in-process."""

    __slots__ = ("key", "send_packet", "mtu", "kind", "reply", "label", "proven", "backlog",
                 "max_packet")

    def __init__(self, key, send_packet: Callable[[bytes], None], mtu: int = 1400,
                 kind: str = "local", label: str = "", proven: bool = True,
                 backlog: Callable[[], int] | None = None,
                 max_packet: int | None = None) -> None:
        self.key = key
        self.send_packet = send_packet
        self.mtu = mtu
        self.kind = kind
        self.label = label or str(key)
        # proven: the client showed it receives at its address (TCP, loopback, or a /hello
        # cookie round trip over UDP); only proven clients get streams and large replies
        self.proven = proven
        # backlog: bytes queued for the client and not yet sent (TCP), None when the
        # transport queues nothing (UDP); feedback drops meter frames for slow readers
        self.backlog = backlog
        # max_packet: the largest packet the transport can carry (a UDP datagram); a
        # reply past it becomes a /fail that says so, instead of nothing at all
        self.max_packet = max_packet

        def reply(address: str, args: list) -> None:
            pkt = encode_message(address, args)
            if max_packet is not None and len(pkt) > max_packet:
                asked = address.removesuffix(".reply")
                pkt = encode_message("/fail", [asked, (
                    f"the reply is {len(pkt)} bytes, more than a {kind.upper()} datagram "
                    f"holds ({max_packet}): ask over TCP or WebSocket")])
            send_packet(pkt)

        self.reply = reply


class _NoSuchNode(MixgraphError):
    """A bundle's precheck found no node (or no address) where a message points."""


class _Collect:
    """A reply function that keeps what it is given."""

    def __init__(self, outer: Reply | None = None) -> None:
        self.items: list[tuple[str, list]] = []
        self.outer = outer  # where answers that come later (node actions) go

    def __call__(self, address: str, args: list) -> None:
        self.items.append((address, args))


_PARAM_ONLY = ("/node/",)


class Dispatcher:
    """The OSC address space of mixgraph, independent of any transport."""

    def __init__(self, session: Session, store: PatchStore | None = None,
                 info: dict | None = None, counters: Counters | None = None,
                 wallclock: Callable[[], float] = time.time,
                 max_lead_s: float = MAX_LEAD_S, client_timed: int = CLIENT_TIMED) -> None:
        self.session = session
        self.max_lead_s = max_lead_s
        self.max_nodes = MAX_NODES  # /graph/add refused at this many nodes (--max-nodes)
        # /graph/connect refused at this many connections (--max-connections)
        self.max_connections = MAX_CONNECTIONS
        self.client_timed = client_timed
        # timed work in flight, per client key: [messages, held bytes]; and totals
        self._budget: dict = {}
        self._held_msgs = 0
        self._held_bytes = 0
        self._engine_timed = 0  # future sets scheduled in the engine, all clients
        self._lv2_jobs = 0  # /catalog lv2 requests in progress (_lv2_stepwise)
        # pattern matching budgets (_match): the packet being handled and its host's
        self._pat_host: str | None = None
        self._pat_spent = 0.0
        self._pat_budget = HostBudget(PATTERN_HOST_S, PATTERN_HOST_S)
        self._set_budget = HostBudget(PATTERN_RUN_BURST_S, PATTERN_RUN_RATE)  # _pattern
        self._whole_budget = HostBudget(WHOLE_STATE_BURST_S, WHOLE_STATE_RATE)  # /dump ...
        self._graph_budget = HostBudget(GRAPH_WORK_BURST_S, GRAPH_WORK_RATE)  # /patch/load
        # the budget host of whole-graph work dispatched with no client ("midi" while
        # MIDI's moves are dispatched: graph_work)
        self.charged_to: str | None = None
        # (host, scene a, scene b) -> a /scene/morph the host's budget refused, held
        # until the budget allows (the latest wins): server/show_osc.py
        self.morph_held: dict[tuple, tuple] = {}
        self._match_memo: dict[str, list[str]] = {}
        self._match_key: object = None
        self._inflight: list = []  # (sample time, seq, client key, count): scheduled sets
        session.applied = lambda n, p, v: self._changed(n, p, v, None)
        self.store = store
        self.info = info or {}
        self.counters = counters or Counters()
        self.wallclock = wallclock
        self.started = time.monotonic()  # for /status uptime
        self.feedback = None  # a feedback.Feedback, set by the transport
        self.ratelog: RateLog | None = None  # per-source rate-limited warnings, likewise
        self.on_reply_port: Callable[[Peer | None, int], None] | None = None
        # the transport's address proof (see transport.ControlServer.hello): the reply
        self.on_hello: Callable[[Peer, list], tuple[str, list]] | None = None
        self.touch: dict[tuple[str, str], object] = {}  # (node, param) -> holder key
        self._held: list = []  # future bundles with graph edits: (sample time, seq, ...)
        self._seq = itertools.count()
        self._bundle: dict | None = None  # while applying a bundle atomically
        # set by the transport: edits then commit once per batch (commit_edits)
        # instead of once per message
        self.defer_commit = False
        self._commit_cost = 0.0  # seconds the last plan took to build
        self._commit_end = 0.0  # monotonic time it was done
        self._addr_cache: tuple[int, list[str]] | None = None
        self._fast: dict[bytes, tuple] = {}  # address -> what fast_set needs (see there)
        self._graph_version = 0
        self._literal: dict[str, Callable[[list, Reply, int, Peer | None], None]] = {
            "/graph/add": self._graph_add,
            "/graph/remove": self._graph_remove,
            "/graph/connect": self._graph_connect,
            "/graph/disconnect": self._graph_disconnect,
            "/graph/clear": self._graph_clear,
            "/graph/dump": self._graph_dump,
            "/graph/nodes": self._graph_nodes,
            "/graph/connections": self._graph_connections,
            "/catalog": self._catalog,
            "/catalog/list": self._catalog_list,
            "/catalog/type": self._catalog_type,
            "/status": self._status,
            "/info": self._info,
            "/sync": self._sync,
            "/patch/save": self._patch_save,
            "/patch/load": self._patch_load,
            "/patch/list": self._patch_list,
            "/subscribe": self._subscribe,
            "/unsubscribe": self._unsubscribe,
            "/dump": self._dump,
            "/meters/subscribe": self._meters_subscribe,
            "/meters/unsubscribe": self._meters_unsubscribe,
            "/reply-port": self._reply_port,
            "/hello": self._hello,
        }
        session.history.attach(self)  # /undo, /redo, /history (server/history.py)
        self.midi = MidiManager(self)  # /midi/*: server/midi.py
        self._literal.update(self.midi.handlers())
        self._literal.update(show_osc.handlers(self))  # /scene/*, /cue/*: server/show_osc.py

    # ---- entry points ----------------------------------------------------------
    def dispatch(self, address: str, args: list, reply: Reply, time_: int = 0,
                 client: Peer | None = None) -> None:
        """Run one command; every path ends in a reply (done, fail or the query's answer)."""
        self.counters.messages += 1
        j = self.session.journal
        if j is not None:  # no /done for a change the journal could not take
            reply = j.guard(reply)
        try:
            handler = self._literal.get(address)
            if handler is not None:
                handler(args, reply, time_, client)
            elif address.startswith("/node/") and "*" not in address and "?" not in address \
                    and "[" not in address and "{" not in address and "//" not in address:
                self._node(address, args, reply, time_, client)
            elif is_pattern(address):
                self._pattern(address, args, reply, time_, client)
            else:
                raise MixgraphError("unknown address")
        except MixgraphError as e:
            self.counters.failed += 1
            reply("/fail", [*self._echo(address, args), _reason(str(e))])
        except OSError as e:  # descriptors, disk: say what, never where (no paths)
            self.counters.failed += 1
            log.error("system error handling %s: %s", address, e)
            reply("/fail", [*self._echo(address, args),
                            f"system error: {e.strerror or type(e).__name__}"])
        except Exception as e:  # a bug must not take the control thread down
            self.counters.failed += 1
            if self.ratelog is not None and client is not None:  # a client could repeat it
                self.ratelog.warn(source_of(client.key), "internal error handling %s",
                                  echo(address), exc_info=True)
            else:
                log.exception("internal error handling %s", echo(address))
            reply("/fail", [*self._echo(address, args), _reason(f"internal error: {e}")])

    def fast_set(self, data: bytes, client: Peer) -> bool:
        """The flood path: a bare `/node/<name>/<param> ,f|,i <number>` setting a plain
        parameter within its range, with no touch held anywhere and no bundle being
        applied. Does what dispatch would do, byte for byte the same reply, without
        the general parsing; returns False to leave anything else to dispatch."""
        end = data.find(b"\0", 0, MAX_ADDRESS_BYTES + 1)  # longer: garbage (parse_packet)
        if end < 0:
            return False
        pos = (end + 4) & ~3
        tag = data[pos:pos + 4]
        if len(data) != pos + 8 or (tag != b",f\0\0" and tag != b",i\0\0") \
                or self.touch or self._bundle is not None:
            return False
        key = data[:end]
        hit = self._fast.get(key)
        if hit is None:
            hit = self._fast_entry(key)
            if hit is None:
                return False
        name, param, node, index, lo, hi, prefix, stepped = hit
        s = self.session
        if s.live.get(name) is not node:
            self._fast.pop(key, None)
            return False
        x = _unpack_f(data, pos + 4)[0] if tag[1] == 102 else float(_unpack_i(data, pos + 4)[0])
        if not lo <= x <= hi:  # out of range, NaN, Inf: dispatch says why
            return False
        if stepped and x != math.floor(x):  # between steps: dispatch rounds and says so
            return False
        try:
            s.apply_param(node, index, param, x)
        except EngineBusy:
            return False
        self.counters.messages += 1
        client.send_packet(prefix + _F(x))
        self._changed(name, param, x, client)
        return True

    def _fast_entry(self, key: bytes) -> tuple | None:
        """What fast_set needs for an address, or None when it must go through dispatch."""
        try:
            address = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
        parts = address.split("/")
        if len(parts) != 4 or parts[1] != "node" or is_pattern(address):
            return None
        name, param = parts[2], parts[3]
        node = self.session.live.get(name)
        if node is None or node.g.type.name == "vca" or param in actions_for(node.g.type.name):
            return None
        spec = node.g.type.param(param)
        if spec is None:
            return None
        if len(self._fast) > 65536:
            self._fast.clear()
        prefix = b"/done\0\0\0,sf\0" + _ostr(address)
        hit = (name, param, node, spec.index, spec.min, spec.max, prefix,
               spec.taper == "stepped")
        self._fast[key] = hit
        return hit

    def dispatch_packet(self, msgs: list[Timed], client: Peer | None, bundle: bool,
                        reply: Reply | None = None) -> None:
        """Apply a parsed packet: a lone message, or a bundle (atomically, on one sample)."""
        reply = reply or (client.reply if client is not None else (lambda a, b: None))
        self._pattern_payer(client)
        if not bundle:
            m = msgs[0]
            self.dispatch(m.address, m.args, reply, 0, client)
            return
        if not msgs:
            return
        tt = msgs[0].timetag
        if any(m.timetag != tt for m in msgs):
            self._split_bundle(msgs, client, reply)
            return
        self._dispatch_bundle(msgs, client, reply)

    def _split_bundle(self, msgs: list[Timed], client: Peer | None, reply: Reply) -> None:
        """Nested bundles with timetags of their own: each run of messages that share a
        timetag is a bundle of its own, applied at its own time (atomic within it), as
        OSC says; the whole packet was applied at the first message's time."""
        run: list[Timed] = []
        for m in msgs:
            if run and m.timetag != run[0].timetag:
                self._dispatch_bundle(run, client, reply)
                run = []
            run.append(m)
        self._dispatch_bundle(run, client, reply)

    def _dispatch_bundle(self, msgs: list[Timed], client: Peer | None, reply: Reply) -> None:
        """A bundle's messages, all with one timetag: now, scheduled or held."""
        tt = msgs[0].timetag
        try:
            t, late_ms = self._bundle_time(tt)
        except MixgraphError as e:
            self._fail_all(msgs, reply, str(e))
            return
        if late_ms is not None:
            reply("/late", [echo(msgs[0].address), float(round(late_ms, 3))])
        params_only = self._params_only(msgs)
        future = bool(t) and t > self.session.engine.time + self._lead()
        if t and not params_only:
            # graph edits cannot be sample-scheduled: hold the bundle on the control
            # side (one for later within the budgets; an immediate one until the
            # next turn of the loop, free)
            cost = _held_cost(msgs) if future else None
            if cost is not None:
                try:
                    self._admit(client, len(msgs), cost)
                except MixgraphError as e:
                    self._fail_all(msgs, reply, str(e))
                    return
            heapq.heappush(self._held, (t, next(self._seq), msgs, reply, client, cost))
            return
        if not future:
            self._apply_bundle(msgs, reply, client, t)
            return
        # parameter sets for later: the engine schedules them (sample-exact), within
        # this client's quota and the share of the scheduler future sets may take
        try:
            self._admit(client, self._expansion(msgs), 0, engine=True)
        except MixgraphError as e:
            self._fail_all(msgs, reply, str(e))
            return
        before = self.session.pending.total
        self._apply_bundle(msgs, reply, client, t)
        n = self.session.pending.total - before
        if n > 0:
            key = client.key if client is not None else None
            self._charge(key, n, 0)
            self._engine_timed += n
            heapq.heappush(self._inflight, (t, next(self._seq), key, n))

    # ---- scheduling budgets ----------------------------------------------------
    def _fail_all(self, msgs: list[Timed], reply: Reply, why: str) -> None:
        """Refuse a whole bundle: one /fail per message, each with the reason."""
        self.counters.messages += len(msgs)
        self.counters.failed += len(msgs)
        for o in msgs:
            reply("/fail", [o.address, *self._keys(o.address, o.args), why])

    def _expansion(self, msgs: list[Timed]) -> int:
        """How many parameter sets a bundle makes (a pattern makes one per match)."""
        n = 0
        for m in msgs:
            if is_pattern(m.address):
                try:
                    n += len(self._match(m.address))
                except MixgraphError:
                    n += 1
            else:
                n += 1
        return n

    def _expire(self) -> None:
        """Give back the budget of scheduled sets whose time has come."""
        now = self.session.engine.time
        inflight = self._inflight
        while inflight and inflight[0][0] <= now:
            _, _, key, n = heapq.heappop(inflight)
            self._engine_timed -= n
            self._charge(key, -n, 0)

    def _charge(self, key, n: int, cost: int) -> None:
        b = self._budget.get(key)
        if b is None:
            b = self._budget[key] = [0, 0]
        b[0] += n
        b[1] += cost
        if b[0] <= 0 and b[1] <= 0:
            del self._budget[key]

    def _admit(self, client: Peer | None, n: int, cost: int, engine: bool = False) -> None:
        """Take n timed messages (and cost bytes held) from the budgets, or refuse
        with the reason (the whole bundle is then answered /fail)."""
        self._expire()
        key = client.key if client is not None else None
        mine, my_bytes = self._budget.get(key, (0, 0))
        why = None
        if mine + n > self.client_timed:
            why = (f"too many timed messages pending for this client ({mine} pending, "
                   f"quota {self.client_timed}); wait until some apply")
        elif engine:
            room = int(self.session.engine.heap_capacity * ENGINE_SHARE)
            if self._engine_timed + n > room:
                why = (f"the engine's scheduler is busy ({self._engine_timed} timed sets "
                       f"pending, at most {room}); try later")
        elif my_bytes + cost > CLIENT_HELD_BYTES:
            why = (f"too much held for this client ({my_bytes} bytes in future bundles, "
                   f"quota {CLIENT_HELD_BYTES})")
        elif self._held_msgs + n > HELD_MAX or self._held_bytes + cost > HELD_BYTES_MAX:
            why = "too many future bundles held (all clients); try later"
        if why is not None:
            self.counters.quota += n
            raise MixgraphError(why)
        if not engine:
            self._charge(key, n, cost)
            self._held_msgs += n
            self._held_bytes += cost

    def service(self) -> None:
        """Apply held future bundles that fall due (called by the control loop)."""
        self.midi.service()
        if self._inflight:
            self._expire()
        if self.morph_held:
            from .show_osc import apply_held_morphs

            apply_held_morphs(self)
        if not self._held:
            return
        e = self.session.engine
        lead = self._lead()
        while self._held and self._held[0][0] <= e.time + lead:
            t, _, msgs, reply, client, cost = heapq.heappop(self._held)
            self._pattern_payer(client)
            if cost is not None:
                self._held_msgs -= len(msgs)
                self._held_bytes -= cost
                self._charge(client.key if client is not None else None, -len(msgs), -cost)
            self._apply_bundle(msgs, reply, client, t if t > e.time else 0)

    def sample_time(self, timetag: tuple[int, int]) -> int:
        """Engine sample time for an OSC timetag (0 = now), via the wall clock."""
        return self._bundle_time(timetag)[0]

    def _lead(self) -> int:
        return 2 * int(self.info.get("block", 64) or 64)

    def _bundle_time(self, timetag: tuple[int, int]) -> tuple[int, float | None]:
        """(sample time, ms late or None). Immediate bundles get a sample time two
        blocks ahead so that all of their messages land in the same engine block."""
        e = self.session.engine
        if timetag == IMMEDIATE or timetag == ZERO_TIMETAG:
            return (e.time + self._lead() if e.time > 0 else 0), None
        secs = timetag[0] - NTP_EPOCH_OFFSET + timetag[1] / 2**32
        ahead = secs - self.wallclock()
        if ahead > self.max_lead_s:
            self.counters.quota += 1
            raise MixgraphError(f"timetag is {ahead:.0f} s ahead; the most is "
                                f"{self.max_lead_s:g} s (--max-lead-s)")
        if ahead <= 0:
            self.counters.late += 1
            return (e.time + self._lead() if e.time > 0 else 0), -ahead * 1000.0
        return e.time + int(round(ahead * e.sample_rate)), None

    def pending_timed(self, client: Peer | None) -> int:
        """Timed messages a client has pending (scheduled in the engine or held)."""
        self._expire()
        return self._budget.get(client.key if client is not None else None, (0, 0))[0]

    @staticmethod
    def _params_only(msgs: list[Timed]) -> bool:
        for m in msgs:
            a = m.address
            if not a.startswith("/node/") or a.endswith(("/bypass", "/touch", "/ramp")):
                return False  # a ramp is held to its time (its model value is the target)
        return True

    # ---- bundles ---------------------------------------------------------------
    def _apply_bundle(self, msgs: list[Timed], reply: Reply, client: Peer | None,
                      t: int) -> None:
        """All or nothing: every parameter message is checked before any is applied;
        a bundle with graph edits is applied with commits deferred and rolled back
        (the graph restored from a snapshot) if any of its messages fails. There a
        message may name a node an earlier message of the bundle adds (/graph/add
        then its first values): it is checked when it is applied."""
        # once per distinct message form: only_reads walks every match of a pattern,
        # and a bundle of 5,400 `//*` walked 11,000 matches each, charged to no one
        reads: dict[tuple[str, int], bool] = {}
        edits = not self._params_only(msgs) and any(
            not (reads[k] if (k := (m.address, len(m.args))) in reads else
                 reads.setdefault(k, readonly.only_reads(self, m.address, len(m.args))))
            for m in msgs)
        for i, m in enumerate(msgs):
            try:
                self._check(m.address, m.args, client)
            except MixgraphError as e:
                if edits and isinstance(e, _NoSuchNode):
                    continue
                self.counters.messages += len(msgs)
                self.counters.failed += len(msgs)
                for j, o in enumerate(msgs):
                    why = str(e) if j == i else \
                        f"bundle not applied: {echo(m.address)} failed: {e}"
                    reply("/fail", [*self._echo(o.address, o.args), _reason(why)])
                return
        snapshot = self.session.to_doc() if edits else None
        collect = _Collect(reply)
        self._bundle = {"changes": [], "graph": []}
        try:
            for m in msgs:
                self.dispatch(m.address, m.args, collect, t, client)
            failed = [(a, args) for a, args in collect.items if a == "/fail"]
            if failed and snapshot is not None:
                self._rollback(snapshot)
        finally:
            pending, self._bundle = self._bundle, None
        if failed and snapshot is not None:
            first = failed[0][1]
            why = _reason(f"bundle rolled back: {first[0]} failed: {first[-1]}")
            for a, args in collect.items:
                if a == "/done":
                    reply("/fail", [*args, why])
                else:
                    reply(a, args)
            self._commit()
            self._graph_version += 1
            return
        self._commit()
        for a, args in collect.items:
            reply(a, args)
        fb = self.feedback
        if fb is not None:
            for c in pending["changes"]:
                fb.changed(*c)
            for g in pending["graph"]:
                fb.graph_changed(*g)

    def _rollback(self, snapshot: dict) -> None:
        """Make the graph equal to the snapshot taken before a failed bundle. Any
        failure is logged; the bundle's sender still gets its replies."""
        try:
            self.session.load_doc(snapshot)
        except Exception:
            log.exception("bundle rollback failed; the graph may differ from before "
                          "the bundle")
        self._graph_version += 1

    def _check(self, address: str, args: list, client: Peer | None) -> None:
        """The checks a message must pass before a bundle holding it is applied."""
        if address in self._literal:
            return
        if is_pattern(address):
            matched = self._match(address)
            if not matched:
                raise _NoSuchNode("no address matches the pattern")
            with self._pattern_work(client):
                for a in matched:
                    if a.startswith("/node/"):
                        self._check(a, args, client)
            return
        if not address.startswith("/node/"):
            raise MixgraphError("unknown address")
        parts = address.split("/")
        if len(parts) not in (4, 5) or not parts[2] or not parts[3]:
            raise MixgraphError("expected /node/<name>/<param>")
        name, param = parts[2], parts[3]
        node = self.session.live.get(name)
        if node is None:
            raise _NoSuchNode(f"no node named {name!r}")
        if len(parts) == 4 and param in actions_for(node.g.type.name):
            raise MixgraphError(f"{param} is a node action: it takes audio time and answers "
                                "on its own, so it cannot be part of a bundle")
        if not args:
            return
        if param == "bypass" and len(parts) == 4 and node.g.type.param("bypass") is None:
            self.session.bypass_ports(name)
            number(args[0], f"{name}/bypass")
            return
        spec = node.g.type.param(param)
        if spec is None:
            raise MixgraphError(f"{name} ({node.g.type.name}) has no parameter {param!r}")
        if len(parts) == 5 and parts[4] == "ramp":  # a ramp in a bundle (attack3)
            ramps.check_args(name, param, args)
            self._check_touch(name, param, client)
            return
        if len(args) != 1:
            raise MixgraphError(f"expected one value, got {len(args)}")
        number(args[0], f"{name}/{param}")
        if len(parts) == 5 and parts[4] not in ("norm", "touch"):
            raise MixgraphError(f"unknown address: {parts[4]!r} after /node/{name}/{param}")
        if len(parts) == 4 or parts[4] == "norm":
            self._check_touch(name, param, client)

    def _commit(self) -> None:
        if self._bundle is None and not self.defer_commit:
            self.session.commit()

    def commit_edits(self) -> None:
        """Hand the edits of a batch of messages to the engine as one plan.
        While edits keep arriving, plans are built at most as often as they
        take to build (a 10,000-node plan takes ~0.1 s), so a flood of edits
        on a big graph gives at most half of the control thread to plans and
        each plan covers every edit since the last; the rest are in the next
        one. /sync still waits for every edit before it (it commits first)."""
        s = self.session
        if not s.dirty:
            s.commit()  # fades still queued, if any
            return
        t0 = time.monotonic()
        if t0 - self._commit_end < self._commit_cost:
            return
        s.commit()
        self._commit_end = time.monotonic()
        self._commit_cost = self._commit_end - t0

    def _changed(self, name: str, param: str, value: float, client: Peer | None) -> None:
        if self.feedback is None:
            return
        if self._bundle is not None:
            self._bundle["changes"].append((name, param, value, client))
        else:
            self.feedback.changed(name, param, value, client)

    def _graph_event(self, args: list, client: Peer | None) -> None:
        self._graph_version += 1
        if self.feedback is None:
            return
        if self._bundle is not None:
            self._bundle["graph"].append((args, client))
        else:
            self.feedback.graph_changed(args, client)

    @classmethod
    def _echo(cls, address: str, args: list) -> list:
        """The address and key arguments a /fail echoes, each cut to ECHO_MAX."""
        return [echo(address), *(echo(a) for a in cls._keys(address, args))]

    @staticmethod
    def _keys(address: str, args: list) -> list:
        """The arguments a sender needs to match a /fail to its request."""
        if address.startswith("/midi/"):  # the map's address
            return [a for a in args[:1] if isinstance(a, str)]
        if address == "/graph/add":
            return [a for a in args[1:2] if isinstance(a, str)]
        if address in ("/graph/remove", "/patch/save", "/patch/load", "/sync",
                       "/catalog/type") or address.startswith(("/scene/", "/cue/")):
            return args[:1]
        if address in ("/graph/connect", "/graph/disconnect"):
            return [a for a in args[:2] if isinstance(a, str)]
        return []

    # ---- /graph ----------------------------------------------------------------
    @staticmethod
    def _want(args: list, n: int, usage: str) -> None:
        if len(args) != n or not all(isinstance(a, str) for a in args):
            raise MixgraphError(f"usage: {usage}")

    def _graph_add(self, args: list, reply: Reply, _t: int, client=None) -> None:
        if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], str):
            raise MixgraphError("usage: /graph/add <type> <name> [<key> <value>]...")
        if len(args) % 2:
            raise MixgraphError("settings come in <key> <value> pairs")
        settings = {}
        for k, v in zip(args[2::2], args[3::2], strict=True):
            if not isinstance(k, str):
                raise MixgraphError(f"setting name must be a string, got {k!r}")
            settings[k] = v
        if len(self.session.graph.nodes) >= self.max_nodes:
            # a script adding nodes in a loop: 30,000 gain nodes broke the audio (17 xruns)
            # and held other clients 2.9 s (attack4); patches and the autosave may hold more
            raise MixgraphError(f"the graph has {len(self.session.graph.nodes)} nodes, the "
                                f"most /graph/add makes (serve --max-nodes)")
        g = self.session.add_node(args[0], args[1], settings, stand_in=False)
        clamped = g.options.pop("_clamped", None)
        extra = [f"clamped to range: {', '.join(clamped)}"] if clamped else []
        self._commit()
        reply("/done", ["/graph/add", g.name, *extra])
        self._graph_event(["add", g.name, g.type.name], client)
        for k, v in g.params.items():
            self._changed(g.name, k, v, client)

    def _graph_remove(self, args: list, reply: Reply, _t: int, client=None) -> None:
        self._want(args, 1, "/graph/remove <name>")
        self.session.remove_node(args[0])
        self._drop_touches(args[0])
        self._commit()
        reply("/done", ["/graph/remove", args[0]])
        self._graph_event(["remove", args[0]], client)

    def _graph_connect(self, args: list, reply: Reply, _t: int, client=None) -> None:
        self._want(args, 2, "/graph/connect <src>[:port] <dst>[:port]")
        if len(self.session.graph.conns) >= self.max_connections:
            # each connection costs the control thread ~0.1 ms at every load, undo and
            # plan: 400,000 of them froze it for 90 s (attack6)
            raise MixgraphError(f"the graph has {len(self.session.graph.conns)} connections, "
                                "the most /graph/connect makes (serve --max-connections)")
        self.session.connect(args[0], args[1])
        self._commit()
        reply("/done", ["/graph/connect", args[0], args[1]])
        self._graph_event(["connect", args[0], args[1]], client)

    def _graph_disconnect(self, args: list, reply: Reply, _t: int, client=None) -> None:
        self._want(args, 2, "/graph/disconnect <src>[:port] <dst>[:port]")
        self.session.disconnect(args[0], args[1])
        self._commit()
        reply("/done", ["/graph/disconnect", args[0], args[1]])
        self._graph_event(["disconnect", args[0], args[1]], client)

    def _graph_clear(self, args: list, reply: Reply, _t: int, client=None) -> None:
        for name in list(self.session.graph.nodes):
            self.session.remove_node(name)
        self.touch.clear()
        self._commit()
        reply("/done", ["/graph/clear"])
        self._graph_event(["clear"], client)

    # the introspection replies grow with the graph (or the catalog) and are charged to
    # the host's whole-state budget like /dump: a read-only viewer sending /graph/nodes
    # in a loop held other clients 277 ms (median) on 200 nodes (attack4)
    def _graph_dump(self, args: list, reply: Reply, _t: int, client=None) -> None:
        with self._whole_state(client, "/graph/dump"):
            reply("/graph/dump.reply", [msgpack.packb(self.session.to_doc(),
                                                      use_bin_type=True)])

    def _graph_nodes(self, args: list, reply: Reply, _t: int, client=None) -> None:
        s = self.session
        with self._whole_state(client, "/graph/nodes"):
            for g in s.graph.nodes.values():
                reply("/graph/nodes.reply", [g.name, g.type.name, g.channels,
                                             int(g.name in s.bypassed)])
        reply("/done", ["/graph/nodes", len(s.graph.nodes)])

    def _graph_connections(self, args: list, reply: Reply, _t: int, client=None) -> None:
        conns = self.session.graph.conns
        with self._whole_state(client, "/graph/connections"):
            for c in conns:
                reply("/graph/connections.reply", [f"{c.src}:{c.src_port}",
                                                   f"{c.dst}:{c.dst_port}"])
        reply("/done", ["/graph/connections", len(conns)])

    # ---- /catalog ----------------------------------------------------------------
    @staticmethod
    def describe_type(t) -> dict:
        d = t.describe()
        for p, spec in zip(d["params"], t.params, strict=True):
            p.update(tapers.describe(spec.taper, spec.min, spec.max))
        d["actions"] = [{"name": a.name, "usage": a.usage, "doc": a.doc,
                         "triggers": list(a.triggers)}
                        for a in actions_for(t.name).values()]
        return d

    def _catalog(self, args: list, reply: Reply, _t: int, client=None) -> None:
        if args:  # /catalog lv2 <uri>...: those plugins' own types, each with its "uri"
            if args[0] != "lv2" or len(args) < 2 or len(args) > 65:
                raise MixgraphError("usage: /catalog [lv2 <uri>...]")
            fresh = [u for u in dict.fromkeys(str(u) for u in args[1:]) if not lv2_known(u)]
            if len(fresh) > 1:
                self._lv2_stepwise(fresh, lambda: self.dispatch("/catalog", args, reply, 0,
                                                                client))
                return
            types = [plugin_type(str(u)) for u in args[1:]]
            blob = msgpack.packb([self.describe_type(t) | {"uri": t.uri} for t in types],
                                 use_bin_type=True)
            reply("/catalog.reply", [blob])
            return
        with self._whole_state(client, "/catalog"):
            reply("/catalog.reply", [msgpack.packb(
                [self.describe_type(t) for t in CATALOG.values()], use_bin_type=True)])

    def _lv2_stepwise(self, fresh: list[str], then: Callable[[], None]) -> None:
        """Look at plugins never looked at before one per control-loop turn (each may
        read its data files for tens of ms; 64 at once froze control for seconds),
        then call `then`, which answers from what is now known."""
        if self._bundle is not None:
            raise MixgraphError("a bundle may describe at most one LV2 plugin not described "
                                "before: send /catalog lv2 <uri>... on its own")
        if self._lv2_jobs >= LV2_JOBS:
            raise MixgraphError("busy describing LV2 plugins for other requests; "
                                "try again in a moment")
        self._lv2_jobs += 1
        s = self.session

        def step() -> None:
            try:
                try:
                    plugin_type(fresh.pop())
                except MixgraphError:
                    pass  # kept: the answer names it
                if fresh:
                    s.at(s.engine.time + 1, step)
                    return
            except BaseException:
                self._lv2_jobs -= 1
                raise
            self._lv2_jobs -= 1
            then()
        s.at(s.engine.time + 1, step)

    def _catalog_list(self, args: list, reply: Reply, _t: int, client=None) -> None:
        for t in CATALOG.values():
            reply("/catalog/list.reply", [t.name, t.doc, t.default_channels, t.min_channels,
                                          t.max_channels, len(t.params)])
        reply("/done", ["/catalog/list", len(CATALOG)])

    def _catalog_type(self, args: list, reply: Reply, _t: int, client=None) -> None:
        lv2_uri = args[1:] if args[:1] == ["lv2"] and len(args) == 2 else []  # lv2 <uri>
        self._want(args[:1] if lv2_uri else args, 1, "/catalog/type <type> | lv2 <uri>")
        t = grouped(plugin_type(str(lv2_uri[0]))) if lv2_uri else CATALOG.get(args[0])
        if t is None:
            raise MixgraphError(f"unknown node type {args[0]!r}")
        for p in t.ports:
            reply("/catalog/type.port", [t.name, p.name, p.direction, p.channels])
        for p in t.params:
            pts = tapers.describe(p.taper, p.min, p.max).get("points", [])
            reply("/catalog/type.param", [t.name, p.name, p.unit, p.min, p.max, p.default,
                                          p.taper, p.smooth_ms,
                                          *[float(x) for pt in pts for x in pt]])
        for r in t.readouts:
            reply("/catalog/type.readout", [t.name, r.name, r.unit, int(r.per_channel)])
        for a in actions_for(t.name).values():
            reply("/catalog/type.action", [t.name, a.name, a.usage, a.doc])
        reply("/done", ["/catalog/type", t.name])

    # ---- status, info, sync --------------------------------------------------------
    def _status(self, args: list, reply: Reply, _t: int, client=None) -> None:
        e = self.session.engine
        st = e.stats()
        block = self.info.get("block", 0)
        fb = self.feedback
        lat = planner.total_latency(self.session.live, self.session.graph.conns)
        reply("/status.reply", [
            "sample_rate", float(e.sample_rate),
            "block", int(block),
            "nodes", len(self.session.graph.nodes),
            "load", float(round(st.load * 100.0, 3)),
            "xruns", int(st.xruns),
            "backend", str(self.info.get("backend", "")),
            "time", int(st.time),
            "late", int(st.late + self.counters.late),
            "clients", self.counters.active_clients(),
            "garbage", self.counters.garbage,
            "nan_scrubbed", int(st.nan_scrubbed),
            "messages", self.counters.messages,
            "failed", self.counters.failed,
            "denied", self.counters.denied,
            "rate_limited", self.counters.rate_limited,
            "oversized", self.counters.oversized,
            "send_errors", self.counters.send_errors,
            "refused", self.counters.refused,
            "idle_closed", self.counters.idle_closed,
            "slow_closed", self.counters.slow_closed,
            "meters_dropped", self.counters.meters_dropped,
            "unproven_refused", self.counters.unproven_refused,
            "warnings", self.counters.warnings,
            "log_suppressed", self.counters.log_suppressed,
            "timed_refused", self.counters.quota,
            "internal_errors", self.counters.internal_errors,
            "bad_http", self.counters.bad_http,
            "backlog_dropped", self.counters.backlog_dropped,
            "morphs_coalesced", self.counters.morphs_coalesced,
            "subscribers", len(fb.subs) if fb is not None else 0,
            "worst_us", float(round(st.worst_us, 1)),
            "worst_recent_us", float(round(e.recent.tick(time.monotonic()), 1)),
            "worst_swap_us", float(round(st.worst_swap_block_us, 1)),
            "sets_carried", e.sets_carried(),
            "plans", int(self.session.plans_built),
            "uptime", float(round(time.monotonic() - self.started, 1)),
            "budget_us", float(round(block / e.sample_rate * 1e6, 1)) if block else 0.0,
            "missing_files", len(self.session.missing),
            "latency", int(lat),
            "latency_ms", float(round(lat * 1000.0 / e.sample_rate, 3)),
            "device_state", str(self.info.get("device_state", "running")),
            *self.midi.status(),
            *lv2_status(self.session),
            *heap.status(),
            "journal_dropped", int(getattr(self.session.journal, "dropped", 0)),
        ])

    def _info(self, args: list, reply: Reply, _t: int, client=None) -> None:
        reply("/info.reply", ["name", "mixgraph", "version", __version__,
                              *[x for k, v in self.info.items() for x in (k, v)]])

    def _sync(self, args: list, reply: Reply, t: int, client=None) -> None:
        if len(args) != 1 or not isinstance(args[0], int | float):
            raise MixgraphError("usage: /sync <id>")
        token = int(number(args[0], "/sync id"))
        if not -2**31 <= token < 2**31:
            raise MixgraphError("/sync id must fit in 32 bits")
        self._commit()

        def done() -> None:
            try:
                reply("/synced", [token])
            except Exception:  # never let a reply break the engine's event handling
                log.exception("/synced reply failed")

        self.session.sync(token, done)

    # ---- /patch --------------------------------------------------------------------
    def _need_store(self) -> PatchStore:
        if self.store is None:
            raise MixgraphError("this server has no state directory")
        return self.store

    def _patch_save(self, args: list, reply: Reply, _t: int, client=None) -> None:
        self._want(args, 1, "/patch/save <name>")
        self._need_store().save(args[0], self.session.to_doc())
        reply("/done", ["/patch/save", args[0]])

    def _patch_load(self, args: list, reply: Reply, _t: int, client=None) -> None:
        self._want(args, 1, "/patch/load <name>")
        with self.graph_work(client, "/patch/load"):
            doc = self._need_store().load(args[0])
            self._check_size(doc)
            self.session.load_doc(doc)
            self._commit()
        reply("/done", ["/patch/load", args[0]])
        self._graph_event(["load", args[0]], client)
        for g in self.session.graph.nodes.values():
            for k, v in g.params.items():
                self._changed(g.name, k, v, client)
            self._changed(g.name, "bypass", float(g.name in self.session.bypassed), client)

    def _check_size(self, doc) -> None:
        """A document over --max-nodes or --max-connections is refused before any of it is
        checked or loaded: /graph/add and /graph/connect stop there, and a 5.8 MB patch
        of 100,000 nodes held the control thread 42 s and took 2 GB (attack6); the
        autosave at start-up is not held to them (server/daemon.py)."""
        if not isinstance(doc, dict):
            return  # load_doc says what it is not
        for key, most, option in (("nodes", self.max_nodes, "--max-nodes"),
                                  ("connections", self.max_connections, "--max-connections")):
            items = doc.get(key)
            if isinstance(items, list) and len(items) > most:
                raise MixgraphError(f"the patch has {len(items)} {key}, more than this server "
                                    f"takes (serve {option} {most}): nothing loaded")

    def _patch_list(self, args: list, reply: Reply, _t: int, client=None) -> None:
        reply("/patch/list.reply", list(self._need_store().names()))

    # ---- feedback ------------------------------------------------------------------
    def _need_feedback(self, client: Peer | None, stream: bool = True):
        if self.feedback is None or client is None:
            raise MixgraphError("subscriptions need a network client")
        if stream and not client.proven:
            raise MixgraphError("prove your address first (/hello, then echo the cookie) "
                                "or use TCP")
        return self.feedback

    def _hello(self, args: list, reply: Reply, _t: int, client=None) -> None:
        """The address proof: `/hello` answers `/hello <cookie>` to an unproven UDP
        client, which sends `/hello <cookie>` back; `/done /hello` once proven."""
        if self.on_hello is None or client is None or client.kind != "udp":
            reply("/done", ["/hello"])
            return
        reply(*self.on_hello(client, args))

    def _subscribe(self, args: list, reply: Reply, _t: int, client=None) -> None:
        fb = self._need_feedback(client)
        lease = fb.default_lease
        if args:
            lease = number(args[0], "/subscribe lease")
            if not 0.5 <= lease <= 3600:
                raise MixgraphError("lease must be 0.5..3600 s")
        # everything that can fail comes before the /done: the state, the subscriber cap
        with self._whole_state(client, "/subscribe"):
            msgs = self.state_messages()
            fb.subscribe(client, lease)
            reply("/done", ["/subscribe", float(lease), len(msgs)])
            fb.dump(client, msgs)

    def _unsubscribe(self, args: list, reply: Reply, _t: int, client=None) -> None:
        fb = self._need_feedback(client, stream=False)
        fb.unsubscribe(client)
        reply("/done", ["/unsubscribe"])

    def _dump(self, args: list, reply: Reply, _t: int, client=None) -> None:
        with self._whole_state(client, "/dump"):
            if self.feedback is not None and client is not None:
                n = self.feedback.dump(client)
            else:
                msgs = self.state_messages()
                for a, v in msgs:
                    reply(a, v)
                n = len(msgs)
        reply("/done", ["/dump", n])

    def _meters_subscribe(self, args: list, reply: Reply, _t: int, client=None) -> None:
        fb = self._need_feedback(client)
        if len(args) not in (1, 2, 3) or not isinstance(args[0], str) \
                or (len(args) == 3 and args[2] not in ("blob", "all")):
            raise MixgraphError("usage: /meters/subscribe <node-or-pattern> [<rate_hz> "
                                "[blob|all]]")
        rate = number(args[1], "rate") if len(args) >= 2 else 20.0
        if not 0.1 <= rate <= 100:
            raise MixgraphError("meter rate must be 0.1..100 Hz")
        pat = args[0].strip("/")
        if pat.startswith("node/"):
            pat = pat[5:]
        try:
            compile_pattern("/" + pat)
        except ValueError as e:
            raise MixgraphError(str(e)) from None
        names = [n for n in self.session.live if compile_pattern("/" + pat).match("/" + n)]
        fb.meters_subscribe(client, pat, rate, blob_only=args[2:] == ["blob"])
        reply("/done", ["/meters/subscribe", echo(args[0]), float(rate), len(names)])

    def _meters_unsubscribe(self, args: list, reply: Reply, _t: int, client=None) -> None:
        fb = self._need_feedback(client, stream=False)
        if len(args) > 1 or (args and not isinstance(args[0], str)):
            # `/meters/unsubscribe 5` stopped every stream of the client (attack10)
            raise MixgraphError("usage: /meters/unsubscribe [<pattern>] (a name or pattern "
                                "given to /meters/subscribe; none: all of this client's)")
        held = fb.meters_unsubscribe(client, args[0] if args else None)
        if held is not None:
            raise MixgraphError(f"not subscribed to {args[0][:64]!r} from this client "
                                f"address; its meter patterns: "
                                f"{' '.join(held[:8]) or 'none'}"
                                f"{' ...' if len(held) > 8 else ''}")
        reply("/done", ["/meters/unsubscribe", *(echo(a) for a in args[:1])])

    def _reply_port(self, args: list, reply: Reply, _t: int, client=None) -> None:
        if self.on_reply_port is None or client is None or client.kind != "udp":
            raise MixgraphError("/reply-port applies to UDP clients only")
        if len(args) != 1:
            raise MixgraphError("usage: /reply-port <port> (0 = the sending port)")
        port = int(number(args[0], "port"))
        if not 0 <= port <= 65535:
            raise MixgraphError(f"bad port {port}")
        self.on_reply_port(client, port)
        reply("/done", ["/reply-port", port])

    def state_messages(self) -> list[tuple[str, list]]:
        """Every parameter in both forms, and every node's bypass: a full dump."""
        out = []
        s = self.session
        for name, node in s.live.items():
            t = node.g.type
            for p in t.params:
                v = node.g.params.get(p.name, p.default)
                a = f"/node/{name}/{p.name}"
                out.append((a, [float(v)]))
                out.append((a + "/norm", [float(tapers.to_norm(p.taper, p.min, p.max, v))]))
            # node actions (learn, measure) are commands, not state: none here
            if t.param("bypass") is None and t.port(None, "in") and t.port(None, "out"):
                out.append((f"/node/{name}/bypass", [float(name in s.bypassed)]))
        return out

    # ---- /node/<name>/<param>[/norm|/touch], /node/<name>/bypass ---------------------
    def touch_holder(self, name: str, param: str):
        """Who holds a touch on a parameter; None: nobody, or the holder went silent
        (then the touch lapses). MIDI maps are held while a parameter is touched."""
        holder = self.touch.get((name, param))
        if holder is None:
            return None
        seen = self.counters.clients.get(holder)
        if seen is not None and time.monotonic() - seen > TOUCH_TIMEOUT_S:
            del self.touch[(name, param)]
            return None
        return holder

    def _check_touch(self, name: str, param: str, client: Peer | None) -> None:
        holder = self.touch_holder(name, param)
        if holder is not None and holder != _holder(client):
            raise MixgraphError("touched by another client")

    def _drop_touches(self, name: str) -> None:
        for k in [k for k in self.touch if k[0] == name]:
            del self.touch[k]

    def release_touches(self, key) -> None:
        """Forget every touch a client holds (it unsubscribed or disconnected)."""
        for k in [k for k, h in self.touch.items() if h == key]:
            del self.touch[k]

    def _node(self, address: str, args: list, reply: Reply, t: int,
              client: Peer | None) -> None:
        parts = address.split("/")
        n = len(parts)
        if n not in (4, 5) or not parts[2] or not parts[3]:
            raise MixgraphError("expected /node/<name>/<param>")
        name, param = parts[2], parts[3]
        s = self.session
        node = s.live.get(name)
        if node is None:
            raise MixgraphError(f"no node named {name!r}")
        if n == 4:
            act = actions_for(node.g.type.name).get(param)
            if act is not None:
                self._check_touch(name, param, client)
                run_action(s, name, act, address, args, reply,
                           lambda n_, p_, v_: self._changed(n_, p_, v_, None))
                return
        spec = node.g.type.param(param)
        if n == 4:
            if spec is None:
                if param == "bypass":
                    return self._bypass(name, address, args, reply, client)
                if s.has_readout(name, param):
                    if args:
                        raise MixgraphError(f"{param} is a read-only value")
                    reply(address, [float(v) for v in s.readout(name, param)])
                    return
            if not args:
                reply(address, [float(s.get_param(name, param))])
                return
            if len(args) != 1:
                raise MixgraphError(f"expected one value, got {len(args)}")
            self._check_touch(name, param, client)
            later = s.will_defer(node, t)  # then feedback goes out when it applies
            value, clamped = s.set_param(name, param, args[0], t)
            extra = [_adjusted(spec, args[0], value)] if clamped else []
            reply("/done", [address, float(value), *extra])
            if not later:
                self._changed(name, param, value, client)
            return
        sub = parts[4]
        if sub == "ramp" and spec is not None:  # server/ramps.py
            self._check_touch(name, param, client)
            reply("/done", [address, *ramps.osc_ramp(s, name, param, args, t)])
            self._changed(name, param, s.get_param(name, param), client)
            return
        if sub == "norm":
            if spec is None:
                if s.has_readout(name, param) and not args:
                    reply(address, [meter_norm(v) for v in s.readout(name, param)])
                    return
                s.get_param(name, param)  # raises the usual "has no parameter"
            if not args:
                v = s.get_param(name, param)
                reply(address, [float(tapers.to_norm(spec.taper, spec.min, spec.max, v))])
                return
            if len(args) != 1:
                raise MixgraphError(f"expected one value, got {len(args)}")
            x = number(args[0], f"{name}/{param}/norm")
            self._check_touch(name, param, client)
            later = s.will_defer(node, t)
            value, _ = s.set_param(name, param, tapers.to_value(spec.taper, spec.min,
                                                                spec.max, x), t)
            norm = tapers.to_norm(spec.taper, spec.min, spec.max, value)
            extra = ["clamped to 0..1"] if not 0.0 <= x <= 1.0 else []
            reply("/done", [address, float(norm), float(value), *extra])
            if not later:
                self._changed(name, param, value, client)
            return
        if sub == "touch":
            if spec is None:
                s.get_param(name, param)
            key = (name, param)
            if not args:
                reply(address, [int(key in self.touch)])
                return
            on = number(args[0], f"{name}/{param}/touch") != 0.0
            me = _holder(client)
            if on:
                self._check_touch(name, param, client)
                self.touch[key] = me
            elif key in self.touch and self.touch[key] == me:
                del self.touch[key]
            elif key in self.touch:
                raise MixgraphError("touched by another client")
            reply("/done", [address, int(on)])
            return
        raise MixgraphError(f"unknown address: {sub!r} after /node/{name}/{param}")

    def _bypass(self, name: str, address: str, args: list, reply: Reply,
                client: Peer | None) -> None:
        s = self.session
        if not args:
            s.bypass_ports(name)
            reply(address, [float(name in s.bypassed)])
            return
        if len(args) != 1:
            raise MixgraphError(f"expected one value, got {len(args)}")
        on = number(args[0], f"{name}/bypass") >= 0.5
        self._check_touch(name, "bypass", client)
        s.set_bypass(name, on)
        self._commit()
        reply("/done", [address, int(on)])
        self._changed(name, "bypass", float(on), client)

    # ---- patterns ----------------------------------------------------------------
    def addresses(self) -> list[str]:
        """The live address set that patterns match: the server's queries and
        subscriptions (readonly.READS: ANY) and every node's addresses. The server's
        commands (graph edits, /undo, /redo, patches, scenes, cues, MIDI maps,
        /reply-port) are reached by their literal address only: `/graph/*`, a look at
        the graph, ran /graph/clear, and `/*` ran /undo."""
        key = (self._graph_version, len(self.session.live), id(self.session.graph))
        if self._addr_cache is not None and self._addr_cache[0] == key:
            return self._addr_cache[1]
        out = sorted(a for a in self._literal if readonly.READS.get(a) == readonly.ANY)
        for name, node in self.session.live.items():
            t = node.g.type
            for p in t.params:
                a = f"/node/{name}/{p.name}"
                out += [a, a + "/norm", a + "/touch", a + "/ramp"]
            for r in t.readouts:
                a = f"/node/{name}/{r.name}"
                out += [a, a + "/norm"]
            out += [f"/node/{name}/{a}" for a in actions_for(t.name) if t.param(a) is None]
            if t.param("bypass") is None and t.port(None, "in") and t.port(None, "out"):
                out.append(f"/node/{name}/bypass")
        self._addr_cache = (key, out)
        return out

    def _pattern_payer(self, client: Peer | None) -> None:
        """Who pays for the pattern matching of the packet about to be handled."""
        self._pat_host = source_of(client.key) if client is not None else None
        self._pat_spent = 0.0

    @contextmanager
    def _whole_state(self, client: Peer | None, what: str):
        """Around a reply of the whole state (/dump, a /subscribe's first dump: tens of
        thousands of messages on a big graph, 0.6 s for 200 eq8 nodes): refused while the
        client's host has used its control-thread time for them (WHOLE_STATE_BURST_S,
        refilled at WHOLE_STATE_RATE a second: the browser page subscribes again after
        each graph change), and charged what it took. A read-only viewer sending /dump
        in a loop held other clients 11 s (attack3)."""
        if client is None:
            yield
            return

        def refuse(_b: Bucket) -> MixgraphError:
            return MixgraphError(f"{what}: too much whole-state work from this host (at most "
                                 f"{WHOLE_STATE_RATE * 1e3:g} ms a second of /dump, "
                                 "/subscribe, /graph/dump, /graph/nodes, /graph/connections "
                                 "and /catalog): try again later")

        with self._whole_budget.spend(source_of(client.key), refuse):
            yield

    @contextmanager
    def graph_work(self, client: Peer | None, what: str):
        """Around an edit of the whole graph (/patch/load, /undo, /redo; /scene/store,
        /scene/recall, /scene/morph and /cue/go, which touch every stored value): refused while
        the client's host has used its control-thread time for them (GRAPH_WORK_BURST_S,
        refilled at GRAPH_WORK_RATE a second), and charged what it took. A script
        sending /patch/load A, B, A, ... 200 times over UDP (40 eq8 against 30
        compressors) held the control thread for over 5 minutes, every other client's
        reply waiting behind it, and 2,000 /scene/morph of two 100-eq8 scenes likewise
        (attack6); the edits past the budget now fail at once. What is charged is the
        control thread's CPU time, so that a box loaded by other programs does not refuse
        an operator's edits for time spent waiting for a core. Work with no client is
        charged to `charged_to` when it is set: MIDI's (a note or program change on
        /scene/recall, /cue/go or /patch/load is a press that dispatches every time,
        attack10), else to no one (the server's own: cue chains, start-up)."""
        if client is not None:
            host = source_of(client.key)
        elif self.charged_to is not None:
            host = self.charged_to
        else:
            yield
            return
        budget = self._graph_budget

        def refuse(b: Bucket) -> GraphWorkRefused:
            return GraphWorkRefused(f"{what}: {GRAPH_WORK_REFUSED} from this host (at most "
                                    f"{GRAPH_WORK_RATE * 1e3:g} ms a second of /patch/load, /undo, "
                                    "/redo, scene and cue recalls after bursts of "
                                    f"{GRAPH_WORK_BURST_S:g} s): try "
                                    f"again in {max(budget.wait_s(b), 0.1):.1f} s")

        with budget.spend(host, refuse):
            yield

    def _match(self, pattern: str) -> list[str]:
        """The live addresses a pattern matches. Matches are kept while the address
        set stays the same (a check, a read-only test and the dispatch of one message
        match once). Matching a pattern walks every live address, so a client pays in
        time: a packet may spend PATTERN_PACKET_S and a source host PATTERN_HOST_S a
        second; past either the message fails (one packet of 250 patterns on a
        400-node graph held control for 17 s)."""
        addrs = self.addresses()
        key = self._addr_cache[0] if self._addr_cache is not None else None
        if key != self._match_key:
            self._match_memo.clear()
            self._match_key = key
        out = self._match_memo.get(pattern)
        if out is not None:
            return out
        host = self._pat_host
        budget = self._pat_budget
        if host is not None and self._pat_spent >= PATTERN_PACKET_S:
            raise MixgraphError(f"this packet has used its pattern matching time "
                                f"({PATTERN_PACKET_S * 1e3:g} ms): send fewer patterns "
                                "per packet, or literal addresses")
        try:
            rx = compile_pattern(pattern)
        except ValueError as e:
            raise MixgraphError(str(e)) from None

        def refuse(_b: Bucket) -> MixgraphError:
            return MixgraphError(f"too much pattern matching from this host (at most "
                                 f"{PATTERN_HOST_S * 1e3:g} ms a second): try again, or "
                                 "send literal addresses")

        t0 = budget.cost()
        with budget.spend(host, refuse) if host is not None else nullcontext():
            out = rx.filter(addrs)
            last = pattern.rsplit("/", 1)[-1]
            if is_pattern(last) or "//" in pattern:
                # `/node/dn/* 0.5` sets parameters; it does not start node actions
                # (learn, measure) nor pull their triggers: name those literally
                out = [a for a in out if not self._is_action_address(a)]
        self._pat_spent += budget.cost() - t0
        if len(self._match_memo) >= MATCH_MEMO:
            self._match_memo.clear()
        self._match_memo[pattern] = out
        return out

    def _is_action_address(self, address: str) -> bool:
        parts = address.split("/")
        if len(parts) != 4:
            return False
        node = self.session.live.get(parts[2])
        return node is not None and is_action_or_trigger(node.g.type.name, parts[3])

    def _pattern(self, address: str, args: list, reply: Reply, t: int,
                 client: Peer | None) -> None:
        matched = self._match(address)
        if not matched:
            raise MixgraphError("no address matches the pattern")
        with self._pattern_work(client):
            self._pattern_run(matched, address, args, reply, t, client)

    def _pattern_work(self, client: Peer | None):
        """Around what a pattern's matches do (run, or checked before a bundle is
        applied): paid for from the client host's own bucket of control-thread time.
        `/node/*/* 0` sets 7,000 parameters of a 160-node graph in 0.8 s, and 40 such
        packets over UDP held another client's reply 57 s (attack7); one UDP bundle of
        5,400 `//*` checked every match of each (60 million checks on 40 eq8) and held
        the control thread for minutes (attack11)."""
        def refuse(_b: Bucket) -> MixgraphError:
            return MixgraphError(f"too much work from patterns from this host (at most "
                                 f"{PATTERN_RUN_RATE * 1e3:g} ms a second of what their "
                                 f"matches do, after bursts of {PATTERN_RUN_BURST_S:g} s): "
                                 "try again, or send literal addresses")

        return self._set_budget.spend(source_of(client.key), refuse) if client is not None \
            else nullcontext()

    def _pattern_run(self, matched: list[str], address: str, args: list, reply: Reply,
                     t: int, client: Peer | None) -> None:
        self.counters.messages -= 1  # counted once per match below
        if not args:
            for a in matched:
                self.dispatch(a, args, reply, t, client)
            return
        collect = _Collect(reply)
        for a in matched:
            self.dispatch(a, args, collect, t, client)
        ok = []
        for a, rargs in collect.items:
            if a == "/done":
                ok.append(rargs[0])
            else:
                reply(a, rargs)
        if ok:
            shown = ok if len(ok) <= 256 else ok[:256] + [f"... {len(ok) - 256} more"]
            reply("/done", [address, len(ok), *shown])


def _held_cost(msgs: list[Timed]) -> int:
    """Bytes a held bundle costs, estimated: its text and values plus the objects
    that carry them."""
    def size(x) -> int:
        if isinstance(x, str | bytes | bytearray):
            return 56 + len(x)
        if isinstance(x, list | tuple):
            return 64 + sum(size(y) for y in x)
        return 32

    return 200 + sum(160 + size(m.address) + size(m.args) for m in msgs)


_LOCAL = ("local",)  # who holds a touch set in-process (a render's score): never None,
# which _check_touch reads as "nobody"


def _holder(client: Peer | None) -> object:
    """The key a touch is held under for this sender."""
    return client.key if client is not None else _LOCAL


def meter_norm(db: float) -> float:
    """A meter reading in dBFS on a 0..1 meter scale: linear in dB, -60 dB -> 0, 0 dB -> 1;
    +inf (an overflowed reading) is full scale, not an empty meter, and NaN is 0."""
    if math.isnan(db):
        return 0.0
    return min(max((db + 60.0) / 60.0, 0.0), 1.0)
