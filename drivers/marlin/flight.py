"""Lines on the wire that Marlin has not acknowledged yet, oldest first.

Marlin answers every line it takes with one `ok`, in the order it took them. An M105's answer is
`ok T:...`, never a bare `ok`, so a plain `ok` belongs to the oldest entry that is not an M105,
and `ok T:` to the oldest M105. A refused (numbered) line is removed when the host rewinds to
send it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class PendingCommand:
    """A manual command and the reply lines collected for it so far."""

    command: str
    lines: list[str] = field(default_factory=list)
    failed: bool = False


@dataclass(slots=True)
class Entry:
    """One line on the wire: numbered (n >= 0, a stream line) or unnumbered (n == -1)."""

    n: int
    size: int  # bytes as written, newline included
    m105: bool = False  # an M105: its answer is the unmistakable `ok T:...`
    command: PendingCommand | None = None  # set for manual commands
    text: str = ""  # what an unnumbered line says (numbered ones: see the stream's history)
    sent_at: float = 0.0  # when it was written


class InFlight:
    """FIFO of unacknowledged entries with their byte total."""

    def __init__(self) -> None:
        self._q: deque[Entry] = deque()
        self.bytes = 0
        self._m105 = 0
        self.queued = 0  # oldest entries known (ADVANCED_OK B) to sit in the command queue, not in RX
        self.taken_n = -1  # Marlin took (out of its RX buffer) every numbered line up to this one

    def __len__(self) -> int:
        return len(self._q)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._q)

    @property
    def m105_count(self) -> int:
        """M105s (pokes, polls, manual) still waiting for their `ok T:`."""
        return self._m105

    def push(self, entry: Entry) -> None:
        """Add a line just written."""
        self._q.append(entry)
        self.bytes += entry.size
        self._m105 += entry.m105

    def head(self) -> Entry | None:
        """The oldest entry."""
        return self._q[0] if self._q else None

    def peek(self, unnumbered_only: bool = False) -> Entry | None:
        """The oldest entry a plain `ok` can answer (not an M105; unnumbered if asked)."""
        for entry in self._q:
            if not entry.m105 and (entry.n < 0 or not unnumbered_only):
                return entry
        return None

    def pop(self, unnumbered_only: bool = False) -> Entry | None:
        """Remove the entry peek() names: one plain `ok` answered it."""
        entry = self.peek(unnumbered_only)
        if entry is not None:
            self._q.remove(entry)
            self._forget(entry)
            self.queued = max(0, self.queued - 1)
        return entry

    def pop_through_m105(self) -> list[Entry]:
        """Remove entries up to and including the oldest M105: Marlin ran all of them (`ok T:` came)."""
        if not self._m105:
            return []
        return self._pop_until(lambda entry: entry.m105)

    def drop_numbered_from(self, n: int) -> None:
        """Forget numbered entries >= n: Marlin refused them and they will be sent again."""
        self._drop(lambda entry: entry.n >= n)

    def drop_m105_below(self, n: int) -> None:
        """Forget numbered M105s before line n: Marlin took them (its `Resend:` asked for n)."""
        self._drop(lambda entry: entry.m105 and 0 <= entry.n < n)

    def drop_numbered_through(self, n: int) -> None:
        """Forget numbered entries <= n: Marlin said (ADVANCED_OK `ok N<n>`) it ran them."""
        self._drop(lambda entry: 0 <= entry.n <= n)

    def rx_bytes(self) -> int:
        """Bytes that may still sit in Marlin's RX buffer (those it has taken into its queue do not).

        Every unanswered M105 counts: the host sends no second one while one waits (a poke then
        sends lines again in place of those on the wire), so lost answers cannot overfill it.
        """
        out_of_rx = 0
        for i, entry in enumerate(self._q):
            if i < self.queued or 0 <= entry.n <= self.taken_n:
                out_of_rx += entry.size
        return self.bytes - out_of_rx

    def clear(self) -> list[Entry]:
        """Forget everything (the firmware reset or halted); returns what was there."""
        entries = list(self._q)
        self._q.clear()
        self.bytes = 0
        self._m105 = 0
        self.queued = 0
        return entries

    def _drop(self, doomed: Callable[[Entry], bool]) -> None:
        if not any(doomed(entry) for entry in self._q):
            return
        for entry in self._q:
            if doomed(entry):
                self._forget(entry)
        self._q = deque(entry for entry in self._q if not doomed(entry))
        self.queued = min(self.queued, len(self._q))

    def _pop_until(self, last: Callable[[Entry], bool]) -> list[Entry]:
        popped: list[Entry] = []
        while self._q:
            entry = self._q.popleft()
            self._forget(entry)
            popped.append(entry)
            if last(entry):
                break
        self.queued = max(0, self.queued - len(popped))
        return popped

    def _forget(self, entry: Entry) -> None:
        self.bytes -= entry.size
        self._m105 -= entry.m105
