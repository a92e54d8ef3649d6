"""A crossfader's /scene/morph stream over real UDP (server/transport.py
MORPH_PREFIX): a lone morph that waits in the server's queues behind a later
one from the same address between the same two scenes is answered
`/done /scene/morph a b x 0 superseded` and counted (/status
morphs_coalesced) instead of being applied (and paying the host's whole-graph
budget, which refused part of such a stream on a large show). The last
position always applies; a morph between other scenes is not dropped for it."""

from __future__ import annotations

import socket
import time

from mixgraph.server.osc import encode_message, parse_packet

from daemon_util import Daemon


def test_a_morph_burst_keeps_the_latest_per_scene_pair(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        for i in range(60):
            d.call("/graph/add", "eq8", f"e{i}")
        d.call("/scene/store", "a", "/node/e*/b*")
        for i in range(60):
            d.call(f"/node/e{i}/b1gain", 6.0)
        d.call("/scene/store", "b", "/node/e*/b*")
        before = d.status().get("morphs_coalesced")
        assert before == 0
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(("127.0.0.1", d.port))
        u.settimeout(60)
        n = 300
        xs = [(i % 97) / 100 for i in range(n - 1)] + [0.77]
        for x in xs:  # as fast as the socket takes them: they queue behind each other
            u.send(encode_message("/scene/morph", ["a", "b", x]))
        u.send(encode_message("/scene/morph", ["b", "a", 0.25]))  # another pair, last
        got: list[tuple] = []
        deadline = time.monotonic() + 120
        while len(got) < n + 1 and time.monotonic() < deadline:
            for m in parse_packet(u.recv(65536)):
                assert m.address == "/done" and m.args[0] == "/scene/morph", (m.address, m.args)
                got.append(tuple(m.args))
        assert len(got) == n + 1
        ab = [g for g in got if g[1:3] == ("a", "b")]
        ba = [g for g in got if g[1:3] == ("b", "a")]
        superseded = [g for g in ab if g[-1] == "superseded"]
        applied = [g for g in ab if g[-1] != "superseded"]
        assert len(ab) == n and len(ba) == 1
        assert superseded, "a burst of 300 morphs over UDP coalesced nothing"
        # the last a-b position is applied (540 values: 9 per eq8), the b-a one too
        assert abs(applied[-1][3] - 0.77) < 1e-6 and applied[-1][4] > 0
        assert all(g[3] != 0.77 for g in superseded)
        assert ba[0][-1] != "superseded" and ba[0][4] > 0
        st = d.status()
        assert st["morphs_coalesced"] == len(superseded)
        # b-a at 0.25 came last: b1gain is a quarter of the way from b (6 dB) to a (0)
        assert abs(d.call("/node/e5/b1gain")[-1] - 4.5) < 1e-3
        assert "Traceback" not in d.output()
    finally:
        d.stop()


def test_a_morph_the_budget_refuses_is_held_and_the_latest_lands():
    """Past the host's whole-graph budget a /scene/morph is held, not refused: a
    later one for the same scenes replaces it (answered superseded), and the
    control loop applies the last once the budget has refilled."""
    from mixgraph.server import osc
    from mixgraph.server.engine import Engine
    from mixgraph.server.osc import Dispatcher, Peer
    from mixgraph.server.session import Session

    e = Engine(48000, 0, 2, block=64)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    for i in range(20):
        s.add_node("eq8", f"e{i}", {})
    s.commit()
    got: list[tuple] = []
    peer = Peer(("10.0.0.5", 9000), lambda pkt: got.extend(
        (m.address, *m.args) for m in parse_packet(pkt)), kind="udp")
    local = Peer(("10.0.0.5", 9001), lambda pkt: None, kind="udp")  # same host

    def send(who, address, *args):
        d.dispatch_packet(parse_packet(encode_message(address, list(args))), who, False)

    send(local, "/scene/store", "a", "/node/e*/b*")
    for i in range(20):
        s.set_param(f"e{i}", "b1gain", 6.0)
    send(local, "/scene/store", "b", "/node/e*/b*")
    # the host's budget spent (0.2 s ahead of it: refilled in 0.4 s): every morph is held
    d._graph_budget.bucket(source_of_key(peer)).tokens = -0.2
    for x in (0.1, 0.2, 0.3, 0.4):
        send(peer, "/scene/morph", "a", "b", x)
    assert all(g[-1] == "superseded" for g in got) and len(got) == 3, got
    assert d.counters.morphs_coalesced == 3
    assert not any("too much whole-graph work" in str(g) for g in got)
    deadline = time.monotonic() + 30
    while d.morph_held and time.monotonic() < deadline:
        time.sleep(0.05)
        d.service()
    assert not d.morph_held
    last = got[-1]
    assert last[:4] == ("/done", "/scene/morph", "a", "b") and abs(last[4] - 0.4) < 1e-6
    assert last[5] > 0 and len(last) == 6
    assert abs(s.get_param("e3", "b1gain") - 2.4) < 1e-4
    # a morph inside a bundle is not held: refused with the bundle
    d._graph_budget.bucket(source_of_key(peer)).tokens = -1.0
    got.clear()
    d.dispatch_packet(parse_packet(osc.encode_bundle(
        [encode_message("/scene/morph", ["a", "b", 0.9])])), peer, True)
    assert got and got[0][0] == "/fail" and "too much whole-graph work" in str(got[0])
    assert not d.morph_held
    s.close()
    e.free()


def source_of_key(peer) -> str:
    from mixgraph.server.ratelog import source_of

    return source_of(peer.key)
