"""Audio backends: which clock drives the engine, and starting/stopping it.

Four backends run the same C `engine_process()`:

- ``jack``: a native JACK client (csrc/jack.c, server/jack.py) whose process
  callback is the engine's; ports ``mixgraph:in_<n>`` / ``mixgraph:out_<n>``.

- ``portaudio``: a PortAudio stream (through sounddevice) whose callback is
  the C function ``mg_pa_callback`` with the engine as its userData. No
  Python runs on the audio thread.
- ``null``: a C thread paced by CLOCK_MONOTONIC, for a box with no audio
  device (it still records, meters and streams).
- ``offline``: no clock at all; the renderer calls ``Engine.process()`` as
  fast as it can (this module only describes it).

``choose_backend()`` decides (control thread, once at start-up);
``start_backend()`` starts the chosen clock and returns a handle to stop it.
sounddevice is imported lazily: a machine without the PortAudio library
runs on the null backend instead of failing at import.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ._core import ffi, lib
from .engine import Engine
from .errors import MixgraphError

log = logging.getLogger("mixgraph.backends")

KINDS = ("auto", "jack", "portaudio", "null", "offline")
NULL_CHANNELS = 2          # null/offline default: 2 in / 2 out
DEFAULT_CHANNELS = 2       # portaudio default: stereo (or fewer if the device has fewer)
MAX_CHANNELS = 256         # the engine's limit (mg_engine_new)
MAX_BLOCK_FRAMES = 8192    # the null clock's limit (mg_null_start)
# ALSA's "null" PCM opens through PortAudio but is unclocked (it runs as fast
# as the CPU allows): never picked automatically, only when named.
UNCLOCKED = ("null",)


@dataclass
class BackendConfig:
    """What the daemon runs on; also shown to users (`device_name`, `note`)."""

    kind: str            # "jack" | "portaudio" | "null" | "offline"
    device_name: str     # human-readable, e.g. "JACK Audio Connection Kit (system)"
    device: int | None   # PortAudio device index
    sample_rate: float
    block: int           # frames per block
    hw_in: int
    hw_out: int
    note: str            # why this backend was chosen
    jack_server: str | None = None   # jack: the server's name (None: the default)
    jack_name: str = "mixgraph"      # jack: the client name (ports are <name>:out_1 ...)
    jack_connect: object = None      # jack: server.jack.parse_connect's result
    jack_cpu: int | None = None      # jack: pin the process thread there (--jack-cpu)
    device_query: str | int | None = None  # portaudio: what --device asked for (retries)


class _NoPortAudio(Exception):
    """PortAudio (or sounddevice) cannot be loaded; str() is the reason."""


_streams_running = 0


def _load_sounddevice():
    """The sounddevice module, imported on first use; _NoPortAudio if it cannot load."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise _NoPortAudio(f"the PortAudio library cannot be loaded ({exc})") from None
    except ImportError as exc:
        raise _NoPortAudio(f"the sounddevice module is not installed ({exc})") from None
    return sounddevice


def rescan_devices() -> None:
    """Re-initialise PortAudio so that devices that appeared since it was
    loaded (a JACK server started later, a USB interface plugged in) are seen.
    PortAudio enumerates devices once, when it initialises."""
    if _streams_running:
        raise MixgraphError("cannot rescan audio devices while a PortAudio stream is running")
    try:
        sd = _load_sounddevice()
    except _NoPortAudio:
        return
    try:
        sd._terminate()
        sd._initialize()
    except Exception as exc:  # sounddevice.PortAudioError
        raise MixgraphError(f"cannot re-initialise PortAudio: {exc}") from None


def _devices(sd) -> list[dict]:
    apis = sd.query_hostapis()
    out = []
    for i, d in enumerate(sd.query_devices()):
        api = d.get("hostapi")
        out.append({
            "name": d["name"],
            "index": i,
            "hostapi": apis[api]["name"] if api is not None and 0 <= api < len(apis) else "",
            "max_input_channels": int(d["max_input_channels"]),
            "max_output_channels": int(d["max_output_channels"]),
            "default_samplerate": float(d["default_samplerate"]),
        })
    return out


def list_devices() -> list[dict]:
    """PortAudio's devices: name, index, hostapi (its name), max_input_channels,
    max_output_channels, default_samplerate. [] when PortAudio is missing."""
    try:
        return _devices(_load_sounddevice())
    except _NoPortAudio:
        return []
    except Exception as exc:  # PortAudio itself failing to enumerate
        log.warning("cannot list audio devices: %s", exc)
        return []


def device_report() -> tuple[list[dict], str | None]:
    """PortAudio's devices and, when it cannot list them, why: (devices, None), or
    ([], "the PortAudio library cannot be loaded (...)") and the like."""
    try:
        sd = _load_sounddevice()
    except _NoPortAudio as exc:
        return [], str(exc)
    try:
        return _devices(sd), None
    except Exception as exc:  # PortAudio itself failing to enumerate
        return [], f"PortAudio cannot enumerate devices: {exc}"


def describe(dev: dict) -> str:
    """A device as users see it: 'host API (device name)'."""
    return f"{dev['hostapi']} ({dev['name']})" if dev["hostapi"] else dev["name"]


def _available(devs: list[dict]) -> str:
    if not devs:
        return "PortAudio lists no devices"
    return "available: " + "; ".join(
        f"[{d['index']}] {describe(d)} {d['max_input_channels']} in/"
        f"{d['max_output_channels']} out" for d in devs
    )


def _default_output(sd) -> int | None:
    """PortAudio's default output device, or None."""
    try:
        return int(sd.query_devices(kind="output")["index"])
    except Exception:  # no default output device
        return None


def _find_device(sd, devs: list[dict], device: str | int | None, need_in: int,
                 need_out: int) -> tuple[dict | None, str]:
    """The device to use and, when there is none, why not."""
    def fits(d: dict) -> bool:
        return d["max_output_channels"] >= need_out and d["max_input_channels"] >= need_in

    if device is None:
        usable = [d for d in devs if d["max_output_channels"] > 0 and fits(d)
                  and d["name"] not in UNCLOCKED]
        if not usable:
            return None, "no audio device found"
        default = _default_output(sd)
        for d in usable:
            if d["index"] == default:
                return d, "the default output device"
        return usable[0], "the first device with outputs"
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device.strip())
    if isinstance(device, int):
        for d in devs:
            if d["index"] == device:
                return d, f"device {device}"
        return None, f"no audio device with index {device} ({_available(devs)})"
    if not isinstance(device, str) or not device.strip():
        return None, f"bad device {device!r}: give a name (or part of one) or an index"
    want = device.strip().lower()
    exact = [d for d in devs if d["name"].lower() == want]
    # like sounddevice: every word must occur in "name, host API"
    words = want.split()
    matches = exact or [d for d in devs
                        if all(w in f"{d['name']}, {d['hostapi']}".lower() for w in words)]
    if not matches:
        return None, f"no audio device matching {device!r} ({_available(devs)})"
    good = [d for d in matches if d["max_output_channels"] > 0 or need_out == 0]
    pick = (good or matches)[0]
    why = f"matched {device!r}"
    if len(matches) > 1:
        others = ", ".join(f"[{d['index']}] {describe(d)}" for d in matches if d is not pick)
        why += f" (also matched: {others})"
    return pick, why


def _null(kind: str, sample_rate: float, block: int, hw_in: int | None, hw_out: int | None,
          note: str) -> BackendConfig:
    name = "null (no audio device)" if kind == "null" else "offline (no audio device)"
    return BackendConfig(kind, name, None, float(sample_rate), int(block),
                         NULL_CHANNELS if hw_in is None else int(hw_in),
                         NULL_CHANNELS if hw_out is None else int(hw_out), note)


def _check_numbers(sample_rate, block, hw_in, hw_out) -> None:
    if not isinstance(sample_rate, int | float) or not 1000 <= sample_rate <= 768000:
        raise MixgraphError(f"sample rate {sample_rate!r} Hz is out of range (1000..768000)")
    if not isinstance(block, int) or not 1 <= block <= MAX_BLOCK_FRAMES:
        raise MixgraphError(f"block size {block!r} is out of range (1..{MAX_BLOCK_FRAMES} frames)")
    for what, n in (("input", hw_in), ("output", hw_out)):
        if n is not None and (not isinstance(n, int) or not 0 <= n <= MAX_CHANNELS):
            raise MixgraphError(f"{what} channel count {n!r} is out of range (0..{MAX_CHANNELS})")
    if hw_in == 0 and hw_out == 0:
        raise MixgraphError("a backend needs at least one input or output channel")


def _jack_config(server: str | None, name: str, connect, sample_rate: float, block: int,
                 hw_in: int | None, hw_out: int | None, strict: bool,
                 ports: tuple[int, int] = (0, 0)) -> BackendConfig | None:
    """The jack backend's configuration; None when auto should look further.
    `ports`: the inputs/outputs the saved patch uses, for counts not given."""
    from . import jack

    hw_in = (ports[0] or None) if hw_in is None else hw_in
    hw_out = (ports[1] or None) if hw_out is None else hw_out
    where = f"JACK server {server!r}" if server else "the default JACK server"
    if not jack.available():
        if strict:
            raise MixgraphError("jack backend: mixgraph was built without JACK "
                                "(install libjack-jackd2-dev and rebuild)")
        return None
    up, rate, period = jack.server_running(server)
    n_in = NULL_CHANNELS if hw_in is None else hw_in
    n_out = NULL_CHANNELS if hw_out is None else hw_out
    if not up:
        if not strict:
            return None
        # --backend jack with no server yet: start on the null clock and wait for it
        return BackendConfig("jack", where, None, float(sample_rate), int(block), n_in, n_out,
                             f"{where} is not running: waiting for it", server, name, connect)
    note = f"native JACK client of {where} ({rate} Hz, {period}-frame periods)"
    if rate != sample_rate:
        if strict:
            raise MixgraphError(f"jack backend: {where} runs at {rate} Hz but mixgraph was "
                                f"asked for {sample_rate:g} Hz: start mixgraph with --rate "
                                f"{rate} or the server at {sample_rate:g} Hz")
        note += f"; {sample_rate:g} Hz is not the server's rate, using {rate} Hz"
    return BackendConfig("jack", where, None, float(rate), int(period or block), n_in, n_out,
                         note, server, name, connect)


def choose_backend(kind: str = "auto", device: str | int | None = None,
                   sample_rate: float = 48000, block: int = 64, hw_in: int | None = None,
                   hw_out: int | None = None, jack_server: str | None = None,
                   jack_name: str = "mixgraph", jack_connect=None,
                   jack_ports: tuple[int, int] = (0, 0)) -> BackendConfig:
    """Decide what the engine runs on.

    jack: a native JACK client of `jack_server` (None: the default server);
    a rate that is not the server's is an error; no server yet: the config
    says so and the daemon waits for it on the null clock. Port counts not
    given come from `jack_ports` (what the saved patch uses) when nonzero.
    auto: JACK when a server is running (at its rate) and no `device` is
    named, else PortAudio when it loads and a usable output device exists
    (`device` by index, or name substring: every word must occur in
    "name, host API"),
    else the null backend; `note` says why. If the device does not run at
    `sample_rate`, auto adopts the device's default rate (and says so).
    portaudio: the same choice, but anything missing raises MixgraphError.
    null / offline: no device; 2 in / 2 out unless given.
    Channel counts default to the device's, at most stereo."""
    if kind not in KINDS:
        raise MixgraphError(f"unknown backend {kind!r} (known: {', '.join(KINDS)})")
    _check_numbers(sample_rate, block, hw_in, hw_out)
    if kind == "null":
        return _null("null", sample_rate, block, hw_in, hw_out, "the null backend was requested")
    if kind == "offline":
        return _null("offline", sample_rate, block, hw_in, hw_out,
                     "offline rendering: no clock, as fast as possible")
    if kind in ("jack", "auto") and (kind == "jack" or device is None):
        cfg = _jack_config(jack_server, jack_name, jack_connect, sample_rate, block, hw_in,
                           hw_out, strict=kind == "jack", ports=jack_ports)
        if cfg is not None:
            return cfg
    strict = kind == "portaudio"

    def give_up(reason: str) -> BackendConfig:
        if strict:
            raise MixgraphError(f"portaudio backend: {reason}")
        note = f"{reason}: running on the null backend"
        # a device the user named and did not get is a warning (a typo is silence)
        (log.warning if device is not None else log.info)("%s", note)
        return _null("null", sample_rate, block, hw_in, hw_out, note)

    try:
        sd = _load_sounddevice()
        devs = _devices(sd)
    except _NoPortAudio as exc:
        return give_up(str(exc))
    except Exception as exc:  # PortAudio failing to enumerate
        return give_up(f"PortAudio cannot list devices ({exc})")
    need_in = hw_in or 0
    need_out = 1 if hw_out is None else hw_out
    dev, why = _find_device(sd, devs, device, need_in, need_out)
    if dev is None:
        return give_up(why)
    n_out = min(DEFAULT_CHANNELS, dev["max_output_channels"]) if hw_out is None else hw_out
    n_in = min(DEFAULT_CHANNELS, dev["max_input_channels"]) if hw_in is None else hw_in
    if n_out > dev["max_output_channels"] or n_in > dev["max_input_channels"]:
        return give_up(
            f"{describe(dev)} has {dev['max_input_channels']} in / "
            f"{dev['max_output_channels']} out; {n_in} in / {n_out} out were asked for"
        )
    if n_out == 0 and n_in == 0:
        return give_up(f"{describe(dev)} has no channels")
    rate = float(sample_rate)
    problem = _check_settings(sd, dev["index"], n_in, n_out, rate)
    rate_note = ""
    if problem:
        dev_rate = dev["default_samplerate"]
        if strict or dev_rate == rate or _check_settings(sd, dev["index"], n_in, n_out, dev_rate):
            return give_up(f"{describe(dev)} cannot run {n_in} in / {n_out} out at "
                           f"{rate:g} Hz ({problem}; the device's default rate is {dev_rate:g} Hz)")
        rate_note = f"; {rate:g} Hz is not supported, using the device's {dev_rate:g} Hz"
        rate = dev_rate
    note = f"PortAudio device [{dev['index']}] {describe(dev)}: {why}{rate_note}"
    return BackendConfig("portaudio", describe(dev), dev["index"], rate, int(block),
                         n_in, n_out, note, device_query=device)


def _check_settings(sd, index: int, n_in: int, n_out: int, rate: float) -> str:
    """'' when PortAudio accepts these settings, else its reason."""
    try:
        if n_out:
            sd.check_output_settings(device=index, channels=n_out, dtype="float32",
                                     samplerate=rate)
        if n_in:
            sd.check_input_settings(device=index, channels=n_in, dtype="float32",
                                    samplerate=rate)
    except Exception as exc:  # sounddevice.PortAudioError, ValueError
        return str(exc)
    return ""


class Running:
    """A started backend: `stop()` it (idempotent) before freeing the engine."""

    def __init__(self, config: BackendConfig, engine: Engine, stream=None,
                 keep: tuple = (), jack=None) -> None:
        self.config = config
        self.engine = engine
        self.stream = stream
        self.jack = jack  # server.jack.JackClient on the jack backend
        # C objects PortAudio holds pointers to: alive as long as the stream is
        self._keep = keep
        self._running = True

    @property
    def running(self) -> bool:
        return self._running

    @property
    def latency(self):
        """PortAudio's reported stream latency in seconds (None off PortAudio)."""
        return self.stream.latency if self.stream is not None else None

    def lost(self) -> str:
        """Why the device stopped driving the engine ('' while it does): the
        JACK server went away, or the PortAudio stream ended by itself."""
        if not self._running:
            return ""
        if self.jack is not None:
            if self.jack.lost:
                why = self.jack.lost_reason or "no reason given"
                return f"the JACK server went away ({why})"
            return ""
        if self.stream is not None:
            try:
                active = self.stream.active
            except Exception as exc:  # sounddevice.PortAudioError: the stream is gone
                return f"the PortAudio stream failed ({exc})"
            return "" if active else "the PortAudio stream stopped"
        return ""

    def stop(self) -> None:
        global _streams_running
        if not self._running:
            return
        self._running = False
        if self.jack is not None:
            self.jack.close()
            return
        if self.stream is None:
            self.engine.null_stop()
            return
        try:
            self.stream.stop()
            self.stream.close()
        except Exception as exc:  # sounddevice.PortAudioError
            log.warning("stopping the PortAudio stream: %s", exc)
        finally:
            _streams_running -= 1
            self._keep = ()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_backend(config: BackendConfig, engine: Engine) -> Running:
    """Start the engine's clock as configured; returns the handle that stops it."""
    global _streams_running
    if (engine.hw_in, engine.hw_out) != (config.hw_in, config.hw_out):
        # the C callback reads and writes interleaved buffers of the engine's widths
        raise MixgraphError(
            f"the engine has {engine.hw_in} in / {engine.hw_out} out but the backend is "
            f"configured for {config.hw_in} in / {config.hw_out} out"
        )
    if engine.sample_rate != float(config.sample_rate):
        raise MixgraphError(f"the engine runs at {engine.sample_rate:g} Hz but the backend "
                            f"at {config.sample_rate:g} Hz")
    if config.kind == "null":
        engine.null_start(config.block)
        return Running(config, engine)
    if config.kind == "offline":
        raise MixgraphError("the offline backend has no clock to start: "
                            "the renderer calls Engine.process() itself")
    if config.kind == "jack":
        return _start_jack(config, engine)
    if config.kind != "portaudio":
        raise MixgraphError(f"unknown backend {config.kind!r}")
    try:
        sd = _load_sounddevice()
    except _NoPortAudio as exc:
        raise MixgraphError(f"portaudio backend: {exc}") from None
    if config.hw_in and config.hw_out:
        stream_kind, channels = "duplex", (config.hw_in, config.hw_out)
        device = (config.device, config.device)
    elif config.hw_out:
        stream_kind, channels, device = "output", config.hw_out, config.device
    else:
        stream_kind, channels, device = "input", config.hw_in, config.device
    # Two cffi instances (ours and sounddevice's): hand pointers across as addresses.
    fn = ffi.addressof(lib, "mg_pa_callback")
    callback = sd._ffi.cast("PaStreamCallback *", int(ffi.cast("uintptr_t", fn)))
    userdata = sd._ffi.cast("void *", int(ffi.cast("uintptr_t", engine.ptr)))
    try:
        stream = sd._StreamBase(
            kind=stream_kind, samplerate=config.sample_rate, blocksize=config.block,
            device=device, channels=channels, dtype="float32", callback=callback,
            userdata=userdata, wrap_callback=None,
        )
    except Exception as exc:  # sounddevice.PortAudioError, ValueError
        raise MixgraphError(f"cannot open {config.device_name}: {exc}") from None
    try:
        stream.start()
    except Exception as exc:
        stream.close()
        raise MixgraphError(f"cannot start {config.device_name}: {exc}") from None
    _streams_running += 1
    log.info("audio: %s, %g Hz, %d-frame blocks, %d in / %d out", config.device_name,
             config.sample_rate, config.block, config.hw_in, config.hw_out)
    return Running(config, engine, stream, keep=(fn, callback, userdata, engine, sd))


def _start_jack(config: BackendConfig, engine: Engine) -> Running:
    """Open the JACK client, activate it (the engine now runs on JACK's thread)
    and make the `--jack-connect` connections."""
    from .jack import JackClient

    client = JackClient(engine, config.jack_name, config.jack_server, config.jack_cpu)
    try:
        client.activate()
    except MixgraphError:
        client.close()
        raise
    for problem in client.connect(config.jack_connect):
        log.warning("--jack-connect: %s", problem)
    config.block = client.period or config.block
    log.info("audio: JACK client %s of %s, %d Hz, %d-frame periods, %d in / %d out%s",
             client.name, config.device_name, client.rate, client.period, config.hw_in,
             config.hw_out, ", real-time" if client.realtime else "")
    return Running(config, engine, jack=client)
