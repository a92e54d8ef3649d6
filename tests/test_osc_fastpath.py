"""The flood path for plain parameter sets (Dispatcher.fast_set) does exactly what
the general dispatch does: the same reply bytes, the same state, the same
feedback; anything unusual falls back to dispatch."""

from __future__ import annotations

import pytest

from mixgraph.clients.protocol import encode
from mixgraph.server.engine import Engine
from mixgraph.server.osc import Dispatcher, Peer, parse_packet
from mixgraph.server.session import Session


@pytest.fixture
def disp():
    e = Engine(48000, 0, 1)
    s = Session(e)
    s.add_node("gain", "g", {"channels": 1})
    s.add_node("vca", "v", {"members": "g"})
    s.add_node("output", "out", {"channels": 1})
    s.connect("g", "out")
    s.commit()
    e.process(64, None, block=64)
    d = Dispatcher(s)
    yield d
    s.close()
    e.free()


def _peer(sent: list) -> Peer:
    return Peer(("127.0.0.1", 9), sent.append, kind="udp")


@pytest.mark.parametrize("args", [[-6.5], [-3], [0.0], [24.0], [-120.0]])
def test_same_reply_and_state_as_dispatch(disp, args):
    fast, slow = [], []
    pkt = encode("/node/g/gain", args)
    assert disp.fast_set(pkt, _peer(fast))
    got_fast = disp.session.get_param("g", "gain")
    disp.session.set_param("g", "gain", 7.0)
    disp.dispatch_packet(parse_packet(pkt), _peer(slow), False)
    assert fast == slow  # byte for byte
    assert got_fast == disp.session.get_param("g", "gain") == float(args[0])


@pytest.mark.parametrize("address, args, why", [
    ("/node/g/gain", [99.0], "out of range: dispatch clamps and says so"),
    ("/node/g/gain", [float("nan")], "NaN: dispatch fails it"),
    ("/node/g/gain", [True], "a switch type"),
    ("/node/g/gain", [-6.0, 1.0], "two arguments"),
    ("/node/g/gain", [], "a query"),
    ("/node/g/gain/norm", [0.5], "the norm path"),
    ("/node/g/nope", [1.0], "no such parameter"),
    ("/node/x/gain", [1.0], "no such node"),
    ("/node/g*/gain", [1.0], "a pattern"),
    ("/node/v/level", [-3.0], "a VCA: moves its members"),
])
def test_unusual_messages_fall_back(disp, address, args, why):
    assert not disp.fast_set(encode(address, args), _peer([])), why


def test_touch_and_removed_nodes_fall_back(disp):
    sent: list = []
    pkt = encode("/node/g/gain", [-1.0])
    assert disp.fast_set(pkt, _peer(sent))
    disp.touch[("g", "mute")] = ("10.0.0.1", 1)  # someone holds a control somewhere
    assert not disp.fast_set(pkt, _peer(sent))
    disp.touch.clear()
    disp.session.remove_node("g")
    assert not disp.fast_set(pkt, _peer(sent))  # the cached entry is stale: dispatch answers
