"""A usage database written by an older fabnode (schema v1) migrates: aborted jobs get their own status."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabnode.records.schema import _V1, SCHEMA_VERSION
from fabnode.records.usage import UsageLog, UsageLogError

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _v1_file(path: Path) -> None:
    """A file as fabnode left it before migration 2: v1 tables, an abort stored as failed."""
    with sqlite3.connect(path) as conn:
        for statement in _V1:
            conn.execute(statement)
        started = "2026-02-01T10:00:00Z"
        jobs = [("aborted-one", "failed", "aborted: emergency stop pressed"),
                ("plain-failure", "failed", "the printer halted: kill() called"),
                ("done", "completed", "completed")]  # fmt: skip
        for name, status, reason in jobs:
            conn.execute("INSERT INTO jobs (machine, file_name, started, ended, status, reason) "
                         "VALUES ('prusa-1', ?, ?, ?, ?, ?)",
                         (name, started, started, status, reason))  # fmt: skip
        conn.execute("PRAGMA user_version = 1")


def _statuses(path: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT file_name, status, reason FROM jobs")
        return {name: (status, reason) for name, status, reason in rows}


def test_an_old_database_migrates_and_its_aborts_become_aborted(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    _v1_file(path)
    with pytest.raises(sqlite3.IntegrityError), sqlite3.connect(path) as conn:  # v1 had no room for it
        conn.execute("INSERT INTO jobs (machine, file_name, started, status) "
                     "VALUES ('m', 'f', 't', 'aborted')")
    with UsageLog.open(path) as log:
        assert log.schema_version == SCHEMA_VERSION >= 2
        job = log.start_job(None, None, "prusa-1", "new.gcode", T0)
        row = log.finish_job(job, "aborted", "aborted: firmware halted", T0)
        assert row["status"] == "aborted"
    assert _statuses(path) == {
        "aborted-one": ("aborted", "aborted: emergency stop pressed"),
        "plain-failure": ("failed", "the printer halted: kill() called"),
        "done": ("completed", "completed"),
        "new.gcode": ("aborted", "aborted: firmware halted"),
    }
    with sqlite3.connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"jobs_started", "jobs_open"} <= indexes


def test_an_unknown_status_is_still_refused(tmp_path: Path) -> None:
    with UsageLog.open(tmp_path / "usage.db") as log:
        job = log.start_job(None, None, "prusa-1", "part.gcode", T0)
        with pytest.raises(UsageLogError, match="job status 'exploded'"):
            log.finish_job(job, "exploded", "", T0)
