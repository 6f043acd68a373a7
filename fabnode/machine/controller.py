"""The machine's state machine: badge taps, inputs, job progress and time in; actions out. Pure.

The daemon runs one `Controller` in its controller thread, posts every adapter's event to `handle()`
and carries out the returned actions in order. Time is an input: each event carries `now` (monotonic
seconds) and the daemon posts a `Tick` at `next_deadline()`. Every (state, event type) pair is listed
in the one table TRANSITIONS at the bottom of this file, ignored pairs included; docs/state-machine.md
is drawn from it by `describe_transitions()` and `mermaid()`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from fabnode.machine.profile import LASER, PRINTER
from fabnode.machine.types import (
    EVENT_TYPES,
    AbortJob,
    Action,
    ActivitySeen,
    BadgeTapped,
    Buzz,
    CancelJob,
    CancelRequested,
    CloseSession,
    ControllerSettings,
    EStopPressed,
    EStopReleased,
    Event,
    FirmwareFault,
    HeatersOff,
    Job,
    JobEnded,
    JobPaused,
    JobRequested,
    JobResumed,
    JobStatus,
    LidClosed,
    LidOpened,
    LockRequested,
    MemberRef,
    OpenSession,
    PauseJob,
    PauseRequested,
    PublishState,
    RecordAccess,
    RecordEvent,
    RecordFault,
    RecordJobEnded,
    Reply,
    ResumeJob,
    ResumeRequested,
    Session,
    SetLeds,
    StartJob,
    State,
    SwitchRelay,
    TemperatureReported,
    Tick,
)

LOCKED, UNLOCKED, RUNNING, PAUSED = State.LOCKED, State.UNLOCKED, State.RUNNING, State.PAUSED
COOLDOWN, FAULT, MAINTENANCE = State.COOLDOWN, State.FAULT, State.MAINTENANCE

# What the LEDs show while the machine stays in a state; a refused tap flashes REFUSED_LEDS for signal_s.
STEADY_LEDS: dict[State, SetLeds] = {
    LOCKED: SetLeds(green=False, red=True),
    UNLOCKED: SetLeds(green=True, red=False),
    RUNNING: SetLeds(green=True, red=False),
    PAUSED: SetLeds(green=True, red=False, blink=True),
    COOLDOWN: SetLeds(green=True, red=True, blink=True),
    FAULT: SetLeds(green=False, red=True, blink=True),
    MAINTENANCE: SetLeds(green=True, red=True),
}
IDLE_WARNING_LEDS = SetLeds(green=True, red=False, blink=True)
REFUSED_LEDS = SetLeds(green=False, red=True, blink=True)

NO_SESSION = "no one is badged in: tap a badge first"
NO_JOB = "no job is running"
BUSY = "job {c.job.id} is already running"
IN_FAULT = "machine fault ({c.fault}): a technician must clear it"
MAINTENANCE_IN_PROGRESS = "maintenance in progress: only a technician can end it"


class UnknownTransition(LookupError):
    """An event arrived in a state for which TRANSITIONS has no entry (a bug in the table or the daemon)."""

    def __init__(self, state: State, event_type: type) -> None:
        self.state = state
        self.event_type = event_type
        super().__init__(f"no transition for event {event_type.__name__} in state {state.name}")


class UndeclaredTransition(RuntimeError):
    """A handler left the machine in a state that its TRANSITIONS entry does not list."""


Handler = Callable[["Controller", Any], list[Action]]
TapHandler = Callable[["Controller", BadgeTapped, MemberRef], list[Action]]


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
        return (self.handler.__doc__ or self.handler.__name__).strip().splitlines()[0]


def _rule(handler: Handler, *targets: State) -> Rule:
    return Rule(handler, frozenset(targets))


def _ignored(state: State, *event_types: type) -> dict[tuple[State, type], Rule]:
    return {(state, event_type): Rule(None, frozenset()) for event_type in event_types}


def _reply(ok: bool, message: str) -> Handler:
    """A handler that only answers a control-socket request; `message` may name {c.fault}, {c.job.id}."""

    def reply(c: Controller, e: Event) -> list[Action]:
        return [Reply(ok, message.format(c=c))]

    shown = re.sub(r"\{c\.([\w.]+)\}", r"<\1>", message)
    reply.__doc__ = f"Refused: {shown}." if not ok else f"Nothing to do (replies {shown!r})."
    return reply


def _granted(handler: TapHandler) -> Handler:
    """Wrap a tap handler: taps the access module denied are refused (red LED, buzz, logged) in any state."""

    @functools.wraps(handler)
    def on_tap(c: Controller, tap: BadgeTapped) -> list[Action]:
        if tap.denial is not None or tap.member is None:
            return c._deny(tap, tap.denial or "unknown badge")
        return handler(c, tap, tap.member)

    on_tap.__doc__ = f"{(handler.__doc__ or '').strip()} Denied badges: refused."
    return on_tap


class Controller:
    """One machine's state; `handle(event)` returns the actions to carry out, in order."""

    def __init__(self, settings: ControllerSettings | None = None) -> None:
        self.settings = settings or ControllerSettings()
        self._state = LOCKED
        self._session: Session | None = None
        self._job: Job | None = None
        self._relay_on = False
        self._fault: str | None = None
        self._estop_pressed = False
        self._lid_open = False
        self._hotend: tuple[float, float] | None = None  # (when read, °C)
        self._last_now: float | None = None
        self._idle_since = 0.0
        self._idle_warned = False
        self._cooldown_since = 0.0
        self._host_lost_at: float | None = None  # this cooldown began because the firmware's port was lost
        self._paused_since = 0.0
        self._signal_until: float | None = None  # when a refused tap's red flash ends
        self._changed = False

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
        times = [self._signal_until] if self._signal_until is not None else []
        if self._state is UNLOCKED and (idle := self._idle_deadlines()) is not None:
            warn_at, timeout_at = idle
            times.append(timeout_at if warn_at is None or self._idle_warned else warn_at)
        elif self._state is COOLDOWN:
            times.append(self._cooldown_deadline())
        elif self._state is PAUSED and (pause_end := self._pause_deadline()) is not None:
            times.append(pause_end)
        return min(times, default=None)

    # --- bookkeeping ------------------------------------------------------------------------------

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

    def _go(self, state: State) -> None:
        self._state = state
        self._changed = True

    def _leds(self) -> SetLeds:
        if self._state is UNLOCKED and self._idle_warned:
            return IDLE_WARNING_LEDS
        return STEADY_LEDS[self._state]

    def _switch(self, on: bool) -> list[Action]:
        if self._relay_on == on:
            return []
        self._relay_on = on
        return [SwitchRelay(on)]

    def _need_session(self) -> Session:
        if self._session is None:
            raise RuntimeError(f"state {self._state.name} without a session")
        return self._session

    def _need_job(self) -> Job:
        if self._job is None:
            raise RuntimeError(f"state {self._state.name} without a job")
        return self._job

    def _lid_blocks(self) -> bool:
        return self.settings.kind == LASER and self._lid_open

    # --- taps -------------------------------------------------------------------------------------

    def _deny(self, tap: BadgeTapped, reason: str) -> list[Action]:
        self._signal_until = tap.now + self.settings.signal_s
        member_id = tap.member.id if tap.member is not None else None
        return [RecordAccess(tap.badge_hash, member_id, False, reason), REFUSED_LEDS, Buzz("denied")]

    @_granted
    def _tap_opens(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """Open a session (a technician's: MAINTENANCE) and switch the relay on."""
        maintenance = member.is_technician
        self._session = Session(member, tap.now, maintenance)
        self._restart_idle(tap.now)
        self._go(MAINTENANCE if maintenance else UNLOCKED)
        what = "maintenance session opened" if maintenance else "session opened"
        return [
            RecordAccess(tap.badge_hash, member.id, True, what),
            OpenSession(self._session),
            *self._switch(True),
            Buzz("granted"),
        ]

    @_granted
    def _tap_ends(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """Badge-out or another member's tap ends the session: COOLDOWN (only technicians end maintenance)."""
        session = self._need_session()
        if session.is_maintenance and not member.is_technician:
            return self._deny(tap, MAINTENANCE_IN_PROGRESS)
        reason = "badge out" if member.id == session.member.id else "another member tapped"
        return [
            RecordAccess(tap.badge_hash, member.id, True, reason),
            Buzz("granted"),
            *self._enter_cooldown(tap.now, reason),
        ]

    @_granted
    def _tap_during_job(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """Badge-out or another member's tap: the session ends when the job ends; the power stays on."""
        return self._badge_out_later(tap, member)

    @_granted
    def _tap_paused(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """The session's member resumes the job (lid closed); another's tap ends the session after it."""
        if member.id != self._need_session().member.id:
            return self._badge_out_later(tap, member)
        refusal = self._resume_refusal()
        if refusal is not None:
            return self._deny(tap, refusal)
        resumed = RecordAccess(tap.badge_hash, member.id, True, "job resumed")
        return [resumed, Buzz("granted"), *self._resume()]

    def _badge_out_later(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        session = self._need_session()
        if session.is_maintenance and not member.is_technician:
            return self._deny(tap, MAINTENANCE_IN_PROGRESS)
        if not session.badge_out_pending:
            reason = "badge out" if member.id == session.member.id else "another member tapped"
            self._session = replace(session, badge_out_pending=True, badge_out_reason=reason)
        what = "session ends when the job ends"
        return [RecordAccess(tap.badge_hash, member.id, True, what), Buzz("granted")]

    @_granted
    def _tap_fault(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """A technician's tap clears the fault once the e-stop is released: LOCKED; members' are refused."""
        if not member.is_technician:
            return self._deny(tap, f"machine fault ({self._fault}): a technician must clear it")
        if self._estop_pressed:
            return self._deny(tap, "release the emergency stop first")
        cleared, self._fault = self._fault, None
        self._go(LOCKED)
        return [
            RecordAccess(tap.badge_hash, member.id, True, "fault cleared"),
            RecordEvent("fault_cleared", f"{cleared}: cleared by technician {member.id}"),
            Buzz("granted"),
        ]

    # --- sessions, cooldown, faults ---------------------------------------------------------------

    def _restart_idle(self, now: float) -> None:
        self._idle_since = now
        self._idle_warned = False

    def _close_session(self, reason: str) -> list[Action]:
        session, self._session = self._session, None
        return [CloseSession(session, reason)] if session is not None else []

    def _back_to_session(self, now: float) -> list[Action]:
        session = self._need_session()
        if session.badge_out_pending:
            return self._enter_cooldown(now, session.badge_out_reason)
        self._restart_idle(now)
        self._go(MAINTENANCE if session.is_maintenance else UNLOCKED)
        return []

    def _enter_cooldown(self, now: float, reason: str, host_lost: bool = False) -> list[Action]:
        actions = self._close_session(reason)
        self._cooldown_since = now
        self._host_lost_at = now if host_lost else None
        self._go(COOLDOWN)
        if self.settings.kind == PRINTER:
            actions.append(HeatersOff())
        return actions + self._cooldown_check(now)

    def _cooldown_deadline(self) -> float:
        s = self.settings
        limit = min(s.fume_runon_s, s.cooldown_max_s) if s.kind == LASER else s.cooldown_max_s
        if self._host_lost_at is not None:
            limit = min(limit, s.host_lost_relay_s)
        return self._cooldown_since + limit

    def _cooldown_over_because(self, now: float) -> str | None:
        s = self.settings
        if s.kind == PRINTER and self._hotend is not None:
            read_at, celsius = self._hotend
            if now - read_at <= s.temperature_max_age_s and celsius < s.cooldown_hotend_below_c:
                return f"hotend at {celsius:g} °C, below {s.cooldown_hotend_below_c:g} °C"
        if now < self._cooldown_deadline():
            return None
        if self._host_lost_at is not None and now - self._host_lost_at >= s.host_lost_relay_s:
            return f"the firmware's port was lost: relay off after {s.host_lost_relay_s:g} s"
        if s.kind == LASER and s.fume_runon_s <= s.cooldown_max_s:
            return f"fume extraction ran on for {s.fume_runon_s:g} s"
        return f"cooldown maximum ({s.cooldown_max_s:g} s) reached"

    def _cooldown_check(self, now: float) -> list[Action]:
        because = self._cooldown_over_because(now)
        if because is None:
            return []
        self._go(LOCKED)
        return [*self._switch(False), RecordEvent("cooldown_over", because)]

    def _enter_fault(self, kind: str, detail: str, job_status: str = JobStatus.ABORTED) -> list[Action]:
        # Relay off before anything else, and always (even if we believe it is off already).
        actions: list[Action] = [SwitchRelay(False)]
        self._relay_on = False
        job, self._job = self._job, None
        if job is not None:
            if job_status == JobStatus.ABORTED:
                actions.append(AbortJob(detail))
            actions.append(RecordJobEnded(replace(job, status=job_status), detail))
        actions += self._close_session(detail)
        self._fault = detail
        self._go(FAULT)
        return [*actions, RecordFault(kind, detail), Buzz("fault")]

    # --- jobs -------------------------------------------------------------------------------------

    def _start_job(self, e: JobRequested) -> list[Action]:
        """Start the job (marked maintenance in a technician's session); laser: refused with the lid open."""
        if self._lid_blocks():
            return [Reply(False, "the lid is open: close it before starting a job")]
        session = self._need_session()
        job = Job(e.job_id, e.file, JobStatus.RUNNING, session.member.id, session.is_maintenance, e.now)
        self._job = job
        self._go(RUNNING)
        return [StartJob(job), Reply(True, f"job {job.id} started")]

    def _pause(self, now: float, reason: str) -> list[Action]:
        self._job = replace(self._need_job(), status=JobStatus.PAUSED, pause_reason=reason)
        self._paused_since = now
        self._go(PAUSED)
        return [PauseJob(reason)]

    def _resume(self) -> list[Action]:
        self._job = replace(self._need_job(), status=JobStatus.RUNNING, pause_reason=None)
        self._go(RUNNING)
        return [ResumeJob()]

    def _resume_refusal(self) -> str | None:
        if self._need_job().status == JobStatus.CANCELLING:
            return "the job is being cancelled"
        if self._lid_blocks():
            return "the lid is open: close it to resume"
        return None

    def _cancel(self, reason: str) -> list[Action]:
        job = self._need_job()
        if job.status == JobStatus.CANCELLING:
            return []
        self._job = replace(job, status=JobStatus.CANCELLING)
        return [CancelJob(reason)]

    def _pause_deadline(self) -> float | None:
        limit = self.settings.pause_max_s
        if limit is None or self._need_job().status == JobStatus.CANCELLING:
            return None
        return self._paused_since + limit

    def _stale(self, event: JobPaused | JobResumed | JobEnded) -> list[Action] | None:
        job = self._need_job()
        if event.job_id == job.id:
            return None
        detail = f"{type(event).__name__} for job {event.job_id} while job {job.id} runs"
        return [RecordEvent("stale_job_event", detail)]

    def _job_ended(self, e: JobEnded) -> list[Action]:
        """Record the job; back to the session (COOLDOWN: badge-out pending or port lost; FAULT: halt)."""
        if (stale := self._stale(e)) is not None:
            return stale
        job = self._need_job()
        reason = e.reason or e.outcome
        if e.outcome == "failed" and e.failure in self.settings.fault_failures:
            return self._enter_fault(f"firmware_{e.failure}", reason, JobStatus.FAILED)
        status = {"completed": JobStatus.COMPLETED, "cancelled": JobStatus.CANCELLED}.get(e.outcome)
        self._job = None
        ended = RecordJobEnded(replace(job, status=status or JobStatus.FAILED), reason)
        if e.outcome == "failed" and e.failure in self.settings.host_lost_failures:
            # Nothing can reach the firmware, which may still be heating: end the session and keep the
            # power only for the hotend fan / fume extraction, for host_lost_relay_s at most.
            return [ended, *self._enter_cooldown(e.now, f"the firmware's port was lost: {reason}", True)]
        return [ended, *self._back_to_session(e.now)]

    def _job_paused(self, e: JobPaused) -> list[Action]:
        """The machine paused the job itself (the printer's screen, M600): PAUSED."""
        if (stale := self._stale(e)) is not None:
            return stale
        if self._need_job().status == JobStatus.CANCELLING:
            return []
        reason = e.reason or "paused on the machine"
        self._pause(e.now, reason)  # the firmware is paused already: no PauseJob to send
        return [RecordEvent("job_paused", reason)]

    def _job_resumed(self, e: JobResumed) -> list[Action]:
        """The machine resumed the job itself: RUNNING; laser with the lid open: paused again."""
        if (stale := self._stale(e)) is not None:
            return stale
        if self._need_job().status == JobStatus.CANCELLING:
            return []
        if self._lid_blocks():
            detail = "job resumed with the lid open: paused again"
            return [PauseJob("lid open"), RecordFault("lid_open", detail)]
        self._resume()  # the firmware runs already: no ResumeJob to send
        return [RecordEvent("job_resumed", "resumed on the machine")]

    def _lid_opened_during_job(self, e: LidOpened) -> list[Action]:
        """Laser: feed hold (the job pauses), logged as a fault: PAUSED; printer: logged only."""
        job = self._need_job()
        if self.settings.kind != LASER or job.status == JobStatus.CANCELLING:
            return [RecordEvent("lid_opened", f"opened during job {job.id}")]
        detail = f"lid opened during job {job.id}: job paused until resumed"
        return [*self._pause(e.now, "lid open"), RecordFault("lid_open", detail), Buzz("fault")]

    def _lid_while_paused(self, e: LidOpened | LidClosed) -> list[Action]:
        """Logged; the job stays paused: it resumes only by a deliberate action, never on the lid closing."""
        kind = "lid_opened" if isinstance(e, LidOpened) else "lid_closed"
        return [RecordEvent(kind, f"job {self._need_job().id} stays paused")]

    # --- requests from the control socket ---------------------------------------------------------

    def _pause_requested(self, e: PauseRequested) -> list[Action]:
        """Pause the job: PAUSED."""
        if self._need_job().status == JobStatus.CANCELLING:
            return [Reply(False, "the job is being cancelled")]
        return [*self._pause(e.now, "paused from the control socket"), Reply(True, "job paused")]

    def _resume_requested(self, e: ResumeRequested) -> list[Action]:
        """Resume the job (a laser's lid must be closed): RUNNING."""
        refusal = self._resume_refusal()
        if refusal is not None:
            return [Reply(False, refusal)]
        return [*self._resume(), Reply(True, "job resumed")]

    def _cancel_requested(self, e: CancelRequested) -> list[Action]:
        """Cancel the job the safe way; the state follows the streamer's JobEnded."""
        job = self._need_job()
        if job.status == JobStatus.CANCELLING:
            return [Reply(False, f"job {job.id} is already being cancelled")]
        return [*self._cancel(e.reason), Reply(True, f"cancelling job {job.id}")]

    def _lock_session(self, e: LockRequested) -> list[Action]:
        """The session ends: COOLDOWN."""
        return [*self._enter_cooldown(e.now, "locked from the control socket"), Reply(True, "session ended")]

    def _lock_during_job(self, e: LockRequested) -> list[Action]:
        """Refused while a job runs; forced: the job is cancelled and the session ends with it."""
        if not e.force:
            return [Reply(False, "a job is running: cancel it first, or lock with --force to cancel it")]
        reason = "locked from the control socket"
        self._session = replace(self._need_session(), badge_out_pending=True, badge_out_reason=reason)
        return [*self._cancel(reason), Reply(True, "cancelling the job, then locking")]

    # --- inputs and timers ------------------------------------------------------------------------

    def _estop(self, e: EStopPressed) -> list[Action]:
        """Relay off first, job aborted, session closed: FAULT until a technician clears it."""
        return self._enter_fault("estop", "emergency stop pressed")

    def _estop_released(self, e: EStopReleased) -> list[Action]:
        """Logged; the fault stays until a technician's tap clears it."""
        return [RecordEvent("estop_released", "a technician's tap clears the fault")]

    def _firmware_fault(self, e: FirmwareFault) -> list[Action]:
        """Relay off first, job aborted, session closed: FAULT until a technician clears it."""
        return self._enter_fault(f"firmware_{e.kind}", e.reason)

    def _idle_deadlines(self) -> tuple[float | None, float] | None:
        timeout = self.settings.idle_timeout_s
        if timeout is None:
            return None
        timeout_at = self._idle_since + timeout
        warning = self.settings.idle_warning_s
        return (timeout_at - warning if warning > 0 else None), timeout_at

    def _idle_check(self, e: Tick) -> list[Action]:
        """Warn before the idle timeout; at the timeout the session ends: COOLDOWN."""
        idle = self._idle_deadlines()
        if idle is None:
            return []
        warn_at, timeout_at = idle
        if e.now >= timeout_at:
            return self._enter_cooldown(e.now, "idle timeout")
        if warn_at is not None and e.now >= warn_at and not self._idle_warned:
            self._idle_warned = True
            return [IDLE_WARNING_LEDS, Buzz("warning")]
        return []

    def _activity(self, e: ActivitySeen) -> list[Action]:
        """Restart the idle timer (and end its warning)."""
        warned = self._idle_warned
        self._restart_idle(e.now)
        return [self._leds()] if warned and self._signal_until is None else []

    def _cooldown_tick(self, e: Tick | TemperatureReported) -> list[Action]:
        """Relay off once the hotend is cool (printer), the fumes are out (laser) or at most: LOCKED."""
        return self._cooldown_check(e.now)

    def _pause_check(self, e: Tick) -> list[Action]:
        """A job paused longer than pause_max_s is cancelled (power is not held forever)."""
        deadline = self._pause_deadline()
        if deadline is None or e.now < deadline:
            return []
        return self._cancel(f"paused longer than {self.settings.pause_max_s:g} s")


C = Controller
# One entry per (state, event type): a handler and the states it may lead to, or _ignored(...).
TRANSITIONS: dict[tuple[State, type], Rule] = {
    # LOCKED: relay off, waiting for a badge.
    (LOCKED, BadgeTapped): _rule(C._tap_opens, LOCKED, UNLOCKED, MAINTENANCE),
    (LOCKED, EStopPressed): _rule(C._estop, FAULT),
    (LOCKED, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (LOCKED, JobRequested): _rule(_reply(False, NO_SESSION), LOCKED),
    (LOCKED, PauseRequested): _rule(_reply(False, NO_JOB), LOCKED),
    (LOCKED, ResumeRequested): _rule(_reply(False, NO_JOB), LOCKED),
    (LOCKED, CancelRequested): _rule(_reply(False, NO_JOB), LOCKED),
    (LOCKED, LockRequested): _rule(_reply(True, "already locked"), LOCKED),
    **_ignored(LOCKED, Tick, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               TemperatureReported, ActivitySeen),
    # UNLOCKED: a member's session, no job.
    (UNLOCKED, Tick): _rule(C._idle_check, UNLOCKED, COOLDOWN, LOCKED),
    (UNLOCKED, BadgeTapped): _rule(C._tap_ends, UNLOCKED, COOLDOWN, LOCKED),
    (UNLOCKED, EStopPressed): _rule(C._estop, FAULT),
    (UNLOCKED, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (UNLOCKED, JobRequested): _rule(C._start_job, UNLOCKED, RUNNING),
    (UNLOCKED, PauseRequested): _rule(_reply(False, NO_JOB), UNLOCKED),
    (UNLOCKED, ResumeRequested): _rule(_reply(False, NO_JOB), UNLOCKED),
    (UNLOCKED, CancelRequested): _rule(_reply(False, NO_JOB), UNLOCKED),
    (UNLOCKED, LockRequested): _rule(C._lock_session, COOLDOWN, LOCKED),
    (UNLOCKED, ActivitySeen): _rule(C._activity, UNLOCKED),
    **_ignored(UNLOCKED, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               TemperatureReported),
    # RUNNING: a job streams; the power stays on whatever taps happen.
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
    **_ignored(RUNNING, Tick, EStopReleased, LidClosed, JobResumed, TemperatureReported, ActivitySeen),
    # PAUSED: a job is paused; it resumes only by a deliberate action.
    (PAUSED, Tick): _rule(C._pause_check, PAUSED),
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
    **_ignored(PAUSED, EStopReleased, JobPaused, TemperatureReported, ActivitySeen),
    # COOLDOWN: no session; the relay stays on until the hotend is cool or the fumes are out.
    (COOLDOWN, Tick): _rule(C._cooldown_tick, COOLDOWN, LOCKED),
    (COOLDOWN, BadgeTapped): _rule(C._tap_opens, COOLDOWN, UNLOCKED, MAINTENANCE),
    (COOLDOWN, EStopPressed): _rule(C._estop, FAULT),
    (COOLDOWN, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (COOLDOWN, TemperatureReported): _rule(C._cooldown_tick, COOLDOWN, LOCKED),
    (COOLDOWN, JobRequested): _rule(_reply(False, NO_SESSION), COOLDOWN),
    (COOLDOWN, PauseRequested): _rule(_reply(False, NO_JOB), COOLDOWN),
    (COOLDOWN, ResumeRequested): _rule(_reply(False, NO_JOB), COOLDOWN),
    (COOLDOWN, CancelRequested): _rule(_reply(False, NO_JOB), COOLDOWN),
    (COOLDOWN, LockRequested): _rule(_reply(True, "cooling down: locks by itself"), COOLDOWN),
    **_ignored(COOLDOWN, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               ActivitySeen),
    # FAULT: relay off until a technician's tap clears it (e-stop released).
    (FAULT, BadgeTapped): _rule(C._tap_fault, FAULT, LOCKED),
    (FAULT, EStopPressed): _rule(C._estop, FAULT),
    (FAULT, EStopReleased): _rule(C._estop_released, FAULT),
    (FAULT, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (FAULT, JobRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, PauseRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, ResumeRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, CancelRequested): _rule(_reply(False, IN_FAULT), FAULT),
    (FAULT, LockRequested): _rule(_reply(False, IN_FAULT), FAULT),
    **_ignored(FAULT, Tick, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded, TemperatureReported,
               ActivitySeen),
    # MAINTENANCE: a technician's session, no job, no idle timeout.
    (MAINTENANCE, BadgeTapped): _rule(C._tap_ends, MAINTENANCE, COOLDOWN, LOCKED),
    (MAINTENANCE, EStopPressed): _rule(C._estop, FAULT),
    (MAINTENANCE, FirmwareFault): _rule(C._firmware_fault, FAULT),
    (MAINTENANCE, JobRequested): _rule(C._start_job, MAINTENANCE, RUNNING),
    (MAINTENANCE, PauseRequested): _rule(_reply(False, NO_JOB), MAINTENANCE),
    (MAINTENANCE, ResumeRequested): _rule(_reply(False, NO_JOB), MAINTENANCE),
    (MAINTENANCE, CancelRequested): _rule(_reply(False, NO_JOB), MAINTENANCE),
    (MAINTENANCE, LockRequested): _rule(C._lock_session, COOLDOWN, LOCKED),
    **_ignored(MAINTENANCE, Tick, EStopReleased, LidOpened, LidClosed, JobPaused, JobResumed, JobEnded,
               TemperatureReported, ActivitySeen),
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
