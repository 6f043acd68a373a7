"""Feed hold, safety-door hold and resume of GrblHost (a mixin: GrblHost keeps the state it declares).

A feed hold (`!`) "does not disable the spindle or coolant. Only motion" (gnea/grbl
doc/markdown/commands.md); GRBL switches the laser off during a hold only in laser mode (`$32=1`,
config.h DISABLE_LASER_DURING_HOLD). The safety door (0x84) de-energizes the spindle/laser in either
mode, so an open lid is held with door_hold(), never with pause() alone.
"""

from __future__ import annotations

from drivers.events import JobState
from drivers.grbl.watch import ProgressWatch

FEED_HOLD = b"!"
CYCLE_START = b"~"
SAFETY_DOOR = b"\x84"
ACTIVE = frozenset({JobState.RUNNING, JobState.PAUSING, JobState.PAUSED, JobState.CANCELLING})
# GRBL 1.1 door sub-states: 0 closed and ready to resume, 1 stopped with the door still open,
# 2 decelerating after the door opened, 3 closed and restoring (spindle back on) before Run.
_DOOR_HELD = frozenset({"Door:0", "Door:1"})


class HoldControls:
    """pause(), door_hold() and resume() of GrblHost."""

    _state: str
    _now: float
    _realtime: bytearray
    _hold_on_wire: bool  # our `!`/0x84 has left; status reports after it tell the hold state
    _resume_check: bool  # `~` is ignored during Hold:1 and an open door: repeat it until GRBL runs
    _door: bool  # the hold is a safety-door hold: PAUSED at Door:0/1, not Hold:0
    _next_status_at: float | None
    _watch: ProgressWatch  # the stuck-machine watch: a hold is no lack of progress

    def _set_state(self, state: str, reason: str = "") -> None:
        raise NotImplementedError

    def _hold_complete(self, state: str) -> bool:
        """The status report's state shows our hold (feed or door) done."""
        return state in _DOOR_HELD if self._door else state == "Hold:0"

    @staticmethod
    def resume_ignored(state: str) -> bool:
        """GRBL ignores `~` in this state: still decelerating, or its door input still reads open."""
        return state.startswith("Hold") or state in ("Door:1", "Door:2")

    def pause(self, now: float) -> None:
        """Feed hold (`!`) and stop sending job lines; PAUSED once GRBL reports Hold:0.

        A feed hold keeps the beam on when `$32=0`: for an open lid use door_hold().
        """
        self._now = now
        if self._state != JobState.RUNNING:
            return
        self._realtime += FEED_HOLD
        self._hold_on_wire = self._resume_check = self._door = False
        self._next_status_at = now  # learn soon that the hold completed
        self._set_state(JobState.PAUSING)

    def door_hold(self, now: float) -> None:
        """Lid open: GRBL's safety door (0x84) instead of `!`; PAUSED once GRBL reports Door:0 or Door:1.

        The door "disables the spindle and coolant" whatever `$32` says, and supersedes a feed hold
        already in place (gnea/grbl doc/markdown/commands.md, `0x84`); a plain `!` does not switch the
        beam off with `$32=0`. Resume with resume() once the lid is closed: `~` leaves Door:0 through
        Door:3 (GRBL re-energizes the spindle, waiting SAFETY_DOOR_SPINDLE_DELAY when `$32=0`) to Run;
        GRBL ignores `~` while its own door input still reads open (Door:1).
        """
        self._now = now
        self._realtime += SAFETY_DOOR
        self._door = True  # outside a job too: GRBL holds in Door:0 until resume() sends `~`
        if self._state in (JobState.RUNNING, JobState.PAUSING):
            self._hold_on_wire = self._resume_check = False
            self._next_status_at = now
            self._set_state(JobState.PAUSING, "safety door")

    def resume(self, now: float) -> None:
        """Cycle start (`~`) and carry on sending."""
        self._now = now
        if self._state not in (JobState.PAUSING, JobState.PAUSED):
            if self._door and self._state not in ACTIVE:
                self._realtime += CYCLE_START  # a door hold outside a job
                self._door = False
            return
        self._realtime += CYCLE_START
        self._resume_check, self._door = True, False
        self._watch.reset(now)  # the time held does not count as a stuck machine
        self._set_state(JobState.RUNNING)
