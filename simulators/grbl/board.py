"""What the reports and `$` commands read and change of GRBL's firmware loop, as a Protocol.

`GrblCore` matches it; report.py and system.py depend on this description instead of on the core,
so the core can import them without an import cycle.
"""

from __future__ import annotations

from typing import Protocol

from simulators.grbl.gcode import GcodeParser, Persistent
from simulators.grbl.motion import Planner
from simulators.grbl.state import GrblConfig, GrblStats, RxBuffer


class Board(Protocol):
    """The firmware loop's state that a status report is built from."""

    config: GrblConfig
    stats: GrblStats
    settings: dict[int, float]
    persistent: Persistent
    planner: Planner
    gc: GcodeParser
    rx: RxBuffer
    out: bytearray
    build_info: str
    homing_left: float | None
    critical: bool
    sleeping: bool
    alarm: bool
    door: bool
    check_mode: bool
    spindle_ovr: int
