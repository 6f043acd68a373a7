#!/usr/bin/env python3
"""Drive the machine's relay pin to off: systemd runs this after fabnode stops (ExecStopPost=), however
it stopped (a crash, SIGKILL, the watchdog), so the machine never stays powered without its daemon.

usage: relay-off.py [CONFIG]        CONFIG defaults to $FABNODE_CONFIG, else /etc/fabnode/fabnode.toml

It reads only [gpio] backend, relay_pin and relay_active_low (the daemon's defaults: "sim", 17, false)
and uses only RPi.GPIO (rpi-lgpio provides it on a Pi 5), never the fabnode package: it works when the
installed package is what broke. The config may have changed since the daemon read it, so the wiring
the daemon last drove (relay-wiring.json in $FABNODE_STATE_DIR, else $STATE_DIRECTORY, else
/var/lib/fabnode) is driven off too where it differs, and alone when the config cannot be used. The
pin is left driven at its off level (no GPIO.cleanup(), which would let it float). Exit 0: the relay
is off, or there is nothing to drive (a simulated backend, not a Pi); exit 1: the config could not be
used (the recorded pin is driven off all the same) or a pin could not be driven (the message says
which file, key or pin).
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "/etc/fabnode/fabnode.toml"
DEFAULT_STATE_DIR = "/var/lib/fabnode"
RECORD_NAME = "relay-wiring.json"  # fabnode.node.relay_record.RELAY_RECORD_NAME
BCM_MIN, BCM_MAX = 2, 27  # the daemon's range for relay_pin (BCM 0 and 1 are the HAT EEPROM's)


def say(message: str) -> None:
    """One line on stdout (the journal, under the unit's name)."""
    print(f"fabnode relay-off: {message}", flush=True)


def relay_wiring(path: Path) -> tuple[str, int, bool]:
    """(backend, relay_pin, relay_active_low) from the config's [gpio]; ValueError naming file and key."""
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    gpio: Any = config.get("gpio", {})
    if not isinstance(gpio, dict):
        raise ValueError(f"{path}: [gpio] must be a table")
    return checked_wiring(path, "[gpio] ", gpio)


def checked_wiring(path: Path, where: str, table: dict[str, Any]) -> tuple[str, int, bool]:
    """The three values of a [gpio] table (or the daemon's record), each checked; ValueError naming it."""
    backend = table.get("backend", "sim")
    pin = table.get("relay_pin", 17)
    active_low = table.get("relay_active_low", False)
    if not isinstance(backend, str):
        raise ValueError(f"{path}: {where}backend must be a string, not {backend!r}")
    if isinstance(pin, bool) or not isinstance(pin, int) or not BCM_MIN <= pin <= BCM_MAX:
        raise ValueError(f"{path}: {where}relay_pin must be a BCM pin from {BCM_MIN} to {BCM_MAX}, "
                         f"not {pin!r}")
    if not isinstance(active_low, bool):
        raise ValueError(f"{path}: {where}relay_active_low must be true or false, not {active_low!r}")
    return backend, pin, active_low


def last_driven() -> tuple[Path, tuple[str, int, bool] | None]:
    """The wiring the daemon recorded before it drove the relay (None: no record); ValueError if unusable."""
    state = os.environ.get("FABNODE_STATE_DIR") or os.environ.get("STATE_DIRECTORY") or DEFAULT_STATE_DIR
    path = Path(state.split(":")[0]) / RECORD_NAME  # systemd joins several StateDirectory= with ':'
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return path, None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not an object")
    return path, checked_wiring(path, "", record)


def drive_off(pins: list[tuple[int, bool]]) -> int:
    """Drive each (pin, active_low) to its off level with RPi.GPIO; the exit status."""
    try:
        import RPi.GPIO as gpio  # RuntimeError off a Pi
    except (ImportError, RuntimeError) as exc:
        say(f"not on a Raspberry Pi with RPi.GPIO ({exc}): no relay pin to drive")
        return 0
    status = 0
    gpio.setwarnings(False)  # the daemon left the pin set up: expected
    gpio.setmode(gpio.BCM)
    for pin, active_low in pins:
        off = gpio.HIGH if active_low else gpio.LOW
        try:
            gpio.setup(pin, gpio.OUT, initial=off)
            gpio.output(pin, off)
        except (RuntimeError, ValueError, OSError) as exc:
            say(f"error: could not drive BCM {pin}: {exc}")
            status = 1
            continue
        polarity = "active-low" if active_low else "active-high"
        say(f"relay off: BCM {pin} driven {'high' if active_low else 'low'} ({polarity} relay input)")
    return status


def main(argv: list[str]) -> int:
    """Drive the relay off as the config at argv[1] wires it; the exit status as documented above."""
    if len(argv) > 2 or argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return 0 if argv[1:] in (["-h"], ["--help"]) else 1
    path = Path(argv[1] if len(argv) > 1 else os.environ.get("FABNODE_CONFIG") or DEFAULT_CONFIG)
    wirings: list[tuple[str, int, bool]] = []
    try:
        wirings.append(relay_wiring(path))
    except ValueError as exc:
        config_error: str | None = str(exc)
    else:
        config_error = None
    try:
        record_path, record = last_driven()
    except ValueError as exc:
        say(f"warning: {exc}: the daemon's record of its relay pin cannot be used")
        record_path, record = Path(), None
    if config_error is not None:
        if record is None:
            say(f"error: {config_error}; the relay pin was not driven")
            return 1
        say(f"error: {config_error}; driving the relay the daemon last drove ({record_path})")
    if record is not None and record not in wirings and (record[0] == "rpi" or not wirings):
        if wirings:
            say(f"{record_path}: the daemon drove BCM {record[1]} (the config now says BCM {wirings[0][1]}): "
                "driving both off")
        wirings.append(record)
    pins = [(pin, active_low) for backend, pin, active_low in wirings if backend == "rpi"]
    if not pins:
        source = path if config_error is None else record_path
        say(f"[gpio] backend is {wirings[0][0]!r} in {source}: no relay pin to drive")
        return 0 if config_error is None else 1
    status = drive_off(list(dict.fromkeys(pins)))
    return 1 if config_error is not None else status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
