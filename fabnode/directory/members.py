"""Members, badges, trainings and API keys as changes to the lab directory: what the CLI and the
Fab-manager sync call. Each function checks what the lab would refuse (a name taken, a badge that is
someone else's) against this node's directory, then makes its changes in one transaction; they are
applied here at once and reach the other nodes through the sync.

Errors are `fabnode.records.members.AccessError`, with the messages the CLI has always shown.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from fabnode.directory.entry import (
    API_KEY,
    BADGE,
    EMAIL,
    ERASED,
    FAB_MANAGER_ID,
    NAME,
    REMOVED,
    ROLE,
    TRAINING,
    EntryError,
    Json,
    check_machine,
    training_value,
)
from fabnode.directory.store import DirectoryError, LabDirectory
from fabnode.records import api_keys
from fabnode.records.members import (
    MEMBER,
    AccessError,
    ImportReport,
    badge_hash,
    check_name,
    check_role,
    csv_member,
    member_hash,
    read_member_csv,
)

Change = tuple[str, str, Json]


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A members row as the directory holds it."""

    row_id: int
    member: str | None  # the directory's member id (None: a row this node made before the directory)
    name: str
    role: str
    badge: str | None
    removed: bool


def _row(directory: LabDirectory, name: str, include_removed: bool = False) -> Enrolled | None:
    clean = name.strip()
    if not clean:
        return None
    found = directory.db.execute(
        "SELECT id, directory_id, name, role, badge_hash, removed FROM members WHERE name = ? "
        "OR member_hash = ? ORDER BY removed IS NOT NULL LIMIT 1",
        [clean, member_hash(directory.secret, clean)],
    ).fetchone()
    if found is None or (found[5] is not None and not include_removed):
        return None
    return Enrolled(int(found[0]), found[1], str(found[2]), str(found[3]), found[4], found[5] is not None)


def _active(directory: LabDirectory, name: str, now: datetime) -> Enrolled:
    row = _row(directory, name)
    if row is None:
        raise AccessError(f"no member named {name.strip()!r}")
    if row.member is None:
        _adopt_row(directory, row, now)
        row = _row(directory, name)
        assert row is not None and row.member is not None
    return row


def _new_member_id(directory: LabDirectory, name: str) -> str:
    # The first member of a name gets an id every node derives alike (a keyed hash of the name), so
    # two nodes enrolling the same person while apart make one member, not two; one re-admitted
    # after a removal (which is final) gets a random one.
    derived = member_hash(directory.secret, name)[:32]
    taken = directory.db.execute("SELECT 1 FROM directory_state WHERE member = ? LIMIT 1",
                                 [derived]).fetchone()  # fmt: skip
    return uuid.uuid4().hex if taken else derived


def _changes(directory: LabDirectory, changes: list[Change], now: datetime) -> None:
    try:
        directory.change_many(changes, now)
    except (EntryError, DirectoryError) as exc:
        raise AccessError(str(exc)) from None


def _badge_owner(directory: LabDirectory, hashed: str) -> str | None:
    found = directory.db.execute("SELECT name FROM members WHERE badge_hash = ?", [hashed]).fetchone()
    return None if found is None else str(found[0])


def _add_changes(
    directory: LabDirectory, secret: bytes, name: str, uid: str | bytes, role: str, now: datetime,
    email: str | None, fab_manager_id: int | None,
) -> tuple[str, list[Change]]:
    name, role = check_name(name), check_role(role)
    hashed = badge_hash(secret, uid)
    existing = _row(directory, name)
    if existing is not None:
        raise AccessError(f"member {existing.name!r} already exists")
    owner = _badge_owner(directory, hashed)
    if owner is not None:
        raise AccessError(f"that badge already belongs to member {owner!r}")
    member = _new_member_id(directory, name)
    changes: list[Change] = [(member, NAME, name), (member, ROLE, role), (member, BADGE, hashed)]
    if email is not None:
        changes.append((member, EMAIL, email))
    if fab_manager_id is not None:
        changes.append((member, FAB_MANAGER_ID, fab_manager_id))
    return member, changes


def add_member(
    directory: LabDirectory, secret: bytes, name: str, uid: str | bytes, role: str = MEMBER, *,
    now: datetime, email: str | None = None, fab_manager_id: int | None = None,
) -> str:
    """Enrol a member with their badge (a removed member's name may be taken again); return their id."""
    with directory.batch():
        member, changes = _add_changes(directory, secret, name, uid, role, now, email, fab_manager_id)
        _changes(directory, changes, now)
    return member


def set_badge(directory: LabDirectory, secret: bytes, name: str, uid: str | bytes, *, now: datetime) -> None:
    """Give a member a new badge (the old one stops working on every node)."""
    hashed = badge_hash(secret, uid)
    with directory.batch():
        row = _active(directory, name, now)
        owner = _badge_owner(directory, hashed)
        if owner is not None:
            raise AccessError(f"that badge already belongs to member {owner!r}")
        _changes(directory, [(str(row.member), BADGE, hashed)], now)


def set_contact(directory: LabDirectory, name: str, *, now: datetime, email: str | None = None,
                fab_manager_id: int | None = None) -> None:  # fmt: skip
    """Record how Fab-manager knows a member (e-mail, user id); a None leaves that one as it is."""
    with directory.batch():
        row = _active(directory, name, now)
        changes: list[Change] = []
        if email is not None:
            changes.append((str(row.member), EMAIL, email.strip()))
        if fab_manager_id is not None:
            changes.append((str(row.member), FAB_MANAGER_ID, fab_manager_id))
        _changes(directory, changes, now)


def find_member(directory: LabDirectory, email: str | None = None,
                fab_manager_id: int | None = None) -> str | None:  # fmt: skip
    """The name of the active member with this Fab-manager id, else with this e-mail (case-insensitive)."""
    if fab_manager_id is not None:
        found = directory.db.execute("SELECT name FROM members WHERE fab_manager_id = ? AND removed IS NULL "
                                     "ORDER BY id LIMIT 1", [fab_manager_id]).fetchone()  # fmt: skip
        if found is not None:
            return str(found[0])
    if email is not None and email.strip():
        found = directory.db.execute(
            "SELECT name FROM members WHERE lower(email) = lower(?) AND removed IS NULL ORDER BY id LIMIT 1",
            [email.strip()],
        ).fetchone()
        if found is not None:
            return str(found[0])
    return None


def grant_training(directory: LabDirectory, name: str, machine: str, until: date | None = None, *,
                   now: datetime) -> None:  # fmt: skip
    """Let a member use a machine until a day (inclusive), or with no end, on every node."""
    machine = machine.strip()
    if not machine:
        raise AccessError("machine name is empty")
    try:
        check_machine(machine)
    except EntryError as exc:
        raise AccessError(str(exc)) from None
    with directory.batch():
        row = _active(directory, name, now)
        _changes(directory, [(str(row.member), TRAINING + machine, training_value(True, until))], now)


def revoke_training(directory: LabDirectory, name: str, machine: str, *, now: datetime) -> None:
    """Take a machine away from a member on every node; an error if they had no training on it."""
    machine = machine.strip()
    with directory.batch():
        row = _active(directory, name, now)
        trained = directory.db.execute("SELECT 1 FROM trainings WHERE member_id = ? AND machine = ?",
                                       [row.row_id, machine]).fetchone()  # fmt: skip
        if trained is None:
            raise AccessError(f"member {name.strip()!r} has no training on {machine!r}")
        _changes(directory, [(str(row.member), TRAINING + machine, training_value(False, None))], now)


def remove_member(directory: LabDirectory, name: str, *, now: datetime, erase: bool = False) -> None:
    """Remove a member on every node: badge, trainings and keys go; their history keeps the name,
    unless `erase`, which keeps only the pseudonymous hash (a removed member may be erased later)."""
    with directory.batch():
        row = _row(directory, name, include_removed=erase)
        if row is None:
            raise AccessError(f"no member named {name.strip()!r}")
        if row.member is None:
            if row.removed:  # removed before the directory: nothing of it travels, erase it here
                _erase_local_row(directory, row)
                return
            _adopt_row(directory, row, now)
            row = _row(directory, name, include_removed=erase)
            assert row is not None
        if erase:
            _changes(directory, [(str(row.member), ERASED, {})], now)
        else:
            _changes(directory, [(str(row.member), REMOVED, {"name": row.name, "role": row.role})], now)


def _erase_local_row(directory: LabDirectory, row: Enrolled) -> None:
    db = directory.db
    db.execute("PRAGMA secure_delete = ON")
    db.execute("UPDATE members SET name = 'erased ' || substr(member_hash, 1, 16), badge_hash = NULL, "
               "email = NULL, fab_manager_id = NULL WHERE id = ?", [row.row_id])  # fmt: skip


# --- API keys -----------------------------------------------------------------------------------


def new_member_key(directory: LabDirectory, secret: bytes, name: str, *, now: datetime) -> str:
    """Make a member's personal API key, valid on every node (their previous ones end); return it,
    to show once: only its hash travels."""
    key = api_keys.new_key_text()
    with directory.batch():
        row = _active(directory, name, now)
        member = str(row.member)
        changes: list[Change] = [(member, f, {"granted": False}) for f in _live_keys(directory, member)]
        changes.append((member, API_KEY + api_keys.key_hash(secret, key), {"granted": True}))
        _changes(directory, changes, now)
    return key


def revoke_member_key(directory: LabDirectory, name: str, *, now: datetime) -> None:
    """End a member's personal API key on every node; AccessError when they have none."""
    with directory.batch():
        row = _active(directory, name, now)
        live = _live_keys(directory, str(row.member))
        if not live:
            raise AccessError(f"member {row.name!r} has no API key")
        _changes(directory, [(str(row.member), f, {"granted": False}) for f in live], now)


def _live_keys(directory: LabDirectory, member: str) -> list[str]:
    return [str(f) for (f,) in directory.db.execute(
        "SELECT field FROM directory_state WHERE member = ? AND field LIKE 'api_key:%' "
        "AND json_extract(value, '$.granted') = 1 ORDER BY field", [member])]  # fmt: skip


# --- CSV import -----------------------------------------------------------------------------------


def import_members(directory: LabDirectory, secret: bytes, path: Path, *, now: datetime) -> ImportReport:
    """Add or update members from a CSV file (records.members.CSV_HELP); bad rows are reported by line,
    good ones kept, all in one transaction. AccessError (nothing imported) for an unreadable file."""
    rows = read_member_csv(path)
    report = ImportReport()
    with directory.batch():
        for line, row in rows:
            try:
                with directory.db.atomic():  # a savepoint: a bad row leaves nothing behind
                    if isinstance(row, AccessError):
                        raise row
                    _import_row(directory, secret, row, now, report)
            except AccessError as exc:
                report.errors.append((line, str(exc)))
    return report


def _import_row(directory: LabDirectory, secret: bytes, fields: dict[str, str], now: datetime,
                report: ImportReport) -> None:  # fmt: skip
    row = csv_member(fields)
    for machine in row.machines:
        try:
            check_machine(machine)
        except EntryError as exc:
            raise AccessError(str(exc)) from None
    existing = _row(directory, row.name)
    if existing is None:
        if not row.uid:
            raise AccessError(f"new member {row.name!r} needs a badge")
        role = row.role or MEMBER
        member, changes = _add_changes(directory, secret, row.name, row.uid, role, now, None, None)
        report.added += 1
    else:
        if existing.member is None:
            _adopt_row(directory, existing, now)
            existing = _row(directory, row.name)
            assert existing is not None
        member, changes = str(existing.member), []
        if row.uid and badge_hash(secret, row.uid) != existing.badge:
            raise AccessError(
                f"member {existing.name!r} has a different badge (use `fabnode members set-badge`)"
            )
        if row.role and row.role != existing.role:
            changes.append((member, ROLE, row.role))
        report.updated += 1
    changes += [(member, TRAINING + m, training_value(True, row.until)) for m in row.machines]
    report.granted += len(row.machines)
    _changes(directory, changes, now)


# --- members enrolled before the directory --------------------------------------------------------


def adopt_local_members(directory: LabDirectory, *, now: datetime) -> int:
    """Bring members this node enrolled before the lab directory into it (with the id every node
    derives from the name, so that nodes that enrolled the same member agree); return how many."""
    rows = directory.db.execute(
        "SELECT id, directory_id, name, role, badge_hash, removed FROM members "
        "WHERE directory_id IS NULL AND removed IS NULL ORDER BY id"
    ).fetchall()
    with directory.batch():
        for r in rows:
            _adopt_row(directory, Enrolled(int(r[0]), None, str(r[2]), str(r[3]), r[4], False), now)
    return len(rows)


def _adopt_row(directory: LabDirectory, row: Enrolled, now: datetime) -> None:
    member = member_hash(directory.secret, row.name)[:32]
    changes: list[Change] = [(member, NAME, row.name), (member, ROLE, row.role)]
    if row.badge:
        changes.append((member, BADGE, row.badge))
    for machine, until in directory.db.execute("SELECT machine, until FROM trainings WHERE member_id = ?",
                                               [row.row_id]).fetchall():  # fmt: skip
        day = date.fromisoformat(until) if until else None
        changes.append((member, TRAINING + machine, training_value(True, day)))
    if _has_api_keys(directory):
        for (hashed,) in directory.db.execute(
            "SELECT key_hash FROM api_keys WHERE member_id = ? AND revoked IS NULL", [row.row_id]
        ).fetchall():
            changes.append((member, API_KEY + hashed, {"granted": True}))
    _changes(directory, changes, now)


def _has_api_keys(directory: LabDirectory) -> bool:
    found = directory.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'")
    return found.fetchone() is not None
