"""Feedback to clients: parameter subscriptions with leases, and meters.

Runs on the control thread. Changes are recorded as they are applied
(latest value per address wins) and flushed at a bounded rate (default
30 Hz, leading edge: a lone change goes out on the next control-loop turn).
Each subscriber gets only what someone else changed, and only values that
differ from what it was last sent."""

from __future__ import annotations

import logging
import time

import msgpack

from . import tapers
from .osc import Dispatcher, Peer, encode_message, meter_norm, pack_bundles
from .patterns import compile_pattern

log = logging.getLogger("mixgraph.feedback")

DEFAULT_LEASE_S = 10.0
DEFAULT_RATE_HZ = 30.0


class Subscriber:
    __slots__ = ("peer", "lease", "expires", "params", "sent", "meters", "meter_rate",
                 "next_meter")

    def __init__(self, peer: Peer, lease: float) -> None:
        self.peer = peer
        self.lease = lease
        self.expires = time.monotonic() + lease
        self.params = False
        self.sent: dict[tuple[str, str], float] = {}
        self.meters: dict[str, object] = {}  # pattern -> compiled regex
        self.meter_rate = 20.0
        self.next_meter = 0.0


class Feedback:
    """Subscriptions, change coalescing and meter streaming."""

    def __init__(self, dispatcher: Dispatcher, rate_hz: float = DEFAULT_RATE_HZ,
                 default_lease: float = DEFAULT_LEASE_S) -> None:
        self.d = dispatcher
        dispatcher.feedback = self
        self.period = 1.0 / rate_hz
        self.default_lease = default_lease
        self.subs: dict[object, Subscriber] = {}
        self.dirty: dict[tuple[str, str], tuple[float, object]] = {}
        self.last_flush = 0.0
        self.sent_packets = 0

    # ---- subscription management --------------------------------------------------
    def _sub(self, peer: Peer, lease: float | None = None) -> Subscriber:
        s = self.subs.get(peer.key)
        if s is None:
            s = self.subs[peer.key] = Subscriber(peer, lease or self.default_lease)
        else:
            s.peer = peer
        if lease:
            s.lease = lease
        s.expires = time.monotonic() + s.lease
        return s

    def subscribe(self, peer: Peer, lease: float) -> None:
        s = self._sub(peer, lease)
        s.params = True
        self.dump(peer)

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

    def meters_subscribe(self, peer: Peer, pattern: str, rate: float) -> None:
        s = self._sub(peer)
        s.meters[pattern] = compile_pattern("/" + pattern)
        s.meter_rate = rate
        s.next_meter = 0.0

    def meters_unsubscribe(self, peer: Peer, pattern: str | None) -> None:
        s = self.subs.get(peer.key)
        if s is None:
            return
        if pattern is None:
            s.meters.clear()
        else:
            s.meters.pop(pattern.strip("/").removeprefix("node/"), None)
        if not s.params and not s.meters:
            del self.subs[peer.key]

    # ---- changes ----------------------------------------------------------------
    def changed(self, name: str, param: str, value: float, origin: Peer | None) -> None:
        self.dirty[(name, param)] = (value, origin.key if origin is not None else None)

    def graph_changed(self, args: list, origin: Peer | None) -> None:
        okey = origin.key if origin is not None else None
        data = encode_message("/graph/changed", args)
        for key, s in list(self.subs.items()):
            if s.params and key != okey:
                self._send(s, [data])

    def device_changed(self, state: str, backend: str) -> None:
        """The audio device went away or came back: `/device/state <state>
        <backend>` to every subscriber (state is running or waiting)."""
        data = encode_message("/device/state", [state, backend])
        for s in list(self.subs.values()):
            self._send(s, [data])

    def dump(self, peer: Peer) -> int:
        """Every parameter (both forms) and bypass to one client; returns the count."""
        msgs = self.d.state_messages()
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
        if self.dirty and now - self.last_flush >= self.period:
            self.last_flush = now
            self._flush()
        for s in self.subs.values():
            if s.meters and now >= s.next_meter:
                s.next_meter = max(s.next_meter + 1.0 / s.meter_rate, now)
                self._send_meters(s)

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
            self._send(self.subs[k], msgs)

    @staticmethod
    def _encode(node, name: str, param: str, value: float) -> list[bytes]:
        a = f"/node/{name}/{param}"
        spec = node.g.type.param(param)
        if spec is None:  # bypass
            return [encode_message(a, [float(value)])]
        norm = tapers.to_norm(spec.taper, spec.min, spec.max, value)
        return [encode_message(a, [float(value)]), encode_message(a + "/norm", [float(norm)])]

    def _send_meters(self, s: Subscriber) -> None:
        session = self.d.session
        msgs = []
        blob: dict = {}
        for name, node in session.live.items():
            t = node.g.type
            if not t.readouts or not any(rx.match("/" + name) for rx in s.meters.values()):
                continue
            per = blob[name] = {}
            for r in t.readouts:
                vals = session.readout(name, r.name)
                per[r.name] = vals
                a = f"/meters/{name}/{r.name}"
                msgs.append(encode_message(a, [float(v) for v in vals]))
                if r.map == "db":
                    for i, v in enumerate(vals):
                        msgs.append(encode_message(f"{a}/{i + 1}", [meter_norm(v)]))
        if not blob:
            return
        packed = msgpack.packb({"time": session.engine.time, "meters": blob},
                               use_single_float=True)
        msgs.append(encode_message("/meters", [packed]))
        self._send(s, msgs)
