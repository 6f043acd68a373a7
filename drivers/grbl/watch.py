"""A stuck machine: GRBL that answers `?` but neither acknowledges a line nor moves (pure, time passed in)."""

from __future__ import annotations

import math


class ProgressWatch:
    """Time since the last sign of progress: an `ok`, or a status report with a new state or position."""

    def __init__(self, limit_s: float) -> None:
        """limit_s: this long without progress is a stuck machine (0: never)."""
        if not math.isfinite(limit_s) or limit_s < 0:
            raise ValueError(f"no_progress_s={limit_s}: must be a finite number of seconds >= 0 (0: off)")
        self.limit_s = limit_s
        self._since = 0.0
        self._seen: tuple[str, tuple[float, ...] | None] | None = None

    def reset(self, now: float) -> None:
        """A job starts (or resumes): count from now."""
        self._since = now
        self._seen = None

    def progressed(self, now: float) -> None:
        """A line was acknowledged."""
        self._since = now

    def saw(self, state: str, position: tuple[float, ...] | None, now: float) -> None:
        """A status report: progress if the state or the position changed since the last one."""
        if (state, position) != self._seen:
            self._seen = (state, position)
            self._since = now

    def stuck_for(self, now: float) -> float | None:
        """Seconds without progress once past the limit, else None."""
        idle = now - self._since
        return idle if self.limit_s > 0 and idle >= self.limit_s else None
