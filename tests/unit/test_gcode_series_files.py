"""The per-line figures kept off the heap (fabnode.node.job_series): preflight's analysis keeps them in
mapped temporary files, and every lookup answers what the in-memory analysis answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabnode.gcode.analysis import analyze_bytes
from fabnode.machine.profile import MachineProfile
from fabnode.node.prepare import preflight
from tests.conftest import gcode_path
from tests.unit.test_gcode_bulk import figures


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["prusaslicer-vase.gcode", "prusaslicer-cubhelix.gcode"])
def test_preflight_keeps_the_same_series_in_files(name: str, tmp_path: Path) -> None:
    path = gcode_path(name)
    prepared = preflight(path, MachineProfile())
    in_memory = analyze_bytes(path.read_bytes(), MachineProfile())[0]
    assert prepared.analysis is not None
    assert figures(prepared.analysis) == figures(in_memory)
    a, b = prepared.analysis, in_memory
    for n in range(0, a.lines + 2, max(a.lines // 500, 1)):
        assert (a.filament_mm_at(n), a.estimated_s_at(n), a.laser_on_s_at(n), a.cost_at(n)) == (
            b.filament_mm_at(n), b.estimated_s_at(n), b.laser_on_s_at(n), b.cost_at(n))  # fmt: skip
    assert [a.line_of_command(k) for k in (1, 2, a.commands, a.commands + 5)] == [
        b.line_of_command(k) for k in (1, 2, b.commands, b.commands + 5)]  # fmt: skip


def test_a_file_without_moves_has_empty_series(tmp_path: Path) -> None:
    path = tmp_path / "heat.gcode"
    path.write_bytes(b"; only heat\nM104 S200\nM140 S60\n")
    analysis = preflight(path, MachineProfile()).analysis
    assert analysis is not None
    seen = (analysis.filament_mm_at(3), analysis.estimated_s_at(3), analysis.line_of_command(1))
    assert seen == (0.0, 0.0, 2)


def test_a_negative_total_names_the_same_line_when_the_series_went_to_files(tmp_path: Path) -> None:
    data = b"M83\nG1 X1 Y1 E-2 F1200\nG1 X2 Y2 E-1\n; end\n"
    path = tmp_path / "retracts.gcode"
    path.write_bytes(data)
    expected = [f"line {p.line}: {p.message}" for p in analyze_bytes(data, MachineProfile())[0].problems]
    assert expected and expected[0].startswith("line 3:")
    assert preflight(path, MachineProfile()).problems == expected
