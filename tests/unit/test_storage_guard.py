"""The usage log's writes under a full database: kept in order, written later, sessions refused meanwhile.

A "full disk" here is SQLite's own: `PRAGMA max_page_count` caps the file, so a record that needs a
new page fails with the same `database or disk is full` error a full disk gives (the integration test
fills a real tmpfs).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabnode.records.storage_guard import StorageGuard, is_storage_error, probe_write
from fabnode.records.usage import UsageLog

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
BIG = "x" * 20_000  # needs overflow pages: cannot fit in a full file


@pytest.fixture
def usage(tmp_path: Path) -> Iterator[UsageLog]:
    log = UsageLog.open(tmp_path / "usage.db")
    yield log
    log.close()


def fill(usage: UsageLog) -> None:
    """Cap the file at the pages it has: the next record that needs a page fails as on a full disk."""
    pages = usage.db.execute("PRAGMA page_count").fetchone()[0]
    usage.db.execute(f"PRAGMA max_page_count = {pages}")


def room(usage: UsageLog) -> None:
    usage.db.execute("PRAGMA max_page_count = 1073741823")


def faults(usage: UsageLog) -> list[tuple[str, str]]:
    return [(r["kind"], r["time"]) for r in usage.db.query("SELECT kind, time FROM faults ORDER BY id")]


def guard_for(usage: UsageLog, tmp_path: Path, free_mb: float = 1000.0) -> StorageGuard:
    return StorageGuard(tmp_path, 16.0, lambda: probe_write(usage), free=lambda _: int(free_mb * 2**20))


def test_records_refused_by_a_full_file_are_kept_in_order_and_written_later(usage, tmp_path) -> None:
    guard = guard_for(usage, tmp_path)
    assert guard.problem() is None
    fill(usage)
    assert not guard.write("fault a", lambda: usage.record_fault("a", BIG, "m", NOW))
    # b would fit, but it must not overtake a: it waits behind it
    assert not guard.write("fault b", lambda: usage.record_fault("b", "", "m", NOW))
    assert faults(usage) == []
    problem = guard.problem()
    assert problem == "the usage log cannot be written (database or disk is full)"
    assert guard.retry() == 0 and guard.kept == 2  # still full: nothing written, nothing lost
    room(usage)
    assert guard.retry() == 2
    assert [k for k, _ in faults(usage)] == ["a", "b"]
    assert faults(usage)[0][1].startswith("2025-03-01T12:00:00")  # the time it happened, not when written
    assert guard.problem() is None and guard.snapshot()["written_late"] == 2


def test_an_unwritable_file_fails_writes_that_cannot_wait_until_a_probe_write_works(usage, tmp_path) -> None:
    guard = guard_for(usage, tmp_path)
    usage.db.execute("PRAGMA query_only = ON")  # every write now fails: a read-only database
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        guard.attempt("session start", lambda: usage.open_session(None, "m", NOW))
    assert "readonly" in (guard.problem() or "")
    guard.retry()  # the probe write fails too: still refused
    assert guard.problem() is not None
    usage.db.execute("PRAGMA query_only = OFF")
    guard.retry()  # nothing kept: the probe write tells the file works again
    assert guard.problem() is None


def test_low_free_space_refuses_sessions_before_any_write_fails(usage, tmp_path) -> None:
    guard = guard_for(usage, tmp_path, free_mb=3.5)
    problem = guard.problem()
    assert problem is not None and "disk full: 3.5 MB free" in problem and "16 MB needed" in problem
    assert guard.snapshot()["ok"] is False and guard.snapshot()["free_mb"] == 3.5


def test_bugs_are_not_taken_for_a_full_disk(usage, tmp_path) -> None:
    guard = guard_for(usage, tmp_path)
    with pytest.raises(sqlite3.IntegrityError):
        guard.write("bad row", lambda: usage.db.execute("INSERT INTO faults (id, time, machine, kind) "
                                                        "VALUES (1, 't', 'm', 'k'), (1, 't', 'm', 'k')"))
    assert guard.kept == 0 and guard.problem() is None
    assert is_storage_error(OSError(28, "No space left on device"))
    assert not is_storage_error(ValueError("bad"))
