"""The controller's state and the helpers every handler group shares (fabnode.machine.controller).

`Core` holds one machine's state; the handler groups (tap_rules, job_rules, input_rules, desk_rules) are
its subclasses and `Controller` joins them. Which handler runs for which (state, event) is only
decided by controller.TRANSITIONS. Pure: no I/O, time is an input.
"""

from __future__ import annotations

from dataclasses import replace

from fabnode.machine.actions import (
    AbortJob,
    Action,
    Buzz,
    CancelJob,
    CloseSession,
    HeatersOff,
    PauseJob,
    RecordAccess,
    RecordEvent,
    RecordFault,
    RecordJobEnded,
    ResumeJob,
    SetLeds,
    SwitchRelay,
)
from fabnode.machine.events import (
    BadgeTapped,
    JobEnded,
    JobPaused,
    JobResumed,
)
from fabnode.machine.profile import LASER, PRINTER
from fabnode.machine.state import ControllerSettings, Job, JobStatus, MemberRef, QueuedUpload, Session, State

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


class Core:
    """One machine's state, and the moves every handler group makes with it."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
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
        self._storage_problem: str | None = None  # why the usage log cannot record a new session or job
        self._check_relay: bool | None = None  # a technician's relay while it differs from the controller's
        self._check_leds: SetLeds | None = None  # a technician's LEDs while they hold
        self._check_until: float | None = None  # when a technician's wiring check ends by itself
        self._uploads: tuple[QueuedUpload, ...] = ()  # the upload queue, oldest first (upload_rules)
        self._changed = False

    # --- bookkeeping ------------------------------------------------------------------------------

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

    def _deny(self, tap: BadgeTapped, reason: str) -> list[Action]:
        self._signal_until = tap.now + self.settings.signal_s
        member_id = tap.member.id if tap.member is not None else None
        return [RecordAccess(tap.badge_hash, member_id, False, reason), REFUSED_LEDS, Buzz("denied")]

    def _badge_out_later(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        session = self._need_session()
        if session.is_maintenance and not member.is_technician:
            return self._deny(tap, MAINTENANCE_IN_PROGRESS)
        if not session.badge_out_pending:
            reason = "badge out" if member.id == session.member.id else "another member tapped"
            self._session = replace(session, badge_out_pending=True, badge_out_reason=reason)
        what = "session ends when the job ends"
        return [RecordAccess(tap.badge_hash, member.id, True, what), Buzz("granted")]

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

    def _enter_fault(self, kind: str, detail: str, job_status: JobStatus = JobStatus.ABORTED) -> list[Action]:
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

    def _pause(self, now: float, reason: str, door: bool = False) -> list[Action]:
        self._job = replace(self._need_job(), status=JobStatus.PAUSED, pause_reason=reason)
        self._paused_since = now
        self._go(PAUSED)
        return [PauseJob(reason, door)]

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

    def _idle_deadlines(self) -> tuple[float | None, float] | None:
        timeout = self.settings.idle_timeout_s
        if timeout is None:
            return None
        timeout_at = self._idle_since + timeout
        warning = self.settings.idle_warning_s
        return (timeout_at - warning if warning > 0 else None), timeout_at

    def _end_wiring_check(self, why: str, relay: bool = True, leds: bool = True) -> list[Action]:
        """The controller's own relay and LEDs apply again (those its handler just set are left alone)."""
        actions: list[Action] = []
        if relay and self._check_relay is not None and self._check_relay != self._relay_on:
            actions += [SwitchRelay(self._relay_on), RecordEvent(
                "wiring_check_over", f"{why}: relay back {'on' if self._relay_on else 'off'}")]
        if leds and self._check_leds is not None:
            actions += [self._leds(),
                        RecordEvent("wiring_check_over", f"{why}: LEDs back to the controller's")]
        self._check_relay, self._check_leds, self._check_until = None, None, None
        return actions
