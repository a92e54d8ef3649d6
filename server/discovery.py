"""Zeroconf (mDNS/DNS-SD) discovery: `mixgraph serve --zeroconf` advertises the
OSC port as `_osc._udp` and `_osc._tcp`, so TouchOSC, Open Stage Control and
other browsers list the server by name.

Uses the `zeroconf` package (optional: `pip install mixgraph[zeroconf]`).
The service name is "mixgraph on <hostname>" (made unique by zeroconf when two
servers share a network); TXT records carry the version and the transport.

The addresses advertised follow the listening address: a specific address is
advertised as it is; 0.0.0.0 advertises every IPv4 address of the machine;
the default loopback (127.0.0.1) advertises loopback on the loopback
interface only (useful for local tools and tests; remote controllers need
`--host 0.0.0.0` or `--listen`)."""

from __future__ import annotations

import logging
import socket
import threading

from . import __version__

log = logging.getLogger("mixgraph.discovery")

SERVICE_TYPES = ("_osc._udp.local.", "_osc._tcp.local.")


def _addresses(host: str) -> list[str]:
    if host in ("0.0.0.0", ""):
        try:
            import ifaddr

            out = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips
                   if isinstance(ip.ip, str) and not ip.ip.startswith("127.")]
        except Exception:  # pragma: no cover - ifaddr comes with zeroconf
            out = []
        return out or ["127.0.0.1"]
    return [socket.gethostbyname(host)]


class Advertiser:
    """Registered services; close() withdraws them (goodbye packets)."""

    def __init__(self, port: int, host: str = "127.0.0.1", tcp_port: int | None = None,
                 name: str | None = None) -> None:
        from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

        self.port = port
        self.addresses = _addresses(host)
        loopback = all(a.startswith("127.") for a in self.addresses)
        interfaces = ["127.0.0.1"] if loopback else (
            self.addresses if host not in ("0.0.0.0", "") else InterfaceChoice.All)
        self.zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        base = name or f"mixgraph on {socket.gethostname().split('.')[0]}"
        self.infos = []
        services = [(SERVICE_TYPES[0], port)]
        if tcp_port:
            services.append((SERVICE_TYPES[1], tcp_port))
        types = [t for t, _ in services]
        try:
            for stype, sport in services:
                transport = stype.split(".")[1][1:]
                info = ServiceInfo(
                    stype, f"{base}.{stype}", port=sport,
                    parsed_addresses=self.addresses,
                    properties={"name": "mixgraph", "version": __version__,
                                "transport": transport},
                    server=f"{socket.gethostname().split('.')[0]}.local.",
                )
                self.zc.register_service(info, allow_name_change=True)
                self.infos.append(info)
        except Exception:
            self.close()
            raise
        log.info("zeroconf: advertising %s on %s port %d", ", ".join(types),
                 ", ".join(self.addresses), port)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.infos]

    def close(self) -> None:
        try:
            for info in self.infos:
                self.zc.unregister_service(info)
        finally:
            self.infos = []
            self.zc.close()


class Background:
    """Advertising started on a thread: mDNS probing takes a second or two, and the
    server must not wait for it. close() withdraws the services."""

    def __init__(self, port: int, host: str, tcp_port: int | None) -> None:
        self.advertiser: Advertiser | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port, host, tcp_port),
                                        name="mixgraph-zeroconf", daemon=True)
        self._thread.start()

    def _run(self, port: int, host: str, tcp_port: int | None) -> None:
        try:
            adv = Advertiser(port, host, tcp_port)
        except ImportError:
            log.warning("--zeroconf needs the zeroconf package: pip install 'mixgraph[zeroconf]'")
            return
        except Exception as e:  # no multicast, no interface: the server runs on without it
            log.warning("zeroconf advertising failed: %s", e)
            return
        if self._closed.is_set():  # closed while probing
            adv.close()
            return
        self.advertiser = adv

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._thread.join(timeout)
        if self.advertiser is not None:
            self.advertiser.close()
            self.advertiser = None


def advertise(port: int, host: str = "127.0.0.1", tcp_port: int | None = None) -> Background:
    """Advertise UDP `port` (and TCP `tcp_port` when given) in the background;
    failures are logged, never raised.

    The daemon's hook (server/daemon.py): in Daemon.start(), after the control
    thread starts,

        if self.opts.zeroconf:
            tcp = getattr(self.server, "tcp_address", None)
            self.zeroconf = advertise(self.server.address[1], self.opts.host,
                                      tcp_port=tcp[1] if tcp else None)

    and first thing in Daemon.stop(): `if getattr(self, "zeroconf", None): self.zeroconf.close()`
    (plus `zeroconf: bool = False` in ServeOptions and `--zeroconf` on `serve`)."""
    return Background(port, host, tcp_port)
