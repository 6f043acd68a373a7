"""compact_for_wire: fewer bytes per line, read the same by Marlin's parser and GRBL's."""

from __future__ import annotations

import pytest

from drivers.gcode_text import compact_for_wire


@pytest.mark.parametrize(
    ("line", "wire"),
    [
        ("G1 X10.000 Y20.500 E0.01230 F1800", "G1X10Y20.5E.0123F1800"),
        ("G1 X0.50 Y-0.250", "G1X.5Y-.25"),  # valid_float accepts `.5`/`-.5`, strtof reads them the same
        ("G1 X+5 Z00010.0100", "G1X5Z10.01"),
        ("G1 X 10 Y 20", "G1X10Y20"),  # Marlin and GRBL skip blanks between a letter and its value
        ("M104 S200 ; heat", "M104S200"),
        ("M106 P1 S255.0", "M106P1S255"),
        ("G28 X Y", "G28XY"),
        ("G92 E0", "G92E0"),
        ("g1 x10.50", "g1x10.5"),  # case kept: Marlin reads it as written when GCODE_CASE_INSENSITIVE
        ("G4 P0.5", "G4P.5"),
        ("T0", "T0"),
        ("M84", "M84"),
        ("   ", ""),
        ("; only a comment", ""),
        ("$J=G91 X10.0 F100", "$J=G91X10F100"),  # a GRBL jog is a G-code block after `$J=`
    ],
)
def test_words_are_joined_and_zeros_that_change_nothing_go(line: str, wire: str) -> None:
    assert compact_for_wire(line) == wire


@pytest.mark.parametrize(
    "line",
    [
        "M117 Layer 2 of  10",
        "M118 //action:notification Printing",
        "M118 E1 A1 hello 0.50",
        "M23 my part 0.20mm.gco",
        "M28 new file.gco",
        "M30 old file.gco",
        "M32 P !/dir/part.g#",
        "M33 /dir/part.g",
        "M928 log 1.txt",
        "M16 Prusa i3",
        "M587 S\"lab net\" P\"secret\"",
        "M588 S\"lab net\"",
        "M810 G28|G1 X10.0",
        "M0 Insert filament",
        "M1 S5 You win",
        "T?",  # Prusa MMU2 special tool commands
        "Tx",
        "N10 G1 X5.0",  # Marlin skips a leading N word up to the first space
        "M9999 some text here",
        "G1 X-",  # a sign without digits is no number to reshape
        "$32=1",
    ],
)
def test_text_arguments_are_sent_as_written(line: str) -> None:
    assert compact_for_wire(line) == line


def test_a_zero_before_x_keeps_its_blank_because_strtof_would_read_0x5_as_hex() -> None:
    assert compact_for_wire("G1 E0 X5") == "G1E0 X5"
    assert compact_for_wire("G92 E0.000 x0") == "G92E0 x0"
    assert compact_for_wire("G1 E1 X5") == "G1E1X5"


def test_comments_and_non_ascii_go_before_compacting() -> None:
    assert compact_for_wire("G1 X1.0 ; über") == "G1X1"
    assert compact_for_wire("M117 Größe 3") == "M117 Gre 3"


def test_compacting_twice_changes_nothing() -> None:
    for line in ("G1 X10.000 Y0.50", "G1 E0 X5", "M117 a  b", "G28 X Y"):
        once = compact_for_wire(line)
        assert compact_for_wire(once) == once
