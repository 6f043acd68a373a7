"""Members, their badges and their trainings: who may switch which machine on.

A badge is stored only as a keyed hash (HMAC-SHA256 with the lab's secret) of its normalised UID;
the raw UID is never stored, logged or printed. A member appears in telemetry as `member_hash`,
another keyed hash (of the name), so the region counts distinct members without knowing them.
All functions take the usage log's `sqlite_utils.Database` (one database per node).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import io
import os
import re
import secrets
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlite_utils import Database

from fabnode.records.schema import ROLES, utc_iso, write_transaction

MEMBER = "member"
TECHNICIAN = "technician"
SECRET_BYTES = 32
BADGE_LENGTHS = (4, 5, 7, 10)  # NFC single/double/triple size UIDs; 5 for EM4100 125 kHz tags
_SEPARATORS = re.compile(r"[:\s-]+")
_HEX = re.compile(r"[0-9a-fA-F]*")


class AccessError(ValueError):
    """A member, badge or training request that cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """Whether a badge may use a machine now, and who it belongs to."""

    member_id: int | None
    name: str | None
    role: str | None
    granted: bool
    reason: str  # "technician", "trained", "unknown badge", "not trained on X", "training expired on D"


@dataclass(frozen=True, slots=True)
class Training:
    """One machine a member may use, until a day (inclusive) or for good."""

    machine: str
    until: date | None


@dataclass(frozen=True, slots=True)
class Member:
    """A member as listed: never the badge itself, only the first characters of its hash."""

    id: int
    name: str
    role: str
    badge_prefix: str  # 8 hex characters of the badge hash, enough to tell two badges apart
    created: str
    removed: str | None
    trainings: tuple[Training, ...]
    email: str | None = None
    fab_manager_id: int | None = None


# --- the lab's secret and the keyed hashes ---------------------------------------------------


def load_secret(path: Path) -> bytes:
    """Read the lab's secret, creating it (0600, 32 random bytes) on first use."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = _create_secret(path)
    if len(data) < 16:
        raise AccessError(f"{path}: the lab secret is {len(data)} bytes; expected at least 16")
    return data


def _create_secret(path: Path) -> bytes:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".secret-", dir=path.parent)  # mkstemp creates it 0600
    try:
        os.write(fd, secrets.token_bytes(SECRET_BYTES))
        os.fsync(fd)
        os.close(fd)
        # link() fails if another process created the secret meanwhile: then theirs wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def masked_uid(uid: str | bytes) -> str:
    """A badge UID as an error may show it: its first two characters and its length, never the whole
    (a UID read off a card is enough to clone it, and errors reach terminals, logs and screenshots)."""
    text = uid.hex() if isinstance(uid, bytes | bytearray) else str(uid).strip()
    return f"'{text[:2]}…' ({len(text)} characters)" if text else "'' (empty)"


def normalise_uid(uid: str | bytes) -> bytes:
    """A badge UID as bytes, from `04:A2:2B:1C`, `04a22b1c`, `04 A2 2B 1C` or raw reader bytes."""
    if isinstance(uid, bytes | bytearray):
        raw = bytes(uid)
    else:
        text = uid.strip()
        groups = [g for g in _SEPARATORS.split(text) if g]
        if len(groups) > 1 and any(len(g) != 2 for g in groups):
            raise AccessError(
                f"badge UID {masked_uid(uid)}: separated groups must be two hex digits each (04:A2:2B:1C)"
            )
        digits = "".join(groups)
        if not digits or not _HEX.fullmatch(digits):
            raise AccessError(f"badge UID {masked_uid(uid)} is not hexadecimal (expected e.g. 04:A2:2B:1C or "
                              "04a22b1c)")
        if len(digits) % 2:
            raise AccessError(f"badge UID {masked_uid(uid)} has an odd number of hex digits ({len(digits)})")
        raw = bytes.fromhex(digits)
    if len(raw) not in BADGE_LENGTHS:
        lengths = ", ".join(str(n) for n in BADGE_LENGTHS[:-1]) + f" or {BADGE_LENGTHS[-1]}"
        raise AccessError(f"badge UID {masked_uid(uid)} is {len(raw)} bytes long; expected {lengths} bytes")
    return raw


def badge_hash(secret: bytes, uid: str | bytes) -> str:
    """The keyed hash under which a badge is stored and looked up (hex HMAC-SHA256)."""
    return hmac.new(secret, b"fabnode-badge\0" + normalise_uid(uid), hashlib.sha256).hexdigest()


def member_hash(secret: bytes, name: str) -> str:
    """The keyed hash that stands for a member in telemetry."""
    key = b"fabnode-member\0" + name.casefold().encode()
    return hmac.new(secret, key, hashlib.sha256).hexdigest()


# --- members ---------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A member's name, stripped: 1 to 80 printable characters (AccessError otherwise)."""
    return _check_name(name)


def _check_name(name: str) -> str:
    clean = name.strip()
    if not clean or len(clean) > 80 or any(ord(c) < 32 for c in clean):
        raise AccessError(f"member name {name!r}: 1 to 80 printable characters expected")
    return clean


def check_role(role: str) -> str:
    """member or technician (AccessError otherwise)."""
    return _check_role(role)


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AccessError(f"role {role!r}: expected {' or '.join(ROLES)}")
    return role


def _member_row(db: Database, name: str) -> dict[str, object] | None:
    rows = list(db.query("SELECT * FROM members WHERE name = ?", [name.strip()]))
    return rows[0] if rows else None


def _active_member_id(db: Database, name: str) -> int:
    row = _member_row(db, name)
    if row is None or row["removed"] is not None:
        raise AccessError(f"no member named {name.strip()!r}")
    return int(str(row["id"]))


def _badge_owner(db: Database, hashed: str) -> str | None:
    rows = list(db.query("SELECT name FROM members WHERE badge_hash = ?", [hashed]))
    return str(rows[0]["name"]) if rows else None


def _add_member(db: Database, secret: bytes, name: str, uid: str | bytes, role: str, now: datetime) -> int:
    name, role = _check_name(name), _check_role(role)
    hashed = badge_hash(secret, uid)
    row = _member_row(db, name)
    if row is not None and row["removed"] is None:
        raise AccessError(f"member {row['name']!r} already exists")
    owner = _badge_owner(db, hashed)
    if owner is not None:
        raise AccessError(f"that badge already belongs to member {owner!r}")
    if row is not None:  # re-admitted: keep the id so that past sessions and jobs stay theirs
        db.execute(
            "UPDATE members SET role = ?, badge_hash = ?, removed = NULL WHERE id = ?",
            [role, hashed, row["id"]],
        )
        return int(str(row["id"]))
    try:
        cur = db.execute(
            "INSERT INTO members (name, role, badge_hash, member_hash, created) VALUES (?, ?, ?, ?, ?)",
            [name, role, hashed, member_hash(secret, name), utc_iso(now)],
        )
    except sqlite3.IntegrityError:  # e.g. "Straße" vs "STRASSE": one member_hash, two names
        raise AccessError(f"member name {name!r} clashes with an existing member's name") from None
    return int(cur.lastrowid or 0)


def add_member(
    db: Database, secret: bytes, name: str, uid: str | bytes, role: str = MEMBER, *, now: datetime
) -> int:
    """Add a member with their badge (a removed member of that name is re-admitted); return the id."""
    with write_transaction(db, durable=True):
        return _add_member(db, secret, name, uid, role, now)


def set_badge(db: Database, secret: bytes, name: str, uid: str | bytes) -> None:
    """Give a member a new badge (the old one stops working)."""
    hashed = badge_hash(secret, uid)
    with write_transaction(db, durable=True):
        member_id = _active_member_id(db, name)
        owner = _badge_owner(db, hashed)
        if owner is not None:
            raise AccessError(f"that badge already belongs to member {owner!r}")
        db.execute("UPDATE members SET badge_hash = ? WHERE id = ?", [hashed, member_id])


def remove_member(db: Database, name: str, *, now: datetime) -> None:
    """Remove a member: badge and trainings go, the row stays so their history keeps a name."""
    with write_transaction(db, durable=True):
        member_id = _active_member_id(db, name)
        db.execute("DELETE FROM trainings WHERE member_id = ?", [member_id])
        db.execute(
            "UPDATE members SET badge_hash = NULL, removed = ? WHERE id = ?", [utc_iso(now), member_id]
        )


def _grant(db: Database, member_id: int, machine: str, until: date | None, now: datetime) -> None:
    machine = machine.strip()
    if not machine:
        raise AccessError("machine name is empty")
    db.execute(
        "INSERT INTO trainings (member_id, machine, until, granted) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (member_id, machine) DO UPDATE SET until = excluded.until, granted = excluded.granted",
        [member_id, machine, until.isoformat() if until else None, utc_iso(now)],
    )


def grant_training(
    db: Database, name: str, machine: str, until: date | None = None, *, now: datetime
) -> None:
    """Let a member use a machine until a day (inclusive), or with no end; replaces an earlier grant."""
    with write_transaction(db, durable=True):
        _grant(db, _active_member_id(db, name), machine, until, now)


def revoke_training(db: Database, name: str, machine: str) -> None:
    """Take a machine away from a member; an error if they had no training on it."""
    with write_transaction(db, durable=True):
        member_id = _active_member_id(db, name)
        cur = db.execute("DELETE FROM trainings WHERE member_id = ? AND machine = ?", [member_id, machine])
        if cur.rowcount == 0:
            raise AccessError(f"member {name.strip()!r} has no training on {machine!r}")


def list_members(db: Database, include_removed: bool = False) -> list[Member]:
    """Members by name, with their trainings."""
    where = "" if include_removed else "WHERE removed IS NULL"
    trainings: dict[int, list[Training]] = {}
    for t in db.query("SELECT member_id, machine, until FROM trainings ORDER BY machine"):
        until = date.fromisoformat(t["until"]) if t["until"] else None
        trainings.setdefault(t["member_id"], []).append(Training(t["machine"], until))
    return [
        Member(
            id=r["id"],
            name=r["name"],
            role=r["role"],
            badge_prefix=(r["badge_hash"] or "")[:8],
            created=r["created"],
            removed=r["removed"],
            trainings=tuple(trainings.get(r["id"], ())),
            email=r.get("email"),
            fab_manager_id=r.get("fab_manager_id"),
        )
        for r in db.query(f"SELECT * FROM members {where} ORDER BY name COLLATE NOCASE")
    ]


def check_access(db: Database, badge_hash: str, machine: str, today: date) -> AccessDecision:
    """May this badge switch this machine on today? Technicians may use every machine."""
    rows = list(db.query("SELECT id, name, role FROM members WHERE badge_hash = ?", [badge_hash]))
    if not rows:
        return AccessDecision(None, None, None, False, "unknown badge")
    member_id, name, role = rows[0]["id"], rows[0]["name"], rows[0]["role"]
    if role == TECHNICIAN:
        return AccessDecision(member_id, name, role, True, "technician")
    trained = list(
        db.query("SELECT until FROM trainings WHERE member_id = ? AND machine = ?", [member_id, machine])
    )
    if not trained:
        return AccessDecision(member_id, name, role, False, f"not trained on {machine}")
    until = trained[0]["until"]
    if until is not None and date.fromisoformat(until) < today:
        return AccessDecision(member_id, name, role, False, f"training expired on {until}")
    return AccessDecision(member_id, name, role, True, "trained")


# --- CSV import ------------------------------------------------------------------------------

CSV_COLUMNS = ("name", "badge", "role", "machines", "until")
CSV_HELP = """\
The first row is the header: name,badge,role,machines,until
(only name is required; columns may come in any order).
  name      unique, case-insensitive
  badge     UID in hex: 04:A2:2B:1C, 04a22b1c or "04 A2 2B 1C";
            needed for a new member; for an existing one,
            empty or the badge they already have
  role      member (default) or technician
  machines  machines to grant, separated by ';' (may be empty)
  until     last valid day of those trainings (YYYY-MM-DD);
            empty for no expiry
Bad rows are reported by line and skipped; good rows are kept."""


@dataclass(slots=True)
class ImportReport:
    """What an import did: members added/updated, trainings granted, and rejected rows by line."""

    added: int = 0
    updated: int = 0
    granted: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def _import_row(
    db: Database, secret: bytes, row: dict[str, str], now: datetime, report: ImportReport
) -> None:
    member = csv_member(row)
    name, uid, role, machines, until = member.name, member.uid, member.role, member.machines, member.until
    existing = _member_row(db, name)
    if existing is None or existing["removed"] is not None:
        if not uid:
            raise AccessError(f"new member {name!r} needs a badge")
        member_id = _add_member(db, secret, name, uid, _check_role(role or MEMBER), now)
        report.added += 1
    else:
        member_id = int(str(existing["id"]))
        if uid and badge_hash(secret, uid) != existing["badge_hash"]:
            raise AccessError(
                f"member {existing['name']!r} has a different badge (use `fabnode members set-badge`)"
            )
        if role:
            db.execute("UPDATE members SET role = ? WHERE id = ?", [_check_role(role), member_id])
        report.updated += 1
    for machine in machines:
        _grant(db, member_id, machine, until, now)
        report.granted += 1


def import_members(db: Database, secret: bytes, path: Path, *, now: datetime) -> ImportReport:
    """Add or update members from a CSV file (see CSV_HELP); bad rows are reported by line, good ones kept.

    Raises AccessError (nothing imported) when the file cannot be read or its header is wrong.
    """
    rows = read_member_csv(path)
    report = ImportReport()
    with write_transaction(db, durable=True):
        for line, row in rows:
            try:
                with db.atomic():  # a savepoint: a bad row leaves nothing behind
                    if isinstance(row, AccessError):
                        raise row
                    _import_row(db, secret, row, now, report)
            except AccessError as exc:
                report.errors.append((line, str(exc)))
    return report


@dataclass(frozen=True, slots=True)
class CsvMember:
    """One row of a members CSV, checked: what to add or update."""

    name: str
    uid: str  # empty: no badge given
    role: str  # empty: not given
    machines: tuple[str, ...]
    until: date | None


def csv_member(row: dict[str, str]) -> CsvMember:
    """A CSV row's fields, checked (AccessError naming the field)."""
    name = _check_name(row.get("name") or "")
    role = (row.get("role") or "").strip()
    if role:
        _check_role(role)
    machines = tuple(m.strip() for m in (row.get("machines") or "").split(";") if m.strip())
    until_text = (row.get("until") or "").strip()
    try:
        until = date.fromisoformat(until_text) if until_text else None
    except ValueError:
        raise AccessError(f"until {until_text!r} is not a date (YYYY-MM-DD)") from None
    if until is not None and not machines:
        raise AccessError("until is set but machines is empty")
    return CsvMember(name, (row.get("badge") or "").strip(), role, machines, until)


def read_member_csv(path: Path) -> list[tuple[int, dict[str, str] | AccessError]]:
    """The rows of a members CSV by line (blank lines skipped; a row with too many fields is an
    AccessError in its place). Raises AccessError when the file cannot be read or its header is wrong."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets often write a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"{path}: cannot read it ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if "name" not in header or unknown:
        what = f"unknown column(s) {', '.join(map(repr, unknown))}" if unknown else "no 'name' column"
        raise AccessError(f"{path}: line 1: {what}; expected the header {','.join(CSV_COLUMNS)}")
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str] | AccessError]] = []
    for row in reader:
        line = reader.line_num  # where the row ends: its own line unless a quoted field spans lines
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        if None in row:
            fields = len(header) + len(row[None])
            rows.append((line, AccessError(f"{fields} fields; the header has {len(header)}")))
        else:
            rows.append((line, row))
    return rows
