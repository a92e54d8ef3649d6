"""Devices that come and go: keep the engine running when the audio device
(a PortAudio stream, a JACK server) goes away, and move back when it returns.

The engine and everything in it (nodes, schedules, cues) never stop: when
the device is lost the null clock takes over the same engine, the log and
/status say so once (`backend null (waiting for <device>)`), the device is
tried again every RETRY_S, and when it answers the null clock stops and the
device drives the engine again. Runs on the control thread (Daemon._tick).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from .backends import BackendConfig, Running, choose_backend, rescan_devices, start_backend
from .engine import Engine
from .errors import MixgraphError

log = logging.getLogger("mixgraph.devices")

RETRY_S = 2.0
# a device backend whose sample clock has not moved for this long is lost
# (a PortAudio stream that hangs instead of failing)
STALL_S = 2.0


class DeviceWatch:
    """The backend that drives the engine now, and what to do when it fails.

    `on_change(state, backend)` is called on every move: state "running"
    (the device drives the engine) or "waiting" (the null clock does)."""

    def __init__(self, config: BackendConfig, engine: Engine,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.engine = engine
        self.on_change = on_change or (lambda state, backend: None)
        self.current: Running | None = None
        self.state = "running"
        self.lost_at = 0.0
        self.next_try = 0.0
        self._last_error = ""
        self._clock = (0, 0.0)  # (engine time, when it last moved)
        # PortAudio did not let go of a lost stream (its JACK host API waits
        # forever for a server that died): no more PortAudio in this process
        self.stuck = False
        self.returns = 0        # times the device came back
        self.last_return_s = 0.0  # how long the last wait lasted

    @property
    def watched(self) -> bool:
        return self.config.kind in ("jack", "portaudio")

    @property
    def device(self) -> str:
        return self.config.device_name

    def backend_text(self) -> str:
        """What /status shows as the backend."""
        if self.state == "waiting":
            return f"null (waiting for {self.device})"
        return self.config.kind

    def start(self) -> Running:
        """Start the configured backend; a device backend that is not there
        yet starts waiting for it on the null clock instead."""
        try:
            self.current = start_backend(self.config, self.engine)
        except MixgraphError as exc:
            if not self.watched:
                raise
            self._fall_back(str(exc), first=True)
        else:
            self._clock = (self.engine.time, time.monotonic())
        return self.current

    def tick(self, now: float | None = None) -> None:
        """Check the device (running) or try it again (waiting); control thread."""
        if not self.watched or self.current is None:
            return
        now = time.monotonic() if now is None else now
        if self.state == "running":
            if not self.current.running:  # stopped on purpose (shutdown, a test hook)
                return
            why = self.current.lost()
            t = self.engine.time
            if t != self._clock[0]:
                self._clock = (t, now)
            elif not why and now - self._clock[1] > STALL_S:
                why = f"the audio clock has not moved for {now - self._clock[1]:.1f} s"
            if why:
                self._fall_back(why)
        elif now >= self.next_try and not self.stuck:
            self.next_try = now + RETRY_S
            self._retry(now)

    def _fall_back(self, why: str, first: bool = False) -> None:
        if self.current is not None:
            jack = self.current.jack
            if jack is not None:  # the shutdown callback ends the process callback; be sure
                end = time.monotonic() + 0.5
                while jack.busy and time.monotonic() < end:
                    time.sleep(0.001)
                self.current.stop()
            elif not self._release(self.current):
                self.stuck = True
        self.engine.null_start(self.config.block)
        null = replace(self.config, kind="null")
        self.current = Running(null, self.engine)
        self.state = "waiting"
        self.lost_at = time.monotonic()
        self.next_try = self.lost_at + RETRY_S
        self._last_error = why
        if self.stuck:
            log.error("audio: lost %s (%s) and PortAudio does not let go of the stream: "
                      "running on the null clock with the graph intact, but PortAudio "
                      "cannot be used again in this process; restart mixgraph to go back "
                      "to the device (on JACK, --backend jack reconnects by itself)",
                      self.device, why)
        elif first:
            log.warning("audio: %s is not available (%s): running on the null clock, "
                        "trying again every %g s", self.device, why, RETRY_S)
        else:
            log.warning("audio: lost %s (%s): running on the null clock with the graph "
                        "intact, trying again every %g s", self.device, why, RETRY_S)
        self.on_change("waiting", self.backend_text())

    @staticmethod
    def _release(running: Running, timeout: float = 2.0) -> bool:
        """Stop a lost backend without hanging the control thread: False when
        it did not stop within `timeout` (it is then left as it is)."""
        if running.stream is None:
            running.stop()
            return True
        t = threading.Thread(target=running.stop, name="mixgraph-release", daemon=True)
        t.start()
        t.join(timeout)
        return not t.is_alive()

    def _open(self) -> BackendConfig:
        """The device's configuration now, or MixgraphError while it is not there."""
        cfg = self.config
        if cfg.kind == "portaudio":
            rescan_devices()  # PortAudio lists devices once, when it initialises
            found = choose_backend("portaudio", cfg.device_query, self.engine.sample_rate,
                                   cfg.block, self.engine.hw_in, self.engine.hw_out)
            if found.sample_rate != self.engine.sample_rate:
                raise MixgraphError(f"{found.device_name} runs at {found.sample_rate:g} Hz, "
                                    f"the engine at {self.engine.sample_rate:g} Hz")
            return found
        return cfg

    def _retry(self, now: float) -> None:
        try:
            cfg = self._open()
            if cfg.kind == "jack":
                # open first (the rate check), then hand the engine over
                from .jack import JackClient

                client = JackClient(self.engine, cfg.jack_name, cfg.jack_server,
                                    cfg.jack_cpu)
                self.current.stop()  # the null clock: one thread runs the engine at a time
                try:
                    client.activate()
                except MixgraphError:
                    client.close()
                    self.engine.null_start(self.config.block)
                    raise
                for problem in client.connect(cfg.jack_connect):
                    log.warning("--jack-connect: %s", problem)
                cfg.block = client.period or cfg.block
                running = Running(cfg, self.engine, jack=client)
            else:
                self.current.stop()
                try:
                    running = start_backend(cfg, self.engine)
                except MixgraphError:
                    self.engine.null_start(self.config.block)
                    raise
        except MixgraphError as exc:
            if str(exc) != self._last_error:  # say each new reason once, not every 2 s
                self._last_error = str(exc)
                log.warning("audio: still waiting for %s: %s", self.device, exc)
            if not self.current.running:  # the null clock was stopped for a failed start
                self.current = Running(replace(self.config, kind="null"), self.engine)
            return
        self.config = cfg
        self.current = running
        self.state = "running"
        self._last_error = ""
        self._clock = (self.engine.time, time.monotonic())
        self.returns += 1
        self.last_return_s = time.monotonic() - self.lost_at
        log.warning("audio: %s is back after %.1f s: the engine runs on it again",
                    self.device, self.last_return_s)
        self.on_change("running", self.backend_text())

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
