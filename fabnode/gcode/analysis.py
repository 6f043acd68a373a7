"""G-code analysis before every job: material, laser time, estimated duration, box, temperatures, problems.

    analysis = analyze_file(path, profile)        # or analyze_lines(lines, profile)
    analysis.filament_mm, analysis.estimated_s, analysis.problems, analysis.to_json()

One pass over the file (fabnode.gcode.scan), a motion planner for the time (fabnode.gcode.estimate),
preflight checks against the machine (fabnode.gcode.preflight). Bytes are read in bulk, chunk by chunk
(fabnode.gcode.bulk_scan: the common lines with numpy, the rest line by line on the exact path, the same
figures bit for bit); `reference=True` reads every line on the exact path, for tests and benchmarks.

Material used by a job that stopped early: the figures are kept per file line, so a job cancelled after
line N (the last line the firmware acknowledged) records `analysis.filament_mm_at(N)`,
`analysis.laser_on_s_at(N)` and `analysis.cost_at(N)`; a streamer that counts commands rather than file
lines converts with `analysis.line_of_command(k)`. Each lookup is a binary search in compact arrays
filled during the same pass (one entry per move that changed the figure), so it costs microseconds.
"""

from __future__ import annotations

import io
import itertools
import math
from array import array
from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from fabnode.gcode.bulk_scan import BOM, BulkScanner, chunks_of, line_chunks
from fabnode.gcode.preflight import Problem
from fabnode.gcode.scan import Scanner
from fabnode.gcode.slicer import SlicerSettings, material_from_file, read_slicer_settings
from fabnode.machine.profile import GRBL, LASER, MARLIN, MachineProfile, Material

__all__ = [
    "Analysis",
    "Problem",
    "SlicerSettings",
    "analysis_of",
    "analyze_blocks",
    "analyze_bytes",
    "analyze_file",
    "analyze_lines",
    "guess_profile",
    "laser_profile",
    "looks_like_laser",
]

DEFAULT_PROFILE = MachineProfile()
READ_BYTES = 1 << 18  # analyze_file's read size: memory stays flat in the file's size
Taken = Mapping[str, tuple[array, array]]  # Scanner.take_series: name -> (file lines, running totals)


class SeriesStore(Protocol):
    """Where the per-line series go while a file is read (the node keeps them on disk, off the heap)."""

    def add(self, taken: Taken) -> None:
        """Append what Scanner.take_series handed out."""
        ...

    def views(self) -> Mapping[str, tuple[Sequence[int], Sequence[float]]]:
        """Everything added, per series name, for the lookups of an Analysis."""
        ...


@dataclass(frozen=True)
class _Series:
    """A running total sampled where it changed: `cum[i]` holds from file line `lines[i]` on (arrays,
    or memoryviews over a file a SeriesStore keeps)."""

    lines: Sequence[int] = field(default_factory=lambda: array("I"))
    cum: Sequence[float] = field(default_factory=lambda: array("d"))

    def at(self, line_no: int) -> float:
        i = bisect_right(self.lines, line_no)
        return float(self.cum[i - 1]) if i else 0.0


@dataclass(frozen=True)
class Analysis:
    """What a G-code file asks of the machine. Lengths in mm, times in s, temperatures in °C.

    `bbox_min`/`bbox_max` span every position a move reaches, printing moves and travels alike
    (arcs by their true extent), in machine coordinates; None when the file moves nothing.
    `estimated_s` counts moves (trapezoidal planner) and G4 dwells, and no heat-up time (M109/M190),
    as the slicer's own estimate does. `cost` is in the currency of the material's price: per kg of
    filament on a printer, per hour of beam time on a laser.
    """

    commands: int
    lines: int
    units: str
    filament_mm: float
    filament_g: float
    cost: float
    laser_on_s: float
    laser_distance_mm: float
    estimated_s: float
    bbox_min: tuple[float, float, float] | None
    bbox_max: tuple[float, float, float] | None
    max_hotend_c: float | None
    max_bed_c: float | None
    problems: tuple[Problem, ...]
    profile: MachineProfile = field(repr=False)
    # Where profile.material came from: "machine" (the profile as given) or "file (PrusaSlicer: ABS, ...)".
    material_source: str = "machine"
    slicer: SlicerSettings | None = None  # what the slicer wrote, when the file's material was asked for
    _filament: _Series = field(default_factory=_Series, repr=False, compare=False)
    _laser: _Series = field(default_factory=_Series, repr=False, compare=False)
    _time: _Series = field(default_factory=_Series, repr=False, compare=False)
    _command_lines: Sequence[int] = field(default_factory=lambda: array("I"), repr=False, compare=False)

    def filament_mm_at(self, line_no: int) -> float:
        """Net filament (mm) extruded by file lines 1..line_no; never below 0 (a first retraction
        before any extrusion uses no filament)."""
        return max(self._filament.at(line_no), 0.0)

    def filament_g_at(self, line_no: int) -> float:
        """Filament (g) extruded by file lines 1..line_no."""
        return _grams(self.profile, self.filament_mm_at(line_no))

    def laser_on_s_at(self, line_no: int) -> float:
        """Beam-on seconds spent by file lines 1..line_no."""
        return self._laser.at(line_no)

    def estimated_s_at(self, line_no: int) -> float:
        """Estimated seconds until the machine has run file lines 1..line_no (progress, time left)."""
        return self._time.at(line_no)

    def cost_at(self, line_no: int) -> float:
        """Material cost of file lines 1..line_no."""
        return _cost(self.profile, self.filament_mm_at(line_no), self.laser_on_s_at(line_no))

    def line_of_command(self, command_no: int) -> int:
        """The file line of the command_no-th command (1-based), as a host numbers what it sends."""
        if command_no < 1 or not self._command_lines:
            return 0
        return int(self._command_lines[min(command_no, len(self._command_lines)) - 1])

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict: the keys `fabnode analyze --json` prints."""
        bbox = None
        if self.bbox_min is not None and self.bbox_max is not None:
            bbox = {"min": [round(v, 4) for v in self.bbox_min], "max": [round(v, 4) for v in self.bbox_max]}
        return {
            "commands": self.commands,
            "lines": self.lines,
            "units": self.units,
            "filament_mm": round(self.filament_mm, 3),
            "filament_g": round(self.filament_g, 3),
            "cost": round(self.cost, 4),
            "laser_on_s": round(self.laser_on_s, 3),
            "laser_distance_mm": round(self.laser_distance_mm, 3),
            "estimated_s": round(self.estimated_s, 1),
            "bbox": bbox,
            "max_hotend_c": self.max_hotend_c,
            "max_bed_c": self.max_bed_c,
            "problems": [p.to_json() for p in self.problems],
            "machine": {
                "name": self.profile.name,
                "kind": self.profile.kind,
                "firmware": self.profile.firmware,
            },
            "material": self.profile.material.name,
            "material_source": self.material_source,
            "density_g_cm3": self.profile.material.density_g_cm3,
            "diameter_mm": self.profile.material.diameter_mm,
            "slicer": self.slicer.to_json() if self.slicer is not None else None,
        }


def _grams(profile: MachineProfile, mm: float) -> float:
    radius = profile.material.diameter_mm / 2.0
    return math.pi * radius * radius * mm / 1000.0 * profile.material.density_g_cm3


def _cost(profile: MachineProfile, filament_mm: float, laser_s: float) -> float:
    if profile.kind == LASER:
        return laser_s / 3600.0 * profile.material.price_per_laser_hour
    return _grams(profile, filament_mm) / 1000.0 * profile.material.price_per_kg


def analyze_lines(
    lines: Iterable[str], profile: MachineProfile = DEFAULT_PROFILE, stop_after_line: int | None = None
) -> Analysis:
    """Analyse G-code lines (with or without line endings); `stop_after_line` reads only lines 1..N."""
    scanner = Scanner(profile)
    if stop_after_line is not None:
        lines = itertools.islice(lines, max(stop_after_line, 0))
    scanner.feed_lines(lines)
    return _result(scanner, whole=stop_after_line is None)


def analyze_bytes(
    data: bytes,
    profile: MachineProfile = DEFAULT_PROFILE,
    *,
    file_material: bool = False,
    keep_material: Collection[str] = (),
    reference: bool = False,
) -> tuple[Analysis, str]:
    """Analyse a file's bytes; also return the text exactly as analysed (byte-order mark dropped).

    The caller streams that same text, so what runs is what preflight checked. With `file_material`,
    a printer's filament type, density and diameter are the ones the slicer wrote into the file
    (fabnode.gcode.slicer), except the fields named in `keep_material` ("name", "density", "diameter":
    what the user gave); `material_source` says which were used. `reference`: the exact path only.
    """
    scanner = Scanner(profile) if reference else BulkScanner(profile)
    text = _text_of(data, scanner)
    if isinstance(scanner, BulkScanner):
        for chunk in chunks_of(data, len(BOM) if data.startswith(BOM) else 0):
            scanner.feed_chunk(chunk)
    else:
        scanner.feed_lines(io.StringIO(text))
    if not file_material or profile.kind == LASER:
        return _result(scanner), text
    found = read_slicer_settings(text)
    material, source = material_from_file(profile.material, found, keep_material)
    return _result(scanner, replace(profile, material=material), source, found), text


def analyze_file(
    path: str | Path,
    profile: MachineProfile = DEFAULT_PROFILE,
    *,
    file_material: bool = False,
    keep_material: Collection[str] = (),
    reference: bool = False,
    per_line: bool = True,
) -> Analysis:
    """Analyse a G-code file. OSError when it can't be read; a binary file is a problem, not an error.
    `file_material`, `keep_material` and `reference` as in `analyze_bytes`; without them the file is
    read block by block; `per_line=False` keeps only the totals (no `*_at` lookups), so memory stays
    flat in the file's size (an upload of any size)."""
    if file_material or reference:  # the slicer's settings and the exact path want the whole text
        data = Path(path).read_bytes()
        return analyze_bytes(data, profile, file_material=file_material, keep_material=keep_material,
                             reference=reference)[0]  # fmt: skip
    with open(path, "rb") as f:
        return analyze_blocks(iter(lambda: f.read(READ_BYTES), b""), profile,
                              None if per_line else _TotalsOnly())  # fmt: skip


def analyze_blocks(blocks: Iterable[bytes], profile: MachineProfile, store: SeriesStore | None = None
                   ) -> Analysis:  # fmt: skip
    """Analyse a file given as its blocks in order (any size, cut anywhere), as analyze_bytes would the
    whole: a byte-order mark skipped, the first NUL or non-UTF-8 byte one problem at its line. With
    `store`, the per-line series go there as they come."""
    scanner = BulkScanner(profile)
    offset, text_checked = 0, False  # offset: of the chunk's first byte in the file

    def without_bom() -> Iterator[bytes]:
        nonlocal offset
        head, decided = b"", False  # the first bytes, gathered until they tell a byte-order mark
        for block in blocks:
            if not decided:
                head += block
                if len(head) < len(BOM) and BOM.startswith(head):
                    continue
                decided = True
                if head.startswith(BOM):
                    head, offset = head[len(BOM):], len(BOM)
                block = head
            yield block
        if not decided:
            yield head  # the whole file is shorter than a byte-order mark

    for chunk in line_chunks(without_bom()):
        bad, why = -1, ""
        try:
            if not chunk.isascii():
                chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = exc.start
            why = f"byte 0x{chunk[bad]:02x} at offset {offset + bad} is not UTF-8 text"
        nul = chunk.find(b"\0")
        if nul >= 0 and (bad < 0 or nul < bad):
            bad, why = nul, f"it contains a NUL byte (offset {offset + nul})"
        if bad >= 0 and not text_checked:  # reported once, at the first such line (as analyze_bytes)
            text_checked = True
            scanner.preflight.not_text(scanner.lines + chunk.count(b"\n", 0, bad) + 1, why)
        scanner.feed_chunk(chunk)
        if store is not None:
            store.add(scanner.take_series())
        offset += len(chunk)
    return analysis_of(scanner, store)


class _TotalsOnly:
    """A SeriesStore that keeps nothing: the analysis's totals without its per-line lookups."""

    def add(self, taken: Taken) -> None:
        """Drop what was handed out."""

    def views(self) -> Mapping[str, tuple[Sequence[int], Sequence[float]]]:
        """No series: every `*_at` lookup reads 0."""
        return {name: (array("I"), array("d")) for name in ("filament", "laser", "time", "commands")}


def _text_of(data: bytes, scanner: Scanner) -> str:
    """Decode the file; a NUL byte or bytes that are not UTF-8 make one problem at the first such line."""
    nul = data.find(b"\0")
    skip = len(BOM) if data.startswith(BOM) else 0  # a byte-order mark some editors write
    try:
        text, bad, why = data[skip:].decode("utf-8"), -1, ""
    except UnicodeDecodeError as exc:
        text, bad = data[skip:].decode("utf-8", errors="replace"), exc.start + skip
        why = f"byte 0x{data[bad]:02x} at offset {bad} is not UTF-8 text"
    if nul >= 0 and (bad < 0 or nul < bad):
        bad, why = nul, f"it contains a NUL byte (offset {nul})"
    if bad >= 0:
        scanner.preflight.not_text(data.count(b"\n", 0, bad) + 1, why)
    return text


def analysis_of(scanner: Scanner, store: SeriesStore | None = None) -> Analysis:
    """The Analysis of a scanner fed a whole file (its last step); with `store`, the per-line series
    handed out along the way (Scanner.take_series) and the rest are kept there."""
    return _result(scanner, store=store)


def _result(
    scanner: Scanner,
    profile: MachineProfile | None = None,
    material_source: str = "machine",
    slicer: SlicerSettings | None = None,
    whole: bool = True,
    store: SeriesStore | None = None,
) -> Analysis:
    scanner.finish()
    if store is not None:
        store.add(scanner.take_series())
        views = store.views()
        series = {name: _Series(*views[name]) for name in ("filament", "laser", "time")}
        command_lines = views["commands"][0]
    else:
        planner = scanner.planner
        series = {"filament": _Series(scanner.filament_lines, scanner.filament_cum),
                  "laser": _Series(planner.laser_lines, planner.laser_cum),
                  "time": _Series(planner.time_lines, planner.time_cum)}  # fmt: skip
        command_lines = scanner.command_lines
    if whole and scanner.commands == 0:
        scanner.preflight.empty(scanner.lines)
    planner = scanner.planner
    profile = profile or scanner.profile
    moved = scanner.bbox_min[0] != math.inf
    units = (
        "mixed" if len(scanner.units_seen) > 1 else (scanner.units_seen.pop() if scanner.units_seen else "mm")
    )
    return Analysis(
        commands=scanner.commands,
        lines=scanner.lines,
        units=units,
        filament_mm=scanner.filament_mm,
        filament_g=_grams(profile, scanner.filament_mm),
        cost=_cost(profile, scanner.filament_mm, planner.laser_s),
        laser_on_s=planner.laser_s,
        laser_distance_mm=scanner.laser_mm,
        estimated_s=planner.total_s,
        bbox_min=(scanner.bbox_min[0], scanner.bbox_min[1], scanner.bbox_min[2]) if moved else None,
        bbox_max=(scanner.bbox_max[0], scanner.bbox_max[1], scanner.bbox_max[2]) if moved else None,
        max_hotend_c=scanner.max_hotend,
        max_bed_c=scanner.max_bed,
        problems=tuple(scanner.preflight.finish()),
        profile=profile,
        material_source=material_source,
        slicer=slicer,
        _filament=series["filament"],
        _laser=series["laser"],
        _time=series["time"],
        _command_lines=command_lines,
    )


def laser_profile(**changes: object) -> MachineProfile:
    """A GRBL diode laser: junction deviation planner, 80-byte line buffer, S up to 1000 ($30).

    Its volume is wide on purpose: laser jobs are written in work coordinates (G54) whose origin the
    operator sets on the bed, so only runaway coordinates are flagged unless the lab's config says more.
    """
    base = MachineProfile(
        name="laser",
        kind=LASER,
        firmware=GRBL,
        volume_min_mm=(-400.0, -400.0, -100.0),
        volume_max_mm=(400.0, 400.0, 100.0),
        max_feedrate_mm_s=(100.0, 100.0, 10.0, 0.0),
        max_accel_mm_s2=(1000.0, 1000.0, 100.0, 0.0),
        print_accel_mm_s2=1000.0,
        retract_accel_mm_s2=1000.0,
        travel_accel_mm_s2=1000.0,
        junction_deviation_mm=0.01,
        forbidden_commands=frozenset({"$RST=*", "$RST=$", "$RST=#"}),
        max_line_length=80,
        material=Material("sheet", price_per_kg=0.0),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def looks_like_laser(head: str) -> bool:
    """True when the text turns a spindle/laser on (M3/M4) and never sets a hotend, bed or extrusion."""
    has_spindle = has_printer = False
    for raw in head.splitlines():
        words = raw.split(";", 1)[0].upper().split()
        if not words:
            continue
        cmd = words[0]
        if cmd in ("M3", "M4", "M03", "M04"):
            has_spindle = True
        elif cmd in ("M104", "M109", "M140", "M190", "M82", "M83") or any(w[0] == "E" for w in words[1:]):
            has_printer = True
    return has_spindle and not has_printer


def guess_profile(head: str, firmware: str | None = None) -> MachineProfile:
    """The default machine for a file: `firmware` when given (grbl: laser, marlin: printer), else sniffed."""
    if firmware == GRBL or (firmware is None and looks_like_laser(head)):
        return laser_profile()
    if firmware not in (None, MARLIN):
        raise ValueError(f"unknown firmware {firmware!r}: expected {MARLIN} or {GRBL}")
    return DEFAULT_PROFILE
