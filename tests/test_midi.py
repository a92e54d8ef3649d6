"""MIDI controllers mapped to the OSC address space (server/midi.py, csrc/midi.c).

The JACK tests start their own jackd on the dummy driver (a unique server
name), run `mixgraph serve --backend jack` as a real process, and play a
MIDI controller from this process: python-rtmidi's JACK API opens virtual
JACK MIDI ports here, and jack_connect wires them to mixgraph:midi_in and
from mixgraph:midi_out. Expected values come from the published taper
formulas (docs/nodes.md: the fader law's breakpoints, log-linear), computed
here independently of server/tapers.py. The decoder tests at the end call
the C decoder directly (no engine: the control thread's path)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
from conftest import require
from pythonosc.osc_message import OscMessage
from test_jack_native import jack_env, record, rms_db, serve, start_jackd, stop_jackd

from mixgraph.clients import Client, MixgraphFail
from mixgraph.server.osc import encode_message

from daemon_util import Daemon

# the fader law for gain's range -120..+24 dB: (position, dB) breakpoints
FADER = ([0.0, 0.0625, 0.25, 0.5, 0.75, 1.0], [-120.0, -60.0, -30.0, -10.0, 0.0, 24.0])


def fader_db(pos: float) -> float:
    return float(np.interp(pos, *FADER))


def fader_pos(db: float) -> float:
    return float(np.interp(db, FADER[1], FADER[0]))


def log_hz(pos: float, lo: float = 1.0, hi: float = 24000.0) -> float:
    return lo * (hi / lo) ** pos


def f32(x: float) -> float:
    return float(np.float32(x))


@pytest.fixture
def rig(tmp_path, request, monkeypatch):
    """jackd, mixgraph on it (sine -> gain g -> output), and a controller here."""
    yield from _rig(tmp_path, request, monkeypatch, "jack")


@pytest.fixture(params=["jack", "rtmidi"])
def any_rig(tmp_path, request, monkeypatch):
    """Both ways MIDI reaches mixgraph: the JACK backend's own ports (read in the audio
    callback), and the control thread's python-rtmidi path (`--midi-api jack` beside
    the null backend: the ALSA sequencer's code path with JACK's API, since this
    machine has no /dev/snd)."""
    yield from _rig(tmp_path, request, monkeypatch, request.param)


def _rig(tmp_path, request, monkeypatch, via: str):
    require(shutil.which("jack_connect") is not None, "jack_connect is not installed (jackd2)")
    rtmidi = pytest.importorskip("rtmidi") if not os.environ.get("CI") else __import__("rtmidi")
    name = f"mg-midi-{os.getpid()}-{request.node.name[:16]}"
    server = start_jackd(name, tmp_path / "jackd.log")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    d = None
    ctl = fb = None
    try:
        if via == "jack":
            d = serve(tmp_path, name)
        else:
            d = Daemon(tmp_path / "state", "--backend", "null", "--midi-api", "jack",
                       "--jack-server", name)
            d.client.timeout = 30.0
        d.call("/graph/add", "sine", "osc", "freq", 1000.0, "level", -20.0)
        d.call("/graph/add", "gain", "g", "gain", 0.0)
        d.call("/graph/add", "output", "out", "channels", 1)
        d.call("/graph/connect", "osc", "g")
        d.call("/graph/connect", "g", "out")
        d.sync(1)
        ctl = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "mgctl")
        ctl.open_virtual_port("ctl")
        fb = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "mgfb")
        fb.ignore_types(sysex=False)
        fb.open_virtual_port("fb")
        env = jack_env(name)
        out = "mixgraph:midi_out" if via == "jack" else "mixgraph-out:midi_out"
        for a, b in (("mgctl:ctl", "mixgraph:midi_in"), (out, "mgfb:fb")):
            r = subprocess.run(["jack_connect", a, b], env=env, capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
        yield Rig(d, ctl, fb, name)
    finally:
        for p in (ctl, fb):
            if p is not None:
                p.close_port()
                del p
        if d is not None:
            d.stop()
        stop_jackd(server)


class Rig:
    def __init__(self, d: Daemon, ctl, fb, server: str) -> None:
        self.d, self.ctl, self.fb, self.server = d, ctl, fb, server

    def send(self, *msgs: list[int], gap: float = 0.005) -> None:
        self.last = msgs
        for m in msgs:
            self.ctl.send_message(list(m))
            time.sleep(gap)

    def value(self, address: str) -> float:
        return float(self.d.call(address)[0])

    def wait_value(self, address: str, want: float, tol: float = 1e-4,
                   timeout: float = 15.0, resend: bool = False) -> float:
        """The parameter's value once it equals want (or what it is after timeout).
        resend: send the last messages again every second (absolute values only):
        on a loaded host JACK drops a period's MIDI when it skips a client's
        cycle (an xrun), before mixgraph sees it."""
        end = time.monotonic() + timeout
        again = time.monotonic() + 1.0
        v = self.value(address)
        while abs(v - want) > tol * (1 + abs(want)) and time.monotonic() < end:
            time.sleep(0.02)
            if resend and time.monotonic() > again:
                again = time.monotonic() + 1.0
                self.send(*self.last)
            v = self.value(address)
        return v

    def settle(self, s: float = 0.3) -> None:
        time.sleep(s)
        self.d.sync(7)

    def feedback(self, wait: float = 0.4) -> list[list[int]]:
        """The MIDI feedback that came within `wait` s (for what must NOT come)."""
        time.sleep(wait)
        out = []
        while (m := self.fb.get_message()) is not None:
            out.append(m[0])
        return out

    def feedback_until(self, done, timeout: float = 30.0, resend: bool = False,
                       nudge=None, settle: float = 0.3) -> list[list[int]]:
        """The MIDI feedback received until done(received) holds (then for `settle` s
        more, so what must not come has had its chance), or at the timeout: on a loaded
        host it comes later than a fixed sleep. JACK drops a period's MIDI when it skips
        a client's cycle (an xrun), so every 2 s without it, resend sends the last
        messages again and nudge() (if given) makes the server send its feedback again."""
        out: list[list[int]] = []
        end = time.monotonic() + timeout
        again = time.monotonic() + 2.0
        while not done(out) and time.monotonic() < end:
            time.sleep(0.02)
            while (m := self.fb.get_message()) is not None:
                out.append(m[0])
            if time.monotonic() > again and not done(out):
                again = time.monotonic() + 2.0
                if resend:
                    self.send(*self.last)
                if nudge is not None:
                    nudge()
        return out + self.feedback(settle)


# ---- JACK: the ports, each kind of map ---------------------------------------------

def test_midi_ports_and_status(rig):
    r = subprocess.run(["jack_lsp", "-s", rig.server, "-t"], env=jack_env(rig.server),
                       capture_output=True, text=True, timeout=60).stdout
    assert "mixgraph:midi_in\n\t8 bit raw midi" in r and "mixgraph:midi_out\n\t8 bit raw midi" in r
    st = rig.d.status()
    assert st["midi"] == "jack" and st["midi_maps"] == 0


def test_rtmidi_path_ports_status_and_a_missing_server(tmp_path, request, monkeypatch):
    """--midi-api jack beside the null backend: python-rtmidi's JACK clients carry the
    MIDI; with no JACK server the banner and /midi/status say why it is unavailable."""
    (tmp_path / "a").mkdir()
    gen = _rig(tmp_path / "a", request, monkeypatch, "rtmidi")
    rig = next(gen)
    try:
        r = subprocess.run(["jack_lsp", "-s", rig.server, "-t"], env=jack_env(rig.server),
                           capture_output=True, text=True, timeout=60).stdout
        assert "mixgraph:midi_in\n\t8 bit raw midi" in r, r
        assert "mixgraph-out:midi_out\n\t8 bit raw midi" in r, r
        st = rig.d.status()
        assert st["midi"] == "rtmidi-jack" and st["backend"] == "null"
    finally:
        gen.close()
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"mg-none-{os.getpid()}")
    d = Daemon(tmp_path / "b", "--backend", "null", "--midi-api", "jack",
               "--jack-server", f"mg-none-{os.getpid()}")
    try:
        assert d.status()["midi"] == "unavailable"
        why = d.call("/midi/status")
        assert why[:2] == ["state", "unavailable"] and "JACK (python-rtmidi)" in why[3], why
        assert "MIDI: unavailable: JACK (python-rtmidi)" in d.output()
    finally:
        d.stop()


def test_cc_moves_gain_along_the_fader_law(any_rig):
    rig = any_rig
    rig.d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "pickup", 0)
    for v in (0, 8, 32, 64, 95, 100, 127):
        rig.send([0xB0, 7, v])
        want = f32(fader_db(v / 127))
        got = rig.wait_value("/node/g/gain", want, resend=True)
        assert got == pytest.approx(want, abs=1e-4), (v, got, want)
    # counted on either path (the rtmidi path's sets were not counted)
    assert rig.d.status()["midi_applied"] >= 7
    # another channel and another number move nothing
    rig.send([0xB1, 7, 0], [0xB0, 8, 0])
    rig.settle()
    assert rig.value("/node/g/gain") == pytest.approx(24.0)


def test_cc_applies_in_the_audio(rig):
    rig.d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "pickup", 0)
    rig.send([0xB0, 7, 64])  # fader position 64/127: between -10 dB (0.5) and 0 dB (0.75)
    want = fader_db(64 / 127)
    assert rig.wait_value("/node/g/gain", f32(want), resend=True) == pytest.approx(want, abs=1e-4)
    x = record(rig.server, "mixgraph:out_1", rig.d.state_dir.parent / "rec.wav")
    # a -20 dBFS-peak sine is -23.01 dBFS RMS
    assert rms_db(x[4800:]) == pytest.approx(-20 - 3.0103 + want, abs=0.05)


def test_cc14_nrpn_pb_move_a_log_parameter_at_14_bits(any_rig):
    rig = any_rig
    d = rig.d
    d.call("/midi/map", "/node/osc/freq", "cc14", 2, 5)
    d.call("/midi/map", "/node/osc/freq", "nrpn", 3, 1000)
    d.call("/midi/map", "/node/osc/freq", "pb", 4, 0, "pickup", 0)
    x = 9000
    rig.send([0xB1, 5, x >> 7], [0xB1, 37, x & 127])
    assert rig.wait_value("/node/osc/freq", f32(log_hz(x / 16383)), resend=True) == \
        pytest.approx(log_hz(x / 16383), rel=1e-5)
    x = 12345
    rig.send([0xB2, 99, 1000 >> 7], [0xB2, 98, 1000 & 127], [0xB2, 6, x >> 7],
             [0xB2, 38, x & 127])
    assert rig.wait_value("/node/osc/freq", f32(log_hz(x / 16383)), resend=True) == \
        pytest.approx(log_hz(x / 16383), rel=1e-5)
    x = 3000
    rig.send([0xE3, x & 127, x >> 7])
    assert rig.wait_value("/node/osc/freq", f32(log_hz(x / 16383)), resend=True) == \
        pytest.approx(log_hz(x / 16383), rel=1e-5)


def test_min_max_and_norm_targets(any_rig):
    rig = any_rig
    d = rig.d
    # -30..+6 dB over the fader law's travel between those two values
    d.call("/midi/map", "/node/g/gain", "cc", 1, 1, "min", -30.0, "max", 6.0, "pickup", 0)
    lo, hi = fader_pos(-30.0), fader_pos(6.0)
    for v in (0, 50, 127):
        want = fader_db(lo + (hi - lo) * v / 127)
        rig.send([0xB0, 1, v])
        got = rig.wait_value("/node/g/gain", f32(want), resend=True)
        assert got == pytest.approx(want, abs=1e-4)
    # /norm: min and max are fader positions
    d.call("/midi/map", "/node/osc/level/norm", "cc", 1, 2, "min", 0.25, "max", 0.75,
           "pickup", 0)
    # level's range is -120..0 dB: the law's 0 dB point (0.75) is its top, so dropped
    level = ([0.0, 0.0625, 0.25, 0.5, 1.0], [-120.0, -60.0, -30.0, -10.0, 0.0])
    for v in (0, 127, 64):
        pos = 0.25 + 0.5 * v / 127
        want = float(np.interp(pos, *level))
        rig.send([0xB0, 2, v])
        got = rig.wait_value("/node/osc/level", f32(want), resend=True)
        assert got == pytest.approx(want, abs=1e-4)
    # a node of another type takes the name: min/max outside its range are clamped
    # when applied (docs/protocol.md): -60..-50 on denoise's -10..20 holds it at -10
    d.call("/graph/add", "compressor", "rt")
    d.call("/midi/map", "/node/rt/threshold", "cc", 1, 3, "min", -60.0, "max", -50.0,
           "pickup", 0)
    d.call("/graph/remove", "rt")
    d.call("/graph/add", "denoise", "rt", "threshold", 5.0)
    d.sync(3)
    for v in (127, 0):
        rig.send([0xB0, 3, v])
        assert rig.wait_value("/node/rt/threshold", -10.0, resend=True) == -10.0
        d.call("/node/rt/threshold", 5.0)


def test_notes_pc_and_encoders(any_rig):
    rig = any_rig
    d = rig.d
    d.call("/midi/map", "/node/g/mute", "note", 1, 60)  # a parameter: toggle by default
    d.call("/midi/map", "/node/g/polarity", "note", 1, 61, "mode", "momentary")
    # a toggle may be sent again only when nothing moved: on a loaded host JACK drops a
    # skipped cycle's MIDI before mixgraph sees it (seen in a loaded full-suite run)
    for want, press in ((1.0, ([0x90, 60, 100], [0x80, 60, 0])),
                        (0.0, ([0x90, 60, 100], [0x90, 60, 0]))):  # velocity 0: note off
        before = rig.value("/node/g/mute")
        rig.send(*press)
        got = rig.wait_value("/node/g/mute", want)
        if got == before:
            rig.send(*press)
            got = rig.wait_value("/node/g/mute", want)
        assert got == want
    rig.send([0x90, 61, 1])
    assert rig.wait_value("/node/g/polarity", 1.0, resend=True) == 1.0
    rig.send([0x80, 61, 0])
    assert rig.wait_value("/node/g/polarity", 0.0, resend=True) == 0.0
    # program change: the value itself (a stepped parameter: mute 0/1)
    d.call("/midi/map", "/node/g/mute", "pc", 5, 0)
    rig.send([0xC4, 1])
    # an absolute value, so it may be sent again: the JACK variant lost this one event
    # twice in a loaded full-suite run (a skipped cycle drops its MIDI, see wait_value)
    assert rig.wait_value("/node/g/mute", 1.0, resend=True) == 1.0
    # relative encoders move from where the parameter is, a step per tick
    d.call("/node/g/gain", -10.0)  # fader position 0.5
    d.call("/midi/map", "/node/g/gain", "enc-2", 1, 20, "step", 0.01)
    d.call("/midi/map", "/node/g/gain", "enc-b", 1, 21, "step", 0.01)
    d.call("/midi/map", "/node/g/gain", "enc-r", 1, 22, "step", 0.01)
    d.call("/midi/map", "/node/g/gain", "enc-l", 1, 23, "step", 0.01)
    rig.settle()
    steps = [([0xB0, 20, 5], 5), ([0xB0, 20, 126], -2), ([0xB0, 21, 64 + 3], 3),
             ([0xB0, 21, 64 - 4], -4), ([0xB0, 22, 0x40 | 2], 2), ([0xB0, 22, 1], -1),
             ([0xB0, 23, 0x40 | 3], -3), ([0xB0, 23, 6], 6)]
    pos = 0.5
    for msg, ticks in steps:
        before = rig.value("/node/g/gain")
        pos += 0.01 * ticks
        rig.send(msg)
        want = fader_db(pos)
        # the current value's position is found in a 16384-entry table
        got = rig.wait_value("/node/g/gain", f32(want), tol=2e-3)
        if got == before:  # the tick never reached mixgraph (rtmidi's JACK client
            # drops events when jackd, not real-time here, skips its cycle; seen once
            # in CI): a relative tick may be sent again only when nothing moved
            rig.send(msg)
            got = rig.wait_value("/node/g/gain", f32(want), tol=2e-3)
        assert got == pytest.approx(want, abs=0.01), (msg, ticks)
        rig.settle(0.05)


def test_learn_and_cancel(any_rig):
    rig = any_rig
    d = rig.d
    # from a plain UDP socket: the learned control comes back to the asker
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5.0)
    sock.sendto(encode_message("/midi/learn", ["/node/g/gain"]), ("127.0.0.1", d.port))
    first = OscMessage(sock.recv(65536))
    assert (first.address, first.params[:2]) == ("/done", ["/midi/learn", "/node/g/gain"])
    sock.settimeout(3.0)
    for _ in range(10):  # again after 3 s: JACK drops a period's MIDI at an xrun
        rig.send([0xB2, 20, 10])
        try:
            learned = OscMessage(sock.recv(65536))
            break
        except TimeoutError:
            continue
    sock.close()
    assert (learned.address, learned.params) == ("/midi/learn.reply",
                                                 ["/node/g/gain", "cc", 3, 20])
    maps = d.call("/midi/maps")
    assert maps[:5] == [1, "/node/g/gain", "cc", 3, 20]
    # a 14-bit CC: MSB then LSB (number + 32), back to back as a controller sends them
    # (with a gap between them here, a loaded host could hold this process past the
    # learning window between the two: learned as a 7-bit cc, a slow controller's case)
    d.call("/midi/learn", "/node/osc/freq")
    end, again = time.monotonic() + 5, 0.0
    while time.monotonic() < end and d.call("/midi/maps")[0] == 1:
        if time.monotonic() >= again:  # again after a second: JACK dropped the pair
            rig.send([0xB0, 3, 64], [0xB0, 35, 0], gap=0.0)
            again = time.monotonic() + 1.0
        time.sleep(0.05)
    assert d.call("/midi/maps")[6:10] == ["/node/osc/freq", "cc14", 1, 3]
    # cancelled: nothing is bound
    d.call("/midi/learn", "/node/osc/level")
    assert d.call("/midi/learn") == ["/midi/learn", "cancelled"]
    rig.send([0xB5, 9, 1])
    rig.settle()
    assert d.call("/midi/maps")[0] == 2


def test_ctl_learn_prints_the_learned_map(rig):
    """`mixgraph ctl /midi/learn <address>` waits for the control to move and prints
    the map made, as docs/protocol.md shows it."""
    import sys

    p = subprocess.Popen([sys.executable, "-m", "mixgraph.server.cli", "ctl", "--port",
                          str(rig.d.port), "/midi/learn", "/node/g/gain"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().split()[:3] == ["/done", "/midi/learn", "/node/g/gain"]
        for _ in range(20):  # again while it waits: JACK may drop a period's MIDI here
            rig.send([0xB3, 21, 10])
            try:
                p.wait(1.0)
                break
            except subprocess.TimeoutExpired:
                pass
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out.split() == ["/midi/learn.reply", "/node/g/gain", "cc", "4", "21"], out


def test_soft_takeover(any_rig):
    rig = any_rig
    d = rig.d
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7)  # pickup on by default for cc
    d.call("/node/g/gain", 0.0)  # fader position 0.75: CC 95.25
    rig.settle()
    rig.send([0xB0, 7, 10], [0xB0, 7, 40], [0xB0, 7, 80])  # below: ignored
    rig.settle()
    assert rig.value("/node/g/gain") == 0.0
    rig.send([0xB0, 7, 100])  # passed the fader's position: it follows from here
    want = f32(fader_db(100 / 127))
    assert rig.wait_value("/node/g/gain", want, resend=True) == pytest.approx(want, abs=1e-4)
    rig.send([0xB0, 7, 20])
    want = f32(fader_db(20 / 127))
    assert rig.wait_value("/node/g/gain", want, resend=True) == pytest.approx(want, abs=1e-4)
    # moved from elsewhere: the control must pick it up again
    d.call("/node/g/gain", -10.0)  # position 0.5: CC 63.5
    rig.settle()
    rig.send([0xB0, 7, 30])
    rig.settle()
    assert rig.value("/node/g/gain") == -10.0
    rig.send([0xB0, 7, 60], [0xB0, 7, 70])
    want = f32(fader_db(70 / 127))
    assert rig.wait_value("/node/g/gain", want, resend=True) == pytest.approx(want, abs=1e-4)
    st = d.status()
    assert st["midi_pickup_waits"] >= 4


def test_feedback_out_and_no_echo(any_rig):
    rig = any_rig
    d = rig.d
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "pickup", 0)
    d.call("/midi/map", "/node/g/gain", "pb", 2, 0, "pickup", 0)
    d.call("/midi/map", "/node/g/mute", "note", 3, 10)
    # the controls are first told where the parameters are, before the sets below (told
    # late, the mute's 127 would be in this first lot, not in the next): until the
    # mute's note, the last of the three the server sends
    rig.feedback_until(lambda got: [0x82, 10, 0] in got)
    d.call("/node/g/gain", -10.0)  # position 0.5
    d.call("/node/g/mute", 1)

    def nudge():  # feedback lost at an xrun: move both away and back, to be told again
        for a, v in (("gain", -11.0), ("mute", 0), ("gain", -10.0), ("mute", 1)):
            d.call(f"/node/g/{a}", v)

    want = [[0xB0, 7, 64], [0xE1, 8192 & 127, 8192 >> 7], [0x92, 10, 127]]
    fb = rig.feedback_until(lambda got: all(w in got for w in want), nudge=nudge)
    assert [0xB0, 7, 64] in fb  # round(0.5 * 127)
    assert [0xE1, 8192 & 127, 8192 >> 7] in fb  # round(0.5 * 16383) = 8192
    assert [0x92, 10, 127] in fb
    # the fader moves: the other control follows, the fader itself hears nothing,
    # and an OSC subscriber hears the new value
    seen: list = []
    with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as c:
        c.subscribe(lambda a, args: seen.append((a, args)), lease_s=10.0)
        seen.clear()
        rig.send([0xB0, 7, 100])
        x = round(fader_pos(f32(fader_db(100 / 127))) * 16383)
        heard = ("/node/g/gain", [pytest.approx(f32(fader_db(100 / 127)), abs=1e-4)])
        fb = rig.feedback_until(lambda got: [0xE1, x & 127, x >> 7] in got and heard in seen,
                                resend=True)
        c.unsubscribe()
    assert heard in seen, seen
    assert [0xE1, x & 127, x >> 7] in fb
    assert not [m for m in fb if m[0] == 0xB0], fb


def test_a_touched_parameter_is_not_moved_by_midi(any_rig):
    """A finger on a fader (/touch from a browser or TouchOSC) holds the parameter:
    MIDI does not move it until the touch ends, as another client's set is refused."""
    rig = any_rig
    d = rig.d
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "pickup", 0)
    rig.send([0xB0, 7, 64])
    want = f32(fader_db(64 / 127))
    assert rig.wait_value("/node/g/gain", want, resend=True) == pytest.approx(want, abs=1e-4)
    with Client("127.0.0.1", d.port, timeout=30.0, transport="tcp") as finger:
        finger.call("/node/g/gain/touch", 1)
        finger.call("/node/g/gain", -3.0)
        rig.settle()
        rig.send([0xB0, 7, 100], [0xB0, 7, 110])
        rig.settle(0.5)
        assert rig.value("/node/g/gain") == -3.0
        assert d.status()["midi_held"] >= 1
        finger.call("/node/g/gain/touch", 0)
        rig.settle()
    rig.send([0xB0, 7, 110])
    want = f32(fader_db(110 / 127))
    assert rig.wait_value("/node/g/gain", want, resend=True) == pytest.approx(want, abs=1e-4)


def test_addresses_that_are_no_parameter_are_dispatched(rig):
    d = rig.d
    d.call("/midi/map", "/node/g/bypass", "note", 1, 70, "mode", "momentary")
    d.call("/midi/map", "/node/g/bypass", "cc", 1, 71, "min", 0.0, "max", 1.0)
    d.call("/midi/map", "/graph/remove", "note", 2, 10, "args", "osc")  # a trigger
    rig.send([0x90, 70, 127])
    assert rig.wait_value("/node/g/bypass", 1.0) == 1.0
    rig.send([0x80, 70, 0])
    assert rig.wait_value("/node/g/bypass", 0.0, resend=True) == 0.0
    rig.send([0xB0, 71, 100])
    assert rig.wait_value("/node/g/bypass", 1.0, resend=True) == 1.0
    assert "osc" in d.call("/graph/nodes")
    rig.send([0x91, 10, 100])
    end = time.monotonic() + 30
    while "osc" in d.call("/graph/nodes") and time.monotonic() < end:
        time.sleep(0.05)
    assert "osc" not in d.call("/graph/nodes")


def test_jack_connect_wires_the_midi_ports(tmp_path, request, monkeypatch):
    rtmidi = pytest.importorskip("rtmidi") if not os.environ.get("CI") else __import__("rtmidi")
    name = f"mg-midic-{os.getpid()}"
    server = start_jackd(name, tmp_path / "jackd.log")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    ctl = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "mgsurface")
    fb = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "mgsurface-fb")
    d = None
    try:
        ctl.open_virtual_port("faders")
        fb.open_virtual_port("motors")
        d = serve(tmp_path, name, "--jack-connect", "midi_in=mgsurface:faders",
                  "--jack-connect", "midi_out=mgsurface-fb:.*")
        r = subprocess.run(["jack_lsp", "-s", name, "-c"], env=jack_env(name),
                           capture_output=True, text=True, timeout=60).stdout
        assert "mixgraph:midi_in\n   mgsurface:faders" in r, r
        assert "mixgraph:midi_out\n   mgsurface-fb:motors" in r, r
    finally:
        for p in (ctl, fb):
            p.close_port()
        if d is not None:
            d.stop()
        stop_jackd(server)


# ---- bad input -------------------------------------------------------------------------

def test_bad_maps_fail_with_a_reason(rig):
    d = rig.d
    d.call("/graph/add", "meter", "m")
    bad = [
        (("/node/nope/gain", "cc", 1, 7), "no node named"),
        (("/node/g/nope", "cc", 1, 7), "has no parameter"),
        (("/node/m/peak", "cc", 1, 7), "read-only"),
        (("/no/such/address", "cc", 1, 7), "no such address"),
        (("/status", "cc", 1, 7), "cannot be the target"),
        (("/node/g/gain", "cc", 0, 7), "channel"),
        (("/node/g/gain", "cc", 17, 7), "channel"),
        (("/node/g/gain", "cc", 1, 128), "number"),
        (("/node/g/gain", "cc14", 1, 40), "number"),
        (("/node/g/gain", "nrpn", 1, 16384), "number"),
        (("/node/g/gain", "wheel", 1, 7), "kind"),
        (("/node/g/gain", "cc", 1, 7, "min", -200.0), "outside"),
        (("/node/g/gain", "cc", 1, 7, "colour", 1), "unknown option"),
    ]
    for args, why in bad:
        with pytest.raises(MixgraphFail) as e:
            d.call("/midi/map", *args)
        assert why in str(e.value), (args, str(e.value))
    assert d.call("/midi/maps") == [0]


def test_malformed_running_status_and_a_flood(rig):
    d = rig.d
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "pickup", 0)
    rig.send([0xB0, 7, 10])
    rig.send([7, 90])  # running status: another CC 7 on channel 1
    want = f32(fader_db(90 / 127))
    assert rig.wait_value("/node/g/gain", want, resend=True) == pytest.approx(want, abs=1e-4)
    end = time.monotonic() + 5
    while True:  # again when JACK dropped the period (an xrun): the counts are at least
        rig.send([0xF0, 0x7D, 0x01, 0x02], [0xF0, 0x7D, 0x90, 0xF7], [0xF0, 0x7D, 1, 0xF7],
                 [0xB0, 7])  # unterminated SysEx, a status byte inside one, a good one, short
        rig.settle()
        st = d.status()
        if st["midi_sysex"] >= 1 or time.monotonic() > end:
            break
    assert st["midi_malformed"] >= 3 and st["midi_sysex"] >= 1
    assert rig.value("/node/g/gain") == want
    t0 = st["time"]
    # a flood: 10,000 events in about a second, the last one at CC 50
    for i in range(10000):
        rig.ctl.send_message([0xB0, 7, i % 128])
        if i % 100 == 99:
            time.sleep(0.01)
    rig.send([0xB0, 7, 50])
    want = f32(fader_db(50 / 127))
    assert rig.wait_value("/node/g/gain", want, resend=True) == pytest.approx(want, abs=1e-4)
    st = d.status()
    # on a loaded host JACK drops some periods' MIDI in its xruns, before mixgraph
    assert st["midi_events"] > 5000
    assert st["time"] > t0 and st["device_state"] == "running"
    d.call("/graph/add", "gain", "after")  # the server still does everything else


def test_sysex_split_across_jack_events(rig):
    """A SysEx may span JACK MIDI events (a long dump comes in parts, the later
    ones data bytes up to its F7): one SysEx, nothing malformed; one cut short
    by a status byte in a later event is malformed, and that message applies."""
    d = rig.d
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "pickup", 0)
    # four events (the sends are 5 ms apart: several JACK periods), then a mapped
    # CC whose value shows the events before it were read. Again (5 tries) when
    # JACK dropped a period's MIDI (an xrun, jackd not real-time on a loaded host):
    # a dropped middle part leaves the SysEx unterminated, and the CC after it then
    # counts it malformed, rightly. A round that went through whole must show one
    # SysEx and nothing malformed; a parser that split it wrongly fails every round.
    for k in range(5):
        st0 = d.status()
        rig.send([0xF0, 0x7D, 0x01, 0x02], [0x03, 0x04], [0xF8, 0x05, 0x06], [0x07, 0xF7],
                 [0xB0, 7, 20 + k])
        want = f32(fader_db((20 + k) / 127))
        got = rig.wait_value("/node/g/gain", want)
        st = d.status()
        if got == pytest.approx(want, abs=1e-4) and st["midi_sysex"] > st0["midi_sysex"] \
                and st["midi_malformed"] == st0["midi_malformed"]:
            break
    assert got == pytest.approx(want, abs=1e-4)
    assert st["midi_sysex"] - st0["midi_sysex"] >= 1
    assert st["midi_malformed"] == st0["midi_malformed"], (st0, st)
    # cut short: the CC in the next event ends the SysEx (malformed) and applies
    # (again when a period's MIDI was dropped: the CC, or the SysEx's start)
    for k in range(5):
        st = d.status()
        rig.send([0xF0, 0x7D, 0x01, 0x02], [0xB0, 7, 90 + k])
        want = f32(fader_db((90 + k) / 127))
        got = rig.wait_value("/node/g/gain", want)
        st1 = d.status()
        if got == pytest.approx(want, abs=1e-4) and \
                st1["midi_malformed"] - st["midi_malformed"] >= 1:
            break
    assert rig.value("/node/g/gain") == pytest.approx(want, abs=1e-4)
    assert st1["midi_malformed"] - st["midi_malformed"] >= 1
    assert st1["midi_sysex"] == st["midi_sysex"]
    assert st1["device_state"] == "running"


def test_maps_saved_loaded_and_in_the_patch(rig):
    d = rig.d
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7, "min", -30.0)
    d.call("/midi/map", "/node/g/mute", "note", 2, 36, "mode", "momentary")
    assert d.call("/midi/save", "desk") == ["/midi/save", "desk", 2]
    text = (d.state_dir / "midi" / "desk.json").read_text()
    assert '"kind": "cc"' in text and '"mode": "momentary"' in text
    d.call("/midi/unmap", "/node/g/gain")
    assert d.call("/midi/maps")[0] == 1
    d.call("/midi/load", "desk")
    assert d.call("/midi/maps")[0] == 2
    with pytest.raises(MixgraphFail, match="bad map file name"):
        d.call("/midi/load", "../x")
    with pytest.raises(MixgraphFail, match="no saved MIDI maps"):
        d.call("/midi/load", "nothing")
    d.call("/patch/save", "withmaps")
    d.call("/midi/unmap", "/node/g/mute")
    d.call("/patch/load", "withmaps")
    assert d.call("/midi/maps")[0] == 2


def test_without_jack_midi_is_unavailable_and_says_so(tmp_path):
    if os.path.exists("/dev/snd/seq"):
        pytest.skip("this machine has an ALSA sequencer")
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        st = d.status()
        assert st["midi"] == "unavailable"
        assert "MIDI: unavailable: no JACK backend" in d.output()
        with pytest.raises(MixgraphFail, match="unavailable"):
            d.call("/midi/learn", "/graph/clear")
        # maps can still be made (and saved with the patch) for a later JACK run
        d.call("/graph/add", "gain", "g")
        d.call("/midi/map", "/node/g/gain", "cc", 1, 7)
    finally:
        d.stop()


# ---- the decoder, without JACK (the control thread's path: no engine) ---------------

class Decoder:
    """csrc/midi.c's decoder in learning mode: every control comes back as an event."""

    def __init__(self) -> None:
        from mixgraph.server._core import ffi, lib

        self.ffi, self.lib = ffi, lib
        self.m = lib.mg_midi_new()
        lib.mg_midi_set_learn(self.m, 1)
        lib.mg_midi_begin(self.m)
        self.ev = ffi.new("mg_midi_event *")

    def feed(self, *chunks: bytes) -> list[tuple[str, int, int, int]]:
        from mixgraph.server.midi import KIND_NAMES

        for c in chunks:
            self.lib.mg_midi_input(self.m, self.ffi.NULL, c, len(c), 0, 0)
        out = []
        while self.lib.mg_midi_poll(self.m, self.ev):
            e = self.ev
            out.append((KIND_NAMES[e.kind], e.channel + 1, e.number, e.value))
        return out

    def stats(self) -> dict:
        from mixgraph.server.midi import STATS

        st = self.ffi.new(f"uint64_t[{len(STATS)}]")
        assert self.lib.mg_midi_stats(self.m, st, len(STATS)) == len(STATS)
        return dict(zip(STATS, st, strict=True))

    def close(self) -> None:
        self.lib.mg_midi_free(self.m)


@pytest.fixture
def dec():
    d = Decoder()
    yield d
    d.close()


def cc(evs):
    return [e for e in evs if e[0] == "cc"]


def test_decoder_running_status_and_realtime_bytes(dec):
    assert cc(dec.feed(b"\xb0\x07\x10", b"\x07\x20")) == [("cc", 1, 7, 16), ("cc", 1, 7, 32)]
    # running status inside one event, a clock byte in the middle of a message
    assert cc(dec.feed(b"\xb2\x07\x01\x08\xf8\x02")) == [("cc", 3, 7, 1), ("cc", 3, 8, 2)]
    assert dec.feed(b"\x91\x3c\x40", b"\x3c\x00") == [("note", 2, 60, 64), ("note", 2, 60, 0)]
    assert dec.stats()["malformed"] == 0


def test_decoder_counts_an_unmapped_message_once(dec):
    """A CC below 64 is read as a CC and as half of a 14-bit CC, CC 6 after an NRPN
    select also as NRPN data: still one message, so one unmapped count."""
    dec.feed(b"\xb0\x07\x10", b"\xb0\x27\x05", b"\xb0\x63\x01", b"\xb0\x62\x02",
             b"\xb0\x06\x40", b"\x90\x3c\x40", b"\xe0\x00\x40", b"\xc0\x05")
    st = dec.stats()
    assert st["events"] == 8 and st["unmapped"] == 8, st


def test_decoder_malformed_input_is_counted_and_dropped(dec):
    assert dec.feed(b"\x07\x10") == []  # data bytes with no status
    assert dec.stats()["malformed"] == 2
    assert dec.feed(b"\xf0\x7d\x01\x02\xf7") == [] and dec.stats()["sysex"] == 1
    # an unterminated SysEx, then one cut by a status byte (which then counts)
    assert dec.feed(b"\xf0\x7d\x01") == []
    assert dec.feed(b"\xf0\x7d\x90\x3c\x7f") == [("note", 1, 60, 127)]
    assert dec.stats()["malformed"] == 4
    # SysEx clears running status; a truncated message is dropped
    assert dec.feed(b"\xb0\x07\x10\xf0\x01\xf7\x07\x20") == [("cc14", 1, 7, 16 << 7),
                                                          ("cc", 1, 7, 16)]
    assert dec.feed(b"\xb0\x07") == [] and dec.stats()["malformed"] == 7
    assert dec.feed(b"\xf7", b"\xf4") == [] and dec.stats()["malformed"] == 9


def test_decoder_sysex_spans_events(dec):
    # one SysEx in three events, a clock byte inside: counted once, at its F7
    assert dec.feed(b"\xf0\x7d\x01", b"\x02\x03", b"\xf8\x04\xf7") == []
    st = dec.stats()
    assert st["sysex"] == 1 and st["malformed"] == 0
    # cut short by a status byte in the next event: malformed, and that message counts
    assert cc(dec.feed(b"\xf0\x7d\x01", b"\xb0\x07\x10")) == [("cc", 1, 7, 16)]
    st = dec.stats()
    assert st["sysex"] == 1 and st["malformed"] == 1
    # running status does not outlive a SysEx: the data bytes after F0 are the SysEx's
    assert cc(dec.feed(b"\xb0\x07\x10", b"\xf0\x01", b"\x07\x20", b"\xf7")) == [
        ("cc", 1, 7, 16)]
    st = dec.stats()
    assert st["sysex"] == 2 and st["malformed"] == 1
    # an open SysEx is not counted until it ends (or is cut)
    dec.feed(b"\xf0\x01\x02")
    assert dec.stats()["sysex"] == 2 and dec.stats()["malformed"] == 1


def test_decoder_14_bit_kinds(dec):
    x = 12345
    evs = dec.feed(bytes([0xB4, 5, x >> 7]), bytes([0xB4, 37, x & 127]))
    assert ("cc14", 5, 5, x) in evs and ("cc14", 5, 5, (x >> 7) << 7) in evs
    evs = dec.feed(bytes([0xB0, 99, 3]), bytes([0xB0, 98, 7]), bytes([0xB0, 6, x >> 7]),
                   bytes([0xB0, 38, x & 127]))
    assert [e for e in evs if e[0] == "nrpn"] == [("nrpn", 1, 3 * 128 + 7, (x >> 7) << 7),
                                                  ("nrpn", 1, 3 * 128 + 7, x)]
    # an RPN selected after it: data entry is no NRPN any more
    evs = dec.feed(bytes([0xB0, 101, 0]), bytes([0xB0, 6, 1]))
    assert not [e for e in evs if e[0] == "nrpn"]
    assert dec.feed(bytes([0xEF, x & 127, x >> 7])) == [("pb", 16, 0, x)]
    assert dec.feed(bytes([0xC2, 9])) == [("pc", 3, 0, 9)]


def test_decoder_flood_is_counted_not_waited_for(dec):
    msg = bytes([0xB0, 7, 1])
    for _ in range(20000):
        dec.lib.mg_midi_input(dec.m, dec.ffi.NULL, msg, 3, 0, 0)
    st = dec.stats()
    assert st["events"] == 20000
    # each CC 7 is also a cc14 candidate: 40000 events for a ring of 8192
    assert st["lost"] == 40000 - 8192
    assert len(dec.feed()) == 8192


def test_maps_survive_a_restart(tmp_path):
    """The maps go into the autosave and come back with the patch at start-up."""
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        d.call("/graph/add", "gain", "g")
        d.call("/midi/map", "/node/g/gain", "cc14", 4, 9, "min", -40.0)
        d.call("/midi/map", "/node/g/mute", "note", 1, 36)
        d.call("/midi/unmap", "/node/g/mute", "note", 1, 36)
        d.call("/midi/map", "/node/g/polarity", "note", 1, 37, "mode", "momentary")
        time.sleep(1.0)  # the autosave runs at 4 Hz
    finally:
        d.stop()
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        assert d.call("/midi/maps") == [2, "/node/g/gain", "cc14", 4, 9, "min", -40.0, ";",
                                        "/node/g/polarity", "note", 1, 37, "mode",
                                        "momentary", ";"]
    finally:
        d.stop()


def test_a_map_change_survives_sigkill_at_once(tmp_path):
    """Map edits are journaled before their /done: a SIGKILL right after /midi/map
    (long before the autosave's next snapshot could run) or /midi/unmap loses
    nothing. Needs no JACK: the maps are kept whatever MIDI is available."""
    import signal as _signal

    d = Daemon(tmp_path / "state", "--backend", "null")
    d.call("/graph/add", "gain", "g", "gain", 0.0)
    d.call("/graph/add", "gain", "h", "gain", 0.0)
    d.call("/midi/map", "/node/g/gain", "cc", 1, 7)
    d.call("/midi/map", "/node/h/gain", "cc", 2, 9)
    d.stop(_signal.SIGKILL)
    d = Daemon(tmp_path / "state", "--backend", "null")
    try:
        maps = d.call("/midi/maps")
        assert maps[0] == 2, maps
        d.call("/midi/unmap", "/node/g/gain")
        d.stop(_signal.SIGKILL)
        d = Daemon(tmp_path / "state", "--backend", "null")
        maps = d.call("/midi/maps")
        assert maps[0] == 1 and "/node/h/gain" in maps, maps
    finally:
        d.stop()
