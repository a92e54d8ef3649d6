"""OSC: packet parsing, the address space (dispatch), and the UDP server.

python-osc parses and builds packets; dispatch is our own: one dict lookup
for literal addresses plus a split of /node/<name>/<param>. Dispatch never
sleeps: a bundle's future timetag becomes an engine sample time."""

from __future__ import annotations

import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from . import __version__
from .catalog import CATALOG
from .errors import EngineBusy, MixgraphError
from .session import Session
from .state import PatchStore

log = logging.getLogger("mixgraph.osc")

Reply = Callable[[str, list], None]
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970
IMMEDIATE = (0, 1)


@dataclass
class Timed:
    """One message from a packet, with the raw OSC timetag of its bundle."""

    address: str
    args: list
    timetag: tuple[int, int] = IMMEDIATE


def parse_packet(data: bytes, timetag: tuple[int, int] = IMMEDIATE) -> list[Timed]:
    """Messages of an OSC packet (bundles flattened, nested timetags kept)."""
    if data[:8] == b"#bundle\0":
        if len(data) < 16:
            raise MixgraphError("truncated bundle")
        tt = struct.unpack(">II", data[8:16])
        out: list[Timed] = []
        pos = 16
        while pos < len(data):
            if pos + 4 > len(data):
                raise MixgraphError("truncated bundle element size")
            (size,) = struct.unpack(">i", data[pos:pos + 4])
            pos += 4
            if size <= 0 or size % 4 or pos + size > len(data):
                raise MixgraphError(f"bad bundle element size {size}")
            out += parse_packet(data[pos:pos + size], tt)
            pos += size
        return out
    if data[:1] != b"/":
        raise MixgraphError("not an OSC message or bundle")
    if len(data) % 4:
        # python-osc pads a truncated argument with zeros; OSC sizes are multiples of 4
        raise MixgraphError(f"truncated OSC message ({len(data)} bytes)")
    try:
        msg = OscMessage(data)
        return [Timed(msg.address, list(msg.params), timetag)]
    except Exception as e:  # python-osc raises several types for garbage
        raise MixgraphError(f"cannot parse OSC message: {e}") from None


def build_message(address: str, args: list) -> bytes:
    """Encode an OSC message; Python types choose the OSC type tags."""
    b = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, bool):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_TRUE if a else OscMessageBuilder.ARG_TYPE_FALSE)
        elif isinstance(a, int):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_INT if -2**31 <= a < 2**31
                      else OscMessageBuilder.ARG_TYPE_INT64)
        elif isinstance(a, float):
            b.add_arg(a, OscMessageBuilder.ARG_TYPE_FLOAT)
        elif isinstance(a, bytes | bytearray):
            b.add_arg(bytes(a), OscMessageBuilder.ARG_TYPE_BLOB)
        else:
            b.add_arg(str(a), OscMessageBuilder.ARG_TYPE_STRING)
    return b.build().dgram


@dataclass
class Counters:
    """What the control side counts (shown in /status and the status line)."""

    messages: int = 0
    failed: int = 0
    garbage: int = 0
    late: int = 0
    clients: dict = field(default_factory=dict)  # addr -> last seen (monotonic)

    def active_clients(self, window_s: float = 30.0) -> int:
        now = time.monotonic()
        return sum(1 for t in self.clients.values() if now - t < window_s)


class Dispatcher:
    """The OSC address space of mixgraph, independent of any transport."""

    def __init__(self, session: Session, store: PatchStore | None = None,
                 info: dict | None = None, counters: Counters | None = None,
                 wallclock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.store = store
        self.info = info or {}
        self.counters = counters or Counters()
        self.wallclock = wallclock
        self._literal: dict[str, Callable[[list, Reply, int], None]] = {
            "/graph/add": self._graph_add,
            "/graph/remove": self._graph_remove,
            "/graph/connect": self._graph_connect,
            "/graph/disconnect": self._graph_disconnect,
            "/graph/clear": self._graph_clear,
            "/graph/dump": self._graph_dump,
            "/catalog": self._catalog,
            "/status": self._status,
            "/info": self._info,
            "/sync": self._sync,
            "/patch/save": self._patch_save,
            "/patch/load": self._patch_load,
            "/patch/list": self._patch_list,
        }

    # ---- entry point ---------------------------------------------------------
    def dispatch(self, address: str, args: list, reply: Reply, time_: int = 0) -> None:
        """Run one command; every path ends in a reply (done, fail or the query's answer)."""
        self.counters.messages += 1
        try:
            handler = self._literal.get(address)
            if handler is not None:
                handler(args, reply, time_)
            elif address.startswith("/node/"):
                self._node(address, args, reply, time_)
            else:
                raise MixgraphError("unknown address")
        except MixgraphError as e:
            self.counters.failed += 1
            reply("/fail", [address, *self._keys(address, args), str(e)])
        except Exception as e:  # a bug must not take the control thread down
            self.counters.failed += 1
            log.exception("internal error handling %s", address)
            reply("/fail", [address, *self._keys(address, args), f"internal error: {e}"])

    def sample_time(self, timetag: tuple[int, int]) -> int:
        """Engine sample time for an OSC timetag (0 = now), via the wall clock."""
        if timetag == IMMEDIATE:
            return 0
        secs = timetag[0] - NTP_EPOCH_OFFSET + timetag[1] / 2**32
        ahead = secs - self.wallclock()
        if ahead <= 0:
            self.counters.late += 1
            return 0
        e = self.session.engine
        return e.time + int(round(ahead * e.sample_rate))

    @staticmethod
    def _keys(address: str, args: list) -> list:
        """The arguments a sender needs to match a /fail to its request."""
        if address == "/graph/add":
            return [a for a in args[1:2] if isinstance(a, str)]
        if address in ("/graph/remove", "/patch/save", "/patch/load", "/sync"):
            return args[:1]
        if address in ("/graph/connect", "/graph/disconnect"):
            return [a for a in args[:2] if isinstance(a, str)]
        return []

    # ---- /graph ----------------------------------------------------------------
    @staticmethod
    def _want(args: list, n: int, usage: str) -> None:
        if len(args) != n or not all(isinstance(a, str) for a in args):
            raise MixgraphError(f"usage: {usage}")

    def _graph_add(self, args: list, reply: Reply, _t: int) -> None:
        if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], str):
            raise MixgraphError("usage: /graph/add <type> <name> [<key> <value>]...")
        if len(args) % 2:
            raise MixgraphError("settings come in <key> <value> pairs")
        settings = {}
        for k, v in zip(args[2::2], args[3::2], strict=True):
            if not isinstance(k, str):
                raise MixgraphError(f"setting name must be a string, got {k!r}")
            settings[k] = v
        g = self.session.add_node(args[0], args[1], settings)
        clamped = g.options.pop("_clamped", None)
        extra = [f"clamped to range: {', '.join(clamped)}"] if clamped else []
        self.session.commit()
        reply("/done", ["/graph/add", g.name, *extra])

    def _graph_remove(self, args: list, reply: Reply, _t: int) -> None:
        self._want(args, 1, "/graph/remove <name>")
        self.session.remove_node(args[0])
        self.session.commit()
        reply("/done", ["/graph/remove", args[0]])

    def _graph_connect(self, args: list, reply: Reply, _t: int) -> None:
        self._want(args, 2, "/graph/connect <src>[:port] <dst>[:port]")
        self.session.connect(args[0], args[1])
        self.session.commit()
        reply("/done", ["/graph/connect", args[0], args[1]])

    def _graph_disconnect(self, args: list, reply: Reply, _t: int) -> None:
        self._want(args, 2, "/graph/disconnect <src>[:port] <dst>[:port]")
        self.session.disconnect(args[0], args[1])
        self.session.commit()
        reply("/done", ["/graph/disconnect", args[0], args[1]])

    def _graph_clear(self, args: list, reply: Reply, _t: int) -> None:
        for name in list(self.session.graph.nodes):
            self.session.remove_node(name)
        self.session.commit()
        reply("/done", ["/graph/clear"])

    def _graph_dump(self, args: list, reply: Reply, _t: int) -> None:
        reply("/graph/dump.reply", [msgpack.packb(self.session.to_doc(), use_bin_type=True)])

    def _catalog(self, args: list, reply: Reply, _t: int) -> None:
        blob = msgpack.packb([t.describe() for t in CATALOG.values()], use_bin_type=True)
        reply("/catalog.reply", [blob])

    # ---- status, info, sync --------------------------------------------------------
    def _status(self, args: list, reply: Reply, _t: int) -> None:
        e = self.session.engine
        st = e.stats()
        block = self.info.get("block", 0)
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
        ])

    def _info(self, args: list, reply: Reply, _t: int) -> None:
        reply("/info.reply", ["name", "mixgraph", "version", __version__,
                              *[x for k, v in self.info.items() for x in (k, v)]])

    def _sync(self, args: list, reply: Reply, t: int) -> None:
        if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], int | float):
            raise MixgraphError("usage: /sync <id>")
        token = int(args[0])
        self.session.sync(token, lambda: reply("/synced", [token]))

    # ---- /patch --------------------------------------------------------------------
    def _need_store(self) -> PatchStore:
        if self.store is None:
            raise MixgraphError("this server has no state directory")
        return self.store

    def _patch_save(self, args: list, reply: Reply, _t: int) -> None:
        self._want(args, 1, "/patch/save <name>")
        self._need_store().save(args[0], self.session.to_doc())
        reply("/done", ["/patch/save", args[0]])

    def _patch_load(self, args: list, reply: Reply, _t: int) -> None:
        self._want(args, 1, "/patch/load <name>")
        doc = self._need_store().load(args[0])
        self.session.load_doc(doc)
        self.session.commit()
        reply("/done", ["/patch/load", args[0]])

    def _patch_list(self, args: list, reply: Reply, _t: int) -> None:
        reply("/patch/list.reply", list(self._need_store().names()))

    # ---- /node/<name>/<param> ------------------------------------------------------
    def _node(self, address: str, args: list, reply: Reply, t: int) -> None:
        parts = address.split("/")
        if len(parts) != 4 or not parts[2] or not parts[3]:
            raise MixgraphError("expected /node/<name>/<param>")
        name, param = parts[2], parts[3]
        s = self.session
        if name not in s.live:
            raise MixgraphError(f"no node named {name!r}")
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
        value, clamped = s.set_param(name, param, args[0], t)
        spec = s.live[name].g.type.param(param)
        extra = [f"clamped to {spec.min:g}..{spec.max:g}"] if clamped else []
        reply("/done", [address, float(value), *extra])


class UdpServer:
    """OSC over UDP on the control thread: receive, dispatch, reply, service the engine."""

    def __init__(self, dispatcher: Dispatcher, host: str = "127.0.0.1", port: int = 8000,
                 tick: Callable[[], None] | None = None, max_packet: int = 65536) -> None:
        self.dispatcher = dispatcher
        self.tick = tick
        self.max_packet = max_packet
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise MixgraphError(f"cannot listen on udp {host}:{port}: {e.strerror}") from None
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._last_garbage_log = 0.0

    def send(self, addr, address: str, args: list) -> None:
        try:
            self.sock.sendto(build_message(address, args), addr)
        except OSError as e:
            log.warning("reply to %s failed: %s", addr, e)

    def handle_datagram(self, data: bytes, addr) -> None:
        d = self.dispatcher
        d.counters.clients[addr] = time.monotonic()
        try:
            msgs = parse_packet(data)
        except MixgraphError as e:
            d.counters.garbage += 1
            now = time.monotonic()
            if now - self._last_garbage_log > 1.0:
                self._last_garbage_log = now
                log.warning("garbage packet from %s:%s (%s); %d so far", addr[0], addr[1], e,
                            d.counters.garbage)
            return

        def reply(address: str, args: list) -> None:
            self.send(addr, address, args)

        for m in msgs:
            t = d.sample_time(m.timetag)
            try:
                d.dispatch(m.address, m.args, reply, t)
            except EngineBusy as e:  # pragma: no cover - EngineBusy is a MixgraphError
                reply("/fail", [m.address, str(e)])

    def serve_forever(self) -> None:
        """The control loop: until stop() is called."""
        sock = self.sock
        while not self._stop.is_set():
            r, _, _ = select.select([sock], [], [], 0.005)
            if r:
                # drain what is there, then service the engine once
                for _ in range(256):
                    try:
                        data, addr = sock.recvfrom(self.max_packet)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                    self.handle_datagram(data, addr)
                    sock.setblocking(False)
                sock.setblocking(True)
            try:
                self.dispatcher.session.service()
            except Exception:
                log.exception("engine service failed")
            if self.tick:
                self.tick()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.sock.close()

