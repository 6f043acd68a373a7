"""The usage log: one SQLite file per node with sessions, jobs, access events, faults and the outbox.

Job history is kept the way Moonraker keeps it: a job row is inserted `in_progress` when it starts,
its progress is checkpointed cheaply while it runs, it is completed at the end, and at start-up
`recover()` closes whatever a crash or a power cut left open as `interrupted`, with what the last
checkpoint knew.

Every record that telemetry reports enqueues its outbox message IN THE SAME TRANSACTION, so a
record without its message (or a message without its record) cannot exist. Payloads carry no names,
badge ids or file names: a member is their keyed `member_hash`.

Durability (power can go at any moment): the file is in WAL mode with `synchronous=NORMAL`, which
never corrupts it but may lose the last commits on a power cut. Checkpoints use that: losing a few
seconds of progress is fine. Every other record (session and job start and end, access, fault,
recovery) commits with `synchronous=FULL`, which fsyncs the WAL before COMMIT returns, so a job that
ended completed cannot come back as `interrupted`; since the WAL is appended in order, that fsync also
makes every earlier checkpoint durable.

Wall-clock times (`now`: an aware datetime) are stored as UTC ISO-8601; durations (`running_s`,
`paused_s`, `duration_s`) come from the caller's monotonic clock. One object may be shared between
threads (a lock serialises calls; direct queries on a shared one go through `locked()`); a second
process opens its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlite_utils import Database

from fabnode.records.rows import (
    ABORTED,
    ABORTED_PREFIX,
    CANCELLED,
    COMPLETED,
    END_STATUSES,
    FAILED,
    IN_PROGRESS,
    INTERRUPTED,
    KIND_ACCESS,
    KIND_FAULT,
    KIND_JOB_ENDED,
    KIND_JOB_STARTED,
    KIND_SESSION_ENDED,
    KIND_SESSION_STARTED,
    KIND_STATE,
    JobRates,
    OutboxMessage,
    RecoveryReport,
    grams_and_cost,
    job_payload,
    outbox_figures,
    outbox_message,
    session_payload,
)
from fabnode.records.schema import (
    JOB_SOURCES,
    UsageLogError,
    migrate,
    schema_version,
    utc_iso,
    write_transaction,
)

__all__ = [  # the row vocabulary is named from the usage log too
    "ABORTED",
    "ABORTED_PREFIX",
    "CANCELLED",
    "COMPLETED",
    "END_STATUSES",
    "FAILED",
    "INTERRUPTED",
    "IN_PROGRESS",
    "KIND_ACCESS",
    "KIND_FAULT",
    "KIND_JOB_ENDED",
    "KIND_JOB_STARTED",
    "KIND_SESSION_ENDED",
    "KIND_SESSION_STARTED",
    "KIND_STATE",
    "JobRates",
    "OutboxMessage",
    "RecoveryReport",
    "UsageLog",
    "UsageLogError",
]

# What finish_job may set; None keeps the last checkpoint's value (grams and cost: computed).
_END_FIGURES = ("last_line_acked", "filament_mm", "laser_on_s", "running_s", "paused_s", "filament_g", "cost")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[_P, _R]) -> Callable[_P, _R]:
    @wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class UsageLog:
    """The node's usage database. Open with `UsageLog.open(path)`."""

    def __init__(self, db: Database, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path) -> UsageLog:
        """Open (creating it and its folder if needed) and migrate the usage database at `path`."""
        path = Path(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False, isolation_level=None)
        db = Database(conn)
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            db.enable_wal()
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            migrate(db, str(path))
        except sqlite3.DatabaseError as exc:
            db.close()
            raise UsageLogError(f"{path}: not a usable fabnode usage database ({exc})") from exc
        except BaseException:
            db.close()
            raise
        return cls(db, path)

    @property
    def db(self) -> Database:
        """The sqlite-utils database (fabnode.records.members and the reports query it); see `locked()`."""
        return self._db

    @contextmanager
    def locked(self) -> Iterator[Database]:
        """The database, with this object's lock held: how a log shared between threads is queried
        directly (one connection: another thread's transaction would break into the query's)."""
        with self._lock:
            yield self._db

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return schema_version(self._db)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> UsageLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers (called inside a transaction) --------------------------------------------------

    def _member_hash(self, member_id: int | None) -> str | None:
        if member_id is None:
            return None
        row = self._db.execute("SELECT member_hash FROM members WHERE id = ?", [member_id]).fetchone()
        return None if row is None else str(row[0])

    def _row(self, table: str, row_id: int) -> dict[str, Any]:
        rows = list(self._db.query(f"SELECT * FROM {table} WHERE id = ?", [row_id]))
        if not rows:
            raise UsageLogError(f"{self.path}: no {table[:-1]} with id {row_id}")
        return rows[0]

    def _enqueue(self, kind: str, payload: Mapping[str, Any], now: datetime) -> int:
        cur = self._db.execute(
            "INSERT INTO outbox (msg_id, kind, payload, created) VALUES (?, ?, ?, ?)",
            [uuid.uuid4().hex, kind, json.dumps(dict(payload), sort_keys=True), utc_iso(now)],
        )
        return int(cur.lastrowid or 0)

    def _session_payload(self, session: Mapping[str, Any]) -> dict[str, Any]:
        return session_payload(session, self._member_hash(session["member_id"]))

    def _job_payload(self, job: Mapping[str, Any]) -> dict[str, Any]:
        return job_payload(job, self._member_hash(job["member_id"]))

    # --- sessions ---------------------------------------------------------------------------------

    @_locked
    def open_session(
        self, member_id: int | None, machine: str, now: datetime, maintenance: bool = False
    ) -> int:
        """Record that a member unlocked the machine; return the session id."""
        with write_transaction(self._db, durable=True):
            cur = self._db.execute(
                "INSERT INTO sessions (member_id, machine, started, maintenance) VALUES (?, ?, ?, ?)",
                [member_id, machine, utc_iso(now), int(maintenance)],
            )
            session_id = int(cur.lastrowid or 0)
            self._enqueue(KIND_SESSION_STARTED, self._session_payload(self._row("sessions", session_id)), now)
        return session_id

    @_locked
    def close_session(
        self, session_id: int, now: datetime, end_reason: str, duration_s: float | None = None
    ) -> None:
        """Record the end of a session (`end_reason`: e.g. badge, idle, fault); an error if already closed."""
        with write_transaction(self._db, durable=True):
            session = self._row("sessions", session_id)
            if session["ended"] is not None:
                raise UsageLogError(f"session {session_id} already ended at {session['ended']}")
            self._db.execute(
                "UPDATE sessions SET ended = ?, end_reason = ?, duration_s = ? WHERE id = ?",
                [utc_iso(now), end_reason, duration_s, session_id],
            )
            self._enqueue(KIND_SESSION_ENDED, self._session_payload(self._row("sessions", session_id)), now)

    # --- jobs -------------------------------------------------------------------------------------

    @_locked
    def start_job(
        self,
        session_id: int | None,
        member_id: int | None,
        machine: str,
        file_name: str,
        now: datetime,
        *,
        file_sha256: str | None = None,
        lines_total: int | None = None,
        material: str | None = None,
        rates: JobRates = JobRates(),  # frozen: sharing the default is safe
        source: str = "cli",
        uploaded_by: str | None = None,
    ) -> int:
        """Insert a job `in_progress`; return its id. `source`: cli, inbox or upload (then `uploaded_by`,
        the key owner's name or "lab")."""
        if source not in JOB_SOURCES:
            raise UsageLogError(f"job source {source!r}: expected one of {', '.join(JOB_SOURCES)}")
        with write_transaction(self._db, durable=True):
            cur = self._db.execute(
                "INSERT INTO jobs (session_id, member_id, machine, file_name, file_sha256, lines_total, "
                "started, material, grams_per_mm, price_per_kg, price_per_laser_hour, source, uploaded_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [session_id, member_id, machine, file_name, file_sha256, lines_total, utc_iso(now),
                 material, rates.grams_per_mm, rates.price_per_kg, rates.price_per_laser_hour, source,
                 uploaded_by],
            )  # fmt: skip
            job_id = int(cur.lastrowid or 0)
            self._enqueue(KIND_JOB_STARTED, self._job_payload(self._row("jobs", job_id)), now)
        return job_id

    @_locked
    def checkpoint_job(
        self,
        job_id: int,
        last_line_acked: int,
        filament_mm: float,
        laser_on_s: float,
        running_s: float,
        paused_s: float,
        now: datetime,
    ) -> None:
        """Record a running job's progress: one UPDATE, not fsynced (see the module's note)."""
        cur = self._db.execute(
            "UPDATE jobs SET last_line_acked = ?, filament_mm = ?, laser_on_s = ?, running_s = ?, "
            "paused_s = ?, checkpoint_at = ? WHERE id = ? AND status = 'in_progress'",
            [last_line_acked, filament_mm, laser_on_s, running_s, paused_s, utc_iso(now), job_id],
        )
        if cur.rowcount == 0:
            raise UsageLogError(f"job {job_id} is not in progress: cannot checkpoint it")

    @_locked
    def finish_job(
        self,
        job_id: int,
        status: str,
        reason: str,
        now: datetime,
        *,
        last_line_acked: int | None = None,
        filament_mm: float | None = None,
        laser_on_s: float | None = None,
        running_s: float | None = None,
        paused_s: float | None = None,
        filament_g: float | None = None,
        cost: float | None = None,
    ) -> dict[str, Any]:
        """End a job (completed|cancelled|failed|aborted|interrupted), enqueue its `job_ended`; the row.

        Figures not given keep the last checkpoint's; grams and cost are computed from the job's
        rates unless given.
        """
        if status not in END_STATUSES:
            raise UsageLogError(f"job status {status!r}: expected one of {', '.join(sorted(END_STATUSES))}")
        with write_transaction(self._db, durable=True):
            job = self._row("jobs", job_id)
            if job["status"] != IN_PROGRESS:
                raise UsageLogError(f"job {job_id} already ended as {job['status']}")
            self._end_job(job, status, reason, utc_iso(now), {
                "last_line_acked": last_line_acked, "filament_mm": filament_mm, "laser_on_s": laser_on_s,
                "running_s": running_s, "paused_s": paused_s, "filament_g": filament_g, "cost": cost,
            })  # fmt: skip
            self._enqueue(KIND_JOB_ENDED, self._job_payload(self._row("jobs", job_id)), now)
            return self._row("jobs", job_id)

    def _end_job(
        self, job: dict[str, Any], status: str, reason: str, ended: str, given: dict[str, Any]
    ) -> None:
        values = {k: (job[k] if v is None else v) for k, v in given.items()}
        grams, cost = grams_and_cost(job, values["filament_mm"], values["laser_on_s"])
        values["filament_g"] = grams if given["filament_g"] is None else given["filament_g"]
        values["cost"] = cost if given["cost"] is None else given["cost"]
        values.update(status=status, reason=reason, ended=ended)
        assignments = ", ".join(f"{k} = ?" for k in values)
        self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", [*values.values(), job["id"]])

    @_locked
    def job(self, job_id: int) -> dict[str, Any]:
        """One job's row."""
        return self._row("jobs", job_id)

    @_locked
    def session(self, session_id: int) -> dict[str, Any]:
        """One session's row."""
        return self._row("sessions", session_id)

    # --- events -----------------------------------------------------------------------------------

    @_locked
    def record_access(
        self, badge_hash: str, machine: str, member_id: int | None, granted: bool, reason: str, now: datetime
    ) -> int:
        """Record a badge tap and its decision; return the event id."""
        with write_transaction(self._db, durable=True):
            cur = self._db.execute(
                "INSERT INTO access_events (time, machine, badge_hash, member_id, granted, reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [utc_iso(now), machine, badge_hash, member_id, int(granted), reason],
            )
            payload = {"time": utc_iso(now), "machine": machine, "member_hash": self._member_hash(member_id),
                       "granted": granted, "reason": reason}  # fmt: skip
            self._enqueue(KIND_ACCESS, payload, now)
            return int(cur.lastrowid or 0)

    @_locked
    def record_fault(self, kind: str, detail: str, machine: str, now: datetime) -> int:
        """Record a fault (e-stop, lid open, firmware halted...); return its id."""
        with write_transaction(self._db, durable=True):
            cur = self._db.execute(
                "INSERT INTO faults (time, machine, kind, detail) VALUES (?, ?, ?, ?)",
                [utc_iso(now), machine, kind, detail],
            )
            payload = {"time": utc_iso(now), "machine": machine, "kind": kind, "detail": detail}
            self._enqueue(KIND_FAULT, payload, now)
            return int(cur.lastrowid or 0)

    # --- start-up ---------------------------------------------------------------------------------

    @_locked
    def recover(self, now: datetime) -> RecoveryReport:
        """Close the jobs and sessions a crash left open as `interrupted`, with their last checkpoint."""
        report = RecoveryReport()
        note = f"fabnode stopped while it was open; closed at start-up {utc_iso(now)}"
        with write_transaction(self._db, durable=True):
            for job in list(self._db.query("SELECT * FROM jobs WHERE status = 'in_progress' ORDER BY id")):
                # The job ended somewhere after its last checkpoint: the checkpoint is the best we know.
                ended = job["checkpoint_at"] or job["started"]
                self._end_job(job, INTERRUPTED, note, ended, dict.fromkeys(_END_FIGURES))
                self._enqueue(KIND_JOB_ENDED, self._job_payload(self._row("jobs", job["id"])), now)
                report.jobs.append(job["id"])
            for session in list(self._db.query("SELECT * FROM sessions WHERE ended IS NULL ORDER BY id")):
                self._close_interrupted_session(session, now)
                report.sessions.append(session["id"])
        return report

    def _close_interrupted_session(self, session: Mapping[str, Any], now: datetime) -> None:
        last_job_end = self._db.execute(
            "SELECT max(ended) FROM jobs WHERE session_id = ?", [session["id"]]
        ).fetchone()[0]
        ended = max(session["started"], last_job_end or "")
        self._db.execute(
            "UPDATE sessions SET ended = ?, end_reason = ? WHERE id = ?", [ended, INTERRUPTED, session["id"]]
        )
        self._enqueue(KIND_SESSION_ENDED, self._session_payload(self._row("sessions", session["id"])), now)

    @_locked
    def integrity_check(self) -> list[str]:
        """`PRAGMA integrity_check`: ["ok"] for a sound file."""
        return [str(row[0]) for row in self._db.execute("PRAGMA integrity_check").fetchall()]

    # --- outbox -----------------------------------------------------------------------------------

    @_locked
    def pending_outbox(self, limit: int = 100, unsent_only: bool = False) -> list[OutboxMessage]:
        """Messages not yet acknowledged by the broker, oldest first (only never-sent ones if asked)."""
        where = "acked_at IS NULL" + (" AND sent_at IS NULL" if unsent_only else "")
        rows = self._db.query(f"SELECT * FROM outbox WHERE {where} ORDER BY id LIMIT ?", [limit])
        return [
            OutboxMessage(
                r["id"], r["msg_id"], r["kind"], json.loads(r["payload"]), r["created"], r["sent_at"]
            )
            for r in rows
        ]

    def _mark(self, column: str, seqs: Iterable[int], now: datetime) -> int:
        ids = list(seqs)
        if not ids:
            return 0
        with write_transaction(self._db):
            marks = ", ".join("?" * len(ids))
            cur = self._db.execute(
                f"UPDATE outbox SET {column} = ? WHERE id IN ({marks}) AND {column} IS NULL",
                [utc_iso(now), *ids],
            )
        return int(cur.rowcount)

    @_locked
    def mark_outbox_sent(self, seqs: Iterable[int], now: datetime) -> int:
        """Note that these messages went to the broker (not yet acknowledged); return how many changed."""
        return self._mark("sent_at", seqs, now)

    @_locked
    def prune_outbox(self, acked_before: datetime) -> int:
        """Delete messages acknowledged before this time; return how many went."""
        with write_transaction(self._db):
            cur = self._db.execute(
                "DELETE FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?", [utc_iso(acked_before)]
            )
        return int(cur.rowcount)

    # --- outbox: what telemetry needs beyond the above (fabnode.telemetry.publisher) --------------------

    @_locked
    def enqueue_state(self, state: str, now: datetime, detail: str | None = None) -> int:
        """Enqueue a `state` message (sent retained) for the machine's new state; return its seq."""
        payload = {"state": str(state), "time": utc_iso(now), "detail": detail}
        with write_transaction(self._db, durable=True):
            return self._enqueue(KIND_STATE, payload, now)

    @_locked
    def outbox_after(self, seq: int, limit: int = 100) -> list[OutboxMessage]:
        """Unacknowledged messages with a sequence number above `seq`, oldest first."""
        rows = self._db.query(
            "SELECT * FROM outbox WHERE acked_at IS NULL AND id > ? ORDER BY id LIMIT ?", [seq, limit]
        )
        return [outbox_message(r) for r in rows]

    @_locked
    def outbox_msg_id(self, seq: int) -> str | None:
        """The msg_id of message `seq`, or None when there is no such row (never was, or pruned)."""
        row = self._db.execute("SELECT msg_id FROM outbox WHERE id = ?", [seq]).fetchone()
        return None if row is None else str(row[0])

    @_locked
    def mark_outbox_acked_through(self, seq: int, now: datetime) -> int:
        """The region stored every message up to `seq`: mark them acknowledged; return how many changed."""
        with write_transaction(self._db):
            cur = self._db.execute(
                "UPDATE outbox SET acked_at = ? WHERE id <= ? AND acked_at IS NULL", [utc_iso(now), seq]
            )
        return int(cur.rowcount)

    @_locked
    def last_outbox_seq(self, kind: str | None = None) -> int:
        """The highest sequence number ever given (of this kind), 0 when none."""
        if kind is None:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        else:
            row = self._db.execute("SELECT max(id) FROM outbox WHERE kind = ?", [kind]).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @_locked
    def outbox_has_newer(self, kind: str, seq: int) -> bool:
        """Whether a message of this kind came after `seq` (a range scan from `seq`, not the table)."""
        cur = self._db.execute("SELECT 1 FROM outbox WHERE id > ? AND kind = ? LIMIT 1", [seq, kind])
        return cur.fetchone() is not None

    @_locked
    def outbox_stats(self) -> dict[str, Any]:
        """Backlog figures for `fabnode telemetry status`: counts, oldest unacked, last sent/acked."""
        return outbox_figures(self._db, self.last_outbox_seq())

    @_locked
    def outbox_messages(self, seqs: Iterable[int]) -> list[OutboxMessage]:
        """These unacknowledged messages (those still waiting), oldest first."""
        ids = list(seqs)
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        where = f"acked_at IS NULL AND id IN ({marks})"
        rows = self._db.query(f"SELECT * FROM outbox WHERE {where} ORDER BY id", ids)
        return [outbox_message(r) for r in rows]
