"""The Marlin job's state machine: every transition in one table (the state diagram is this table).

Triggers: start, pause, drained (in-flight lines acknowledged while pausing), resume, cancel,
stopped (safe-stop lines acknowledged), finish (every job line acknowledged), fail.
"""

from __future__ import annotations

from drivers.events import JobState

_ACTIVE = (JobState.RUNNING, JobState.PAUSING, JobState.PAUSED)

TRANSITIONS: dict[tuple[str, str], str] = {
    **{(state, "start"): JobState.RUNNING for state in (JobState.IDLE, *JobState.ENDED)},
    (JobState.RUNNING, "pause"): JobState.PAUSING,
    (JobState.PAUSING, "pause"): JobState.PAUSING,
    (JobState.PAUSED, "pause"): JobState.PAUSED,
    (JobState.PAUSING, "drained"): JobState.PAUSED,
    **{(state, "resume"): JobState.RUNNING for state in _ACTIVE},
    **{(state, "cancel"): JobState.CANCELLING for state in _ACTIVE},
    (JobState.CANCELLING, "stopped"): JobState.CANCELLED,
    (JobState.RUNNING, "finish"): JobState.COMPLETED,
    (JobState.PAUSING, "finish"): JobState.COMPLETED,
    **{(state, "fail"): JobState.FAILED for state in (*_ACTIVE, JobState.CANCELLING)},
}

ACTIVE_STATES = frozenset({*_ACTIVE, JobState.CANCELLING})


class JobStateError(ValueError):
    """A trigger that makes no sense in the job's current state (e.g. pause while idle)."""


def next_state(state: str, trigger: str) -> str:
    """The state after `trigger`; JobStateError naming both when the table has no such transition."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise JobStateError(f"cannot {trigger} a Marlin job in state {state!r}") from None


def allowed(state: str, trigger: str) -> bool:
    """Whether the table has a transition for this pair."""
    return (state, trigger) in TRANSITIONS
