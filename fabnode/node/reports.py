"""What the adapters report, as the controller's events: GPIO inputs and the firmware's job and
temperature reports. Translation only: the decisions are the controller's (fabnode.machine.controller)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from drivers import events as fw
from fabnode.machine.events import (
    ActivitySeen,
    EStopPressed,
    EStopReleased,
    Event,
    JobPaused,
    JobResumed,
    LidClosed,
    LidOpened,
    TemperatureReported,
)

_INPUTS: dict[tuple[str, bool], Callable[[float], Event]] = {
    ("estop", True): EStopPressed, ("estop", False): EStopReleased,
    ("lid", True): LidOpened, ("lid", False): LidClosed,
    ("busy", True): lambda now: ActivitySeen(now, "current sense"),
}  # fmt: skip
_HEATERS = {"T": "hotend", "T0": "hotend", "B": "bed", "C": "chamber"}
Readings = Mapping[str, tuple[float, float | None]]


def input_event(name: str, active: bool) -> Callable[[float], Event] | None:
    """The event a debounced GPIO input change makes (built with the controller thread's clock), if any."""
    return _INPUTS.get((name, active))


def job_state_event(state: str, reason: str, job_id: str, now: float) -> JobPaused | JobResumed | None:
    """The machine paused or resumed the job itself (the protocol's JobStateChanged)."""
    if state == fw.JobStatus.PAUSED:
        return JobPaused(now, job_id, reason)
    if state == fw.JobStatus.RUNNING:
        return JobResumed(now, job_id)
    return None


def temperatures(readings: Readings, shown: dict[str, dict[str, float | None]],
                 now: float) -> TemperatureReported | None:  # fmt: skip
    """Keep the heaters' readings for `fabnode status`; the hotend's goes to the controller (cooldown)."""
    for key, (actual, target) in readings.items():
        if key in _HEATERS:
            shown[_HEATERS[key]] = {"actual": actual, "target": target}
    hotend = readings.get("T") or readings.get("T0")
    return TemperatureReported(now, hotend[0]) if hotend is not None else None
