"""GRBL 1.1's `$$` settings answer, read for laser mode (`$32`) and full power (`$30`) (pure).

GRBL 1.1 answers `$$` with one `$<n>=<value>` line per setting (`$0=10` ... `$132=200.000`, no
comments since 1.1) and then `ok`; `$32` is laser mode as a boolean (gnea/grbl doc/markdown/settings.md,
"$32 - Laser mode, boolean": "When enabled, Grbl will move continuously through consecutive G1, G2, or G3
motion commands when programmed with a S spindle speed", and `$30` "Max spindle speed, RPM" is the S of
full PWM output). `$$` is refused with `error:8` while a cycle or hold runs (system.c blocks it:
"takes too long to print"), so the host asks right after GRBL's banner, with nothing else in flight.
Why `$32` matters for safety: a feed hold "does not disable the spindle or coolant. Only motion"
(doc/markdown/commands.md, `!`), and GRBL turns the laser off during a hold only in laser mode
(config.h DISABLE_LASER_DURING_HOLD: "automatically disable the laser during a feed hold by invoking a
spindle stop override"): with `$32=0` a held job keeps the beam on.
"""

from __future__ import annotations

import math
import re

from drivers.events import LaserMode

SETTINGS_QUERY = "$$"
_SETTING = re.compile(r"^\$(\d{1,3})=(\S*)$")


def parse_setting(line: str) -> tuple[int, str] | None:
    """`$32=1` -> (32, "1"); None for any other line."""
    m = _SETTING.match(line)
    return (int(m.group(1)), m.group(2)) if m else None


def laser_mode_event(settings: dict[int, str], answer: str) -> LaserMode:
    """What the `$$` answer (settings read, then `ok` or `error:N`) says of laser mode.

    Anything but a clean `$32=1` counts as off: an unknown mode must not let jobs run.
    """
    if answer != "ok":
        return LaserMode(False, f"$$ answered {answer}")
    raw = settings.get(32)
    if raw is None:
        return LaserMode(False, "no $32 in the $$ answer (GRBL before 1.1 has no laser mode)")
    return LaserMode(raw in ("1", "1.0"), f"$32={raw}", _power(settings.get(30)))


def _power(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def laser_mode_written(command: str) -> LaserMode | None:
    """A `$32=<n>` command GRBL accepted, as the laser mode it set; None for any other command.

    A technician who sets `$32=1` through the node causes no new greeting (GRBL does not reset), so the
    host learns the new mode from the accepted write itself.
    """
    setting = parse_setting(command.strip().replace(" ", ""))
    if setting is None or setting[0] != 32:
        return None
    return LaserMode(setting[1] == "1", f"$32={setting[1]}")
