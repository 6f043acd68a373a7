"""`fabnode usage` and `fabnode usage summary` in each format, against jobs the test records."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fabnode.cli import members, usage
from fabnode.records import members as access
from fabnode.records.usage import JobRates, UsageLog

SECRET = b"s" * 32


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


RATES = JobRates(grams_per_mm=0.003, price_per_kg=20.0, price_per_laser_hour=12.0)
# (member, machine, file, start, running_s, status, filament_mm, laser_on_s)
JOBS = [
    ("Ada", "printer", "benchy.gcode", _utc(2025, 1, 20, 10), 3600.0, "completed", 10000.0, 0.0),
    ("Ada", "laser", "sign.nc", _utc(2025, 2, 3, 14), 1800.0, "completed", 0.0, 900.0),
    ("Bob", "printer", "vase.gcode", _utc(2025, 2, 10, 9), 5400.0, "failed", 2000.0, 0.0),
    ("Bob", "laser", "box.nc", _utc(2025, 2, 28, 16), 600.0, "cancelled", 0.0, 300.0),
]


def _app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    members.register(app)
    usage.register(app)
    return app


@pytest.fixture
def state(tmp_path: Path) -> Path:
    with UsageLog.open(tmp_path / "usage.db") as log:
        ids = {name: access.add_member(log.db, SECRET, name, uid, now=JOBS[0][3])
               for name, uid in (("Ada", "04a22b1c"), ("Bob", "04112233"))}  # fmt: skip
        for name, machine, file_name, start, running_s, status, mm, laser_s in JOBS:
            job = log.start_job(None, ids[name], machine, file_name, start, rates=RATES)
            log.finish_job(job, status, "", start, running_s=running_s, filament_mm=mm, laser_on_s=laser_s)
    return tmp_path


def _run(state: Path, *args: str):
    return CliRunner().invoke(_app(), ["usage", *args, "--state-dir", str(state)])


def _expected_cost(mm: float, laser_s: float) -> float:
    return mm * 0.003 * 20.0 / 1000 + laser_s / 3600 * 12.0


def test_csv_lists_every_job_with_its_figures(state: Path) -> None:
    r = _run(state, "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["member"], x["machine"], x["file_name"], x["status"]) for x in rows] == [
        (j[0], j[1], j[2], j[5]) for j in JOBS
    ]
    for row, job in zip(rows, JOBS, strict=True):
        assert row["started"] == job[3].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert float(row["duration_s"]) == job[4]
        assert float(row["filament_mm"]) == job[6]
        assert float(row["filament_g"]) == pytest.approx(job[6] * 0.003)
        assert float(row["laser_on_s"]) == job[7]
        assert float(row["cost"]) == pytest.approx(_expected_cost(job[6], job[7]), abs=1e-4)


def test_json_with_since_until_and_member_filters(state: Path) -> None:
    r = _run(state, "--format", "json", "--since", "2025-02-01", "--member", "Bob")
    assert [(x["file_name"], x["member"]) for x in json.loads(r.stdout)] == [
        ("vase.gcode", "Bob"),
        ("box.nc", "Bob"),
    ]
    r = _run(state, "--format", "json", "--since", "2025-02-03", "--until", "2025-02-10")
    assert [x["file_name"] for x in json.loads(r.stdout)] == ["sign.nc", "vase.gcode"]


def test_table_shows_names_durations_and_material(state: Path) -> None:
    r = _run(state)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "job", "member", "machine", "file", "started", "duration", "status", "filament", "laser", "cost"
    ]  # fmt: skip
    benchy = next(line for line in lines if "benchy.gcode" in line)
    assert "Ada" in benchy and "1:00:00" in benchy and "10.00 m 30.0 g" in benchy and "0.60" in benchy
    sign = next(line for line in lines if "sign.nc" in line)
    assert "0:15:00" in sign and "3.00" in sign  # 15 min of beam at 12/h


def test_summary_by_member_totals(state: Path) -> None:
    r = _run(state, "summary", "--by", "member", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    by_member = {row["member"]: row for row in data["rows"]}
    for name in ("Ada", "Bob"):
        jobs = [j for j in JOBS if j[0] == name]
        row = by_member[name]
        assert row["jobs"] == len(jobs)
        assert row["hours"] == pytest.approx(sum(j[4] for j in jobs) / 3600, abs=1e-4)
        assert row["filament_g"] == pytest.approx(sum(j[6] for j in jobs) * 0.003, abs=1e-3)
        assert row["laser_hours"] == pytest.approx(sum(j[7] for j in jobs) / 3600, abs=1e-4)
        assert row["cost"] == pytest.approx(sum(_expected_cost(j[6], j[7]) for j in jobs), abs=0.01)
    assert data["total"]["jobs"] == len(JOBS)
    assert data["total"]["hours"] == pytest.approx(sum(j[4] for j in JOBS) / 3600, abs=1e-4)


def test_summary_by_month_csv_and_by_machine_table(state: Path) -> None:
    r = _run(state, "summary", "--by", "month", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["month"], int(x["jobs"])) for x in rows] == [("2025-01", 1), ("2025-02", 3)]
    r = _run(state, "summary", "--by", "machine")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["machine", "jobs", "hours", "filament_g", "laser_hours", "cost"]
    laser = next(line for line in lines if line.startswith("laser")).split()
    assert laser[:2] == ["laser", "2"] and laser[4] == "0.33"  # 900 s + 300 s of beam
    assert next(line for line in lines if line.startswith("total")).split()[1] == "4"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--since", "2025-13-01"], ["--since", "'2025-13-01' is not a date"]),
        (["summary", "--until", "yesterday"], ["--until", "'yesterday' is not a date"]),
        (["--format", "xml"], ["--format", "'xml'"]),
        (["summary", "--by", "colour"], ["--by", "'colour'"]),
    ],
)
def test_bad_options_exit_2_naming_option_and_value(state: Path, args: list[str], words: list[str]) -> None:
    r = _run(state, *args)
    assert r.exit_code == 2
    for word in words:
        assert word in r.stderr


def test_unknown_member_and_missing_log(state: Path, tmp_path: Path) -> None:
    r = _run(state, "--member", "Zoe")
    assert (r.exit_code, r.stderr.strip()) == (1, "fabnode: no member named 'Zoe'")
    empty = tmp_path / "empty"
    r = CliRunner().invoke(_app(), ["usage", "--state-dir", str(empty)])
    assert r.exit_code == 1 and "no usage log at" in r.stderr
    assert not empty.exists()  # a report never creates a state dir


def test_sessions_list_with_durations_end_reasons_and_job_counts(tmp_path: Path) -> None:
    with UsageLog.open(tmp_path / "usage.db") as log:
        ada = access.add_member(log.db, SECRET, "Ada", "04a22b1c", now=_utc(2025, 3, 1, 9))
        first = log.open_session(ada, "printer", _utc(2025, 3, 1, 9))
        for name in ("a.gcode", "b.gcode"):
            job = log.start_job(first, ada, "printer", name, _utc(2025, 3, 1, 9))
            log.finish_job(job, "completed", "", _utc(2025, 3, 1, 10))
        log.close_session(first, _utc(2025, 3, 1, 11), "badge", duration_s=7200.0)
        log.open_session(ada, "printer", _utc(2025, 3, 2, 9), maintenance=True)
    r = _run(tmp_path, "sessions", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["member"], x["jobs"], x["end_reason"], x["duration_s"], x["maintenance"]) for x in rows] == [
        ("Ada", 2, "badge", 7200.0, False),
        ("Ada", 0, None, None, True),
    ]
    table = _run(tmp_path, "sessions").stdout.splitlines()
    assert "2:00:00" in table[2] and "badge" in table[2]
    assert "Ada (maintenance)" in table[3] and "open" in table[3]
    assert [
        x["session_id"]
        for x in csv.DictReader(
            io.StringIO(_run(tmp_path, "sessions", "--format", "csv", "--since", "2025-03-02").stdout)
        )
    ] == ["2"]


def test_options_before_the_verb_carry_over(state: Path) -> None:
    args = ["usage", "--state-dir", str(state), "--since", "2025-02-01", "--format", "csv", "summary"]
    r = CliRunner().invoke(_app(), [*args, "--by", "member"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["member"], int(x["jobs"])) for x in rows] == [("Ada", 1), ("Bob", 2)]
