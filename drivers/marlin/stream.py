"""The numbered lines of one Marlin job: history for resends, the file's cursor, what was acknowledged.

Line n of the stream is `N<n> ...`: 0 is M110 N0, then job lines, host M105 pokes and, after a
cancel, the safe-stop lines. Everything is indexed by n, so a resend or an `ok` costs O(1) however
long the file (a 232k-line print keeps ~60 bytes of history per line).
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence

from drivers.events import LineAcked
from drivers.gcode_text import compact_for_wire
from drivers.marlin import wire
from drivers.marlin.flight import Entry


class Stream:
    """One job's numbered lines."""

    def __init__(self, lines: Sequence[str]) -> None:
        self._lines = lines
        self._cursor = 0
        self.upcoming: tuple[int, str] | None = None  # next job command not yet framed: (file line, text)
        self._advance()
        # History by line number: the frame as sent, its file line (0: not a file line) and the
        # counter of its latest transmission (to tell stale resend requests from new ones).
        self.frames: list[bytes] = [wire.frame(0, "M110 N0")]
        self._file_lines = array("I", [0])
        self.frame_tx = array("q", [-1])
        self._m105: set[int] = set()
        self._staged: tuple[int, bytes] | None = None
        self.safe_pending: deque[str] = deque()
        self.next_n = 0  # the next line number to write (below len(frames): a resend)
        self.tx = 0  # numbered transmissions so far
        self.live = False
        self.acked_n = -1
        self.needed_n = 0  # the last line that must be acknowledged (M110, job and safe-stop lines)
        self.barrier_n: int | None = None  # the M105 after the last line: its `ok T:` proves them all
        self.acked_lines = 0
        self.acked_bytes = 0
        self.last_file_line = 0

    @property
    def resending(self) -> bool:
        """Lines refused by Marlin wait to be written again."""
        return self.next_n < len(self.frames)

    @property
    def all_acked(self) -> bool:
        """Every line written so far is acknowledged, host pokes aside (their answers may be lost)."""
        return self.acked_n >= self.needed_n

    def candidate(self, job_lines: bool, safe_lines: bool) -> bytes | None:
        """The next frame to write: a resend, else a new job (or safe-stop) line when allowed, else
        once every line is framed the closing M105."""
        frame = self._candidate(job_lines, safe_lines)
        if frame is not None or not self.live or self.acked_n < 0 or self.barrier_n is not None:
            return frame
        if (safe_lines and self.safe_pending) or (not safe_lines and self.upcoming is not None):
            return None
        self.add_barrier()
        return self._candidate(False, False)

    def _candidate(self, job_lines: bool, safe_lines: bool) -> bytes | None:
        n = self.next_n
        if not self.live:
            return None
        if n < len(self.frames):
            return self.frames[n]
        if self.acked_n < 0:
            return None  # job lines wait until Marlin took M110 N0
        if job_lines and self.upcoming is not None:
            command = self.upcoming[1]
        elif safe_lines and self.safe_pending:
            command = self.safe_pending[0]
        else:
            return None
        if self._staged is None or self._staged[0] != n:
            self._staged = (n, wire.frame(n, command))
        return self._staged[1]

    def transmit(self, data: bytes) -> Entry:
        """Account for the frame candidate() gave being written; returns its in-flight entry."""
        n = self.next_n
        if n == len(self.frames):
            self.frames.append(data)
            if self.upcoming is not None and not self.safe_pending:
                self._file_lines.append(self.upcoming[0])
                self._advance()
            else:
                self.safe_pending.popleft()
                self._file_lines.append(0)
            self.frame_tx.append(self.tx)
            self._staged = None
            self.needed_n = n
        else:
            self.frame_tx[n] = self.tx
        entry = Entry(n, len(data), m105=n in self._m105)
        self.tx += 1
        self.next_n = n + 1
        return entry

    def append_m105(self) -> int:
        """Put a numbered M105 next in line (job lines wait behind it); returns its number."""
        n = len(self.frames)
        assert self.next_n == n
        self.frames.append(wire.frame(n, "M105"))
        self._file_lines.append(0)
        self.frame_tx.append(-1)
        self._m105.add(n)
        self._staged = None
        return n

    def is_m105(self, n: int) -> bool:
        """Line n is one of the host's numbered M105s (pokes, polls, the closing one)."""
        return n in self._m105

    def add_barrier(self) -> None:
        """Every line is framed: end with a numbered M105 (unless one already ends the stream).

        Marlin takes it only after every earlier line and answers it with `ok T:`, which no
        other line earns: so a stray `ok` (from a line noise turned into an unnumbered one)
        can never complete a job whose last lines did not run.
        """
        if self.barrier_n is not None or self.resending:
            return
        last = len(self.frames) - 1
        self.barrier_n = last if last in self._m105 and last > self.needed_n else self.append_m105()
        self.needed_n = self.barrier_n

    def renew_barrier(self) -> None:
        """Marlin took the closing M105 but its answer was lost: end with a new one."""
        if self.barrier_n is not None and not self.resending:
            self.barrier_n = self.needed_n = self.append_m105()

    def command_of(self, n: int) -> str:
        """The command of numbered line n, without its number and checksum."""
        text = self.frames[n].decode("ascii")
        return text[text.index(" ") + 1 : text.rindex("*")]

    def file_line_of(self, n: int) -> int:
        """The job file's line number of numbered line n (0: a line of the host's own)."""
        return self._file_lines[n] if 0 <= n < len(self._file_lines) else 0

    def entry_for(self, n: int) -> Entry:
        """An in-flight entry for line n without a new transmission (Marlin took an earlier one)."""
        return Entry(n, len(self.frames[n]), m105=n in self._m105)

    def stop_job(self, safe_stop: Sequence[str]) -> None:
        """Cancel: no more job lines; refused ones are forgotten; the safe-stop lines come next."""
        self.upcoming = None
        keep = max(self.next_n, 1)  # M110 N0 stays: numbering needs it
        del self.frames[keep:]
        del self._file_lines[keep:]
        del self.frame_tx[keep:]
        self._m105 = {n for n in self._m105 if n < keep}
        self._staged = None
        self.barrier_n = None
        self.safe_pending = deque(safe_stop)
        self.needed_n = min(self.needed_n, keep - 1)

    def end(self) -> None:
        """The job ended: nothing more is written."""
        self.live = False
        self.upcoming = None
        self.safe_pending.clear()

    def ack_through(self, n: int) -> list[LineAcked]:
        """Marlin ran every line up to n (it runs them in number order): LineAcked per job line."""
        events: list[LineAcked] = []
        for k in range(self.acked_n + 1, n + 1):
            file_line = self._file_lines[k]
            if file_line:
                self.acked_lines += 1
                self.acked_bytes += len(self.frames[k])
                self.last_file_line = file_line
                events.append(LineAcked(file_line, self.acked_lines, self.acked_bytes))
        self.acked_n = max(self.acked_n, n)
        return events

    def _advance(self) -> None:
        """Find the next non-blank job command (blank and comment-only lines still count as lines)."""
        lines = self._lines
        while self._cursor < len(lines):
            self._cursor += 1
            # compact: more lines fit Marlin's RX window (the parser reads `G1X10` as `G1 X10.000`)
            command = compact_for_wire(lines[self._cursor - 1])
            if command:
                self.upcoming = (self._cursor, command)
                return
        self.upcoming = None
