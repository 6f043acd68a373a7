"""What the demo's nodes run on: their configs and the G-code of the day's jobs.

The jobs are the real slicer and CAM files from `../shared/data/gcode` beside the repository, else the
same files the tests keep in `tests/data` (a clone on its own); without either (the demo copied out of
the checkout) small files generated here that do the same kind of work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fabnode.gcode.analysis import analyze_file
from fabnode.node.sim_configs import simulated_toml

LAB = "demo-lab"
PRINTER = "sim-printer"
LASER = "sim-laser"
PRINTER_FILE = "prusaslicer-cubhelix.gcode"
LASER_FILE = "laser-jsdc.gcode"
# --fast cuts each real file after this many lines of the file: for the print, the start G-code, the
# purge line and the first layers of the cube (about 3,100 G-code lines, 8 s on the wire); for the laser,
# its first paths. The demo itself counts only G-code lines (what is sent), as the node does.
FAST_PRINT_LINES = 4800
FAST_LASER_LINES = 1200
PRINT_END = "M104 S0 ; hotend off\nM140 S0 ; bed off\nM107\nM84\n"

# The built-in simulated printer and laser of `fabnode run --simulate`, with the demo's short timers:
# the laser's fume extractor runs on 3 s (not minutes) and a message the region has not acknowledged is
# sent again after 5 s (not 5 min), so a message published before the collector subscribed comes back
# within the demo.
_TELEMETRY = "\n[telemetry]\nresend_after_s = 5.0\n"
PRINTER_TOML = simulated_toml(
    False, lab=LAB, machine=PRINTER, written_by="python -m demo", extra=_TELEMETRY
)
LASER_TOML = simulated_toml(
    True, lab=LAB, machine=LASER, fume_runon_s=3.0, written_by="python -m demo", extra=_TELEMETRY
)


@dataclass(frozen=True, slots=True)
class Job:
    """A G-code file for the day, a sentence saying where it came from, and its G-code lines: the
    commands the node sends (comments and blank lines are not sent), the count `fabnode status` shows."""

    path: Path
    about: str
    gcode_lines: int


def _job(path: Path, about: str) -> Job:
    gcode_lines = analyze_file(path).commands
    return Job(path, f"{about}; {gcode_lines:,} G-code lines to send", gcode_lines)


def shared_gcode_dirs() -> list[Path]:
    """Where the real files may be: `shared/data/gcode` beside the working directory's repo or beside
    this package's, then the copies the tests keep in the checkout's tests/data."""
    repo = Path(__file__).resolve().parents[1]
    return [Path.cwd() / ".." / "shared" / "data" / "gcode", repo.parent / "shared" / "data" / "gcode",
            repo / "tests" / "data"]  # fmt: skip


def source_of(real: Path) -> str:
    """Where a real file was found, in words: the shared data set or the copies the tests keep."""
    return "tests/data" if real.parent.name == "data" and real.parent.parent.name == "tests" else \
        "../shared/data/gcode"


def find_shared(name: str) -> Path | None:
    """The real G-code file `name`, from a shared/ folder beside the repository or from tests/data."""
    for folder in shared_gcode_dirs():
        if (folder / name).is_file():
            return (folder / name).resolve()
    return None


def printer_job(folder: Path, fast: bool) -> Job:
    """The print: the real cubhelix (or its first lines with --fast), else a generated tower."""
    real = find_shared(PRINTER_FILE)
    if real is None:
        path = folder / "demo-tower.gcode"
        path.write_text(generated_print(layers=20 if fast else 40))
        return _job(path, f"{path.name}: generated here ({PRINTER_FILE} is neither in "
                         "../shared/data/gcode nor in tests/data), a 20 mm square tower in PLA")  # fmt: skip
    if not fast:
        return _job(real, f"{real.name} (from {source_of(real)}): a real PrusaSlicer file, 2.6 g of PLA")
    path = folder / "cubhelix-start.gcode"
    head = real.read_text(encoding="utf-8").splitlines(keepends=True)[:FAST_PRINT_LINES]
    path.write_text("".join(head) + "; --fast: the file stops here; the heaters go off\n" + PRINT_END)
    return _job(path, f"{path.name}: the start of the real {real.name} from {source_of(real)} (--fast: its "
                      "first layers), then heaters off")  # fmt: skip


def laser_job(folder: Path, fast: bool) -> Job:
    """The laser job: the real jsdc engraving (or its first lines with --fast), else a generated one."""
    real = find_shared(LASER_FILE)
    if real is not None and not fast:
        return _job(real, f"{real.name} (from {source_of(real)}): a real engraving from a CAM tool, "
                          "laser power S80")  # fmt: skip
    if real is not None:
        path = folder / "jsdc-start.gcode"
        head = real.read_text(encoding="utf-8").splitlines(keepends=True)[:FAST_LASER_LINES]
        path.write_text("".join(head) + "; --fast: the file stops here; the laser goes off\nM5\nG0 X0 Y0\n")
        return _job(path, f"{path.name}: the start of the real {real.name} from {source_of(real)} "
                          "(--fast: its first paths)")  # fmt: skip
    path = folder / "demo-engrave.gcode"
    path.write_text(generated_engraving())
    return _job(path, f"{path.name}: generated here ({LASER_FILE} is neither in "
                     "../shared/data/gcode nor in tests/data), five nested squares engraved")  # fmt: skip


def generated_print(layers: int, side_mm: float = 20.0, step_mm: float = 1.0) -> str:
    """A small real-looking print: heat, home, a square tower drawn in 1 mm moves, heaters off."""
    out = ["; generated by demo.main: a square tower", "M83 ; relative extrusion", "M140 S60",
           "M104 S215", "M190 S60", "M109 S215", "G28", "G92 E0"]  # fmt: skip
    x0 = y0 = 90.0 - side_mm / 2
    steps = round(side_mm / step_mm)
    corners = [(1, 0), (0, 1), (-1, 0), (0, -1)]
    for layer in range(layers):
        out.append(f"G1 Z{0.2 * (layer + 1):.2f} F720")
        out.append(f"G1 X{x0:.2f} Y{y0:.2f} F6000")
        x, y = x0, y0
        for dx, dy in corners:
            for _ in range(steps):
                x, y = x + dx * step_mm, y + dy * step_mm
                out.append(f"G1 X{x:.2f} Y{y:.2f} E0.0333 F1800")
    out += ["G1 Z20 F720", PRINT_END.rstrip()]
    return "\n".join(out) + "\n"


def generated_engraving(squares: int = 5, step_mm: float = 0.5) -> str:
    """A small engraving: nested squares at power S300, laser off between them."""
    out = ["; generated by demo.main: nested squares", "G21", "G90", "M4 S0"]
    for i in range(squares):
        half = 5.0 + 5.0 * i
        out += [f"G0 X{-half:.2f} Y{-half:.2f}", "M3 S300"]
        steps = math.ceil(2 * half / step_mm)
        for edge in range(4):
            out += [_edge_move(edge, half, min(k * step_mm, 2 * half)) for k in range(1, steps + 1)]
        out.append("M5")
    out += ["G0 X0 Y0", "M5"]
    return "\n".join(out) + "\n"


def _edge_move(edge: int, half: float, t: float) -> str:
    # The square's edges in order: bottom (left to right), right (up), top (right to left), left (down).
    x, y = [(-half + t, -half), (half, -half + t), (half - t, half), (-half, half - t)][edge]
    return f"G1 X{x:.2f} Y{y:.2f} F1200"
