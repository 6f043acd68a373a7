"""The pure parts of drivers.badge.readers (tap filter, backoff, UID parsing) and the keyboard-wedge reader
over a pipe."""

from __future__ import annotations

import os
import threading

import pytest

from drivers.badge.readers import Backoff, KeyboardWedgeReader, TapFilter, parse_uid

pytestmark = pytest.mark.timeout(20)

A, B = bytes.fromhex("04A2B3C4"), bytes.fromhex("04C1D2E3")


def test_a_held_badge_is_one_tap_until_it_leaves() -> None:
    taps = TapFilter(holdoff_s=0.5)
    assert taps.arrived(A, 0.0) is True
    assert taps.arrived(A, 3.0) is False  # still on the reader, however long
    taps.left(A, 4.0)
    assert taps.arrived(A, 4.2) is False  # back within the hold-off: a wobble at the field's edge
    taps.left(A, 4.3)
    assert taps.arrived(A, 4.9) is True


def test_another_badge_is_always_a_tap() -> None:
    taps = TapFilter(holdoff_s=10.0)
    assert taps.arrived(A, 0.0) is True
    assert taps.arrived(B, 0.1) is True
    assert taps.arrived(A, 0.2) is True


def test_backoff_doubles_to_a_ceiling_and_resets() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


@pytest.mark.parametrize(
    ("text", "fmt", "uid"),
    [
        ("04A2B3C4", "auto", A),
        ("04:a2:b3:c4\r", "auto", A),
        ("0012345678", "auto", (12345678).to_bytes(4, "big")),
        ("0012345678", "hex", bytes.fromhex("0012345678")),
        ("4294967296", "decimal", (2**32).to_bytes(5, "big")),
        ("abc", "hex", bytes.fromhex("0abc")),
    ],
)
def test_parse_uid(text: str, fmt: str, uid: bytes) -> None:
    assert parse_uid(text, fmt) == uid  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "message"), [("", "empty"), ("04G2", "neither hex nor decimal")])
def test_parse_uid_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_uid(text)


def test_wedge_reads_a_pipe_one_uid_a_line_and_reports_its_end() -> None:
    read_end, write_end = os.pipe()
    now = [0.0]
    reader = KeyboardWedgeReader(os.fdopen(read_end, "rb"), holdoff_s=1.0, clock=lambda: now[0])
    badges: list[bytes] = []
    status: list[tuple[str, str]] = []
    ended = threading.Event()

    def on_status(state: str, detail: str) -> None:
        status.append((state, detail))
        if state == "lost":
            ended.set()

    reader.start(badges.append, on_status)
    os.write(write_end, b"04A2B3C4\r\n04A2B3C4\r\nnot a badge\n\n04C1D2E3\n0012345678\n")
    os.close(write_end)
    assert ended.wait(10)
    reader.stop()
    assert badges == [A, B, (12345678).to_bytes(4, "big")]  # the typed-again A is the same tap
    assert [state for state, _ in status] == ["found", "lost"]
    assert "end of input" in status[-1][1]
