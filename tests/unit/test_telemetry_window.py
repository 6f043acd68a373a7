"""The publisher's sans-I/O window: in order, `in_flight` at a time, kept until the region's ack,
sent again after `resend_after_s`, never far ahead of the region."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fabnode.telemetry.window import OutboxWindow


def window(**kw) -> OutboxWindow:
    return OutboxWindow(**{"in_flight": 3, "resend_after_s": 10.0, "max_unacked": 100, **kw})


def test_at_most_in_flight_wait_for_their_puback() -> None:
    w = window()
    assert w.new_allowance() == 3
    for seq, mid in ((1, 11), (2, 12), (3, 13)):
        w.published(seq, mid, now=0.0)
    assert (w.new_allowance(), w.cursor) == (0, 3)
    assert w.puback(11, now=1.0) == 1
    assert w.new_allowance() == 1
    assert w.puback(999, now=1.0) is None  # not ours (e.g. the status message)


def test_puback_keeps_the_message_until_the_region_ack_covers_it() -> None:
    w = window()
    w.published(1, 11, 0.0)
    w.puback(11, 1.0)
    assert w.pubacked == {1: 1.0} and w.next_due() == 11.0
    assert w.region_ack(1) is True
    assert w.pubacked == {} and w.next_due() is None
    assert w.region_ack(1) is False  # old news
    assert w.region_ack(0) is False  # never goes back


def test_unacknowledged_messages_fall_due_in_order_after_resend_after_s() -> None:
    w = window()
    for seq, mid in ((1, 11), (2, 12), (3, 13)):
        w.published(seq, mid, 0.0)
    w.puback(13, 2.0)
    w.puback(11, 3.0)
    w.puback(12, 4.0)
    assert w.due_resends(11.9) == []
    assert w.due_resends(13.0) == [1, 3]  # oldest first
    w.published(1, 21, 13.0)
    assert w.due_resends(14.0) == [2, 3]


def test_a_message_never_pubacked_is_given_back_after_resend_after_s() -> None:
    w = window(in_flight=1)
    w.published(1, 11, 0.0)
    assert w.new_allowance() == 0
    assert w.due_resends(10.0) == [1]
    assert w.room == 1


def test_reconnect_restarts_the_clocks() -> None:
    w = window()
    w.published(1, 11, 0.0)
    w.published(2, 12, 0.0)
    w.puback(11, 1.0)
    w.reconnected(100.0)
    assert w.due_resends(105.0) == [] and w.next_due() == 110.0


def test_the_region_ack_moves_the_cursor_past_what_it_already_has() -> None:
    w = window(acked_through=5)
    assert w.cursor == 5
    w.region_ack(9)  # stored by the region before this process started
    assert w.cursor == 9


def test_no_more_than_max_unacked_ahead_of_the_region() -> None:
    w = window(in_flight=10, max_unacked=4)
    for seq in range(1, 5):
        w.published(seq, seq, 0.0)
        w.puback(seq, 0.0)
    assert w.new_allowance() == 0
    w.region_ack(2)
    assert w.new_allowance() == 2


@given(st.lists(st.sampled_from(["publish", "puback", "ack", "tick"]), max_size=60))
def test_invariants_under_any_event_order(events: list[str]) -> None:
    w = window(in_flight=4, resend_after_s=2.0, max_unacked=6)
    now, mid, last = 0.0, 0, 0
    for event in events:
        now += 1.0
        if event == "publish" and w.new_allowance():
            mid += 1
            last = w.cursor + 1
            w.published(last, mid, now)
        elif event == "puback" and w.waiting:
            w.puback(min(w.waiting), now)
        elif event == "ack" and last:
            w.region_ack(last)
        elif event == "tick":
            for seq in w.due_resends(now):
                mid += 1
                w.published(seq, mid, now)
        assert len(w.waiting) <= 4
        assert w.cursor - w.acked_through <= 6
        assert all(seq > w.acked_through for seq in [*w.pubacked, *w.overdue])
        assert all(seq <= w.cursor for seq, _ in w.waiting.values())
