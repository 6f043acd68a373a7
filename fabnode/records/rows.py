"""The usage log's vocabulary: a job row's statuses, the outbox's message kinds, the rates that turn
millimetres and seconds into grams and money, and the plain records the log hands out."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from drivers.events import JobStatus
from fabnode.machine.profile import Material
from fabnode.records.schema import JOB_STATUSES

IN_PROGRESS = "in_progress"  # a row's own states: open, or closed by recover() after a crash
INTERRUPTED = "interrupted"
COMPLETED, CANCELLED, FAILED = JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED
ABORTED = JobStatus.ABORTED
END_STATUSES = frozenset(JOB_STATUSES) - {IN_PROGRESS}
# The region's job schema knows no `aborted`: an abort goes out as today, failed with an "aborted: " reason.
_TELEMETRY_STATUS = {ABORTED: FAILED}
ABORTED_PREFIX = "aborted: "

# Outbox message kinds; the telemetry module maps them to topics.
KIND_SESSION_STARTED = "session_started"
KIND_SESSION_ENDED = "session_ended"
KIND_JOB_STARTED = "job_started"
KIND_JOB_ENDED = "job_ended"
KIND_ACCESS = "access"
KIND_FAULT = "fault"
KIND_STATE = "state"  # the machine's state, sent retained


@dataclass(frozen=True, slots=True)
class JobRates:
    """What turns a job's filament millimetres and laser seconds into grams and money."""

    grams_per_mm: float | None = None
    price_per_kg: float | None = None
    price_per_laser_hour: float | None = None

    @classmethod
    def for_material(cls, material: Material) -> JobRates:
        """Rates of a material from the machine profile."""
        area_mm2 = math.pi * (material.diameter_mm / 2) ** 2
        return cls(
            grams_per_mm=area_mm2 * material.density_g_cm3 / 1000.0,
            price_per_kg=material.price_per_kg,
            price_per_laser_hour=material.price_per_laser_hour,
        )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message waiting for the broker's acknowledgement; `seq` grows by one per message on this node."""

    seq: int
    msg_id: str  # unique, stable across retries: the region drops duplicates by it
    kind: str
    payload: dict[str, Any]
    created: str
    sent_at: str | None


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What `recover()` closed."""

    sessions: list[int] = field(default_factory=list)
    jobs: list[int] = field(default_factory=list)


def outbox_message(row: Mapping[str, Any]) -> OutboxMessage:
    """An outbox row as the message telemetry sends."""
    return OutboxMessage(
        row["id"], row["msg_id"], row["kind"], json.loads(row["payload"]), row["created"], row["sent_at"]
    )


def grams_and_cost(
    job: Mapping[str, Any], filament_mm: float, laser_on_s: float
) -> tuple[float | None, float | None]:
    """A job's grams and cost from its row's rates; None where a rate is unknown."""
    grams = filament_mm * job["grams_per_mm"] if job["grams_per_mm"] is not None else None
    parts = []
    if grams is not None and job["price_per_kg"] is not None:
        parts.append(grams * job["price_per_kg"] / 1000.0)
    if job["price_per_laser_hour"] is not None:
        parts.append(laser_on_s / 3600.0 * job["price_per_laser_hour"])
    return grams, (round(sum(parts), 4) if parts else None)


def session_payload(session: Mapping[str, Any], member_hash: str | None) -> dict[str, Any]:
    """A session row as telemetry sends it: the member as their keyed hash, never a name."""
    return {
        "session_id": session["id"],
        "machine": session["machine"],
        "member_hash": member_hash,
        "started": session["started"],
        "ended": session["ended"],
        "end_reason": session["end_reason"],
        "maintenance": bool(session["maintenance"]),
        "duration_s": session["duration_s"],
    }


def job_payload(job: Mapping[str, Any], member_hash: str | None) -> dict[str, Any]:
    """A job row as telemetry sends it: no file name, rates or uploader; an abort as the region knows it."""
    skip = {"id", "member_id", "file_name", "grams_per_mm", "price_per_kg", "price_per_laser_hour",
            "uploaded_by"}  # an upload's key owner is a name: it stays on the node
    payload = {k: v for k, v in job.items() if k not in skip}
    payload["job_id"] = job["id"]
    payload["member_hash"] = member_hash
    if payload.get("status") in _TELEMETRY_STATUS:
        payload["status"] = str(_TELEMETRY_STATUS[payload["status"]])
        reason = str(payload.get("reason") or "")
        payload["reason"] = reason if reason.startswith(ABORTED_PREFIX) else ABORTED_PREFIX + reason
    return payload


def outbox_figures(db: Database, last_seq: int) -> dict[str, Any]:
    """The outbox's backlog: counts, the oldest unacknowledged message, the last sent and acknowledged."""
    row = db.execute(
        "SELECT sum(acked_at IS NULL), sum(acked_at IS NULL AND sent_at IS NOT NULL), "
        "min(CASE WHEN acked_at IS NULL THEN id END), min(CASE WHEN acked_at IS NULL THEN created END), "
        "max(sent_at), max(acked_at), count(*) FROM outbox"
    ).fetchone()
    # Rows are acknowledged in order and pruned only once acknowledged, so everything below the
    # oldest unacknowledged row is acknowledged, pruned or not.
    acked_through = row[2] - 1 if row[2] is not None else last_seq
    return {
        "backlog": int(row[0] or 0),
        "sent_unacked": int(row[1] or 0),
        "oldest_unacked_seq": row[2],
        "oldest_unacked": row[3],
        "last_sent_at": row[4],
        "last_acked_at": row[5],
        "acked_through": acked_through,
        "last_seq": last_seq,
        "stored": int(row[6] or 0),
    }
