"""Whole-state replies are paid for in control-thread time (attack3 A9).

/dump (and a /subscribe's first dump) answers every parameter of the graph: 18,601
messages for 200 eq8 nodes, about 0.6 s of the control thread on a loaded machine.
The rate limit counts messages, so a read-only browser viewer sending /dump in a loop
queued minutes of work: another client's /status waited 11 s. Now such a reply is
paid from the host's bucket of control-thread time for them (bursts of 0.6 s, 250 ms a
second after): while it is spent, /dump and /subscribe fail with the reason."""

from __future__ import annotations

from mixgraph.clients import Client
from mixgraph.clients.protocol import encode

from daemon_util import Daemon


def test_a_dump_loop_from_one_host_is_refused_past_its_time(tmp_path):
    d = Daemon(tmp_path / "state", "--backend", "null")
    c = Client("127.0.0.1", d.port, transport="tcp", timeout=30)
    try:
        for i in range(150):
            d.call("/graph/add", "eq8", f"e{i}")
        n = 100
        c.send_many([encode("/dump", [])] * n)
        done = failed = 0
        while done + failed < n:
            addr, args = c.receive(60)
            if addr == "/done" and args[:1] == ["/dump"]:
                assert args[1] >= 150 * 47  # every parameter, both forms and bypass
                done += 1
            elif addr == "/fail" and args[:1] == ["/dump"]:
                assert "too much whole-state work from this host" in args[-1]
                failed += 1
        # 100 dumps of 150 eq8 nodes (14,250 messages each) are far more than a 0.6 s
        # burst and 250 ms a second of work on any machine this runs on; every one
        # was answered before
        assert done >= 1 and failed >= 1, (done, failed)
        assert d.call("/node/e0/b1gain", 3.0) == ["/node/e0/b1gain", 3.0]  # others go on
    finally:
        c.close()
        d.stop()
