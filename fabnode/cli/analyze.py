"""`fabnode analyze FILE`: what a G-code file will use and take, and what in it the machine must not run.

The machine is the node's own with `--config FILE` (or $FABNODE_CONFIG); else a printer (Marlin) unless
`--firmware grbl` or the file looks like a laser job (M3/M4 and no hotend, bed or E words): then a GRBL
laser. Flags override the machine's limits. The filament is what the slicer wrote into the file
(type, density, diameter) unless `--material`, `--density` or `--diameter` say otherwise, and the
report says which was used. Exit codes: 0 no problems, 1 problems found (each names its line), 2 the
file or the config can't be read.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from fabnode.gcode.analysis import Analysis, analyze_file, guess_profile
from fabnode.gcode.slicer import FILAMENT_DENSITY
from fabnode.machine.profile import LASER, MachineProfile, Material

# Common filaments: density g/cm3 (what the slicers' own presets use).
MATERIALS = FILAMENT_DENSITY
_SNIFF_BYTES = 256 * 1024


def _triple(text: str, flag: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{flag} wants X,Y,Z in mm, e.g. 180,180,180; got {text!r}") from None
    return (x, y, z)


def _material(
    profile: MachineProfile,
    name: str | None,
    density: float | None,
    diameter: float | None,
    price: float | None,
) -> Material:
    base = profile.material
    if price is not None:
        field = "price_per_laser_hour" if profile.kind == LASER else "price_per_kg"
        base = replace(base, **{field: price})  # type: ignore[arg-type]
    if name is not None and profile.kind == LASER:
        return replace(base, name=name)  # a sheet: priced per hour of beam, its density does not matter
    if name is not None:
        key = name.upper()
        if key not in MATERIALS and density is None:
            known = ", ".join(sorted(MATERIALS))
            raise typer.BadParameter(f"unknown material {name!r}: use one of {known}, or give --density")
        base = replace(base, name=key, density_g_cm3=MATERIALS.get(key, base.density_g_cm3))
    if density is not None:
        base = replace(base, density_g_cm3=density)
    if diameter is not None:
        base = replace(base, diameter_mm=diameter)
    return base


def hms(seconds: float) -> str:
    """1h 2m 3s as 1:02:03."""
    total = round(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _material_source(source: str) -> str:
    """Where the material's figures came from, in words: the file's slicer settings or the machine's."""
    if source.startswith("file (") and source.endswith(")"):
        return "as the file says: " + source[len("file ("):-1]
    return "the machine's material: the file names none" if source == "machine" else source


def summary(path: Path, a: Analysis) -> str:
    """The readable report."""
    p = a.profile
    out = [f"{path} ({p.name}: {p.kind}, {p.firmware}; material {p.material.name})"]
    out.append(f"  commands        {a.commands} ({a.lines} lines, units {a.units})")
    if p.kind != LASER:
        m = p.material
        out.append(f"  material        {m.name}, {m.density_g_cm3:g} g/cm3, {m.diameter_mm:g} mm "
                   f"({_material_source(a.material_source)})")
        said = a.slicer
        if said is not None and (said.filament_g is not None or said.filament_mm is not None):
            grams = "-" if said.filament_g is None else f"{said.filament_g:.2f} g"
            mm = "-" if said.filament_mm is None else f"{said.filament_mm:.1f} mm"
            out.append(f"  slicer says     {grams}, {mm}")
        if said is not None:
            out.extend(f"    ignored {why}" for why in said.ignored)
    if p.kind == LASER or a.laser_on_s:
        out.append(f"  laser           {hms(a.laser_on_s)} on, {a.laser_distance_mm:.1f} mm cut")
    if p.kind != LASER or a.filament_mm:
        out.append(f"  filament        {a.filament_mm:.1f} mm, {a.filament_g:.2f} g")
    out.append(f"  cost            {a.cost:.2f}")
    out.append(f"  estimated time  {hms(a.estimated_s)}")
    if a.bbox_min is not None and a.bbox_max is not None:
        spans = "  ".join(
            f"{n} {lo:.2f}..{hi:.2f}" for n, lo, hi in zip("XYZ", a.bbox_min, a.bbox_max, strict=True)
        )
        out.append(f"  box (mm)        {spans}")
    hot = "-" if a.max_hotend_c is None else f"{a.max_hotend_c:g} °C"
    bed = "-" if a.max_bed_c is None else f"{a.max_bed_c:g} °C"
    out.append(f"  temperatures    hotend {hot}, bed {bed}")
    out.append(f"  problems        {len(a.problems) or 'none'}")
    out.extend(f"    line {pr.line}: {pr.message}" for pr in a.problems)
    return "\n".join(out)


def _profile(path: Path, firmware: str | None, changes: dict[str, object]) -> MachineProfile:
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES).decode("utf-8", errors="replace")
    try:
        profile = guess_profile(head, firmware)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return replace(profile, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def _node_profile(
    config: Path | None, firmware: str | None, changes: dict[str, object]
) -> MachineProfile | None:
    """The node's own machine from `--config` (or $FABNODE_CONFIG unless `--firmware` names another
    machine), flags applied; None without one. A config given on the line must be readable; one from
    the environment that is not (a member without read access to it) is passed over, saying so."""
    from fabnode.config.settings import ConfigError, load_config
    from fabnode.paths import resolve_config

    path = config if config is not None else (None if firmware else resolve_config(None))
    if path is None:
        return None
    try:
        profile = load_config(path).machine
    except (ConfigError, OSError) as exc:
        why = str(exc) if isinstance(exc, ConfigError) else f"cannot read {path}: {exc.strerror or exc}"
        if config is None:
            typer.echo(f"fabnode: ignoring $FABNODE_CONFIG: {why}", err=True)
            return None
        typer.echo(f"fabnode: {why}", err=True)
        raise typer.Exit(2) from None
    return replace(profile, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def analyze(
    file: Annotated[Path, typer.Argument(help="G-code file to analyse.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the report.")
    ] = False,
    firmware: Annotated[
        str | None, typer.Option(help="marlin (printer) or grbl (laser); default: sniffed.")
    ] = None,
    material: Annotated[str | None, typer.Option(help=f"Filament: {', '.join(MATERIALS)}.")] = None,
    density: Annotated[float | None, typer.Option(help="Filament density, g/cm3.")] = None,
    diameter: Annotated[float | None, typer.Option(help="Filament diameter, mm.")] = None,
    price: Annotated[
        float | None, typer.Option(help="Price per kg of filament, or per hour of laser.")
    ] = None,
    max_hotend: Annotated[float | None, typer.Option(help="Highest hotend temperature allowed, °C.")] = None,
    max_bed: Annotated[float | None, typer.Option(help="Highest bed temperature allowed, °C.")] = None,
    volume: Annotated[str | None, typer.Option(help="Reachable volume maximum X,Y,Z in mm.")] = None,
    volume_min: Annotated[str | None, typer.Option(help="Reachable volume minimum X,Y,Z in mm.")] = None,
    max_line_length: Annotated[int | None, typer.Option(help="Firmware line buffer, bytes.")] = None,
    laser_max_power: Annotated[float | None, typer.Option(help="Highest laser power S (GRBL $30).")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Check against this node's machine (default: $FABNODE_CONFIG)."),
    ] = None,
) -> None:
    """Filament, laser time, estimated time, box, temperatures and problems of a G-code file."""
    changes: dict[str, object] = {
        "max_hotend_c": max_hotend,
        "max_bed_c": max_bed,
        "volume_max_mm": _triple(volume, "--volume") if volume else None,
        "volume_min_mm": _triple(volume_min, "--volume-min") if volume_min else None,
        "max_line_length": max_line_length,
        "laser_max_power": laser_max_power,
    }
    keep = {"name"} if material is not None else set()
    keep |= {"density"} if material is not None or density is not None else set()
    keep |= {"diameter"} if diameter is not None else set()
    try:
        profile = (_node_profile(config, firmware, changes)
                   or _profile(file, firmware and firmware.lower(), changes))
        profile = replace(profile, material=_material(profile, material, density, diameter, price))
        result = analyze_file(file, profile, file_material=True, keep_material=keep)
    except OSError as exc:
        typer.echo(f"fabnode: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.to_json()))
    else:
        typer.echo(summary(file, result))
    raise typer.Exit(1 if result.problems else 0)


def register(app: typer.Typer) -> None:
    """Add this module's verbs to the app."""
    app.command("analyze")(analyze)
