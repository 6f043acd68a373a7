"""The bulk reading of G-code (fabnode.gcode.bulk_*) against the exact line-by-line path: the same figures.

Every figure the analysis reports is compared with ==, floats included (the bulk path repeats the exact
path's arithmetic step for step), on every file in tests/data, on crafted files full of what the bulk
path must hand to the exact one, and on generated files with many planner windows, read in small chunks.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from fabnode.gcode import analysis as gcode_analysis
from fabnode.gcode import bulk_parse, bulk_plan
from fabnode.gcode.analysis import Analysis, analyze_bytes, guess_profile, laser_profile
from fabnode.gcode.bulk_scan import BulkScanner, chunks_of, line_chunks
from fabnode.machine.profile import MachineProfile
from tests.conftest import gcode_path
from tests.data import gcode_names

PRINTER = MachineProfile()


def figures(a: Analysis) -> dict[str, object]:
    """Everything an Analysis reports, the per-line series included."""
    return {
        **a.to_json(),
        "raw": (a.commands, a.lines, a.filament_mm, a.filament_g, a.cost, a.laser_on_s, a.laser_distance_mm,
                a.estimated_s, a.bbox_min, a.bbox_max, a.max_hotend_c, a.max_bed_c),
        "problems": [(p.line, p.message) for p in a.problems],
        "series": [(s.lines.tolist(), s.cum.tolist()) for s in (a._filament, a._laser, a._time)],
        "command_lines": a._command_lines.tolist(),
    }  # fmt: skip


def both(data: bytes, profile: MachineProfile = PRINTER) -> tuple[dict[str, object], dict[str, object]]:
    exact = analyze_bytes(data, profile, reference=True)[0]
    bulk = analyze_bytes(data, profile)[0]
    return figures(exact), figures(bulk)


def in_chunks(data: bytes, size: int, profile: MachineProfile = PRINTER) -> dict[str, object]:
    """The bulk path fed `size`-byte chunks (as fabnode.node.prepare feeds its blocks)."""
    scanner = BulkScanner(profile)
    for chunk in chunks_of(data, 0, size):
        scanner.feed_chunk(chunk)
    return figures(gcode_analysis._result(scanner))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", gcode_names())
def test_every_real_file_has_the_same_figures_both_ways(name: str) -> None:
    data = gcode_path(name).read_bytes()
    profile = guess_profile(data[:65536].decode("utf-8", errors="replace"))
    exact, bulk = both(data, profile)
    assert bulk == exact
    if profile.firmware == PRINTER.firmware:
        assert in_chunks(data, 40_000, profile) == exact


@pytest.mark.parametrize("name", [n for n in gcode_names() if n.startswith("laser-")])
def test_laser_files_read_on_a_printer_profile_agree_too(name: str) -> None:
    exact, bulk = both(gcode_path(name).read_bytes(), PRINTER)
    assert bulk == exact


EDGE_CASES = {
    "arcs": "G21\nG90\nG1 X10 Y10 F3000\nG2 X30 Y10 I10 J0 E1.5\nG3 X10 Y10 R10 E1\nG1 X20 Y20 E.5\n"
            "G2 X20 Y20 I5 J5\nG1 X5 Y5\n",
    "relative_e": "M83\nG1 X10 Y10 E1 F1200\nG1 X20 E-.8\nG1 E.8\nG92 E0\nG1 X30 Y30 E2.5\n",
    "absolute_e": "M82\nG1 X10 Y10 E1 F1200\nG1 X20 E2\nG1 E1.2\nG1 E2\nG92 E0.0\nG1 X30 E0.3\n"
                  "G92 E10\nG1 X40 E10.7\nG1 X41 E10.7\n",
    "m82_m83_switches": "M83\nG1 X1 Y1 E1 F600\nM82\nG1 X2 E3\nM83\nG1 X3 E1\nG90\nG1 X4 E5\nG91\n"
                        "G1 X1 E1\nG90\nG1 X9 Y9\n",
    "g92_axes": "G1 X50 Y50 Z1 F3000\nG92 X0 Y0\nG1 X10 Y10 E1\nG92\nG1 X-5 Y2\nG28 X\nG1 X3 Y3\n",
    "comments": "; header\n;TYPE:Perimeter\nG1 X1 Y1 ; move\n  ; indented comment\n\n(paren only)\n"
                "G1 (a paren) X2 Y2\n\t\nG1 X3 Y3 E.1 ;E9 inside a comment\n%\n",
    "spellings": "G01 X1 Y1 F1200\nG1X2Y2\ng1 x3 y3\nG1  X4 Y4\nG1 X5\tY5\nG1 Y6 X6\nG1 F600 X7 Y7 F900\n"
                 "G1 X8 X9\nG1 X+1\nG1 X1.\nG1 X.5 Y-.5\nG1 X-0 Y0\nG0 X10 Y10\nG1 X11 Y11 E.1 S100\n"
                 "N10 G1 X12 Y12*57\nG1 X13 Y13 *3\nG1\nG1 X\nM204\nM204 S-5\n",
    "firmware_reads": "M 500\nM500.1\nm 502\nM502\nM500S0\nM997\nG92.1\nM862.3 P \"MK3S\"\nT0\nM106 S255\n",
    "numbers": "G1 X1e5 Y1\nG1 X1E5\nG1 Xnan\nG1 Xinf Y1\nG1 X1e999\nG1 X1_0\nG1 X12345678901\n"
               "G1 X0.1234567890123\nG1 X1234567890 Y1\nG1 X0000000001.5\nG1 X1.2.3\nG1 X1-2\nM104 S1e3\n",
    "accelerations": "M204 S800\nG1 X10 Y10 E1 F3000\nM204 P1500 T3000\nG1 X20 Y20 F6000\nM204 R900\n"
                     "G1 E-1 F2400\nM204 S500 T700\nG1 E1\nM204 P2000 R1250 T2500 ; all three\nG1 X1 Y1 E1\n"
                     "M201 X100 Y100\nM203 X50\nM205 X5 Y5 S10 T20\nM220 S150\nM221 S90\nG1 X30 Y30 E1\n",
    "syncs_and_dwells": "G1 X10 Y10 F3000\nG4 P500\nG1 X20 Y20\nG4 S1\nM400\nG1 X30 Y30\nM109 S210\n"
                        "M190 S60\nG28\nG1 X5 Y5\n",
    "temperatures": "M104 S300\nM140 S120\nM109 R200\nM190 S70\nG1 X1 Y1\n",
    "outside_volume": "G1 X-10 Y5 F3000\nG1 X200 Y200 Z200\nG1 X-20 Y-20\nG1 X1 Y-5 Z-1\nG1 X300 Y300\n",
    "laser_on_a_printer": "M3 S500\nG1 X10 Y10 F1200\nG1 X20 Y10\nG0 X0 Y0\nM5\nG1 X5 Y5\nM4 S0\nG1 X6 Y6\n",
    "negative_total": "M83\nG1 X1 Y1 E-2 F1200\nG1 X2 Y2 E-1\n",
    "inches": "G20\nG1 X1 Y1 E.1 F60\nG21\nG1 X1 Y1 E.1\n",
    "long_lines": "G1 X1 Y1 ; " + "c" * 300 + "\nM117 " + "m" * 120 + "\nG1 X1.000000 Y1.000000 Z1.000000 "
                  "E1.000000 F1200.000000 X2.000 Y2.0000000 Z2.0000000\n",
    "junction_deviation_set_by_the_file": "G1 X10 Y10 F3000\nG1 X20 Y10\nM205 J0.02\nG1 X20 Y20\n"
                                          "G1 X10 Y20 E1\nG1 X10 Y10\n",
    "relative_moves": "G91\nG1 X1 Y1 F1200\nG1 X1 Y1 E.5\nG1 X-3 Z.2\nG90\nG1 X10 Y10\n",
    "crlf_and_no_final_newline": "G1 X1 Y1 F1200\r\nG1 X2 Y2 E.1 \r\n;c\r\nM106 S10\r\nG1 X3 Y3",
    "utf8_comments": "; 215°C ☃\nG1 X1 Y1 F1200\n;café\nG1 X2 Y2 E.1 ; ±0.1\nM117 Grüße\nG1 X3 Y3 E.1\n",
    "empty": "",
    "comments_only": ";a\n;b\n\n",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_crafted_files_have_the_same_figures_and_problems(name: str) -> None:
    data = EDGE_CASES[name].encode()
    exact, bulk = both(data)
    assert bulk == exact
    assert in_chunks(data, 16) == exact


def test_not_text_and_byte_order_mark_are_read_the_same() -> None:
    for data in (b"\xef\xbb\xbfG1 X1 Y1\nG1 X2 Y2\n", b"G1 X1 Y1\nG1 X2\0 Y2\nG1 X3\n",
                 b"G1 X1 Y1\n; caf\xc3\xa9\nG1 X2 \xff\nG1 X3 Y3\n"):  # fmt: skip
        exact, bulk = both(data)
        assert bulk == exact


def test_the_checks_of_the_exact_path_still_fire_in_a_long_file() -> None:
    """Issue 9's checks, buried among thousands of bulk lines, report the same lines."""
    body = [f"G1 X{10 + i % 50}.{i % 7} Y{20 + i % 30}.5 E.0{i % 9 + 1}" for i in range(6000)]
    for at, line in ((100, "G1 X1e999"), (900, "M 500"), (1500, "M500.1"), (2100, "m 502"),
                     (2500, "G1 Xnan Y1"), (3000, "G1 X1E5 Y2"), (3500, "M502 ; forbidden")):  # fmt: skip
        body[at] = line
    data = ("M83\n" + "\n".join(body) + "\n").encode()
    exact, bulk = both(data)
    assert bulk == exact
    problems = exact["problems"]
    assert isinstance(problems, list)
    lines = [line for line, _ in problems]
    assert {102, 902, 1502, 2102, 2502, 3002, 3502} <= set(lines)


def _generated(seed: int) -> bytes:
    """A long file with short and long moves, retractions, accelerations and feeds changing."""
    rng = random.Random(seed)
    out = ["M83", "G1 Z.2 F7800"]
    x = y = 50.0
    for i in range(12_000):
        r = rng.random()
        if r < 0.03:
            out.append(f"M204 P{rng.choice((500, 800, 1500, 2500))}")
        elif r < 0.06:
            out.append(f"G1 E-{rng.uniform(0.2, 1.5):.3f} F2100")
            out.append(f"G1 E{rng.uniform(0.2, 1.5):.3f}")
        elif r < 0.07:
            out.append(f"G92 E0.0 ; reset {i}")
        elif r < 0.08:
            out.append(f";WIDTH:{rng.uniform(0.3, 0.6):.4f}")
        else:
            step = rng.choice((0.05, 0.2, 1.0, 5.0, 40.0))
            x = min(max(x + rng.uniform(-step, step), 1.0), 170.0)
            y = min(max(y + rng.uniform(-step, step), 1.0), 170.0)
            feed = f" F{rng.choice((600, 1800, 7800))}" if rng.random() < 0.1 else ""
            e = f" E{rng.uniform(0.001, 0.2):.5f}" if rng.random() < 0.8 else ""
            out.append(f"G1 X{x:.3f} Y{y:.3f}{e}{feed}")
    return ("\n".join(out) + "\n").encode()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_files_with_many_planner_windows_agree(seed: int) -> None:
    data = _generated(seed)
    exact, bulk = both(data)
    assert bulk == exact
    assert in_chunks(data, 5000) == exact


@pytest.mark.timeout(120)
def test_a_replan_reaching_past_the_kept_rows_recomputes_them_and_agrees(monkeypatch) -> None:
    monkeypatch.setattr(bulk_plan, "_HEAD", 2)  # fewer kept rows than a replan reads: the fallback runs
    data = _generated(4)
    exact, bulk = both(data)
    assert bulk == exact


@pytest.mark.parametrize("size", [1, 100, 65536])
def test_line_chunks_end_at_a_newline_and_join_back_to_the_blocks(size: int) -> None:
    data = gcode_path("prusaslicer-cubhelix.gcode").read_bytes()[:50_000] + b"G1 X1 ; no newline at the end"
    blocks = _blocks(data, 4099)
    pieces = list(line_chunks(blocks, size))
    assert b"".join(pieces) == data
    assert all(piece.endswith(b"\n") for piece in pieces[:-1]) and pieces[-1].endswith(b"the end")
    assert all(len(piece) <= max(size, 100) + 4099 for piece in pieces)  # about `size`, a line at most more


def test_a_grbl_laser_profile_reads_everything_on_the_exact_path() -> None:
    data = gcode_path("laser-jsdc.gcode").read_bytes()
    exact, bulk = both(data, laser_profile())
    assert bulk == exact


def test_a_sliced_file_is_read_almost_entirely_in_bulk() -> None:
    """What keeps the analysis fast: in a PrusaSlicer file, under 1 line in 1000 takes the exact path."""
    data = gcode_path("prusaslicer-benchy.gcode").read_bytes()
    scanner = BulkScanner(PRINTER)
    kinds = np.zeros(16, dtype=np.int64)
    for chunk in chunks_of(data):
        lines = bulk_parse.read_chunk(chunk, scanner.preflight.max_code_len, scanner._category_of,
                                      scanner._category_key)  # fmt: skip
        kinds += np.bincount(lines.kind, minlength=16)
    assert kinds[bulk_parse.SPECIAL] * 1000 < kinds.sum()
    assert kinds[bulk_parse.G1] > kinds.sum() // 2


def _number_words(seed: int) -> bytes:
    """Moves whose numbers take every shape the bulk parser reads or must hand on (up to 12 characters)."""
    rng = random.Random(seed)
    out = ["M83"]
    for _ in range(4000):
        words = []
        for letter in rng.sample("XYZEF", rng.randint(1, 4)):
            sign = "-" if rng.random() < 0.3 else ""
            whole = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 9)))
            point = "." if rng.random() < 0.85 else ""
            frac = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 8)))
            text = (sign + whole + point + (frac if point else ""))[:12]
            if rng.random() < 0.03:  # the odd ones: two points, a sign inside, nothing but a sign
                text = rng.choice(("1.2.3", "1-2", "-", ".", "-.", "12345678901.5", "0.0000000001"))
            words.append(f"{letter}{text}")
        out.append("G1 " + " ".join(words))
    return ("\n".join(out) + "\n").encode()


@pytest.mark.parametrize("seed", [7, 8])
def test_numbers_of_every_shape_read_as_the_exact_path_reads_them(seed: int) -> None:
    data = _number_words(seed)
    exact, bulk = both(data)
    assert bulk == exact
    assert in_chunks(data, 3000) == exact


def _blocks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_a_file_read_in_blocks_cut_anywhere_has_the_figures_of_its_whole_bytes(size: int) -> None:
    # analyze_file and the daemon's preflight read blocks cut mid-line and mid-character (UTF-8, BOM)
    for data in (b"\xef\xbb\xbfG1 X1 Y1\nG1 X2 Y2\n", b"G1 X1 Y1\nG1 X2\0 Y2\nG1 X3\n",
                 b"G1 X1 Y1\n; caf\xc3\xa9\nG1 X2 \xff\nG1 X3 Y3\n",
                 gcode_path("prusaslicer-cubhelix.gcode").read_bytes()[:20_000]):  # fmt: skip
        whole = figures(analyze_bytes(data, PRINTER)[0])
        assert figures(gcode_analysis.analyze_blocks(_blocks(data, size), PRINTER)) == whole


def test_analyze_file_reads_in_blocks_and_without_per_line_figures_keeps_the_totals(tmp_path) -> None:
    data = gcode_path("prusaslicer-cubhelix.gcode").read_bytes()
    path = tmp_path / "job.gcode"
    path.write_bytes(data)
    whole = analyze_bytes(data, PRINTER)[0]
    assert figures(gcode_analysis.analyze_file(path, PRINTER)) == figures(whole)
    totals = gcode_analysis.analyze_file(path, PRINTER, per_line=False)
    assert totals.to_json() == whole.to_json()
    assert totals.filament_mm_at(totals.lines) == 0.0 < whole.filament_mm_at(whole.lines)
