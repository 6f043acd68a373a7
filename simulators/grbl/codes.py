"""GRBL 1.1h's fixed texts: banner, messages, error and alarm codes, `$` settings and their defaults.

Written from the gnea/grbl wiki ("Grbl v1.1 Interface", "Grbl v1.1 Commands", the error and alarm
code tables); nothing here is shared with the host driver.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "1.1h"
BUILD_DATE = "20190825"
BANNER = f"\r\nGrbl {VERSION} ['$' for help]\r\n"
HELP = "[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]"

MSG_RESET_TO_CONTINUE = "[MSG:Reset to continue]"
MSG_UNLOCK = "[MSG:'$H'|'$X' to unlock]"
MSG_UNLOCKED = "[MSG:Caution: Unlocked]"
MSG_ENABLED = "[MSG:Enabled]"
MSG_DISABLED = "[MSG:Disabled]"
MSG_PGM_END = "[MSG:Pgm End]"
MSG_RESTORING = "[MSG:Restoring defaults]"
MSG_SLEEPING = "[MSG:Sleeping]"

# error:N (GRBL 1.1 numbering)
E_EXPECTED_COMMAND_LETTER = 1
E_BAD_NUMBER_FORMAT = 2
E_INVALID_STATEMENT = 3
E_NEGATIVE_VALUE = 4
E_SETTING_DISABLED = 5
E_SETTING_STEP_PULSE_MIN = 6
E_IDLE_ERROR = 8
E_SYSTEM_GC_LOCK = 9
E_SOFT_LIMIT_ERROR = 10
E_OVERFLOW = 11
E_INVALID_JOG_COMMAND = 16
E_UNSUPPORTED_COMMAND = 20
E_MODAL_GROUP_VIOLATION = 21
E_UNDEFINED_FEED_RATE = 22
E_COMMAND_VALUE_NOT_INTEGER = 23
E_AXIS_COMMAND_CONFLICT = 24
E_WORD_REPEATED = 25
E_NO_AXIS_WORDS = 26
E_INVALID_LINE_NUMBER = 27
E_VALUE_WORD_MISSING = 28
E_UNSUPPORTED_COORD_SYS = 29
E_G53_INVALID_MOTION_MODE = 30
E_AXIS_WORDS_EXIST = 31
E_NO_AXIS_WORDS_IN_PLANE = 32
E_INVALID_TARGET = 33
E_ARC_RADIUS_ERROR = 34
E_NO_OFFSETS_IN_PLANE = 35
E_UNUSED_WORDS = 36
E_MAX_VALUE_EXCEEDED = 38

ERRORS: dict[int, str] = {
    1: "Expected command letter",
    2: "Bad number format",
    3: "Invalid statement",
    4: "Value < 0",
    5: "Setting disabled",
    6: "Value < 3 usec",
    7: "EEPROM read fail. Using defaults",
    8: "Not idle",
    9: "G-code lock",
    10: "Homing not enabled",
    11: "Line overflow",
    12: "Step rate > 30kHz",
    13: "Check Door",
    14: "Line length exceeded",
    15: "Travel exceeded",
    16: "Invalid jog command",
    17: "Setting disabled",
    20: "Unsupported command",
    21: "Modal group violation",
    22: "Undefined feed rate",
    23: "Command value not integer",
    24: "Axis command conflict",
    25: "Word repeated",
    26: "No axis words",
    27: "Invalid line number",
    28: "Value word missing",
    29: "Unsupported coordinate system",
    30: "G53 invalid motion mode",
    31: "Axis words exist",
    32: "No axis words in plane",
    33: "Invalid target",
    34: "Arc radius error",
    35: "No offsets in plane",
    36: "Unused words",
    37: "G43.1 dynamic tool length offset axis",
    38: "Tool number greater than max supported value",
}

# ALARM:N
A_HARD_LIMIT = 1
A_SOFT_LIMIT = 2
A_ABORT_CYCLE = 3
A_HOMING_FAIL_RESET = 6

ALARMS: dict[int, str] = {
    1: "Hard limit",
    2: "Soft limit",
    3: "Abort during cycle",
    4: "Probe fail (initial state)",
    5: "Probe fail (no contact)",
    6: "Homing fail (reset during homing)",
    7: "Homing fail (safety door opened)",
    8: "Homing fail (pull-off failed to clear limit switch)",
    9: "Homing fail (limit switch not found)",
}
# Hard and soft limits halt everything until a reset ("[MSG:Reset to continue]").
CRITICAL_ALARMS = frozenset({1, 2})
# Alarms that GRBL raises together with a reset of its own (mc_reset): the banner follows them.
RESETTING_ALARMS = frozenset({3, 6, 7, 8, 9})


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One `$N` setting: how `$$` prints it and what it accepts."""

    number: int
    default: float
    is_float: bool  # printed with 3 decimals (RPM values with 0), else as an integer


def _axis(base: int, x: float, y: float, z: float) -> list[SettingSpec]:
    return [SettingSpec(base, x, True), SettingSpec(base + 1, y, True), SettingSpec(base + 2, z, True)]


# Stock 1.1h defaults except: $10=3 (Bf: shown), $22=1 (homing on, so `$H` works), $32 from the
# simulator's laser_mode, and faster axes (a laser gantry, not a desktop mill).
SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(0, 10, False),
    SettingSpec(1, 25, False),
    SettingSpec(2, 0, False),
    SettingSpec(3, 0, False),
    SettingSpec(4, 0, False),
    SettingSpec(5, 0, False),
    SettingSpec(6, 0, False),
    SettingSpec(10, 3, False),
    SettingSpec(11, 0.010, True),
    SettingSpec(12, 0.002, True),
    SettingSpec(13, 0, False),
    SettingSpec(20, 0, False),
    SettingSpec(21, 0, False),
    SettingSpec(22, 1, False),
    SettingSpec(23, 0, False),
    SettingSpec(24, 25.0, True),
    SettingSpec(25, 500.0, True),
    SettingSpec(26, 250, False),
    SettingSpec(27, 1.0, True),
    SettingSpec(30, 1000, True),
    SettingSpec(31, 0, True),
    SettingSpec(32, 1, False),
    *_axis(100, 80.0, 80.0, 250.0),
    *_axis(110, 6000.0, 6000.0, 1000.0),
    *_axis(120, 500.0, 500.0, 100.0),
    *_axis(130, 400.0, 400.0, 50.0),
)
SETTING_SPECS: dict[int, SettingSpec] = {s.number: s for s in SETTINGS}
RPM_SETTINGS = frozenset({30, 31})
BOOLEAN_SETTINGS = frozenset({4, 5, 6, 13, 20, 21, 22, 32})


def default_settings(laser_mode: bool) -> dict[int, float]:
    """A fresh settings table (what `$RST=$` restores)."""
    values = {s.number: float(s.default) for s in SETTINGS}
    values[32] = 1.0 if laser_mode else 0.0
    return values


def format_setting(number: int, value: float) -> str:
    """One `$$` line as GRBL prints it (`$11=0.010`, `$30=1000`, `$10=3`)."""
    spec = SETTING_SPECS[number]
    if not spec.is_float:
        return f"${number}={int(value)}"
    if number in RPM_SETTINGS:
        return f"${number}={value:.0f}"
    return f"${number}={value:.3f}"


def check_setting(number: int, value: float, settings: dict[int, float]) -> int:
    """0 if `$number=value` may be stored, else GRBL's error code for it."""
    if number not in SETTING_SPECS:
        return E_INVALID_STATEMENT
    if value < 0:
        return E_NEGATIVE_VALUE
    if number == 0 and value < 3:
        return E_SETTING_STEP_PULSE_MIN
    if number == 20 and value and not settings[22]:
        return E_SOFT_LIMIT_ERROR
    return 0


def stored_value(number: int, value: float) -> float:
    """What GRBL keeps of a setting value: integers truncated, booleans as 0/1."""
    if number in BOOLEAN_SETTINGS:
        return 1.0 if int(value) else 0.0
    if not SETTING_SPECS[number].is_float:
        return float(int(value))
    return value
