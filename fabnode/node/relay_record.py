"""The relay wiring the daemon last drove, kept in its state dir for scripts/relay-off.py.

systemd runs relay-off.py after every stop. It reads the relay pin from the config, but the config may
have been edited (or broken) since the daemon read it: the pin that may still be powered is the one
the daemon set up. So the daemon records it before it touches the GPIO, and relay-off.py drives that
pin too (or instead, when the config cannot be read).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fabnode.node.durable_files import write_json

RELAY_RECORD_NAME = "relay-wiring.json"  # relay-off.py reads the same name
log = logging.getLogger(__name__)


def record_relay_wiring(state_dir: Path, backend: str, relay_pin: int, relay_active_low: bool) -> None:
    """Write {backend, relay_pin, relay_active_low} atomically; a failure is logged, never fatal."""
    path = state_dir / RELAY_RECORD_NAME
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # fsynced: power may go before the daemon stops, and relay-off.py must find the record whole
        write_json(path, {"backend": backend, "relay_pin": relay_pin, "relay_active_low": relay_active_low})
    except OSError as exc:  # a full disk must not keep the machine's node from starting
        log.warning("cannot record the relay wiring in %s (relay-off.py will use the config only): %s",
                    path, exc)  # fmt: skip
