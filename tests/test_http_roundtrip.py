"""The browser round trip (issue 17's figure: a fader move in one browser, through the
server, to another): what keeps it prompt - the feedback coalescer's periods on a grid
with one period of credit, the control loop sleeping no longer than the next feedback or
meter frame is due, the start-up heap frozen out of the garbage collector's way, one
/meters blob shared by the subscribers to the same meters - and sound: a browser's edit
is journaled before its /done. Times are handed in (Feedback.service(now)) or read from
the loop's select() calls: nothing here depends on how fast the machine is."""

from __future__ import annotations

import threading
import time

import pytest

from mixgraph.server.engine import Engine
from mixgraph.server.feedback import Feedback
from mixgraph.server.osc import Dispatcher, Peer, parse_packet
from mixgraph.server.session import Session
from mixgraph.server.transport import ControlServer

from daemon_util import Daemon, wait_autosaved


class Box:
    """A client whose packets are kept, decoded (a real Peer)."""

    def __init__(self, key) -> None:
        self.got: list[tuple[str, list]] = []
        self.peer = Peer(key, self._recv, kind="udp")

    def _recv(self, data: bytes) -> None:
        self.got += [(m.address, m.args) for m in parse_packet(data)]

    def take(self, address: str) -> list[list]:
        out = [args for a, args in self.got if a == address]
        self.got = []
        return out


@pytest.fixture
def rig():
    e = Engine(48000, 1, 1)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    s.add_node("gain", "ch1", {"channels": 1})
    s.add_node("meter", "m1", {"channels": 1})
    s.commit()
    fb = Feedback(d, rate_hz=30.0)
    a, b = Box(("127.0.0.1", 1)), Box(("127.0.0.1", 2))
    fb.subscribe(b.peer, 60.0)
    yield fb, a, b
    s.close()
    e.free()


def test_a_late_flush_does_not_hold_the_next_change_back(rig):
    """A change flushed late (the loop was held up 30 ms) and the next lone change 10 ms
    after that: the second goes out at once. It used to wait for a whole period counted
    from the late flush (and then for the loop's next 5 ms wake-up), so one stall
    delayed the moves after it too."""
    fb, a, b = rig
    t = time.monotonic()
    fb.changed("ch1", "gain", -3.0, a.peer)
    fb.service(t + 0.030)  # the turn that should have flushed it at t came late
    assert b.take("/node/ch1/gain") == [[-3.0]]
    fb.changed("ch1", "gain", -4.0, a.peer)
    fb.service(t + 0.040)  # 10 ms after the late flush, 40 ms after the first change
    assert b.take("/node/ch1/gain") == [[-4.0]]


def test_a_flood_still_gets_one_flush_a_period(rig):
    """A change every millisecond for a second: 30 flushes (the rate), plus at most one
    for the credit, each with the latest value; the last value is sent."""
    fb, a, b = rig
    t0 = time.monotonic()
    sent = []
    for i in range(1000):
        fb.changed("ch1", "gain", -40.0 + i * 0.01, a.peer)
        fb.service(t0 + i * 0.001)
        sent += b.take("/node/ch1/gain")
    for i in range(1000, 1100):  # then quiet: what was held goes out
        fb.service(t0 + i * 0.001)
        sent += b.take("/node/ch1/gain")
    assert 30 <= len(sent) <= 32, len(sent)
    assert sent[-1] == [pytest.approx(-40.0 + 999 * 0.01, abs=1e-5)]  # OSC float32


def test_next_due_names_the_held_change_and_the_next_meter_frame(rig):
    fb, a, b = rig
    assert fb.next_due() == float("inf")  # a subscriber, nothing held, no meters
    t = time.monotonic()
    fb.changed("ch1", "gain", -3.0, a.peer)
    fb.service(t)
    fb.changed("ch1", "gain", -5.0, a.peer)
    fb.service(t + 0.001)
    assert b.take("/node/ch1/gain") == [[-3.0], [-5.0]]  # the credit: at once
    fb.changed("ch1", "gain", -6.0, a.peer)
    fb.service(t + 0.002)
    assert b.take("/node/ch1/gain") == []  # held to the period's end
    due = fb.next_due()
    assert due == pytest.approx(t + 1 / 30, abs=1e-9)
    fb.service(due)
    assert b.take("/node/ch1/gain") == [[-6.0]]
    assert fb.next_due() == float("inf")
    fb.meters_subscribe(b.peer, "m1", 30.0, blob_only=True)
    fb.service(due)  # the first frame at once, the next on the 30 Hz grid
    assert b.take("/meters")
    nxt = fb.next_due()
    assert due < nxt <= due + 1 / 30 + 1e-9
    fb.service(nxt - 1e-4)
    assert not b.take("/meters")
    fb.service(nxt)
    assert b.take("/meters")


def test_the_loop_sleeps_no_longer_than_the_next_feedback_is_due():
    """The control loop's select() timeout ends when held feedback is due (it used to be
    5 ms whatever was due, which added up to 5 ms to a held change or a meter frame)."""
    e = Engine(48000, 1, 1)
    s = Session(e)
    d = Dispatcher(s, info={"block": 64})
    s.add_node("gain", "ch1", {"channels": 1})
    s.commit()
    srv = ControlServer(d, "127.0.0.1", 0, tcp_port=-1)
    a, b = Box(("127.0.0.1", 1)), Box(("127.0.0.1", 2))
    fb = srv.feedback
    fb.subscribe(b.peer, 60.0)
    # (select timeout, feedback due - the end of the previous select: the loop worked
    # out the timeout after that, so it may be no longer than this)
    seen: list[tuple[float, float]] = []
    got: list[list] = []
    real = srv.sel.select
    woke = [None]

    def select(timeout=None):
        got.extend(b.take("/node/ch1/gain"))
        if len(got) == 2 or len(seen) > 10000:
            srv.stop()
        if woke[0] is not None:
            due = fb.last_flush + fb.period if fb.dirty else float("inf")
            seen.append((timeout, due - woke[0]))
        r = real(timeout)
        woke[0] = time.monotonic()
        return r

    srv.sel.select = select
    fb.changed("ch1", "gain", -3.0, a.peer)
    fb.service()  # flushed, and the period starts
    fb.changed("ch1", "gain", -4.0, a.peer)  # held until it ends: due in 50 ms
    fb.last_flush = time.monotonic() + 0.050 - fb.period
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    th.join(20)
    try:
        assert not th.is_alive()
        assert got == [[-3.0], [-4.0]]
        held = [(t, due) for t, due in seen if due > 0 and t]  # sleeps while it was held
        assert held
        assert all(t <= due + 1e-6 for t, due in held), [x for x in held if x[0] > x[1]]
    finally:
        srv.close()
        s.close()
        e.free()


def test_the_daemon_freezes_its_start_up_heap(tmp_path):
    """After start-up the daemon's objects are frozen out of the cyclic collector
    (gc.freeze): /status says how many, and the longest collection since."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        st = d.status()
        assert st["gc_frozen"] > 1000, st.get("gc_frozen")
        assert st["gc_worst_ms"] >= 0.0
    finally:
        d.stop()


def test_subscribers_to_different_meters_get_their_own_blobs(rig):
    """The `/meters` blob is packed once per turn for each set of metered nodes and
    shared by the subscribers to that set; one with another set gets its own."""
    import msgpack

    fb, a, b = rig
    s = fb.d.session
    s.add_node("meter", "m2", {"channels": 1})
    s.commit()
    c = Box(("127.0.0.1", 3))
    fb.meters_subscribe(a.peer, "m1", 30.0, blob_only=True)
    fb.meters_subscribe(b.peer, "m*", 30.0, blob_only=True)
    fb.meters_subscribe(c.peer, "m1", 30.0, blob_only=True)
    fb.service(time.monotonic())
    blobs = {k: [msgpack.unpackb(args[0])["meters"] for args in box.take("/meters")]
             for k, box in (("a", a), ("b", b), ("c", c))}
    assert [sorted(x) for x in blobs["a"]] == [["m1"]] == [sorted(x) for x in blobs["c"]]
    assert [sorted(x) for x in blobs["b"]] == [["m1", "m2"]]
    want = {r.name: s.readout("m2", r.name) for r in s.live["m2"].g.type.readouts}
    assert blobs["b"][0]["m2"].keys() == want.keys()
    for k, v in want.items():  # (float32 in the blob)
        assert blobs["b"][0]["m2"][k] == pytest.approx(v, rel=1e-6, abs=1e-6)


def test_a_browser_edit_is_journaled_before_its_done(tmp_path):
    """A set over WebSocket is in the journal before its /done reaches the browser, as
    over UDP and TCP: killed right after the /done, the server comes back with it. The
    WebSocket connection's send skipped the journal's hook, so its edits waited for the
    next autosave (up to 0.25 s) or another client's reply to be written."""
    import signal

    from test_http import WS, free_tcp_port

    state = tmp_path / "state"
    port = free_tcp_port()
    d = Daemon(state, "--backend", "null", "--http", str(port))
    try:
        d.call("/graph/add", "gain", "g", "gain", -3.0)
        wait_autosaved(state)  # the add's snapshot; after it only the journal can hold the set
        ws = WS(port)
        ws.send("/node/g/gain", -21.5)
        assert ws.until(lambda m: m[0] == "/done") == ("/done", ["/node/g/gain", -21.5])
    finally:
        d.stop(signal.SIGKILL)
    d = Daemon(state, "--backend", "null")
    try:
        assert d.request("/node/g/gain") == ("/node/g/gain", [-21.5])
    finally:
        d.stop()
