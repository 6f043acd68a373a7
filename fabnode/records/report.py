"""Reports over the usage log: the job list and totals by member, machine or month, as table/CSV/JSON.

Dates are UTC days (the log stores UTC); `until` is inclusive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlite_utils import Database

from fabnode.tables import cell, hms, render_table, write_csv

FORMATS = ("table", "csv", "json")
SUMMARY_KEYS = {"member": "coalesce(m.name, '-')", "machine": "j.machine", "month": "substr(j.started, 1, 7)"}
JOB_COLUMNS = (
    "job_id", "member", "machine", "file_name", "started", "duration_s", "status",
    "filament_mm", "filament_g", "laser_on_s", "cost",
)  # fmt: skip
SUMMARY_COLUMNS = ("jobs", "hours", "filament_g", "laser_hours", "cost")


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a report covers."""

    since: date | None = None
    until: date | None = None  # inclusive
    member: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition (on `j` jobs and `m` members) and its parameters."""
        clauses, params = ["1 = 1"], []
        if self.since is not None:
            clauses.append("j.started >= ?")
            params.append(self.since.isoformat())
        if self.until is not None:
            clauses.append("j.started < ?")
            params.append((self.until + timedelta(days=1)).isoformat())
        if self.member is not None:
            clauses.append("m.name = ?")
            params.append(self.member)
        return " AND ".join(clauses), params


def member_exists(db: Database, name: str) -> bool:
    """Whether a member of this name (current or removed) is in the log."""
    return db.execute("SELECT 1 FROM members WHERE name = ?", [name]).fetchone() is not None


def list_jobs(db: Database, flt: JobFilter) -> list[dict[str, Any]]:
    """Jobs oldest first, with the member's name, the running time and the material used."""
    where, params = flt.where()
    sql = (
        "SELECT j.id AS job_id, coalesce(m.name, '-') AS member, j.machine, j.file_name, j.started, "
        "j.running_s AS duration_s, j.status, j.filament_mm, j.filament_g, j.laser_on_s, j.cost "
        f"FROM jobs j LEFT JOIN members m ON m.id = j.member_id WHERE {where} ORDER BY j.started, j.id"
    )
    return list(db.query(sql, params))


def list_sessions(db: Database, flt: JobFilter) -> list[dict[str, Any]]:
    """Sessions oldest first, with the member's name, how long they lasted and how many jobs ran."""
    where, params = flt.where()
    where = where.replace("j.started", "s.started")
    sql = (
        "SELECT s.id AS session_id, coalesce(m.name, '-') AS member, s.machine, s.started, s.ended, "
        "coalesce(s.duration_s, (julianday(s.ended) - julianday(s.started)) * 86400.0) AS duration_s, "
        "s.end_reason, s.maintenance, (SELECT count(*) FROM jobs WHERE session_id = s.id) AS jobs "
        f"FROM sessions s LEFT JOIN members m ON m.id = s.member_id WHERE {where} ORDER BY s.started, s.id"
    )
    return list(db.query(sql, params))


def sessions_as(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """The session list in one of FORMATS."""
    columns = (
        "session_id",
        "member",
        "machine",
        "started",
        "ended",
        "duration_s",
        "end_reason",
        "maintenance",
        "jobs",
    )
    if fmt == "json":
        return json.dumps([{**r, "maintenance": bool(r["maintenance"])} for r in rows], indent=2)
    if fmt == "csv":
        return write_csv(columns, [[r[c] for c in columns] for r in rows])
    headers = ["session", "member", "machine", "started", "ended", "duration", "end", "jobs"]
    table = [
        [str(r["session_id"]), r["member"] + (" (maintenance)" if r["maintenance"] else ""), r["machine"],
         r["started"], r["ended"] or "open", hms(r["duration_s"]) if r["ended"] else "-",
         r["end_reason"] or "-", str(r["jobs"])]
        for r in rows
    ]  # fmt: skip
    return render_table(headers, table)


def summarise(db: Database, by: str, flt: JobFilter) -> list[dict[str, Any]]:
    """Totals per member, machine or month: jobs, running hours, filament grams, laser hours, cost."""
    if by not in SUMMARY_KEYS:
        raise ValueError(f"summary by {by!r}: expected one of {', '.join(SUMMARY_KEYS)}")
    where, params = flt.where()
    sql = (
        f"SELECT {SUMMARY_KEYS[by]} AS {by}, count(*) AS jobs, "
        "round(total(j.running_s) / 3600.0, 4) AS hours, round(total(j.filament_g), 3) AS filament_g, "
        "round(total(j.laser_on_s) / 3600.0, 4) AS laser_hours, round(total(j.cost), 2) AS cost "
        f"FROM jobs j LEFT JOIN members m ON m.id = j.member_id WHERE {where} GROUP BY 1 ORDER BY 1"
    )
    return list(db.query(sql, params))


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The sum of summary rows."""
    out: dict[str, Any] = {"jobs": sum(r["jobs"] for r in rows)}
    for key, digits in (("hours", 4), ("filament_g", 3), ("laser_hours", 4), ("cost", 2)):
        out[key] = round(sum(r[key] for r in rows), digits)
    return out


def jobs_as(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """The job list in one of FORMATS."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2)
    if fmt == "csv":
        return write_csv(JOB_COLUMNS, [[r[c] for c in JOB_COLUMNS] for r in rows])
    headers = [
        "job",
        "member",
        "machine",
        "file",
        "started",
        "duration",
        "status",
        "filament",
        "laser",
        "cost",
    ]
    table = [
        [str(r["job_id"]), r["member"], r["machine"], r["file_name"], r["started"], hms(r["duration_s"]),
         r["status"], _materialcell(r), hms(r["laser_on_s"]) if r["laser_on_s"] else "-", cell(r["cost"])]
        for r in rows
    ]  # fmt: skip
    return render_table(headers, table)


def _materialcell(row: dict[str, Any]) -> str:
    if not row["filament_mm"]:
        return "-"
    grams = f" {row['filament_g']:.1f} g" if row["filament_g"] is not None else ""
    return f"{row['filament_mm'] / 1000:.2f} m{grams}"


def summary_as(by: str, rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Summary rows (and their total, except in CSV) in one of FORMATS."""
    columns = (by, *SUMMARY_COLUMNS)
    if fmt == "json":
        return json.dumps({"by": by, "rows": list(rows), "total": totals(rows)}, indent=2)
    if fmt == "csv":
        return write_csv(columns, [[r[c] for c in columns] for r in rows])
    digits = {"hours": 2, "filament_g": 1, "laser_hours": 2, "cost": 2}
    table = [[cell(r[c], digits.get(c, 2)) for c in columns] for r in [*rows, {by: "total", **totals(rows)}]]
    return render_table(list(columns), table)
