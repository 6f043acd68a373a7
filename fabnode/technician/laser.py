"""`fabnode calibrate laser-grid`: a power x speed test grid for one material on a GRBL laser.

Rows are feeds (mm/min), columns are powers (S, in GRBL's `$30` scale); each cell is a small filled
square rastered in M4 dynamic power (the beam scales with the actual speed, so corners do not burn
deeper). Row and column numbers can be engraved beside the grid (`labels`) with a 7-segment stroke
font. The technician names the best cell; its power and feed go into the config's
`[materials.<name>]` table (fabnode.technician.toml_edit does the edit).
Sans-I/O, like fabnode.technician.calibrate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from fabnode.technician.calibrate import (
    Ask,
    CalibrationError,
    Dialogue,
    JobResult,
    Outcome,
    RecordMaterial,
    Say,
    StreamJob,
    command,
    confirm,
)
from fabnode.technician.parse import parse_grbl_settings

DEFAULT_FEEDS = (300.0, 600.0, 1200.0, 2400.0, 4800.0)
DEFAULT_POWER_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
MAX_CELLS = 100
MAX_SIDE = 20  # labels have room for two digits
_DIGIT_W, _DIGIT_H, _DIGIT_GAP = 1.5, 3.0, 0.75  # mm
# 7-segment strokes in a unit cell (x 0..1, y 0..2), and which ones each digit lights.
_SEGMENTS = {
    "a": ((0, 2), (1, 2)), "b": ((1, 2), (1, 1)), "c": ((1, 1), (1, 0)), "d": ((1, 0), (0, 0)),
    "e": ((0, 0), (0, 1)), "f": ((0, 1), (0, 2)), "g": ((0, 1), (1, 1)),
}  # fmt: skip
_DIGITS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


@dataclass(frozen=True, slots=True)
class GridSpec:
    """The grid: row r burns at feeds_mm_min[r], column c at powers[c]; squares of cell_mm, gap_mm apart."""

    powers: tuple[float, ...]
    feeds_mm_min: tuple[float, ...] = DEFAULT_FEEDS
    cell_mm: float = 5.0
    gap_mm: float = 2.0
    interval_mm: float = 0.25  # between raster lines
    origin: tuple[float, float] = (0.0, 0.0)  # the grid's lower-left corner, work coordinates
    labels: bool = False

    def check(self) -> None:
        """CalibrationError naming the first value that cannot make a grid."""
        if not self.powers or not self.feeds_mm_min:
            raise CalibrationError("the grid needs at least one power and one feed")
        rows, cols = len(self.feeds_mm_min), len(self.powers)
        if rows * cols > MAX_CELLS or max(rows, cols) > MAX_SIDE:
            raise CalibrationError(f"{rows} x {cols} cells: at most {MAX_CELLS}, {MAX_SIDE} a side")
        if any(p < 0 or not math.isfinite(p) for p in self.powers):
            raise CalibrationError(f"powers {list(self.powers)}: 0 or more")
        if any(f <= 0 or not math.isfinite(f) for f in self.feeds_mm_min):
            raise CalibrationError(f"feeds {list(self.feeds_mm_min)}: above 0 mm/min")
        if not 0.5 <= self.cell_mm <= 50 or not 0 <= self.gap_mm <= 50:
            raise CalibrationError(f"cell {self.cell_mm:g} mm (0.5..50), gap {self.gap_mm:g} mm (0..50)")
        if not 0.01 <= self.interval_mm <= self.cell_mm:
            raise CalibrationError(f"interval {self.interval_mm:g} mm: 0.01 up to the cell size")

    @property
    def margin_mm(self) -> float:
        """Room left of the grid for the row numbers."""
        return 2 * (_DIGIT_W + _DIGIT_GAP) + _DIGIT_GAP if self.labels else 0.0

    def cell_corner(self, row: int, col: int) -> tuple[float, float]:
        """Lower-left corner of a cell (0-based row and column)."""
        pitch = self.cell_mm + self.gap_mm
        return self.origin[0] + self.margin_mm + col * pitch, self.origin[1] + row * pitch

    def size_mm(self) -> tuple[float, float]:
        """Width and height the grid covers, labels included."""
        pitch = self.cell_mm + self.gap_mm
        width = self.margin_mm + len(self.powers) * pitch - self.gap_mm
        height = len(self.feeds_mm_min) * pitch - self.gap_mm + (_DIGIT_H + _DIGIT_GAP if self.labels else 0)
        return width, height


def default_powers(max_power: float) -> tuple[float, ...]:
    """Five powers from 20 % to 100 % of the laser's S maximum (`$30`)."""
    return tuple(round(max_power * f, 1) for f in DEFAULT_POWER_FRACTIONS)


def _n(value: float) -> str:
    """A coordinate or word value as G-code writes it: up to 3 decimals, no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def grid_gcode(spec: GridSpec, material: str) -> list[str]:
    """The grid as G-code lines (mm, absolute, M4 dynamic power, beam off at the end)."""
    spec.check()
    width, height = spec.size_mm()
    lines = [
        f"; fabnode laser-grid for {material}: {width:.1f} x {height:.1f} mm from X{_n(spec.origin[0])} "
        f"Y{_n(spec.origin[1])}",
        f"; rows (from the origin) = feeds mm/min {', '.join(_n(f) for f in spec.feeds_mm_min)}",
        f"; columns = powers S {', '.join(_n(p) for p in spec.powers)}",
        "G21", "G90", "M5", "M4 S0",
    ]  # fmt: skip
    for row, feed in enumerate(spec.feeds_mm_min):
        for col, power in enumerate(spec.powers):
            lines.append(f"; row {row + 1} column {col + 1}: F{_n(feed)} S{_n(power)}")
            lines += _raster(spec, *spec.cell_corner(row, col), feed, power)
    if spec.labels:
        lines += _labels(spec)
    lines += ["M5", "G0 X" + _n(spec.origin[0]) + " Y" + _n(spec.origin[1])]
    return lines


def _raster(spec: GridSpec, x0: float, y0: float, feed: float, power: float) -> list[str]:
    """A filled square: serpentine burning lines, the step-overs with the beam off (G0)."""
    count = int(spec.cell_mm / spec.interval_mm + 1e-9) + 1
    x1 = x0 + spec.cell_mm
    out = [f"G0 X{_n(x0)} Y{_n(y0)}"]
    for k in range(count):
        if k:
            out.append(f"G0 Y{_n(y0 + k * spec.interval_mm)}")
        end = x1 if k % 2 == 0 else x0
        out.append(f"G1 X{_n(end)} F{_n(feed)} S{_n(power)}" if k == 0 else f"G1 X{_n(end)}")
    return out


def _labels(spec: GridSpec) -> list[str]:
    """Row numbers left of the rows, column numbers above the columns, at the middle power and feed."""
    power = sorted(spec.powers)[len(spec.powers) // 2]
    feed = sorted(spec.feeds_mm_min)[len(spec.feeds_mm_min) // 2]
    out = ["; labels: row numbers on the left, column numbers on top"]
    for row in range(len(spec.feeds_mm_min)):
        y = spec.cell_corner(row, 0)[1] + (spec.cell_mm - _DIGIT_H) / 2
        out += _number_strokes(str(row + 1), spec.origin[0] + _DIGIT_GAP, y, feed, power)
    top = spec.cell_corner(len(spec.feeds_mm_min) - 1, 0)[1] + spec.cell_mm + _DIGIT_GAP
    for col in range(len(spec.powers)):
        x = spec.cell_corner(0, col)[0]
        out += _number_strokes(str(col + 1), x, top, feed, power)
    return out


def _number_strokes(text: str, x: float, y: float, feed: float, power: float) -> list[str]:
    out: list[str] = []
    for i, char in enumerate(text):
        left = x + i * (_DIGIT_W + _DIGIT_GAP)
        for segment in _DIGITS[int(char)]:
            (ax, ay), (bx, by) = _SEGMENTS[segment]
            sx, sy = _DIGIT_W, _DIGIT_H / 2
            out.append(f"G0 X{_n(left + ax * sx)} Y{_n(y + ay * sy)}")
            out.append(f"G1 X{_n(left + bx * sx)} Y{_n(y + by * sy)} F{_n(feed)} S{_n(power)}")
    return out


def grid_seconds(lines: list[str]) -> float:
    """A generous upper bound of the grid's run time: every move at its feed, no acceleration."""
    x = y = 0.0
    feed = 1000.0
    total = 0.0
    for line in lines:
        if not line.startswith(("G0", "G1")):
            continue
        words = dict(re.findall(r"([XYF])(-?[\d.]+)", line))
        nx, ny = float(words.get("X", x)), float(words.get("Y", y))
        feed = float(words.get("F", feed))
        total += math.hypot(nx - x, ny - y) / (feed if line.startswith("G1") else 3000.0) * 60.0
        x, y = nx, ny
    return total


def parse_cell(text: str, spec: GridSpec) -> tuple[int, int]:
    """`row,col` (1-based, as engraved; also `2 3` or `r2c3`) -> 0-based (row, col)."""
    numbers = re.findall(r"\d+", text)
    if len(numbers) != 2:
        raise ValueError(f"{text.strip()!r}: give the row and the column, e.g. 2,3")
    row, col = int(numbers[0]), int(numbers[1])
    rows, cols = len(spec.feeds_mm_min), len(spec.powers)
    if not (1 <= row <= rows and 1 <= col <= cols):
        raise ValueError(f"row {row}, column {col}: rows go 1..{rows}, columns 1..{cols}")
    return row - 1, col - 1


def laser_grid(spec: GridSpec, material: str, can_record: bool) -> Dialogue:
    """Check laser mode, stream the grid, ask for the best cell, record it (spec checked at once)."""
    spec.check()
    return _laser_grid(spec, material, can_record)


def _laser_grid(spec: GridSpec, material: str, can_record: bool) -> Dialogue:
    settings = parse_grbl_settings((yield from command("$$")).lines)
    if settings.get(32) != 1:
        raise CalibrationError("GRBL's laser mode is off ($32=0): with it off the beam stays on at "
                               "every stop. Set it with `$32=1` (fabnode console), then run the grid")
    max_s = settings.get(30)
    if max_s is not None and max(spec.powers) > max_s:
        raise CalibrationError(f"power {max(spec.powers):g} is above the laser's maximum S ($30={max_s:g})")
    lines = grid_gcode(spec, material)
    width, height = spec.size_mm()
    feeds, powers = ", ".join(_n(f) for f in spec.feeds_mm_min), ", ".join(_n(p) for p in spec.powers)
    yield Say(f"Grid for {material}: {len(spec.feeds_mm_min)} rows (feeds {feeds} mm/min) x "
              f"{len(spec.powers)} columns (powers {powers}), {width:.1f} x {height:.1f} mm "
              f"from X{_n(spec.origin[0])} Y{_n(spec.origin[1])}")
    ready = yield confirm("ready", f"A sheet of {material} is under the head, focused, lid shut, "
                          "extraction on. Burn the grid?", default=True)
    if ready is not True:
        raise CalibrationError("laser-grid: stopped before burning")
    result = yield StreamJob(f"laser-grid-{material}", tuple(lines), 2 * grid_seconds(lines) + 60.0)
    if not isinstance(result, JobResult) or not result.completed:
        reason = result.reason if isinstance(result, JobResult) else repr(result)
        raise CalibrationError(f"the grid did not finish: {reason}")
    cell = yield Ask("cell", "Which cell looks best? row,column as engraved (rows: feeds, columns: powers)",
                     lambda text: parse_cell(text, spec))
    if not isinstance(cell, tuple):
        raise TypeError(f"the cell question must be answered with (row, col), not {cell!r}")
    row, col = int(cell[0]), int(cell[1])
    power, feed = spec.powers[col], spec.feeds_mm_min[row]
    yield Say(f"Row {row + 1}, column {col + 1}: laser_power = {_n(power)}, laser_feed_mm_min = {_n(feed)}")
    recorded = None
    if can_record:
        keep = yield confirm("record", f"Record them for {material} in the config?", default=True)
        if keep is True:
            recorded = yield RecordMaterial(material, power, feed)
            yield Say(f"Recorded in {recorded} [materials.{material}]")
    data = {"material": material, "row": row + 1, "column": col + 1, "laser_power": power,
            "laser_feed_mm_min": feed, "recorded_in": recorded}
    return Outcome("laser-grid", f"{material}: laser_power {_n(power)}, laser_feed_mm_min {_n(feed)}",
                   (("laser_power", "", _n(power)), ("laser_feed_mm_min", "", _n(feed))), None, data)
