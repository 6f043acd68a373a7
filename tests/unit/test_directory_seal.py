"""Sealed entries: what the broker carries opens only with the lab's secret, and every damaged,
foreign or oversized blob is refused with its reason (and counted by the directory)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabnode.directory import seal as sealing
from fabnode.directory.clock import Hlc
from fabnode.directory.entry import Entry, training_value
from fabnode.directory.store import LabDirectory
from fabnode.records.usage import UsageLog

SECRET = b"the lab's secret, 32 bytes long!"
OTHER = b"another lab's secret, 32 bytes!!"
LAB = "fablab-a"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENTRY = Entry(LAB, "fablab-a.printer", Hlc(1_772_000_000_000, 0, "fablab-a.printer"), "m1", "name", "Ada")


def test_a_sealed_entry_opens_with_the_lab_secret_and_shows_nothing_in_clear() -> None:
    blob = sealing.seal(SECRET, ENTRY)
    assert sealing.open_sealed(SECRET, blob, LAB) == ENTRY
    assert b"Ada" not in blob and b"m1" not in blob and b"name" not in blob
    assert sealing.seal(SECRET, ENTRY) != blob  # a fresh nonce each time


def test_a_bit_flipped_at_any_byte_is_refused() -> None:
    blob = sealing.seal(SECRET, ENTRY)
    for position in range(len(blob)):
        for bit in (0x01, 0x80):
            damaged = bytearray(blob)
            damaged[position] ^= bit
            with pytest.raises(sealing.Refused) as refused:
                sealing.open_sealed(SECRET, bytes(damaged), LAB)
            assert refused.value.reason in (sealing.FORGED, sealing.MALFORMED, sealing.OTHER_LAB,
                                            sealing.TRUNCATED), position  # fmt: skip
    damaged = bytearray(blob)
    damaged[-1] ^= 1
    with pytest.raises(sealing.Refused, match="forged or corrupted"):
        sealing.open_sealed(SECRET, bytes(damaged), LAB)


def test_every_truncation_is_refused() -> None:
    blob = sealing.seal(SECRET, ENTRY)
    for length in range(len(blob)):
        with pytest.raises(sealing.Refused) as refused:
            sealing.open_sealed(SECRET, blob[:length], LAB)
        assert refused.value.reason in (sealing.TRUNCATED, sealing.MALFORMED), length
    with pytest.raises(sealing.Refused, match="truncated"):
        sealing.open_sealed(SECRET, blob[:-1], LAB)


def test_another_labs_secret_and_another_lab_id_are_refused() -> None:
    with pytest.raises(sealing.Refused, match="other lab"):
        sealing.open_sealed(SECRET, sealing.seal(OTHER, ENTRY), LAB)
    with pytest.raises(sealing.Refused, match="other lab"):
        sealing.open_sealed(SECRET, sealing.seal(SECRET, ENTRY), "fablab-b")


def test_oversized_blobs_are_refused_before_any_work() -> None:
    with pytest.raises(sealing.Refused, match="too big"):
        sealing.open_sealed(SECRET, b"FDIR" + bytes(sealing.MAX_ENTRY_BLOB), LAB)
    big = Entry(LAB, "fablab-a.printer", ENTRY.hlc, "m1", "email", "a@" + "x" * 250)
    assert sealing.open_sealed(SECRET, sealing.seal(SECRET, big), LAB) == big


def test_a_snapshot_round_trips_and_refuses_damage() -> None:
    entries = [Entry(LAB, "fablab-a.printer", Hlc(1000 + i, 0, "fablab-a.printer"), f"m{i}", f"training:p{i}",
                     training_value(True, None)) for i in range(200)]  # fmt: skip
    blob = sealing.seal_snapshot(SECRET, LAB, "fablab-a.printer", entries)
    assert sealing.open_snapshot(SECRET, blob, LAB) == entries
    with pytest.raises(sealing.Refused, match="malformed"):
        sealing.open_sealed(SECRET, blob, LAB)  # a snapshot is not an entry
    damaged = bytearray(blob)
    damaged[len(blob) // 2] ^= 4
    with pytest.raises(sealing.Refused, match="forged or corrupted"):
        sealing.open_snapshot(SECRET, bytes(damaged), LAB)


def test_the_directory_counts_what_it_refuses_and_applies_nothing_of_it(tmp_path: Path) -> None:
    log = UsageLog.open(tmp_path / "usage.db")
    directory = LabDirectory.open(log.db, SECRET, "fablab-a.laser", LAB)
    good = sealing.seal(SECRET, ENTRY)
    flipped = bytearray(good)
    flipped[-5] ^= 0x10
    blobs = [sealing.seal(OTHER, ENTRY), bytes(flipped), good[:40], b"FDIR" + bytes(1_000_000), b"junk"]
    report = directory.apply_sealed(blobs, NOW)
    assert (report.applied, report.refused) == (0, 5)
    assert sorted(report.reasons) == sorted(["other lab", "forged or corrupted", "truncated", "too big",
                                             "malformed"])  # fmt: skip
    assert directory.refused_count() == 5 and directory.entry_count() == 0
    report = directory.apply_sealed([good, good], NOW)
    assert (report.applied, report.duplicate, report.refused) == (1, 1, 0)
    directory.note_refused("too big")
    assert directory.refused_count() == 6
