"""OctoPrint's virtual printer's line checks, as an option of the Marlin simulator (`virtual_printer`).

Written from OctoPrint's src/octoprint/plugins/virtual_printer/virtual.py (commit 744c835969d6,
`VirtualPrinter._processIncoming`, lines 354-471, and `_triggerResend`, lines 1311-1333), our own
code. What it does that Marlin 2.x does not, and what makes a host's resend logic storm:

- It never drops its incoming queue after a refused line: every line behind a bad one is read and
  refused in turn (Marlin flushes its RX buffer).
- It answers every line in order, one at a time (`ok` for a move once it is buffered): the answer
  to a line comes before the next line is read.
- A refused line gets `Error: <text>`, `Resend:<n>` (no space) and `ok`, in that order.
- Checksum first (lines 405-413): a line with `*` whose checksum is wrong asks for
  `current_line + 1`, where current_line counts every line whose checksum was right (refused ones
  too), and sets the last line to current_line. Text `Checksum mismatch`.
- Then the number (lines 426-431, 466-471): `N<k>` with k != last + 1 (a duplicate too) asks for
  last + 1 and keeps the last line. Text `expected line <last + 1> got <k>`.
- `N<k> ... M110` sets both counters to k (the line's own N) and is answered `ok` (lines 419-425).
- A numbered line without checksum and an unnumbered line with one are taken (no
  forceChecksum, the default).

Its `simulated_errors` (lines 433-456; default in plugins/virtual_printer/__init__.py, lines
88-93: 100 resend, 105 resend_with_timeout, 110 missing_lineno, 115 checksum_mismatch) are the
simulator's `virtual_errors` (simulators.marlin.firmware._virtual_error), each fired once here
(it re-arms them on every M110; a job sends one). Its `_processIncoming` thread answers each line
before it reads the next: the firmware model reads with a queue of one in this mode.
"""

from __future__ import annotations

import re

from simulators.marlin.lines import LineChecker, Verdict, marlin_checksum

_FIRST_N = re.compile(r"N(\d+)")


class VirtualPrinterChecker(LineChecker):
    """Keeps lastN and current_line as OctoPrint's virtual printer does and checks each line."""

    def __init__(self) -> None:
        super().__init__()
        self.current_line = 0

    def check(self, raw: str) -> Verdict:
        """Check one line (comment already stripped, non-empty)."""
        text = raw
        star = raw.rfind("*")
        if star >= 0:
            digits = raw[star + 1 :].strip()
            text = raw[:star]
            if not digits.isdigit() or int(digits) != marlin_checksum(text):
                self.last_n = self.current_line
                return Verdict(False, error="Checksum mismatch", kind="checksum")
            self.current_line += 1
        if not text.startswith("N"):
            return Verdict(True, command=text.strip())
        found = _FIRST_N.match(text)
        number = int(found.group(1)) if found else 0
        command = text.split(None, 1)[1].strip() if len(text.split(None, 1)) > 1 else ""
        if "M110" in text:
            self.last_n = self.current_line = number
            return Verdict(True, command=command, line_number=number)
        if number != self.last_n + 1:
            return Verdict(False, error=f"expected line {self.last_n + 1} got {number}", kind="line")
        self.last_n = number
        return Verdict(True, command=command, line_number=number)
