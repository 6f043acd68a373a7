"""Events that the sans-I/O firmware protocols (Marlin, GRBL) hand back to whoever drives them.

Both protocols produce the same event types so that one streamer drives either. Line numbers in
events are 1-based line numbers of the job *file* (comment-only and blank lines included in the
count), so that "the last acknowledged line" points a technician at the right place in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class LineAcked:
    """The firmware acknowledged one job line: it was executed, or taken into its planner."""

    line_no: int  # 1-based line number in the job file
    acked_lines: int  # job lines that went on the wire and are acknowledged so far
    acked_bytes: int  # bytes of those lines as sent (with N/checksum framing), so far


@dataclass(frozen=True, slots=True)
class ResendRequested:
    """The firmware refused a line and asked for it again (Marlin `Resend: N`)."""

    line_number: int  # the wire's N number the firmware asked for
    reason: str


@dataclass(frozen=True, slots=True)
class Temperatures:
    """Temperatures reported by `ok T:...`, `M105` or `M155` auto-reports."""

    # heater name ("T", "T0", "B", "C", ...) -> (actual, target or None)
    readings: Mapping[str, tuple[float, float | None]]


@dataclass(frozen=True, slots=True)
class FirmwareBusy:
    """`echo:busy: processing` / `busy: paused for user`: alive, not done."""

    text: str


@dataclass(frozen=True, slots=True)
class FirmwareMessage:
    """Any other line from the firmware (echo:, //, settings, unrecognised) for logs and the console.

    `fault` is FAILURE_HALTED or FAILURE_THERMAL when the protocol classified the line as the firmware
    stopping (a kill, thermal protection) while no job streamed: the node acts on that, not on the text.
    """

    text: str
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The answer to a command sent with `send_command` (all lines up to and including `ok`/`error`)."""

    command: str
    lines: tuple[str, ...]
    ok: bool


@dataclass(frozen=True, slots=True)
class HostActionRequested:
    """The printer's own screen asked the host to act (`//action:pause|resume|cancel`)."""

    action: str  # "pause", "resume" or "cancel"


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A GRBL `<...>` status report."""

    state: str  # Idle, Run, Hold:0, Jog, Alarm, Door:1, Check, Home, Sleep
    machine_pos: tuple[float, ...] | None = None
    work_pos: tuple[float, ...] | None = None
    feed: float | None = None
    spindle: float | None = None
    planner_free: int | None = None  # Bf:<planner>,<rx>
    rx_free: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FirmwareReady:
    """The firmware greeted us (Marlin `start`, GRBL `Grbl 1.1h ['$' for help]`): it (re)started."""

    text: str


@dataclass(frozen=True, slots=True)
class AlarmRaised:
    """GRBL `ALARM:N`: the machine is locked until `$X` or a reset."""

    code: int
    meaning: str


@dataclass(frozen=True, slots=True)
class JobStateChanged:
    """The job moved to another state (see `JobState`)."""

    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class JobCompleted:
    """Every job line was acknowledged."""

    lines: int
    bytes: int
    resends: int


@dataclass(frozen=True, slots=True)
class JobCancelled:
    """The job was cancelled (by the host or the printer's screen); the safe-stop lines were acknowledged."""

    last_line_no: int
    reason: str


@dataclass(frozen=True, slots=True)
class JobFailed:
    """The job ended before all its lines ran; `kind` is one of the FAILURE_* names below."""

    kind: str
    reason: str  # human text, names what the firmware said
    last_line_no: int


FAILURE_HALTED = "halted"  # Error:Printer halted. kill() called!
FAILURE_THERMAL = "thermal"  # thermal runaway, MAXTEMP, MINTEMP
FAILURE_RESET = "reset"  # `start` / GRBL banner during a job
FAILURE_ALARM = "alarm"  # GRBL ALARM:N
FAILURE_ERROR = "error"  # GRBL error:N on a job line
FAILURE_NO_ANSWER = "no_answer"  # silence past the limit, even after pokes
FAILURE_PORT_LOST = "port_lost"  # raised by the link/streamer, not by the protocols


class JobStatus(StrEnum):
    """A job's status, one vocabulary from the streamer's report through the node's controller to the
    usage row and telemetry: running, paused or cancelling while it runs, then how it ended."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ABORTED = "aborted"  # cut short by the node itself (e-stop, firmware fault): the power was cut first


class JobState:
    """Names of the job's states as the protocols report them (the shared ones are JobStatus's)."""

    IDLE = "idle"
    RUNNING = JobStatus.RUNNING
    PAUSING = "pausing"
    PAUSED = JobStatus.PAUSED
    CANCELLING = JobStatus.CANCELLING
    COMPLETED = JobStatus.COMPLETED
    CANCELLED = JobStatus.CANCELLED
    FAILED = JobStatus.FAILED

    ENDED = frozenset({COMPLETED, CANCELLED, FAILED})


@dataclass(frozen=True, slots=True)
class LaserMode:
    """GRBL's laser mode (`$32`) as its `$$` settings answer showed it after a (re)start.

    Off (`$32=0`), a feed hold keeps the beam on: the node refuses jobs until a technician sets `$32=1`.
    """

    enabled: bool
    setting: str  # the line as GRBL printed it (`$32=1`), or why it is unknown (no `$32`, `error:N`)
    max_power: float | None = None  # `$30`: the S value of full laser power (None: not reported)


Event = (
    LineAcked
    | ResendRequested
    | Temperatures
    | FirmwareBusy
    | FirmwareMessage
    | CommandReply
    | HostActionRequested
    | StatusReport
    | FirmwareReady
    | AlarmRaised
    | JobStateChanged
    | JobCompleted
    | JobCancelled
    | JobFailed
    | LaserMode
)
