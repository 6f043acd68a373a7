"""Preflight reads numbers and commands as the firmware does: NaN, infinities, exponents and negative
extrusion are problems at their line; `M 500` is M500; a laser job may not write GRBL's settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabnode.cli import app
from fabnode.gcode.analysis import analyze_lines, laser_profile
from fabnode.gcode.preflight import Problem
from fabnode.machine.profile import MachineProfile

PRINTER = MachineProfile(volume_min_mm=(0.0, -4.0, 0.0), volume_max_mm=(180.0, 180.0, 180.0))


def problems(text: str, profile: MachineProfile = PRINTER) -> list[Problem]:
    return list(analyze_lines(text.splitlines(), profile).problems)


@pytest.mark.parametrize(
    "line",
    [
        "G1 X10 ENAN",
        "G1 Xnan Y5",
        "G1 X10 E1e999",
        "G1 X1e308",
        "G1 Xinf",
        "G1 X-INFINITY",
        "G1 X1_0",
        "G1 X" + "9" * 40,
        "M104 SNAN",
        "G4 P1e12",
    ],
)
def test_a_number_the_firmware_cannot_take_is_a_problem_at_its_line(line: str) -> None:
    found = problems(f"G28\nM83\n{line}\nG1 X20 E1")
    assert [(p.line, p.message.split(":")[0]) for p in found] == [(3, "Bad number")], found
    result = analyze_lines(["G28", "M83", line, "G1 X20 E1"], PRINTER)
    figures = (result.filament_mm, result.filament_g, result.cost, result.estimated_s)
    assert all(math.isfinite(v) for v in figures), figures  # the bad line moved nothing
    assert result.bbox_max is not None and all(math.isfinite(v) for v in result.bbox_max)


def test_a_negative_extrusion_total_is_a_problem_and_never_a_negative_figure() -> None:
    found = problems("M83\nG1 X10 E1\nG1 X20 E-3\nG1 X30")
    assert [(p.line, p.message.split(":")[0]) for p in found] == [(3, "Negative extrusion")]
    assert "-2.000 mm" in found[0].message
    result = analyze_lines("M83\nG1 E-2\nG1 X10 E5".splitlines(), PRINTER)
    assert result.problems == () and result.filament_mm == 3.0
    assert result.filament_mm_at(2) == 0.0 and result.filament_g_at(2) == 0.0 and result.cost_at(2) == 0.0


def test_retracting_back_to_zero_is_not_negative() -> None:
    assert problems("M83\nG1 X10 E0.1\nG1 E-0.1\nG1 E0.3\nG1 E-0.3") == []


@pytest.mark.parametrize("line", ["M 500", "M500S0", "M500.1", "m 502", "M0500", "M 502 ; reset", "M500P1"])
def test_forbidden_commands_match_as_marlin_reads_them(line: str) -> None:
    found = problems(f"G28\n{line}\nG1 X1")
    assert [p.line for p in found] == [2], found
    assert found[0].message.startswith(("Forbidden command M500", "Forbidden command M502"))


def test_commands_spelt_as_marlin_reads_them_are_checked_like_any_other() -> None:
    found = problems("G28\nG 1 X500\nM 104 S400")
    assert [p.message.split(":")[0] for p in found] == [
        "Outside the build volume",
        "Hotend temperature 400 °C is above the machine's maximum 280 °C",
    ]
    assert problems("G28\nG92.1\nG1 X10") == []  # a subcode is another command: G92.1 is not G92


@pytest.mark.parametrize(
    ("line", "write"),
    [
        ("$32=0", "$32="),
        ("$110=5000", "$110="),
        ("$N0=G20", "$N0="),
        ("$N1 = M3 S1000", "$N1="),
        ("$RST=$", "$RST="),
        ("$I=stolen", "$I="),
    ],
)
def test_a_laser_job_may_not_write_grbls_settings(line: str, write: str) -> None:
    profile = laser_profile(forbidden_commands=frozenset({"M500", "M502", "M997"}))  # a printer's list
    found = problems(f"G21\n{line}\nG1 X1 F100", profile)
    assert [p.line for p in found] == [2], found
    assert found[0].message.startswith(f"Forbidden command {write}: a job may not write GRBL's settings")


def test_grbl_reads_and_actions_stay_allowed() -> None:
    assert problems("$H\n$X\n$J=G91 X1 F100\n$$\n$G\n$#\nG21\nG1 X1 F100", laser_profile()) == []


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("M104 S200", "error:20, unsupported command (M104)"),
        ("G29", "error:20, unsupported command (G29)"),
        ("G1 X1 E2", "error:20, unsupported command (letter E)"),
        ("!", "error:1, expected a command letter"),
        ("G1 X", "error:2, bad number format (X has no value)"),
    ],
)
def test_lines_grbl_refuses_are_problems_on_a_laser(line: str, why: str) -> None:
    found = problems(f"G21\n{line}\nG1 X1 F100", laser_profile())
    assert [(p.line, p.message) for p in found] == [(2, f"GRBL refuses {line!r}: {why}")]


def test_a_percent_delimiter_is_no_command_and_no_problem() -> None:
    result = analyze_lines(["%", "G21", "G1 X1 F100", "%"], laser_profile())
    assert result.problems == () and result.commands == 2 and result.line_of_command(1) == 2


def test_analyze_reports_a_huge_coordinate_instead_of_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "job.gcode"
    path.write_text("G28\nG1 X1e308 F600\nG1 X10\n")
    for args in ([], ["--json"]):
        result = CliRunner().invoke(app, ["analyze", str(path), *args])
        assert isinstance(result.exception, SystemExit | None), result.exception  # no traceback
        assert result.exit_code == 1, result.output
        assert "Bad number: X1E308 is not a number the firmware reads" in result.output
    assert [p["line"] for p in json.loads(result.stdout)["problems"]] == [2]


def test_a_number_glued_to_e_is_refused_saying_how_the_firmware_reads_it() -> None:
    from fabnode.gcode.dialect import bad_number

    why = bad_number(["G1", "X10.5E1.2"])
    assert why is not None and "exponent" in why and "put a space before E" in why
    assert bad_number(["G1", "X10.5", "E1.2"]) is None
