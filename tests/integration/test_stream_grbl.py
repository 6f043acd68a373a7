"""The Streamer with drivers.grbl.host.GrblHost, and the CLI, against the GRBL simulator over a real pty."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.events import AlarmRaised, JobState, JobStateChanged, LaserMode, StatusReport
from drivers.grbl import host as grbl
from drivers.serial_link import SerialLink
from drivers.streamer import JobEnded, Streamer
from simulators.grbl.simulator import GrblSimulator
from tests.conftest import gcode_path
from tests.integration.test_stream_helpers import (
    REPO,
    Recorder,
    SimFactory,
    fabnode,
    json_summary,
    run_job,
    sim_factory,
    wire_commands,
    write_prefix,
)
from tests.unit.test_grbl_lines import as_grbl_reads

FAST_BAUD = 1_000_000  # content tests: the wire's speed is not what they check
FAULT_AT = 60  # the firmware's N-th line

@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    yield from sim_factory(GrblSimulator, FAST_BAUD)


def laser_lines(count: int | None = None) -> list[str]:
    return gcode_path("laser-jsdc.gcode").read_text(encoding="utf-8").splitlines()[:count]


def assert_grbl_read_the_file(executed: list[str], lines: list[str]) -> None:
    """GRBL ran every command of the file, each read as the file's line (the host sends them compact)."""
    expected = wire_commands(lines, paren_comments=True)
    assert [as_grbl_reads(e) for e in executed] == [as_grbl_reads(x) for x in expected]
    assert sum(map(len, executed)) < sum(len("".join(x.split())) for x in expected)  # fewer than GRBL keeps


def host() -> object:
    return grbl.GrblHost(no_answer_after_s=1.0, hold_timeout_s=1.0, reset_timeout_s=1.0)


@pytest.mark.timeout(30)
def test_laser_executes_exactly_the_file_commands(start_sim: SimFactory) -> None:
    lines = laser_lines()
    sim = start_sim()
    ended, _ = run_job(sim.port, FAST_BAUD, host(), lines)  # type: ignore[attr-defined]
    expected = wire_commands(lines, paren_comments=True)
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert_grbl_read_the_file(sim.executed, lines)  # type: ignore[attr-defined]
    assert (ended.lines_acked, ended.last_line_no) == (len(expected), len(lines))
    assert sim.stats.overflow_drops == 0 and sim.stats.errors == 0  # type: ignore[attr-defined]


FAULTS = [
    # (simulator fault, JobEnded.kind, words the reason must contain)
    ({"reset_at_line": FAULT_AT}, "reset", "Grbl"),
    ({"alarm_at_line": FAULT_AT}, "alarm", "hard limit"),
    ({"error_at_line": FAULT_AT}, "error", "error:20"),
    ({"silence_at_line": FAULT_AT}, "no_answer", "no status report"),
    ({"drop_connection_at_line": FAULT_AT}, "port_lost", "lost"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("fault", "kind", "words"), FAULTS, ids=[f[1] for f in FAULTS])
def test_each_fault_ends_the_job_with_its_kind(
    start_sim: SimFactory, fault: dict, kind: str, words: str
) -> None:
    lines = laser_lines(400)
    sim = start_sim(**fault)
    ended, rec = run_job(sim.port, FAST_BAUD, host(), lines, timeout=15)  # type: ignore[attr-defined]
    assert (ended.status, ended.kind) == ("failed", kind), ended.reason
    assert words.lower() in ended.reason.lower()
    # A refused line stops the machine (hold, reset, M5): lines GRBL already held may have run.
    assert ended.lines_acked < (FAULT_AT if kind != "error" else len(lines) - 50)
    assert ended.lines_acked <= len(sim.executed)  # type: ignore[attr-defined]
    if kind == "error":
        assert sim.executed[-1] == "M5"  # type: ignore[attr-defined]
    if kind == "alarm":
        assert [a.code for a in rec.of(AlarmRaised)] == [1]


@pytest.mark.timeout(20)
def test_cli_streams_a_laser_file_and_reports_beam_time(start_sim: SimFactory, tmp_path: Path) -> None:
    path, lines = write_prefix(gcode_path("laser-jsdc.gcode"), 800, tmp_path)
    sim = start_sim()
    result = fabnode("stream", "--port", sim.port, "--firmware", "grbl", "--baud", str(FAST_BAUD),  # type: ignore[attr-defined]
                     "--json", str(path))
    assert result.returncode == 0, result.stderr
    info = json_summary(result)
    n = len(wire_commands(lines, paren_comments=True))
    assert (info["status"], info["lines"], info["lines_acked"]) == ("completed", n, n)
    assert isinstance(info["laser_on_s"], float) and info["laser_on_s"] > 0


@pytest.mark.timeout(20)
def test_cli_alarm_exits_6_with_its_meaning(start_sim: SimFactory, tmp_path: Path) -> None:
    path, _ = write_prefix(gcode_path("laser-jsdc.gcode"), 400, tmp_path)
    sim = start_sim(alarm_at_line=FAULT_AT)
    result = fabnode("stream", "--port", sim.port, "--firmware", "grbl", "--baud", str(FAST_BAUD),  # type: ignore[attr-defined]
                     str(path))
    assert result.returncode == 6, result.stderr
    assert "GRBL alarm" in result.stderr and "ALARM:1" in result.stderr and "hard limit" in result.stderr


@pytest.mark.timeout(20)
def test_cli_cancel_holds_resets_and_turns_the_beam_off(start_sim: SimFactory, tmp_path: Path) -> None:
    path, _ = write_prefix(gcode_path("laser-jsdc.gcode"), 800, tmp_path)
    sim = start_sim()
    result = fabnode("stream", "--port", sim.port, "--firmware", "grbl", "--baud", str(FAST_BAUD),  # type: ignore[attr-defined]
                     "--json", "--cancel-after-lines", "100", str(path))
    assert result.returncode == 1, result.stderr
    assert json_summary(result)["status"] == "cancelled"
    assert sim.executed[-1] == "M5"  # type: ignore[attr-defined]


@pytest.mark.timeout(20)
def test_console_sends_real_time_bytes_and_commands(start_sim: SimFactory) -> None:
    sim = start_sim()
    result = fabnode("console", "--port", sim.port, "--firmware", "grbl", "--baud", str(FAST_BAUD),  # type: ignore[attr-defined]
                     stdin="?\n$$\nG0 X5\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Grbl 1.1" in out
    assert "<Idle|MPos:" in out
    assert "$32=1" in out  # the settings list answers $$
    assert sim.executed == ["$$", "G0X5"]  # type: ignore[attr-defined]  # `$$` as written, G-code compact


@pytest.mark.timeout(30)
def test_cli_ctrl_c_stops_the_laser_safely_and_exits_130(start_sim: SimFactory, tmp_path: Path) -> None:
    path, _ = write_prefix(gcode_path("laser-jsdc.gcode"), 800, tmp_path)
    sim = start_sim(time_scale=1.0)  # real feed rates: the job is still cutting when Ctrl-C comes
    cmd = [sys.executable, "-m", "fabnode", "stream", "--port", sim.port, "--firmware", "grbl",  # type: ignore[attr-defined]
           "--baud", str(FAST_BAUD), "--json", str(path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while len(sim.executed) < 10 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)  # the simulator offers no wait; poll its record with a deadline
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Ctrl-C" in err and '"status": "cancelled"' in out
    assert sim.executed[-1] == "M5"  # type: ignore[attr-defined]


@pytest.mark.timeout(20)
def test_a_job_started_in_alarm_fails_as_an_alarm_and_says_how_to_unlock(start_sim: SimFactory) -> None:
    sim = start_sim(homing_lock=True)  # boots in Alarm until $H or $X
    ended, _ = run_job(sim.port, FAST_BAUD, grbl.GrblHost(), laser_lines(50), timeout=10)
    assert (ended.status, ended.kind) == ("failed", "alarm"), ended.reason
    assert "Alarm" in ended.reason and "$X" in ended.reason and "error:9" in ended.reason
    assert sim.executed == []  # type: ignore[attr-defined]


@pytest.mark.timeout(40)
def test_after_a_limit_alarm_stream_sends_the_soft_reset_grbl_needs(start_sim: SimFactory,
                                                                    tmp_path: Path) -> None:
    path, _ = write_prefix(gcode_path("laser-jsdc.gcode"), 400, tmp_path)
    sim = start_sim(alarm_at_line=FAULT_AT)  # ALARM:1, a hard limit: GRBL answers nothing until a reset
    args = ("stream", "--port", sim.port, "--firmware", "grbl", "--baud", str(FAST_BAUD))  # type: ignore[attr-defined]
    assert fabnode(*args, str(path)).returncode == 6
    again = fabnode(*args, "--timeout", "2", str(path))
    assert "sending GRBL a soft reset (Ctrl-X)" in again.stderr, again.stderr
    # GRBL answered the reset (not "no answer ... wrong port?"): the job now fails on the alarm lock,
    # with the unlock to use.
    assert again.returncode == 6, again.stderr
    assert "$X" in again.stderr


@pytest.mark.timeout(30)
def test_percent_program_marks_never_reach_grbl(start_sim: SimFactory, tmp_path: Path) -> None:
    path = tmp_path / "cam.nc"
    path.write_text("%\nG21 G90\nM4 S100\nG1 X5 Y5 F1200\nM5\n%\n", encoding="utf-8")
    sim = start_sim()
    result = fabnode("stream", "--port", sim.port, "--firmware", "grbl", "--baud", str(FAST_BAUD),  # type: ignore[attr-defined]
                     "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert json_summary(result)["status"] == "completed"
    assert "%" not in sim.executed and sim.executed[-1] == "M5"  # type: ignore[attr-defined]


# -- laser safety: `$32` read on connect, the lid held by GRBL's safety door ------------------------


class DoorOnPause(grbl.GrblHost):
    """The lid's hold through the Streamer's pause(): door_hold() (0x84) instead of the feed hold."""

    def pause(self, now: float) -> None:
        self.door_hold(now)


def _wait_until(rec: Recorder, test: Callable[[object], bool], timeout: float = 5.0) -> object:
    with rec.cond:
        assert rec.cond.wait_for(lambda: any(test(e) for e in rec.events), timeout), rec.events[-5:]
        return next(e for e in rec.events if test(e))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("laser_mode", [True, False], ids=["$32=1", "$32=0"])
def test_laser_mode_is_read_on_connect_and_a_job_started_at_once_waits_for_it(
    start_sim: SimFactory, laser_mode: bool
) -> None:
    lines = laser_lines(200)
    sim = start_sim(laser_mode=laser_mode)
    protocol = grbl.GrblHost(no_answer_after_s=1.0, check_laser_mode=True)
    ended, rec = run_job(sim.port, FAST_BAUD, protocol, lines)  # type: ignore[attr-defined]
    assert rec.of(LaserMode) == [LaserMode(laser_mode, f"$32={int(laser_mode)}", 1000.0)]
    if laser_mode:
        assert (ended.status, ended.kind) == ("completed", ""), ended.reason
        assert sim.executed[0] == "$$"  # type: ignore[attr-defined]
        assert_grbl_read_the_file(sim.executed[1:], lines)  # type: ignore[attr-defined]
    else:  # its lines waited behind $$: none reached the laser
        assert ended.status == "failed" and "laser mode is off ($32=0)" in ended.reason
        assert sim.executed == ["$$"]  # type: ignore[attr-defined]
    assert sim.stats.overflow_drops == 0 and sim.stats.errors == 0  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_lid_open_turns_the_beam_off_without_laser_mode_and_the_job_completes_after_it_closes(
    start_sim: SimFactory,
) -> None:
    lines = ["G21 G90", "G1 X20 F600 M3 S800", "G1 X30", "M5"]  # 3 s of cutting at 10 mm/s
    sim = start_sim(laser_mode=False, time_scale=1.0)
    rec = Recorder()
    # no $$ check here: the door hold must turn the beam off on a board whose laser mode is off
    streamer = Streamer(SerialLink(sim.port, FAST_BAUD), DoorOnPause(), rec)  # type: ignore[attr-defined]
    try:
        assert streamer.wait_ready(5.0)
        streamer.start_job(lines, name="lid")
        _wait_until(rec, lambda e: isinstance(e, StatusReport) and e.state == "Run")
        assert sim.core.beam_power() == 800.0  # type: ignore[attr-defined]
        streamer.pause()  # the lid opens
        _wait_until(rec, lambda e: isinstance(e, JobStateChanged) and e.state == JobState.PAUSED)
        assert sim.core.report.state() == "Door:0"  # type: ignore[attr-defined]
        assert sim.core.beam_power() == 0.0  # type: ignore[attr-defined]  # off although $32=0
        streamer.resume()  # the lid closed
        ended = rec.wait_for(JobEnded, 15.0)
    finally:
        streamer.close()
    assert isinstance(ended, JobEnded) and (ended.status, ended.kind) == ("completed", ""), ended
    assert sim.executed == ["G21G90", "G1X20F600M3S800", "G1X30", "M5"]  # type: ignore[attr-defined]
    assert sim.core.planner.position()[0] == pytest.approx(30.0)  # type: ignore[attr-defined]
