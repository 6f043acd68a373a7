"""The G-code handlers of the simulated Marlin (mixed into MarlinFirmware).

A handler takes the command text and returns None (say the usual `ok`), a string (say that instead
of `ok`, as M105 does), or a generator that blocks the firmware: it yields the monotonic time to be
resumed at and re-checks its condition each time it runs (the firmware sets `self.now` first).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from simulators.marlin import settings as ms
from simulators.marlin.settings import Settings
from simulators.marlin.thermal import TEMP_RESIDENCY_S, Heater, autotune_result, report

if TYPE_CHECKING:
    import random

    from simulators.marlin.lines import LineChecker
    from simulators.marlin.options import MarlinConfig
    from simulators.marlin.planner import Planner

Blocking = Generator[float, None, str | None]
Handler = Callable[[str], "str | Blocking | None"]

_CODE = re.compile(r"^([GMT])(\d+(?:\.\d+)?)")
_PARAM = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))?")
_STEP_S = 0.05  # how often a waiting handler looks again (wall time)

# Commands this build knows and simply acknowledges (their effect is not simulated).
_SILENT = (
    "G10", "G11", "G20", "G21", "M17", "M18", "M73", "M75", "M76", "M77", "M84", "M106", "M107", "M108",
    "M117", "M149", "M204", "M205", "M206", "M211", "M220", "M221", "M302", "M410", "M420", "M900", "T0",
)  # fmt: skip

_TABLE: dict[str, str] = {
    **{code: "_nothing" for code in _SILENT},
    "G0": "_g_move", "G1": "_g_move", "G2": "_g_arc", "G3": "_g_arc", "G4": "_g4", "G28": "_g28",
    "G29": "_g29", "G90": "_g90", "G91": "_g91", "G92": "_g92", "M82": "_m82", "M83": "_m83",
    "M92": "_m92", "M104": "_m104", "M105": "_m105", "M109": "_m109", "M110": "_m110", "M112": "_m112",
    "M114": "_m114", "M115": "_m115", "M118": "_m118", "M140": "_m140", "M155": "_m155", "M190": "_m190",
    "M201": "_m201", "M203": "_m203", "M301": "_m301", "M303": "_m303", "M304": "_m304",
    "M400": "_m400", "M500": "_m500", "M501": "_m501", "M502": "_m502", "M503": "_m503", "M851": "_m851",
}  # fmt: skip


def command_code(command: str) -> str:
    """`G1`, `M862.3`, `T0`...; empty if the line does not start with a command letter and number."""
    match = _CODE.match(command)
    return f"{match.group(1)}{match.group(2)}" if match else ""


def params(command: str) -> dict[str, float | None]:
    """The letter parameters after the command code (`G1X10 Y2.5 F3000` works too)."""
    code = command_code(command)
    values: dict[str, float | None] = {}
    for letter, number in _PARAM.findall(command[len(code) :].upper()):
        values[letter] = float(number) if number else None
    return values


class CommandsMixin:
    """G-code handlers; MarlinFirmware provides the state they use."""

    if TYPE_CHECKING:
        cfg: MarlinConfig
        now: float
        rng: random.Random
        planner: Planner
        checker: LineChecker
        hotend: Heater
        bed: Heater
        settings: Settings
        stored: Settings | None
        autoreport_s: float
        next_autoreport: float
        wait_for_heatup: bool

        def say(self, *lines: str) -> None: ...

        def kill(self, reason: str = "") -> None: ...

    def init_motion(self) -> None:
        """Positions and modes after a reset."""
        self.pos = {"X": 0.0, "Y": 0.0, "Z": 0.0, "E": 0.0}
        self.absolute = True
        self.e_relative = False
        self.feed_mm_min = 1500.0

    def handler_for(self, command: str) -> Handler | None:
        """The handler of a known command, None for one this build does not know."""
        name = _TABLE.get(command_code(command))
        return getattr(self, name) if name else None

    def temperature_report(self) -> str:
        """`T:.. /.. B:.. /.. @:.. B@:..`."""
        return report(self.hotend, self.bed)

    # ---- blocking helpers -------------------------------------------------------------------------

    def _sync(self) -> Blocking:
        """Wait for the planner to empty (planner.synchronize())."""
        while self.planner.moves_free(self.now) < self.planner.capacity:
            yield self.planner.idle_at(self.now)
        return None

    def _dwell(self, physical_s: float) -> Blocking:
        end = self.now + physical_s * self.cfg.time_scale
        while self.now < end:
            yield end
        return None

    def _plan(self, distance: float) -> Blocking | None:
        """Put one move into the planner, blocking while it is full. Zero-length moves are dropped."""
        speed = min(self.feed_mm_min / 60.0, self.settings.max_feedrate["X"])
        duration = distance / speed * self.cfg.time_scale if speed > 0 else 0.0
        if distance <= 0 or duration <= 0:
            return None
        if self.planner.moves_free(self.now) > 0:
            self.planner.add(self.now, duration)
            return None
        return self._plan_when_free(duration)

    def _plan_when_free(self, duration: float) -> Blocking:
        while self.planner.moves_free(self.now) <= 0:
            yield self.planner.next_free_at()
        self.planner.add(self.now, duration)
        return None

    def _wait_heater(self, heater: Heater, target: float, residency_s: float) -> Blocking:
        """M109/M190's loop: a temperature line each temp_interval_s until the heater settles or M108."""
        self.wait_for_heatup = True
        next_report, settled_since = self.now, None
        while self.wait_for_heatup:
            if self.now >= next_report:
                left = "?" if settled_since is None else str(int(residency_s - (self.now - settled_since)))
                self.say(f" {self.temperature_report()} W:{left}")
                next_report = self.now + self.cfg.temp_interval_s
            if not heater.reached(target):
                settled_since = None
            else:
                settled_since = self.now if settled_since is None else settled_since
                if self.now - settled_since >= residency_s * self.cfg.time_scale:
                    break
            yield min(next_report, self.now + _STEP_S)
        self.wait_for_heatup = False
        return None

    # ---- motion -------------------------------------------------------------------------------------

    def _move_to(self, p: dict[str, float | None]) -> float:
        """Update the position from G0/G1 parameters; the move's length (E alone if no XYZ)."""
        old = dict(self.pos)
        for axis in "XYZE":
            value = p.get(axis)
            if value is None:
                continue
            relative = not self.absolute or (axis == "E" and self.e_relative)
            self.pos[axis] = old[axis] + value if relative else value
        xyz = math.dist([old[a] for a in "XYZ"], [self.pos[a] for a in "XYZ"])
        return xyz if xyz > 0 else abs(self.pos["E"] - old["E"])

    def _g_move(self, command: str) -> Blocking | None:
        p = params(command)
        if p.get("F"):
            self.feed_mm_min = float(p["F"] or 0)
        return self._plan(self._move_to(p))

    def _g_arc(self, command: str) -> Blocking | None:
        p = params(command)
        if p.get("F"):
            self.feed_mm_min = float(p["F"] or 0)
        radius = math.hypot(p.get("I") or 0.0, p.get("J") or 0.0) or (p.get("R") or 0.0)
        chord = self._move_to(p)
        return self._plan(max(chord, math.pi * radius / 2))

    def _g4(self, command: str) -> Blocking:
        p = params(command)
        seconds = (p.get("S") or 0.0) + (p.get("P") or 0.0) / 1000.0
        yield from self._sync()
        yield from self._dwell(seconds)
        return None

    def _g28(self, command: str) -> Blocking:
        yield from self._sync()
        yield from self._dwell(4.0)
        axes = [a for a in "XYZ" if a in params(command)] or list("XYZ")
        for axis in axes:
            self.pos[axis] = 0.0
        return None

    def _g29(self, command: str) -> Blocking:
        yield from self._sync()
        for y in (10.0, 110.0, 210.0):
            for x in (10.0, 110.0, 210.0):
                yield from self._dwell(1.5)
                self.say(f"Bed X: {x:.3f} Y: {y:.3f} Z: {self.rng.uniform(-0.15, 0.15):.3f}")
        return None

    def _g90(self, command: str) -> None:
        self.absolute = True

    def _g91(self, command: str) -> None:
        self.absolute = False

    def _g92(self, command: str) -> None:
        for axis, value in params(command).items():
            if axis in self.pos:
                self.pos[axis] = value or 0.0

    def _m82(self, command: str) -> None:
        self.e_relative = False

    def _m83(self, command: str) -> None:
        self.e_relative = True

    def _m400(self, command: str) -> Blocking:
        return self._sync()

    def _nothing(self, command: str) -> None:
        return None

    # ---- temperatures -------------------------------------------------------------------------------

    def _m104(self, command: str) -> None:
        self.hotend.target = params(command).get("S") or 0.0

    def _m140(self, command: str) -> None:
        self.bed.target = params(command).get("S") or 0.0

    def _m109(self, command: str) -> Blocking | None:
        return self._heat_and_wait(self.hotend, command)

    def _m190(self, command: str) -> Blocking | None:
        return self._heat_and_wait(self.bed, command)

    def _heat_and_wait(self, heater: Heater, command: str) -> Blocking | None:
        """S: set and wait while heating; R: set and wait either way."""
        p = params(command)
        if p.get("S") is not None:
            target, both_ways = float(p["S"] or 0), False
        elif p.get("R") is not None:
            target, both_ways = float(p["R"] or 0), True
        else:
            return None
        heater.target = target
        if self.cfg.time_scale <= 0:
            heater.settle()
        if target <= 0 or (not both_ways and heater.temp >= target):
            return None
        return self._wait_heater(heater, target, TEMP_RESIDENCY_S if not both_ways else 0.0)

    def _m105(self, command: str) -> str:
        if self.cfg.ok_before_output:
            return f"ok\n {self.temperature_report()}"
        return f"ok {self.temperature_report()}"

    def _m155(self, command: str) -> None:
        self.autoreport_s = float(int(params(command).get("S") or 0))  # whole seconds, as Marlin
        self.next_autoreport = self.now + self.autoreport_s

    def _m303(self, command: str) -> Blocking:
        p = params(command)
        index = int(p.get("E") or 0)
        if index not in (0, -1):
            self.say("PID Autotune failed! Bad heater id")
            return None
        heater = self.bed if index == -1 else self.hotend
        target, cycles = p.get("S") or 150.0, int(p.get("C") or 5)
        self.say("PID Autotune start")
        heater.target = target
        yield from self._wait_heater(heater, target, 0.0)
        yield from self._report_for(cycles * 25.0)
        lines, gains = autotune_result(heater, target, cycles, self.rng)
        heater.target = 0.0
        self.say(*lines)
        if "U" in p:
            if heater is self.bed:
                self.settings.bed_pid = gains
            else:
                self.settings.hotend_pid = gains
        return None

    def _report_for(self, physical_s: float) -> Blocking:
        end = self.now + physical_s * self.cfg.time_scale
        next_report = self.now
        while self.now < end:
            if self.now >= next_report:
                self.say(f" {self.temperature_report()}")
                next_report = self.now + self.cfg.temp_interval_s
            yield min(end, next_report)
        return None

    # ---- firmware and settings ----------------------------------------------------------------------

    def _m110(self, command: str) -> None:
        number = params(command).get("N")
        if number is not None:
            self.checker.last_n = int(number)

    def _m112(self, command: str) -> None:
        self.kill()

    def _m114(self, command: str) -> None:
        x, y, z, e = (self.pos[a] for a in "XYZE")
        steps = self.settings.steps_per_mm
        counts = " ".join(f"{a}:{round(self.pos[a] * steps[a])}" for a in "XYZ")
        self.say(f"X:{x:.2f} Y:{y:.2f} Z:{z:.2f} E:{e:.2f} Count {counts}")

    def _m115(self, command: str) -> None:
        self.say(*ms.report_m115(self.cfg.advanced_ok))

    def _m118(self, command: str) -> None:
        text = command[4:].strip()
        self.say(f"echo:{text[2:].strip()}" if text.startswith("E1") else text)

    def _set_axes(self, values: dict[str, float], command: str) -> bool:
        """Set the given axis values; False if the command named none (a report was asked for)."""
        given = {a: v for a, v in params(command).items() if a in values and v is not None}
        values.update(given)
        return bool(given)

    def _m92(self, command: str) -> None:
        if not self._set_axes(self.settings.steps_per_mm, command):
            self.say(ms.m92_line(self.settings))

    def _m201(self, command: str) -> None:
        self._set_axes(self.settings.max_accel, command)

    def _m203(self, command: str) -> None:
        self._set_axes(self.settings.max_feedrate, command)

    def _m851(self, command: str) -> None:
        if not self._set_axes(self.settings.probe_offset, command):
            self.say("echo:; Z-Probe Offset:", ms.m851_line(self.settings))

    def _pid(self, old: tuple[float, float, float], command: str) -> tuple[float, ...]:
        p = params(command)
        return tuple(v if (v := p.get(k)) is not None else o for k, o in zip("PID", old, strict=True))

    def _m301(self, command: str) -> None:
        if not set(params(command)) & set("PID"):
            self.say(ms.m301_line(self.settings))
        self.settings.hotend_pid = self._pid(self.settings.hotend_pid, command)  # type: ignore[assignment]

    def _m304(self, command: str) -> None:
        if not set(params(command)) & set("PID"):
            self.say(ms.m304_line(self.settings))
        self.settings.bed_pid = self._pid(self.settings.bed_pid, command)  # type: ignore[assignment]

    def _m500(self, command: str) -> None:
        self.stored = self.settings.copy()
        self.say(f"echo:Settings Stored (636 bytes; crc {self.stored.crc()})")

    def _m501(self, command: str) -> None:
        if self.stored is None:
            self.settings = Settings()
            self.say(
                "echo:EEPROM version mismatch (EEPROM=? Marlin=V86)", "echo:Hardcoded Default Settings Loaded"
            )
        else:
            self.settings = self.stored.copy()
            self.say(f"echo:V86 stored settings retrieved (636 bytes; crc {self.stored.crc()})")

    def _m502(self, command: str) -> None:
        self.settings = Settings()
        self.say("echo:Hardcoded Default Settings Loaded")

    def _m503(self, command: str) -> None:
        self.say(*ms.report_m503(self.settings))
