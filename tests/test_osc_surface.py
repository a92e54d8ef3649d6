"""The OSC address space in-process: tapers and /norm, touch, bypass, patterns,
lenient types, atomic bundles, late bundles, introspection (no sockets)."""

from __future__ import annotations

import math
import struct

import msgpack
import numpy as np
import pytest

from mixgraph.server import tapers
from mixgraph.server.engine import Engine
from mixgraph.server.osc import (
    NTP_EPOCH_OFFSET,
    Dispatcher,
    Peer,
    encode_bundle,
    encode_message,
    parse_packet,
)
from mixgraph.server.patterns import compile_pattern, match
from mixgraph.server.session import Session


class Box:
    """A fake client: a Peer whose packets are kept, decoded."""

    def __init__(self, key) -> None:
        self.got: list[tuple[str, list]] = []
        self.peer = Peer(key, self._recv, kind="udp")

    def _recv(self, data: bytes) -> None:
        for m in parse_packet(data):
            self.got.append((m.address, m.args))

    def take(self) -> list[tuple[str, list]]:
        out, self.got = self.got, []
        return out


@pytest.fixture
def rig():
    e = Engine(48000, 1, 1)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    a = Box(("127.0.0.1", 1))
    for i in range(1, 5):
        d.dispatch("/graph/add", ["gain", f"ch{i}", "channels", 1], a.peer.reply, 0, a.peer)
    d.dispatch("/graph/add", ["sine", "osc", "freq", 1000.0], a.peer.reply)
    d.dispatch("/graph/add", ["output", "out", "channels", 1], a.peer.reply)
    a.take()
    yield e, s, d, a
    s.close()
    e.free()


def call(d, box, address, *args):
    box.take()
    d.dispatch(address, list(args), box.peer.reply, 0, box.peer)
    return box.take()


# ---- tapers -------------------------------------------------------------------------
def test_fader_taper_console_breakpoints():
    # the published console law (X32-style): 0.75 is unity, 0.5 -10 dB, 0.25 -30 dB,
    # 0.0625 -60 dB; 0 is the bottom of the range and 1 the top
    for n, db in [(0.75, 0.0), (0.5, -10.0), (0.25, -30.0), (0.0625, -60.0)]:
        assert tapers.to_value("fader", -120, 24, n) == pytest.approx(db, abs=1e-12)
        assert tapers.to_norm("fader", -120, 24, db) == pytest.approx(n, abs=1e-12)
    assert tapers.to_value("fader", -120, 24, 0.0) == -120.0
    assert tapers.to_value("fader", -120, 24, 1.0) == 24.0
    # linear in dB between breakpoints: halfway from 0.5 to 0.75 is -5 dB
    assert tapers.to_value("fader", -120, 24, 0.625) == pytest.approx(-5.0)
    # monotonic and invertible over the whole travel
    ns = np.linspace(0, 1, 1001)
    vs = [tapers.to_value("fader", -120, 0, n) for n in ns]
    assert all(b > a for a, b in zip(vs, vs[1:], strict=False))
    assert max(abs(tapers.to_norm("fader", -120, 0, v) - n) for v, n in zip(vs, ns,
                                                                            strict=True)) < 1e-9
    # a range whose top is 0 dB: the unity breakpoint is the end, so 1.0 -> 0 dB
    assert tapers.fader_points(-120, 0)[-1] == [1.0, 0]


def test_log_linear_stepped_tapers():
    # log: geometric mean of the ends at the middle (closed form sqrt(1 * 24000))
    assert tapers.to_value("log", 1, 24000, 0.5) == pytest.approx(math.sqrt(24000))
    assert tapers.to_norm("log", 20, 20000, 200) == pytest.approx(1 / 3)
    assert tapers.to_value("linear", -1, 1, 0.25) == -0.5
    assert tapers.to_value("stepped", 0, 1, 0.49) == 0.0
    assert tapers.to_value("stepped", 0, 1, 0.51) == 1.0
    assert tapers.to_value("linear", -1, 1, 7) == 1.0  # clamped


def test_norm_set_query_and_reply(rig):
    e, s, d, a = rig
    assert call(d, a, "/node/ch1/gain/norm", 0.75) == [("/done", ["/node/ch1/gain/norm",
                                                                   0.75, 0.0])]
    assert s.get_param("ch1", "gain") == 0.0
    assert call(d, a, "/node/ch1/gain/norm") == [("/node/ch1/gain/norm", [0.75])]
    call(d, a, "/node/ch1/gain", -10.0)
    assert call(d, a, "/node/ch1/gain/norm") == [("/node/ch1/gain/norm", [0.5])]
    r = call(d, a, "/node/osc/freq/norm", 0.5)
    assert r[0][0] == "/done" and r[0][1][2] == pytest.approx(math.sqrt(24000), rel=1e-6)
    r = call(d, a, "/node/ch1/mute/norm", True)  # T on a switch
    assert r == [("/done", ["/node/ch1/mute/norm", 1.0, 1.0])]
    r = call(d, a, "/node/ch1/gain/norm", float("nan"))
    assert r[0][0] == "/fail" and "finite" in r[0][1][-1]
    r = call(d, a, "/node/ch1/nope/norm", 0.5)
    assert r[0][0] == "/fail" and "no parameter" in r[0][1][-1]


def test_catalog_publishes_taper_points(rig):
    e, s, d, a = rig
    [(addr, [blob])] = call(d, a, "/catalog")
    cat = {t["name"]: t for t in msgpack.unpackb(blob)}
    g = {p["name"]: p for p in cat["gain"]["params"]}["gain"]
    assert g["taper"] == "fader" and [0.75, 0.0] in g["points"]
    types = call(d, a, "/catalog/list")
    assert types[-1][0] == "/done" and len(types) - 1 == len(cat)
    rows = call(d, a, "/catalog/type", "gain")
    params = [r[1] for r in rows if r[0] == "/catalog/type.param"]
    assert [p[1] for p in params] == ["gain", "mute", "polarity", "vca"]
    assert rows[-1] == ("/done", ["/catalog/type", "gain"])
    assert call(d, a, "/catalog/type", "nope")[0][0] == "/fail"


# ---- patterns -----------------------------------------------------------------------
def test_pattern_compiler():
    addrs = ["/node/ch1/gain", "/node/ch2/gain", "/node/ch10/gain", "/node/bus/gain",
             "/node/ch1/gain/norm", "/status"]
    assert match("/node/ch*/gain", addrs) == addrs[:3]
    assert match("/node/ch?/gain", addrs) == addrs[:2]
    assert match("/node/ch[12]/gain", addrs) == addrs[:2]
    assert match("/node/ch[!1]/gain", addrs) == ["/node/ch2/gain"]
    assert match("/node/ch[0-9]*/gain", addrs) == addrs[:3]
    assert match("/node/{bus,ch2}/gain", addrs) == ["/node/ch2/gain", "/node/bus/gain"]
    assert match("//gain", addrs) == addrs[:4]
    assert match("/node//norm", addrs) == ["/node/ch1/gain/norm"]
    assert match("/*", addrs) == ["/status"]
    with pytest.raises(ValueError):
        compile_pattern("/node/ch[1/gain")


def test_pattern_sets_every_match(rig):
    e, s, d, a = rig
    r = call(d, a, "/node/ch*/gain", -6)
    assert r == [("/done", ["/node/ch*/gain", 4] + [f"/node/ch{i}/gain" for i in range(1, 5)])]
    assert all(s.get_param(f"ch{i}", "gain") == -6.0 for i in range(1, 5))
    r = call(d, a, "//ch[23]/gain/norm", 0.75)
    assert r[0][1][:2] == ["//ch[23]/gain/norm", 2]
    assert s.get_param("ch2", "gain") == 0.0 and s.get_param("ch1", "gain") == -6.0
    r = call(d, a, "/node/ch{1,4}/gain")  # a query pattern: one answer per match
    assert r == [("/node/ch1/gain", [-6.0]), ("/node/ch4/gain", [-6.0])]
    r = call(d, a, "/node/zz*/gain", 1)
    assert r[0][0] == "/fail" and r[0][1][0] == "/node/zz*/gain"
    r = call(d, a, "/node/ch[1/gain", 1)
    assert r[0][0] == "/fail"


# ---- lenient types ------------------------------------------------------------------
@pytest.mark.parametrize("arg", [-3, -3.0, True, False])
def test_lenient_numbers(rig, arg):
    e, s, d, a = rig
    r = call(d, a, "/node/ch1/gain", arg)
    assert r[0][0] == "/done" and r[0][1][1] == float(arg)


def test_lenient_types_from_the_wire(rig):
    e, s, d, a = rig
    # h (int64) and d (double) straight from bytes, since python-osc builds i/f here
    msg = b"/node/ch1/gain\0\0" + b",h\0\0" + struct.pack(">q", -4)
    [m] = parse_packet(msg)
    d.dispatch(m.address, m.args, a.peer.reply, 0, a.peer)
    assert s.get_param("ch1", "gain") == -4.0
    a.take()
    msg = b"/sync\0\0\0" + b",d\0\0" + struct.pack(">d", 7.0)
    [m] = parse_packet(msg)
    d.dispatch(m.address, m.args, a.peer.reply, 0, a.peer)
    assert a.take() == []  # /synced comes when the engine has applied it
    e.process(64)
    s.service()
    assert a.take() == [("/synced", [7])]
    call(d, a, "/graph/add", "gain", "g2", "channels", True)  # T as a count
    assert s.graph.nodes["g2"].channels == 1


# ---- touch --------------------------------------------------------------------------
def test_touch_holds_back_other_clients(rig):
    e, s, d, a = rig
    b = Box(("127.0.0.1", 2))
    d.counters.clients[a.peer.key] = __import__("time").monotonic()
    assert call(d, a, "/node/ch1/gain/touch", 1) == [("/done", ["/node/ch1/gain/touch", 1])]
    r = call(d, b, "/node/ch1/gain", 6.0)
    assert r[0] == ("/fail", ["/node/ch1/gain", "touched by another client"])
    assert s.get_param("ch1", "gain") == 0.0  # held back (dropped), not applied later
    r = call(d, b, "/node/ch1/gain/norm", 0.1)
    assert r[0][0] == "/fail"
    assert call(d, a, "/node/ch1/gain", -3.0)[0][0] == "/done"  # the holder may move it
    assert call(d, b, "/node/ch1/gain/touch", 1)[0][0] == "/fail"
    assert call(d, a, "/node/ch1/gain/touch", 0)[0][0] == "/done"
    assert call(d, b, "/node/ch1/gain", 6.0)[0][0] == "/done"
    assert s.get_param("ch1", "gain") == 6.0


# ---- bypass -------------------------------------------------------------------------
def test_bypass_is_click_free_and_exact():
    e = Engine(48000, 1, 1)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    a = Box("a")
    for m in [("/graph/add", "input", "in", "channels", 1),
              ("/graph/add", "gain", "g", "channels", 1, "gain", -20.0),
              ("/graph/add", "output", "out", "channels", 1),
              ("/graph/connect", "in", "g"), ("/graph/connect", "g", "out")]:
        d.dispatch(m[0], list(m[1:]), a.peer.reply, 0, a.peer)
    n = 4800
    t = np.arange(3 * n) / 48000.0
    x = (0.5 * np.sin(2 * np.pi * 100 * t)).astype(np.float32).reshape(-1, 1)
    y0 = e.process(n, x[:n], block=64)
    assert call(d, a, "/node/g/bypass", 1) == [("/done", ["/node/g/bypass", 1])]
    y1 = e.process(n, x[n:2 * n], block=64)
    s.service()
    y2 = e.process(n, x[2 * n:], block=64)
    y = np.concatenate([y0, y1, y2])[:, 0]
    # before: -20 dB (0.1); after the fade: the dry input exactly
    np.testing.assert_allclose(y[:n], 0.1 * x[:n, 0], atol=1e-6)
    np.testing.assert_allclose(y[n + 480:], x[n + 480:, 0], atol=1e-6)
    # click-free: no step larger than the signal's own slope plus the 5 ms fade's
    slope = np.abs(np.diff(x[:, 0])).max()
    assert np.abs(np.diff(y)).max() <= slope + 0.5 / 240 + 1e-6
    assert call(d, a, "/node/g/bypass") == [("/node/g/bypass", [1.0])]
    assert s.to_doc()["nodes"][1]["bypass"] is True
    assert call(d, a, "/node/in/bypass", 1)[0][0] == "/fail"  # no input port
    call(d, a, "/node/g/bypass", False)
    e.process(n, x[:n], block=64)
    s.service()
    y3 = e.process(n, x[:n], block=64)
    np.testing.assert_allclose(y3[:, 0], 0.1 * x[:n, 0], atol=1e-6)
    s.close()
    e.free()


# ---- bundles ------------------------------------------------------------------------
def _bundle(msgs, tt=(0, 1)):
    return encode_bundle([encode_message(a, args) for a, args in msgs], tt)


def test_bundle_all_or_nothing_for_parameters(rig):
    e, s, d, a = rig
    pkt = _bundle([("/node/ch1/gain", [-1.0]), ("/node/ch2/gain", [-2.0]),
                   ("/node/nope/gain", [-3.0])])
    d.dispatch_packet(parse_packet(pkt), a.peer, True)
    r = a.take()
    assert [x[0] for x in r] == ["/fail"] * 3
    assert "bundle not applied" in r[0][1][-1] and "no node named" in r[2][1][-1]
    assert s.get_param("ch1", "gain") == 0.0 and s.get_param("ch2", "gain") == 0.0
    pkt = _bundle([("/node/ch1/gain", [-1.0]), ("/node/ch2/gain", [-2.0])])
    d.dispatch_packet(parse_packet(pkt), a.peer, True)
    assert [x[0] for x in a.take()] == ["/done", "/done"]
    assert s.get_param("ch2", "gain") == -2.0


def test_bundle_with_graph_edits_rolls_back(rig):
    e, s, d, a = rig
    before = s.to_doc()
    pkt = _bundle([("/graph/add", ["gain", "new"]), ("/graph/connect", ["new", "out"]),
                   ("/node/ch1/gain", [-9.0]), ("/graph/connect", ["new", "osc"])])
    d.dispatch_packet(parse_packet(pkt), a.peer, True)
    r = a.take()
    assert all(x[0] == "/fail" for x in r), r
    assert any("rolled back" in x[1][-1] for x in r)
    assert s.to_doc() == before
    pkt = _bundle([("/graph/add", ["gain", "new", "channels", 1]),
                   ("/graph/connect", ["new", "out"])])
    d.dispatch_packet(parse_packet(pkt), a.peer, True)
    assert [x[0] for x in a.take()] == ["/done", "/done"]
    assert "new" in s.live


def test_bundle_adds_a_node_and_sets_its_first_values(rig):
    """A script builds a strip in one bundle: the add, then values and patterns that
    name the new node. A typo in a later name still rolls the whole bundle back."""
    e, s, d, a = rig
    pkt = _bundle([("/graph/add", ["gain", "vox", "channels", 1]),
                   ("/node/vox/gain", [-6.0]), ("/node/vox/gain/norm", [0.5]),
                   ("/node/v?x/mute", [1]), ("/graph/connect", ["vox", "out"])])
    d.dispatch_packet(parse_packet(pkt), a.peer, True)
    r = a.take()
    assert [x[0] for x in r] == ["/done"] * 5, r
    assert s.get_param("vox", "gain") == pytest.approx(-10.0) and s.get_param("vox", "mute") == 1
    before = s.to_doc()
    pkt = _bundle([("/graph/add", ["gain", "gtr", "channels", 1]),
                   ("/node/gtr/gain", [-3.0]), ("/node/gtar/gain", [-3.0])])
    d.dispatch_packet(parse_packet(pkt), a.peer, True)
    r = a.take()
    assert [x[0] for x in r] == ["/fail"] * 3, r
    assert "no node named 'gtar'" in r[2][1][-1] and "rolled back" in r[0][1][-1], r
    assert s.to_doc() == before and "gtr" not in s.live
    # parameters only: still checked whole before any is applied
    pkt = _bundle([("/node/vox/gain", [-1.0]), ("/node/gtr/gain", [-2.0])])
    d.dispatch_packet(parse_packet(pkt), a.peer, True)
    assert [x[0] for x in a.take()] == ["/fail"] * 2
    assert s.get_param("vox", "gain") == pytest.approx(-10.0)


def test_bundle_lands_on_one_sample_and_late_is_reported(rig):
    e, s, d, a = rig
    e.process(640)
    now = 1_000_000.0
    d.wallclock = lambda: now
    # late by 250 ms: applied at once and the sender is told how late
    secs = now - 0.25
    tt = (int(secs) + NTP_EPOCH_OFFSET, int((secs % 1) * 2**32))
    d.dispatch_packet(parse_packet(_bundle([("/node/ch1/gain", [-5.0])], tt)), a.peer, True)
    r = a.take()
    assert r[0][0] == "/late" and r[0][1][0] == "/node/ch1/gain"
    assert r[0][1][1] == pytest.approx(250.0, abs=0.01)
    assert r[1][0] == "/done"
    # an immediate bundle gets one common sample time (two blocks ahead)
    assert d._bundle_time((0, 1)) == (e.time + 128, None)
    # a future bundle with a graph edit is held, then applied when due
    secs = now + 0.02
    tt = (int(secs) + NTP_EPOCH_OFFSET, int((secs % 1) * 2**32))
    d.dispatch_packet(parse_packet(_bundle([("/graph/add", ["gain", "later"])], tt)),
                      a.peer, True)
    d.service()
    assert "later" not in s.live and a.take() == []
    e.process(960)
    d.service()
    assert "later" in s.live and a.take() == [("/done", ["/graph/add", "later"])]


# ---- introspection --------------------------------------------------------------------
def test_graph_items_and_info(rig):
    e, s, d, a = rig
    call(d, a, "/graph/connect", "osc", "ch1")
    r = call(d, a, "/graph/nodes")
    assert ("/graph/nodes.reply", ["ch1", "gain", 1, 0]) in r
    assert r[-1] == ("/done", ["/graph/nodes", 6])
    r = call(d, a, "/graph/connections")
    assert r == [("/graph/connections.reply", ["osc:out", "ch1:in"]),
                 ("/done", ["/graph/connections", 1])]
    [(addr, args)] = call(d, a, "/info")
    info = dict(zip(args[::2], args[1::2], strict=True))
    assert addr == "/info.reply" and info["name"] == "mixgraph" and "version" in info
    r = call(d, a, "/dump")
    assert ("/node/ch1/gain/norm", [0.75]) in r and r[-1] == ("/done", ["/dump", len(r) - 1])


def test_every_wrong_command_fails_with_its_address(rig):
    e, s, d, a = rig
    for addr, args in [("/nope", []), ("/node/zz/gain", [1.0]), ("/node/ch1/zz", [1.0]),
                       ("/node/ch1/gain", ["x"]), ("/node/ch1/gain", [1.0, 2.0]),
                       ("/node/ch1/gain/zz", [1.0]), ("/graph/add", [1]),
                       ("/sync", ["x"]), ("/node/ch1/gain/touch", ["x"]),
                       ("/subscribe", []), ("/meters/subscribe", [1])]:
        r = call(d, a, addr, *args)
        assert r and r[-1][0] == "/fail" and r[-1][1][0] == addr, (addr, r)
