"""`fabnode analyze FILE [--json]`: report, JSON keys and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabnode.cli import app
from tests.conftest import REPO, gcode_path

runner = CliRunner()
KEYS = {
    "commands", "filament_mm", "filament_g", "laser_on_s", "laser_distance_mm", "estimated_s", "bbox",
    "max_hotend_c", "max_bed_c", "problems",
}  # fmt: skip


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.gcode"
    path.write_text(text)
    return path


def test_clean_file_exits_0_with_a_readable_report(tmp_path: Path) -> None:
    path = write(tmp_path, "M104 S210\nM140 S60\nM83\nG1 X10 Y10 Z0.2 F600\nG1 X20 E1\n")
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 0, result.output
    assert "filament        1.0 mm" in result.output
    assert "estimated time  0:00:" in result.output
    assert "hotend 210 °C, bed 60 °C" in result.output
    assert "problems        none" in result.output


def test_json_is_one_object_with_the_documented_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "M83\nG1 X10 Y5 Z0.2 E2 F600\nG1 X0 Y0\n")
    result = runner.invoke(app, ["analyze", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) >= KEYS
    assert data["filament_mm"] == 2.0
    assert data["bbox"] == {"min": [0.0, 0.0, 0.2], "max": [10.0, 5.0, 0.2]}
    assert data["problems"] == []


def test_problems_exit_1_and_name_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "G28\nM104 S300\nG1 X500\nM502\n")
    result = runner.invoke(app, ["analyze", str(path), "--json"])
    assert result.exit_code == 1
    lines = [p["line"] for p in json.loads(result.output)["problems"]]
    assert lines == [2, 3, 4]
    text = runner.invoke(app, ["analyze", str(path)])
    assert text.exit_code == 1
    assert "line 2: Hotend temperature 300" in text.output
    assert "line 4: Forbidden command M502" in text.output


def test_machine_limit_flags_change_the_checks(tmp_path: Path) -> None:
    path = write(tmp_path, "M104 S250\nG1 X200 Y10\n")
    assert runner.invoke(app, ["analyze", str(path)]).exit_code == 1  # X200 off a 180 mm bed
    ok = runner.invoke(app, ["analyze", str(path), "--volume", "250,250,250"])
    assert ok.exit_code == 0, ok.output
    hot = runner.invoke(app, ["analyze", str(path), "--volume", "250,250,250", "--max-hotend", "240"])
    assert hot.exit_code == 1
    assert "above the machine's maximum 240" in hot.output


def test_material_changes_grams(tmp_path: Path) -> None:
    path = write(tmp_path, "M83\nG1 X10 E1000\n")
    pla = json.loads(runner.invoke(app, ["analyze", str(path), "--json"]).output)
    abs_ = json.loads(runner.invoke(app, ["analyze", str(path), "--json", "--material", "abs"]).output)
    assert abs_["filament_g"] == pytest.approx(pla["filament_g"] * 1.04 / 1.24, rel=1e-3)
    assert runner.invoke(app, ["analyze", str(path), "--material", "unobtainium"]).exit_code == 2


def test_laser_file_is_sniffed_and_reports_beam_time(tmp_path: Path) -> None:
    path = write(tmp_path, "G21\nG0 X10\nM3 S500\nG1 X20 F600\nM5\n")
    data = json.loads(runner.invoke(app, ["analyze", str(path), "--json"]).output)
    assert data["machine"]["kind"] == "laser"
    assert data["laser_distance_mm"] == 10.0
    assert 1.0 <= data["laser_on_s"] < 1.1
    priced = runner.invoke(app, ["analyze", str(path), "--json", "--material", "plywood", "--price", "36"])
    assert json.loads(priced.output)["cost"] == pytest.approx(36 * data["laser_on_s"] / 3600, abs=1e-4)
    forced = json.loads(runner.invoke(app, ["analyze", str(path), "--json", "--firmware", "marlin"]).output)
    assert forced["machine"]["kind"] == "printer"


def test_missing_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gcode"
    result = runner.invoke(app, ["analyze", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.output


def test_real_file_through_the_console_script() -> None:
    path = gcode_path("prusaslicer-cubhelix.gcode")
    proc = subprocess.run(
        [sys.executable, "-m", "fabnode", "analyze", str(path)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "estimated time  0:06:" in proc.stdout  # the slicer says 6m 39s
    slicer = re.search(r"^; filament used \[mm\] = ([\d.]+)", path.read_text(), re.M)
    ours = re.search(r"filament +([\d.]+) mm", proc.stdout)
    assert slicer and ours
    assert float(ours.group(1)) == pytest.approx(float(slicer.group(1)), rel=0.01)
