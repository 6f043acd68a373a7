"""The decisions that moved into the controller's table: storage trouble, the firmware's readiness, the
inbox, calibration commands and a technician's wiring checks (rows of TRANSITIONS, today's texts)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabnode.machine.actions import (
    Buzz,
    CheckInboxFile,
    RecordAccess,
    RejectInboxFile,
    Reply,
    SetLeds,
    StartJob,
    SwitchRelay,
)
from fabnode.machine.events import (
    BadgeTapped,
    CalibrationRequested,
    EStopPressed,
    InboxChecked,
    JobRequested,
    StorageChanged,
    Tick,
    WiringCheckRequested,
)
from fabnode.machine.state import State
from tests.unit.test_controller import ALICE, BOB, RED_BLINK, TECH, Rig, of, running

FULL = "disk full: 3.0 MB free in /var/lib/fabnode, 50 MB needed to keep records"
FABNODE = Path(__file__).resolve().parents[2] / "fabnode"


def test_storage_trouble_refuses_a_new_session_like_a_denied_badge() -> None:
    rig = Rig()
    rig.send(StorageChanged, FULL)
    actions = rig.tap(ALICE)
    assert rig.c.state is State.LOCKED and not of(actions, SwitchRelay)
    assert of(actions, RecordAccess) == [RecordAccess("badge-1", 1, False, f"{FULL}: no new session")]
    assert RED_BLINK in actions and Buzz("denied") in actions
    rig.later(5).send(StorageChanged, None)
    assert SwitchRelay(True) in rig.later(1).tap(ALICE) and rig.c.state is State.UNLOCKED


def test_storage_trouble_lets_a_session_end_and_refuses_a_new_job() -> None:
    rig = Rig()
    rig.tap(ALICE)
    rig.send(StorageChanged, FULL)
    assert rig.start_job() == [Reply(False, f"{FULL}: no new job")] and rig.c.state is State.UNLOCKED
    rig.later(5).tap(ALICE)  # badge-out still ends the session
    assert rig.c.state in (State.COOLDOWN, State.LOCKED)


def test_a_job_the_firmware_cannot_take_is_refused_where_it_would_start() -> None:
    rig = Rig()
    rig.tap(ALICE)
    why = "the firmware's port /dev/ttyACM0 is not connected (USB cable?): the job was not started"
    assert rig.send(JobRequested, "j1", "part.gcode", None, why) == [Reply(False, why)]
    assert rig.c.state is State.UNLOCKED
    locked = Rig()
    assert locked.send(JobRequested, "j1", "part.gcode", None, why) == [
        Reply(False, "no one is badged in: tap a badge first")]


def test_the_prepared_file_travels_in_the_start_action() -> None:
    rig = Rig()
    rig.tap(ALICE)
    prepared = object()
    start = of(rig.send(JobRequested, "j1", "part.gcode", prepared), StartJob)
    assert len(start) == 1 and start[0].prepared is prepared


def test_the_session_members_tap_starts_a_waiting_inbox_file_and_anothers_ends_the_session() -> None:
    rig = Rig()
    rig.tap(ALICE)
    own = rig.c.handle(BadgeTapped(rig.later(5).now, "badge-1", ALICE, inbox_file="/inbox/part.gcode"))
    assert own == [CheckInboxFile("/inbox/part.gcode")] and rig.c.state is State.UNLOCKED
    other = rig.c.handle(BadgeTapped(rig.later(5).now, "badge-2", BOB, inbox_file="/inbox/part.gcode"))
    assert not of(other, CheckInboxFile) and rig.c.state in (State.COOLDOWN, State.LOCKED)


def test_an_inbox_file_failing_preflight_is_moved_aside_and_the_tap_refused() -> None:
    rig = Rig()
    rig.tap(ALICE)
    tap = BadgeTapped(rig.now, "badge-1", ALICE, inbox_file="/inbox/part.gcode")
    problems = ("line 2: M500 forbidden", "line 9: x")
    actions = rig.later(1).send(InboxChecked, tap, "/inbox/part.gcode", problems)
    why = "inbox file fails preflight: line 2: M500 forbidden (+1 more)"
    assert actions[0] == RejectInboxFile("/inbox/part.gcode", problems)
    assert RecordAccess("badge-1", 1, False, why) in actions and actions[-1] == Reply(False, why)
    may = rig.later(1).send(InboxChecked, tap, "/inbox/ok.gcode")
    assert may == [Reply(True, "/inbox/ok.gcode may start")]
    rig.later(1).tap(ALICE)  # the session ended during the preflight: the file is left waiting
    assert rig.later(1).send(InboxChecked, tap, "/inbox/ok.gcode") == [
        Reply(False, "the session changed during its preflight")]


@pytest.mark.parametrize(("reach", "job_running", "refusal"), [
    ("locked", False, None),
    ("locked", True, "a member's job is running on prusa-1: calibrate after it ends"),
    ("maintenance", False, None),
    ("unlocked", False, "a member's session is open on prusa-1: calibrate once it ends (badge out, or "
                        "`fabnode lock`), with the machine locked or a technician badged in"),
    ("running", True, "a member's job is running on prusa-1: calibrate after it ends"),
    ("technician_job", True, "a technician's job is running on prusa-1: calibrate after it ends"),
    ("cooldown", False, "prusa-1 is cooling down after a member's session: calibrate once it is locked"),
    ("fault", False, "prusa-1 is in fault (emergency stop pressed): a technician must clear it before "
                     "calibrating"),
])  # fmt: skip
def test_calibration_commands_are_answered_by_the_state(reach: str, job_running: bool,
                                                         refusal: str | None) -> None:
    rig = _reach(reach)
    answer = rig.later(1).send(CalibrationRequested, "prusa-1", job_running)
    assert answer == [Reply(True, "send")] if refusal is None else answer == [Reply(False, refusal)]


def test_a_wiring_check_switches_the_relay_in_locked_and_ends_at_the_next_act() -> None:
    rig = Rig()
    actions = rig.later(1).send(WiringCheckRequested, "prusa-1", True)
    assert actions[0] == SwitchRelay(True)
    assert actions[-1] == Reply(True, "relay on; back off in 60 s or at the next tap")
    assert rig.c.relay_on is False and rig.c.wiring_check == (True, False, rig.now + 60.0)
    fault = rig.later(1).send(EStopPressed)
    assert fault[0] == SwitchRelay(False) and SwitchRelay(True) not in fault  # the e-stop's relay off wins
    assert rig.c.wiring_check == (None, False, None)


def test_wiring_checks_hold_the_leds_until_the_hold_runs_out() -> None:
    rig = Rig()
    check = SetLeds(True, True, True)
    assert rig.later(1).send(WiringCheckRequested, "prusa-1", None, check)[0] == check
    assert rig.c.next_deadline() == rig.now + 60.0
    assert of(rig.tick_at(rig.now + 60.0), SetLeds) == [SetLeds(green=False, red=True)]  # LOCKED's, back
    assert rig.c.next_deadline() is None


@pytest.mark.parametrize(("reach", "refusal"), [
    ("unlocked", "a member's session is open on prusa-1 (Alice, unlocked): wiring checks wait until it ends"),
    ("technician_job", "a job runs on prusa-1 (running): wiring checks wait until it ends"),
    ("cooldown", "prusa-1 is cooldown: wiring checks only while it is locked or in maintenance"),
])  # fmt: skip
def test_wiring_checks_are_refused_outside_locked_and_maintenance(reach: str, refusal: str) -> None:
    rig = _reach(reach)
    assert rig.later(1).send(WiringCheckRequested, "prusa-1", True) == [Reply(False, refusal)]


def test_no_module_outside_the_machine_decides_by_the_state() -> None:
    decides = re.compile(r"(controller|\bc)\.state\s*(==|!=|\bin\b|\bnot in\b|\bis\b)|\bState\.[A-Z]+")
    found = [f"{path.relative_to(FABNODE.parent)}:{n}" for path in FABNODE.rglob("*.py")
             if "machine" not in path.relative_to(FABNODE).parts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if decides.search(line)]
    assert found == [], "decisions by the machine's state belong in fabnode/machine/controller.py TRANSITIONS"


def _reach(where: str) -> Rig:
    rig = Rig(kind="printer", cooldown_max_s=600.0)
    if where == "maintenance":
        rig.tap(TECH)
    elif where == "unlocked":
        rig.tap(ALICE)
    elif where == "running":
        running(rig)
    elif where == "technician_job":
        running(rig, TECH)
    elif where == "cooldown":
        rig.tap(ALICE)
        rig.later(1).tap(ALICE)
    elif where == "fault":
        rig.send(EStopPressed)
    rig.later(1).send(Tick)
    return rig


def test_a_job_asked_for_in_an_earlier_session_does_not_start_in_the_next() -> None:
    rig = Rig()
    rig.tap(ALICE)
    asked = rig.now  # Alice's print: a large file, prepared for minutes
    rig.later(60)
    rig.tap(ALICE)  # she leaves; Bob comes while it is still being read
    rig.later(1)
    rig.tap(BOB)
    refused = rig.send(JobRequested, "j1", "alice.gcode", None, None, asked)
    assert refused == [Reply(False, "it was asked for in a session that has ended since: print it again")]
    assert rig.c.state is State.UNLOCKED and rig.c.job is None
    assert of(rig.send(JobRequested, "j2", "bob.gcode", None, None, rig.now), StartJob)  # his own starts
