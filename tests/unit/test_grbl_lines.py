"""What of a line goes on GRBL's wire: compact, and read by GRBL exactly as the file line would be."""

from __future__ import annotations

import struct

import pytest

from drivers.gcode_text import strip_for_wire
from drivers.grbl.host import GrblHost
from drivers.grbl.lines import clean_line
from tests.conftest import gcode_path

LASER_FILES = ("laser-jsdc.gcode", "laser-tball-engrave.gcode")


def _f32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def grbl_read_float(text: str, pos: int) -> tuple[int, int] | None:
    """gnea/grbl nuts_bolts.c read_float on an IEEE float32, line by line: (the value's bits, next pos)."""
    negative = False
    if pos < len(text) and text[pos] in "+-":
        negative = text[pos] == "-"
        pos += 1
    intval, exp, ndigit, isdecimal = 0, 0, 0, False
    while pos < len(text):
        c = text[pos]
        if c.isdigit():
            ndigit += 1
            if ndigit <= 8:  # MAX_INT_DIGITS
                if isdecimal:
                    exp -= 1
                intval = intval * 10 + int(c)
            elif not isdecimal:
                exp += 1
        elif c == "." and not isdecimal:
            isdecimal = True
        else:
            break
        pos += 1
    if not ndigit:
        return None
    fval = _f32(float(intval))
    if fval != 0:
        while exp <= -2:
            fval = _f32(fval * _f32(0.01))
            exp += 2
        if exp < 0:
            fval = _f32(fval * _f32(0.1))
        elif exp > 0:
            while exp > 0:
                fval = _f32(fval * _f32(10.0))
                exp -= 1
    bits = struct.unpack("I", struct.pack("f", -fval if negative else fval))[0]
    return int(bits), pos


def as_grbl_reads(line: str) -> tuple[object, ...]:
    """A line as GRBL takes it: protocol.c drops bytes <= ' ' and upper-cases, gcode.c reads letter/number
    words; a `$` line or one that does not parse is the filtered text itself."""
    text = "".join(ch for ch in line if ch > " ").upper()
    if text.startswith("$"):
        return ("$", text)
    words: list[tuple[str, int]] = []
    pos = 0
    while pos < len(text):
        number = grbl_read_float(text, pos + 1) if text[pos].isalpha() else None
        if number is None:
            return ("unparsed", text)
        words.append((text[pos], number[0]))
        pos = number[1]
    return tuple(words)


@pytest.mark.parametrize(
    ("line", "wire"),
    [
        ("G01 X0.50 Y10.000 F1500", "G1X.5Y10F1500"),
        ("G4 P0.5", "G4P.5"),
        ("M03 S0080", "M3S80"),
        ("G1 X-0.000 Y+5.", "G1X-0Y5"),
        ("g1 x 10.250 (cut) y2", "g1x10.25y2"),  # GRBL upper-cases itself: the case stays
        ("G1 X1 ; hold! the ~ line", "G1X1"),
        ("N10 G1 X5.0", "N10G1X5"),
    ],
)
def test_a_block_goes_without_blanks_comments_and_zeros_grbl_reads_the_same(line: str, wire: str) -> None:
    assert clean_line(line) == wire
    assert as_grbl_reads(wire) == as_grbl_reads(strip_for_wire(line, paren_comments=True))


def test_a_trailing_zero_stays_where_grbl_would_read_another_float() -> None:
    # read_float: 439090 * 0.01 * 0.01 and 43909 * 0.01 * 0.1 are not the same float32
    assert as_grbl_reads("X43.9090") != as_grbl_reads("X43.909")
    assert clean_line("G1 X43.9090 Y-28.2880") == "G1X43.9090Y-28.288"
    assert as_grbl_reads("Y-28.2880") == as_grbl_reads("Y-28.288")


@pytest.mark.parametrize("line", ["$J=G91 X10.0 F100", "$32=1", "$N0=G21 G90", "$H", "$$"])
def test_a_dollar_line_goes_as_written(line: str) -> None:
    assert clean_line(line) == line


@pytest.mark.parametrize(("line", "wire"), [("G1 X1 #5", "G1X1#5"), ("G1 X.", "G1X."), ("G1 X1 Y", "G1X1Y")])
def test_a_block_grbl_cannot_parse_only_loses_its_blanks(line: str, wire: str) -> None:
    assert clean_line(line) == wire  # GRBL answers it as it would the file line (an error)


@pytest.mark.parametrize("name", LASER_FILES)
def test_every_laser_file_line_reads_the_same_to_grbl_in_fewer_bytes(name: str) -> None:
    raw = gcode_path(name).read_text(encoding="utf-8").splitlines()
    file_lines = [line.split(";")[0].strip() for line in raw]
    wire = [clean_line(line) for line in raw]
    assert [bool(w) for w in wire] == [bool(f) for f in file_lines]  # the same lines go, no more
    pairs = [(w, f) for w, f in zip(wire, file_lines, strict=True) if f]
    assert [as_grbl_reads(w) for w, _ in pairs] == [as_grbl_reads(f) for _, f in pairs]
    grbl_keeps = sum(len("".join(f.split())) + 1 for _, f in pairs)  # what GRBL's own stripping leaves
    sent = sum(len(w) + 1 for w, _ in pairs)
    assert all(len(w) <= len("".join(f.split())) for w, f in pairs)
    assert sent < grbl_keeps < sum(len(f) + 1 for _, f in pairs)


def test_the_window_counts_the_bytes_that_go_not_the_file_line() -> None:
    job = ["G1 X10.000 Y20.000 S1000.0 F600.00"] * 8  # 35 bytes with its newline, 18 on the wire
    host = GrblHost()
    host.start_job(job, 0.0)
    wire = host.data_to_send(0.0).lstrip(b"?")
    assert wire == b"G1X10Y20S1000F600\n" * 7  # 7 * 18 = 126 <= 128 (3 as written: 105)
