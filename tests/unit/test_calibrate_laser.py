"""The laser power x speed grid (G-code, the dialogue) and the material table's text edit."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from fabnode.config.settings import load_config
from fabnode.gcode import analysis as gcode
from fabnode.technician.calibrate import CalibrationError, JobResult, RecordMaterial, drive
from fabnode.technician.laser import GridSpec, grid_gcode, laser_grid, parse_cell
from fabnode.technician.toml_edit import MaterialEditError, set_material_laser
from tests.unit.test_calibrate import ScriptedIO

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["$30=1000", "$31=0", "$32=1", "$110=6000.000"]
SPEC = GridSpec(powers=(200.0, 500.0, 800.0), feeds_mm_min=(600.0, 1800.0), cell_mm=4.0, gap_mm=1.0,
                interval_mm=0.5, origin=(10.0, 20.0))


def burns(lines: list[str]) -> list[tuple[float, float, float, float, float, float]]:
    """(x0, y0, x1, y1, feed, power) of every G1 move, tracking modal position, F and S."""
    x = y = feed = power = 0.0
    out = []
    for line in lines:
        if not line.startswith(("G0", "G1")):
            continue
        words = {k: float(v) for k, v in re.findall(r"([XYFS])(-?[\d.]+)", line)}
        nx, ny = words.get("X", x), words.get("Y", y)
        feed, power = words.get("F", feed), words.get("S", power)
        if line.startswith("G1"):
            out.append((x, y, nx, ny, feed, power))
        x, y = nx, ny
    return out


def test_every_cell_is_a_square_burnt_at_its_rows_feed_and_its_columns_power() -> None:
    lines = grid_gcode(SPEC, "plywood-3mm")
    assert lines[3:7] == ["G21", "G90", "M5", "M4 S0"] and lines[-2:] == ["M5", "G0 X10 Y20"]
    moves = burns(lines)
    lines_per_cell = int(4.0 / 0.5) + 1
    assert len(moves) == 2 * 3 * lines_per_cell
    for row, feed in enumerate(SPEC.feeds_mm_min):
        for col, power in enumerate(SPEC.powers):
            x0, y0 = 10 + col * 5.0, 20 + row * 5.0
            inside = [m for m in moves if x0 <= min(m[0], m[2]) and max(m[0], m[2]) <= x0 + 4
                      and y0 <= m[1] <= y0 + 4]
            assert len(inside) == lines_per_cell
            assert {(m[4], m[5]) for m in inside} == {(feed, power)}
            assert sorted(m[1] for m in inside) == [y0 + 0.5 * k for k in range(lines_per_cell)]


def test_the_fabnode_analyser_sees_the_beam_on_for_exactly_the_rastered_length() -> None:
    lines = grid_gcode(SPEC, "plywood-3mm")
    analysis = gcode.analyze_lines(lines, gcode.laser_profile())
    assert analysis.laser_distance_mm == pytest.approx(2 * 3 * 9 * 4.0)


def test_labels_add_number_strokes_outside_the_cells() -> None:
    plain, labelled = grid_gcode(SPEC, "x"), grid_gcode(GridSpec(**{**_fields(SPEC), "labels": True}), "x")
    extra = burns(labelled)[len(burns(plain)):]
    assert extra  # row numbers 1-2 and column numbers 1-3
    width, height = GridSpec(**{**_fields(SPEC), "labels": True}).size_mm()
    for x0, y0, x1, y1, _, _ in burns(labelled):
        assert min(x0, x1) >= 10 and max(x0, x1) <= 10 + width
        assert min(y0, y1) >= 20 and max(y0, y1) <= 20 + height


def _fields(spec: GridSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in spec.__slots__}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "cell"), [("2,3", (1, 2)), ("r1c1", (0, 0)), (" 2 1 ", (1, 0))])
def test_the_best_cell_is_named_row_then_column(text: str, cell: tuple[int, int]) -> None:
    assert parse_cell(text, SPEC) == cell


@pytest.mark.parametrize("text", ["3,1", "1,4", "0,1", "2", "best"])
def test_a_cell_outside_the_grid_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cell(text, SPEC)


def test_grid_dialogue_streams_then_records_the_chosen_cell() -> None:
    io = ScriptedIO({"$$": SETTINGS}, {"ready": "y", "cell": "2,3", "record": "y"}, JobResult(True))
    outcome = drive(laser_grid(SPEC, "plywood-3mm", can_record=True), io)
    assert io.sent == ["$$"]
    assert io.streamed[0].lines == tuple(grid_gcode(SPEC, "plywood-3mm"))
    assert io.recorded == [RecordMaterial("plywood-3mm", 800.0, 1800.0)]
    assert outcome.data["recorded_in"] == "node.toml"


def test_grid_dialogue_refuses_when_laser_mode_is_off_or_power_too_high() -> None:
    off = ScriptedIO({"$$": ["$30=1000", "$32=0"]}, {"ready": "y"}, JobResult(True))
    with pytest.raises(CalibrationError, match=r"\$32=1"):
        drive(laser_grid(SPEC, "x", True), off)
    low = ScriptedIO({"$$": ["$30=255", "$32=1"]}, {"ready": "y"}, JobResult(True))
    with pytest.raises(CalibrationError, match=r"\$30=255"):
        drive(laser_grid(SPEC, "x", True), low)
    assert not off.streamed and not low.streamed


def test_grid_that_did_not_finish_records_nothing() -> None:
    io = ScriptedIO({"$$": SETTINGS}, {"ready": "y", "cell": "1,1"}, JobResult(False, "ALARM:3"))
    with pytest.raises(CalibrationError, match="ALARM:3"):
        drive(laser_grid(SPEC, "x", True), io)
    assert io.recorded == [] and "cell" not in io.asked


@pytest.mark.parametrize("spec", [GridSpec(powers=()), GridSpec(powers=(100.0,) * 21),
                                  GridSpec(powers=(100.0,), feeds_mm_min=(0.0,)),
                                  GridSpec(powers=(100.0,), interval_mm=0.0)])
def test_impossible_grids_are_refused_at_once(spec: GridSpec) -> None:
    with pytest.raises(CalibrationError):
        laser_grid(spec, "x", True)


# --- the material table edit ----------------------------------------------------------------------

LASER_TOML = (REPO / "config" / "fabnode-laser.toml").read_text()
PRINTER_TOML = (REPO / "config" / "fabnode-printer.toml").read_text()


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return [x for x in old if x not in new], [x for x in new if x not in old]


def test_existing_keys_change_in_place_and_nothing_else_does() -> None:
    after = set_material_laser(LASER_TOML, "plywood-3mm", 450, 1200)
    assert changed_lines(LASER_TOML, after) == (
        ["laser_power = 800.0\n", "laser_feed_mm_min = 600.0\n"],
        ["laser_power = 450.0\n", "laser_feed_mm_min = 1200.0\n"])
    assert tomllib.loads(after)["materials"]["plywood-3mm"] == {
        "price_per_laser_hour": 12.0, "laser_power": 450.0, "laser_feed_mm_min": 1200.0}


def test_a_keys_trailing_comment_and_spacing_are_kept() -> None:
    text = '[materials."acrylic-3mm"]  # cast, not extruded\nlaser_power   =  300   # was too deep\n'
    after = set_material_laser(text, "acrylic-3mm", 350.5, 900)
    assert after.splitlines()[:2] == ['[materials."acrylic-3mm"]  # cast, not extruded',
                                     "laser_power   =  350.5   # was too deep"]
    assert after.splitlines()[2] == "laser_feed_mm_min = 900.0"


def test_missing_keys_go_after_the_tables_last_key_before_the_next_table() -> None:
    after = set_material_laser(PRINTER_TOML, "PETG", 100, 2000)
    lines = after.splitlines()
    at = lines.index("[materials.PETG]")
    assert lines[at + 1 : at + 6] == ["diameter_mm = 1.75", "density_g_cm3 = 1.27", "price_per_kg = 28.0",
                                      "laser_power = 100.0", "laser_feed_mm_min = 2000.0"]
    added = ["laser_power = 100.0\n", "laser_feed_mm_min = 2000.0\n"]
    assert changed_lines(PRINTER_TOML, after) == ([], added)


def test_a_missing_table_is_appended_and_the_config_still_loads(tmp_path: Path) -> None:
    after = set_material_laser(LASER_TOML, "mdf 6mm", 1000, 300)
    assert after.startswith(LASER_TOML)
    table = '\n[materials."mdf 6mm"]\nlaser_power = 1000.0\nlaser_feed_mm_min = 300.0\n'
    assert after[len(LASER_TOML):] == table
    path = tmp_path / "node.toml"
    path.write_text(after)
    assert load_config(path).materials["mdf 6mm"].laser_power == 1000.0


def test_crlf_files_keep_their_line_ends() -> None:
    text = "[node]\r\nlab = \"x\"\r\n\r\n[materials.card]\r\nprice_per_laser_hour = 1.0\r\n"
    after = set_material_laser(text, "card", 200, 3000)
    assert after == text + "laser_power = 200.0\r\nlaser_feed_mm_min = 3000.0\r\n"


def test_layouts_the_editor_does_not_understand_are_refused() -> None:
    inline = '[materials]\nplywood = { laser_power = 1.0 }\n'
    with pytest.raises(MaterialEditError, match="inline table or dotted keys"):
        set_material_laser(inline, "plywood", 2, 3)
    with pytest.raises(MaterialEditError, match="not valid TOML"):
        set_material_laser("[materials.x\n", "x", 2, 3)
