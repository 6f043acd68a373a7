"""After a line error: one line on the wire at a time, until the link has been clean for a while.

Marlin reads a refused line's RX buffer empty (GCodeQueue::gcode_line_error), so the line that was
arriving at that moment is cut, and a tail that begins at its command letter runs as a command of
its own, then again when the line is sent again. No layout of the line prevents it: the tail from
the command letter is the very text Marlin runs for the whole line. Only a line that never shares
the wire with a line Marlin may still refuse is never cut, and that costs a round trip per line.
So the host pipelines on a clean link and, once it has seen the link corrupt a line, sends one
line at a time until `clean_lines` lines in a row were taken without a refusal: noise on a serial
link comes from a cable or a noisy neighbour, and what corrupted one line will corrupt more.

Sans-I/O: the host says what happened; `active` says whether to keep to one line on the wire.
"""

from __future__ import annotations


class Caution:
    """Counts the lines taken since the last refusal that cut the RX buffer."""

    def __init__(self, clean_lines: int) -> None:
        if clean_lines < 0:
            raise ValueError(f"clean_lines={clean_lines}: must be 0 (never) or more")
        self.clean_lines = clean_lines
        self.active = False
        self._clean = 0

    def refused(self) -> None:
        """Marlin refused a line and flushed its RX buffer: one line at a time from now on."""
        if self.clean_lines == 0:
            return
        self.active = True
        self._clean = 0

    def taken(self, lines: int) -> None:
        """Marlin acknowledged this many more numbered lines."""
        if not self.active or lines <= 0:
            return
        self._clean += lines
        if self._clean >= self.clean_lines:
            self.active = False
