"""`[web]`: where the HTTP server listens, how large an upload may be, what the status page shows."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from fabnode.config.reader import ConfigReader, Section

SHOW_MEMBER = ("none", "first-name", "full")
_PORT_MAX = 65_535


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The `[web]` section, checked; each default is written once, in `read_web_settings`."""

    enabled: bool
    host: str
    port: int  # 0 picks a free port (tests, `fabnode run --simulate`)
    max_upload_mb: int
    upload_expiry_h: float
    show_member: str  # none | first-name | full
    claim_window_min: float
    announce: bool  # advertise `_octoprint._tcp` on the LAN (zeroconf)

    @property
    def listen(self) -> str:
        """`host:port` as written in the config (IPv6 hosts in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def max_upload_bytes(self) -> int:
        """`max_upload_mb` in bytes: the largest G-code file an upload may carry."""
        return self.max_upload_mb * 1024 * 1024


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (`0.0.0.0:5000`, `[::]:5000`, `localhost:0`) as (host, port); ValueError says why."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} must be host:port, e.g. 0.0.0.0:5000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)  # ValueError names the address
    elif ":" in host:
        raise ValueError(f"{text!r}: an IPv6 host goes in brackets, e.g. [::]:5000")
    if not port_text.isdigit() or int(port_text) > _PORT_MAX:
        raise ValueError(f"{text!r}: the port must be a whole number from 0 to {_PORT_MAX}")
    if any(ord(c) < 33 or c in "/?#@" for c in host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    return host, int(port_text)


def read_web_settings(reader: ConfigReader) -> WebSettings:
    """Read `[web]` from the config with bounds; a bad value names the file, section and option."""
    return _web(reader.section("web"))


def _web(s: Section) -> WebSettings:
    listen = s.get_str("listen", "0.0.0.0:5000")  # OctoPrint's own port, which slicers suggest
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise s.error("listen", str(exc)) from None
    return WebSettings(
        enabled=s.get_bool("enabled", True),
        host=host,
        port=port,
        max_upload_mb=s.get_int("max_upload_mb", 200, minval=1, maxval=100_000),
        upload_expiry_h=s.get_float("upload_expiry_h", 24.0, minval=0.1, maxval=24.0 * 365),
        show_member=s.get_str("show_member", "first-name", choices=SHOW_MEMBER),
        claim_window_min=s.get_float("claim_window_min", 15.0, minval=0.5, maxval=24.0 * 60),
        announce=s.get_bool("announce", True),
    )
