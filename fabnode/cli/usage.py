"""`fabnode usage`: the job list, and `fabnode usage summary`: totals by member, machine or month."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from fabnode.paths import resolve_state_dir, usage_db_path
from fabnode.records import report as usage_report
from fabnode.records.usage import UsageLog, UsageLogError

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Folder with usage.db (default: $FABNODE_STATE_DIR, else the service's or your state dir).",
        show_default=False,
    ),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Jobs started on or after this UTC day (YYYY-MM-DD).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Jobs started on or before this UTC day (YYYY-MM-DD).")
]
MemberOption = Annotated[str | None, typer.Option("--member", help="Only this member's jobs (by name).")]
FormatOption = Annotated[str, typer.Option("--format", help="table, csv or json.")]


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


def _check_format(fmt: str) -> str:
    if fmt not in usage_report.FORMATS:
        expected = ", ".join(usage_report.FORMATS)
        raise typer.BadParameter(f"{fmt!r}: expected one of {expected}", param_hint="'--format'")
    return fmt


def open_existing_log(state_dir: Path | None) -> UsageLog:
    """Open the usage log for reading; exit 1 with a message when there is none (never creates one)."""
    path = usage_db_path(resolve_state_dir(state_dir))
    if not path.exists():
        typer.echo(f"error: no usage log at {path} (pass --state-dir or set FABNODE_STATE_DIR)", err=True)
        raise typer.Exit(1)
    try:
        return UsageLog.open(path)
    except UsageLogError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _filter(
    log: UsageLog, since: str | None, until: str | None, member: str | None
) -> usage_report.JobFilter:
    flt = usage_report.JobFilter(parse_day(since, "--since"), parse_day(until, "--until"), member)
    if member is not None and not usage_report.member_exists(log.db, member):
        typer.echo(f"error: no member named {member!r}", err=True)
        raise typer.Exit(1)
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
        state_dir: StateDirOption = None,
    ) -> None:
        """List jobs: member, machine, file, start (UTC), running time, status, material, cost."""
        if ctx.invoked_subcommand is not None:
            # `fabnode usage --since D summary` means D too: options given before the verb carry over.
            ctx.obj = {"since": since, "until": until, "member": member, "fmt": fmt, "state_dir": state_dir}
            return
        _check_format(fmt)
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
        state_dir: StateDirOption = None,
    ) -> None:
        """List sessions: member, machine, start and end (UTC), duration, why it ended, jobs run."""
        since, until, member, fmt, state_dir = _inherit(ctx, since, until, member, fmt, state_dir)
        _check_format(fmt)
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
        state_dir: StateDirOption = None,
    ) -> None:
        """Totals per member, machine or month: jobs, running hours, filament grams, laser hours, cost."""
        if by not in usage_report.SUMMARY_KEYS:
            raise typer.BadParameter(f"{by!r}: expected member, machine or month", param_hint="'--by'")
        since, until, member, fmt, state_dir = _inherit(ctx, since, until, member, fmt, state_dir)
        _check_format(fmt)
        with open_existing_log(state_dir) as log:
            rows = usage_report.summarise(log.db, by, _filter(log, since, until, member))
        typer.echo(usage_report.summary_as(by, rows, fmt))

    app.add_typer(usage_app, name="usage")
