"""One pass over a G-code file: positions, modes, extrusion, laser, temperatures, box, time, problems.

Modes follow Marlin (and GRBL where it applies):
- G90/G91 set every axis, E included, absolute/relative (Marlin's set_relative_mode clears an earlier
  M83); M82/M83 then set E alone. G20/G21 switch inches/mm for positions, E, I/J/R and F.
- G92 shifts the logical origin (positions are tracked in machine coordinates, so the box and the volume
  check see where the head really goes); G92 E sets the extruder position without extruding.
- Filament is the NET extrusion: the sum of every E change, so a retraction and its recovery cancel,
  and a final retraction is subtracted. M221 flow does not change it (the slicer's figure ignores it too).
  G10/G11 firmware retraction retracts and recovers the same length, so it changes nothing either.
- The laser is on for a move when M3/M4 is active, the power S is above 0 and the move is G1/G2/G3;
  G0 and M5 are off. S on a move line sets the power for it and the moves after it (GRBL's modal S).
- G4 dwells count (P in ms on Marlin, P in s on GRBL, S in s); M109/M190 heat-up waits count as 0 s,
  as in the slicer's estimate (the machine comes to rest there, so the planner is drained).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable

from fabnode.gcode.arcs import Arc, arc_from_offset, arc_from_radius
from fabnode.gcode.dialect import (
    GRBL_G_CODES,
    GRBL_LETTERS,
    GRBL_M_CODES,
    bad_number,
    grbl_dollar_write,
    grbl_refusal,
    split_command,
    suspect_number,
)
from fabnode.gcode.estimate import PRINT, RETRACT, TRAVEL, Planner
from fabnode.gcode.parse import clean, command_of, letters, split_glued, values
from fabnode.gcode.preflight import Preflight
from fabnode.machine.profile import GRBL, LASER, MachineProfile

INCH = 25.4
_RAPID = float("inf")
_Handler = Callable[[list[str], int], None]


class Scanner:
    """Reads lines once and keeps every running figure; fabnode.gcode.analysis turns it into an Analysis."""

    def __init__(self, profile: MachineProfile) -> None:
        self.profile = profile
        self.grbl = profile.firmware == GRBL
        self.is_laser = profile.kind == LASER
        self.planner = Planner(profile)
        self.preflight = Preflight(profile)
        self.pos = [0.0, 0.0, 0.0]  # machine coordinates, mm
        self.shift = [0.0, 0.0, 0.0]  # G92: machine = logical + shift
        self.e = 0.0  # logical extruder position, mm
        self.rel_xyz = False
        self.rel_e = False
        self.scale = 1.0  # mm per file unit
        self.feed = 1500.0 / 60.0  # mm/s; Marlin's power-on feedrate
        self.filament_mm = 0.0
        self.filament_lines = array("I")
        self.filament_cum = array("d")
        self.last_filament_line = 0  # kept when the series is handed out (take_series)
        self.spindle_on = False
        self.power = 0.0
        self.laser_mm = 0.0
        self.max_hotend: float | None = None
        self.max_bed: float | None = None
        self.bbox_min = [math.inf] * 3
        self.bbox_max = [-math.inf] * 3
        self.units_seen: set[str] = set()
        self.commands = 0
        self.command_lines = array("I")
        self.lines = 0
        self._handlers: dict[str, _Handler] = {
            "G0": self._g0, "G1": self._g1, "G2": self._arc, "G3": self._arc, "G4": self._g4,
            "G20": self._g20, "G21": self._g21, "G28": self._g28, "G90": self._g90, "G91": self._g91,
            "G92": self._g92, "M82": self._m82, "M83": self._m83, "M3": self._m3, "M4": self._m3,
            "M5": self._m5, "M104": self._hotend, "M109": self._hotend_wait, "M140": self._bed,
            "M190": self._bed_wait, "M400": self._sync, "M201": self._m201, "M203": self._m203,
            "M204": self._m204, "M205": self._m205, "M220": self._m220, "M221": self._m221,
        }  # fmt: skip

    # --- the loop -------------------------------------------------------------------------------

    def feed_lines(self, lines: Iterable[str]) -> None:
        """Read every line; line numbers are 1-based, as an editor shows them."""
        handlers = self._handlers
        forbidden = self.profile.forbidden_commands
        preflight = self.preflight
        max_code_len = preflight.max_code_len
        command_lines = self.command_lines
        line_no = self.lines
        for line_no, raw in enumerate(lines, self.lines + 1):
            if "\0" in raw:
                preflight.not_text(line_no, "it contains a NUL byte")
            code = clean(raw)
            if not code or code == "%":
                continue
            self.commands += 1
            command_lines.append(line_no)
            if len(code) > max_code_len:
                preflight.line_length(line_no, code, self.commands)
            words = code.split()
            cmd = command_of(words[0])
            handler = handlers.get(cmd)
            if handler is None and cmd[0] in "GMT" and not cmd[1:].isdigit():
                # As the firmware reads it: G1X10Y20, M 500, M500S0 and M500.1 (M500, subcode 1).
                found = split_command(code)
                if found is not None:
                    cmd, subcode, rest = found
                    if not subcode:  # G92.1 is not G92
                        handler = handlers.get(cmd)
                        words = [cmd, *split_glued(rest)]
            if handler is not None and suspect_number(code):
                why = bad_number(words)
                if why is not None:
                    preflight.bad_number(line_no, why)
                    handler = None  # its figures would be NaN or overflow: the file is refused anyway
            if self.grbl:
                self._grbl_line(code, cmd, words, handler is not None, line_no)
            if handler is not None:
                handler(words, line_no)
            if cmd in forbidden:
                preflight.forbidden(line_no, cmd)
        self.lines = line_no

    def _grbl_line(self, code: str, cmd: str, words: list[str], handled: bool, line: int) -> None:
        """GRBL refuses what it does not support, and a member's job may not write its settings."""
        if code[0] == "$":
            write = grbl_dollar_write(code)
            if write is not None and cmd not in self.profile.forbidden_commands:  # else reported as listed
                self.preflight.grbl_setting(line, write)
            return
        known = GRBL_G_CODES if cmd[0] == "G" else GRBL_M_CODES if cmd[0] == "M" else ()
        if handled and cmd[1:] in known and all(len(w) > 1 and w[0] in GRBL_LETTERS for w in words[1:]):
            return  # the common line: a supported command and its words, no need to look closer
        why = grbl_refusal(code)
        if why is not None:
            self.preflight.grbl_refuses(line, code, why)

    def take_series(self) -> dict[str, tuple[array, array]]:
        """Hand out the per-line series gathered since the last call (name: (file lines, running totals))
        and start them afresh, so a caller can keep them off the heap (fabnode.node.job_series)."""
        planner = self.planner
        taken = {
            "filament": (self.filament_lines, self.filament_cum),
            "laser": (planner.laser_lines, planner.laser_cum),
            "time": (planner.time_lines, planner.time_cum),
            "commands": (self.command_lines, array("d")),
        }
        if self.filament_lines:
            self.last_filament_line = self.filament_lines[-1]
        self.filament_lines, self.filament_cum, self.command_lines = array("I"), array("d"), array("I")
        planner.laser_lines, planner.laser_cum = array("I"), array("d")
        planner.time_lines, planner.time_cum = array("I"), array("d")
        return taken

    def finish(self) -> None:
        """The file ended: the machine finishes its queued moves."""
        self.planner.sync()
        if self.filament_mm < -1e-6:  # below rounding noise: the file retracts more than it extrudes
            line = self.filament_lines[-1] if self.filament_lines else self.last_filament_line or self.lines
            self.preflight.negative_extrusion(line, self.filament_mm)

    # --- moves ----------------------------------------------------------------------------------

    def _target(self, p: dict[str, float]) -> tuple[float, float, float, float]:
        """Where a move goes (machine mm) and how much it extrudes."""
        sc, pos, shift = self.scale, self.pos, self.shift
        rel = self.rel_xyz
        x = p.get("X")
        y = p.get("Y")
        z = p.get("Z")
        e = p.get("E")
        nx = pos[0] if x is None else (pos[0] + x * sc if rel else shift[0] + x * sc)
        ny = pos[1] if y is None else (pos[1] + y * sc if rel else shift[1] + y * sc)
        nz = pos[2] if z is None else (pos[2] + z * sc if rel else shift[2] + z * sc)
        if e is None:
            de = 0.0
        elif self.rel_e:
            de = e * sc
        else:
            de = e * sc - self.e
        return nx, ny, nz, de

    def _g0(self, words: list[str], line: int) -> None:
        self._linear(words, line, rapid=True)

    def _g1(self, words: list[str], line: int) -> None:
        self._linear(words, line, rapid=False)

    def _linear(self, words: list[str], line: int, rapid: bool) -> None:
        p = values(words)
        f = p.get("F")
        if f is not None and f > 0.0:
            self.feed = f * self.scale / 60.0
        if "S" in p:
            self._set_power(p["S"], line)
        nx, ny, nz, de = self._target(p)
        pos = self.pos
        dx, dy, dz = nx - pos[0], ny - pos[1], nz - pos[2]
        if dx == 0.0 and dy == 0.0 and dz == 0.0 and de == 0.0:
            return
        self._reach(nx, ny, nz, line)
        if de != 0.0:
            self._extrude(de, line)
        laser_on = not rapid and self.spindle_on and self.power > 0.0
        if laser_on:
            self.laser_mm += math.sqrt(dx * dx + dy * dy + dz * dz)
        feed = _RAPID if rapid and self.grbl else self.feed
        self.planner.add_move((dx, dy, dz, de), feed, _kind(dx, dy, dz, de), line, laser_on)

    def _arc(self, words: list[str], line: int) -> None:
        p = values(words)
        f = p.get("F")
        if f is not None and f > 0.0:
            self.feed = f * self.scale / 60.0
        if "S" in p:
            self._set_power(p["S"], line)
        nx, ny, nz, de = self._target(p)
        x0, y0 = self.pos[0], self.pos[1]
        cw = command_of(words[0]) == "G2"
        arc: Arc | None
        if "R" in p:
            arc = arc_from_radius(x0, y0, nx, ny, p["R"] * self.scale, cw)
        else:
            arc = arc_from_offset(
                x0, y0, nx, ny, p.get("I", 0.0) * self.scale, p.get("J", 0.0) * self.scale, cw
            )
        if arc is None or arc.radius == 0.0:
            self._linear(words, line, rapid=False)  # no valid centre: firmware refuses it; count it as a line
            return
        dz = nz - self.pos[2]
        for ax, ay in arc.extremes():
            self._reach(ax, ay, self.pos[2], line)
        self._reach(nx, ny, nz, line)
        if de != 0.0:
            self._extrude(de, line)
        flat = abs(arc.sweep) * arc.radius
        laser_on = self.spindle_on and self.power > 0.0
        if laser_on:
            self.laser_mm += arc.length(dz)
        (tx, ty), (ux, uy) = arc.tangent(False), arc.tangent(True)
        self.planner.add_move(
            (tx * flat, ty * flat, dz, de), self.feed, PRINT if de > 0 else TRAVEL, line, laser_on,
            exit_delta=(ux * flat, uy * flat, dz, de),
        )  # fmt: skip

    def _reach(self, x: float, y: float, z: float, line: int) -> None:
        """The head reaches (x, y, z): grow the box, and check the volume when the box grows."""
        pos, lo, hi = self.pos, self.bbox_min, self.bbox_max
        pos[0], pos[1], pos[2] = x, y, z
        # Most moves stay inside the box so far: one pair of comparisons per axis, nothing else.
        if x < lo[0] or x > hi[0]:
            self._grow(0, x, line)
        if y < lo[1] or y > hi[1]:
            self._grow(1, y, line)
        if z < lo[2] or z > hi[2]:
            self._grow(2, z, line)

    def _grow(self, axis: int, v: float, line: int) -> None:
        lo, hi = self.bbox_min, self.bbox_max
        if v < lo[axis]:
            lo[axis] = v
            if v < self.profile.volume_min_mm[axis]:
                self.preflight.outside(line, axis, v)
        if v > hi[axis]:
            hi[axis] = v
            if v > self.profile.volume_max_mm[axis]:
                self.preflight.outside(line, axis, v)

    def _extrude(self, de: float, line: int) -> None:
        self.e += de
        self.filament_mm += de
        self.filament_lines.append(line)
        self.filament_cum.append(self.filament_mm)

    def _set_power(self, s: float, line: int) -> None:
        self.power = s
        if self.is_laser:
            self.preflight.laser_power(line, s)

    # --- modes and settings ---------------------------------------------------------------------

    def _g4(self, words: list[str], line: int) -> None:
        p = values(words)
        seconds = p.get("S", 0.0)
        if "P" in p:
            seconds = p["P"] if self.grbl else p["P"] / 1000.0
        self.planner.dwell(seconds, line)

    def _g20(self, words: list[str], line: int) -> None:
        self.scale = INCH
        self.units_seen.add("inch")

    def _g21(self, words: list[str], line: int) -> None:
        self.scale = 1.0
        self.units_seen.add("mm")

    def _g28(self, words: list[str], line: int) -> None:
        """Home: the named axes (all when none) go to 0 and lose their G92 shift."""
        self.planner.sync()
        named = letters(words) & set("XYZ") or set("XYZ")
        target = list(self.pos)
        for axis, name in enumerate("XYZ"):
            if name in named:
                target[axis] = 0.0
                self.shift[axis] = 0.0
        self._reach(target[0], target[1], target[2], line)

    def _g90(self, words: list[str], line: int) -> None:
        self.rel_xyz = self.rel_e = False

    def _g91(self, words: list[str], line: int) -> None:
        self.rel_xyz = self.rel_e = True

    def _g92(self, words: list[str], line: int) -> None:
        p = values(words)
        if not p:
            p = {"X": 0.0, "Y": 0.0, "Z": 0.0, "E": 0.0}
        if "E" in p:
            self.e = p["E"] * self.scale
        else:
            self.planner.sync()
        for axis, name in enumerate("XYZ"):
            if name in p:
                self.shift[axis] = self.pos[axis] - p[name] * self.scale

    def _m82(self, words: list[str], line: int) -> None:
        self.rel_e = False

    def _m83(self, words: list[str], line: int) -> None:
        self.rel_e = True

    def _m3(self, words: list[str], line: int) -> None:
        self.spindle_on = True
        p = values(words)
        if "S" in p:
            self._set_power(p["S"], line)

    def _m5(self, words: list[str], line: int) -> None:
        self.spindle_on = False

    def _hotend(self, words: list[str], line: int) -> None:
        p = values(words)
        t = p.get("S", p.get("R"))
        if t is not None:
            self.max_hotend = t if self.max_hotend is None else max(self.max_hotend, t)
            self.preflight.hotend(line, t)

    def _hotend_wait(self, words: list[str], line: int) -> None:
        self.planner.sync()
        self._hotend(words, line)

    def _bed(self, words: list[str], line: int) -> None:
        p = values(words)
        t = p.get("S", p.get("R"))
        if t is not None:
            self.max_bed = t if self.max_bed is None else max(self.max_bed, t)
            self.preflight.bed(line, t)

    def _bed_wait(self, words: list[str], line: int) -> None:
        self.planner.sync()
        self._bed(words, line)

    def _sync(self, words: list[str], line: int) -> None:
        self.planner.sync()

    def _m201(self, words: list[str], line: int) -> None:
        _set_axes(self.planner.limits.max_accel, values(words))

    def _m203(self, words: list[str], line: int) -> None:
        p = values(words)
        if self.grbl:  # GRBL has no M203; nothing to do
            return
        _set_axes(self.planner.limits.max_feed, p)

    def _m204(self, words: list[str], line: int) -> None:
        p = values(words)
        lim = self.planner.limits
        if "S" in p:  # legacy: S is print and travel, T is retract
            lim.print_accel = lim.travel_accel = p["S"]
            if "T" in p:
                lim.retract_accel = p["T"]
            return
        lim.print_accel = p.get("P", lim.print_accel)
        lim.retract_accel = p.get("R", lim.retract_accel)
        lim.travel_accel = p.get("T", lim.travel_accel)

    def _m205(self, words: list[str], line: int) -> None:
        p = values(words)
        lim = self.planner.limits
        if "X" in p:
            lim.jerk[0] = lim.jerk[1] = p["X"]
        _set_axes(lim.jerk, {k: v for k, v in p.items() if k != "X"})
        lim.min_extrude_feed = p.get("S", lim.min_extrude_feed)
        lim.min_travel_feed = p.get("T", lim.min_travel_feed)
        if "J" in p:
            lim.jd = p["J"]

    def _m220(self, words: list[str], line: int) -> None:
        p = values(words)
        if "S" in p:
            self.planner.feed_multiply = p["S"] / 100.0

    def _m221(self, words: list[str], line: int) -> None:
        p = values(words)
        if "S" in p and "T" not in p:
            self.planner.extrude_factor = p["S"] / 100.0


def _kind(dx: float, dy: float, dz: float, de: float) -> int:
    """Which acceleration applies, the way PrusaSlicer's estimator sorts moves."""
    if de > 0.0 and (dx != 0.0 or dy != 0.0):
        return PRINT
    if de != 0.0 and dx == 0.0 and dy == 0.0 and dz == 0.0:
        return RETRACT
    return TRAVEL


def _set_axes(target: list[float], p: dict[str, float]) -> None:
    for axis, name in enumerate("XYZE"):
        if name in p:
            target[axis] = p[name]
