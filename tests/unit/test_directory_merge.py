"""The lab directory's clock and merge: nodes that hold the same entries hold the same directory,
whatever the order the entries arrived in (property-style: random permutations, fixed seeds)."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from fabnode.directory.clock import MAX_DRIFT_MS, ClockError, Hlc, HybridClock
from fabnode.directory.entry import Entry, EntryError, training_value
from fabnode.directory.store import LabDirectory
from fabnode.records import members as access
from fabnode.records.usage import UsageLog

SECRET = b"lab secret for the merge tests!!"
LAB = "fablab-a"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BADGE_A = access.badge_hash(SECRET, "04a22b1c")
BADGE_B = access.badge_hash(SECRET, "04556677")


def test_clock_orders_by_wall_then_counter_then_node() -> None:
    stamps = [Hlc(5, 1, "b"), Hlc(5, 0, "z"), Hlc(4, 9, "a"), Hlc(5, 1, "a")]
    assert sorted(stamps) == [Hlc(4, 9, "a"), Hlc(5, 0, "z"), Hlc(5, 1, "a"), Hlc(5, 1, "b")]


def test_clock_never_goes_back_and_passes_what_it_observed() -> None:
    clock = HybridClock("lab.a")
    first = clock.now(1000)
    assert clock.now(999) > first  # the wall clock stepped back: the counter moves on
    clock.observe(Hlc(5000, 7, "lab.b"), 1000)
    after = clock.now(1001)
    assert after > Hlc(5000, 7, "lab.b") and after.node == "lab.a"
    clock.observe(Hlc(1001 + MAX_DRIFT_MS + 1, 0, "lab.c"), 1001)  # absurdly far ahead: not taken in
    assert clock.now(1002) < Hlc(1001 + MAX_DRIFT_MS, 0, "lab.c")


@pytest.mark.parametrize("bad", [(-1, 0, "n"), (0, -1, "n"), (0, 0, ""), (True, 0, "n"), (0, 0, "a\nb")])
def test_clock_values_out_of_range_are_refused(bad: tuple) -> None:
    with pytest.raises(ClockError):
        Hlc(*bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", ""), ("role", "admin"), ("badge", "04a22b1c"), ("training:printer", {"granted": "yes"}),
     ("training:printer", {"granted": True, "until": "31/12/2026"}), ("colour", "red"),
     ("fab_manager_id", -3), ("email", "nobody"), ("erased", {"name": "Ada"})],
)
def test_entries_with_values_their_field_cannot_hold_are_refused(field: str, value: object) -> None:
    with pytest.raises(EntryError):
        Entry(LAB, "fablab-a.printer", Hlc(1, 0, "fablab-a.printer"), "m1", field, value)


def _entries() -> list[Entry]:
    """Two members edited from three nodes, with concurrent edits, a tie, a removal and late edits."""
    def e(wall: int, counter: int, node: str, member: str, field: str, value: object) -> Entry:
        return Entry(LAB, node, Hlc(wall, counter, node), member, field, value)  # type: ignore[arg-type]

    a, b, c = "fablab-a.printer", "fablab-a.laser", "fablab-a.cnc"
    return [
        e(100, 0, a, "ada", "name", "Ada"),
        e(100, 1, a, "ada", "role", "member"),
        e(100, 2, a, "ada", "badge", BADGE_A),
        e(200, 0, a, "ada", "training:printer", training_value(True, None)),
        e(200, 0, b, "ada", "training:laser", training_value(True, date(2026, 12, 31))),
        e(250, 0, c, "ada", "training:laser", training_value(False, None)),  # concurrent: the later wins
        e(260, 0, b, "ada", "training:laser", training_value(True, None)),
        e(300, 0, b, "ada", "training:printer", training_value(True, date(2026, 6, 30))),
        e(300, 0, b, "ada", "training:printer", training_value(False, None)),  # same clock: revocation wins
        e(310, 0, c, "ada", "role", "technician"),
        e(310, 0, a, "ada", "role", "member"),  # equal wall and counter: the node id decides (a > c)
        e(100, 0, b, "bob", "name", "Bob"),
        e(100, 1, b, "bob", "role", "member"),
        e(100, 2, b, "bob", "badge", BADGE_B),
        e(150, 0, b, "bob", "training:printer", training_value(True, None)),
        e(400, 0, c, "bob", "removed", {"name": "Bob", "role": "member"}),
        e(500, 0, a, "bob", "training:laser", training_value(True, None)),  # after removal: ignored
        e(120, 0, a, "bob", "badge", BADGE_A),  # before removal, but removal is final
    ]


def _open(tmp_path: Path, name: str) -> tuple[UsageLog, LabDirectory]:
    log = UsageLog.open(tmp_path / f"{name}.db")
    return log, LabDirectory.open(log.db, SECRET, f"{LAB}.{name}", LAB)


def _listing(log: UsageLog) -> list[tuple]:
    return [(m.name, m.role, m.badge_prefix, m.removed is not None, m.trainings)
            for m in access.list_members(log.db, include_removed=True)]


def test_every_order_of_arrival_gives_one_directory(tmp_path: Path) -> None:
    entries = _entries()
    reference_log, reference = _open(tmp_path, "reference")
    reference.apply(entries, NOW)
    digest, listing = reference.digest(), _listing(reference_log)
    for seed in range(40):
        order = entries[:]
        random.Random(seed).shuffle(order)
        log, directory = _open(tmp_path, f"n{seed}")
        split = random.Random(seed + 1000).randrange(len(order))  # in two batches, some entries twice
        directory.apply(order[:split], NOW)
        directory.apply(order[split // 2:], NOW)
        assert (directory.digest(), _listing(log)) == (digest, listing), f"seed {seed}"
        log.close()
    ada = access.check_access(reference_log.db, BADGE_A, "printer", date(2026, 3, 1))
    assert (ada.name, ada.granted, ada.reason) == ("Ada", False, "not trained on printer")
    assert access.check_access(reference_log.db, BADGE_A, "laser", date(2026, 3, 1)).granted
    bob = access.check_access(reference_log.db, BADGE_B, "printer", date(2026, 3, 1))
    assert bob.reason == "unknown badge"
    assert [(m[0], m[1], m[3]) for m in listing] == [("Ada", "member", False), ("Bob", "member", True)]


def test_a_replayed_entry_is_stale_or_duplicate_never_applied(tmp_path: Path) -> None:
    _, directory = _open(tmp_path, "a")
    entries = _entries()
    first = directory.apply(entries, NOW)
    again = directory.apply(entries, NOW)
    assert first.applied > 0 and again.applied == 0 and again.stale + again.duplicate == len(entries)


def test_two_nodes_that_enrol_one_name_apart_agree_on_who_holds_it(tmp_path: Path) -> None:
    def e(wall: int, node: str, member: str, field: str, value: object) -> Entry:
        return Entry(LAB, node, Hlc(wall, 0, node), member, field, value)  # type: ignore[arg-type]

    entries = [e(100, "fablab-a.x", "m1", "name", "Eve"), e(101, "fablab-a.x", "m1", "badge", BADGE_A),
               e(90, "fablab-a.y", "m2", "name", "eve"), e(91, "fablab-a.y", "m2", "badge", BADGE_A)]
    seen = set()
    for seed in range(8):
        order = entries[:]
        random.Random(seed).shuffle(order)
        log, directory = _open(tmp_path, f"n{seed}")
        for entry in order:  # one batch per entry: the projection is redone each time
            directory.apply([entry], NOW)
        seen.add((directory.digest(), tuple(_listing(log))))
        log.close()
    ((_, listing),) = seen
    # m2 took the name (and the badge) first; m1 shows under its id so a technician can tell them apart
    assert [(m[0], m[2]) for m in listing] == [("eve", BADGE_A[:8]), ("Eve #m1", "")]


def test_the_digest_kept_beside_the_rows_is_the_one_summed_from_scratch(tmp_path: Path) -> None:
    erased = Entry(LAB, "fablab-a.cnc", Hlc(600, 0, "fablab-a.cnc"), "ada", "erased", {})
    rng = random.Random(7)
    entries = [*_entries(), erased]
    digests = set()
    for seed in range(5):
        log, directory = _open(tmp_path, f"kept-{seed}")
        rng.shuffle(entries)
        for entry in entries:
            directory.apply([entry], NOW)  # one batch each: the sum moves at every merge
        kept = directory.digest()
        log.db.execute("DELETE FROM directory_meta WHERE key = 'digest_sum'")  # as a file from before
        assert directory.digest() == kept, f"seed {seed}"
        digests.add(kept)
    assert len(digests) == 1


def test_entries_held_already_are_counted_and_write_nothing(tmp_path: Path) -> None:
    _, directory = _open(tmp_path, "held")
    entries = _entries()
    directory.apply(entries, NOW)
    watcher = sqlite3.connect(tmp_path / "held.db")
    before = watcher.execute("PRAGMA data_version").fetchone()[0]
    report = directory.apply(entries, NOW)  # a snapshot part this node holds already
    assert (report.applied, report.refused, report.stale + report.duplicate) == (0, 0, len(entries))
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == before  # nothing was committed
    fresh = Entry(LAB, "fablab-a.cnc", Hlc(700, 0, "fablab-a.cnc"), "ada", "role", "technician")
    assert directory.apply([*entries, fresh], NOW).applied == 1
    assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    watcher.close()
