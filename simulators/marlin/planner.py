"""Marlin's planner as the simulator models it: only when each queued block finishes moving."""

from __future__ import annotations

from collections import deque


class Planner:
    """Marlin's block ring buffer: one slot always stays empty, so BLOCK_BUFFER_SIZE-1 moves fit."""

    def __init__(self, blocks: int) -> None:
        self.capacity = blocks - 1
        self._ends: deque[float] = deque()  # when each planned block finishes

    def retire(self, now: float) -> None:
        """Forget blocks that have finished moving."""
        while self._ends and self._ends[0] <= now:
            self._ends.popleft()

    def moves_free(self, now: float) -> int:
        """planner.moves_free(): blocks that can still be added."""
        self.retire(now)
        return self.capacity - len(self._ends)

    def add(self, now: float, duration: float) -> None:
        """Plan one block after the ones already planned."""
        start = self._ends[-1] if self._ends and self._ends[-1] > now else now
        self._ends.append(start + duration)

    def next_free_at(self) -> float:
        """When the oldest block finishes."""
        return self._ends[0]

    def idle_at(self, now: float) -> float:
        """When every planned block has finished."""
        return self._ends[-1] if self._ends else now

    def clear(self) -> None:
        """Drop every block (quickstop, kill, reset)."""
        self._ends.clear()
