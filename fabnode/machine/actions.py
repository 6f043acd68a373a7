"""What the controller asks the daemon to carry out, in the order given. Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fabnode.machine.state import Job, Session, State


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
    """Insert the job's row (in_progress) and stream its file (`prepared`: the request's preflight)."""

    job: Job
    prepared: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PauseJob:
    """Pause the streaming job (laser: feed hold); `door`: the laser's lid opened, so the firmware's
    safety-door hold, which turns the beam off whatever its laser mode ($32) says."""

    reason: str
    door: bool = False


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
    forbidden: bool = False  # refused for who asked (another member's job), not for the machine's state


@dataclass(frozen=True, slots=True)
class CheckInboxFile:
    """The session's member tapped while a file waits: preflight it aside; an InboxChecked follows."""

    file: str


@dataclass(frozen=True, slots=True)
class RejectInboxFile:
    """Move an inbox file that failed preflight aside, with its problems."""

    file: str
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CheckUpload:
    """A tap released a waiting upload: preflight it aside; an UploadChecked follows."""

    upload_id: str
    member_id: int


@dataclass(frozen=True, slots=True)
class TakeUpload:
    """An upload became job `job_id`: it leaves the queue (its file and sidecar move to started/)."""

    upload_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class ExpireUpload:
    """An upload no tap started in time: it leaves the queue, moved to stale/ (nothing is deleted)."""

    upload_id: str
    reason: str


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
    | CheckInboxFile
    | RejectInboxFile
    | CheckUpload
    | TakeUpload
    | ExpireUpload
)
