"""The machine controller, driven the way the daemon drives it: events with a fake clock in, actions out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from fabnode.machine.actions import (
    AbortJob,
    Action,
    Buzz,
    CancelJob,
    CloseSession,
    HeatersOff,
    OpenSession,
    PauseJob,
    PublishState,
    RecordAccess,
    RecordEvent,
    RecordFault,
    RecordJobEnded,
    Reply,
    ResumeJob,
    SetLeds,
    StartJob,
    SwitchRelay,
)
from fabnode.machine.controller import TRANSITIONS, Controller, UnknownTransition
from fabnode.machine.events import (
    ActivitySeen,
    BadgeTapped,
    CancelRequested,
    EStopPressed,
    EStopReleased,
    FirmwareFault,
    JobEnded,
    JobPaused,
    JobRequested,
    JobResumed,
    LidClosed,
    LidOpened,
    LockRequested,
    PauseRequested,
    ResumeRequested,
    TemperatureReported,
    Tick,
)
from fabnode.machine.state import JobStatus, MemberRef, State
from tests.unit.controller_settings import settings_for_tests

ALICE = MemberRef(1, "member", "Alice")
BOB = MemberRef(2, "member", "Bob")
TECH = MemberRef(9, "technician", "Tess")
T0 = 10_000.0  # monotonic seconds: any origin will do

RED = SetLeds(green=False, red=True, blink=False)
RED_BLINK = SetLeds(green=False, red=True, blink=True)
GREEN = SetLeds(green=True, red=False, blink=False)
GREEN_BLINK = SetLeds(green=True, red=False, blink=True)


class Rig:
    """A controller and the fake clock the daemon would feed it."""

    def __init__(self, **settings: Any) -> None:
        self.c = Controller(settings_for_tests(**settings))
        self.now = T0
        self.boot = self.c.start(self.now)

    def later(self, seconds: float) -> Rig:
        self.now += seconds
        return self

    def send(self, event_type: type, *args: Any, **kwargs: Any) -> list[Action]:
        return self.c.handle(event_type(self.now, *args, **kwargs))

    def tap(self, who: MemberRef | None, denial: str | None = None, badge: str | None = None) -> list[Action]:
        badge_hash = badge or (f"badge-{who.id}" if who else "badge-stranger")
        return self.send(BadgeTapped, badge_hash, who, denial)

    def tick_at(self, when: float) -> list[Action]:
        self.now = when
        return self.send(Tick)

    def start_job(self, job_id: str = "job-1", file: str = "benchy.gcode") -> list[Action]:
        return self.send(JobRequested, job_id, file)


def of(actions: list[Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def running(rig: Rig, who: MemberRef = ALICE) -> Rig:
    rig.tap(who)
    rig.later(5).start_job()
    return rig


# --- start-up and refused taps -------------------------------------------------------------------------


def test_start_up_switches_the_relay_off_and_shows_locked():
    rig = Rig()
    assert rig.boot == [SwitchRelay(False), RED, PublishState(State.LOCKED)]
    assert rig.c.next_deadline() is None


def test_unknown_badge_is_refused_with_red_led_and_buzzer_and_logged_with_its_reason():
    rig = Rig()
    actions = rig.tap(None, "unknown badge", badge="f00d")
    assert actions == [RecordAccess("f00d", None, False, "unknown badge"), RED_BLINK, Buzz("denied")]
    assert rig.c.state is State.LOCKED and rig.c.session is None and not rig.c.relay_on
    # The red flash lasts signal_s, then the LEDs show the locked state again.
    assert rig.c.next_deadline() == T0 + 2.0
    assert rig.tick_at(T0 + 1.9) == []
    assert rig.tick_at(T0 + 2.0) == [RED]
    assert rig.c.next_deadline() is None


@pytest.mark.parametrize("denial", ["not trained on this machine", "training expired on 2024-05-01"])
def test_a_known_member_without_valid_training_is_refused_and_logged_under_their_id(denial):
    rig = Rig()
    actions = rig.tap(BOB, denial)
    assert actions[0] == RecordAccess("badge-2", BOB.id, False, denial)
    assert Buzz("denied") in actions and not of(actions, SwitchRelay)
    assert rig.c.state is State.LOCKED


def test_a_granted_tap_needs_a_member_with_a_known_role():
    with pytest.raises(ValueError, match="needs a member"):
        BadgeTapped(T0, "f00d", None, None)
    with pytest.raises(ValueError, match=r"MemberRef\.role: 'admin'"):
        MemberRef(3, "admin")  # type: ignore[arg-type]


# --- the member's journey ------------------------------------------------------------------------------


def test_member_journey_unlock_job_badge_out_cooldown_until_hotend_cool():
    rig = Rig(cooldown_hotend_below_c=50.0)
    actions = rig.tap(ALICE)
    session = rig.c.session
    assert session is not None and session.member == ALICE and session.started_at == T0
    assert not session.is_maintenance
    assert actions == [
        RecordAccess("badge-1", ALICE.id, True, "session opened"),
        OpenSession(session),
        SwitchRelay(True),
        Buzz("granted"),
        GREEN,
        PublishState(State.UNLOCKED),
    ]

    actions = rig.later(30).start_job("job-7", "benchy.gcode")
    job = rig.c.job
    assert job is not None and (job.id, job.file, job.status) == ("job-7", "benchy.gcode", "running")
    assert job.member_id == ALICE.id and not job.is_maintenance
    assert actions[:2] == [StartJob(job), Reply(True, "job job-7 started")]
    assert rig.c.state is State.RUNNING

    actions = rig.later(3600).send(JobEnded, "job-7", "completed")
    assert actions[0] == RecordJobEnded(replace(job, status=JobStatus.COMPLETED), "completed")
    assert rig.c.state is State.UNLOCKED and rig.c.job is None and rig.c.relay_on

    actions = rig.later(60).tap(ALICE)
    assert RecordAccess("badge-1", ALICE.id, True, "badge out") in actions
    assert CloseSession(session, "badge out") in actions
    assert HeatersOff() in actions  # so the hotend does cool down
    assert not of(actions, SwitchRelay), "the relay stays on while the hotend is hot"
    assert rig.c.state is State.COOLDOWN and rig.c.session is None

    assert rig.later(20).send(TemperatureReported, 180.0) == []
    assert rig.later(20).send(TemperatureReported, 50.0) == [], "50 °C is not below 50 °C"
    actions = rig.later(20).send(TemperatureReported, 49.5)
    assert actions[0] == SwitchRelay(False)
    assert rig.c.state is State.LOCKED and not rig.c.relay_on
    assert actions[-2:] == [RED, PublishState(State.LOCKED)]


def test_cooldown_turns_the_relay_off_at_its_maximum_when_the_hotend_stays_hot():
    rig = Rig(cooldown_max_s=300.0)
    rig.tap(ALICE)
    rig.later(10).tap(ALICE)
    entered = rig.now
    assert rig.c.next_deadline() == entered + 300.0
    rig.later(100).send(TemperatureReported, 150.0)
    assert rig.tick_at(entered + 299.9) == []
    actions = rig.tick_at(entered + 300.0)
    assert actions[0] == SwitchRelay(False)
    assert RecordEvent("cooldown_over", "cooldown maximum (300 s) reached") in actions
    assert rig.c.state is State.LOCKED


def test_an_old_cool_reading_does_not_end_the_cooldown_but_a_fresh_one_does():
    rig = Rig(temperature_max_age_s=10.0)
    rig.tap(ALICE)
    rig.send(TemperatureReported, 25.0)  # read when the session opened, before any heating
    rig.later(600).start_job()
    rig.later(60).send(JobEnded, "job-1", "completed")
    assert rig.later(5).tap(ALICE)[-1] == PublishState(State.COOLDOWN)
    assert rig.c.state is State.COOLDOWN
    rig.later(30).send(TemperatureReported, 40.0)
    assert rig.c.state is State.LOCKED


def test_a_cold_printer_locks_at_once_on_badge_out():
    rig = Rig()
    rig.tap(ALICE)
    rig.later(60).send(TemperatureReported, 24.0)
    actions = rig.later(1).tap(ALICE)
    assert of(actions, SwitchRelay) == [SwitchRelay(False)]
    assert rig.c.state is State.LOCKED


def test_laser_cooldown_keeps_the_fume_extraction_on_for_its_run_on_time():
    rig = Rig(kind="laser", fume_runon_s=120.0, cooldown_max_s=600.0)
    rig.tap(ALICE)
    actions = rig.later(10).tap(ALICE)
    assert not of(actions, HeatersOff) and not of(actions, SwitchRelay)
    rig.send(TemperatureReported, 20.0)  # a laser has no hotend: readings do not matter
    assert rig.c.state is State.COOLDOWN
    assert rig.tick_at(rig.now + 119.0) == []
    actions = rig.tick_at(rig.now + 1.0)
    assert actions[0] == SwitchRelay(False)
    assert RecordEvent("cooldown_over", "fume extraction ran on for 120 s") in actions


def test_laser_run_on_is_capped_by_the_cooldown_maximum():
    rig = Rig(kind="laser", fume_runon_s=900.0, cooldown_max_s=300.0)
    rig.tap(ALICE)
    rig.tap(ALICE)
    assert rig.c.next_deadline() == rig.now + 300.0


# --- idle timeout ---------------------------------------------------------------------------------------


def test_idle_timeout_warns_then_ends_the_session():
    rig = Rig(idle_timeout_s=600.0, idle_warning_s=60.0)
    rig.tap(ALICE)
    session = rig.c.session
    assert rig.c.next_deadline() == T0 + 540.0
    assert rig.tick_at(T0 + 539.0) == []
    assert rig.tick_at(T0 + 540.0) == [GREEN_BLINK, Buzz("warning")]
    assert rig.c.next_deadline() == T0 + 600.0
    assert rig.tick_at(T0 + 570.0) == [], "the warning is given once"
    actions = rig.tick_at(T0 + 600.0)
    assert CloseSession(session, "idle timeout") in actions
    assert rig.c.state is State.COOLDOWN


def test_activity_restarts_the_idle_timer_and_stops_the_warning():
    rig = Rig(idle_timeout_s=600.0, idle_warning_s=60.0)
    rig.tap(ALICE)
    rig.tick_at(T0 + 550.0)
    assert rig.later(5).send(ActivitySeen, "current sense") == [GREEN]
    assert rig.c.next_deadline() == T0 + 555.0 + 540.0
    assert rig.tick_at(T0 + 700.0) == [] and rig.c.state is State.UNLOCKED


def test_the_idle_timer_does_not_run_during_a_job_and_restarts_when_it_ends():
    rig = running(Rig(idle_timeout_s=600.0, idle_warning_s=60.0))
    assert rig.c.next_deadline() is None
    assert rig.tick_at(T0 + 5000.0) == [] and rig.c.state is State.RUNNING
    rig.send(JobEnded, "job-1", "completed")
    assert rig.c.next_deadline() == T0 + 5000.0 + 540.0


def test_no_idle_timeout_when_none_is_configured():
    rig = Rig(idle_timeout_s=None)
    rig.tap(ALICE)
    assert rig.c.next_deadline() is None
    assert rig.tick_at(T0 + 86_400.0) == [] and rig.c.state is State.UNLOCKED


# --- other members, badge-out during a job -------------------------------------------------------------


def test_another_members_tap_ends_the_session_and_a_second_tap_opens_theirs():
    rig = Rig()
    rig.tap(ALICE)
    alice_session = rig.c.session
    actions = rig.later(30).tap(BOB)
    assert RecordAccess("badge-2", BOB.id, True, "another member tapped") in actions
    assert CloseSession(alice_session, "another member tapped") in actions
    assert rig.c.state is State.COOLDOWN and rig.c.session is None
    actions = rig.later(5).tap(BOB)
    assert rig.c.state is State.UNLOCKED and rig.c.session.member == BOB
    assert of(actions, OpenSession) and not of(actions, SwitchRelay), "the relay was still on"


def test_badge_out_during_a_job_keeps_the_power_on_until_the_job_ends():
    rig = running(Rig())
    actions = rig.later(60).tap(ALICE)
    pending = RecordAccess("badge-1", ALICE.id, True, "session ends when the job ends")
    assert actions == [pending, Buzz("granted")]
    assert rig.c.state is State.RUNNING and rig.c.relay_on
    assert rig.c.session.badge_out_pending
    assert rig.tick_at(rig.now + 7200.0) == []
    actions = rig.send(JobEnded, "job-1", "completed")
    assert [type(a) for a in actions[:3]] == [RecordJobEnded, CloseSession, HeatersOff]
    assert actions[1].reason == "badge out"
    assert rig.c.state is State.COOLDOWN and rig.c.session is None


def test_another_members_tap_during_a_job_ends_the_session_after_the_job():
    rig = running(Rig())
    rig.later(60).tap(BOB)
    assert rig.c.state is State.RUNNING and rig.c.session.member == ALICE
    actions = rig.later(60).send(JobEnded, "job-1", "failed", "printer reset", "reset")
    assert of(actions, CloseSession)[0].reason == "another member tapped"
    assert of(actions, RecordJobEnded)[0].job.status == "failed"
    assert rig.c.state is State.COOLDOWN


def test_a_refused_tap_during_a_job_flashes_red_then_shows_running_again():
    rig = running(Rig())
    actions = rig.later(1).tap(BOB, "training expired")
    assert RED_BLINK in actions and rig.c.state is State.RUNNING and not rig.c.session.badge_out_pending
    assert rig.tick_at(rig.c.next_deadline()) == [GREEN]


# --- job requests and socket commands -----------------------------------------------------------------


@pytest.mark.parametrize("setup", ["locked", "cooldown"])
def test_a_job_request_with_no_one_badged_in_is_refused(setup):
    rig = Rig()
    if setup == "cooldown":
        rig.tap(ALICE)
        rig.tap(ALICE)
    state = rig.c.state
    assert rig.start_job() == [Reply(False, "no one is badged in: tap a badge first")]
    assert rig.c.state is state and rig.c.job is None


def test_a_second_job_request_during_a_job_is_refused():
    rig = running(Rig())
    assert rig.start_job("job-2") == [Reply(False, "job job-1 is already running")]


def test_lock_ends_a_session_but_is_refused_during_a_job_unless_forced():
    rig = Rig()
    rig.tap(ALICE)
    actions = rig.send(LockRequested)
    assert Reply(True, "session ended") in actions and rig.c.state is State.COOLDOWN

    rig = running(Rig())
    actions = rig.send(LockRequested)
    assert actions == [Reply(False, "a job is running: cancel it first, or lock with --force to cancel it")]
    assert rig.c.state is State.RUNNING and not rig.c.session.badge_out_pending

    actions = rig.send(LockRequested, force=True)
    reply = Reply(True, "cancelling the job, then locking")
    assert actions == [CancelJob("locked from the control socket"), reply]
    assert rig.c.job.status == "cancelling" and rig.c.relay_on
    actions = rig.later(20).send(JobEnded, "job-1", "cancelled", "cancelled")
    assert of(actions, CloseSession)[0].reason == "locked from the control socket"
    assert rig.c.state is State.COOLDOWN


def test_pause_resume_and_cancel_from_the_control_socket():
    rig = running(Rig())
    assert rig.send(ResumeRequested) == [Reply(False, "the job is not paused")]
    paused = [PauseJob("paused from the control socket"), Reply(True, "job paused")]
    assert rig.send(PauseRequested)[:2] == paused
    assert rig.c.state is State.PAUSED and rig.c.job.status == "paused"
    assert rig.send(PauseRequested) == [Reply(False, "the job is already paused")]
    assert rig.send(ResumeRequested)[:2] == [ResumeJob(), Reply(True, "job resumed")]
    assert rig.c.state is State.RUNNING
    cancelling = [CancelJob("cancelled from the control socket"), Reply(True, "cancelling job job-1")]
    assert rig.send(CancelRequested) == cancelling
    assert rig.send(CancelRequested) == [Reply(False, "job job-1 is already being cancelled")]
    rig.send(JobEnded, "job-1", "cancelled")
    assert rig.c.state is State.UNLOCKED
    assert rig.send(CancelRequested) == [Reply(False, "no job is running")]


def test_a_job_paused_too_long_is_cancelled():
    rig = running(Rig(pause_max_s=1800.0))
    rig.send(PauseRequested)
    paused_at = rig.now
    assert rig.c.next_deadline() == paused_at + 1800.0
    assert rig.tick_at(paused_at + 1799.0) == []
    assert rig.tick_at(paused_at + 1800.0) == [CancelJob("paused longer than 1800 s")]
    assert rig.c.next_deadline() is None


def test_the_printer_pausing_itself_is_followed_and_the_members_tap_resumes():
    rig = running(Rig())
    actions = rig.send(JobPaused, "job-1", "M600 filament change")
    assert not of(actions, PauseJob), "the firmware is paused already"
    assert rig.c.state is State.PAUSED and rig.c.job.pause_reason == "M600 filament change"
    actions = rig.later(120).tap(ALICE)
    assert ResumeJob() in actions and rig.c.state is State.RUNNING


def test_events_for_another_job_are_logged_and_change_nothing():
    rig = running(Rig())
    actions = rig.send(JobEnded, "job-0", "completed")
    assert actions == [RecordEvent("stale_job_event", "JobEnded for job job-0 while job job-1 runs")]
    assert rig.c.state is State.RUNNING


# --- faults ---------------------------------------------------------------------------------------------


def test_estop_during_a_job_cuts_power_first_and_only_a_technician_clears_it_once_released():
    rig = running(Rig())
    job, session = rig.c.job, rig.c.session
    actions = rig.later(60).send(EStopPressed)
    assert actions[0] == SwitchRelay(False)
    assert actions[1:5] == [
        AbortJob("emergency stop pressed"),
        RecordJobEnded(replace(job, status=JobStatus.ABORTED), "emergency stop pressed"),
        CloseSession(session, "emergency stop pressed"),
        RecordFault("estop", "emergency stop pressed"),
    ]
    assert Buzz("fault") in actions and actions[-1] == PublishState(State.FAULT)
    assert rig.c.state is State.FAULT and rig.c.job is None and rig.c.session is None

    late_end = rig.send(JobEnded, "job-1", "failed", "port lost", "port_lost")
    assert late_end == [], "the job is already recorded as aborted"
    assert rig.start_job("job-2")[0].ok is False

    actions = rig.later(5).tap(ALICE)
    assert actions[0] == RecordAccess(
        "badge-1", ALICE.id, False, "machine fault (emergency stop pressed): a technician must clear it"
    )
    actions = rig.later(5).tap(TECH)
    assert actions[0] == RecordAccess("badge-9", TECH.id, False, "release the emergency stop first")
    assert rig.c.state is State.FAULT

    rig.later(5).send(EStopReleased)
    assert rig.c.state is State.FAULT, "releasing the e-stop does not clear the fault"
    actions = rig.later(5).tap(TECH)
    assert RecordAccess("badge-9", TECH.id, True, "fault cleared") in actions
    assert rig.c.state is State.LOCKED and not of(actions, SwitchRelay) and not rig.c.relay_on


def test_estop_while_locked_still_switches_the_relay_off():
    rig = Rig()
    assert rig.send(EStopPressed)[0] == SwitchRelay(False)
    assert rig.c.state is State.FAULT


@pytest.mark.parametrize("failure", ["halted", "thermal"])
def test_a_firmware_halt_ends_the_job_as_failed_and_faults(failure):
    rig = running(Rig())
    actions = rig.send(JobEnded, "job-1", "failed", "Printer halted. kill() called!", failure)
    assert actions[0] == SwitchRelay(False)
    assert not of(actions, AbortJob), "the streamer already stopped"
    assert of(actions, RecordJobEnded)[0].job.status == "failed"
    assert RecordFault(f"firmware_{failure}", "Printer halted. kill() called!") in actions
    assert rig.c.state is State.FAULT
    actions = rig.tap(TECH)  # the e-stop was never pressed: the technician clears it
    assert rig.c.state is State.LOCKED


def test_a_lost_port_fails_the_job_and_the_relay_goes_off_after_the_grace_period():
    # The firmware may still be heating and nothing can reach it: the session ends, the power stays on
    # for the hotend fan for host_lost_relay_s at most (no reading can end the cooldown sooner).
    rig = running(Rig(host_lost_relay_s=90.0, cooldown_max_s=900.0))
    actions = rig.later(60).send(JobEnded, "job-1", "failed", "serial port lost", "port_lost")
    [ended] = of(actions, RecordJobEnded)
    assert ended.job.status == "failed" and ended.reason == "serial port lost"
    assert of(actions, CloseSession)[0].reason == "the firmware's port was lost: serial port lost"
    assert not of(actions, SwitchRelay) and of(actions, HeatersOff)
    assert rig.c.state is State.COOLDOWN and rig.c.session is None and rig.c.relay_on
    lost_at = rig.now
    assert rig.c.next_deadline() == lost_at + 90.0
    assert not of(rig.tick_at(lost_at + 89.9), SwitchRelay)
    actions = rig.tick_at(lost_at + 90.0)
    assert of(actions, SwitchRelay) == [SwitchRelay(False)] and rig.c.state is State.LOCKED
    assert "relay off after 90 s" in of(actions, RecordEvent)[0].detail


def test_after_a_lost_port_a_cool_reading_once_it_is_back_ends_the_cooldown_sooner():
    rig = running(Rig(host_lost_relay_s=90.0))
    rig.later(60).send(JobEnded, "job-1", "failed", "serial port lost", "port_lost")
    assert rig.later(20).send(TemperatureReported, 180.0) == []  # reconnected, still hot
    actions = rig.later(10).send(TemperatureReported, 45.0)
    assert of(actions, SwitchRelay) == [SwitchRelay(False)] and rig.c.state is State.LOCKED


def test_a_new_session_after_a_lost_port_has_the_usual_cooldown():
    rig = running(Rig(host_lost_relay_s=30.0, cooldown_max_s=600.0))
    rig.later(5).send(JobEnded, "job-1", "failed", "serial port lost", "port_lost")
    rig.later(1).tap(ALICE)  # a tap in COOLDOWN opens a new session
    rig.later(1).tap(ALICE)  # badge-out: an ordinary cooldown, no host-lost limit
    assert rig.c.state is State.COOLDOWN and rig.c.next_deadline() == rig.now + 600.0


def test_a_firmware_fault_outside_a_job_faults():
    rig = Rig()
    rig.tap(ALICE)
    actions = rig.send(FirmwareFault, "thermal", "THERMAL RUNAWAY")
    assert actions[0] == SwitchRelay(False) and of(actions, CloseSession)
    assert rig.c.state is State.FAULT and rig.c.fault == "THERMAL RUNAWAY"


# --- the laser's lid -------------------------------------------------------------------------------------


def test_laser_lid_opened_during_a_job_pauses_it_and_only_a_deliberate_action_resumes_it():
    rig = running(Rig(kind="laser"))
    actions = rig.later(30).send(LidOpened)
    assert actions[0] == PauseJob("lid open", door=True)
    assert of(actions, RecordFault)[0].kind == "lid_open"
    assert rig.c.state is State.PAUSED and rig.c.relay_on, "the fume extraction keeps running"

    assert rig.send(ResumeRequested) == [Reply(False, "the lid is open: close it to resume")]
    actions = rig.tap(ALICE)
    assert actions[0] == RecordAccess("badge-1", ALICE.id, False, "the lid is open: close it to resume")

    actions = rig.later(10).send(LidClosed)
    assert not of(actions, ResumeJob) and rig.c.state is State.PAUSED
    assert rig.tick_at(rig.now + 60.0) == [] and rig.c.state is State.PAUSED

    actions = rig.send(ResumeRequested)
    assert actions[:2] == [ResumeJob(), Reply(True, "job resumed")]
    assert rig.c.state is State.RUNNING


def test_laser_lid_a_members_tap_resumes_once_closed():
    rig = running(Rig(kind="laser"))
    rig.send(LidOpened)
    rig.send(LidClosed)
    actions = rig.tap(ALICE)
    assert ResumeJob() in actions and rig.c.state is State.RUNNING


def test_laser_resumed_on_the_machine_with_the_lid_open_is_paused_again():
    rig = running(Rig(kind="laser"))
    rig.send(LidOpened)
    actions = rig.send(JobResumed, "job-1")
    assert actions[0] == PauseJob("lid open", door=True) and rig.c.state is State.PAUSED


def test_laser_refuses_to_start_a_job_with_the_lid_open_but_a_printer_does_not_care():
    laser = Rig(kind="laser")
    laser.tap(ALICE)
    laser.send(LidOpened)
    assert laser.start_job() == [Reply(False, "the lid is open: close it before starting a job")]
    printer = Rig(kind="printer")
    printer.tap(ALICE)
    printer.send(LidOpened)
    assert of(printer.start_job(), StartJob)
    assert printer.send(LidOpened) == [RecordEvent("lid_opened", "opened during job job-1")]
    assert printer.c.state is State.RUNNING


# --- maintenance -----------------------------------------------------------------------------------------


def test_technician_maintenance_has_no_idle_timeout_and_marks_jobs():
    rig = Rig(idle_timeout_s=600.0)
    actions = rig.tap(TECH)
    assert rig.c.state is State.MAINTENANCE and rig.c.session.is_maintenance
    assert SwitchRelay(True) in actions
    assert RecordAccess("badge-9", TECH.id, True, "maintenance session opened") in actions
    assert rig.c.next_deadline() is None
    assert rig.tick_at(T0 + 86_400.0) == [] and rig.c.state is State.MAINTENANCE

    actions = rig.start_job("cal-1", "calibration.gcode")
    assert of(actions, StartJob)[0].job.is_maintenance
    rig.send(JobEnded, "cal-1", "completed")
    assert rig.c.state is State.MAINTENANCE

    actions = rig.tap(ALICE)
    assert actions[0] == RecordAccess(
        "badge-1", ALICE.id, False, "maintenance in progress: only a technician can end it"
    )
    assert rig.c.state is State.MAINTENANCE
    rig.tap(TECH)
    assert rig.c.state is State.COOLDOWN


def test_a_member_cannot_end_maintenance_during_a_maintenance_job():
    rig = running(Rig(), who=TECH)
    actions = rig.tap(BOB)
    assert actions[0].granted is False and not rig.c.session.badge_out_pending


# --- the table and the clock -----------------------------------------------------------------------------


def test_an_unknown_state_event_pair_raises_naming_both(monkeypatch):
    rig = Rig()
    rig.tap(ALICE)
    monkeypatch.delitem(TRANSITIONS, (State.UNLOCKED, Tick))
    with pytest.raises(UnknownTransition, match="no transition for event Tick in state UNLOCKED"):
        rig.send(Tick)


def test_an_event_of_a_foreign_type_raises_naming_it():
    class Dropped:
        now = T0

    with pytest.raises(UnknownTransition, match="Dropped in state LOCKED"):
        Rig().c.handle(Dropped())  # type: ignore[arg-type]


def test_the_clock_must_not_go_backwards():
    rig = Rig()
    with pytest.raises(ValueError, match="clock went backwards"):
        rig.c.handle(Tick(T0 - 1.0))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "lathe"}, "ControllerSettings.kind: 'lathe'"),
        ({"idle_timeout_s": 0}, "ControllerSettings.idle_timeout_s: 0"),
        ({"idle_timeout_s": 60, "idle_warning_s": 60}, "idle_warning_s: 60, expected less than"),
        ({"cooldown_max_s": -1}, "ControllerSettings.cooldown_max_s: -1"),
    ],
)
def test_bad_settings_name_the_field(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        settings_for_tests(**settings)


def test_laser_lid_opened_while_paused_also_gets_the_door_hold():
    rig = running(Rig(kind="laser"))
    rig.send(PauseRequested)  # a plain feed hold first: with $32=0 the beam could still be on
    actions = rig.send(LidOpened)
    assert actions[0] == PauseJob("lid open", door=True) and rig.c.state is State.PAUSED
    printer = running(Rig(kind="printer"))
    printer.send(PauseRequested)
    assert not [a for a in printer.send(LidOpened) if isinstance(a, PauseJob)]
