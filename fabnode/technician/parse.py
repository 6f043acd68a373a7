"""Reading what the firmware prints about itself: M503/M92/M301/M304/M851 reports, M303's autotune
result, M115's capabilities, G29's mesh, GRBL's `$$` and `$I`. Pure functions over reply lines.

Written from Marlin 2.x's and GRBL 1.1's printed formats (`echo:  M92 X80.00 ... E93.00`,
`#define DEFAULT_Kp 22.20`, `Cap:EEPROM:1`, `Bed X: 10.000 Y: 10.000 Z: -0.138`, `$32=1`,
`[VER:1.1h.20190825:]`), tolerant of the `echo:` prefix, spacing and extra lines around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_CODE_LINE = re.compile(r"^(?:echo:)?\s*(M\d+)\b(.*)$", re.IGNORECASE)
_PARAM = re.compile(rf"([A-Z])\s*({_NUM})", re.IGNORECASE)
_DEFINE = re.compile(rf"#define\s+DEFAULT_(?:bed|chamber)?K([pid])\s+({_NUM})", re.IGNORECASE)
_GAINS = re.compile(rf"\bKp:\s*({_NUM})\s+Ki:\s*({_NUM})\s+Kd:\s*({_NUM})", re.IGNORECASE)
_FIELD = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*):")
_CAP = re.compile(r"^Cap:([A-Z0-9_]+):([01])\s*$")
_POINT = re.compile(rf"Bed\s+X:\s*({_NUM})\s+Y:\s*({_NUM})\s+Z:\s*({_NUM})", re.IGNORECASE)
_GRID_ROW = re.compile(rf"^\s*(\d+)((?:\s+(?:{_NUM}|=+|\.+))+)\s*$")
_GRBL_SETTING = re.compile(rf"^\$(\d+)=({_NUM})")
_GRBL_VER = re.compile(r"^\[VER:([^:\]]*)(?::([^\]]*))?\]")
_GRBL_OPT = re.compile(r"^\[OPT:([^,\]]*),(\d+),(\d+)")


def code_params(lines: Iterable[str], code: str) -> list[dict[str, float]]:
    """The letter parameters of every reported `<code> ...` line (`echo:  M92 X80.00 E93.00`), in order."""
    found = []
    for line in lines:
        match = _CODE_LINE.match(line.strip())
        if match and match.group(1).upper() == code.upper():
            text = match.group(2).split(";", 1)[0]
            found.append({k.upper(): float(v) for k, v in _PARAM.findall(text)})
    return found


def parse_m92(lines: Iterable[str]) -> dict[str, float]:
    """Steps per unit; with one line per extruder (`M92 T1 E...`), the first extruder's."""
    merged: dict[str, float] = {}
    for params in code_params(lines, "M92"):
        tool = params.pop("T", 0.0)
        if tool == 0:
            merged.update(params)
    return merged


def parse_pid(lines: Iterable[str], code: str) -> tuple[float, float, float] | None:
    """The last `M301`/`M304 P.. I.. D..` report, or None."""
    for params in reversed(code_params(lines, code)):
        if {"P", "I", "D"} <= params.keys():
            return params["P"], params["I"], params["D"]
    return None


def parse_m851(lines: Iterable[str]) -> dict[str, float]:
    """The probe offset report `M851 X10.00 Y10.00 Z-1.20 ; (mm)` (the last one)."""
    reports = code_params(lines, "M851")
    return reports[-1] if reports else {}


class AutotuneFailed(ValueError):
    """M303 said it failed, or printed no gains."""


def parse_autotune(lines: Sequence[str]) -> tuple[float, float, float]:
    """The gains M303 found: its final `#define DEFAULT_Kp ...` lines, else its last `Kp: Ki: Kd:` line."""
    for line in lines:
        if "autotune failed" in line.lower():
            raise AutotuneFailed(f"the autotune failed: {line.strip()}")
    defines: dict[str, float] = {}
    for line in lines:
        match = _DEFINE.search(line)
        if match:
            defines[match.group(1).lower()] = float(match.group(2))
    if len(defines) == 3:
        return defines["p"], defines["i"], defines["d"]
    for line in reversed(lines):
        gains = _GAINS.search(line)
        if gains:
            return float(gains.group(1)), float(gains.group(2)), float(gains.group(3))
    raise AutotuneFailed("the autotune printed no Kp/Ki/Kd (was it interrupted?)")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """M115's answer: the firmware line's fields and the `Cap:` flags."""

    fields: dict[str, str]
    caps: dict[str, bool]

    @property
    def firmware_name(self) -> str | None:
        """FIRMWARE_NAME (e.g. `Marlin 2.1.2 (Mar 21 2023 12:00:00)`), or None."""
        return self.fields.get("FIRMWARE_NAME")

    def has(self, cap: str) -> bool:
        """True when the firmware reports `Cap:<cap>:1`."""
        return self.caps.get(cap, False)


def parse_capabilities(lines: Iterable[str]) -> Capabilities:
    """Read M115: `FIRMWARE_NAME:Marlin 2.1.2 (...) SOURCE_CODE_URL:... ` and `Cap:NAME:0|1` lines."""
    fields: dict[str, str] = {}
    caps: dict[str, bool] = {}
    for raw in lines:
        line = raw.strip()
        cap = _CAP.match(line)
        if cap:
            caps[cap.group(1)] = cap.group(2) == "1"
        elif "FIRMWARE_NAME:" in line:
            fields.update(_fields(line[line.index("FIRMWARE_NAME:") :]))
    return Capabilities(fields, caps)


def _fields(line: str) -> dict[str, str]:
    """`KEY:value with spaces KEY2:value` -> {KEY: ..., KEY2: ...} (values run to the next KEY:)."""
    marks = list(_FIELD.finditer(line))
    out = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        out[mark.group(1)] = line[mark.end() : end].strip()
    return out


@dataclass(frozen=True, slots=True)
class Mesh:
    """Probed bed points (x, y or grid column, row) and their Z in mm."""

    points: tuple[tuple[float, float], ...]
    z: tuple[float, ...]

    @property
    def range_mm(self) -> float:
        """Highest minus lowest point."""
        return max(self.z) - min(self.z)


def parse_mesh(lines: Sequence[str]) -> Mesh | None:
    """G29's points (`Bed X: .. Y: .. Z: ..`) or its printed grid (`Bilinear Leveling Grid:`), or None."""
    points: list[tuple[float, float]] = []
    zs: list[float] = []
    for line in lines:
        match = _POINT.search(line)
        if match:
            points.append((float(match.group(1)), float(match.group(2))))
            zs.append(float(match.group(3)))
    if zs:
        return Mesh(tuple(points), tuple(zs))
    return _parse_grid(lines)


def _parse_grid(lines: Sequence[str]) -> Mesh | None:
    """A grid table: a header of column numbers, then `row z z z` lines (`=` / `.` for unprobed)."""
    points: list[tuple[float, float]] = []
    zs: list[float] = []
    for line in lines:
        row = _GRID_ROW.match(line.removeprefix("echo:"))
        if not row:
            continue
        cells = row.group(2).split()
        if all(re.fullmatch(r"\d+", c) for c in cells):
            continue  # the header of column numbers
        for col, cell in enumerate(cells):
            if re.fullmatch(_NUM, cell):
                points.append((float(col), float(row.group(1))))
                zs.append(float(cell))
    return Mesh(tuple(points), tuple(zs)) if zs else None


def format_mesh(mesh: Mesh) -> str:
    """A short report: how many points, lowest, highest, range, and each point."""
    low, high = min(mesh.z), max(mesh.z)
    head = (f"Bed mesh: {len(mesh.z)} points, lowest {low:+.3f} mm, highest {high:+.3f} mm, "
            f"range {high - low:.3f} mm")
    rows = [f"  X {x:7.1f}  Y {y:7.1f}  Z {z:+.3f}" for (x, y), z in zip(mesh.points, mesh.z, strict=True)]
    return "\n".join([head, *rows])


def parse_grbl_settings(lines: Iterable[str]) -> dict[int, float]:
    """`$$`'s `$N=value` lines."""
    settings: dict[int, float] = {}
    for line in lines:
        match = _GRBL_SETTING.match(line.strip())
        if match:
            settings[int(match.group(1))] = float(match.group(2))
    return settings


@dataclass(frozen=True, slots=True)
class GrblBuild:
    """`$I`: version, build string, and from `[OPT:...]` the planner blocks and RX buffer bytes."""

    version: str | None
    options: str | None = None
    planner_blocks: int | None = None
    rx_buffer: int | None = None


def parse_grbl_build(lines: Iterable[str]) -> GrblBuild:
    """Read `$I`'s `[VER:1.1h.20190825:]` and `[OPT:V,15,128]` lines."""
    version = options = None
    blocks = rx = None
    for line in lines:
        text = line.strip()
        ver = _GRBL_VER.match(text)
        if ver:
            version = ver.group(1)
        opt = _GRBL_OPT.match(text)
        if opt:
            options, blocks, rx = opt.group(1), int(opt.group(2)), int(opt.group(3))
    return GrblBuild(version, options, blocks, rx)
