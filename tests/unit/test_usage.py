"""The usage log: schema and migrations, jobs and sessions, the outbox, crash recovery."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabnode.machine.profile import Material
from fabnode.records import members as access
from fabnode.records.schema import SCHEMA_VERSION
from fabnode.records.usage import JobRates, UsageLog, UsageLogError

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)
SECRET = b"k" * 32
PLA = JobRates.for_material(Material("PLA", diameter_mm=1.75, density_g_cm3=1.24, price_per_kg=25.0))


@pytest.fixture
def log(tmp_path: Path):
    with UsageLog.open(tmp_path / "usage.db") as opened:
        yield opened


def _member(log: UsageLog, name: str = "Ada", uid: str = "04:A2:2B:1C") -> int:
    return access.add_member(log.db, SECRET, name, uid, now=T0)


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_new_file_gets_every_table_the_current_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "state" / "usage.db"
    with UsageLog.open(path) as log:
        assert log.schema_version == SCHEMA_VERSION >= 1
        assert log.db.journal_mode == "wal"
    expected = {"members", "trainings", "sessions", "jobs", "access_events", "faults", "outbox"}
    assert expected <= _tables(path)


def test_reopening_keeps_data_and_version(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with UsageLog.open(path) as log:
        _member(log)
    for _ in range(2):
        with UsageLog.open(path) as log:
            assert log.schema_version == SCHEMA_VERSION
            assert [m.name for m in access.list_members(log.db)] == ["Ada"]


def test_a_file_from_a_newer_fabnode_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(UsageLogError, match=rf"usage.db: .*schema version {SCHEMA_VERSION + 5} is newer"):
        UsageLog.open(path)
    assert _tables(path) == set()


def test_a_file_that_is_not_a_database_gets_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageLogError, match=r"usage.db: not a usable fabnode usage database"):
        UsageLog.open(path)


def test_job_lifecycle_checkpoint_then_completed_with_grams_and_cost(log: UsageLog) -> None:
    ada = _member(log)
    session = log.open_session(ada, "prusa-mini-1", T0)
    job = log.start_job(
        session, ada, "prusa-mini-1", "benchy.gcode", T0, lines_total=5000, material="PLA", rates=PLA
    )
    assert log.job(job)["status"] == "in_progress"
    log.checkpoint_job(job, 2500, 1000.0, 0.0, 600.0, 30.0, T0 + timedelta(minutes=10))
    end = T0 + timedelta(minutes=20)
    row = log.finish_job(
        job, "completed", "", end, last_line_acked=5000, filament_mm=2000.0, running_s=1200.0
    )
    # 2000 mm of 1.75 mm PLA at 1.24 g/cm3 is 5.965 g; at 25/kg that costs 0.149.
    assert row["status"] == "completed"
    assert row["filament_g"] == pytest.approx(5.965, abs=0.001)
    assert row["cost"] == pytest.approx(0.1491, abs=0.0001)
    assert (row["running_s"], row["paused_s"], row["last_line_acked"]) == (1200.0, 30.0, 5000)
    assert row["ended"] == "2025-03-01T09:20:00Z"
    log.close_session(session, T0 + timedelta(minutes=30), "badge", duration_s=1800.0)
    assert log.session(session)["end_reason"] == "badge"
    with pytest.raises(UsageLogError, match="job 1 already ended as completed"):
        log.finish_job(job, "failed", "again", T0)
    with pytest.raises(UsageLogError, match="job 1 is not in progress"):
        log.checkpoint_job(job, 1, 1.0, 0.0, 1.0, 0.0, T0)


def test_outbox_carries_hashes_not_names_badges_or_file_names(log: UsageLog) -> None:
    ada = _member(log)
    session = log.open_session(ada, "laser-1", T0)
    job = log.start_job(session, ada, "laser-1", "secret-gift-for-bob.nc", T0, file_sha256="ab" * 32)
    log.finish_job(job, "cancelled", "cancelled at the console", T0, laser_on_s=42.0)
    log.record_access("f" * 64, "laser-1", ada, True, "trained", T0)
    log.record_fault("estop", "e-stop pressed", "laser-1", T0)
    log.close_session(session, T0, "badge")
    messages = log.pending_outbox()
    kinds = [m.kind for m in messages]
    assert kinds == ["session_started", "job_started", "job_ended", "access", "fault", "session_ended"]
    assert [m.seq for m in messages] == sorted(m.seq for m in messages)
    assert len({m.msg_id for m in messages}) == len(messages)
    text = json.dumps([m.payload for m in messages])
    assert "Ada" not in text and "secret-gift" not in text and "f" * 64 not in text
    expected_hash = access.member_hash(SECRET, "Ada")
    assert all(m.payload.get("member_hash") == expected_hash for m in messages if m.kind != "fault")
    ended = messages[2].payload
    assert (ended["status"], ended["laser_on_s"], ended["file_sha256"]) == ("cancelled", 42.0, "ab" * 32)


def test_a_failure_between_record_and_message_leaves_neither(log: UsageLog, mocker) -> None:
    ada = _member(log)
    job = log.start_job(None, ada, "prusa-mini-1", "a.gcode", T0)
    before = log.pending_outbox()
    mocker.patch.object(UsageLog, "_enqueue", side_effect=RuntimeError("disk pulled"))
    with pytest.raises(RuntimeError, match="disk pulled"):
        log.finish_job(job, "completed", "", T0, filament_mm=10.0)
    with pytest.raises(RuntimeError, match="disk pulled"):
        log.start_job(None, ada, "prusa-mini-1", "b.gcode", T0)
    with pytest.raises(RuntimeError, match="disk pulled"):
        log.record_fault("lid", "lid open", "prusa-mini-1", T0)
    mocker.stopall()
    assert log.job(job)["status"] == "in_progress"
    assert log.job(job)["filament_mm"] == 0.0
    assert log.db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    assert log.db.execute("SELECT count(*) FROM faults").fetchone()[0] == 0
    assert log.pending_outbox() == before
    # The log still works after the failed transactions.
    log.finish_job(job, "completed", "", T0)
    assert log.pending_outbox()[-1].kind == "job_ended"


def test_outbox_sent_then_acked_then_pruned(log: UsageLog) -> None:
    for n in range(3):
        log.record_fault("estop", f"press {n}", "m", T0)
    first, second, third = log.pending_outbox()
    assert log.mark_outbox_sent([first.seq, second.seq], T0) == 2
    assert [m.seq for m in log.pending_outbox(unsent_only=True)] == [third.seq]
    assert [m.seq for m in log.pending_outbox(limit=2)] == [first.seq, second.seq]
    assert log.mark_outbox_acked_through(first.seq, T0) == 1
    assert log.mark_outbox_acked_through(first.seq, T0) == 0  # a repeated region ack changes nothing
    assert [m.seq for m in log.pending_outbox()] == [second.seq, third.seq]
    assert log.prune_outbox(T0 + timedelta(seconds=1)) == 1
    log.record_fault("estop", "later", "m", T0)
    # Sequence numbers are never reused, even after pruning.
    assert log.pending_outbox()[-1].seq == third.seq + 1


_CRASHING_DAEMON = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from fabnode.records import members as access
    from fabnode.machine.profile import Material
    from fabnode.records.usage import JobRates, UsageLog

    t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    log = UsageLog.open(Path(sys.argv[1]))
    ada = access.add_member(log.db, b"k" * 32, "Ada", "04a22b1c", now=t0)
    done = log.start_job(None, ada, "prusa-mini-1", "done.gcode", t0)
    log.finish_job(done, "completed", "", t0, filament_mm=100.0)
    session = log.open_session(ada, "prusa-mini-1", t0)
    rates = JobRates.for_material(Material("PLA"))
    job = log.start_job(session, ada, "prusa-mini-1", "big.gcode", t0, lines_total=90000, rates=rates)
    for n in range(1, 11):
        log.checkpoint_job(job, 800 * n, 123.5 * n, 0.0, 5.0 * n, 1.0, t0 + timedelta(seconds=5 * n))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.timeout(60)
def test_recovery_after_a_crash_closes_the_open_job_and_session(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    proc = subprocess.run([sys.executable, "-c", _CRASHING_DAEMON, str(path)], cwd=REPO, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    now = T0 + timedelta(hours=12)
    with UsageLog.open(path) as log:
        assert log.integrity_check() == ["ok"]
        report = log.recover(now)
        assert (report.jobs, report.sessions) == ([2], [1])
        job = log.job(2)
        assert job["status"] == "interrupted"
        assert (job["last_line_acked"], job["filament_mm"], job["running_s"]) == (8000, 1235.0, 50.0)
        assert job["filament_g"] == pytest.approx(1235.0 * PLA.grams_per_mm)
        assert job["ended"] == job["checkpoint_at"] == "2025-03-01T09:00:50Z"
        assert "2025-03-01T21:00:00Z" in job["reason"]
        assert log.job(1)["status"] == "completed"  # finished before the crash: left alone
        session = log.session(1)
        assert (session["ended"], session["end_reason"]) == ("2025-03-01T09:00:50Z", "interrupted")
        ended = [m.payload for m in log.pending_outbox() if m.kind == "job_ended"]
        assert [(p["job_id"], p["status"], p["filament_mm"]) for p in ended] == [
            (1, "completed", 100.0),
            (2, "interrupted", 1235.0),
        ]
        assert [m.kind for m in log.pending_outbox()][-1] == "session_ended"
        assert log.recover(now) == type(report)()  # nothing left open the second time
        assert log.integrity_check() == ["ok"]


def test_naive_datetimes_are_refused(log: UsageLog) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        log.record_fault("estop", "", "m", datetime(2025, 1, 1))
