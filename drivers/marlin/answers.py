"""Which line a Marlin answer belongs to, when it might belong to none, and what a poke sends.

Pure functions over the host's in-flight lines (drivers.marlin.flight) and stream
(drivers.marlin.stream); drivers.marlin.host keeps the state and calls them.
"""

from __future__ import annotations

from drivers.marlin import wire
from drivers.marlin.flight import InFlight
from drivers.marlin.resend import ResendPolicy
from drivers.marlin.stream import Stream

M105 = "M105"


def whose_unknown(flight: InFlight, stream: Stream, unknown: str, unnumbered_only: bool) -> str:
    """How the `ok` after `Unknown command` counts: "" (for the command we sent), "m105" (our
    manual M105 glued to stray bytes: `?M105`), "garbage" (noise or a flush made it up: the tail
    of a cut line, or a line whose N was hit)."""
    head = flight.head()
    manual_m105 = head is not None and head.m105 and head.command is not None
    if manual_m105 and wire.answers(unknown, M105, numbered=False):
        return "m105"
    entry = flight.peek(unnumbered_only=unnumbered_only)
    expected = "" if entry is None else stream.command_of(entry.n) if entry.n >= 0 else entry.text
    return "" if wire.answers(unknown, expected, entry is not None and entry.n >= 0) else "garbage"


def queue_busy(flight: InFlight) -> bool:
    """Lines Marlin took (out of its RX buffer) still wait for their `ok`."""
    return any(e.n < 0 or e.n <= flight.taken_n for e in flight if not e.m105)


def is_tail_ok(flight: InFlight, unnumbered_only: bool) -> bool:
    """After a refusal, a plain `ok` no line of ours can have earned: none Marlin took waits for it
    (the lines it refused earn only the `ok` after their `Resend:`), so a cut tail ran."""
    entry = flight.peek(unnumbered_only=unnumbered_only)
    return entry is None or entry.n > flight.taken_n


def poke(flight: InFlight, stream: Stream, resends: ResendPolicy, poke_waits: bool) -> bool:
    """On silence, with the stream live: send again what may be lost, or a numbered M105 within the
    window. Returns whether a poke's M105 now waits for its answer."""
    if stream.acked_n < 0:
        # M110 N0 was lost (a booting board drops bytes): again, harmless before any job line.
        flight.drop_numbered_from(0)
        stream.next_n = 0
    elif stream.resending and stream.frame_tx[stream.next_n] >= 0:
        # A resend is under way, the window full of unanswered lines: those sent since Marlin's
        # last request may have been refused unheard, send them again (it refuses any it has).
        cut = max(resends.answered, stream.acked_n + 1)
        flight.drop_numbered_from(cut)
        stream.next_n = min(stream.next_n, cut)
    elif flight.m105_count and poke_waits:
        # The poke's M105 went unanswered too: its answer was lost, or Marlin read nothing since.
        # Send again from the oldest line it did not acknowledge, in place of those on the wire
        # (the same credit): Marlin refuses the lines it took, and its `Resend:` says which.
        oldest = min((e.n for e in flight if e.n > stream.acked_n), default=stream.next_n)
        flight.drop_numbered_from(oldest)
        stream.next_n = min(stream.next_n, oldest)
    elif not stream.resending:
        # Numbered, so Marlin takes it only after every earlier line: its `ok T:` proves them all.
        # It fits the window: job lines leave room for it (MarlinHost._fits).
        stream.append_m105()
        return True
    return poke_waits
