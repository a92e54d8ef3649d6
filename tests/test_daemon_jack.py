"""End-to-end on a real audio clock: `mixgraph serve` through PortAudio on JACK's
dummy driver, the 64-channel gain -> pan -> bus session built and driven over
real UDP sockets, with a burst of parameter messages, counting xruns.

The figures (xruns, load) are printed, not asserted tightly: this machine is
shared, and JACK's dummy driver itself wakes late under load. bench/engine.py
--jack measures the 60 s figure."""

from __future__ import annotations

import socket
import time

import pytest

from mixgraph.clients.client import encode

from daemon_util import Daemon

CHANNELS = 64


@pytest.fixture
def jack_daemon(jackd, tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "portaudio", "--device", "JACK",
               "--block", "64")
    d.client.timeout = 15.0  # replies may queue behind the 10k msg/s burst on 2 cores
    yield d
    d.stop()


def build_session(d: Daemon, n: int) -> None:
    d.call("/graph/add", "bus", "master", "channels", 2)
    d.call("/graph/add", "output", "out", "channels", 2)
    d.call("/graph/add", "meter", "m", "channels", 2)
    d.call("/graph/connect", "master", "out")
    d.call("/graph/connect", "master", "m")
    for i in range(n):
        d.call("/graph/add", "noise", f"src{i}", "seed", i + 1, "level", -30.0)
        d.call("/graph/add", "gain", f"ch{i}", "gain", -6.0)
        d.call("/graph/add", "pan", f"pan{i}", "pan", -1 + 2 * i / (n - 1))
        d.call("/graph/connect", f"src{i}", f"ch{i}")
        d.call("/graph/connect", f"ch{i}", f"pan{i}")
        d.call("/graph/connect", f"pan{i}", "master")


def test_serve_on_jack_dummy_under_message_load(jack_daemon):
    d = jack_daemon
    out = d.output()
    assert "portaudio" in out and "JACK" in out, out
    build_session(d, CHANNELS)
    d.sync(1)
    st0 = d.status()
    assert st0["backend"] == "portaudio" and st0["nodes"] == 3 * CHANNELS + 3
    # 64 independent -30 dBFS noises, -6 dB, constant-power spread: each side sums
    # to about -30 - 6 + 10*log10(64/2) = -21 dBFS RMS (within 1.5 dB); the meter's
    # window fills as the audio runs: waited for (was a 0.5 s sleep)
    def near(rms: list[float]) -> bool:
        return all(abs(v - (-30 - 6 + 10 * 15.051 / 10)) < 1.5 for v in rms)

    deadline = time.monotonic() + 30
    while not near(rms := d.request("/node/m/rms")[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert near(rms), rms
    st0 = d.status()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    rate, seconds = 10000, 3.0
    sent = done = 0

    def take_replies() -> int:
        n = 0
        try:
            while True:  # replies to a flood come coalesced in bundles
                n += sock.recv(65536).count(b"/done\0\0\0,")
        except BlockingIOError:
            return n

    t0 = time.perf_counter()
    # at least half the messages of `seconds` at `rate` are sent: this sender shares the
    # machine's two cores, and on a loaded host it keeps sending, for up to 4 x seconds,
    # until it has (a slower sender is no weaker flood of the daemon than a short one)
    while (elapsed := time.perf_counter() - t0) < seconds or \
            (sent < 0.5 * rate * seconds and elapsed < 4 * seconds):
        while sent < int(elapsed * rate):
            sock.sendto(encode(f"/node/ch{sent % CHANNELS}/gain", [-6.0 - (sent % 40) * 0.25]),
                        ("127.0.0.1", d.port))
            sent += 1
        done += take_replies()
        time.sleep(0.0005)
    end = time.monotonic() + 30.0  # replies still queued (a loaded host drains late)
    while done < sent and time.monotonic() < end:
        done += take_replies()
        time.sleep(0.01)
    sock.close()
    d.sync(2)
    st1 = d.status()
    clock_hz = (st1["time"] - st0["time"]) / (time.perf_counter() - t0 + 0.0)
    xruns = st1["xruns"] - st0["xruns"]
    print(f"\n  [measured] serve on JACK dummy, {CHANNELS} ch gain->pan->bus, {sent} messages "
          f"in {seconds:g} s ({done} answered): {xruns} xruns, DSP load {st1['load']:.2f}%, "
          f"clock ~{clock_hz:.0f} Hz")
    assert sent >= 0.5 * rate * seconds  # the sender shares this machine's two cores
    # UDP: a datagram the kernel's socket buffer had no room for is gone before the
    # server sees it (possible when this shared machine stalls the daemon); what was
    # answered was applied, and with nothing lost the last value of each channel is there
    assert done >= 0.5 * sent
    if done == sent:
        for ch in (0, 17, 63):
            last = max(k for k in range(sent) if k % CHANNELS == ch)
            assert d.request(f"/node/ch{ch}/gain") == (f"/node/ch{ch}/gain",
                                                       [-6.0 - (last % 40) * 0.25])
    assert st1["load"] < 50.0
    # xruns are reported above, not bounded here: on a shared machine JACK's dummy
    # driver itself wakes late. An audio thread that blocked (Python, locks) would
    # lose most of its blocks, which the clock rate catches.
    assert clock_hz > 0.5 * 48000, f"audio clock ran at {clock_hz:.0f} Hz ({xruns} xruns)"
