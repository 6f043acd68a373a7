"""G-code analysis rules, each on a few inline lines whose result is worked out by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from fabnode.gcode.analysis import Analysis, analyze_lines, laser_profile
from fabnode.machine.profile import MachineProfile, Material

PRINTER = MachineProfile()
# Acceleration so high that a move takes distance / feed: times can be checked with a pencil.
INSTANT = replace(
    PRINTER,
    max_accel_mm_s2=(1e9, 1e9, 1e9, 1e9),
    print_accel_mm_s2=1e9,
    travel_accel_mm_s2=1e9,
    retract_accel_mm_s2=1e9,
    max_feedrate_mm_s=(1e6, 1e6, 1e6, 1e6),
)
LASER = laser_profile()
INSTANT_LASER = replace(
    LASER, max_accel_mm_s2=(1e9, 1e9, 1e9, 0.0), travel_accel_mm_s2=1e9, print_accel_mm_s2=1e9
)


def run(text: str, profile: MachineProfile = PRINTER) -> Analysis:
    return analyze_lines(text.strip().splitlines(), profile)


# --- extrusion -------------------------------------------------------------------------------------


def test_absolute_e_counts_the_difference_between_positions() -> None:
    assert run("M82\nG1 X10 E5\nG1 X20 E8").filament_mm == pytest.approx(8.0)


def test_relative_e_adds_each_value() -> None:
    assert run("M83\nG1 X10 E5\nG1 X20 E3").filament_mm == pytest.approx(8.0)


def test_retraction_and_recovery_cancel_out() -> None:
    assert run("M83\nG1 X10 E5\nG1 E-2\nG1 E2\nG1 X20 E1").filament_mm == pytest.approx(6.0)


def test_a_final_retraction_is_subtracted_from_the_net() -> None:
    assert run("M83\nG1 X10 E5\nG1 E-1").filament_mm == pytest.approx(4.0)


def test_firmware_retraction_changes_no_filament() -> None:
    assert run("M83\nG1 X10 E5\nG10\nG1 X20\nG11\nG1 X30 E1").filament_mm == pytest.approx(6.0)


def test_g92_e_resets_the_extruder_without_extruding() -> None:
    assert run("M82\nG1 X10 E5\nG92 E0\nG1 X20 E3").filament_mm == pytest.approx(8.0)


def test_g91_makes_positions_and_e_relative() -> None:
    a = run("M82\nG91\nG1 X10 E2\nG1 X10 E2")
    assert a.filament_mm == pytest.approx(4.0)
    assert a.bbox_max == pytest.approx((20.0, 0.0, 0.0))


def test_g90_after_m83_makes_e_absolute_again_as_marlin_does() -> None:
    assert run("M83\nG90\nG1 X1 E5\nG1 X2 E7").filament_mm == pytest.approx(7.0)


def test_m83_after_g90_keeps_xyz_absolute() -> None:
    a = run("G90\nM83\nG1 X5 E1\nG1 X5 E1")
    assert a.filament_mm == pytest.approx(2.0)
    assert a.bbox_max == pytest.approx((5.0, 0.0, 0.0))


def test_inches_scale_positions_and_extrusion() -> None:
    a = run("G20\nM83\nG1 X1 E1")
    assert a.units == "inch"
    assert a.filament_mm == pytest.approx(25.4)
    assert a.bbox_max == pytest.approx((25.4, 0.0, 0.0))


def test_grams_and_cost_come_from_the_material() -> None:
    profile = replace(
        PRINTER, material=Material("PETG", diameter_mm=2.0, density_g_cm3=1.0, price_per_kg=20.0)
    )
    a = run("M83\nG1 X10 E1000", profile)
    volume_cm3 = math.pi * 1.0 * 1.0 * 1000.0 / 1000.0  # pi r^2 (mm^2) * 1000 mm, in cm3
    assert a.filament_g == pytest.approx(volume_cm3 * 1.0)
    assert a.cost == pytest.approx(volume_cm3 / 1000.0 * 20.0)


def test_arc_extrudes_and_its_box_reaches_past_the_end_points() -> None:
    # A clockwise half-circle from (10,0) to (-10,0) about (0,0) passes through (0,-10).
    a = run("M83\nG1 X10 Y0\nG2 X-10 Y0 I-10 J0 E3")
    assert a.filament_mm == pytest.approx(3.0)
    assert a.bbox_min == pytest.approx((-10.0, -10.0, 0.0))
    assert a.bbox_max == pytest.approx((10.0, 0.0, 0.0))


def test_arc_with_radius_and_its_laser_length() -> None:
    a = run("G1 X10 Y0 F600\nM3 S100\nG3 X-10 Y0 R10", INSTANT_LASER)
    assert a.laser_distance_mm == pytest.approx(math.pi * 10.0)
    assert a.bbox_max[1] == pytest.approx(10.0)  # type: ignore[index]
    assert a.laser_on_s == pytest.approx(math.pi * 10.0 / 10.0, rel=1e-3)  # 10 mm/s


def test_words_written_without_spaces_and_lowercase() -> None:
    a = run("m83\nG1X10Y5E1.5\ng1 x20 e0.5")
    assert a.filament_mm == pytest.approx(2.0)
    assert a.bbox_max == pytest.approx((20.0, 5.0, 0.0))


def test_comments_and_blank_lines_are_not_commands() -> None:
    a = run("; a comment\n\nG21 ; units\n(a GRBL comment)\nG1 X1 (inline) Y1\n")
    assert a.commands == 2
    assert a.lines == 5


def test_g92_shift_is_tracked_in_machine_coordinates() -> None:
    a = run("G1 X100\nG92 X0\nG1 X10")
    assert a.bbox_max == pytest.approx((110.0, 0.0, 0.0))


# --- laser -----------------------------------------------------------------------------------------


def test_laser_is_off_for_s0_and_g0_and_on_for_g1_with_power() -> None:
    text = "G21\nM3 S0\nG1 X10 F600\nM3 S100\nG0 X20\nG1 X30\nG1 X40 S0\nG1 X50 S50\nM5\nG1 X60"
    a = run(text, INSTANT_LASER)
    assert a.laser_distance_mm == pytest.approx(20.0)  # X20->30 and X40->50
    assert a.laser_on_s == pytest.approx(2.0, rel=1e-3)  # 20 mm at 600 mm/min


def test_m5_turns_the_beam_off_and_m3_alone_brings_back_the_last_power() -> None:
    a = run("M3 S100\nG1 X10 F600\nM5\nG1 X20\nM3\nG1 X30", INSTANT_LASER)
    assert a.laser_distance_mm == pytest.approx(20.0)


def test_laser_cost_is_per_hour_of_beam() -> None:
    profile = replace(INSTANT_LASER, material=Material("plywood", price_per_laser_hour=36.0))
    a = run("M3 S100\nG1 X100 F600", profile)  # 10 s on
    assert a.cost == pytest.approx(36.0 * 10.0 / 3600.0, rel=1e-3)


# --- temperatures, counts --------------------------------------------------------------------------


def test_highest_temperatures_from_s_and_r() -> None:
    a = run("M104 S200\nM109 R215\nM104 S0\nM140 S60\nM190 S70")
    assert (a.max_hotend_c, a.max_bed_c) == (215.0, 70.0)


def test_no_temperature_no_move_gives_none() -> None:
    a = run("G21")
    assert (a.max_hotend_c, a.max_bed_c, a.bbox_min, a.bbox_max) == (None, None, None, None)


# --- time ------------------------------------------------------------------------------------------

# 1000 mm/s^2 and no jerk: a 100 mm move at 100 mm/s accelerates over 5 mm (0.1 s), cruises 90 mm
# (0.9 s) and brakes over 5 mm (0.1 s): 1.1 s.
TRAPEZOID = "M201 X1000 Y1000\nM204 P1000 T1000\nM205 X0 Y0 Z0 E0\n"


def test_one_move_is_a_trapezoid() -> None:
    assert run(TRAPEZOID + "G1 X100 F6000").estimated_s == pytest.approx(1.1)


def test_collinear_moves_do_not_stop_between_them() -> None:
    assert run(TRAPEZOID + "G1 X50 F6000\nG1 X100").estimated_s == pytest.approx(1.1)


def test_a_right_angle_without_jerk_stops_at_the_corner() -> None:
    # Two 50 mm trapezoids: 0.1 + 0.4 + 0.1 s each.
    assert run(TRAPEZOID + "G1 X50 F6000\nG1 Y50").estimated_s == pytest.approx(1.2)


def test_a_short_move_never_reaches_its_feedrate() -> None:
    # 2 mm at 1000 mm/s^2 from rest to rest: accelerate 1 mm, brake 1 mm: 2 * sqrt(2 * 1 / 1000) s.
    assert run(TRAPEZOID + "G1 X2 F6000").estimated_s == pytest.approx(2 * math.sqrt(0.002))


def test_m203_caps_the_feedrate_per_axis() -> None:
    assert run("M203 X50\nG1 X100 F6000", INSTANT).estimated_s == pytest.approx(2.0, rel=1e-6)


def test_m205_minimum_travel_feedrate_raises_slow_moves() -> None:
    assert run("M205 T20\nG1 X100 F60", INSTANT).estimated_s == pytest.approx(5.0, rel=1e-6)


def test_classic_jerk_lets_a_slow_corner_keep_its_speed() -> None:
    # Jerk 10 mm/s per axis, 5 mm/s moves: the corner changes each axis by 5 mm/s, so no slow-down;
    # from rest a block starts at its safe speed 5 mm/s, so 100 mm take 20 s whatever the acceleration.
    text = "M201 X10 Y10\nM204 P10 T10\nM205 X10 Y10\nG1 X50 F300\nG1 Y50"
    assert run(text).estimated_s == pytest.approx(20.0, rel=1e-6)


def test_junction_deviation_corner_speed() -> None:
    profile = replace(
        PRINTER, junction_deviation_mm=0.05, max_accel_mm_s2=(1000.0,) * 4, travel_accel_mm_s2=1000.0
    )
    a = run("G1 X50 F6000\nG1 Y50", profile)
    # 90 degrees: sin(theta/2) = sqrt(0.5); v^2 = a * jd * s / (1 - s).
    s = math.sqrt(0.5)
    v = math.sqrt(1000.0 * 0.05 * s / (1 - s))
    brake = (100.0**2 - v**2) / 2000.0  # mm to slow from 100 to v
    leg = 0.1 + (50 - 5 - brake) / 100.0 + (100.0 - v) / 1000.0  # accelerate, cruise, brake to v
    assert a.estimated_s == pytest.approx(2 * leg)


def test_dwells_count_in_ms_on_marlin_and_s_on_grbl() -> None:
    assert run("G4 P500\nG4 S2").estimated_s == pytest.approx(2.5)
    assert run("G4 P0.5", LASER).estimated_s == pytest.approx(0.5)


def test_heat_up_waits_count_nothing() -> None:
    assert run("M109 S200\nM190 S60\nM104 S210").estimated_s == 0.0


def test_grbl_g0_runs_at_the_machine_maximum_not_at_f() -> None:
    assert run("G0 X100 F60", INSTANT_LASER).estimated_s == pytest.approx(1.0, rel=1e-6)  # 100 mm/s


# --- figures up to a line (a cancelled job) --------------------------------------------------------


def test_material_and_time_up_to_a_line() -> None:
    lines = ["M83", "G1 X10 E1 F600", "G1 X20 E2", "; comment", "G1 X30 E3"]
    a = analyze_lines(lines, INSTANT)
    assert [a.filament_mm_at(n) for n in range(0, 7)] == pytest.approx([0, 0, 1, 3, 3, 6, 6])
    assert a.estimated_s_at(3) == pytest.approx(2.0, rel=1e-6)  # 20 mm at 10 mm/s
    assert a.estimated_s_at(5) == pytest.approx(a.estimated_s)
    assert a.line_of_command(4) == 5
    assert analyze_lines(lines, INSTANT, stop_after_line=3).filament_mm == pytest.approx(3.0)
    grams = a.filament_g_at(3)
    assert grams == pytest.approx(a.filament_g * 3 / 6)


def test_laser_time_up_to_a_line() -> None:
    a = analyze_lines(["M3 S100", "G1 X10 F600", "G0 X20", "G1 X30"], INSTANT_LASER)
    assert a.laser_on_s_at(1) == 0.0
    assert a.laser_on_s_at(2) == pytest.approx(1.0, rel=1e-3)
    assert a.laser_on_s_at(3) == pytest.approx(1.0, rel=1e-3)
    assert a.laser_on_s_at(4) == pytest.approx(2.0, rel=1e-3)


def test_to_json_has_the_documented_keys() -> None:
    data = run("M104 S200\nM83\nG1 Z0.2\nG1 X10 Y-1 E1\nG1 X0 Y0").to_json()
    for key in ("commands", "filament_mm", "filament_g", "laser_on_s", "laser_distance_mm", "estimated_s"):
        assert isinstance(data[key], int | float)
    assert data["bbox"] == {"min": [0.0, -1.0, 0.2], "max": [10.0, 0.0, 0.2]}
    assert (data["max_hotend_c"], data["max_bed_c"], data["problems"]) == (200.0, None, [])
