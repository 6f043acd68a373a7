"""The printer calibration dialogues with scripted firmware replies (Marlin 2.1's printed formats)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from fabnode.technician.calibrate import (
    Ask,
    CalibrationError,
    Dialogue,
    EstepsPlan,
    JobResult,
    Outcome,
    PidPlan,
    RecordMaterial,
    Reply,
    Send,
    StreamJob,
    drive,
    esteps,
    level,
    member_job_refusal,
    number,
    pid,
    yes_no,
    zoffset,
)
from fabnode.technician.parse import (
    AutotuneFailed,
    parse_autotune,
    parse_capabilities,
    parse_m92,
    parse_m851,
    parse_mesh,
    parse_pid,
)

M503 = [
    "echo:; Steps per unit:",
    "echo:  M92 X80.00 Y80.00 Z400.00 E93.00",
    "echo:; Hotend PID:",
    "echo:  M301 P22.20 I1.08 D114.00",
    "echo:; Bed PID:",
    "echo:  M304 P10.00 I0.02 D305.40",
    "echo:; Z-Probe Offset:",
    "echo:  M851 X10.00 Y10.00 Z0.00 ; (mm)",
]
M115 = [
    "FIRMWARE_NAME:Marlin 2.1.2.1 (Feb  1 2024 10:00:00) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin "
    "PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender-3 V2 EXTRUDER_COUNT:1 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff",
    "Cap:SERIAL_XON_XOFF:0", "Cap:EEPROM:1", "Cap:AUTOREPORT_TEMP:1", "Cap:AUTOLEVEL:1", "Cap:Z_PROBE:1",
    "Cap:ADVANCED_OK:0",
]  # fmt: skip
# Marlin 2.1's M303 output for a hotend, as printed after the last cycle.
AUTOTUNE = [
    "PID Autotune start",
    "bias: 92 d: 92 min: 196.56 max: 203.75 Ku: 32.59 Tu: 42.13",
    " Classic PID ",
    " Kp: 19.56 Ki: 0.93 Kd: 102.98",
    "bias: 94 d: 94 min: 197.19 max: 203.13 Ku: 40.29 Tu: 38.40",
    " Classic PID ",
    " Kp: 24.18 Ki: 1.26 Kd: 116.03",
    "PID Autotune finished! Put the last Kp, Ki and Kd constants from below into Configuration.h",
    "#define DEFAULT_Kp 24.18",
    "#define DEFAULT_Ki 1.26",
    "#define DEFAULT_Kd 116.03",
]


class ScriptedIO:
    """Plays the firmware from a table of replies and the technician from a table of answers."""

    def __init__(self, replies: Mapping[str, list[str]] | Callable[[str], Reply],
                 answers: Mapping[str, str] | None = None, job: JobResult | None = None) -> None:
        self.replies = replies
        self.answers = dict(answers or {})
        self.job = job
        self.sent: list[str] = []
        self.asked: list[str] = []
        self.said: list[str] = []
        self.recorded: list[RecordMaterial] = []
        self.streamed: list[StreamJob] = []

    def send(self, step: Send) -> Reply:
        self.sent.append(step.line)
        if callable(self.replies):
            return self.replies(step.line)
        code = step.line.split()[0]
        return Reply((*self.replies.get(step.line, self.replies.get(code, [])), "ok"), True)

    def ask(self, step: Ask) -> object:
        self.asked.append(step.key)
        return step.parse(self.answers[step.key])

    def say(self, text: str) -> None:
        self.said.append(text)

    def stream(self, step: StreamJob) -> JobResult:
        self.streamed.append(step)
        assert self.job is not None
        return self.job

    def record(self, step: RecordMaterial) -> str:
        self.recorded.append(step)
        return "node.toml"


def run(dialogue: Dialogue, io: ScriptedIO) -> Outcome:
    return drive(dialogue, io)


# --- esteps ----------------------------------------------------------------------------------------


def test_esteps_heats_extrudes_and_applies_old_times_requested_over_actual() -> None:
    io = ScriptedIO({"M503": M503}, {"ready": "yes", "remaining": "22", "save": "yes"})
    outcome = run(esteps(EstepsPlan()), io)
    expected = round(93.0 * 100 / (120 - 22), 2)
    assert io.sent == ["M503", "M109 S200", "G91", "G1 E100 F100", "M400", "G90", "M104 S0",
                       f"M92 E{expected:.2f}", "M500"]
    assert outcome.saved is True
    assert outcome.changes == (("E steps/mm", "93.00", f"{expected:.2f}"),)


def test_esteps_saves_only_after_confirmation() -> None:
    io = ScriptedIO({"M503": M503}, {"ready": "y", "remaining": "20mm", "save": "no"})
    outcome = run(esteps(EstepsPlan()), io)
    assert "M500" not in io.sent
    assert io.sent[-1] == "M92 E93.00"  # exactly 100 mm came out: unchanged
    assert outcome.saved is False


def test_esteps_with_a_measured_length_asks_no_remaining_and_uses_its_own_length() -> None:
    io = ScriptedIO({"M503": M503}, {"ready": "y", "save": "n"})
    run(esteps(EstepsPlan(temp_c=215, length_mm=50, feed_mm_min=60, measured_mm=47.5)), io)
    assert "remaining" not in io.asked
    assert io.sent[1:4] == ["M109 S215", "G91", "G1 E50 F60"]
    assert io.sent[-1] == f"M92 E{93.0 * 50 / 47.5:.2f}"


def test_esteps_falls_back_to_m92_when_m503_does_not_report_it() -> None:
    io = ScriptedIO({"M503": ["echo:; Linear Units:", "echo:  G21 ; (mm)"], "M92": ["echo:  M92 E415.00"]},
                    {"ready": "y", "remaining": "20", "save": "n"})
    run(esteps(EstepsPlan()), io)
    assert io.sent[:2] == ["M503", "M92"] and io.sent[-1] == "M92 E415.00"


def test_esteps_refuses_a_measurement_that_is_more_likely_a_slip() -> None:
    io = ScriptedIO({"M503": M503}, {"ready": "y", "remaining": "80", "save": "y"})
    with pytest.raises(CalibrationError, match="40 mm extruded for 100 mm"):
        run(esteps(EstepsPlan()), io)
    assert not any(line.startswith("M92 E") for line in io.sent)


def test_esteps_stops_before_heating_when_the_technician_says_no() -> None:
    io = ScriptedIO({"M503": M503}, {"ready": "no"})
    with pytest.raises(CalibrationError, match="before heating"):
        run(esteps(EstepsPlan()), io)
    assert io.sent == ["M503"]


@pytest.mark.parametrize(("plan", "message"), [
    (EstepsPlan(temp_c=100), "--temp 100"),
    (EstepsPlan(temp_c=300, max_temp_c=280), "--temp 300"),
    (EstepsPlan(length_mm=130), "--length 130"),
    (EstepsPlan(feed_mm_min=5000), "--feed 5000"),
])  # fmt: skip
def test_esteps_plan_is_refused_before_anything_is_sent(plan: EstepsPlan, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        esteps(plan)


def test_a_refused_command_stops_the_routine_and_names_it() -> None:
    def firmware(line: str) -> Reply:
        if line.startswith("M109"):
            return Reply(('echo:Unknown command: "M109 S200"', "ok"), False)
        return Reply((*M503, "ok"), True)

    with pytest.raises(CalibrationError, match=r"refused 'M109 S200'.*Unknown command"):
        run(esteps(EstepsPlan()), ScriptedIO(firmware, {"ready": "y"}))


# --- pid -------------------------------------------------------------------------------------------


def test_pid_hotend_runs_m303_and_applies_the_final_gains_with_m301() -> None:
    io = ScriptedIO({"M503": M503, "M303": AUTOTUNE}, {"save": "yes"})
    outcome = run(pid(PidPlan()), io)
    assert io.sent == ["M503", "M303 E0 S200 C8 U1", "M301 P24.18 I1.26 D116.03", "M500"]
    assert outcome.changes == (("hotend PID", "P22.20 I1.08 D114.00", "P24.18 I1.26 D116.03"),)


def test_pid_bed_uses_heater_minus_one_and_m304() -> None:
    bed = [line.replace("DEFAULT_K", "DEFAULT_bedK") for line in AUTOTUNE]
    io = ScriptedIO({"M503": M503, "M303": bed}, {"save": "no"})
    run(pid(PidPlan("bed", 65, 5, 110)), io)
    assert io.sent == ["M503", "M303 E-1 S65 C5 U1", "M304 P24.18 I1.26 D116.03"]


def test_pid_fails_clearly_when_the_autotune_fails() -> None:
    io = ScriptedIO({"M503": M503, "M303": ["PID Autotune start", "PID Autotune failed! timeout"]}, {})
    with pytest.raises(CalibrationError, match="autotune failed: PID Autotune failed! timeout"):
        run(pid(PidPlan()), io)
    assert not any(line.startswith("M301") for line in io.sent)


def test_autotune_result_without_defines_uses_the_last_gains_line() -> None:
    assert parse_autotune(AUTOTUNE[:7]) == (24.18, 1.26, 116.03)
    with pytest.raises(AutotuneFailed, match="no Kp"):
        parse_autotune(["PID Autotune start", "ok"])


@pytest.mark.parametrize("plan", [PidPlan(heater="chamber"), PidPlan(temp_c=300), PidPlan(cycles=2)])
def test_pid_plan_is_refused_at_once(plan: PidPlan) -> None:
    with pytest.raises(CalibrationError):
        pid(plan)


# --- zoffset and level ------------------------------------------------------------------------------


def test_zoffset_applies_reads_back_and_saves() -> None:
    state = {"Z": 0.0}

    def firmware(line: str) -> Reply:
        if line.startswith("M851 Z"):
            state["Z"] = float(line[6:])
            return Reply(("ok",), True)
        if line == "M851":
            return Reply((f"echo:  M851 X10.00 Y10.00 Z{state['Z']:.2f} ; (mm)", "ok"), True)
        return Reply((*M115, "ok"), True)

    io = ScriptedIO(firmware, {"z": "-1.25", "save": "yes"})
    outcome = run(zoffset(), io)
    assert io.sent == ["M115", "M851", "M851 Z-1.25", "M851", "M500"]
    assert outcome.changes == (("probe Z offset", "0.00", "-1.25"),)


def test_zoffset_notices_a_value_the_firmware_did_not_take() -> None:
    io = ScriptedIO({"M115": M115, "M851": ["echo:  M851 X10.00 Y10.00 Z0.00 ; (mm)"]}, {"z": "-1.25"})
    with pytest.raises(CalibrationError, match="did not take"):
        run(zoffset(), io)


def test_zoffset_and_level_refuse_a_printer_without_a_probe() -> None:
    no_probe = [line.replace("Z_PROBE:1", "Z_PROBE:0").replace("AUTOLEVEL:1", "AUTOLEVEL:0") for line in M115]
    with pytest.raises(CalibrationError, match="no bed probe"):
        run(zoffset(), ScriptedIO({"M115": no_probe}))
    with pytest.raises(CalibrationError, match="no bed probe"):
        run(level(), ScriptedIO({"M115": no_probe}))
    with pytest.raises(CalibrationError, match="--probe"):
        run(level(), ScriptedIO({"M115": M115[:1]}))  # no Cap: lines at all
    io = ScriptedIO({})
    with pytest.raises(CalibrationError, match="--no-probe"):
        run(level(probe=False), io)
    assert io.sent == []


def test_level_homes_probes_and_reports_the_mesh() -> None:
    points = [f"Bed X: {x:.3f} Y: {y:.3f} Z: {z:.3f}" for x, y, z in
              [(10, 10, -0.1), (110, 10, 0.05), (10, 110, 0.2), (110, 110, 0.0)]]
    io = ScriptedIO({"G29": points}, {"save": "no"})
    outcome = run(level(probe=True), io)
    assert io.sent == ["G28", "G29"]
    assert outcome.data["range_mm"] == pytest.approx(0.3)
    assert any("4 points" in text for text in io.said)


def test_a_printed_bilinear_grid_is_read_as_a_mesh() -> None:
    grid = ["Bilinear Leveling Grid:", "      0      1      2", " 0 +0.120 +0.040 -0.030",
            " 1 +0.080 +0.010 -0.060", " 2 +0.050 -0.020 -0.110", "ok"]
    mesh = parse_mesh(grid)
    assert mesh is not None and len(mesh.z) == 9
    assert (min(mesh.z), max(mesh.z)) == (-0.11, 0.12)


# --- parsing and answers ----------------------------------------------------------------------------


def test_report_parsers_read_marlin_lines() -> None:
    per_tool = ["echo:  M92 X80.00 Y80.00 Z400.00", "echo:  M92 T0 E93.00", "echo:  M92 T1 E415.00"]
    assert parse_m92(per_tool) == {"X": 80.0, "Y": 80.0, "Z": 400.0, "E": 93.0}
    assert parse_pid(M503, "M304") == (10.0, 0.02, 305.4)
    assert parse_m851(M503) == {"X": 10.0, "Y": 10.0, "Z": 0.0}
    caps = parse_capabilities(M115)
    assert caps.firmware_name == "Marlin 2.1.2.1 (Feb  1 2024 10:00:00)"
    assert caps.fields["MACHINE_TYPE"] == "Ender-3 V2"
    assert caps.has("EEPROM") and not caps.has("ADVANCED_OK") and not caps.has("SDCARD")


def test_answers_parse_numbers_with_units_and_yes_no() -> None:
    parse = number(0, 120, "mm")
    assert parse(" 22.5 mm ") == 22.5
    with pytest.raises(ValueError, match=r"outside 0\.\.120"):
        parse("130")
    with pytest.raises(ValueError, match="not a number"):
        parse("lots")
    assert yes_no("Y") is True and yes_no("no") is False
    with pytest.raises(ValueError, match="yes or no"):
        yes_no("maybe")


# --- the daemon's status ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "refused"), [
    ({"ok": True, "state": "running", "machine": "prusa-1", "session": {"is_maintenance": False}}, True),
    ({"ok": True, "state": "paused", "job": {"is_maintenance": False}}, True),
    ({"ok": True, "state": "running"}, True),  # who runs it is unknown: treated as a member's job
    ({"ok": True, "state": "running", "session": {"is_maintenance": True}}, False),
    ({"ok": True, "state": "unlocked", "session": {"is_maintenance": False}}, False),
    ({"ok": True, "state": "locked"}, False),
])  # fmt: skip
def test_routines_refuse_while_a_members_job_runs(status: dict, refused: bool) -> None:
    message = member_job_refusal(status, "printer-2")
    if refused:
        machine = status.get("machine", "printer-2")
        assert message == f"a member's job is running on {machine}: calibrate after it ends"
    else:
        assert message is None
