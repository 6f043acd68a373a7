"""`fabnode usage`: the job list, and `fabnode usage summary`: totals by member, machine or month."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fabnode.cli import exits
from fabnode.paths import resolve_state_dir, usage_db_path

if TYPE_CHECKING:
    from fabnode.records.report import JobFilter
    from fabnode.records.usage import UsageLog

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Folder with usage.db (default: $FABNODE_STATE_DIR, else the service's or your state dir).",
        show_default=False,
    ),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only what started on or after this UTC day (YYYY-MM-DD).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Only what started on or before this UTC day (YYYY-MM-DD).")
]
MemberOption = Annotated[str | None, typer.Option("--member", help="Only this member's (by name).")]
FormatOption = Annotated[str, typer.Option("--format", help="table, csv or json (or --json, --csv).")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of a table (--format json).")]
CsvOption = Annotated[bool, typer.Option("--csv", help="CSV instead of a table (--format csv).")]
FORMATS = ("table", "csv", "json")


def parse_day(value: str | None, option: str) -> date | None:
    """A YYYY-MM-DD option value, or a usage error naming the option and the value."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date: expected YYYY-MM-DD", param_hint=f"'{option}'"
        ) from None


def output_format(fmt: str, as_json: bool = False, as_csv: bool = False) -> str:
    """table, csv or json from `--format`, `--json` or `--csv` (a usage error if they differ)."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}: expected one of {', '.join(FORMATS)}", param_hint="'--format'")
    chosen = {f for f, on in (("json", as_json), ("csv", as_csv), (fmt, fmt != "table")) if on}
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --json, --csv and --format", param_hint="'--json' / '--csv'")
    return chosen.pop() if chosen else "table"


def open_existing_log(state_dir: Path | None) -> UsageLog:
    """Open the usage log for reading; exit 1 with a message when there is none (never creates one)."""
    from fabnode.records.usage import UsageLogError

    path = usage_db_path(resolve_state_dir(state_dir))
    if not path.exists():
        exits.fail(f"no usage log at {path}: nothing recorded yet, or another state dir (pass --state-dir "
                   "or set FABNODE_STATE_DIR; the service keeps it in /var/lib/fabnode)", exits.FAILED)
    try:
        return open_read_only(path)
    except UsageLogError as exc:
        exits.fail(str(exc), exits.FAILED)


def open_read_only(path: Path) -> UsageLog:
    """The usage log opened read-only (no migration, no write): a listing never changes the database.

    UsageLogError when the file is not a usable usage database.
    """
    import sqlite3

    from sqlite_utils import Database

    from fabnode.records.usage import UsageLog, UsageLogError

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0,
                               check_same_thread=False, isolation_level=None)  # fmt: skip
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise UsageLogError(f"{path}: not a usable fabnode usage database ({exc})") from None
    return UsageLog(Database(conn), path)


def _filter(
    log: UsageLog, since: str | None, until: str | None, member: str | None
) -> JobFilter:
    from fabnode.records import report as usage_report

    flt = usage_report.JobFilter(parse_day(since, "--since"), parse_day(until, "--until"), member)
    if member is not None and not usage_report.member_exists(log.db, member):
        exits.fail(f"no member named {member!r}", exits.FAILED)
    return flt


def _inherit(
    ctx: typer.Context,
    since: str | None,
    until: str | None,
    member: str | None,
    fmt: str,
    state_dir: Path | None,
) -> tuple[str | None, str | None, str | None, str, Path | None]:
    """A verb's options, falling back on those given to `usage` before the verb."""
    parent = ctx.obj if isinstance(ctx.obj, dict) else {}
    return (
        since or parent.get("since"),
        until or parent.get("until"),
        member or parent.get("member"),
        fmt if fmt != "table" else parent.get("fmt", fmt),
        state_dir or parent.get("state_dir"),
    )


def register(app: typer.Typer) -> None:
    """Add `usage` and `usage summary` to the app."""
    usage_app = typer.Typer(
        help="List jobs from the usage log (member, machine, file, start, running time, material, cost); "
        "`sessions` lists sessions and `summary` totals them.",
        invoke_without_command=True,
    )

    @usage_app.callback()
    def usage_list(
        ctx: typer.Context,
        since: SinceOption = None,
        until: UntilOption = None,
        member: MemberOption = None,
        fmt: FormatOption = "table",
        as_json: JsonOption = False,
        as_csv: CsvOption = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """List jobs: member, machine, file, start (UTC), running time, status, material, cost."""
        fmt = output_format(fmt, as_json, as_csv)
        if ctx.invoked_subcommand is not None:
            # `fabnode usage --since D summary` means D too: options given before the verb carry over.
            ctx.obj = {"since": since, "until": until, "member": member, "fmt": fmt, "state_dir": state_dir}
            return
        from fabnode.records import report as usage_report

        with open_existing_log(state_dir) as log:
            rows = usage_report.list_jobs(log.db, _filter(log, since, until, member))
        if fmt == "table" and not rows:
            typer.echo("no jobs")
            return
        typer.echo(usage_report.jobs_as(rows, fmt))

    @usage_app.command("sessions")
    def usage_sessions(
        ctx: typer.Context,
        since: SinceOption = None,
        until: UntilOption = None,
        member: MemberOption = None,
        fmt: FormatOption = "table",
        as_json: JsonOption = False,
        as_csv: CsvOption = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """List sessions: member, machine, start and end (UTC), duration, why it ended, jobs run."""
        fmt = output_format(fmt, as_json, as_csv)
        since, until, member, fmt, state_dir = _inherit(ctx, since, until, member, fmt, state_dir)
        from fabnode.records import report as usage_report

        with open_existing_log(state_dir) as log:
            rows = usage_report.list_sessions(log.db, _filter(log, since, until, member))
        typer.echo(usage_report.sessions_as(rows, fmt) if rows or fmt != "table" else "no sessions")

    @usage_app.command("summary")
    def usage_summary(
        ctx: typer.Context,
        by: Annotated[str, typer.Option("--by", help="member, machine or month (UTC).")] = "member",
        since: SinceOption = None,
        until: UntilOption = None,
        member: MemberOption = None,
        fmt: FormatOption = "table",
        as_json: JsonOption = False,
        as_csv: CsvOption = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """Totals per member, machine or month: jobs, running hours, filament grams, laser hours, cost."""
        from fabnode.records import report as usage_report

        if by not in usage_report.SUMMARY_KEYS:
            raise typer.BadParameter(f"{by!r}: expected member, machine or month", param_hint="'--by'")
        fmt = output_format(fmt, as_json, as_csv)
        since, until, member, fmt, state_dir = _inherit(ctx, since, until, member, fmt, state_dir)
        with open_existing_log(state_dir) as log:
            rows = usage_report.summarise(log.db, by, _filter(log, since, until, member))
        typer.echo(usage_report.summary_as(by, rows, fmt))

    app.add_typer(usage_app, name="usage")
