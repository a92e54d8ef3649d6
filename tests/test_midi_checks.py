"""The MIDI maps' one validator (server/midimap.py) and the loading paths around it:
/midi/map, /midi/load, /patch/load, the autosave at start-up, `mixgraph render`.

No JACK needed: the maps are kept (and their tables published) whatever MIDI is
available, so a real daemon on the null backend shows every path. What a map
does when a control moves is tests/test_midi.py's."""

from __future__ import annotations

import json
import time

import pytest

from mixgraph.clients import MixgraphFail

from daemon_util import Daemon


def _maps_file(d: Daemon, name: str, maps, raw: str | None = None) -> None:
    p = d.state_dir / "midi" / f"{name}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(raw if raw is not None else
                 json.dumps({"format": "mixgraph-midi", "version": 1, "maps": maps}))


def _fail(d: Daemon, address: str, *args) -> str:
    with pytest.raises(MixgraphFail) as e:
        d.call(address, *args)
    why = str(e.value)
    assert "internal error" not in why, (args, why)
    return why


@pytest.fixture
def d(tmp_path):
    daemon = Daemon(tmp_path / "state", "--backend", "null")
    daemon.call("/graph/add", "gain", "g")
    yield daemon
    daemon.stop()


def test_many_14_bit_maps_to_other_addresses_do_not_stall_the_control_thread(d):
    """Each publish built a 16384-entry table in Python for every 14-bit map to an
    address that is no parameter: 300 of them held the control thread for seconds
    at every map change. A generous bound, against the stall only."""
    _maps_file(d, "osc300", [{"address": "/cue/go", "kind": "nrpn", "channel": 1,
                              "number": i} for i in range(300)])
    d.call("/midi/load", "osc300")
    t0 = time.monotonic()
    for i in range(10):
        d.call("/midi/map", "/cue/go", "cc14", 2, i)
        d.status()  # answered after the publish the map caused
    assert time.monotonic() - t0 < 10.0
    assert d.status()["midi_maps"] == 310
