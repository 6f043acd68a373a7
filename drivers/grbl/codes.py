"""What GRBL 1.1's numbered answers and status reports mean: error and alarm tables, `<...>` parsing.

Tables follow GRBL 1.1's documented codes (gnea/grbl doc/csv, v1.1h): `error:N` answers a line that
was not executed; `ALARM:N` locks the machine until `$X` or a reset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from drivers.events import StatusReport

ERROR_MEANINGS: Mapping[int, str] = {
    1: "G-code words consist of a letter and a value; the letter was not found",
    2: "missing G-code word value, or the number format is not valid",
    3: "GRBL '$' system command not recognised or not supported",
    4: "negative value received for an expected positive value",
    5: "homing cycle failure: homing is not enabled in the settings",
    6: "minimum step pulse time must be greater than 3 microseconds",
    7: "EEPROM read failed; affected EEPROM restored to default values",
    8: "GRBL '$' command only allowed while GRBL is Idle",
    9: "G-code commands are locked out during an alarm or a jog",
    10: "soft limits cannot be enabled without homing also enabled",
    11: "line too long (max characters per line exceeded); the line was not executed",
    12: "'$' setting value would exceed the maximum supported step rate",
    13: "safety door detected as opened; door state initiated",
    14: "build info or startup line longer than the EEPROM line limit; not stored",
    15: "jog target exceeds machine travel; jog ignored",
    16: "jog command has no '=' or contains forbidden G-code",
    17: "laser mode requires PWM output",
    20: "unsupported or invalid G-code command in the block",
    21: "more than one G-code command from the same modal group in the block",
    22: "feed rate has not been set or is undefined",
    23: "G-code command in the block requires an integer value",
    24: "more than one G-code command that requires axis words in the block",
    25: "repeated G-code word in the block",
    26: "no axis words in the block for a command or modal state that needs them",
    27: "line number value is invalid",
    28: "G-code command is missing a required value word",
    29: "G59.x work coordinate systems are not supported",
    30: "G53 only allowed with G0 and G1 motion modes",
    31: "axis words in the block when no command or modal state uses them",
    32: "G2/G3 arcs require at least one in-plane axis word",
    33: "motion command target is invalid",
    34: "arc radius value is invalid",
    35: "G2/G3 arcs require at least one in-plane offset word",
    36: "unused value words in the block",
    37: "G43.1 dynamic tool length offset not assigned to the tool length axis",
    38: "tool number greater than the maximum supported value",
}

ALARM_MEANINGS: Mapping[int, str] = {
    1: "hard limit triggered; machine position likely lost, re-homing recommended",
    2: "soft limit: motion target exceeds machine travel; position kept, alarm may be unlocked",
    3: "reset while in motion; machine position likely lost, re-homing recommended",
    4: "probe fail: probe not in the expected initial state before the probe cycle",
    5: "probe fail: probe did not contact the workpiece within the programmed travel",
    6: "homing fail: the active homing cycle was reset",
    7: "homing fail: safety door opened during the homing cycle",
    8: "homing fail: pull-off travel failed to clear the limit switch",
    9: "homing fail: limit switch not found within the search distance",
    10: "homing fail: second limit switch of a dual axis not found (self-squaring)",
}

E_ALARM_LOCK = 9  # error:9: G-code is locked out during an alarm or jog
# After these GRBL answers nothing (not even `?`) until a soft reset: hard and soft limits.
CRITICAL_ALARMS = frozenset({1, 2})


def alarm_advice(code: int) -> str:
    """What a technician does about ALARM:<code> (0: an alarm not seen, e.g. locked at start-up)."""
    unlock = "check the machine, then unlock with $X or home with $H"
    if code in CRITICAL_ALARMS:
        return f"GRBL answers nothing until a soft reset (Ctrl-X, byte 0x18); then {unlock}"
    return unlock


# Any `Grbl X.Y...` greeting (grblHAL says `GrblHAL 1.1f`): the firmware (re)started.
BANNER = re.compile(r"^Grbl\w*\s+\d+\.\d+")


def describe_error(line: str) -> tuple[int, str]:
    """The code of an `error:<code>` line and GRBL 1.1's meaning of it."""
    return describe_numbered(line, ERROR_MEANINGS, "unknown GRBL error code")


def describe_alarm(line: str) -> tuple[int, str]:
    """The code of an `ALARM:<code>` line and GRBL 1.1's meaning of it."""
    return describe_numbered(line, ALARM_MEANINGS, "unknown GRBL alarm code")


def describe_numbered(line: str, table: Mapping[int, str], unknown: str) -> tuple[int, str]:
    """Split `error:N` / `ALARM:N` into (N, meaning); old text forms give (0, their text)."""
    tail = line.partition(":")[2].strip()
    try:
        code = int(tail)
    except ValueError:
        return 0, tail or unknown
    return code, table.get(code, unknown)


def _floats(text: str | None) -> tuple[float, ...] | None:
    return None if text is None else tuple(float(v) for v in text.split(","))


def parse_status_report(line: str, wco: tuple[float, ...] | None) -> StatusReport:
    """Parse `<State|MPos:..|FS:..|Bf:..|...>`; `wco` (last WCO seen) fills in the missing MPos/WPos.

    Raises ValueError on a malformed report.
    """
    if not (line.startswith("<") and line.endswith(">")) or len(line) < 3:
        raise ValueError(f"not a status report: {line!r}")
    state, *parts = line[1:-1].split("|")
    fields: dict[str, str] = {}
    for part in parts:
        key, _, value = part.partition(":")
        fields[key] = value
    mpos, wpos = _floats(fields.get("MPos")), _floats(fields.get("WPos"))
    wco = _floats(fields.get("WCO")) or wco
    # GRBL sends one of MPos/WPos and WCO only now and then: WPos = MPos - WCO.
    if wco is not None and mpos is not None and wpos is None and len(wco) == len(mpos):
        wpos = tuple(round(m - o, 6) for m, o in zip(mpos, wco, strict=True))
    elif wco is not None and wpos is not None and mpos is None and len(wco) == len(wpos):
        mpos = tuple(round(w + o, 6) for w, o in zip(wpos, wco, strict=True))
    feed = spindle = None
    if "FS" in fields:
        feed, spindle = (float(v) for v in fields["FS"].split(",")[:2])
    elif "F" in fields:
        feed = float(fields["F"])
    planner_free = rx_free = None
    if "Bf" in fields:
        planner_free, rx_free = (int(v) for v in fields["Bf"].split(",")[:2])
    return StatusReport(state, mpos, wpos, feed, spindle, planner_free, rx_free, fields)
