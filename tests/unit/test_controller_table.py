"""Every (state, event) pair of the controller's table, run from a real journey; the docs drawn from it."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabnode.machine.actions import PublishState, Reply, SetLeds, SwitchRelay
from fabnode.machine.controller import (
    TRANSITIONS,
    Controller,
    Rule,
    UndeclaredTransition,
    describe_transitions,
    mermaid,
)
from fabnode.machine.events import (
    EVENT_TYPES,
    ActivitySeen,
    BadgeTapped,
    CalibrationRequested,
    CancelRequested,
    EStopPressed,
    EStopReleased,
    FirmwareFault,
    InboxChecked,
    JobEnded,
    JobPaused,
    JobRequested,
    JobResumed,
    LidClosed,
    LidOpened,
    LockRequested,
    PauseRequested,
    ResumeRequested,
    StorageChanged,
    TemperatureReported,
    Tick,
    UploadChecked,
    UploadReceived,
    WiringCheckRequested,
)
from fabnode.machine.state import MemberRef, QueuedUpload, State
from tests.unit.controller_settings import settings_for_tests

DOC = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"
ALICE = MemberRef(1, "member")
TECH = MemberRef(9, "technician")
S = State


def reach(state: State, kind: str) -> Controller:
    """A controller brought into `state` by the events a daemon would post (t = 0..4)."""
    settings = settings_for_tests(kind=kind, idle_timeout_s=600.0, cooldown_max_s=300.0, fume_runon_s=120.0)
    c = Controller(settings)
    c.start(0.0)
    steps: dict[State, list[Any]] = {
        S.LOCKED: [],
        S.UNLOCKED: [BadgeTapped(1.0, "a", ALICE)],
        S.RUNNING: [BadgeTapped(1.0, "a", ALICE), JobRequested(2.0, "j1", "part.gcode")],
        S.PAUSED: [BadgeTapped(1.0, "a", ALICE), JobRequested(2.0, "j1", "part.gcode"), PauseRequested(3.0)],
        S.COOLDOWN: [BadgeTapped(1.0, "a", ALICE), BadgeTapped(2.0, "a", ALICE)],
        S.FAULT: [FirmwareFault(1.0, "halted", "kill() called")],
        S.MAINTENANCE: [BadgeTapped(1.0, "t", TECH)],
    }
    for event in steps[state]:
        c.handle(event)
    assert c.state is state
    return c


def sample(event_type: type, state: State, now: float) -> Any:
    """One event of each type: taps by the session's holder (a technician in FAULT), cold readings."""
    who = TECH if state in (S.FAULT, S.MAINTENANCE) else ALICE
    makers: dict[type, Any] = {
        Tick: lambda: Tick(now),
        BadgeTapped: lambda: BadgeTapped(now, "t" if who is TECH else "a", who),
        EStopPressed: lambda: EStopPressed(now),
        EStopReleased: lambda: EStopReleased(now),
        LidOpened: lambda: LidOpened(now),
        LidClosed: lambda: LidClosed(now),
        JobRequested: lambda: JobRequested(now, "j2", "other.gcode"),
        JobPaused: lambda: JobPaused(now, "j1", "paused on the printer's screen"),
        JobResumed: lambda: JobResumed(now, "j1"),
        JobEnded: lambda: JobEnded(now, "j1", "completed"),
        FirmwareFault: lambda: FirmwareFault(now, "thermal", "thermal runaway"),
        TemperatureReported: lambda: TemperatureReported(now, 30.0),
        PauseRequested: lambda: PauseRequested(now),
        ResumeRequested: lambda: ResumeRequested(now),
        CancelRequested: lambda: CancelRequested(now),
        LockRequested: lambda: LockRequested(now),
        ActivitySeen: lambda: ActivitySeen(now, "console"),
        StorageChanged: lambda: StorageChanged(now, None),
        InboxChecked: lambda: InboxChecked(now, BadgeTapped(now, "a", ALICE), "part.gcode"),
        CalibrationRequested: lambda: CalibrationRequested(now, "prusa-1"),
        WiringCheckRequested: lambda: WiringCheckRequested(now, "prusa-1", leds=SetLeds(True, True)),
        UploadReceived: lambda: UploadReceived(now, QueuedUpload("u1", "up.gcode", who, True, now + 86400.0)),
        UploadChecked: lambda: UploadChecked(now, "u0", who.id),
    }
    return makers[event_type]()


# Where each sample event leads, written from the issue (not from the code); unlisted pairs stay put.
# The Tick sample comes an hour later: past the idle timeout and the cooldown's maximum.
MOVES: dict[State, dict[type, State]] = {
    S.LOCKED: {BadgeTapped: S.UNLOCKED, EStopPressed: S.FAULT, FirmwareFault: S.FAULT},
    S.UNLOCKED: {
        Tick: S.COOLDOWN, BadgeTapped: S.COOLDOWN, EStopPressed: S.FAULT, FirmwareFault: S.FAULT,
        JobRequested: S.RUNNING, LockRequested: S.COOLDOWN, UploadReceived: S.RUNNING,
    },
    S.RUNNING: {
        EStopPressed: S.FAULT, FirmwareFault: S.FAULT, JobPaused: S.PAUSED, JobEnded: S.UNLOCKED,
        PauseRequested: S.PAUSED,
    },
    S.PAUSED: {
        BadgeTapped: S.RUNNING, EStopPressed: S.FAULT, FirmwareFault: S.FAULT, JobResumed: S.RUNNING,
        JobEnded: S.UNLOCKED, ResumeRequested: S.RUNNING,
    },
    S.COOLDOWN: {Tick: S.LOCKED, BadgeTapped: S.UNLOCKED, EStopPressed: S.FAULT, FirmwareFault: S.FAULT},
    S.FAULT: {BadgeTapped: S.LOCKED},
    S.MAINTENANCE: {
        BadgeTapped: S.COOLDOWN, EStopPressed: S.FAULT, FirmwareFault: S.FAULT, JobRequested: S.RUNNING,
        LockRequested: S.COOLDOWN, UploadReceived: S.RUNNING,
    },
}
KIND_MOVES = {  # what differs between a laser and a printer
    "laser": {(S.RUNNING, LidOpened): S.PAUSED},
    "printer": {(S.COOLDOWN, TemperatureReported): S.LOCKED},
}
ALL_PAIRS = list(itertools.product(State, EVENT_TYPES))


def _name(value: State | type) -> str:
    return value.name if isinstance(value, State) else value.__name__


def test_the_table_lists_every_state_and_event_pair_and_nothing_else():
    assert set(TRANSITIONS) == set(ALL_PAIRS)
    for (state, _), rule in TRANSITIONS.items():
        assert rule.handler is not None or not rule.targets
        assert rule.handler is None or rule.targets, f"{state.name}: a handler must name where it may lead"


@pytest.mark.parametrize("kind", ["printer", "laser"])
@pytest.mark.parametrize(("state", "event_type"), ALL_PAIRS, ids=_name)
def test_every_pair_from_a_real_journey(kind, state, event_type):
    c = reach(state, kind)
    now = 3600.0 if event_type is Tick else 10.0
    actions = c.handle(sample(event_type, state, now))
    expected = KIND_MOVES[kind].get((state, event_type), MOVES[state].get(event_type, state))
    assert c.state is expected, f"{event_type.__name__} in {state.name} ({kind})"
    rule = TRANSITIONS[(state, event_type)]
    if rule.handler is None:
        assert actions == [], "an ignored event must not act"
    if expected is not state:
        assert expected in rule.targets
        assert actions[-1] == PublishState(expected)


def test_a_handler_leading_to_an_undeclared_state_is_caught(monkeypatch):
    c = reach(S.LOCKED, "printer")
    rule = TRANSITIONS[(S.LOCKED, BadgeTapped)]
    monkeypatch.setitem(TRANSITIONS, (S.LOCKED, BadgeTapped), Rule(rule.handler, frozenset({S.LOCKED})))
    with pytest.raises(UndeclaredTransition, match="BadgeTapped in LOCKED led to UNLOCKED"):
        c.handle(BadgeTapped(1.0, "a", ALICE))


def test_the_diagram_has_every_move_of_the_table():
    diagram = mermaid()
    assert diagram.startswith("stateDiagram-v2\n    [*] --> LOCKED\n")
    assert "    RUNNING --> PAUSED: LidOpened, JobPaused, PauseRequested\n" in diagram
    assert "    FAULT --> LOCKED: BadgeTapped\n" in diagram
    assert "\n    LOCKED --> RUNNING" not in diagram, "a job never starts without a session"


def test_the_description_lists_every_pair():
    rows = describe_transitions().splitlines()[2:]
    assert len(rows) == len(ALL_PAIRS)
    assert "| FAULT | LidOpened | (stays) | ignored (inputs are still tracked) |" in rows
    assert any(r.startswith("| FAULT | Tick | (stays) | Uploads no tap started in time") for r in rows)
    assert "| LOCKED | JobRequested | (stays) | Refused: no one is badged in: tap a badge first. |" in rows


def test_docs_show_the_table_as_generated():
    text = DOC.read_text(encoding="utf-8")
    assert mermaid() in text, "docs/state-machine.md: regenerate the diagram (see the snippet)"
    assert describe_transitions() in text, "docs/state-machine.md: regenerate the table (see the snippet)"


# --- random journeys: the safety rules hold whatever the order of events -----------------------------

MEMBERS = [ALICE, MemberRef(2, "member"), TECH]


@st.composite
def events(draw: st.DrawFn) -> list[Any]:
    """A random run of events from every adapter, with time going forwards."""
    now, run = 0.0, []
    for _ in range(draw(st.integers(1, 40))):
        now += draw(st.sampled_from([0.0, 1.0, 30.0, 400.0, 3600.0]))
        event_type = draw(st.sampled_from(EVENT_TYPES))
        if event_type is BadgeTapped:
            who = draw(st.sampled_from([*MEMBERS, None]))
            denials = st.sampled_from([None, None, "training expired"])
            denial = "unknown badge" if who is None else draw(denials)
            run.append(BadgeTapped(now, "h", who, denial))
        elif event_type is JobEnded:
            outcome = draw(st.sampled_from(["completed", "cancelled", "failed"]))
            failure = draw(st.sampled_from(["halted", "port_lost"])) if outcome == "failed" else None
            run.append(JobEnded(now, draw(st.sampled_from(["j1", "j2"])), outcome, "", failure))
        elif event_type in (JobPaused, JobResumed):
            run.append(event_type(now, draw(st.sampled_from(["j1", "j2"]))))
        elif event_type is JobRequested:
            run.append(JobRequested(now, draw(st.sampled_from(["j1", "j2"])), "part.gcode"))
        elif event_type is TemperatureReported:
            run.append(TemperatureReported(now, draw(st.sampled_from([25.0, 200.0]))))
        elif event_type is LockRequested:
            run.append(LockRequested(now, draw(st.booleans())))
        else:
            run.append(sample(event_type, S.LOCKED, now))
    return run


POWERED = {S.UNLOCKED, S.RUNNING, S.PAUSED, S.COOLDOWN, S.MAINTENANCE}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["printer", "laser"]), run=events())
def test_random_journeys_keep_the_safety_rules(kind, run):
    c = Controller(settings_for_tests(kind=kind, idle_timeout_s=600.0, cooldown_max_s=300.0))
    c.start(0.0)
    for event in run:
        before = c.state
        actions = c.handle(event)
        if SwitchRelay(False) in actions and before in (S.RUNNING, S.PAUSED):
            assert c.state is S.FAULT, f"power cut during a job by {event}"
        if c.state is S.FAULT and before is not S.FAULT:
            assert actions[0] == SwitchRelay(False), "relay off first"
        assert c.relay_on == (c.state in POWERED)
        assert (c.job is not None) == (c.state in (S.RUNNING, S.PAUSED))
        assert (c.session is not None) == (c.state in (S.UNLOCKED, S.RUNNING, S.PAUSED, S.MAINTENANCE))
        assert sum(isinstance(a, Reply) for a in actions) == (1 if isinstance(event, SOCKET_REQUESTS) else 0)
        deadline = c.next_deadline()
        if deadline is not None:  # a Tick at the deadline makes progress: the daemon never spins
            probe = copy.deepcopy(c)
            probe.handle(Tick(max(deadline, event.now)))
            later = probe.next_deadline()
            assert later is None or later > deadline or probe.state is not c.state


SOCKET_REQUESTS = (JobRequested, PauseRequested, ResumeRequested, CancelRequested, LockRequested,
                   CalibrationRequested, WiringCheckRequested, InboxChecked,
                   UploadReceived, UploadChecked)  # answered in every state
