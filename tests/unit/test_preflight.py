"""Preflight problems: each names the file line a technician has to look at."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fabnode.gcode.analysis import analyze_file, analyze_lines, laser_profile
from fabnode.gcode.preflight import MAX_PER_KIND, Problem
from fabnode.machine.profile import MachineProfile

PRINTER = MachineProfile(volume_min_mm=(0.0, -4.0, 0.0), volume_max_mm=(180.0, 180.0, 180.0))


def problems(text: str, profile: MachineProfile = PRINTER) -> list[Problem]:
    return list(analyze_lines(text.splitlines(), profile).problems)


def test_a_clean_file_has_no_problems() -> None:
    assert problems("G28\nM104 S215\nM140 S60\nG1 X10 Y10 Z0.2 F3000\nG1 X170 Y170 E5") == []


def test_outside_the_volume_reports_the_first_line_per_axis_and_side() -> None:
    found = problems("G1 X10\nG1 X200\nG1 X250\nG1 Y-10\nG1 Y-20 Z190")
    assert [p.line for p in found] == [2, 4, 5]
    assert "X200.000" in found[0].message and "maximum 180" in found[0].message
    assert "Y-10.000" in found[1].message and "minimum -4" in found[1].message
    assert "Z190.000" in found[2].message


def test_relative_moves_are_checked_where_they_end() -> None:
    found = problems("G91\nG1 X100\nG1 X100")
    assert [p.line for p in found] == [3]


def test_an_arc_bulging_out_of_the_volume_is_caught() -> None:
    # Ends inside the bed, but the counter-clockwise half-circle about (90, 5) dips to Y = -80.
    found = problems("G1 X5 Y5\nG3 X175 Y5 I85 J0")
    assert [p.line for p in found] == [2]
    assert "Y" in found[0].message


def test_hotend_and_bed_above_the_machine_maximum() -> None:
    found = problems("M104 S200\nM109 S300\nM140 S60\nM190 R120", replace(PRINTER, max_bed_c=110.0))
    assert [p.line for p in found] == [2, 4]
    assert "300" in found[0].message and "280" in found[0].message
    assert "Bed" in found[1].message and "120" in found[1].message


def test_forbidden_commands_name_their_line() -> None:
    found = problems("G28\nM500\nG1 X1\nm502 ; factory reset")
    assert [(p.line, p.message.split(":")[0]) for p in found] == [
        (2, "Forbidden command M500"),
        (4, "Forbidden command M502"),
    ]


def test_marlin_line_length_counts_the_host_framing() -> None:
    # Command 1 is sent as "N1 <text>*<checksum>": 3 + len + up to 4 characters; Marlin keeps 95.
    fits = "M117 " + "A" * 83  # 88 characters: 3 + 88 + 4 = 95
    too_long = "M117 " + "A" * 84  # 89: 96
    assert problems(fits) == []
    found = problems(fits + "\n" + too_long + " ; a comment does not count")
    assert [p.line for p in found] == [2]
    assert "97 characters" in found[0].message or "96 characters" in found[0].message


def test_grbl_line_length_ignores_spaces_and_comments() -> None:
    laser = laser_profile()
    spaced = "G1 " + " ".join(["X1.00000"] * 9)  # 83 characters, 73 without spaces
    assert problems(spaced + " (a long comment that GRBL strips before counting)", laser) == []
    found = problems("G21\n" + "G1X1." + "0" * 75, laser)  # 80 without spaces; GRBL keeps 79
    assert [p.line for p in found] == [2]


def test_laser_power_above_the_maximum() -> None:
    found = problems("M3 S500\nG1 X1 F600\nG1 X2 S1200\nM4 S2000", laser_profile())
    assert [p.line for p in found] == [3, 4]
    assert "S1200" in found[0].message and "S1000" in found[0].message


def test_printer_files_are_not_checked_for_laser_power() -> None:
    assert problems("M3 S5000") == []


def test_a_nul_byte_is_one_problem_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "job.gcode"
    path.write_bytes(b"G21\nG1 X1\nG1 X2\x00\x00\nG1\x00 X3\n")
    found = list(analyze_file(path, PRINTER).problems)
    assert [p.line for p in found] == [3]
    assert "NUL" in found[0].message


def test_bytes_that_are_not_utf8_are_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "job.gcode"
    path.write_bytes(b"\xef\xbb\xbfG21\n; caf\xe9\nG1 X1\n\xff\xfe\n")  # BOM 3 + 4 + 5: offset 12
    found = list(analyze_file(path, PRINTER).problems)
    assert [p.line for p in found] == [2]
    assert "byte 0xe9 at offset 12 is not UTF-8" in found[0].message


def test_one_problem_repeated_on_many_lines_is_summarised() -> None:
    text = "\n".join("M500" for _ in range(MAX_PER_KIND + 5))
    found = problems(text)
    assert len(found) == MAX_PER_KIND + 1
    assert "5 more" in found[-1].message
    assert found[-1].line == MAX_PER_KIND + 5


def test_grbl_settings_reset_is_forbidden_on_the_laser() -> None:
    found = problems("G21\n$rst=*\nG1 X1 F100", laser_profile())
    assert [(p.line, "$RST=*" in p.message) for p in found] == [(2, True)]
