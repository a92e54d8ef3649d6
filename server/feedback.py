"""Feedback to clients: parameter subscriptions with leases, and meters.

Runs on the control thread. Changes are recorded as they are applied
(latest value per address wins) and flushed at a bounded rate (default
30 Hz, leading edge: a lone change goes out on the same control-loop turn;
periods are on a grid with one period of credit, so a flush that went out
late does not hold the next change back, and a flood gets one a period).
The loop sleeps no longer than next_due(): a held change and a meter frame
go out when due, not at the loop's next wake-up.
Each subscriber gets only what someone else changed, and only values that
differ from what it was last sent.

Limits: at most `max_subscribers` clients at once (a further /subscribe or
/meters/subscribe fails); a UDP subscriber whose sends fail SEND_ERRORS_MAX
times in a row (ICMP port unreachable: the client is gone) is dropped; a
meter frame is read and encoded once per period however many subscribers
take it; a TCP subscriber with more than METER_BACKLOG bytes unsent gets no
meter frames (state changes still queue) and is told how many it missed.
A subscriber leaving mid-period (a closed connection) does not disturb the
others: every loop works on a copy of the subscriber list."""

from __future__ import annotations

import logging
import math
import time

import msgpack

from . import tapers
from .errors import MixgraphError
from .osc import Dispatcher, Peer, encode_message, meter_norm, pack_bundles
from .patterns import compile_pattern
from .ratelog import source_of

log = logging.getLogger("mixgraph.feedback")

DEFAULT_LEASE_S = 10.0
DEFAULT_RATE_HZ = 30.0
METER_PATTERNS_MAX = 64  # /meters/subscribe patterns one client holds at once
DEFAULT_MAX_SUBSCRIBERS = 32  # tablets, desks and scripts at once (an X32 takes 4 /xremote)
SEND_ERRORS_MAX = 3  # failed sends in a row (nothing heard from it between) drop a subscriber
METER_BACKLOG = 64 << 10  # a TCP subscriber this far behind gets no meter frames


class Subscriber:
    __slots__ = ("peer", "lease", "expires", "params", "sent", "meters", "meter_rate",
                 "next_meter", "errors", "dropped", "names", "blob_only")

    def __init__(self, peer: Peer, lease: float) -> None:
        self.peer = peer
        self.lease = lease
        self.expires = time.monotonic() + lease
        self.params = False
        self.sent: dict[tuple[str, str], float] = {}
        self.meters: dict[str, object] = {}  # pattern -> compiled Pattern
        self.meter_rate = 20.0
        self.next_meter = 0.0
        self.errors = 0  # failed sends since it was last heard from
        self.dropped = 0  # meter frames not sent because it did not read (TCP)
        self.names: tuple | None = None  # (graph key, node names its patterns match)
        self.blob_only = False  # meters as the `/meters <blob>` alone (a browser's choice)


class Feedback:
    """Subscriptions, change coalescing and meter streaming."""

    def __init__(self, dispatcher: Dispatcher, rate_hz: float = DEFAULT_RATE_HZ,
                 default_lease: float = DEFAULT_LEASE_S,
                 max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
                 max_per_host: int = DEFAULT_MAX_SUBSCRIBERS) -> None:
        self.d = dispatcher
        # one source address (any ports, UDP, TCP and WebSocket together) holds at most
        # this many: 32 UDP ports of one host took every slot and no other host's
        # console could subscribe (attack4)
        self.max_per_host = max_per_host
        dispatcher.feedback = self
        self.period = 1.0 / rate_hz
        self.default_lease = default_lease
        self.max_subscribers = max_subscribers
        self._frames: dict[str, dict] = {}  # this turn's meter readings, by node
        self._msgs: dict[str, list[bytes]] = {}  # and as OSC messages, when asked
        self._blobs: dict[tuple, bytes] = {}  # and as `/meters <blob>`, by node list
        self.subs: dict[object, Subscriber] = {}
        self.dirty: dict[tuple[str, str], tuple[float, object]] = {}
        self.last_flush = 0.0
        self.sent_packets = 0

    # ---- subscription management --------------------------------------------------
    def _sub(self, peer: Peer, lease: float | None = None) -> Subscriber:
        s = self.subs.get(peer.key)
        if s is None:
            if len(self.subs) >= self.max_subscribers:
                raise MixgraphError(f"too many subscribers ({self.max_subscribers}; "
                                    "see --max-subscribers)")
            host = source_of(peer.key)
            if sum(1 for k in self.subs if source_of(k) == host) >= self.max_per_host:
                raise MixgraphError(f"too many subscribers from this address "
                                    f"({self.max_per_host}; see --max-subscribers-per-host)")
            s = self.subs[peer.key] = Subscriber(peer, lease or self.default_lease)
        else:
            s.peer = peer
        if lease:
            s.lease = lease
        s.expires = time.monotonic() + s.lease
        return s

    def subscribe(self, peer: Peer, lease: float) -> None:
        """Subscribe a client to parameter changes (raises MixgraphError over the
        subscriber cap); the caller answers, then sends the state with dump()."""
        s = self._sub(peer, lease)
        s.params = True

    def unsubscribe(self, peer: Peer) -> None:
        s = self.subs.pop(peer.key, None)
        if s is not None:
            self.d.release_touches(peer.key)

    def drop(self, key) -> None:
        """A connection closed: forget its subscription."""
        if self.subs.pop(key, None) is not None:
            self.d.release_touches(key)

    def renew(self, key) -> None:
        """Any message from a subscriber renews its lease."""
        s = self.subs.get(key)
        if s is not None:
            s.expires = time.monotonic() + s.lease
            s.errors = 0

    def send_failed(self, key) -> None:
        """A send to this subscriber failed (UDP: ICMP unreachable); after SEND_ERRORS_MAX
        in a row with nothing heard from it, it is gone: drop it."""
        s = self.subs.get(key)
        if s is None:
            return
        s.errors += 1
        if s.errors >= SEND_ERRORS_MAX:
            log.info("subscriber %s dropped: %d sends failed", s.peer.label, s.errors)
            self.drop(key)

    def meters_subscribe(self, peer: Peer, pattern: str, rate: float,
                         blob_only: bool = False) -> None:
        old = self.subs.get(peer.key)
        if old is not None and pattern not in old.meters and len(old.meters) >= METER_PATTERNS_MAX:
            # each is kept and matched against every node after each graph change: 50,000
            # from one client held 175 MB and made a graph change cost 5 s (attack4)
            raise MixgraphError(f"at most {METER_PATTERNS_MAX} meter patterns per client: "
                                "/meters/unsubscribe some, or use one pattern for many")
        s = self._sub(peer)
        s.blob_only = blob_only
        s.meters[pattern] = compile_pattern("/" + pattern)
        s.meter_rate = rate
        s.next_meter = 0.0
        s.names = None

    def meters_unsubscribe(self, peer: Peer, pattern: str | None) -> list[str] | None:
        """Stop the peer's meter streams (all, or one pattern). None when it held that
        pattern (or pattern is None), else the patterns it holds (for the /fail)."""
        s = self.subs.get(peer.key)
        if s is None:
            return None if pattern is None else []
        if pattern is None:
            s.meters.clear()
        elif s.meters.pop(pattern.strip("/").removeprefix("node/"), None) is None:
            return list(s.meters)
        s.names = None
        if not s.params and not s.meters:
            self.subs.pop(peer.key, None)
        return None

    # ---- changes ----------------------------------------------------------------
    def changed(self, name: str, param: str, value: float, origin: Peer | None) -> None:
        self.dirty[(name, param)] = (value, origin.key if origin is not None else None)

    def graph_changed(self, args: list, origin: Peer | None) -> None:
        okey = origin.key if origin is not None else None
        data = encode_message("/graph/changed", args)
        for key, s in list(self.subs.items()):
            if s.params and key != okey:
                self._send(s, [data])

    def message(self, address: str, args: list) -> None:
        """One message to every parameter subscriber (the show's /cue/playhead...)."""
        data = encode_message(address, args)
        for s in list(self.subs.values()):
            if s.params:
                self._send(s, [data])

    def device_changed(self, state: str, backend: str) -> None:
        """The audio device went away or came back: `/device/state <state>
        <backend>` to every subscriber (state is running or waiting)."""
        data = encode_message("/device/state", [state, backend])
        for s in list(self.subs.values()):
            self._send(s, [data])

    def dump(self, peer: Peer, msgs: list | None = None) -> int:
        """Every parameter (both forms) and bypass to one client; returns the count."""
        msgs = self.d.state_messages() if msgs is None else msgs
        s = self.subs.get(peer.key)
        data = [encode_message(a, v) for a, v in msgs]
        if s is not None and s.params:
            for a, v in msgs:
                parts = a.split("/")
                if len(parts) == 4:
                    s.sent[(parts[2], parts[3])] = v[0]
        for pkt in pack_bundles(data, peer.mtu):
            peer.send_packet(pkt)
        return len(msgs)

    def _send(self, s: Subscriber, msgs: list[bytes]) -> None:
        for pkt in pack_bundles(msgs, s.peer.mtu):
            try:
                s.peer.send_packet(pkt)
                self.sent_packets += 1
            except OSError as e:  # pragma: no cover - UDP send errors are rare
                log.debug("feedback to %s failed: %s", s.peer.label, e)

    # ---- the control loop calls this often ---------------------------------------
    def service(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if not self.subs:
            self.dirty.clear()
            return
        for key in [k for k, s in self.subs.items() if s.expires < now]:
            log.info("subscription of %s lapsed", self.subs[key].peer.label)
            self.drop(key)
        if self.dirty and now >= self.last_flush + self.period:  # next_due()
            # periods on a grid, with one period of credit: a flush that went out late
            # (the loop was held up) does not hold the next lone change back a whole
            # period from then, and a flood still gets one flush a period
            self.last_flush = max(self.last_flush + self.period, now - self.period)
            self._flush()
        self._frames.clear()  # readings are taken at most once per node per turn
        self._msgs.clear()
        self._blobs.clear()
        subs = self.subs
        for key, s in list(subs.items()):  # a send may close a connection (drop)
            if s.meters and now >= s.next_meter and subs.get(key) is s:
                # on a grid shared by every subscriber at this rate: they all take the
                # same turn's readings (16 browsers read the meters once, not 16 times)
                s.next_meter = (math.floor(now * s.meter_rate) + 1.0) / s.meter_rate
                self._send_meters(s)
        self._frames.clear()
        self._msgs.clear()
        self._blobs.clear()

    def next_due(self) -> float:
        """When service() next has something to send (time.monotonic(); inf: nothing):
        held changes at the end of their period, else the earliest subscriber's next
        meter frame. The control loop sleeps no longer than this."""
        t = math.inf
        if not self.subs:
            return t
        if self.dirty:
            t = self.last_flush + self.period
        for s in self.subs.values():
            if s.meters and s.next_meter < t:
                t = s.next_meter
        return t

    def _flush(self) -> None:
        dirty, self.dirty = self.dirty, {}
        live = self.d.session.live
        encoded: dict[tuple[str, str], list[bytes]] = {}
        subs = [s for s in self.subs.values() if s.params]
        pending: dict[object, list[bytes]] = {}
        for key, (value, origin) in dirty.items():
            name, param = key
            node = live.get(name)
            if node is None:
                continue
            for s in subs:
                if s.peer.key == origin:
                    s.sent[key] = value
                    continue
                if s.sent.get(key) == value:
                    continue
                s.sent[key] = value
                m = encoded.get(key)
                if m is None:
                    m = encoded[key] = self._encode(node, name, param, value)
                pending.setdefault(s.peer.key, []).extend(m)
        for k, msgs in pending.items():
            s = self.subs.get(k)  # an earlier send may have closed its connection
            if s is not None:
                self._send(s, msgs)

    @staticmethod
    def _encode(node, name: str, param: str, value: float) -> list[bytes]:
        a = f"/node/{name}/{param}"
        spec = node.g.type.param(param)
        if spec is None:  # bypass
            return [encode_message(a, [float(value)])]
        norm = tapers.to_norm(spec.taper, spec.min, spec.max, value)
        return [encode_message(a, [float(value)]), encode_message(a + "/norm", [float(norm)])]

    def _names(self, s: Subscriber) -> list[str]:
        """The metered nodes a subscriber's patterns match (cached per graph version)."""
        session = self.d.session
        key = (self.d._graph_version, len(session.live), id(session.graph))
        if s.names is not None and s.names[0] == key:
            return s.names[1]
        names = [n for n, node in session.live.items() if node.g.type.readouts
                 and any(rx.match("/" + n) for rx in s.meters.values())]
        s.names = (key, names)
        return names

    def _frame(self, name: str, node) -> dict:
        """One node's readings (once per turn, shared by every subscriber)."""
        f = self._frames.get(name)
        if f is not None:
            return f
        per = self._frames[name] = node.readouts()
        return per

    def _frame_msgs(self, name: str, node, per: dict) -> list[bytes]:
        """One node's readings as OSC messages (once per turn, and only when a subscriber
        takes the full stream: a meter node is 14 messages, and encoding them for the
        browsers' blob-only streams cost the control thread milliseconds a period, which
        delayed everyone's feedback)."""
        m = self._msgs.get(name)
        if m is not None:
            return m
        msgs: list[bytes] = []
        for r in node.g.type.readouts:
            vals = per[r.name]
            a = f"/meters/{name}/{r.name}"
            msgs.append(encode_message(a, [float(v) for v in vals]))
            if r.map == "db":
                for i, v in enumerate(vals):
                    msgs.append(encode_message(f"{a}/{i + 1}", [meter_norm(v)]))
        self._msgs[name] = msgs
        return msgs

    def _send_meters(self, s: Subscriber) -> None:
        backlog = s.peer.backlog
        if backlog is not None and backlog() >= METER_BACKLOG:
            s.dropped += 1  # a slow reader: state changes still queue, meters do not
            self.d.counters.meters_dropped += 1
            return
        session = self.d.session
        live = session.live
        names = self._names(s)
        key = tuple(names)
        blob_msg = self._blobs.get(key)
        if blob_msg is None:
            # once per turn for every subscriber to the same nodes (16 browsers on one
            # mixer take the same bytes: packing them 16 times cost 0.1 ms each)
            blob = {}
            for name in names:
                node = live.get(name)
                if node is not None:
                    blob[name] = self._frame(name, node)
            blob_msg = self._blobs[key] = encode_message("/meters", [msgpack.packb(
                {"time": session.engine.time, "meters": blob}, use_single_float=True)]) \
                if blob else b""
        if not blob_msg:
            return
        msgs: list[bytes] = []
        if not s.blob_only:
            for name in names:
                node = live.get(name)
                if node is not None:
                    msgs += self._frame_msgs(name, node, self._frame(name, node))
        if s.dropped:
            msgs.insert(0, encode_message("/fail", [
                "/meters", s.dropped, f"slow reader: {s.dropped} meter frames dropped"]))
            s.dropped = 0
        msgs.append(blob_msg)
        self._send(s, msgs)
