"""The demo's last check: the region's totals against the sum of what each node recorded itself.

Each node's figures are the sums of its own job and session lists (`fabnode usage --format json`,
`fabnode usage sessions --format json`), the numbers `fabnode usage summary` totals; the region's come
from `fabnode region report --json`. Pure: JSON in, rows out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fabnode.tables import render_table


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure compared: its label, its key on each side, and how the region rounds it."""

    label: str
    node_key: str
    region_key: str
    scale: float = 1.0  # the region's unit -> the unit shown (hours -> s, kg -> g)
    region_digits: int | None = None  # the region rounds its total to these digits; None: a count
    digits: int = 0  # shown with

    def as_region_prints(self, value: float) -> float:
        """A node-side value (in the shown unit) rounded as the region rounds its total."""
        if self.region_digits is None:
            return value
        return round(value / self.scale, self.region_digits) * self.scale

    def agree(self, nodes: float, region: float) -> bool:
        """Equal counts; equal figures within one step of the region's rounding."""
        if self.region_digits is None:
            return nodes == region
        return abs(nodes - region) <= 10.0 ** -self.region_digits * self.scale * 1.001


NOBODY = (None, "-")
# Node values are exact sums of the node's job and session lists; the region rounds its totals
# (hours to 4 digits, kg to 6, cost to 2), so the nodes' total is shown rounded the same way.
FIGURES = (
    Figure("jobs", "jobs", "jobs"),
    Figure("sessions", "sessions", "sessions"),
    Figure("time unlocked, s (wall clock)", "session_s", "hours", 3600.0, 4, 1),
    Figure("time running jobs, s (wall clock)", "job_s", "job_hours", 3600.0, 4, 1),
    Figure("filament, g", "filament_g", "filament_kg", 1000.0, 6, 3),
    Figure("laser on, s (machine time)", "laser_on_s", "laser_hours", 3600.0, 4, 1),
    Figure("cost", "cost", "cost", 1.0, 2, 2),
    Figure("members (distinct)", "members", "members"),
)


def node_figures(sessions: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One node's figures from its `usage sessions --format json` and `usage --format json`."""
    def total(rows: Sequence[Mapping[str, Any]], key: str) -> float:
        return sum(float(r[key] or 0.0) for r in rows)

    return {
        "jobs": len(jobs),
        "sessions": len(sessions),
        "session_s": total(sessions, "duration_s"),
        "job_s": total(jobs, "duration_s"),
        "filament_g": total(jobs, "filament_g"),
        "laser_on_s": total(jobs, "laser_on_s"),
        "cost": total(jobs, "cost"),
        "member_names": sorted({r["member"] for r in [*sessions, *jobs] if r.get("member") not in NOBODY}),
    }


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: each node's value, their sum, the region's value, and whether they agree."""

    label: str
    per_node: list[float]
    nodes: float
    region: float
    agree: bool
    digits: int


def compare(nodes: Mapping[str, Mapping[str, Any]], region_totals: Mapping[str, Any]) -> list[Row]:
    """Every figure of FIGURES; members are distinct over the lab (one lab secret: one hash per name)."""
    rows = []
    for f in FIGURES:
        if f.node_key == "members":
            per_node = [float(len(n["member_names"])) for n in nodes.values()]
            total = float(len({name for n in nodes.values() for name in n["member_names"]}))
        else:
            per_node = [float(n[f.node_key]) for n in nodes.values()]
            total = f.as_region_prints(sum(per_node))
        region = float(region_totals[f.region_key]) * f.scale
        rows.append(Row(f.label, per_node, total, region, f.agree(total, region), f.digits))
    return rows


def render(names: Sequence[str], rows: Sequence[Row]) -> str:
    """The comparison as a table: one column per node, the nodes' total, the region's, agree?"""
    def cell(value: float, digits: int) -> str:
        return f"{value:.{digits}f}"

    table = [[r.label, *(cell(v, r.digits) for v in r.per_node), cell(r.nodes, r.digits),
              cell(r.region, r.digits), "yes" if r.agree else "NO"] for r in rows]  # fmt: skip
    return render_table(["figure", *names, "nodes' total", "region", "agree"], table)
