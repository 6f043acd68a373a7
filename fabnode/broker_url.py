"""The one reader of broker URLs (`mqtt://host[:port]`, `mqtts://host[:port]`) for every part of fabnode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


class BrokerUrlError(ValueError):
    """A broker URL that is not `mqtt://host[:port]` or `mqtts://host[:port]`."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """A broker URL taken apart."""

    host: str
    port: int
    tls: bool


def parse_broker_url(url: str, error: Callable[[str], Exception] = BrokerUrlError) -> BrokerAddress:
    """Take a broker URL apart (ports default to 1883, or 8883 for mqtts); raise `error(message)` if bad."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise error(f"{url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise error(f"{url!r} must look like mqtt://host[:port] or mqtts://host[:port]")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls)
