"""Zeroconf discovery: the advertised _osc._udp and _osc._tcp services are found
by zeroconf's own browser on the loopback interface, with the right port and
address, and withdrawn on close. Skips when zeroconf is not installed or the
loopback interface carries no multicast (some containers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

zeroconf = pytest.importorskip("zeroconf", reason="zeroconf is an optional dependency")

from mixgraph.server.discovery import SERVICE_TYPES, Advertiser  # noqa: E402

from daemon_util import Daemon, free_udp_port  # noqa: E402


def _browser():
    try:
        return zeroconf.Zeroconf(interfaces=["127.0.0.1"],
                                 ip_version=zeroconf.IPVersion.V4Only)
    except OSError as e:
        pytest.skip(f"no multicast on the loopback interface here: {e}")


def _find(zc, name: str, port: int) -> dict:
    found = {}
    for stype in SERVICE_TYPES:
        info = zc.get_service_info(stype, f"{name}.{stype}", timeout=3000)
        if info is not None:
            found[stype] = info
    return found


def test_advertise_found_by_browser():
    port = free_udp_port()
    name = f"mixgraph test {os.getpid()}"
    try:
        adv = Advertiser(port, "127.0.0.1", tcp_port=port, name=name)
    except OSError as e:
        pytest.skip(f"cannot use multicast on the loopback interface here: {e}")
    zc = _browser()
    try:
        found = _find(zc, name, port)
        if not found:
            pytest.skip("mDNS queries get no answer on loopback here (multicast unavailable)")
        assert set(found) == set(SERVICE_TYPES)
        for stype, info in found.items():
            assert info.port == port
            assert info.parsed_addresses() == ["127.0.0.1"]
            assert info.properties[b"transport"] == stype.split(".")[1][1:].encode()
        # a browser lists both services
        seen: set[str] = set()

        class Listener:
            def add_service(self, zc_, type_, name_):
                seen.add(name_)

            def update_service(self, *a):
                pass

            def remove_service(self, zc_, type_, name_):
                seen.discard(name_)

        b = zeroconf.ServiceBrowser(zc, list(SERVICE_TYPES), Listener())
        deadline = time.monotonic() + 30
        want = {f"{name}.{t}" for t in SERVICE_TYPES}
        while not want <= seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert want <= seen
        adv.close()
        adv = None
        deadline = time.monotonic() + 5  # goodbye packets withdraw them
        while want & seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not want & seen
        b.cancel()
    finally:
        if adv is not None:
            adv.close()
        zc.close()


def test_serve_zeroconf_flag(tmp_path):
    help_ = subprocess.run([sys.executable, "-m", "mixgraph.server.cli", "serve", "--help"],
                           capture_output=True, text=True, timeout=60).stdout
    if "--zeroconf" not in help_:
        pytest.skip("`mixgraph serve` has no --zeroconf yet (the daemon hook is the lead's merge)")
    d = Daemon(tmp_path / "state", "--backend", "null", "--zeroconf")
    zc = _browser()
    try:
        seen: set[str] = set()

        class Listener:
            def add_service(self, zc_, type_, name_):
                seen.add(name_)

            def update_service(self, *a):
                pass

            def remove_service(self, *a):
                pass

        b = zeroconf.ServiceBrowser(zc, list(SERVICE_TYPES), Listener())
        ours: dict[str, object] = {}
        deadline = time.monotonic() + 30
        while len(ours) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            for n in list(seen):
                stype = n[n.index("._osc.") + 1:]
                info = zc.get_service_info(stype, n, timeout=1000)
                if info is not None and info.port == d.port:
                    ours[stype] = info
        b.cancel()
        if not ours:
            pytest.skip("no answer from the daemon's advertisement (multicast unavailable?)")
        # _osc._tcp too when the server has TCP (the OSC-surface server: on the same port)
        assert "_osc._udp.local." in ours
        assert all(i.parsed_addresses() == ["127.0.0.1"] for i in ours.values())
    finally:
        zc.close()
        d.stop()
