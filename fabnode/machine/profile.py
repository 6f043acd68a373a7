"""What fabnode knows about one machine and its materials: limits for preflight, analysis and cost.

Plain frozen data; fabnode.config.settings builds these from the TOML config, tests and CLI flags build
them directly. Defaults describe a small Marlin printer (Prusa MINI class) and a GRBL diode laser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRINTER = "printer"
LASER = "laser"
MARLIN = "marlin"
GRBL = "grbl"

HEATERS_OFF = ("M104 S0", "M140 S0")
# What makes a machine safe at once, by firmware: end a heat wait and switch the heaters off, or the beam.
SAFE_NOW: dict[str, tuple[str, ...]] = {MARLIN: ("M108", *HEATERS_OFF), GRBL: ("M5",)}


@dataclass(frozen=True, slots=True)
class Material:
    """A filament (priced per kg) or a laser sheet material (priced per hour of beam time)."""

    name: str
    diameter_mm: float = 1.75
    density_g_cm3: float = 1.24  # PLA
    price_per_kg: float = 25.0
    price_per_laser_hour: float = 0.0
    # Laser settings a technician recorded for this material (calibrate laser-grid): power S, feed mm/min.
    laser_power: float | None = None
    laser_feed_mm_min: float | None = None


@dataclass(frozen=True, slots=True)
class MachineProfile:
    """Limits and defaults of one machine."""

    name: str = "printer"
    kind: str = PRINTER  # PRINTER or LASER
    firmware: str = MARLIN  # MARLIN or GRBL
    # Reachable volume in machine coordinates, mm. Printers often allow a purge line just off the bed.
    volume_min_mm: tuple[float, float, float] = (0.0, -4.0, 0.0)
    volume_max_mm: tuple[float, float, float] = (180.0, 180.0, 180.0)
    max_hotend_c: float = 280.0
    max_bed_c: float = 110.0
    # Used for the time estimate when the file sets none (M201/M203/M204/M205 override them).
    max_feedrate_mm_s: tuple[float, float, float, float] = (180.0, 180.0, 12.0, 80.0)  # X Y Z E
    max_accel_mm_s2: tuple[float, float, float, float] = (2500.0, 2500.0, 400.0, 5000.0)
    print_accel_mm_s2: float = 1250.0
    retract_accel_mm_s2: float = 1250.0
    travel_accel_mm_s2: float = 1250.0
    jerk_mm_s: tuple[float, float, float, float] = (8.0, 8.0, 2.0, 10.0)
    junction_deviation_mm: float | None = None  # set for firmware that uses JD instead of classic jerk
    # Commands the lab forbids in members' files, e.g. EEPROM writes and factory resets.
    forbidden_commands: frozenset[str] = field(default_factory=lambda: frozenset({"M500", "M502", "M997"}))
    # Marlin's MAX_CMD_SIZE is 96 (with N and checksum); GRBL's LINE_BUFFER_SIZE is 80.
    max_line_length: int = 96
    laser_max_power: float = 1000.0  # GRBL $30
    # Sent when a printer job is cancelled: heaters and fan off, motors released after a lift.
    safe_stop_gcode: tuple[str, ...] = ("M104 S0", "M140 S0", "M107", "G91", "G1 Z5 F600", "G90", "M84")
    material: Material = field(default_factory=lambda: Material("PLA"))
