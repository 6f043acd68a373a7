"""Which outbox messages to publish next: the sans-I/O core of the telemetry publisher.

Messages go out in sequence order with QoS 1, at most `in_flight` waiting for their PUBACK. A
PUBACK only means the broker has the message (a broker killed with SIGKILL loses what it PUBACKed
but had not saved): a message is done when the region's acknowledgement (`seq` = every record up
to N stored) covers it. One PUBACKed but not covered `resend_after_s` later goes out again, with
its original id. At most `max_unacked` messages run ahead of the region's acknowledgement, so a
region that is away does not make the broker queue (and at `max_queued_messages`, drop) a flood.

Times are the caller's monotonic clock (`now`, seconds); no I/O, threads or clocks in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class OutboxWindow:
    """The publisher's bookkeeping between the outbox, the MQTT client and the region's ack."""

    in_flight: int
    resend_after_s: float
    max_unacked: int
    acked_through: int = 0  # the region has stored every record up to here
    cursor: int = 0  # the highest seq handed to the client (new messages start above it)
    waiting: dict[int, tuple[int, float]] = field(default_factory=dict)  # mid -> (seq, published at)
    # seq -> PUBACK time, ack not yet seen; insertion order is time order, so the due ones lead.
    pubacked: dict[int, float] = field(default_factory=dict)
    overdue: set[int] = field(default_factory=set)  # published, never PUBACKed in resend_after_s

    def __post_init__(self) -> None:
        self.cursor = max(self.cursor, self.acked_through)

    @property
    def room(self) -> int:
        """How many more messages may be published now."""
        return max(0, self.in_flight - len(self.waiting))

    def new_allowance(self) -> int:
        """How many never-published messages (above `cursor`) may go now."""
        ahead = self.acked_through + self.max_unacked - self.cursor
        return max(0, min(self.room, ahead))

    def due_resends(self, now: float) -> list[int]:
        """Messages to publish again, oldest first: PUBACKed but not acknowledged by the region in
        `resend_after_s`, or published and never PUBACKed in that time (the slot is given back)."""
        for mid, (seq, t) in list(self.waiting.items()):
            if now - t >= self.resend_after_s:
                del self.waiting[mid]
                self.overdue.add(seq)
        room = self.room
        due = sorted(self.overdue)[:room]
        for seq, t in self.pubacked.items():  # only the leading (due) entries are looked at
            if len(due) >= room or now - t < self.resend_after_s:
                break
            due.append(seq)
        return sorted(due)

    def next_due(self) -> float | None:
        """When the next resend falls due (monotonic seconds), None when nothing waits."""
        times = [t for _, t in self.waiting.values()]
        if self.pubacked:
            times.append(next(iter(self.pubacked.values())))
        if self.overdue:
            return 0.0
        return min(times) + self.resend_after_s if times else None

    def published(self, seq: int, mid: int, now: float) -> None:
        """The client took message `seq` under message id `mid`."""
        self.waiting[mid] = (seq, now)
        self.pubacked.pop(seq, None)
        self.overdue.discard(seq)
        self.cursor = max(self.cursor, seq)

    def forget(self, seq: int) -> None:
        """Message `seq` is no longer waiting (acknowledged meanwhile)."""
        self.pubacked.pop(seq, None)
        self.overdue.discard(seq)

    def puback(self, mid: int, now: float) -> int | None:
        """The broker's PUBACK for `mid`: return the seq it was (None for a message not ours)."""
        entry = self.waiting.pop(mid, None)
        if entry is None:
            return None
        if entry[0] > self.acked_through:
            self.pubacked.pop(entry[0], None)  # re-inserted at the end: time order holds
            self.pubacked[entry[0]] = now
        return entry[0]

    def region_ack(self, seq: int) -> bool:
        """The region's ack covers every seq up to `seq`; return True when that is news."""
        if seq <= self.acked_through:
            return False
        self.acked_through = seq
        self.cursor = max(self.cursor, seq)
        for done in [s for s in self.pubacked if s <= seq]:
            del self.pubacked[done]
        self.overdue = {s for s in self.overdue if s > seq}
        return True

    def reconnected(self, now: float) -> None:
        """Clocks start again: the client re-sends what waited for a PUBACK, and the region gets
        `resend_after_s` to acknowledge (its retained ack arrives first) before anything is re-sent."""
        self.waiting = {mid: (seq, now) for mid, (seq, _) in self.waiting.items()}
        self.pubacked = dict.fromkeys(self.pubacked, now)
