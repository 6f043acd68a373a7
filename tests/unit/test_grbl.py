"""GRBL 1.1 host protocol: bytes in, events out, no ports, threads or sleeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pytest

from drivers.events import (
    FAILURE_ALARM,
    FAILURE_ERROR,
    FAILURE_NO_ANSWER,
    FAILURE_RESET,
    AlarmRaised,
    CommandReply,
    FirmwareMessage,
    FirmwareReady,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobState,
    JobStateChanged,
    LineAcked,
    StatusReport,
)
from drivers.grbl.host import GrblHost
from tests.conftest import gcode_path

T = TypeVar("T")
BANNER = b"Grbl 1.1h ['$' for help]\r\n"


def lines_of(wire: bytes) -> list[str]:
    """The G-code lines in what the host wrote, real-time bytes taken out."""
    for rt in (b"?", b"!", b"~", b"\x18"):
        wire = wire.replace(rt, b"")
    return [line for line in wire.decode("ascii").split("\n") if line]


def of_type(events: Sequence[object], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def started(lines: list[str], **kw: object) -> GrblHost:
    host = GrblHost(**kw)  # type: ignore[arg-type]
    host.start_job(lines, 0.0)
    return host


# -- character counting -----------------------------------------------------------------------


def test_window_holds_at_most_the_receive_buffer_and_refills_per_ok() -> None:
    job = [f"G1 X{1000 + i} Y{1000 + i} S1000 F900" for i in range(20)]
    wire = [line.replace(" ", "") for line in job]  # GRBL drops the blanks itself: they go no more
    assert {len(line) + 1 for line in wire} == {22}  # bytes each with "\n" (26 as written)
    host = started(job)
    first = host.data_to_send(0.0)
    assert first.startswith(b"?")  # the first status poll
    sent = lines_of(first)
    assert sent == wire[:5]  # 5 * 22 = 110 <= 128; a 6th would make 132
    assert host.data_to_send(0.01) == b""  # window full: nothing more
    host.receive(b"ok\r\n", 0.02)
    assert lines_of(host.data_to_send(0.02)) == [wire[5]]


def test_window_fills_to_exactly_the_buffer_size_never_beyond() -> None:
    job = ["G1X" + "1" * 60, "G1Y" + "2" * 60, "M5"]  # 64 + 64 = 128 bytes, then 3 more
    host = started(job)
    assert lines_of(host.data_to_send(0.0)) == job[:2]
    host.receive(b"ok\r\n", 0.1)
    assert lines_of(host.data_to_send(0.1)) == ["M5"]


def test_receive_buffer_size_is_configurable() -> None:
    job = ["G0 X1", "G0 X2", "G0 X3", "G0 X4", "G0 X5"]  # 5 bytes each on the wire: `G0X1\n`
    host = started(job, rx_buffer_bytes=13)
    assert lines_of(host.data_to_send(0.0)) == ["G0X1", "G0X2"]


def test_line_longer_than_the_buffer_fails_the_job_naming_the_file_line() -> None:
    host = started(["G0 X0", "G1 X" + "9" * 200])
    host.data_to_send(0.0)
    events = host.receive(b"ok\r\n", 0.1) + host.poll(0.1)
    assert host.data_to_send(0.1) == b"!?"  # the job stops as a cancel does before it is failed
    host.receive(b"<Hold:0|MPos:0,0,0|FS:0,0>\r\n", 0.2)
    assert host.data_to_send(0.2) == b"\x18"
    host.receive(BANNER, 0.3)
    assert lines_of(host.data_to_send(0.3)) == ["M5"]
    events += host.receive(b"ok\r\n", 0.4)
    failed = of_type(events, JobFailed)
    assert len(failed) == 1 and failed[0].kind == FAILURE_ERROR
    assert "file line 2" in failed[0].reason and "128" in failed[0].reason
    assert host.job_state == JobState.FAILED


# -- `$` lines go alone ------------------------------------------------------------------------


def test_settings_line_waits_for_all_acks_goes_alone_and_blocks_until_its_ok() -> None:
    host = started(["G0 X1", "G0 X2", "$32=1", "G0 X3"])
    assert lines_of(host.data_to_send(0.0)) == ["G0X1", "G0X2"]
    host.receive(b"ok\r\n", 0.1)
    assert host.data_to_send(0.1) == b""  # G0 X2 still in flight
    host.receive(b"ok\r\n", 0.2)
    assert lines_of(host.data_to_send(0.2)) == ["$32=1"]
    host.receive(b"<Idle|MPos:0.000,0.000,0.000|FS:0,0>\r\n", 0.3)
    assert host.data_to_send(0.5) == b""  # no line and no `?` during an EEPROM write
    host.receive(b"ok\r\n", 0.6)
    assert lines_of(host.data_to_send(0.6)) == ["G0X3"]


def test_homing_in_a_job_is_alone_but_still_polled() -> None:
    host = started(["$H", "G0 X1"])
    assert host.data_to_send(0.0) == b"?$H\n"
    assert host.data_to_send(0.25) == b"?"  # homing takes long: status reports keep it alive
    host.receive(b"ok\r\n", 0.3)
    assert lines_of(host.data_to_send(0.3)) == ["G0X1"]


# -- real-time bytes ----------------------------------------------------------------------------


def test_realtime_bytes_go_out_with_a_full_window() -> None:
    host = started(["G1 X" + "1" * 123])  # 128 bytes: the window is full
    host.data_to_send(0.0)
    host.pause(0.01)
    assert host.data_to_send(0.01) == b"!?"  # hold, and ask at once whether it completed
    host.send_command("?")
    host.send_command("\x18")
    assert host.data_to_send(0.02) == b"?\x18"


@pytest.mark.parametrize("char", ["?", "!", "~", "\x18", "\x91"])
def test_single_realtime_char_command_is_sent_bare_without_an_answer(char: str) -> None:
    host = GrblHost()
    host.send_command(char)
    assert host.data_to_send(0.0) == bytes([ord(char)])
    host.send_command("$I")
    assert host.data_to_send(0.1) == b"$I\n"  # nothing was waiting on the real-time byte


def test_comment_with_realtime_chars_never_reaches_the_wire() -> None:
    job = ["G0 X1 (stop! now?)", "; resume~ please!", "G1 X2 ; hold!", "(é ~) G1 X3"]
    host = started(job)
    wire = host.data_to_send(0.0)
    assert wire == b"?G0X1\nG1X2\nG1X3\n"


# -- status reports -----------------------------------------------------------------------------


def test_status_report_fields_are_parsed() -> None:
    host = GrblHost()
    line = (b"<Run|MPos:10.000,20.500,-1.000|FS:1500,800|Bf:15,128|WCO:1.000,2.000,0.000"
            b"|Ov:100,90,100|A:S>\r\n")
    (report,) = host.receive(line, 0.0)
    assert isinstance(report, StatusReport)
    assert report.state == "Run"
    assert report.machine_pos == (10.0, 20.5, -1.0)
    assert report.work_pos == (9.0, 18.5, -1.0)
    assert (report.feed, report.spindle) == (1500.0, 800.0)
    assert (report.planner_free, report.rx_free) == (15, 128)
    assert report.fields["Ov"] == "100,90,100" and report.fields["A"] == "S"


def test_status_report_wpos_f_pn_and_remembered_wco() -> None:
    host = GrblHost()
    host.receive(b"<Idle|WPos:1.000,2.000,3.000|F:500|Pn:XZ|WCO:0.500,0.000,1.000>\r\n", 0.0)
    (report,) = host.receive(b"<Hold:0|WPos:2.000,2.000,3.000|F:0|Pn:P>\r\n", 0.1)
    assert isinstance(report, StatusReport)
    assert report.state == "Hold:0"
    assert report.work_pos == (2.0, 2.0, 3.0)
    assert report.machine_pos == (2.5, 2.0, 4.0)  # from the WCO of the earlier report
    assert report.feed == 0.0 and report.spindle is None
    assert report.fields["Pn"] == "P"


def test_malformed_status_report_is_a_message_not_a_crash() -> None:
    host = GrblHost()
    assert host.receive(b"<Idle|MPos:1.0,x,3>\r\n", 0.0) == [FirmwareMessage("<Idle|MPos:1.0,x,3>")]


# -- errors, alarms, resets ---------------------------------------------------------------------


def test_error_on_a_job_line_fails_the_job_with_meaning_and_file_line_and_stops_sending() -> None:
    job = ["; engrave", "G21", "G5 X1", "G0 X2", "G0 X3"] + [f"G1 X{i}" for i in range(40)]
    host = started(job)
    sent = lines_of(host.data_to_send(0.0))
    assert sent[:3] == ["G21", "G5X1", "G0X2"]
    events = host.receive(b"ok\r\nerror:20\r\n", 0.1)
    assert of_type(events, JobFailed) == []  # not yet: the moves GRBL already holds must not run
    assert host.data_to_send(0.1) == b"!?"  # feed hold first, beam still under GRBL's control
    host.receive(b"ok\r\nok\r\n<Hold:0|MPos:2,0,0|FS:0,0>\r\n", 0.2)
    assert host.data_to_send(0.2) == b"\x18"  # held: the soft reset flushes its buffer, beam off
    host.receive(BANNER, 0.3)
    assert lines_of(host.data_to_send(0.3)) == ["M5"]
    (failed,) = of_type(host.receive(b"ok\r\n", 0.4), JobFailed)
    assert failed.kind == FAILURE_ERROR
    assert "error:20" in failed.reason and "unsupported or invalid G-code" in failed.reason
    assert "file line 3" in failed.reason
    # G0 X2 and G0 X3 were in GRBL's buffer and answered ok before the hold: they ran.
    assert failed.last_line_no == 5
    assert host.job_state == JobState.FAILED
    assert lines_of(host.data_to_send(0.5)) == []


def test_alarm_during_a_job_raises_and_fails() -> None:
    host = started(["G0 X1", "G0 X500"])
    host.data_to_send(0.0)
    events = host.receive(b"ok\r\nALARM:1\r\n[MSG:Reset to continue]\r\n", 0.1)
    assert of_type(events, AlarmRaised) == [AlarmRaised(1, of_type(events, AlarmRaised)[0].meaning)]
    assert "hard limit" in of_type(events, AlarmRaised)[0].meaning
    (failed,) = of_type(events, JobFailed)
    assert failed.kind == FAILURE_ALARM and "ALARM:1" in failed.reason and failed.last_line_no == 1
    assert FirmwareMessage("[MSG:Reset to continue]") in events


@pytest.mark.parametrize("code", range(1, 11))
def test_every_alarm_code_has_a_meaning(code: int) -> None:
    (alarm,) = GrblHost().receive(f"ALARM:{code}\r\n".encode(), 0.0)
    assert isinstance(alarm, AlarmRaised) and alarm.code == code and "unknown" not in alarm.meaning


def test_banner_greets_and_during_a_job_means_reset() -> None:
    host = GrblHost()
    assert host.receive(BANNER, 0.0) == [FirmwareReady("Grbl 1.1h ['$' for help]")]
    host.start_job(["G0 X1", "G0 X2"], 1.0)
    host.data_to_send(1.0)
    events = host.receive(b"ok\r\nGrbl 1.1f ['$' for help]\r\n", 1.1)
    (failed,) = of_type(events, JobFailed)
    assert failed.kind == FAILURE_RESET and failed.last_line_no == 1
    assert host.job_state == JobState.FAILED
    # GRBL's buffer is empty after the reset: the window is free for a manual command at once.
    host.send_command("$X")
    assert host.data_to_send(1.2) == b"$X\n"


# -- manual commands ----------------------------------------------------------------------------


def test_manual_command_collects_its_reply_lines() -> None:
    host = GrblHost()
    host.send_command("$I")
    assert host.data_to_send(0.0) == b"$I\n"
    events = host.receive(b"[VER:1.1h.20190825:]\r\n[OPT:V,15,1", 0.1)
    events += host.receive(b"28]\r\nok\r\n", 0.2)
    assert events == [
        FirmwareMessage("[VER:1.1h.20190825:]"),
        FirmwareMessage("[OPT:V,15,128]"),
        CommandReply("$I", ("[VER:1.1h.20190825:]", "[OPT:V,15,128]", "ok"), True),
    ]


def test_manual_error_is_a_failed_reply_and_commands_go_one_at_a_time() -> None:
    host = GrblHost()
    host.send_command("$$")
    host.send_command("G0 X1 ; jog a bit")
    assert host.data_to_send(0.0) == b"$$\n"
    events = host.receive(b"$0=10\r\n$32=1\r\nok\r\n", 0.1)
    assert CommandReply("$$", ("$0=10", "$32=1", "ok"), True) in events
    assert FirmwareMessage("$32=1") in events
    assert host.data_to_send(0.2) == b"G0X1\n"
    (reply,) = host.receive(b"error:9\r\n", 0.3)
    assert reply == CommandReply("G0 X1 ; jog a bit", ("error:9",), False)


def test_manual_commands_wait_for_the_job_to_end() -> None:
    host = started(["G0 X1"])
    host.send_command("$G")
    assert lines_of(host.data_to_send(0.0)) == ["G0X1"]
    host.receive(b"ok\r\n", 0.1)
    assert host.data_to_send(0.1) == b"$G\n"


def test_blank_manual_command_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to send"):
        GrblHost().send_command("; just a comment")


# -- acknowledgements and completion ------------------------------------------------------------


def test_line_acked_counts_file_lines_and_cumulative_bytes_then_completes() -> None:
    job = ["; header", "", "G21", "(set power)", "M4 S500", "G1 X10 F600 ; cut", "M5", "; end"]
    host = started(job)
    assert lines_of(host.data_to_send(0.0)) == ["G21", "M4S500", "G1X10F600", "M5"]
    events = host.receive(b"ok\r\nok\r\nok\r\nok\r\n", 0.1)
    assert of_type(events, LineAcked) == [  # the bytes that went on the wire: 4, 7, 10, 3
        LineAcked(3, 1, 4), LineAcked(5, 2, 11), LineAcked(6, 3, 21), LineAcked(7, 4, 24)
    ]
    assert of_type(events, JobCompleted) == [JobCompleted(4, 24, 0)]
    assert events[-2:] == [JobStateChanged(JobState.COMPLETED), JobCompleted(4, 24, 0)]
    assert host.job_state == JobState.COMPLETED and host.next_deadline() is None


def test_a_job_of_comments_only_completes_at_once() -> None:
    host = started(["; nothing", "(at all)"])
    events = host.poll(0.0)
    assert events == [JobStateChanged(JobState.RUNNING), JobStateChanged(JobState.COMPLETED),
                      JobCompleted(0, 0, 0)]


def test_real_laser_file_streams_to_completion() -> None:
    raw = gcode_path("laser-jsdc.gcode").read_text(encoding="utf-8").splitlines()
    host = started(raw)
    now, sent, acked = 0.0, [], []
    while host.job_state == JobState.RUNNING:
        wire = host.data_to_send(now)
        new = lines_of(wire)
        sent += new
        now += 0.001
        acked += of_type(host.receive(b"ok\r\n" * len(new), now), LineAcked)
    assert host.job_state == JobState.COMPLETED
    assert len(sent) == len(acked) == sum(1 for line in raw if line.split(";")[0].strip())
    assert acked[-1].line_no == max(i for i, line in enumerate(raw, 1) if line.split(";")[0].strip())


# -- pause, resume, cancel ----------------------------------------------------------------------


def test_pause_holds_and_stops_lines_resume_carries_on() -> None:
    job = [f"G1 X{i} S800" for i in range(30)]
    host = started(job)
    in_flight = lines_of(host.data_to_send(0.0))
    host.pause(0.05)
    assert host.job_state == JobState.PAUSING
    assert host.data_to_send(0.05) == b"!?"
    host.receive(b"ok\r\nok\r\n", 0.06)
    assert host.data_to_send(0.07) == b""  # room in the window, but paused
    events = host.receive(b"<Hold:1|MPos:1,0,0|FS:0,0>\r\n<Hold:0|MPos:1,0,0|FS:0,0>\r\n", 0.1)
    assert events[-1] == JobStateChanged(JobState.PAUSED)
    host.resume(1.0)
    wire = host.data_to_send(1.0)
    assert wire.startswith(b"~")
    expected = [line.replace(" ", "") for line in job[len(in_flight) : len(in_flight) + 2]]
    assert lines_of(wire) == expected  # two answered while held


def test_resume_repeats_cycle_start_while_grbl_still_holds() -> None:
    host = started(["G1 X1"] * 10)
    host.data_to_send(0.0)
    host.pause(0.1)
    host.data_to_send(0.1)
    host.resume(0.12)  # before the hold completed: GRBL ignores this `~`
    assert host.data_to_send(0.12) == b"~"
    host.receive(b"<Hold:0|MPos:1,0,0|FS:0,0>\r\n", 0.2)
    assert host.data_to_send(0.2) == b"~"
    host.receive(b"<Run|MPos:1,0,0|FS:600,0>\r\n", 0.4)
    host.receive(b"<Hold:0|MPos:1,0,0|FS:0,0>\r\n", 0.6)  # the member pressed the hold button
    assert b"~" not in host.data_to_send(0.6)


def test_cancel_holds_then_resets_then_m5_then_reports_last_acked_line() -> None:
    job = ["G21", "M4 S900"] + [f"G1 X{i} F1200" for i in range(40)]
    host = started(job)
    host.data_to_send(0.0)
    host.receive(b"ok\r\nok\r\nok\r\n", 0.1)
    host.data_to_send(0.1)
    host.cancel(0.2, "member pressed stop")
    assert host.job_state == JobState.CANCELLING
    assert host.data_to_send(0.2) == b"!?"
    host.receive(b"ok\r\n<Hold:1|MPos:1,0,0|FS:0,0>\r\n", 0.25)
    assert host.data_to_send(0.3) == b""  # no reset while decelerating
    host.receive(b"<Hold:0|MPos:1,0,0|FS:0,0>\r\n", 0.45)
    assert host.data_to_send(0.45) == b"\x18"
    assert host.data_to_send(0.5) == b""  # nothing until the banner
    events = host.receive(BANNER + b"[MSG:'$H'|'$X' to unlock]\r\n", 0.6)
    assert FirmwareReady("Grbl 1.1h ['$' for help]") in events
    assert lines_of(host.data_to_send(0.6)) == ["M5"]
    events = host.receive(b"ok\r\n", 0.7)
    assert events == [JobStateChanged(JobState.CANCELLED, "member pressed stop"),
                      JobCancelled(4, "member pressed stop")]
    assert host.job_state == JobState.CANCELLED


def test_cancel_resets_after_the_hold_timeout_and_notes_a_refused_m5() -> None:
    host = started(["G1 X1 S900"] * 20, hold_timeout_s=1.0)
    host.data_to_send(0.0)
    host.cancel(0.1)
    host.data_to_send(0.1)
    host.receive(b"<Run|MPos:1,0,0|FS:900,900>\r\n", 0.3)
    deadline = host.next_deadline()
    assert deadline is not None and deadline <= 1.1
    host.poll(1.1)
    assert host.data_to_send(1.1) == b"\x18"
    host.receive(b"ALARM:3\r\n" + BANNER, 1.2)
    assert host.data_to_send(1.2) == b"M5\n"
    (cancelled,) = of_type(host.receive(b"error:9\r\n", 1.3), JobCancelled)
    assert cancelled.reason.startswith("cancelled") and "error:9" in cancelled.reason


@pytest.mark.parametrize(("state", "resets"), [("Door:1", True), ("Alarm", True), ("Door:2", False),
                                               ("Hold:1", False), ("Run", False)])
def test_cancel_resets_only_once_motion_has_stopped(state: str, resets: bool) -> None:
    host = started(["G1 X1 S900"] * 20)
    host.data_to_send(0.0)
    host.cancel(0.1)
    host.data_to_send(0.1)
    host.receive(f"<{state}|MPos:1,0,0|FS:0,0>\r\n".encode(), 0.2)
    assert (host.data_to_send(0.2) == b"\x18") is resets


def test_cancel_survives_grbl_resetting_by_itself_and_resends_a_lost_m5() -> None:
    host = started(["G1 X1 S900"] * 20)
    host.data_to_send(0.0)
    host.cancel(0.1)
    host.receive(BANNER, 0.15)  # GRBL reset on its own before our hold went out
    assert host.data_to_send(0.15) == b"M5\n"  # neither the stale `!` nor a reset follow
    host.receive(BANNER, 0.2)  # and once more, swallowing the M5
    assert lines_of(host.data_to_send(0.2)) == ["M5"]
    (cancelled,) = of_type(host.receive(b"ok\r\n", 0.3), JobCancelled)
    assert cancelled == JobCancelled(0, "cancelled")


def test_cancel_without_banner_fails_no_answer() -> None:
    host = started(["G1 X1"] * 5, hold_timeout_s=0.5, reset_timeout_s=2.0)
    host.data_to_send(0.0)
    host.cancel(0.1)
    host.data_to_send(0.1)
    host.poll(0.6)
    assert host.data_to_send(0.6) == b"\x18"
    assert host.poll(2.0) == []
    (failed,) = of_type(host.poll(2.7), JobFailed)
    assert failed.kind == FAILURE_NO_ANSWER and "banner" in failed.reason


# -- timers -------------------------------------------------------------------------------------


def test_status_is_polled_at_most_every_interval_while_running() -> None:
    host = started(["G1 X1"] * 3)
    host.poll(0.0)
    wires = b"".join(host.data_to_send(t / 100) for t in range(100))  # 1 s, asked every 10 ms
    assert wires.count(b"?") == 5
    assert host.next_deadline() == pytest.approx(1.0, abs=0.011)  # next poll, within one tick


def test_no_status_and_no_ok_for_too_long_fails_the_job() -> None:
    host = started(["G1 X1"] * 3, no_answer_after_s=10.0)
    host.data_to_send(0.0)
    host.receive(b"<Run|MPos:0,0,0|FS:0,0>\r\n", 5.0)  # status alone keeps it alive
    assert of_type(host.poll(14.9), JobFailed) == []
    (failed,) = of_type(host.poll(15.0), JobFailed)
    assert failed.kind == FAILURE_NO_ANSWER and failed.last_line_no == 0
    assert host.job_state == JobState.FAILED and host.next_deadline() is None


def test_state_changes_from_api_calls_come_out_at_the_next_poll() -> None:
    host = GrblHost()
    host.start_job(["G0 X1"], 3.0)
    assert host.next_deadline() == 3.0
    assert host.poll(3.0) == [JobStateChanged(JobState.RUNNING)]


def test_no_status_polling_and_no_timer_without_a_job() -> None:
    host = GrblHost()
    assert host.next_deadline() is None
    assert host.data_to_send(100.0) == b"" and host.poll(100.0) == []


# -- alarms that need a reset, a job started in Alarm, a stuck machine (issue 9 section 4) ----------


def test_a_limit_alarm_names_the_soft_reset_in_its_advice() -> None:
    host = started(["G0 X1", "G0 X500"])
    host.data_to_send(0.0)
    (failed,) = of_type(host.receive(b"ok\r\nALARM:1\r\n[MSG:Reset to continue]\r\n", 0.1), JobFailed)
    assert failed.kind == FAILURE_ALARM and "soft reset (Ctrl-X" in failed.reason and "$X" in failed.reason
    # GRBL now answers nothing: the next job's silence says what to do, not just "no answer"
    host.start_job(["G0 X1"], 1.0)
    host.data_to_send(1.0)
    (silent,) = of_type(host.poll(11.5), JobFailed)
    assert silent.kind == "no_answer" and "soft reset (Ctrl-X" in silent.reason


def test_a_job_started_in_alarm_fails_as_an_alarm_with_its_advice() -> None:
    host = started(["G21", "G0 X1"])
    host.data_to_send(0.0)
    (failed,) = of_type(host.receive(b"error:9\r\n", 0.1), JobFailed)
    assert failed.kind == FAILURE_ALARM
    assert "Alarm" in failed.reason and "error:9" in failed.reason and "$X" in failed.reason


def test_grbl_that_answers_but_makes_no_progress_fails_the_job() -> None:
    host = started([f"G1 X{i} F100" for i in range(40)], no_progress_s=5.0, no_answer_after_s=3.0)
    host.data_to_send(0.0)
    failed: list[JobFailed] = []
    t = 0.0
    while not failed and t < 10.0:
        t += 0.5
        # every `?` is answered, always the same: the machine is stuck, no `ok` comes
        failed = of_type(host.receive(b"<Run|MPos:1.000,0.000,0.000|FS:100,0>\r\n", t), JobFailed)
        failed += of_type(host.poll(t), JobFailed)
        if host.job_state == JobState.CANCELLING:
            host.data_to_send(t)
            host.receive(b"<Hold:0|MPos:1.000,0.000,0.000|FS:0,0>\r\n" + BANNER, t)
            host.data_to_send(t)
            failed += of_type(host.receive(b"ok\r\n", t), JobFailed)
    assert 5.0 <= t < 7.0
    assert len(failed) == 1 and failed[0].kind == "no_answer" and "no progress for 5 s" in failed[0].reason


def test_a_moving_machine_is_progress_even_without_an_ok() -> None:
    host = started([f"G1 X{i} F100" for i in range(40)], no_progress_s=5.0, no_answer_after_s=3.0)
    host.data_to_send(0.0)
    for i in range(1, 30):
        report = f"<Run|MPos:{i}.000,0.000,0.000|FS:100,0>\r\n".encode()
        events = host.receive(report, i * 0.5) + host.poll(i * 0.5)
        assert of_type(events, JobFailed) == []
    assert host.job_state == JobState.RUNNING
