"""GRBL laser safety in the host protocol: laser mode (`$32`) read on connect, the lid's safety-door hold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from drivers.events import (
    FirmwareMessage,
    JobCompleted,
    JobState,
    JobStateChanged,
    LaserMode,
    LineAcked,
)
from drivers.grbl.host import GrblHost

T = TypeVar("T")
BANNER = b"Grbl 1.1h ['$' for help]\r\n"
# What GRBL 1.1h prints for `$$` (an excerpt: the host reads $30 and $32, ignores the rest).
SETTINGS = [b"$0=10", b"$1=25", b"$10=1", b"$22=1", b"$30=1000", b"$31=0", b"$32=LASER", b"$130=200.000"]


def settings_answer(laser: str) -> bytes:
    return b"".join(line.replace(b"LASER", laser.encode()) + b"\r\n" for line in SETTINGS) + b"ok\r\n"


def of_type(events: Sequence[object], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def lines_of(wire: bytes) -> list[str]:
    for rt in (b"?", b"!", b"~", b"\x18", b"\x84"):
        wire = wire.replace(rt, b"")
    return [line for line in wire.decode("ascii").split("\n") if line]


# -- laser mode on connect ----------------------------------------------------------------------


def test_settings_are_asked_once_after_the_banner_and_a_job_waits_for_the_answer() -> None:
    host = GrblHost(check_laser_mode=True, rx_buffer_bytes=20)
    host.receive(BANNER, 0.0)
    host.start_job(["G1 X1 S100 F600", "G1 X2", "G1 X3"], 0.0)  # started before the answer came
    assert host.data_to_send(0.0) == b"?$$\n"  # alone: no job line while GRBL prints its settings
    assert lines_of(host.data_to_send(0.05)) == []
    answer = settings_answer("1")
    events = host.receive(answer[:17], 0.1) + host.receive(answer[17:], 0.1)  # any split
    assert of_type(events, LaserMode) == [LaserMode(True, "$32=1", 1000.0)]
    assert of_type(events, FirmwareMessage) == []  # our own query is read, not logged line by line
    assert of_type(events, LineAcked) == []  # the `ok` answered `$$`, not a job line
    # character counting starts clean: 13 + 5 bytes in the 20-byte window, the third line waits
    assert lines_of(host.data_to_send(0.2)) == ["G1X1S100F600", "G1X2"]
    events = host.receive(b"ok\r\nok\r\n", 0.3)
    assert [e.line_no for e in of_type(events, LineAcked)] == [1, 2]
    assert lines_of(host.data_to_send(0.3)) == ["G1X3"]
    assert of_type(host.receive(b"ok\r\n", 0.4), JobCompleted) == [JobCompleted(3, 23, 0)]


def test_laser_mode_off_is_reported_and_asked_again_after_every_reset() -> None:
    host = GrblHost(check_laser_mode=True)
    host.receive(BANNER, 0.0)
    assert host.data_to_send(0.0) == b"$$\n"
    (mode,) = of_type(host.receive(settings_answer("0"), 0.1), LaserMode)
    assert mode == LaserMode(False, "$32=0", 1000.0) and host.laser_mode == mode
    assert host.data_to_send(0.2) == b""  # once per banner
    host.send_command("\x18")  # a technician's soft reset
    assert host.data_to_send(0.3) == b"\x18"
    host.receive(BANNER, 0.4)
    assert host.laser_mode is None  # unknown until GRBL answers again
    assert host.data_to_send(0.4) == b"$$\n"
    (mode,) = of_type(host.receive(settings_answer("1"), 0.5), LaserMode)
    assert mode.enabled and mode.setting == "$32=1"


def test_an_unknown_laser_mode_counts_as_off() -> None:
    host = GrblHost(check_laser_mode=True)
    host.receive(BANNER, 0.0)
    host.data_to_send(0.0)
    assert of_type(host.receive(b"error:8\r\n", 0.1), LaserMode) == [LaserMode(False, "$$ answered error:8")]
    host.receive(BANNER, 0.2)
    host.data_to_send(0.2)
    (mode,) = of_type(host.receive(b"$0=10\r\n$1=25\r\nok\r\n", 0.3), LaserMode)  # GRBL 0.9: no $32
    assert not mode.enabled and "no $32" in mode.setting


def test_a_command_queued_before_the_banner_goes_first_then_the_settings_query() -> None:
    host = GrblHost(check_laser_mode=True)
    host.receive(BANNER, 0.0)
    host.send_command("$X")
    assert host.data_to_send(0.0) == b"$X\n"
    host.receive(b"[MSG:Caution: Unlocked]\r\nok\r\n", 0.1)
    assert host.data_to_send(0.1) == b"$$\n"


# -- lid open: the safety door, not a feed hold ----------------------------------------------------


def running(lines: list[str]) -> GrblHost:
    host = GrblHost()
    host.start_job(lines, 0.0)
    host.data_to_send(0.0)
    return host


def test_door_hold_sends_0x84_and_is_paused_only_in_a_door_state() -> None:
    host = running(["G1 X10 S500 F600", "G1 X20", "G1 X30"])
    host.receive(b"ok\r\n", 0.05)
    host.door_hold(0.1)
    assert host.data_to_send(0.1).startswith(b"\x84")  # not `!`: the door de-energizes in either mode
    events = host.receive(b"<Hold:0|MPos:1,0,0|FS:0,0>\r\n", 0.15)  # an earlier hold's report
    assert host.job_state == JobState.PAUSING and JobStateChanged(JobState.PAUSED) not in events
    host.receive(b"<Door:2|MPos:2,0,0|FS:300,500>\r\n", 0.2)
    assert host.job_state == JobState.PAUSING
    host.receive(b"<Door:0|MPos:3,0,0|FS:0,0>\r\n", 0.3)
    assert host.job_state == JobState.PAUSED
    host.receive(b"ok\r\nok\r\n", 0.35)
    assert lines_of(host.data_to_send(0.4)) == []  # nothing new while the lid is open
    host.resume(0.5)
    assert host.data_to_send(0.5).startswith(b"~")
    events = host.receive(b"<Door:3|MPos:3,0,0|FS:0,500>\r\n", 0.6)  # GRBL restores the beam, then runs
    assert b"~" not in host.data_to_send(0.6)  # Door:3 is the resume under way
    events += host.receive(b"<Run|MPos:4,0,0|FS:600,500>\r\n", 0.7)
    assert of_type(events, JobCompleted) == [JobCompleted(3, 26, 0)]  # 14 + 6 + 6 bytes went


def test_door_hold_during_a_feed_hold_still_sends_the_door_and_resume_repeats_until_it_closes() -> None:
    host = running(["G1 X10 S500 F600", "G1 X20"])
    host.pause(0.1)
    host.data_to_send(0.1)
    host.receive(b"<Hold:0|MPos:1,0,0|FS:0,0>\r\n", 0.2)
    assert host.job_state == JobState.PAUSED
    host.door_hold(0.3)  # the lid opens while paused: with $32=0 the beam is still on in Hold:0
    assert host.data_to_send(0.3) == b"\x84" and host.job_state == JobState.PAUSED
    host.resume(0.4)
    assert host.data_to_send(0.4).startswith(b"~")
    host.receive(b"<Door:1|MPos:1,0,0|FS:0,0>\r\n", 0.5)  # GRBL's own door input still reads open
    assert host.data_to_send(0.5).startswith(b"~")  # asked again: GRBL ignores `~` until it closes
    host.receive(b"<Run|MPos:1,0,0|FS:600,500>\r\n", 0.6)
    assert b"~" not in host.data_to_send(0.6)


def test_door_hold_outside_a_job_is_left_with_cycle_start() -> None:
    host = GrblHost()
    host.door_hold(0.0)
    assert host.data_to_send(0.0) == b"\x84" and host.job_state == JobState.IDLE
    host.resume(0.1)
    assert host.data_to_send(0.1) == b"~"
    host.resume(0.2)
    assert host.data_to_send(0.2) == b""


def test_settings_are_asked_at_once_from_a_board_that_never_greets() -> None:
    host = GrblHost(check_laser_mode=True)  # no banner: the board did not reset when its port opened
    assert host.data_to_send(0.0) == b"$$\n"
    (mode,) = of_type(host.receive(settings_answer("1"), 0.1), LaserMode)
    assert mode.enabled


def test_a_job_waiting_behind_the_settings_fails_unsent_when_laser_mode_is_off() -> None:
    from drivers.events import JobFailed

    host = GrblHost(check_laser_mode=True)
    host.receive(BANNER, 0.0)
    host.start_job(["M4 S800", "G1 X10 F600", "M5"], 0.0)
    assert lines_of(host.data_to_send(0.0)) == ["$$"]
    events = host.receive(settings_answer("0"), 0.1)
    (failed,) = of_type(events, JobFailed)
    assert "laser mode is off ($32=0)" in failed.reason and "$32=1" in failed.reason
    assert lines_of(host.data_to_send(0.2)) == []  # not one job line reached the laser


def test_a_long_hold_is_no_stuck_machine_once_resumed() -> None:
    from drivers.events import JobFailed

    host = GrblHost(no_progress_s=5.0, status_interval_s=0.2, no_answer_after_s=1000.0)
    host.receive(BANNER, 0.0)
    host.start_job(["G1 X10 F600", "G1 X20"], 0.0)
    host.data_to_send(0.0)
    host.pause(0.1)
    host.data_to_send(0.1)
    host.receive(b"<Hold:0|MPos:1.000,0.000,0.000|FS:0,0>\r\n", 0.2)  # held, lines still in flight
    for t in range(1, 60):  # a minute at the lid, GRBL answering every status poll
        host.data_to_send(t)
        assert of_type(host.receive(b"<Hold:0|MPos:1.000,0.000,0.000|FS:0,0>\r\n", t + 0.1), JobFailed) == []
    host.resume(60.0)
    events = [*host.poll(60.0), *host.receive(b"<Run|MPos:1.000,0.000,0.000|FS:600,0>\r\n", 60.1)]
    events += host.poll(60.2)
    assert [e.state for e in of_type(events, JobStateChanged)] == [JobState.RUNNING]  # not stopped as stuck
    assert of_type(events, JobFailed) == [] and b"\x18" not in host.data_to_send(60.3)
