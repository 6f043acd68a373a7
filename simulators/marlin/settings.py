"""The simulated printer's stored settings (EEPROM) and the texts Marlin prints about itself.

Formats follow Marlin 2.1's M503 report (`echo:  M92 X80.00 ...`), its M115 capability list and its
boot banner.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import astuple, dataclass, field

FIRMWARE_VERSION = "Marlin 2.1.2"
_UUID = "cede2a2f-41a2-4748-9b12-c55c62f367ff"


@dataclass
class Settings:
    """What M500 stores and M503 reports."""

    steps_per_mm: dict[str, float] = field(
        default_factory=lambda: {"X": 80.0, "Y": 80.0, "Z": 400.0, "E": 93.0}
    )
    max_feedrate: dict[str, float] = field(
        default_factory=lambda: {"X": 300.0, "Y": 300.0, "Z": 5.0, "E": 25.0}
    )
    max_accel: dict[str, float] = field(
        default_factory=lambda: {"X": 3000.0, "Y": 3000.0, "Z": 100.0, "E": 10000.0}
    )
    hotend_pid: tuple[float, float, float] = (22.20, 1.08, 114.00)
    bed_pid: tuple[float, float, float] = (10.00, 0.023, 305.40)
    probe_offset: dict[str, float] = field(default_factory=lambda: {"X": 10.0, "Y": 10.0, "Z": 0.0})

    def copy(self) -> Settings:
        """An independent copy (EEPROM image vs working settings)."""
        return copy.deepcopy(self)

    def crc(self) -> int:
        """A CRC of the stored image, shown by M500/M501 like Marlin's."""
        return zlib.crc32(repr(astuple(self)).encode()) & 0xFFFF


def _axes(values: dict[str, float], digits: int = 2) -> str:
    return " ".join(f"{axis}{value:.{digits}f}" for axis, value in values.items())


def m92_line(s: Settings) -> str:
    """The steps-per-unit line."""
    return f"echo:  M92 {_axes(s.steps_per_mm)}"


def m301_line(s: Settings) -> str:
    """The hotend PID line."""
    p, i, d = s.hotend_pid
    return f"echo:  M301 P{p:.2f} I{i:.2f} D{d:.2f}"


def m304_line(s: Settings) -> str:
    """The bed PID line."""
    p, i, d = s.bed_pid
    return f"echo:  M304 P{p:.2f} I{i:.2f} D{d:.2f}"


def m851_line(s: Settings) -> str:
    """The probe offset line."""
    return f"echo:  M851 {_axes(s.probe_offset)} ; (mm)"


def report_m503(s: Settings) -> list[str]:
    """Marlin 2.1's M503 report, the lines before its `ok`."""
    return [
        "echo:; Linear Units:",
        "echo:  G21 ; (mm)",
        "echo:; Temperature Units:",
        "echo:  M149 C ; Units in Celsius",
        "echo:; Steps per unit:",
        m92_line(s),
        "echo:; Max feedrates (units/s):",
        f"echo:  M203 {_axes(s.max_feedrate)}",
        "echo:; Max Acceleration (units/s2):",
        f"echo:  M201 {_axes(s.max_accel)}",
        "echo:; Hotend PID:",
        m301_line(s),
        "echo:; Bed PID:",
        m304_line(s),
        "echo:; Z-Probe Offset:",
        m851_line(s),
    ]


_CAPS = (
    ("SERIAL_XON_XOFF", 0),
    ("BINARY_FILE_TRANSFER", 0),
    ("EEPROM", 1),
    ("VOLUMETRIC", 1),
    ("AUTOREPORT_POS", 0),
    ("AUTOREPORT_TEMP", 1),
    ("PROGRESS", 0),
    ("PRINT_JOB", 1),
    ("AUTOLEVEL", 1),
    ("RUNOUT", 0),
    ("Z_PROBE", 1),
    ("LEVELING_DATA", 1),
    ("SOFTWARE_POWER", 0),
    ("TOGGLE_LIGHTS", 0),
    ("EMERGENCY_PARSER", 1),
    ("HOST_ACTION_COMMANDS", 1),
    ("PROMPT_SUPPORT", 0),
    ("SDCARD", 0),
    ("THERMAL_PROTECTION", 1),
    ("MOTION_MODES", 0),
    ("ARCS", 1),
)


def report_m115(advanced_ok: bool) -> list[str]:
    """M115's firmware line and capability list, the lines before its `ok`."""
    lines = [
        f"FIRMWARE_NAME:{FIRMWARE_VERSION} (Mar 21 2023 12:00:00) SOURCE_CODE_URL:github.com/MarlinFirmware/"
        f"Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:fabnode sim EXTRUDER_COUNT:1 UUID:{_UUID}"
    ]
    lines += [f"Cap:{name}:{value}" for name, value in _CAPS]
    lines.append(f"Cap:ADVANCED_OK:{int(advanced_ok)}")
    return lines


def boot_banner(stored: Settings | None) -> list[str]:
    """What a board prints after a reset: `start`, its version, and whether EEPROM settings loaded."""
    lines = [
        "start",
        f"echo:{FIRMWARE_VERSION}",
        "echo: Last Updated: 2023-03-21 | Author: (fabnode sim)",
        "echo: Compiled: Mar 21 2023",
        "echo: Free Memory: 4811  PlannerBufferBytes: 1152",
    ]
    if stored is None:
        lines.append("echo:Hardcoded Default Settings Loaded")
    else:
        lines.append(f"echo:V86 stored settings retrieved (636 bytes; crc {stored.crc()})")
    return lines
