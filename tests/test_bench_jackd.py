"""bench/jackd.py's reading of jackd's log: the issue-15 figure compares late
counts of mixgraph and its peers, so every client's lines must be counted the
same way, inside the same window.

The log below is jackd 1.9.21's own output of a dummy-driver run (lines copied
from a bench run, in their order); the expected counts were made by hand from
it."""

from __future__ import annotations

import sys
from pathlib import Path

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
