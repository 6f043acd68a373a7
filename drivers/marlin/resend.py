"""Which of Marlin's `Resend: n` requests to answer.

After one bad line Marlin refuses every later line, each with its own request for the same n,
until n arrives again (fewer when it flushed its RX buffer first). The first request is answered
by sending again from n; as many copies as lines were sent after n's latest sending are stale; a
request beyond those means the line sent again was refused too, and is answered again.
"""

from __future__ import annotations

from drivers.marlin.stream import Stream


class ResendPolicy:
    """Tells new resend requests from stale copies."""

    def __init__(self) -> None:
        self.answered = -1  # the line number of the last request answered
        self.stale = 0  # copies of that request still to come: refusals of lines sent before
        self.count = 0  # requests answered
        self.repeats = 0  # requests answered in a row for the same line (`answered`)

    def decide(self, asked: int, stream: Stream) -> int | None:
        """The line number to send again from, or None when the request is stale or not ours."""
        if stream.acked_n < 0:
            # Only M110 N0 is numbered on the wire and Marlin takes M110 whatever its number: a
            # request for line 1 means it took it; any other number means it refused it.
            if asked == 1 or self._is_stale(asked):
                return None
            return self._answer(0, asked, stream)
        if asked < self.answered or asked == 0 or asked > len(stream.frames) or self._is_stale(asked):
            return None
        return self._answer(asked, asked, stream)

    def handshake_done(self) -> None:
        """M110 N0 was taken: requests from now on use this job's numbers."""
        self.answered = -1
        self.stale = 0

    def all_read(self) -> None:
        """Marlin has read all that was sent (a long silence): any further request is a real one."""
        self.stale = 0

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
