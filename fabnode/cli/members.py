"""`fabnode members ...`: add and remove members, their badges and their trainings.

Badges are stored as keyed hashes only; nothing here prints a badge UID (listings show the first
8 characters of the hash, enough to tell two badges apart). Every change goes through the lab
directory (fabnode.directory.members): applied here at once, and published to the lab's other nodes
by the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from fabnode.cli import exits
from fabnode.cli.usage import StateDirOption, open_existing_log, parse_day
from fabnode.directory import members as lab_members
from fabnode.directory.store import LabDirectory
from fabnode.envelope import NAME
from fabnode.paths import ensure_state_dir, resolve_state_dir, secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog, UsageLogError
from fabnode.tables import render_table

NewLabOption = Annotated[bool, typer.Option(
    "--new-lab", help="Start a new lab when the state dir has none: create it and the lab's secret.")]
BadgeOption = Annotated[
    str,
    typer.Option(
        "--badge",
        help="Badge UID in hex (04:A2:2B:1C, 04a22b1c, '04 A2 2B 1C'); '-' reads it from stdin "
        "(a keyboard-wedge reader, and the UID stays out of shell history).",
    ),
]


@contextmanager
def lab_context(state_dir: Path | None, need_secret: bool = True, may_start: bool = False,
                new_lab: bool = False) -> Iterator[tuple[UsageLog, bytes]]:
    """The usage log and the lab's secret, every expected error as `fabnode: ...`, exit 1.

    Only `add` and `import` (may_start) start a usage log, and only in a state dir that exists (or
    with --new-lab): a mistyped or missing --state-dir must not quietly found a second lab with a new
    secret, whose badges no node of the real lab would know.
    """
    folder = resolve_state_dir(state_dir)
    db = usage_db_path(folder)
    secret_file = secret_file_path(folder)
    if not db.exists() and not (may_start and (new_lab or folder.is_dir())):
        exits.fail(_no_lab(folder, adding=may_start), exits.FAILED)
    try:
        if need_secret and not secret_file.exists():
            if not may_start:  # a change signed with a fresh secret would reach no node of the lab
                exits.fail(f"no lab secret at {secret_file}: import the lab's "
                           "(`fabnode lab secret --import`)", exits.FAILED)  # fmt: skip
            ensure_state_dir(folder)
            exits.error(f"starting a new lab: its secret is {secret_file} (copy it to every node of the lab)")
        secret = access.load_secret(secret_file) if need_secret else b""
        with UsageLog.open(db) as log:
            yield log, secret
    except (access.AccessError, UsageLogError, OSError) as exc:
        exits.fail(str(exc), exits.FAILED)


@contextmanager
def directory_context(state_dir: Path | None, may_start: bool = False, new_lab: bool = False,
                      adopt: bool = True) -> Iterator[tuple[LabDirectory, bytes]]:  # fmt: skip
    """The lab directory of this node's usage log, and the lab's secret (errors as lab_context's);
    adopt brings members enrolled before the directory into it first (a write: not for dry runs)."""
    with lab_context(state_dir, may_start=may_start, new_lab=new_lab) as (log, secret):
        lab, node = _identity(log)
        try:
            directory = LabDirectory.open(log.db, secret, node, lab, remember=False)
            if adopt:
                lab_members.adopt_local_members(directory, now=datetime.now(UTC))
            yield directory, secret
        except (ValueError, sqlite3.DatabaseError) as exc:  # AccessError is a ValueError too
            exits.fail(str(exc), exits.FAILED)


def _identity(log: UsageLog) -> tuple[str, str]:
    """The lab and node ids changes are stamped with: the node's config ($FABNODE_CONFIG), else what
    the daemon last used, else this host's name (the lab id is the daemon's when it publishes)."""
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError, AttributeError, TypeError):
        node = tomllib.loads(Path(os.environ.get("FABNODE_CONFIG", "")).read_text())["node"]
        lab, machine = node["lab"], node["machine"]
        if NAME.match(lab) and NAME.match(machine):
            return lab, f"{lab}.{machine}"
    with contextlib.suppress(KeyError):
        remembered = LabDirectory.identity(log.db)
        if remembered is not None:
            return remembered
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:60] or "host"
    return "lab", f"cli@{host}"


def _no_lab(folder: Path, adding: bool) -> str:
    what = f"no state dir at {folder}" if not folder.exists() else f"no usage log at {usage_db_path(folder)}"
    hint = "; to start a new lab there, add --new-lab" if adding else ""
    return (f"{what}: give the node's --state-dir (or set FABNODE_STATE_DIR; the service keeps it in "
            f"/var/lib/fabnode){hint}")


def _read_badge(value: str) -> str:
    if value != "-":
        return value
    line = sys.stdin.readline().strip()
    if not line:
        exits.fail("--badge -: nothing on stdin", exits.FAILED)
    return line


def _trainings_text(member: access.Member, today: date) -> str:
    parts = []
    for t in member.trainings:
        if t.until is None:
            parts.append(t.machine)
        else:
            word = "expired" if t.until < today else "until"
            parts.append(f"{t.machine} ({word} {t.until.isoformat()})")
    return ", ".join(parts) or "-"


def _member_json(member: access.Member) -> dict[str, object]:
    return {
        "name": member.name,
        "role": member.role,
        "badge": member.badge_prefix or None,
        "created": member.created,
        "removed": member.removed,
        "trainings": [
            {"machine": t.machine, "until": t.until.isoformat() if t.until else None}
            for t in member.trainings
        ],
    }


def register(app: typer.Typer) -> None:
    """Add the `members` group to the app."""
    members = typer.Typer(
        help="Members, their badges and the machines they are trained on.", no_args_is_help=True
    )

    @members.command("add")
    def add(
        name: Annotated[str, typer.Argument(help="The member's name (unique, case-insensitive).")],
        badge: BadgeOption,
        role: Annotated[
            str, typer.Option("--role", help="member or technician (uses every machine).")
        ] = "member",
        email: Annotated[str | None, typer.Option(
            "--email", help="Their e-mail, as Fab-manager knows it (to match its trainings).")] = None,
        fab_manager_id: Annotated[int | None, typer.Option(
            "--fab-manager-id", min=1, help="Their Fab-manager user id.")] = None,
        state_dir: StateDirOption = None,
        new_lab: NewLabOption = False,
    ) -> None:
        """Add a member with their badge (a removed member of that name is re-admitted)."""
        uid = _read_badge(badge)
        with directory_context(state_dir, may_start=True, new_lab=new_lab) as (directory, secret):
            lab_members.add_member(directory, secret, name, uid, role, now=datetime.now(UTC), email=email,
                                   fab_manager_id=fab_manager_id)  # fmt: skip
            prefix = access.badge_hash(secret, uid)[:8]
        typer.echo(f"added {role} {name.strip()!r}, badge {prefix}")

    @members.command("set-badge")
    def set_badge(
        name: Annotated[str, typer.Argument(help="The member's name.")],
        badge: BadgeOption,
        state_dir: StateDirOption = None,
    ) -> None:
        """Give a member a new badge; the old one stops working."""
        uid = _read_badge(badge)
        with directory_context(state_dir) as (directory, secret):
            lab_members.set_badge(directory, secret, name, uid, now=datetime.now(UTC))
            prefix = access.badge_hash(secret, uid)[:8]
        typer.echo(f"{name.strip()!r} now has badge {prefix}")

    @members.command("remove")
    def remove(
        name: Annotated[str, typer.Argument(help="The member's name.")],
        erase: Annotated[bool, typer.Option(
            "--erase", help="Also erase their name and badge on every node: their past sessions and jobs "
            "keep only the pseudonymous hash the region has (works on a removed member too).")] = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """Remove a member: their badge and trainings go; their past sessions and jobs stay."""
        with directory_context(state_dir) as (directory, _):
            lab_members.remove_member(directory, name, now=datetime.now(UTC), erase=erase)
            if erase:  # the old pages leave the write-ahead log too, when no reader holds them
                with contextlib.suppress(sqlite3.DatabaseError):
                    directory.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        typer.echo(f"erased {name.strip()!r}: only the pseudonymous hash stays" if erase
                   else f"removed {name.strip()!r}")  # fmt: skip

    @members.command("grant")
    def grant(
        name: Annotated[str, typer.Argument(help="The member's name.")],
        machine: Annotated[str, typer.Argument(help="The machine's name, as in the node's config.")],
        until: Annotated[str | None, typer.Option("--until", help="Last valid day, YYYY-MM-DD.")] = None,
        state_dir: StateDirOption = None,
    ) -> None:
        """Let a member use a machine (again), until a day or with no end."""
        last_day = parse_day(until, "--until")
        with directory_context(state_dir) as (directory, _):
            lab_members.grant_training(directory, name, machine, last_day, now=datetime.now(UTC))
        typer.echo(f"{name.strip()!r} may use {machine}" + (f" until {last_day}" if last_day else ""))

    @members.command("revoke")
    def revoke(
        name: Annotated[str, typer.Argument(help="The member's name.")],
        machine: Annotated[str, typer.Argument(help="The machine's name.")],
        state_dir: StateDirOption = None,
    ) -> None:
        """Take a machine away from a member."""
        with directory_context(state_dir) as (directory, _):
            lab_members.revoke_training(directory, name, machine, now=datetime.now(UTC))
        typer.echo(f"{name.strip()!r} may no longer use {machine}")

    @members.command("list")
    def list_(
        as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
        show_all: Annotated[bool, typer.Option("--all", help="Include removed members.")] = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """List members, their role, badge (hash prefix) and trainings."""
        with open_existing_log(state_dir) as log:
            rows = access.list_members(log.db, include_removed=show_all)
        if as_json:
            typer.echo(json.dumps([_member_json(m) for m in rows], indent=2))
            return
        today = datetime.now(UTC).date()
        table = [
            [m.name, m.role if m.removed is None else f"{m.role} (removed)", m.badge_prefix or "-",
             _trainings_text(m, today), m.created[:10]]
            for m in rows
        ]  # fmt: skip
        typer.echo(
            render_table(["name", "role", "badge", "trainings", "since"], table) if rows else "no members"
        )

    @members.command("digest")
    def digest(state_dir: StateDirOption = None) -> None:
        """A short digest of this node's lab directory: two nodes that show the same one agree."""
        with directory_context(state_dir) as (directory, _):
            shown, entries = directory.digest(), directory.entry_count()
        typer.echo(f"{shown}  ({entries} entries)")

    _register_import(members)
    _register_key(members)
    app.add_typer(members, name="members")


def _register_key(members: typer.Typer) -> None:
    @members.command("key")
    def key(
        name: Annotated[str, typer.Argument(help="The member's name.")],
        revoke: Annotated[bool, typer.Option("--revoke", help="End the member's API key.")] = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """Make a member's personal API key for their slicer (shown once; the previous one ends)."""
        with directory_context(state_dir) as (directory, secret):
            if revoke:
                lab_members.revoke_member_key(directory, name, now=datetime.now(UTC))
            else:
                made = lab_members.new_member_key(directory, secret, name, now=datetime.now(UTC))
        if revoke:
            typer.echo(f"{name.strip()!r} has no API key any more")
            return
        typer.echo(f"the API key of {name.strip()!r} (shown only now; put it in the slicer's API key field):",
                   err=True)
        typer.echo(made)


def _register_import(members: typer.Typer) -> None:
    @members.command("import", help=f"Add or update members from a CSV file.\n\n{access.CSV_HELP}")
    def import_(
        file: Annotated[Path, typer.Argument(help="CSV file; see config/members-example.csv.")],
        state_dir: StateDirOption = None,
        new_lab: NewLabOption = False,
    ) -> None:
        with directory_context(state_dir, may_start=True, new_lab=new_lab) as (directory, secret):
            report = lab_members.import_members(directory, secret, file, now=datetime.now(UTC))
        for line, reason in report.errors:
            typer.echo(f"{file}:{line}: {reason}", err=True)
        typer.echo(
            f"{report.added} added, {report.updated} updated, {report.granted} trainings granted"
            + (f"; {len(report.errors)} rows rejected" if report.errors else "")
        )
        if report.errors:
            raise typer.Exit(1)
