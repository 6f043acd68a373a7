"""The machine controller's vocabulary: states, settings, events in, actions out (see machine.controller).

Plain frozen data, no behaviour and no I/O. Every event carries `now`, the daemon's monotonic clock in
seconds. Access decisions are made before a tap reaches the controller: a `BadgeTapped` carries the
outcome, so the daemon translates `fabnode.records.members.AccessDecision` into it
(see docs/state-machine.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, get_args

from fabnode.machine.profile import LASER, PRINTER


class State(StrEnum):
    """The machine's states, as `fabnode status` and telemetry show them."""

    LOCKED = "locked"  # relay off, waiting for a badge
    UNLOCKED = "unlocked"  # a member's session, no job
    RUNNING = "running"  # a job streams (member's or technician's session)
    PAUSED = "paused"  # a job is paused (socket, the printer's screen, the laser's lid)
    COOLDOWN = "cooldown"  # session over, relay kept on until the hotend is cool / fumes are gone
    FAULT = "fault"  # e-stop or firmware halt: relay off until a technician clears it
    MAINTENANCE = "maintenance"  # a technician's session, no job: no idle timeout


MEMBER = "member"
TECHNICIAN = "technician"
Role = Literal["member", "technician"]


@dataclass(frozen=True, slots=True)
class MemberRef:
    """Who tapped, as the access module found them; `name` is for the local status only, never telemetry."""

    id: int
    role: Role = "member"
    name: str = ""

    def __post_init__(self) -> None:
        if self.role not in (MEMBER, TECHNICIAN):
            raise ValueError(f"MemberRef.role: {self.role!r}, expected {MEMBER!r} or {TECHNICIAN!r}")

    @property
    def is_technician(self) -> bool:
        """Technicians open maintenance sessions and clear faults."""
        return self.role == TECHNICIAN


@dataclass(frozen=True, slots=True)
class Session:
    """One member's (or technician's) use of the machine, from the granted tap to its end."""

    member: MemberRef
    started_at: float
    is_maintenance: bool
    # Set by a badge-out, another member's tap or a forced lock during a job: the session ends with the job.
    badge_out_pending: bool = False
    badge_out_reason: str = ""


class JobStatus:
    """A job's status while the controller holds it, and the final one in `RecordJobEnded`."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ABORTED = "aborted"  # cut short by the controller itself (e-stop, firmware fault)


@dataclass(frozen=True, slots=True)
class Job:
    """The job the controller started; `status` is one of JobStatus."""

    id: str
    file: str
    status: str
    member_id: int
    is_maintenance: bool
    started_at: float
    pause_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """What the controller needs from the config; every duration in seconds, None means never."""

    kind: str = PRINTER  # fabnode.machine.profile.PRINTER or LASER
    idle_timeout_s: float | None = 900.0  # UNLOCKED with no job nor activity this long ends the session
    idle_warning_s: float = 60.0  # warn (buzzer, blinking LED) this long before the idle timeout; 0: none
    cooldown_max_s: float = 600.0  # COOLDOWN never keeps the relay on longer than this
    cooldown_hotend_below_c: float = 50.0  # printer: the relay goes off once the hotend reads below this
    fume_runon_s: float = 120.0  # laser: the fume extraction runs on this long after the session
    temperature_max_age_s: float = 10.0  # a hotend reading older than this does not end a cooldown
    pause_max_s: float | None = 1800.0  # a job paused this long is cancelled, so power is not held forever
    signal_s: float = 2.0  # how long the red LED shows a refused tap before the LEDs return to the state's
    fault_failures: frozenset[str] = frozenset({"halted", "thermal"})  # JobEnded failures that mean FAULT
    # A job that ended because the host lost the firmware's port (USB unplugged): the firmware may still
    # heat and nothing can tell it to stop, so the session ends (COOLDOWN) and the relay goes off after
    # host_lost_relay_s at most (sooner once the port is back and the hotend reads cool).
    host_lost_failures: frozenset[str] = frozenset({"port_lost"})
    host_lost_relay_s: float = 120.0

    def __post_init__(self) -> None:
        if self.kind not in (PRINTER, LASER):
            raise ValueError(f"ControllerSettings.kind: {self.kind!r}, expected {PRINTER!r} or {LASER!r}")
        for name in ("idle_timeout_s", "pause_max_s", "signal_s"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"ControllerSettings.{name}: {value!r}, expected a number above 0")
        for name in ("idle_warning_s", "cooldown_max_s", "fume_runon_s", "temperature_max_age_s",
                     "host_lost_relay_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"ControllerSettings.{name}: {value!r}, expected a number, 0 or above")
        if self.idle_timeout_s is not None and self.idle_warning_s >= self.idle_timeout_s:
            raise ValueError(
                f"ControllerSettings.idle_warning_s: {self.idle_warning_s!r}, "
                f"expected less than idle_timeout_s ({self.idle_timeout_s!r})"
            )


# --- events: what adapters report, posted by the daemon ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: the daemon posts one at `next_deadline()` (or more often)."""

    now: float


@dataclass(frozen=True, slots=True)
class BadgeTapped:
    """A badge was read; `denial` is None when access was granted (then `member` is set)."""

    now: float
    badge_hash: str
    member: MemberRef | None
    denial: str | None = None

    def __post_init__(self) -> None:
        if self.denial is None and self.member is None:
            raise ValueError("BadgeTapped: a granted tap (denial=None) needs a member")

    @property
    def granted(self) -> bool:
        """The access module let this badge use this machine."""
        return self.denial is None


@dataclass(frozen=True, slots=True)
class EStopPressed:
    """The emergency stop input went active."""

    now: float


@dataclass(frozen=True, slots=True)
class EStopReleased:
    """The emergency stop input went inactive."""

    now: float


@dataclass(frozen=True, slots=True)
class LidOpened:
    """The laser's lid (or an enclosure door) opened."""

    now: float


@dataclass(frozen=True, slots=True)
class LidClosed:
    """The laser's lid (or an enclosure door) closed."""

    now: float


@dataclass(frozen=True, slots=True)
class JobRequested:
    """The control socket asks to run a file; the daemon has run preflight and chose the job's id."""

    now: float
    job_id: str
    file: str


@dataclass(frozen=True, slots=True)
class JobPaused:
    """The streamer reports the job paused (our PauseJob, or the printer's screen / M600)."""

    now: float
    job_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobResumed:
    """The streamer reports the job running again (our ResumeJob, or the printer's screen)."""

    now: float
    job_id: str


JobOutcome = Literal["completed", "cancelled", "failed"]


@dataclass(frozen=True, slots=True)
class JobEnded:
    """The streamer reports the job over; `failure` is a drivers.events FAILURE_* name when it failed."""

    now: float
    job_id: str
    outcome: JobOutcome
    reason: str = ""
    failure: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in ("completed", "cancelled", "failed"):
            raise ValueError(f"JobEnded.outcome: {self.outcome!r}, expected completed, cancelled or failed")


@dataclass(frozen=True, slots=True)
class FirmwareFault:
    """The firmware halted (kill(), thermal runaway) while no job was streaming; `kind` as in FAILURE_*."""

    now: float
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class TemperatureReported:
    """A hotend reading (printer); the daemon keeps them coming (M155) at least during COOLDOWN."""

    now: float
    hotend_c: float


@dataclass(frozen=True, slots=True)
class PauseRequested:
    """`fabnode pause` on the control socket."""

    now: float


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """`fabnode resume` on the control socket: the deliberate action that resumes a paused job."""

    now: float


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """`fabnode cancel` on the control socket."""

    now: float
    reason: str = "cancelled from the control socket"


@dataclass(frozen=True, slots=True)
class LockRequested:
    """`fabnode lock [--force]`: end the session; during a job only with force (cancels the job)."""

    now: float
    force: bool = False


@dataclass(frozen=True, slots=True)
class ActivitySeen:
    """Someone uses the machine outside a job (current sense, console commands): resets the idle timer."""

    now: float
    what: str = ""


Event = (
    Tick
    | BadgeTapped
    | EStopPressed
    | EStopReleased
    | LidOpened
    | LidClosed
    | JobRequested
    | JobPaused
    | JobResumed
    | JobEnded
    | FirmwareFault
    | TemperatureReported
    | PauseRequested
    | ResumeRequested
    | CancelRequested
    | LockRequested
    | ActivitySeen
)
EVENT_TYPES: tuple[type, ...] = get_args(Event)


# --- actions: what the daemon carries out, in the order given ------------------------------------------


@dataclass(frozen=True, slots=True)
class SwitchRelay:
    """Switch the machine's power relay."""

    on: bool


@dataclass(frozen=True, slots=True)
class SetLeds:
    """Set the indicator LEDs; `blink` applies to those that are on."""

    green: bool
    red: bool
    blink: bool = False


BuzzPattern = Literal["denied", "granted", "warning", "fault"]


@dataclass(frozen=True, slots=True)
class Buzz:
    """Play a buzzer pattern."""

    pattern: BuzzPattern


@dataclass(frozen=True, slots=True)
class StartJob:
    """Insert the job's row (in_progress) and start streaming its file."""

    job: Job


@dataclass(frozen=True, slots=True)
class PauseJob:
    """Pause the streaming job (laser: feed hold)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ResumeJob:
    """Resume the paused job."""


@dataclass(frozen=True, slots=True)
class CancelJob:
    """Cancel the job the safe way (printer: safe-stop G-code); a JobEnded follows."""

    reason: str


@dataclass(frozen=True, slots=True)
class AbortJob:
    """Stop streaming at once, no G-code (power is already off); the job is recorded as aborted."""

    reason: str


@dataclass(frozen=True, slots=True)
class HeatersOff:
    """Printer: turn the heaters off (M104 S0, M140 S0) so the cooldown can end."""


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Record the start of a session."""

    session: Session


@dataclass(frozen=True, slots=True)
class CloseSession:
    """Record the end of a session."""

    session: Session
    reason: str


@dataclass(frozen=True, slots=True)
class RecordAccess:
    """Log a tap: granted when the controller acted on it, otherwise the reason it was refused."""

    badge_hash: str
    member_id: int | None
    granted: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RecordJobEnded:
    """Complete the job's row; `job.status` is the final JobStatus."""

    job: Job
    reason: str


@dataclass(frozen=True, slots=True)
class RecordFault:
    """Log a safety event (e-stop, firmware halt, lid opened during a job)."""

    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """Log anything else worth keeping (lid closed, fault cleared, cooldown over, stale job events)."""

    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the control-socket request that this event carried."""

    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class PublishState:
    """Enqueue a state message for telemetry (also what `fabnode status` shows)."""

    state: State


Action = (
    SwitchRelay
    | SetLeds
    | Buzz
    | StartJob
    | PauseJob
    | ResumeJob
    | CancelJob
    | AbortJob
    | HeatersOff
    | OpenSession
    | CloseSession
    | RecordAccess
    | RecordJobEnded
    | RecordFault
    | RecordEvent
    | Reply
    | PublishState
)
