"""The simulated badge reader's own rules: unplugged readers read nothing, hold-off, UIDs as text."""

from __future__ import annotations

import pytest

from simulators.badge import NfcTagEmulator, SimBadgeReader

pytestmark = pytest.mark.timeout(20)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(reader: SimBadgeReader) -> tuple[list[bytes], list[str], list[bytes]]:
    badges: list[bytes] = []
    status: list[str] = []
    left: list[bytes] = []
    reader.start(badges.append, lambda state, detail: status.append(state), left.append)
    return badges, status, left


def test_taps_given_as_hex_text_are_bytes() -> None:
    reader = SimBadgeReader()
    badges, status, left = run(reader)
    reader.tap("04:A2:B3:C4")
    reader.tap(b"\x01\x02")
    assert reader.wait_idle()
    reader.stop()
    assert badges == [bytes.fromhex("04a2b3c4"), b"\x01\x02"]
    assert left == badges and status == ["found"]


def test_an_unplugged_reader_reads_nothing_until_plugged_back() -> None:
    reader = SimBadgeReader()
    badges, status, _ = run(reader)
    reader.unplug()
    reader.tap("0A0B0C0D")
    reader.place("01020304")
    reader.plug()  # the badge still lying there is read now
    assert reader.wait_idle()
    reader.stop()
    assert badges == [bytes.fromhex("01020304")]
    assert status == ["found", "lost", "found"]


def test_hold_off_merges_a_quick_return_of_the_same_badge() -> None:
    clock = Clock()
    reader = SimBadgeReader(holdoff_s=0.5, clock=clock)
    badges, _, _ = run(reader)
    reader.tap("01020304")
    assert reader.wait_idle()
    clock.now = 0.2
    reader.tap("01020304")  # back within 0.5 s: the same tap
    assert reader.wait_idle()
    clock.now = 1.0
    reader.tap("01020304")
    assert reader.wait_idle()
    reader.stop()
    assert badges == [bytes.fromhex("01020304")] * 2


def test_tag_emulator_wants_an_8_byte_idm() -> None:
    with pytest.raises(ValueError, match="8 bytes, got 4: 01020304"):
        NfcTagEmulator(port=1, uid="01020304")
