"""bench/jackd.py's reading of jackd's log: the issue-15 figure compares late
counts of mixgraph and its peers, so every client's lines must be counted the
same way, inside the same window.

The log below is jackd 1.9.21's own output of a dummy-driver run (lines copied
from a bench run, in their order); the expected counts were made by hand from
it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import jackd  # noqa: E402  bench/jackd.py

WINDOW = """\
JackTimedDriver::Process XRun = 18 usec
JackEngine::XRun: client = mixgraph was not finished, state = Running
JackEngine::XRun: client = burn was not finished, state = Triggered
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackEngine::XRun: client = metro was not finished, state = Triggered
JackEngine::XRun: client = burn was not finished, state = Triggered
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackEngine::XRun: client = mixgraph was not finished, state = Running
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackEngine::XRun: client burn finished after current callback
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackTimedDriver::Process XRun = 20 usec
JackEngine::XRun: client = mixgraph was not finished, state = Triggered
JackEngine::XRun: client = mgbench was not finished, state = Triggered
JackEngine::XRun: client = burn was not finished, state = Running
JackAudioDriver::ProcessGraphAsyncMaster: Process error
"""
# after the window: the burner is killed and jackd catches it unfinished
# until it notices the client is gone
KILLED = """\
JackEngine::XRun: client = burn was not finished, state = Triggered
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackEngine::XRun: client = burn was not finished, state = Triggered
JackAudioDriver::ProcessGraphAsyncMaster: Process error
"""


def log_of(tmp_path: Path) -> tuple[jackd.JackLog, int]:
    path = tmp_path / "jackd.log"
    path.write_text(WINDOW + KILLED)
    return jackd.JackLog(path), len(WINDOW.encode())


def test_every_late_line_counts_for_its_client(tmp_path: Path) -> None:
    log, end = log_of(tmp_path)
    # burn: 2 unfinished + 1 finished after the next cycle began + 1 unfinished
    assert log.late_clients(0, end) == {"mixgraph": 3, "burn": 4, "metro": 1, "mgbench": 1}
    assert log.late_states(0, end)["burn"] == {"Triggered": 2, "after": 1, "Running": 1}


def test_the_window_ends_before_a_client_is_stopped(tmp_path: Path) -> None:
    log, end = log_of(tmp_path)
    assert log.late_clients(0, end)["burn"] == 4
    assert log.late_clients(end) == {"burn": 2}  # reported apart, not in the figure


def test_catch_up_cycles_after_the_timer_woke_late_are_apart(tmp_path: Path) -> None:
    """The cycle jackd's dummy driver starts at once after its timer woke
    late gives the clients ~20 µs: its lines are the host's, counted apart."""
    log, end = log_of(tmp_path)
    full, catch_up = log.late_split(0, end)
    assert catch_up == {"mixgraph": 2, "burn": 2, "mgbench": 1}
    assert full == {"metro": 1, "burn": 2, "mixgraph": 1}
    assert log.xruns(0, end) == {"timer": 2, "client": 9, "other": 0}


def test_clients_caught_in_one_cycle_are_one_set(tmp_path: Path) -> None:
    log, end = log_of(tmp_path)
    assert log.late_sets(0, end) == {"burn+mixgraph": 1, "burn+metro": 1, "mixgraph": 1,
                                     "burn": 1, "burn+mgbench+mixgraph": 1}


def test_each_cycle_is_one_group_with_each_clients_state(tmp_path: Path) -> None:
    """A cycle's lines end at 'Process error' (or the next timer line); the
    group right after a timer line is the catch-up cycle."""
    log, end = log_of(tmp_path)
    assert log.late_cycles(0, end) == [
        (True, {"mixgraph": "Running", "burn": "Triggered"}),
        (False, {"metro": "Triggered", "burn": "Triggered"}),
        (False, {"mixgraph": "Running"}),
        (False, {"burn": "after"}),
        (True, {"mixgraph": "Triggered", "mgbench": "Triggered", "burn": "Running"}),
    ]


def test_mixgraph_not_started_behind_its_midi_source_is_told_apart(tmp_path: Path) -> None:
    """mixgraph `Triggered` while the MIDI client JACK runs before it had
    not finished either: it could not have started, whatever its cost."""
    log, end = log_of(tmp_path)
    cycles = log.late_cycles(0, end)
    assert jackd.late_detail(cycles) == {"catch_up": {"Running": 1, "behind_source": 1},
                                         "full": {"Running": 1}}
    # jack_metro has no source: Triggered stays Triggered
    assert jackd.late_detail(cycles, "metro", "") == {"catch_up": {}, "full": {"Triggered": 1}}
    assert jackd.late_detail(cycles, "burn", "") == {
        "catch_up": {"Triggered": 1, "Running": 1}, "full": {"Triggered": 1, "after": 1}}


def test_stamped_lines_count_the_same(tmp_path: Path) -> None:
    """dummy(stamp=True) puts CLOCK_MONOTONIC ns before every line: no count
    may change."""
    path = tmp_path / "stamped.log"
    path.write_text("".join(f"{1000 + k} {line}\n"
                            for k, line in enumerate((WINDOW + KILLED).splitlines())))
    stamped = jackd.JackLog(path)
    log, end = log_of(tmp_path)
    assert stamped.late_clients() == log.late_clients()
    assert stamped.late_split() == log.late_split()
    assert stamped.late_cycles() == log.late_cycles()
    assert stamped.xruns() == log.xruns()


def window(mg: int, metro: int, sine: int | None) -> dict:
    """One window's counts as mix64_live reports them."""
    return {"mixgraph": mg, "metro": metro, "burn": 0, "tail": None, jackd.MIDISINE: sine,
            "full": {"mixgraph": mg, "metro": metro, "burn": 0, jackd.MIDISINE: sine or 0},
            "timer": 0, "steal_pct": 0.0, "loadavg": 1.0}


def test_the_figure_is_reported_against_both_example_clients() -> None:
    """mixgraph against jack_metro and against jack_midisine, each window
    marked OVER whichever it exceeds, and the windows counted both ways."""
    text = jackd.windows_summary([window(3, 5, 2), window(4, 1, 6), window(2, 2, 2)], 60)
    lines = text.splitlines()
    assert "jack_metro / burner / jack_midisine" in lines[0]
    assert lines[1].endswith("OVER jack_midisine")
    assert lines[2].endswith("OVER jack_metro")
    assert "OVER" not in lines[3]
    assert lines[4].endswith("mixgraph <= jack_metro in 2 of 3 windows, <= jack_midisine in 2, "
                             "<= the burner in 0")
    # without jack_midisine (not installed): jack_metro's column alone
    text = jackd.windows_summary([window(3, 5, None)], 60)
    assert "midisine" not in text and "<= jack_metro in 1 of 1" in text


def test_midisine_is_fed_by_the_midi_client(tmp_path: Path, monkeypatch) -> None:
    """jack_midisine runs on the bench's jackd and the bench's MIDI client
    feeds its midi_in (JACK then runs it after that client, as mixgraph);
    feeding a client that has no midi_in is an error, not a silent peer at
    another place in the graph."""
    from conftest import launch_jackd, require, stop_jackd

    require(jackd.available() and shutil.which("jack_midisine") is not None,
            "jackd / jack_midisine not installed (Debian: jackd2)")
    try:
        import rtmidi  # noqa: F401
    except ImportError:
        require(False, "python-rtmidi is not installed")
    name = f"mg-benchsine-{os.getpid()}"
    server = launch_jackd(name, tmp_path / "jackd.log", ["--no-realtime"],
                          ["-d", "dummy", "-r", "48000", "-p", "64"])
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)  # MidiSender sets it; restored after
    try:
        with jackd.midisine(name) as pid:
            assert pid > 0
            midi = jackd.MidiSender(name, jackd.MIDISINE)  # connects to midisine:midi_in
            try:
                assert midi.out is not None, midi.reason
                assert midi.feeds(jackd.MIDISINE)
                with pytest.raises(RuntimeError, match="could not feed"):
                    midi.feed("nobody")
                for k in range(100):
                    midi.send(k)
                assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still running
            finally:
                midi.close()
    finally:
        stop_jackd(server)
