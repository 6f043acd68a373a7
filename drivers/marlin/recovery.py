"""After Marlin refused a line: send nothing numbered until every stale line on the wire is answered.

On an error Marlin flushes its RX buffer, so the line that was arriving at that moment is cut: its
tail is read as a line of its own, without number or checksum (GCodeQueue::gcode_line_error, then
get_serial_commands), and every later numbered line is refused, each refusal flushing again. A
line sent again while stale lines are still arriving would itself be cut by one of those flushes,
and a cut that leaves its command whole (`G1X10*72`) runs it once unnumbered and once more when it
is sent again. So after the first `Resend:` the host holds its numbered lines until each stale
line got its answer (a refusal, or the answer to its tail), or until the link has been quiet for
`quiet_s` (a flush can swallow a whole line, which then gets no answer at all).

Sans-I/O: the host tells it what it sees, with `now`; it says whether to hold and until when.
"""

from __future__ import annotations


class Recovery:
    """One episode at a time: from the first refusal until the stale lines are all answered."""

    def __init__(self, quiet_s: float) -> None:
        if not quiet_s > 0:
            raise ValueError(f"quiet_s={quiet_s}: must be positive")
        self.quiet_s = quiet_s
        self.active = False
        self.episodes = 0  # refusals that started an episode in this job
        self.tails_run = 0  # `ok`s in an episode no line can explain: a cut tail ran as a command
        self._stale = 0  # numbered lines on the wire when the episode began (the refused one included)
        self._answered = 0
        self._quiet_from = 0.0

    def begin(self, stale: int, now: float) -> None:
        """Marlin refused a line (its first `Resend:` of an episode); `stale` lines were on the wire."""
        if not self.active:
            self.active = True
            self.episodes += 1
            self._stale = max(stale, 1)
            self._answered = 0
        self.answered(now)

    def answered(self, now: float) -> None:
        """One stale line got its answer (a refusal, or `Unknown command` / `ok` for its tail)."""
        if self.active:
            self._answered += 1
            self.heard(now)

    def tail_ran(self, now: float) -> None:
        """An `ok` that answers no line of ours: a tail that began at a command ran."""
        self.tails_run += 1
        self.answered(now)

    def heard(self, now: float) -> None:
        """Any line came: the link is not quiet yet."""
        self._quiet_from = now

    def holding(self, now: float, queue_busy: bool) -> bool:
        """True while numbered lines must wait; ends the episode once they need not.

        queue_busy: lines Marlin took still wait for their `ok`: it reads its RX buffer only as
        its queue frees, so stale lines may still wait there however quiet the link is.
        """
        if not self.active:
            return False
        if self._answered >= self._stale or (not queue_busy and now >= self._quiet_from + self.quiet_s):
            self.active = False
        return self.active

    def abort(self) -> None:
        """End the hold: the firmware names the lines it refuses (it keeps its RX buffer, nothing
        is cut), or the link was silent long enough for a poke."""
        self.active = False

    def release_at(self) -> float | None:
        """When holding() may end at the latest (None: not holding)."""
        return self._quiet_from + self.quiet_s if self.active else None

    def reset(self) -> None:
        """A new job (or the firmware restarted): no episode."""
        self.active = False
        self.episodes = 0
        self.tails_run = 0
