"""Which of Marlin's `Resend: n` requests to answer.

After one bad line Marlin refuses every later line, each with its own request for the same n,
until n arrives again (fewer when it flushed its RX buffer first). The first request is answered
by sending again from n; as many copies as lines were sent after n's latest sending are stale; a
request beyond those means the line sent again was refused too, and is answered again.

Firmware that names the line it refused (`Error: expected line 41 got 42`: OctoPrint's virtual
printer, Repetier) keeps its RX buffer and answers every line in order, so each request is
attributed to the transmission it answers. What is still on the wire behind it decides: the
firmware will take from it every line that comes in order from the one it asks for; only if that
run stops short of what the host has sent does the host rewind, to where it stops. A line the
firmware took, sent again, is refused and its request changes nothing: one fault costs one rewind.
"""

from __future__ import annotations

from collections import deque

from drivers.marlin.stream import Stream

# Transmissions remembered for attribution: far more than lines fit in any RX window.
_SENT_KEPT = 1024


class ResendPolicy:
    """Tells new resend requests from stale copies."""

    def __init__(self) -> None:
        self.answered = -1  # the line number of the last request answered
        self.stale = 0  # copies of that request still to come: refusals of lines sent before
        self.count = 0  # requests answered
        self.repeats = 0  # requests answered in a row for the same line (`answered`)
        self.names_lines = False  # the firmware said which line it refused: attribute exactly
        self._sent: deque[int] = deque(maxlen=_SENT_KEPT)  # lines written, not answered (-1: unnumbered)

    def transmitted(self, n: int) -> None:
        """A line was written (n: its number, -1 if unnumbered)."""
        self._sent.append(n)

    def ok_came(self, after_resend: bool) -> None:
        """An `ok` answered the oldest line written and not yet answered (the `ok` that follows a
        `Resend:` answers the line that request did)."""
        if self._sent and not after_resend:
            self._sent.popleft()

    def decide(self, asked: int, stream: Stream, refused: int | None = None) -> int | None:
        """The line number to send again from, or None when the request is stale or not ours.

        refused: the line number the firmware's error named as refused, if it named one.
        """
        self._pop_answered(refused)
        self.names_lines |= refused is not None
        if stream.acked_n < 0:
            # Only M110 N0 is numbered on the wire and Marlin takes M110 whatever its number: a
            # request for line 1 means it took it; any other number means it refused it.
            if asked == 1 or self._is_stale(asked):
                return None
            return self._answer(0, asked, stream)
        if asked == 0 or asked > len(stream.frames):
            return None
        if self.names_lines:
            resume = self._lands_until(asked)
            return None if resume == stream.next_n else self._answer(resume, asked, stream)
        if asked < self.answered or self._is_stale(asked):
            return None
        return self._answer(asked, asked, stream)

    def handshake_done(self) -> None:
        """M110 N0 was taken: requests from now on use this job's numbers."""
        self.answered = -1
        self.stale = 0

    def episode_over(self) -> None:
        """The host waited until every stale line was answered: no copy of a request is to come."""
        self.stale = 0

    def all_read(self) -> None:
        """Marlin has read all that was sent (a long silence): any further request is a real one."""
        self.stale = 0
        self._sent.clear()

    def _pop_answered(self, refused: int | None) -> None:
        """Forget the transmission this request answers (lines before it that got no answer too)."""
        if refused is None or refused not in self._sent:
            self.ok_came(after_resend=False)
            return
        while self._sent and self._sent.popleft() != refused:
            pass

    def _lands_until(self, asked: int) -> int:
        """The line the firmware will ask for once it read what is on the wire, taking lines in order."""
        expected = asked
        for n in self._sent:
            expected += n == expected
        return expected

    def _is_stale(self, asked: int) -> bool:
        if asked == self.answered and self.stale > 0:
            self.stale -= 1
            return True
        return False

    def _answer(self, n: int, asked: int, stream: Stream) -> int:
        last_tx = stream.frame_tx[n] if n < len(stream.frame_tx) else -1
        self.stale = stream.tx - 1 - last_tx if last_tx >= 0 else 0
        self.repeats = self.repeats + 1 if asked == self.answered else 1
        self.answered = asked
        self.count += 1
        return n
