#!/usr/bin/env python3
"""Drive the machine's relay pin to off: systemd runs this after fabnode stops (ExecStopPost=), however
it stopped (a crash, SIGKILL, the watchdog), so the machine never stays powered without its daemon.

usage: relay-off.py [CONFIG]        CONFIG defaults to $FABNODE_CONFIG, else /etc/fabnode/fabnode.toml

It reads only [gpio] backend, relay_pin and relay_active_low (the daemon's defaults: "sim", 17, false)
and uses only RPi.GPIO (rpi-lgpio provides it on a Pi 5), never the fabnode package: it works when the
installed package is what broke. The pin is left driven at its off level (no GPIO.cleanup(), which would
let it float). Exit 0: the relay is off, or there is nothing to drive (a simulated backend, not a Pi);
exit 1: the config or the pin could not be used (the message says which file, key or pin).
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "/etc/fabnode/fabnode.toml"
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
    backend = gpio.get("backend", "sim")
    pin = gpio.get("relay_pin", 17)
    active_low = gpio.get("relay_active_low", False)
    if not isinstance(backend, str):
        raise ValueError(f"{path}: [gpio] backend must be a string, not {backend!r}")
    if isinstance(pin, bool) or not isinstance(pin, int) or not BCM_MIN <= pin <= BCM_MAX:
        raise ValueError(f"{path}: [gpio] relay_pin must be a BCM pin from {BCM_MIN} to {BCM_MAX}, "
                         f"not {pin!r}")
    if not isinstance(active_low, bool):
        raise ValueError(f"{path}: [gpio] relay_active_low must be true or false, not {active_low!r}")
    return backend, pin, active_low


def main(argv: list[str]) -> int:
    """Drive the relay off as the config at argv[1] wires it; the exit status as documented above."""
    if len(argv) > 2 or argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return 0 if argv[1:] in (["-h"], ["--help"]) else 1
    path = Path(argv[1] if len(argv) > 1 else os.environ.get("FABNODE_CONFIG") or DEFAULT_CONFIG)
    try:
        backend, pin, active_low = relay_wiring(path)
    except ValueError as exc:
        say(f"error: {exc}; the relay pin was not driven")
        return 1
    if backend != "rpi":
        say(f"[gpio] backend is {backend!r} in {path}: no relay pin to drive")
        return 0
    try:
        import RPi.GPIO as gpio  # RuntimeError off a Pi
    except (ImportError, RuntimeError) as exc:
        say(f"not on a Raspberry Pi with RPi.GPIO ({exc}): no relay pin to drive")
        return 0
    off = gpio.HIGH if active_low else gpio.LOW
    try:
        gpio.setwarnings(False)  # the daemon left the pin set up: expected
        gpio.setmode(gpio.BCM)
        gpio.setup(pin, gpio.OUT, initial=off)
        gpio.output(pin, off)
    except (RuntimeError, ValueError, OSError) as exc:
        say(f"error: could not drive BCM {pin}: {exc}")
        return 1
    level = "high" if active_low else "low"
    say(f"relay off: BCM {pin} driven {level} ({'active-low' if active_low else 'active-high'} relay input)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
