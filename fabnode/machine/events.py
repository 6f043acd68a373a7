"""What adapters report to the controller, posted by the daemon. Plain frozen data.

Every event carries `now`, the daemon's monotonic clock in seconds. Access decisions are made before a
tap reaches the controller: a `BadgeTapped` carries the outcome, so the daemon translates
`fabnode.records.members.AccessDecision` into it (see docs/state-machine.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from fabnode.machine.actions import SetLeds
from fabnode.machine.state import JobSource, JobStatus, MemberRef, QueuedUpload


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
    inbox_file: str | None = None  # a file waits in the inbox: the session's member's tap starts it
    link_problem: str | None = None  # why the firmware cannot take a job now: a waiting upload stays

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
    """The control socket asks to run a file; the daemon has run preflight and chose the job's id.

    `prepared` is the daemon's preflight (the lines to stream); the controller only hands it on, in StartJob.
    """

    now: float
    job_id: str
    file: str
    prepared: object = field(default=None, compare=False, repr=False)
    link_problem: str | None = None  # why the firmware cannot take a job now (port closed, board resetting)
    asked_at: float | None = None  # when `print` was asked (a large file is prepared for minutes)
    source: JobSource = "cli"  # `fabnode print`, or a file from the inbox


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


ENDINGS = (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED)  # how the streamer can end a job


@dataclass(frozen=True, slots=True)
class JobEnded:
    """The streamer reports the job over; `failure` is a drivers.events FAILURE_* name when it failed."""

    now: float
    job_id: str
    outcome: JobStatus  # completed, cancelled or failed
    reason: str = ""
    failure: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in ENDINGS:
            raise ValueError(f"JobEnded.outcome: {self.outcome!r}, expected completed, cancelled or failed")
        object.__setattr__(self, "outcome", JobStatus(self.outcome))


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
    """`fabnode pause` on the control socket, or an API key's holder (`by`) pausing job `job_id`."""

    now: float
    by: MemberRef | None = None  # None: the control socket (a technician's shell): any job
    job_id: str | None = None  # the job the asker saw (None: whichever runs)


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """`fabnode resume` (or an API key's holder, `by`): the deliberate action that resumes a paused job."""

    now: float
    by: MemberRef | None = None
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """`fabnode cancel` on the control socket, or an API key's holder (`by`) cancelling job `job_id`."""

    now: float
    reason: str = "cancelled from the control socket"
    by: MemberRef | None = None
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class UploadReceived:
    """An upload passed preflight (or was found on disk at start-up); `denial`: why its owner may not use
    this machine (not trained, training expired), decided by the access module before it came here."""

    now: float
    upload: QueuedUpload
    denial: str | None = None
    link_problem: str | None = None  # why the firmware cannot take a job now (as JobRequested's)
    prepared: object = field(default=None, compare=False, repr=False)  # its preflight, for StartJob


@dataclass(frozen=True, slots=True)
class UploadChecked:
    """A waiting upload a tap released was preflighted again (CheckUpload): may it start as the tapping
    member's job (`problems` empty)? A Reply."""

    now: float
    upload_id: str
    member_id: int  # who tapped
    prepared: object = field(default=None, compare=False, repr=False)
    problems: tuple[str, ...] = ()
    link_problem: str | None = None


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


@dataclass(frozen=True, slots=True)
class StorageChanged:
    """The usage log can (problem None) or cannot record new sessions and jobs (a full disk, an error)."""

    now: float
    problem: str | None


@dataclass(frozen=True, slots=True)
class InboxChecked:
    """An inbox file a tap offered was preflighted: may it go on as a job (`problems` empty)? A Reply."""

    now: float
    tap: BadgeTapped
    file: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CalibrationRequested:
    """`fabnode calibrate esteps|pid|...` asks to send one command; `job_running`: the streamer's view."""

    now: float
    machine: str  # the machine's name, for the refusal
    job_running: bool = False


@dataclass(frozen=True, slots=True)
class WiringCheckRequested:
    """`fabnode calibrate relay|leds`: a technician switches the relay or sets the LEDs for a while."""

    now: float
    machine: str  # the machine's name, for the refusal
    relay: bool | None = None
    leds: SetLeds | None = None


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
    | StorageChanged
    | InboxChecked
    | CalibrationRequested
    | WiringCheckRequested
    | UploadReceived
    | UploadChecked
)
EVENT_TYPES: tuple[type, ...] = get_args(Event)
