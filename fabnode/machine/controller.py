"""The machine's state machine: badge taps, inputs, job progress and time in; actions out. Pure.

The daemon runs one `Controller` in its controller thread, posts every adapter's event to `handle()`
and carries out the returned actions in order. Every decision that depends on the machine's state is a
row of the one table TRANSITIONS at the bottom of this file, which names the handler for every
(state, event type) pair, ignored pairs included; the handlers live in core, tap_rules, job_rules,
input_rules, desk_rules and upload_rules. Time is an input: each event carries `now` (monotonic
seconds) and the daemon posts a `Tick` at `next_deadline()`. docs/state-machine.md is drawn from the table by
`describe_transitions()` and `mermaid()`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from fabnode.machine.actions import Action, PublishState, Reply, SetLeds, SwitchRelay
from fabnode.machine.core import (
    BUSY,
    COOLDOWN,
    FAULT,
    IN_FAULT,
    LOCKED,
    MAINTENANCE,
    NO_JOB,
    NO_SESSION,
    PAUSED,
    RUNNING,
    UNLOCKED,
    Core,
)
from fabnode.machine.desk_rules import BACKGROUND, INBOX_SESSION_CHANGED, WIRING_CHECK_HOLD_S, DeskRules
from fabnode.machine.events import (
    EVENT_TYPES,
    ActivitySeen,
    BadgeTapped,
    CalibrationRequested,
    CancelRequested,
    EStopPressed,
    EStopReleased,
    Event,
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
from fabnode.machine.input_rules import InputRules
from fabnode.machine.job_rules import JobRules
from fabnode.machine.state import Job, Session, State
from fabnode.machine.tap_rules import TapRules
from fabnode.machine.upload_rules import UPLOAD_SESSION_CHANGED, expiring


class UnknownTransition(LookupError):
    """An event arrived in a state for which TRANSITIONS has no entry (a bug in the table or the daemon)."""

    def __init__(self, state: State, event_type: type) -> None:
        self.state = state
        self.event_type = event_type
        super().__init__(f"no transition for event {event_type.__name__} in state {state.name}")


class UndeclaredTransition(RuntimeError):
    """A handler left the machine in a state that its TRANSITIONS entry does not list."""


Handler = Callable[..., list[Action]]  # (controller, the event of its row's type) -> actions


@dataclass(frozen=True, slots=True)
class Rule:
    """One TRANSITIONS entry: the handler (None: ignored) and the states it may leave the machine in."""

    handler: Handler | None
    targets: frozenset[State]

    @property
    def note(self) -> str:
        """What happens, for the documentation: the handler's docstring's first line."""
        if self.handler is None:
            return "ignored (inputs are still tracked)"
        return " ".join((self.handler.__doc__ or self.handler.__name__).strip().split("\n\n")[0].split())


def _rule(handler: Handler, *targets: State) -> Rule:
    return Rule(handler, frozenset(targets))


def _ignored(state: State, *event_types: type) -> dict[tuple[State, type], Rule]:
    return {(state, event_type): Rule(None, frozenset()) for event_type in event_types}


def _reply(ok: bool, message: str) -> Handler:
    """A handler that only answers a control-socket request; `message` may name {c.fault}, {c.job.id}."""

    def reply(c: Core, e: Event) -> list[Action]:
        return [Reply(ok, message.format(c=c))]

    shown = re.sub(r"\{c\.([\w.]+)\}", r"<\1>", message)
    reply.__doc__ = f"Refused: {shown}." if not ok else f"Nothing to do (replies {shown!r})."
    return reply


class Controller(TapRules, JobRules, InputRules, DeskRules):
    """One machine's state; `handle(event)` returns the actions to carry out, in order."""

    # --- what the daemon reads for `fabnode status` -------------------------------------------------

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def session(self) -> Session | None:
        """The open session (member, started_at, is_maintenance, badge_out_pending), if any."""
        return self._session

    @property
    def job(self) -> Job | None:
        """The job being run (id, file, status), if any."""
        return self._job

    @property
    def relay_on(self) -> bool:
        """Whether the controller last asked for the relay on."""
        return self._relay_on

    @property
    def fault(self) -> str | None:
        """Why the machine is in FAULT."""
        return self._fault

    @property
    def estop_pressed(self) -> bool:
        """The e-stop input as last reported."""
        return self._estop_pressed

    @property
    def lid_open(self) -> bool:
        """The lid input as last reported."""
        return self._lid_open

    @property
    def wiring_check(self) -> tuple[bool | None, bool, float | None]:
        """A technician's check in progress: (its relay, whether it holds the LEDs, when it ends)."""
        return self._check_relay, self._check_leds is not None, self._check_until

    # --- the daemon's entry points -----------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Outputs for start-up (relay off, LEDs, state); call once, before any event."""
        self._advance_clock(now)
        self._relay_on = False
        return [SwitchRelay(False), self._leds(), PublishState(self._state)]

    def handle(self, event: Event) -> list[Action]:
        """Take one event; return the actions to carry out, in order (relay off first on a fault)."""
        rule = TRANSITIONS.get((self._state, type(event)))
        if rule is None:
            raise UnknownTransition(self._state, type(event))
        self._advance_clock(event.now)
        self._observe(event)
        before, self._changed = self._state, False
        actions = rule.handler(self, event) if rule.handler is not None else []
        if self._check_until is not None and not isinstance(event, WiringCheckRequested):
            actions += self._after_wiring_check(event, actions)
        if self._changed and self._state not in rule.targets:
            raise UndeclaredTransition(
                f"{type(event).__name__} in {before.name} led to {self._state.name}, which TRANSITIONS does "
                f"not list ({', '.join(sorted(t.name for t in rule.targets))})"
            )
        if self._changed:
            self._signal_until = None
            actions += [self._leds(), PublishState(self._state)]
        elif self._signal_until is not None and event.now >= self._signal_until:
            self._signal_until = None
            actions.append(self._leds())
        return actions

    def next_deadline(self) -> float | None:
        """The monotonic time at which the daemon must post a Tick, or None when no timer runs."""
        times = [t for t in (self._signal_until, self._check_until, self.upload_deadline()) if t is not None]
        if self._state is UNLOCKED and (idle := self._idle_deadlines()) is not None:
            warn_at, timeout_at = idle
            times.append(timeout_at if warn_at is None or self._idle_warned else warn_at)
        elif self._state is COOLDOWN:
            times.append(self._cooldown_deadline())
        elif self._state is PAUSED and (pause_end := self._pause_deadline()) is not None:
            times.append(pause_end)
        return min(times, default=None)

    def _advance_clock(self, now: float) -> None:
        if not math.isfinite(now):
            raise ValueError(f"event time {now!r} is not a number")
        if self._last_now is not None and now < self._last_now:
            raise ValueError(f"the clock went backwards: event at {now!r} after one at {self._last_now!r}")
        self._last_now = now


    def _observe(self, event: Event) -> None:
        # Inputs are tracked in every state, even where the table ignores them, so that a later
        # decision (clear a fault, resume a job, end a cooldown) sees the real e-stop, lid and hotend.
        if isinstance(event, EStopPressed | EStopReleased):
            self._estop_pressed = isinstance(event, EStopPressed)
        elif isinstance(event, LidOpened | LidClosed):
            self._lid_open = isinstance(event, LidOpened)
        elif isinstance(event, TemperatureReported):
            self._hotend = (event.now, event.hotend_c)
        elif isinstance(event, StorageChanged):
            self._storage_problem = event.problem


    def _after_wiring_check(self, event: Event, actions: list[Action]) -> list[Action]:
        # The controller acting (any event but the background ones), its hold running out, or the machine
        # leaving LOCKED / MAINTENANCE ends a technician's check; what the handler set itself wins.
        relay_set = any(isinstance(a, SwitchRelay) for a in actions)
        leds_set = self._changed or any(isinstance(a, SetLeds) for a in actions)
        if not isinstance(event, BACKGROUND):
            return self._end_wiring_check(f"{type(event).__name__}: the controller decides again",
                                          not relay_set, not leds_set)  # fmt: skip
        if self._check_until is not None and event.now >= self._check_until:
            return self._end_wiring_check(f"after {WIRING_CHECK_HOLD_S:g} s", not relay_set, not leds_set)
        if self._changed and self._state not in (LOCKED, MAINTENANCE):
            return self._end_wiring_check(f"the machine is {self._state.value}", not relay_set, not leds_set)
        self._check_relay = None if relay_set else self._check_relay
        self._check_leds = None if leds_set else self._check_leds
        if self._check_relay is None and self._check_leds is None:
            self._check_until = None
        return []


C = Controller
# One entry per (state, event type): a handler and the states it may lead to, or _ignored(...).
TRANSITIONS: dict[tuple[State, type], Rule] = {
    # LOCKED: relay off, waiting for a badge.
    (LOCKED, Tick): _rule(C._expire_uploads, LOCKED),
    (LOCKED, BadgeTapped): _rule(C._tap_opens, LOCKED, UNLOCKED, MAINTENANCE),
    (LOCKED, EStopPressed): _rule(C._estop, FAULT),
    (LOCKED, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (LOCKED, JobRequested): _rule(_reply(False, NO_SESSION), LOCKED),
    (LOCKED, PauseRequested): _rule(_reply(False, NO_JOB), LOCKED),
    (LOCKED, ResumeRequested): _rule(_reply(False, NO_JOB), LOCKED),
    (LOCKED, CancelRequested): _rule(_reply(False, NO_JOB), LOCKED),
    (LOCKED, LockRequested): _rule(_reply(True, "already locked"), LOCKED),
    (LOCKED, WiringCheckRequested): _rule(C._wiring_check, LOCKED),
    (LOCKED, CalibrationRequested): _rule(C._calibration_idle, LOCKED),
    (LOCKED, InboxChecked): _rule(_reply(False, INBOX_SESSION_CHANGED), LOCKED),
    (LOCKED, UploadReceived): _rule(C._upload_waits, LOCKED),
    (LOCKED, UploadChecked): _rule(_reply(False, UPLOAD_SESSION_CHANGED), LOCKED),
    **_ignored(LOCKED, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               TemperatureReported, ActivitySeen, StorageChanged),
    # UNLOCKED: a member's session, no job.
    (UNLOCKED, Tick): _rule(expiring(C._idle_check), UNLOCKED, COOLDOWN, LOCKED),
    (UNLOCKED, BadgeTapped): _rule(C._tap_ends, UNLOCKED, COOLDOWN, LOCKED),
    (UNLOCKED, EStopPressed): _rule(C._estop, FAULT),
    (UNLOCKED, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (UNLOCKED, JobRequested): _rule(C._start_job, UNLOCKED, RUNNING),
    (UNLOCKED, PauseRequested): _rule(_reply(False, NO_JOB), UNLOCKED),
    (UNLOCKED, ResumeRequested): _rule(_reply(False, NO_JOB), UNLOCKED),
    (UNLOCKED, CancelRequested): _rule(_reply(False, NO_JOB), UNLOCKED),
    (UNLOCKED, LockRequested): _rule(C._lock_session, COOLDOWN, LOCKED),
    (UNLOCKED, ActivitySeen): _rule(C._activity, UNLOCKED),
    (UNLOCKED, WiringCheckRequested): _rule(C._wiring_refused, UNLOCKED),
    (UNLOCKED, CalibrationRequested): _rule(C._calibration_in_session, UNLOCKED),
    (UNLOCKED, InboxChecked): _rule(C._inbox_checked, UNLOCKED),
    (UNLOCKED, UploadReceived): _rule(C._upload_in_session, UNLOCKED, RUNNING),
    (UNLOCKED, UploadChecked): _rule(C._upload_checked, UNLOCKED, RUNNING),
    **_ignored(UNLOCKED, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               TemperatureReported, StorageChanged),
    # RUNNING: a job streams; the power stays on whatever taps happen.
    (RUNNING, Tick): _rule(C._expire_uploads, RUNNING),
    (RUNNING, BadgeTapped): _rule(C._tap_during_job, RUNNING),
    (RUNNING, EStopPressed): _rule(C._estop, FAULT),
    (RUNNING, LidOpened): _rule(C._lid_opened_during_job, RUNNING, PAUSED),
    (RUNNING, JobRequested): _rule(_reply(False, BUSY), RUNNING),
    (RUNNING, JobPaused): _rule(C._job_paused, RUNNING, PAUSED),
    (RUNNING, JobEnded): _rule(C._job_ended, RUNNING, UNLOCKED, MAINTENANCE, COOLDOWN, LOCKED, FAULT),
    (RUNNING, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (RUNNING, PauseRequested): _rule(C._pause_requested, RUNNING, PAUSED),
    (RUNNING, ResumeRequested): _rule(_reply(False, "the job is not paused"), RUNNING),
    (RUNNING, CancelRequested): _rule(C._cancel_requested, RUNNING),
    (RUNNING, LockRequested): _rule(C._lock_during_job, RUNNING),
    (RUNNING, WiringCheckRequested): _rule(C._wiring_refused, RUNNING),
    (RUNNING, CalibrationRequested): _rule(C._calibration_in_job, RUNNING),
    (RUNNING, InboxChecked): _rule(_reply(False, INBOX_SESSION_CHANGED), RUNNING),
    (RUNNING, UploadReceived): _rule(C._upload_waits, RUNNING),
    (RUNNING, UploadChecked): _rule(_reply(False, UPLOAD_SESSION_CHANGED), RUNNING),
    **_ignored(RUNNING, EStopReleased, LidClosed, JobResumed, TemperatureReported, ActivitySeen,
               StorageChanged),
    # PAUSED: a job is paused; it resumes only by a deliberate action.
    (PAUSED, Tick): _rule(expiring(C._pause_check), PAUSED),
    (PAUSED, BadgeTapped): _rule(C._tap_paused, PAUSED, RUNNING),
    (PAUSED, EStopPressed): _rule(C._estop, FAULT),
    (PAUSED, LidOpened): _rule(C._lid_while_paused, PAUSED),
    (PAUSED, LidClosed): _rule(C._lid_while_paused, PAUSED),
    (PAUSED, JobRequested): _rule(_reply(False, BUSY), PAUSED),
    (PAUSED, JobResumed): _rule(C._job_resumed, PAUSED, RUNNING),
    (PAUSED, JobEnded): _rule(C._job_ended, PAUSED, UNLOCKED, MAINTENANCE, COOLDOWN, LOCKED, FAULT),
    (PAUSED, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (PAUSED, PauseRequested): _rule(_reply(False, "the job is already paused"), PAUSED),
    (PAUSED, ResumeRequested): _rule(C._resume_requested, PAUSED, RUNNING),
    (PAUSED, CancelRequested): _rule(C._cancel_requested, PAUSED),
    (PAUSED, LockRequested): _rule(C._lock_during_job, PAUSED),
    (PAUSED, WiringCheckRequested): _rule(C._wiring_refused, PAUSED),
    (PAUSED, CalibrationRequested): _rule(C._calibration_in_job, PAUSED),
    (PAUSED, InboxChecked): _rule(_reply(False, INBOX_SESSION_CHANGED), PAUSED),
    (PAUSED, UploadReceived): _rule(C._upload_waits, PAUSED),
    (PAUSED, UploadChecked): _rule(_reply(False, UPLOAD_SESSION_CHANGED), PAUSED),
    **_ignored(PAUSED, EStopReleased, JobPaused, TemperatureReported, ActivitySeen, StorageChanged),
    # COOLDOWN: no session; the relay stays on until the hotend is cool or the fumes are out.
    (COOLDOWN, Tick): _rule(expiring(C._cooldown_tick), COOLDOWN, LOCKED),
    (COOLDOWN, BadgeTapped): _rule(C._tap_opens, COOLDOWN, UNLOCKED, MAINTENANCE),
    (COOLDOWN, EStopPressed): _rule(C._estop, FAULT),
    (COOLDOWN, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (COOLDOWN, TemperatureReported): _rule(C._cooldown_tick, COOLDOWN, LOCKED),
    (COOLDOWN, JobRequested): _rule(_reply(False, NO_SESSION), COOLDOWN),
    (COOLDOWN, PauseRequested): _rule(_reply(False, NO_JOB), COOLDOWN),
    (COOLDOWN, ResumeRequested): _rule(_reply(False, NO_JOB), COOLDOWN),
    (COOLDOWN, CancelRequested): _rule(_reply(False, NO_JOB), COOLDOWN),
    (COOLDOWN, LockRequested): _rule(_reply(True, "cooling down: locks by itself"), COOLDOWN),
    (COOLDOWN, WiringCheckRequested): _rule(C._wiring_refused, COOLDOWN),
    (COOLDOWN, CalibrationRequested): _rule(C._calibration_in_cooldown, COOLDOWN),
    (COOLDOWN, InboxChecked): _rule(_reply(False, INBOX_SESSION_CHANGED), COOLDOWN),
    (COOLDOWN, UploadReceived): _rule(C._upload_waits, COOLDOWN),
    (COOLDOWN, UploadChecked): _rule(_reply(False, UPLOAD_SESSION_CHANGED), COOLDOWN),
    **_ignored(COOLDOWN, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               ActivitySeen, StorageChanged),
    # FAULT: relay off until a technician's tap clears it (e-stop released).
    (FAULT, Tick): _rule(C._expire_uploads, FAULT),
    (FAULT, BadgeTapped): _rule(C._tap_fault, FAULT, LOCKED),
    (FAULT, EStopPressed): _rule(C._estop, FAULT),
    (FAULT, EStopReleased): _rule(C._estop_released, FAULT),
    (FAULT, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (FAULT, JobRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, PauseRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, ResumeRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, CancelRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, LockRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, WiringCheckRequested): _rule(C._wiring_refused, FAULT),
    (FAULT, CalibrationRequested): _rule(C._calibration_in_fault, FAULT),
    (FAULT, InboxChecked): _rule(_reply(False, INBOX_SESSION_CHANGED), FAULT),
    (FAULT, UploadReceived): _rule(C._upload_waits, FAULT),
    (FAULT, UploadChecked): _rule(_reply(False, UPLOAD_SESSION_CHANGED), FAULT),
    **_ignored(FAULT, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded, TemperatureReported,
               ActivitySeen, StorageChanged),
    # MAINTENANCE: a technician's session, no job, no idle timeout.
    (MAINTENANCE, Tick): _rule(C._expire_uploads, MAINTENANCE),
    (MAINTENANCE, BadgeTapped): _rule(C._tap_ends, MAINTENANCE, COOLDOWN, LOCKED),
    (MAINTENANCE, EStopPressed): _rule(C._estop, FAULT),
    (MAINTENANCE, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (MAINTENANCE, JobRequested): _rule(C._start_job, MAINTENANCE, RUNNING),
    (MAINTENANCE, PauseRequested): _rule(_reply(False, NO_JOB), MAINTENANCE),
    (MAINTENANCE, ResumeRequested): _rule(_reply(False, NO_JOB), MAINTENANCE),
    (MAINTENANCE, CancelRequested): _rule(_reply(False, NO_JOB), MAINTENANCE),
    (MAINTENANCE, LockRequested): _rule(C._lock_session, COOLDOWN, LOCKED),
    (MAINTENANCE, WiringCheckRequested): _rule(C._wiring_check, MAINTENANCE),
    (MAINTENANCE, CalibrationRequested): _rule(C._calibration_idle, MAINTENANCE),
    (MAINTENANCE, InboxChecked): _rule(C._inbox_checked, MAINTENANCE),
    (MAINTENANCE, UploadReceived): _rule(C._upload_in_session, MAINTENANCE, RUNNING),
    (MAINTENANCE, UploadChecked): _rule(C._upload_checked, MAINTENANCE, RUNNING),
    **_ignored(MAINTENANCE, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               TemperatureReported, ActivitySeen, StorageChanged),
}


def _in_order(states: frozenset[State]) -> list[State]:
    return [s for s in State if s in states]


def _table_rows() -> list[tuple[State, type, Rule]]:
    # In State and EVENT_TYPES order, so that the documents do not depend on the dict's insertion order.
    order = {event_type: i for i, event_type in enumerate(EVENT_TYPES)}
    rows = [(state, event_type, rule) for (state, event_type), rule in TRANSITIONS.items()]
    return sorted(rows, key=lambda row: (list(State).index(row[0]), order.get(row[1], len(order))))


def describe_transitions() -> str:
    """The transition table as Markdown: state, event, the states it may lead to, what happens."""
    lines = ["| State | Event | May lead to | What happens |", "|---|---|---|---|"]
    for state, event_type, rule in _table_rows():
        moves = ", ".join(s.name for s in _in_order(rule.targets - {state}))
        leads_to = f"{moves} or stays" if moves and state in rule.targets else moves or "(stays)"
        lines.append(f"| {state.name} | {event_type.__name__} | {leads_to} | {rule.note} |")
    return "\n".join(lines) + "\n"


def mermaid() -> str:
    """The state diagram as a Mermaid stateDiagram, drawn from the table (staying put is left out)."""
    edges: dict[tuple[State, State], list[str]] = {}
    for state, event_type, rule in _table_rows():
        for target in _in_order(rule.targets - {state}):
            edges.setdefault((state, target), []).append(event_type.__name__)
    lines = ["stateDiagram-v2", f"    [*] --> {LOCKED.name}"]
    lines += [f"    {a.name} --> {b.name}: {', '.join(names)}" for (a, b), names in edges.items()]
    return "\n".join(lines) + "\n"
