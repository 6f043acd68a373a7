"""`fabnode region report`: per lab and machine, what the region's store holds.

Hours in use (sessions), jobs and their outcomes, running hours, filament (kg), laser hours, cost,
distinct members (by `member_hash`), faults, and the gaps in each node's sequence numbers (a node that
lost records or is still catching up). The figures are computed the way each node's own
`fabnode usage` computes them, so the region's totals equal the sum of the nodes' (`job_hours`,
`filament_kg` x 1000, `laser_hours` and `cost` against `usage summary --by machine`; `hours` against
the sum of `usage sessions` durations). The SQL is portable: the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from fabnode.region.store import RegionStore
from fabnode.tables import render_table

__all__ = ["JOB_OUTCOMES", "MachineFigures", "RegionReport", "build_report", "report_csv", "report_json",
           "report_table", "session_hours", "weekly_hours"]  # fmt: skip

JOB_OUTCOMES = ("completed", "cancelled", "failed", "interrupted", "in_progress")
FIGURES = ("sessions", "hours", "jobs", "job_hours", "filament_kg", "laser_hours", "cost", "members",
           "faults")  # fmt: skip
_DIGITS = {"hours": 4, "job_hours": 4, "filament_kg": 6, "laser_hours": 4, "cost": 2}


@dataclass(slots=True)
class MachineFigures:
    """One node's figures (a node is one lab's machine)."""

    lab: str
    machine: str
    sessions: int = 0
    hours: float = 0.0  # sessions: time the machine was unlocked
    jobs: int = 0
    job_hours: float = 0.0  # jobs: running time
    filament_kg: float = 0.0
    laser_hours: float = 0.0
    cost: float = 0.0
    members: int = 0
    faults: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JOB_OUTCOMES, 0))
    gaps: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)
    rejected: int = 0  # records the region set aside (invalid, or refused by the database): acked past
    rejected_seqs: list[tuple[int, int]] = field(default_factory=list)
    acked_seq: int = 0
    max_seq: int = 0
    last_seen: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of one machine."""
        out: dict[str, Any] = {"lab": self.lab, "machine": self.machine}
        out.update({k: _round(k, getattr(self, k)) for k in FIGURES})
        out.update(outcomes=dict(self.outcomes), gaps=self.gaps, missing=[list(r) for r in self.missing],
                   rejected=self.rejected, rejected_seqs=[list(r) for r in self.rejected_seqs],
                   acked_seq=self.acked_seq, max_seq=self.max_seq, last_seen=self.last_seen)  # fmt: skip
        return out


@dataclass(slots=True)
class RegionReport:
    """Every machine's figures, the region's totals, and hours per week per lab."""

    since: date | None
    machines: list[MachineFigures]
    members: int  # distinct over the region, not a sum
    weeks: dict[str, dict[str, float]]  # lab -> week's Monday (YYYY-MM-DD) -> hours

    def totals(self) -> dict[str, Any]:
        """Sums over machines (members: distinct over the region)."""
        out: dict[str, Any] = {k: _round(k, sum(getattr(m, k) for m in self.machines)) for k in FIGURES}
        out["members"] = self.members
        out["outcomes"] = {k: sum(m.outcomes[k] for m in self.machines) for k in JOB_OUTCOMES}
        out["gaps"] = sum(m.gaps for m in self.machines)
        out["rejected"] = sum(m.rejected for m in self.machines)
        return out


def _round(key: str, value: Any) -> Any:
    return round(value, _DIGITS[key]) if key in _DIGITS else value


def _since_clause(column: str, since: date | None) -> tuple[str, list[Any]]:
    # Times are stored as UTC ISO-8601 text, which sorts like the time: the same test on both databases.
    return (f" WHERE {column} >= ?", [since.isoformat()]) if since else ("", [])


def session_hours(started: str, ended: str | None, duration_s: float | None) -> float:
    """A session's length in hours: the node's monotonic duration, else end minus start (0 while open)."""
    if duration_s is not None:
        return float(duration_s) / 3600.0
    if ended is None:
        return 0.0
    return (_parse(ended) - _parse(started)).total_seconds() / 3600.0


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def build_report(store: RegionStore, since: date | None = None) -> RegionReport:
    """Compute the report from the store (records started on or after `since`, a UTC day)."""
    machines: dict[tuple[str, str], MachineFigures] = {}

    def node(lab: str, machine: str) -> MachineFigures:
        return machines.setdefault((lab, machine), MachineFigures(lab, machine))

    _add_nodes(store, node)
    _add_jobs(store, since, node)
    weeks = _add_sessions(store, since, node)
    where, params = _since_clause("started", since)
    members_sql = (f"SELECT lab, machine, member_hash FROM jobs{where} UNION "
                   f"SELECT lab, machine, member_hash FROM sessions{where}")  # fmt: skip
    for lab, machine, count in store.query(
        f"SELECT lab, machine, count(DISTINCT member_hash) FROM ({members_sql}) u "
        "WHERE member_hash IS NOT NULL GROUP BY lab, machine",
        params * 2,
    ):
        node(lab, machine).members = int(count)
    region_members = store.query(f"SELECT count(DISTINCT member_hash) FROM ({members_sql}) u", params * 2)
    where, params = _since_clause("occurred_at", since)
    faults_where = f"{where} AND" if where else " WHERE"
    for lab, machine, count in store.query(
        f"SELECT lab, machine, count(*) FROM messages{faults_where} kind = 'fault' GROUP BY lab, machine",
        params,
    ):
        node(lab, machine).faults = int(count)
    ordered = [machines[k] for k in sorted(machines)]
    return RegionReport(since, ordered, int(region_members[0][0]), weeks)


def _add_nodes(store: RegionStore, node: Any) -> None:
    for lab, machine, acked, top, last_seen in store.query(
        "SELECT lab, machine, acked_seq, max_seq, last_seen FROM nodes"
    ):
        figures = node(lab, machine)
        figures.acked_seq, figures.max_seq, figures.last_seen = int(acked), int(top), last_seen
        figures.gaps, figures.missing = store.gaps(lab, machine)
        seqs = store.rejected_seqs(lab, machine)
        figures.rejected, figures.rejected_seqs = len(seqs), _spans(seqs)


def _spans(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted numbers as (first, last) runs: 3, 4, 5, 9 -> (3, 5), (9, 9)."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def _add_jobs(store: RegionStore, since: date | None, node: Any) -> None:
    where, params = _since_clause("started", since)
    rows = store.query(
        "SELECT lab, machine, status, count(*), sum(running_s), sum(coalesce(filament_g, 0)), "
        f"sum(laser_on_s), sum(coalesce(cost, 0)) FROM jobs{where} GROUP BY lab, machine, status",
        params,
    )
    for lab, machine, status, count, running_s, grams, laser_s, cost in rows:
        figures = node(lab, machine)
        figures.outcomes[status] = figures.outcomes.get(status, 0) + int(count)
        figures.jobs += int(count)
        figures.job_hours += float(running_s or 0) / 3600.0
        figures.filament_kg += float(grams or 0) / 1000.0
        figures.laser_hours += float(laser_s or 0) / 3600.0
        figures.cost += float(cost or 0)


def _add_sessions(store: RegionStore, since: date | None, node: Any) -> dict[str, dict[str, float]]:
    where, params = _since_clause("started", since)
    weeks: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for lab, machine, started, ended, duration_s in store.query(
        f"SELECT lab, machine, started, ended, duration_s FROM sessions{where}", params
    ):
        hours = session_hours(started, ended, duration_s)
        figures = node(lab, machine)
        figures.sessions += 1
        figures.hours += hours
        day = _parse(started).date()
        weeks[lab][(day - timedelta(days=day.weekday())).isoformat()] += hours
    return {lab: dict(sorted(w.items())) for lab, w in sorted(weeks.items())}


def weekly_hours(report: RegionReport) -> dict[str, dict[str, float]]:
    """Hours in use per lab per week (the week's Monday, UTC), rounded as printed."""
    return {lab: {w: round(h, 4) for w, h in weeks.items()} for lab, weeks in report.weeks.items()}


def report_json(report: RegionReport) -> str:
    """The report as JSON: `since`, `totals`, `machines` and `weeks`."""
    return json.dumps({
        "since": report.since.isoformat() if report.since else None,
        "totals": report.totals(),
        "machines": [m.as_dict() for m in report.machines],
        "weeks": weekly_hours(report),
    }, indent=2)  # fmt: skip


_CSV_COLUMNS = ("lab", "machine", *FIGURES, *JOB_OUTCOMES, "gaps", "acked_seq", "max_seq", "last_seen",
                "rejected")  # fmt: skip


def report_csv(report: RegionReport) -> str:
    """One row per machine (no totals row: a spreadsheet sums them)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for m in report.machines:
        flat = {**m.as_dict(), **m.outcomes}
        writer.writerow(["" if flat[c] is None else flat[c] for c in _CSV_COLUMNS])
    return buf.getvalue().rstrip("\n")


def report_table(report: RegionReport) -> str:
    """A table for people: one line per machine, a total, then the nodes with gaps."""
    headers = ["lab", "machine", "sessions", "hours", "jobs", "done", "cancel", "failed", "intr",
               "job h", "kg", "laser h", "members", "gaps"]  # fmt: skip

    def line(label: Sequence[str], f: dict[str, Any]) -> list[str]:
        o = f["outcomes"]
        return [*label, str(f["sessions"]), f"{f['hours']:.2f}", str(f["jobs"]), str(o["completed"]),
                str(o["cancelled"]), str(o["failed"]), str(o["interrupted"]), f"{f['job_hours']:.2f}",
                f"{f['filament_kg']:.3f}", f"{f['laser_hours']:.2f}", str(f["members"]),
                str(f["gaps"])]  # fmt: skip

    rows = [line((m.lab, m.machine), m.as_dict()) for m in report.machines]
    rows.append(line(("total", ""), report.totals()))
    out = [render_table(headers, rows)]
    for m in report.machines:
        if m.missing:
            spans = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in m.missing[:10])
            more = " ..." if len(m.missing) > 10 else ""
            out.append(f"{m.lab}/{m.machine}: stored up to seq {m.acked_seq}, missing {spans}{more}")
    for m in report.machines:
        if m.rejected_seqs:
            spans = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in m.rejected_seqs[:10])
            more = " ..." if len(m.rejected_seqs) > 10 else ""
            out.append(f"{m.lab}/{m.machine}: {m.rejected} records rejected, acknowledged past (seq {spans}"
                       f"{more}): see `fabnode region rejected`")  # fmt: skip
    return "\n".join(out)
