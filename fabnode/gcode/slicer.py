"""What the slicer wrote into the file about its filament: type, density, diameter, and its own figures.

PrusaSlicer, SuperSlicer and OrcaSlicer end the file with their settings (`; filament_type = ABS`,
`; filament_density = 1.04`, `; filament_diameter = 1.75`) and state `; filament used [g] = 10.22`;
Cura heads it with `;Generated with Cura_SteamEngine`, `;Filament used: 4.08m` and, where the start
G-code writes it, `;MATERIAL:PLA` (UltiGCode's `;MATERIAL:` is a volume in mm3, not a name).
`read_slicer_settings(text)` finds them with `str.rfind`/`str.find` (no pass over the lines); a value out
of range is left out and said so (`ignored`, naming the line); `material_from_file` applies them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass, replace

from fabnode.machine.profile import Material

__all__ = ["FILAMENT_DENSITY", "SlicerSettings", "material_from_file", "read_slicer_settings"]

# Common filaments: density g/cm3 (what the slicers' own presets use); for a type named without one.
FILAMENT_DENSITY = {"PLA": 1.24, "PETG": 1.27, "ABS": 1.04, "ASA": 1.07, "TPU": 1.21, "PC": 1.20,
                    "NYLON": 1.14, "PA": 1.14, "HIPS": 1.04, "PVA": 1.23}  # fmt: skip
_DENSITY = (0.3, 25.0)  # g/cm3: foams to tungsten-filled filament
_DIAMETER = (0.5, 5.0)  # mm: 1.75 and 2.85 in practice
_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 +._-]{0,31}")
_SLICERS = (("PrusaSlicer", "PrusaSlicer"), ("SuperSlicer", "SuperSlicer"), ("OrcaSlicer", "OrcaSlicer"),
            ("BambuStudio", "BambuStudio"), ("Cura_SteamEngine", "Cura"))  # fmt: skip
_HEAD = 4096  # the slicer names itself in the first lines


@dataclass(frozen=True, slots=True)
class SlicerSettings:
    """The filament as the slicer described it (None where the file says nothing usable)."""

    slicer: str | None = None
    filament_type: str | None = None
    density_g_cm3: float | None = None
    diameter_mm: float | None = None
    filament_g: float | None = None  # the slicer's own figures, to compare with ours
    filament_mm: float | None = None
    ignored: tuple[str, ...] = ()  # "line N: key = value: why", for values out of range

    @property
    def found(self) -> bool:
        """Whether the file says anything about its filament."""
        return any(v is not None for v in (self.filament_type, self.density_g_cm3, self.diameter_mm))

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (null for what the file does not say)."""
        return {"slicer": self.slicer, "filament_type": self.filament_type,
                "density_g_cm3": self.density_g_cm3, "diameter_mm": self.diameter_mm,
                "filament_g": self.filament_g, "filament_mm": self.filament_mm,
                "ignored": list(self.ignored)}  # fmt: skip


def _find(text: str, keys: tuple[str, ...], last: bool = True) -> tuple[str, int] | None:
    """The value after the last (or first) `<key>` at a line start, and its 1-based line."""
    hits: list[tuple[int, str]] = []
    for key in keys:
        pos = text.rfind("\n" + key) if last else text.find("\n" + key)
        if pos >= 0:
            hits.append((pos + 1, key))
        elif text.startswith(key):
            hits.append((0, key))
    if not hits:
        return None
    start, key = max(hits) if last else min(hits)
    end = text.find("\n", start)
    value = text[start + len(key) : end if end >= 0 else len(text)].strip()
    return value, text.count("\n", 0, start) + 1


def _setting(text: str, name: str) -> tuple[str, int] | None:
    return _find(text, (f"; {name} = ", f"; {name} =", f"; {name}: ", f";{name}="))


def _number(found: tuple[str, int] | None, key: str, bounds: tuple[float, float], unit: str,
            ignored: list[str]) -> float | None:  # fmt: skip
    if found is None:
        return None
    raw, line = found
    first = re.split(r"[;,]", raw, maxsplit=1)[0].strip()  # one value per extruder: the first is used
    try:
        value = float(first)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        limits = f"{bounds[0]:g} and {bounds[1]:g} {unit}"
        ignored.append(f"line {line}: {key} = {raw[:40]} is not between {limits}: ignored")
        return None
    return value


def _figure(found: tuple[str, int] | None, scale: float = 1.0) -> float | None:
    if found is None:
        return None
    match = re.match(r"[\d.]+", found[0])
    try:
        value = float(match.group(0)) * scale if match else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _type(found: tuple[str, int] | None, ignored: list[str]) -> str | None:
    if found is None:
        return None
    raw, line = found
    first = re.split(r"[;,]", raw, maxsplit=1)[0].strip().strip('"')
    if not first or first.replace(".", "", 1).isdigit():
        return None  # UltiGCode's ;MATERIAL:1234 is a volume
    if not _TYPE.fullmatch(first):
        ignored.append(f"line {line}: filament type {raw[:40]!r} is not a material name")
        return None
    return first.upper()


def read_slicer_settings(text: str) -> SlicerSettings:
    """The filament settings and figures the slicer wrote into `text` (a whole G-code file)."""
    head = text[:_HEAD]
    slicer = next((name for marker, name in _SLICERS if marker in head), None)
    ignored: list[str] = []
    kind = _type(_setting(text, "filament_type") or _find(text, (";MATERIAL:",), last=False), ignored)
    density = _number(_setting(text, "filament_density"), "filament_density", _DENSITY, "g/cm3", ignored)
    diameter = _number(_setting(text, "filament_diameter"), "filament_diameter", _DIAMETER, "mm", ignored)
    grams = _figure(_find(text, ("; filament used [g] = ", "; total filament used [g] = ")))
    mm = _figure(_find(text, ("; filament used [mm] = ",)))
    if mm is None:
        mm = _figure(_find(text, (";Filament used: ",), last=False), 1000.0)  # Cura: metres
    return SlicerSettings(slicer, kind, density, diameter, grams, mm, tuple(ignored))


def material_from_file(
    base: Material, found: SlicerSettings, keep: Collection[str] = ()
) -> tuple[Material, str]:
    """`base` with the type, density and diameter the file states, except the fields in `keep`
    ("name", "density", "diameter": what the user gave); and which was used, in words."""
    material = base
    used: list[str] = []
    if found.filament_type is not None and "name" not in keep:
        material = replace(material, name=found.filament_type)
        used.append(found.filament_type)
        known = FILAMENT_DENSITY.get(found.filament_type)
        if known is not None and found.density_g_cm3 is None and "density" not in keep:
            material = replace(material, density_g_cm3=known)
            used.append(f"{known:g} g/cm3 (usual for {found.filament_type})")
    if found.density_g_cm3 is not None and "density" not in keep:
        material = replace(material, density_g_cm3=found.density_g_cm3)
        used.append(f"{found.density_g_cm3:g} g/cm3")
    if found.diameter_mm is not None and "diameter" not in keep:
        material = replace(material, diameter_mm=found.diameter_mm)
        used.append(f"{found.diameter_mm:g} mm")
    if not used:
        return material, "machine"
    return material, f"file ({found.slicer or 'slicer'}: {', '.join(used)})"
