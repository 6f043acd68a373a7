"""Real sliced and CAM G-code against the slicer's own figures, read from each file's end comments."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest

from fabnode.gcode.analysis import analyze_file, analyze_lines, guess_profile, laser_profile
from fabnode.machine.profile import MachineProfile
from tests.conftest import gcode_path

PRUSA_FILES = ["prusaslicer-benchy.gcode", "prusaslicer-cubhelix.gcode", "prusaslicer-vase.gcode"]
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def slicer_figures(path: Path) -> tuple[float, float]:
    """(filament mm, estimated s) as the slicer wrote them in the file's comments."""
    tail = path.read_text()[-60_000:]
    filament = re.search(r"^; filament used \[mm\] = ([\d.]+)", tail, re.M)
    estimate = re.search(r"^; estimated printing time \(normal mode\) = (.+)$", tail, re.M)
    assert filament and estimate, f"{path.name} has no slicer figures"
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([dhms])", estimate.group(1)))
    return float(filament.group(1)), float(seconds)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", PRUSA_FILES)
def test_prusaslicer_filament_within_1_percent_and_time_within_10(name: str) -> None:
    path = gcode_path(name)
    filament, seconds = slicer_figures(path)
    a = analyze_file(path, MachineProfile())
    assert a.filament_mm == pytest.approx(filament, rel=0.01)
    assert a.estimated_s == pytest.approx(seconds, rel=0.10)
    assert a.filament_mm_at(a.lines) == pytest.approx(a.filament_mm)
    assert 0.0 < a.filament_mm_at(a.lines // 2) < a.filament_mm
    assert a.estimated_s_at(a.lines) == pytest.approx(a.estimated_s)


def test_cubhelix_box_and_temperatures_match_the_file() -> None:
    a = analyze_file(gcode_path("prusaslicer-cubhelix.gcode"))
    # The start code's purge line runs at Y-2 (inside the MINI's -4 mm margin); the park move is X170 Y170.
    assert a.bbox_min is not None and a.bbox_max is not None
    assert a.bbox_min[1] == pytest.approx(-2.0)
    assert a.bbox_max[:2] == pytest.approx((170.0, 170.0))
    assert (a.max_hotend_c, a.max_bed_c) == (230.0, 60.0)
    assert a.problems == ()


def test_vase_end_code_goes_past_a_180_mm_bed() -> None:
    # "present print" moves to Y = 0.85 * 220: the file was sliced for a bigger printer than a MINI.
    path = gcode_path("prusaslicer-vase.gcode")
    line_no = next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("G1 X5 Y187")
    )
    a = analyze_file(path, MachineProfile())
    assert [(p.line, "Y187.000" in p.message) for p in a.problems] == [(line_no, True)]
    assert analyze_file(path, MachineProfile(volume_max_mm=(220.0, 220.0, 220.0))).problems == ()


def test_laser_jsdc_beam_time_and_distance() -> None:
    path = gcode_path("laser-jsdc.gcode")
    profile = guess_profile(path.read_text())
    assert profile.kind == "laser"
    a = analyze_file(path, profile)
    assert a.laser_on_s > 0 and a.laser_distance_mm > 0
    assert a.filament_mm == 0.0
    assert a.problems == ()


def _first_path(lines: list[str]) -> list[str]:
    """From the start to the first M5: one rapid, M3 S80, G4 and the cut at F100."""
    end = next(i for i, line in enumerate(lines) if line.startswith("M5"))
    return lines[: end + 1]


def test_laser_jsdc_first_path_by_hand() -> None:
    lines = gcode_path("laser-jsdc.gcode").read_text().splitlines()
    excerpt = _first_path(lines)
    # Sum the cut by hand: every G1 after M3 S80 with S > 0, from the point the rapid reached.
    points = [
        (float(m.group(1)), float(m.group(2)))
        for line in excerpt
        if (m := re.match(r"G1 X(\S+) Y(\S+)", line))
    ]
    cut = sum(math.dist(a, b) for a, b in itertools.pairwise(points))
    a = analyze_lines(excerpt, laser_profile())
    assert a.laser_distance_mm == pytest.approx(cut, rel=1e-9)
    # At F100 (1.67 mm/s) acceleration hardly matters: time ~ distance / feed.
    assert a.laser_on_s == pytest.approx(cut / (100 / 60), rel=0.01)
    assert a.estimated_s > a.laser_on_s + 0.5  # the rapid and the G4 P0.5 dwell come on top


def test_laser_tball_engrave_never_fires_the_beam_at_s0() -> None:
    path = gcode_path("laser-tball-engrave.gcode")
    text = path.read_text()
    a = analyze_file(path, laser_profile())
    # Every M3 in this file sets S0: GRBL keeps the beam off, so no beam time and no cut.
    assert re.findall(r"^M3.*$", text, re.M) == ["M3 S0", "M3 S0"]
    assert (a.laser_on_s, a.laser_distance_mm) == (0.0, 0.0)
    assert a.estimated_s > 0
    # The same paths with power set do cut: distance and time are then positive and consistent.
    powered = analyze_lines(text.replace("M3 S0", "M3 S300").splitlines(), laser_profile())
    assert powered.laser_distance_mm > 100
    assert powered.laser_on_s == pytest.approx(powered.laser_distance_mm / (100 / 60), rel=0.05)
    assert 0 < powered.laser_on_s_at(a.lines // 2) < powered.laser_on_s
