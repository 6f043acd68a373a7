"""The directory in force, projected onto the members tables that taps and the CLI read.

A members row stands for one name (its `member_hash` is the name's keyed hash, as telemetry has
always had it) and is never deleted, so past sessions and jobs keep their member. The row of a name
belongs to one directory member: the active member who took the name first (by clock, then id),
else the one removed last. An active member who lost their name to another is shown as
"Name #1a2b3c"; a badge held by two active members works for the one who enrolled it first.
Everything here is a function of the directory in force, so every node projects the same.
Called inside the directory's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlite_utils import Database

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
)
from fabnode.records import api_keys
from fabnode.records.members import member_hash
from fabnode.records.schema import utc_iso

ERASED_BADGE = "erased"  # what an erased member's badge hash becomes in access_events


@dataclass(slots=True)
class Refs:
    """The names (casefold) and badge hashes some members hold: what their projection depends on."""

    names: set[str] = field(default_factory=set)
    badges: set[str] = field(default_factory=set)
    badges_of: dict[str, set[str]] = field(default_factory=dict)  # member -> badge hashes


def chunks(items: Iterable[str], size: int = 500) -> Iterable[list[str]]:
    """The items in lists of at most `size` (SQLite's bound parameters are limited)."""
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def refs_of(db: Database, members: set[str]) -> Refs:
    """The names and badges these members hold now (in the state and in their members rows)."""
    refs = Refs()
    for part in chunks(sorted(members)):
        marks = ",".join("?" * len(part))
        for member, entry_field, ref in db.execute(
            f"SELECT member, field, ref FROM directory_state WHERE member IN ({marks}) AND ref IS NOT NULL",
            part,
        ):
            if entry_field == BADGE:
                refs.badges.add(ref)
                refs.badges_of.setdefault(member, set()).add(ref)
            else:
                refs.names.add(ref)
        for member, name, badge in db.execute(
            f"SELECT directory_id, name, badge_hash FROM members WHERE directory_id IN ({marks})", part
        ):
            refs.names.add(str(name).casefold())
            if badge:
                refs.badges.add(badge)
                refs.badges_of.setdefault(member, set()).add(badge)
    return refs


@dataclass(slots=True)
class _View:
    """One directory member's fields in force."""

    member: str
    fields: dict[str, tuple[tuple[int, int, str], object]] = field(default_factory=dict)

    def value(self, name: str) -> object:
        found = self.fields.get(name)
        return None if found is None else found[1]

    def stamp(self, name: str) -> tuple[int, int, str]:
        return self.fields[name][0]


def _views(db: Database, members: set[str]) -> dict[str, _View]:
    views = {m: _View(m) for m in members}
    for part in chunks(sorted(members)):
        marks = ",".join("?" * len(part))
        for member, entry_field, wall, counter, node, value in db.execute(
            "SELECT member, field, wall_ms, counter, node, value FROM directory_state "
            f"WHERE member IN ({marks})",
            part,
        ):
            views[member].fields[entry_field] = ((wall, counter, node), json.loads(value))
    return views


def _candidates(db: Database, names: set[str]) -> dict[str, list[tuple[str, str, tuple[int, int, str]]]]:
    """name -> [(member, name or removed, stamp)] of every directory member holding that name."""
    out: dict[str, list[tuple[str, str, tuple[int, int, str]]]] = {n: [] for n in names}
    for part in chunks(sorted(names)):
        marks = ",".join("?" * len(part))
        for member, entry_field, ref, wall, counter, node in db.execute(
            f"SELECT member, field, ref, wall_ms, counter, node FROM directory_state "
            f"WHERE field IN (?, ?) AND ref IN ({marks})",
            [NAME, REMOVED, *part],
        ):
            out[ref].append((member, entry_field, (wall, counter, node)))
    return out


def _owner(candidates: list[tuple[str, str, tuple[int, int, str]]]) -> str | None:
    active = [(stamp, member) for member, f, stamp in candidates if f == NAME]
    if active:
        return min(active)[1]
    removed = [(stamp, member) for member, f, stamp in candidates if f == REMOVED]
    return max(removed)[1] if removed else None


def _badge_winners(db: Database, badges: set[str]) -> dict[str, str | None]:
    winners: dict[str, str | None] = dict.fromkeys(badges)
    for part in chunks(sorted(badges)):
        marks = ",".join("?" * len(part))
        for ref, member in db.execute(
            # A badge row exists only for members that are not removed: tombstones keep nothing else.
            f"SELECT ref, member FROM directory_state WHERE field = ? AND ref IN ({marks}) "
            "ORDER BY wall_ms DESC, counter DESC, node DESC, member DESC",
            [BADGE, *part],
        ):
            winners[ref] = member  # the last row of each badge is the earliest: it wins
    return winners


def project(db: Database, secret: bytes, touched: set[str], old: Refs, now: datetime) -> None:
    """Bring the members tables in line with the directory for these members (and whoever shares a
    name or a badge with them, before or after)."""
    new = refs_of(db, touched)
    names = old.names | new.names
    candidates = _candidates(db, names)
    members = set(touched)
    for group in candidates.values():
        members.update(m for m, _, _ in group)
    views = _views(db, members)
    owners = {name: _owner(group) for name, group in candidates.items()}
    badges = old.badges | refs_of(db, members).badges
    winners = _badge_winners(db, badges)
    erased = {m for m, v in views.items() if ERASED in v.fields}
    if erased:
        db.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed: the name leaves the file
    previous = _detach(db, members)
    written: set[int] = set()
    for member in sorted(members):
        row_id = _write(db, secret, views[member], owners, winners, now)
        if row_id is not None:
            written.add(row_id)
    for row_id, owner in previous.items():
        if row_id not in written:
            _unown(db, row_id, owner in erased, now)
    for badge, winner in winners.items():
        if winner is not None:
            db.execute("UPDATE members SET badge_hash = NULL WHERE badge_hash = ? AND "
                       "(directory_id IS NULL OR directory_id != ?)", [badge, winner])  # fmt: skip
            db.execute("UPDATE members SET badge_hash = ? WHERE directory_id = ? AND removed IS NULL",
                       [badge, winner])  # fmt: skip
    for member in erased:
        for badge in old.badges_of.get(member, set()):
            db.execute("UPDATE access_events SET badge_hash = ? WHERE badge_hash = ?", [ERASED_BADGE, badge])


def _detach(db: Database, members: set[str]) -> dict[int, str]:
    previous: dict[int, str] = {}
    for part in chunks(sorted(members)):
        marks = ",".join("?" * len(part))
        held = db.execute(f"SELECT id, directory_id FROM members WHERE directory_id IN ({marks})", part)
        for row_id, owner in held:
            previous[int(row_id)] = str(owner)
        db.execute(f"UPDATE members SET directory_id = NULL WHERE directory_id IN ({marks})", part)
    return previous


def _display(view: _View, owners: dict[str, str | None]) -> tuple[str, bool] | None:
    """The name this member's row has, and whether they are removed (None: erased or nameless)."""
    if ERASED in view.fields:
        return None
    if REMOVED in view.fields:
        tomb = view.value(REMOVED)
        assert isinstance(tomb, dict)
        name = str(tomb["name"])
        return (name, True) if owners.get(name.casefold()) == view.member else None
    name_value = view.value(NAME)
    if not isinstance(name_value, str):
        return None  # fields without a name yet (their name entry is still on its way)
    if owners.get(name_value.casefold()) == view.member:
        return name_value, False
    return f"{name_value} #{view.member[:6]}", False


def _write(
    db: Database, secret: bytes, view: _View, owners: dict[str, str | None],
    winners: dict[str, str | None], now: datetime,
) -> int | None:
    shown = _display(view, owners)
    if shown is None:
        return None
    name, removed = shown
    hashed = member_hash(secret, name)
    found = db.execute("SELECT id FROM members WHERE member_hash = ?", [hashed]).fetchone()
    tomb = view.value(REMOVED)
    role = str(tomb["role"]) if removed and isinstance(tomb, dict) else str(view.value(ROLE) or "member")
    if found is None:
        # A name NOCASE-equal to another row's but with another casefold cannot happen: casefold folds
        # at least what NOCASE does, so the lookup by hash found it.
        cur = db.execute("INSERT INTO members (name, role, member_hash, created) VALUES (?, ?, ?, ?)",
                         [name, role, hashed, utc_iso(now)])  # fmt: skip
        row_id = int(cur.lastrowid or 0)
    else:
        row_id = int(found[0])
    badge = view.value(BADGE)
    keep_badge = (not removed and isinstance(badge, str) and winners.get(badge) == view.member)
    removed_at = _stamp_iso(view.stamp(REMOVED)) if removed else None
    if keep_badge:
        db.execute("UPDATE members SET badge_hash = NULL WHERE badge_hash = ? AND id != ?", [badge, row_id])
    db.execute(
        "UPDATE members SET name = ?, role = ?, badge_hash = ?, removed = ?, directory_id = ?, email = ?, "
        "fab_manager_id = ? WHERE id = ?",
        [name, role, badge if keep_badge else None, removed_at, view.member,
         None if removed else view.value(EMAIL), None if removed else view.value(FAB_MANAGER_ID), row_id],
    )  # fmt: skip
    db.execute("DELETE FROM trainings WHERE member_id = ?", [row_id])
    keys: dict[str, bool] = {}
    if not removed:
        for entry_field, (stamp, value) in sorted(view.fields.items()):
            if entry_field.startswith(TRAINING) and isinstance(value, dict) and value.get("granted"):
                db.execute("INSERT INTO trainings (member_id, machine, until, granted) VALUES (?, ?, ?, ?)",
                           [row_id, entry_field[len(TRAINING):], value.get("until"), _stamp_iso(stamp)])
            elif entry_field.startswith(API_KEY) and isinstance(value, dict):
                keys[entry_field[len(API_KEY):]] = bool(value.get("granted"))
    api_keys.set_member_keys(db, row_id, role, keys, now=now)
    return row_id


def _unown(db: Database, row_id: int, erased: bool, now: datetime) -> None:
    """A row nobody in the directory holds any more: removed, and scrubbed of the name if erased."""
    db.execute("DELETE FROM trainings WHERE member_id = ?", [row_id])
    api_keys.set_member_keys(db, row_id, "member", {}, now=now)
    db.execute("UPDATE members SET badge_hash = NULL, removed = coalesce(removed, ?), email = NULL, "
               "fab_manager_id = NULL WHERE id = ?", [utc_iso(now), row_id])  # fmt: skip
    if erased:
        # The row stays (sessions and jobs point at it) under its pseudonymous hash only.
        db.execute("UPDATE members SET name = 'erased ' || substr(member_hash, 1, 16) WHERE id = ?", [row_id])


def _stamp_iso(stamp: tuple[int, int, str]) -> str:
    return utc_iso(datetime.fromtimestamp(stamp[0] / 1000, UTC))
