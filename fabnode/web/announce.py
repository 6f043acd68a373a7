"""The node on the LAN as `_octoprint._tcp` (mDNS / DNS-SD), so slicers that browse find it by name.

PrusaSlicer's and Cura's OctoPrint plugins browse for `_octoprint._tcp` and read the TXT records
`path` and `version`, as OctoPrint's own discovery plugin publishes them. zeroconf (pure Python,
its own thread) is imported only when announcing is on (`[web] announce`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from typing import Any

from fabnode import __version__

SERVICE = "_octoprint._tcp.local."
log = logging.getLogger("fabnode.web")


def addresses_for(host: str) -> list[str]:
    """The IPv4 addresses to announce for a listen host: every non-loopback one for a wildcard."""
    if host not in ("", "0.0.0.0", "::"):
        try:
            return [str(ipaddress.IPv4Address(socket.gethostbyname(host)))]
        except (OSError, ValueError):
            return []
    import ifaddr  # zeroconf's own dependency

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                found.append(ip.ip)
    return found


class Announcer:
    """Announces `<machine>._octoprint._tcp` on `port` from `start()` until `stop()`."""

    def __init__(self, machine: str, host: str, port: int, octoprint_version: str) -> None:
        self.machine = machine
        self.host = host
        self.port = port
        self.octoprint_version = octoprint_version
        self._zeroconf: Any = None
        self._info: Any = None
        self._thread: threading.Thread | None = None

    @property
    def service_name(self) -> str:
        """The DNS-SD instance name, e.g. `prusa-mk4._octoprint._tcp.local.`."""
        return f"{self.machine}.{SERVICE}"

    def start(self) -> None:
        """Register the service (in the background: probing the LAN takes a second or two)."""
        from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

        addresses = addresses_for(self.host)
        if not addresses:
            log.warning("[web] announce: no address for %r; give slicers the URL instead", self.host)
            return
        loopback = all(a.startswith("127.") for a in addresses)
        interfaces = addresses if loopback else InterfaceChoice.All  # loopback: tests, `run --simulate`
        self._zeroconf = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        self._info = ServiceInfo(
            SERVICE, self.service_name, port=self.port,
            addresses=[socket.inet_aton(a) for a in addresses],
            properties={"path": "/", "version": self.octoprint_version, "api": "0.1",
                        "model": "fabnode", "vendor": f"fabnode {__version__}"},
            server=f"{socket.gethostname().split('.')[0]}.local.",
        )  # fmt: skip
        zeroconf, info = self._zeroconf, self._info
        self._thread = threading.Thread(target=self._register, args=(zeroconf, info), name="fabnode-mdns",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _register(self, zeroconf: Any, info: Any) -> None:
        try:
            zeroconf.register_service(info, allow_name_change=True)
        except Exception as exc:  # the LAN's problem (a name clash, no multicast): the API still serves
            log.warning("[web] announce: %s: %s", self.service_name, exc)

    def stop(self) -> None:
        """Withdraw the service and close zeroconf's sockets."""
        if self._thread is not None:
            self._thread.join(5.0)
        if self._zeroconf is not None:
            try:
                self._zeroconf.unregister_all_services()
            finally:
                self._zeroconf.close()
        self._zeroconf = self._info = self._thread = None
