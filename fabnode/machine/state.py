"""The machine's state and what the controller holds: states, members, sessions, jobs, settings. Pure data.

Plain frozen data, no behaviour and no I/O (see fabnode.machine.controller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from drivers.events import JobStatus  # the one job vocabulary, from the streamer to the usage row
from fabnode.machine.profile import LASER, PRINTER

__all__ = ["LAB_OWNER", "MEMBER", "TECHNICIAN", "ControllerSettings", "Job", "JobSource", "JobStatus",
           "MemberRef", "QueuedUpload", "Role", "Session", "State"]  # fmt: skip


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
JobSource = Literal["cli", "inbox", "upload"]  # how a job's file came (the jobs row's `source`)
LAB_OWNER = "lab"  # `uploaded_by` of an upload made with the lab key


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


@dataclass(frozen=True, slots=True)
class Job:
    """The job the controller started; `status` (running, paused, cancelling, then how it ended)."""

    id: str
    file: str
    status: JobStatus
    member_id: int
    is_maintenance: bool
    started_at: float
    pause_reason: str | None = None
    source: JobSource = "cli"
    uploaded_by: str | None = None  # an upload's key owner (a member's name, or "lab"); local only


@dataclass(frozen=True, slots=True)
class QueuedUpload:
    """An upload waiting in the node's queue for its member's tap (or, the lab key's, any trained member's).

    `owner` None: made with the lab key. Times are monotonic seconds. No preflight is held while it
    waits (a large file's analysis is megabytes): the tap that releases it has it checked again.
    """

    id: str
    name: str
    owner: MemberRef | None
    print_now: bool
    expires_at: float  # [web] upload_expiry_h after it arrived: then it moves to stale/
    claim_until: float | None = None  # a lab upload is offered to taps until then ([web] claim_window_min)

    @property
    def deadline(self) -> float:
        """When it leaves the queue for stale/ if no tap started it."""
        return self.expires_at if self.claim_until is None else min(self.expires_at, self.claim_until)

    @property
    def uploaded_by(self) -> str:
        """Who the job's row names: the key owner's name, or "lab"."""
        return LAB_OWNER if self.owner is None else self.owner.name


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSettings:
    """What the controller needs from the config; every duration in seconds, None means never.

    The options the config has carry no default here: the daemon builds these settings from the config
    only (fabnode.node.reload.controller_settings), so each has one default, the config's.
    """

    kind: str  # fabnode.machine.profile.PRINTER or LASER
    idle_timeout_s: float | None  # UNLOCKED with no job nor activity this long ends the session
    idle_warning_s: float  # warn (buzzer, blinking LED) this long before the idle timeout; 0: none
    cooldown_max_s: float  # COOLDOWN never keeps the relay on longer than this
    cooldown_hotend_below_c: float  # printer: the relay goes off once the hotend reads below this
    fume_runon_s: float  # laser: the fume extraction runs on this long after the session
    host_lost_relay_s: float  # the relay's limit in a COOLDOWN entered because the port was lost
    # The controller's own (no config option):
    temperature_max_age_s: float = 10.0  # a hotend reading older than this does not end a cooldown
    pause_max_s: float | None = 1800.0  # a job paused this long is cancelled, so power is not held forever
    signal_s: float = 2.0  # how long the red LED shows a refused tap before the LEDs return to the state's
    fault_failures: frozenset[str] = frozenset({"halted", "thermal"})  # JobEnded failures that mean FAULT
    # A job that ended because the host lost the firmware's port (USB unplugged): the firmware may still
    # heat and nothing can tell it to stop, so the session ends (COOLDOWN) and the relay goes off after
    # host_lost_relay_s at most (sooner once the port is back and the hotend reads cool).
    host_lost_failures: frozenset[str] = frozenset({"port_lost"})

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
