"""A hybrid logical clock: wall-clock milliseconds, a counter for events within one millisecond (or
while the wall clock lags behind a remote node's), and the node's id to break the last ties.

Pure: the caller passes the wall clock in, so ordering is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_WALL_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: beyond it a clock is broken, not early
MAX_COUNTER = 2**31 - 1
MAX_NODE = 120  # characters: `<lab>.<machine>` as the broker users are
# A remote clock this far ahead of ours is not taken in: one bad node must not drag the lab's
# clocks years into the future (after which no local change could ever win).
MAX_DRIFT_MS = 24 * 3600 * 1000


class ClockError(ValueError):
    """A clock value out of range; the message names the part."""


@dataclass(frozen=True, slots=True, order=True)
class Hlc:
    """One timestamp, totally ordered by (wall_ms, counter, node)."""

    wall_ms: int
    counter: int
    node: str

    def __post_init__(self) -> None:
        parts = (("wall_ms", self.wall_ms, MAX_WALL_MS), ("counter", self.counter, MAX_COUNTER))
        for name, value, top in parts:
            if type(value) is not int or not 0 <= value <= top:
                raise ClockError(f"hlc {name} {value!r}: expected an integer from 0 to {top}")
        if (not isinstance(self.node, str) or not 0 < len(self.node) <= MAX_NODE
                or not self.node.isprintable() or not self.node.isascii()):  # fmt: skip
            raise ClockError(f"hlc node {self.node!r}: expected 1 to {MAX_NODE} printable ASCII characters")

    def text(self) -> str:
        """A sortable text form (for logs and digests): zero-padded wall, counter, node."""
        return f"{self.wall_ms:015d}.{self.counter:010d}.{self.node}"


class HybridClock:
    """One node's clock: `now()` stamps a local change, `observe()` takes in a remote stamp."""

    def __init__(self, node: str, last: Hlc | None = None) -> None:
        Hlc(0, 0, node)  # checks the node id
        self.node = node
        self._wall = last.wall_ms if last else 0
        self._counter = last.counter if last else 0

    @property
    def last(self) -> Hlc:
        """The latest stamp this clock issued or observed."""
        return Hlc(self._wall, self._counter, self.node)

    def now(self, wall_ms: int) -> Hlc:
        """A stamp later than every stamp this clock has issued or observed."""
        wall_ms = _checked_wall(wall_ms)
        if wall_ms > self._wall:
            self._wall, self._counter = wall_ms, 0
        else:
            self._bump()
        return Hlc(self._wall, self._counter, self.node)

    def observe(self, remote: Hlc, wall_ms: int) -> None:
        """Take in a remote stamp so that the next `now()` is later than it (unless it is absurdly far
        ahead of our wall clock: see MAX_DRIFT_MS)."""
        wall_ms = _checked_wall(wall_ms)
        if remote.wall_ms > wall_ms + MAX_DRIFT_MS:
            return
        if remote.wall_ms > self._wall:
            self._wall, self._counter = remote.wall_ms, remote.counter
        elif remote.wall_ms == self._wall and remote.counter > self._counter:
            self._counter = remote.counter

    def _bump(self) -> None:
        if self._counter >= MAX_COUNTER:  # two billion stamps in one millisecond: move the wall on
            self._wall, self._counter = self._wall + 1, 0
        else:
            self._counter += 1


def _checked_wall(wall_ms: int) -> int:
    if type(wall_ms) is not int or not 0 <= wall_ms <= MAX_WALL_MS:
        raise ClockError(f"wall clock {wall_ms!r} ms: expected an integer from 0 to {MAX_WALL_MS}")
    return wall_ms
