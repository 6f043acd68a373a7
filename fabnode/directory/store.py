"""The lab directory on one node: the latest entry per (member, field), this node's unpublished changes,
and the members tables that taps read (fabnode.records.members.check_access), kept in step.

Merge rule (the same on every node, so nodes that hold the same entries hold the same directory):
the latest hybrid-clock stamp per (member, field) wins; at an equal stamp a revocation beats a grant
(then the canonical value decides, so that no tie is left to arrival order); `removed` and `erased`
are final: a removed member keeps only their tombstone and later entries for them are ignored, and
an erased one keeps nothing but their id. Each batch is one transaction; a batch that would change
nothing (a snapshot part this node holds already) takes no write transaction at all.

The digest's sum (fabnode.directory.digest) is kept in `directory_meta` beside the rows, in the same
transaction: `_merge` is the only writer of `directory_state`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlite_utils import Database

from fabnode.directory import digest as state_digest
from fabnode.directory import projection
from fabnode.directory.clock import Hlc, HybridClock
from fabnode.directory.entry import (
    BADGE,
    ERASED,
    NAME,
    REMOVED,
    Entry,
    EntryError,
    Json,
    canonical,
    check_lab,
    check_node_id,
    is_revocation,
)
from fabnode.directory.seal import (
    KIND_SNAPSHOT,
    MAGIC,
    OTHER_LAB,
    Refused,
    open_sealed,
    open_snapshot,
    seal,
    seal_snapshot,
)
from fabnode.records.schema import UsageLogError, schema_version, utc_iso, write_transaction

DIRECTORY_SCHEMA = 4  # the usage log's schema version that has the directory's tables
DIGEST_CHARS = state_digest.DIGEST_CHARS
SUM_KEY = "digest_sum"  # directory_meta: the digest's sum over directory_state, hex
MAX_REASONS = 20  # reasons kept per report: a flood of junk must not grow memory


Stamp = tuple[int, int, str]  # an Hlc's (wall_ms, counter, node), ordered as the Hlc is
Held = dict[str, dict[str, tuple[Stamp, str]]]  # member -> field -> (stamp, canonical value) in force


class DirectoryError(ValueError):
    """A change the directory cannot make (e.g. to a removed member); the message says why."""


@dataclass(slots=True)
class ApplyReport:
    """What a batch did: applied entries changed the directory; stale ones lost to what it held;
    duplicates it held already; refused ones were not opened (reasons: why)."""

    applied: int = 0
    stale: int = 0
    duplicate: int = 0
    refused: int = 0
    reasons: list[str] = field(default_factory=list)

    def refuse(self, reason: str) -> None:
        """Count one refused blob or entry."""
        self.refused += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)


def wall_ms(now: datetime) -> int:
    """An aware datetime as milliseconds since the epoch (the hybrid clock's wall part)."""
    if now.tzinfo is None:
        raise ValueError(f"{now!r}: an aware datetime expected")
    return int(now.timestamp() * 1000)


def _order(hlc: Stamp, field_name: str, value_json: str) -> tuple[Stamp, int, str]:
    # At one stamp, a revocation (rank 1) beats a grant (rank 0); then the value's bytes decide.
    value: Json = json.loads(value_json)
    return hlc, int(is_revocation(field_name, value)), value_json


def _stamp(hlc: Hlc) -> Stamp:
    return hlc.wall_ms, hlc.counter, hlc.node


def _ref(entry_field: str, value: Json) -> str | None:
    if entry_field == NAME and isinstance(value, str):
        return value.casefold()
    if entry_field == REMOVED and isinstance(value, dict) and isinstance(value.get("name"), str):
        return str(value["name"]).casefold()
    if entry_field == BADGE and isinstance(value, str):
        return value
    return None


class LabDirectory:
    """One node's copy of the lab directory, over the node's usage database."""

    def __init__(self, db: Database, lab_secret: bytes, node_id: str, lab: str) -> None:
        self.db = db
        self.secret = lab_secret
        self.node = check_node_id(node_id)
        self.lab = check_lab(lab)
        self._depth = 0  # nesting of batch(): only the outermost opens and commits the transaction
        self._sum: int | None = None  # the digest's sum inside a batch, once read
        self._rows: Held | None = None  # the state of the members a merge is about, read at once

    @classmethod
    def open(
        cls, db: Database, lab_secret: bytes, node_id: str, lab: str, remember: bool = True
    ) -> LabDirectory:
        """The directory in this usage database (migrated by UsageLog.open) for this node and lab;
        `remember` keeps the node and lab ids for a CLI that has no config (see `identity`)."""
        version = schema_version(db)
        if version < DIRECTORY_SCHEMA:
            raise UsageLogError(f"usage database at schema {version}: the lab directory needs "
                                f"{DIRECTORY_SCHEMA} (open it with UsageLog.open first)")  # fmt: skip
        if len(lab_secret) < 16:
            raise ValueError(f"the lab secret is {len(lab_secret)} bytes; expected at least 16")
        directory = cls(db, lab_secret, node_id, lab)
        if remember and cls.identity(db) != (directory.lab, directory.node):
            with directory.batch():
                directory._set_meta("lab", directory.lab)
                directory._set_meta("node", directory.node)
        return directory

    @staticmethod
    def identity(db: Database) -> tuple[str, str] | None:
        """The (lab, node) ids the daemon last opened this directory with, if any."""
        found = db.execute("SELECT key, value FROM directory_meta WHERE key IN ('lab', 'node')")
        rows = dict(found.fetchall())
        return (str(rows["lab"]), str(rows["node"])) if len(rows) == 2 else None

    # --- transactions -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[LabDirectory]:
        """One write transaction around several changes (nested batches join the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        with write_transaction(self.db, durable=True):
            self._depth, self._sum = 1, None  # the sum is read inside the transaction: it may have moved
            try:
                yield self
            finally:
                self._depth, self._sum, self._rows = 0, None, None

    # --- local changes ----------------------------------------------------------------------------

    def change(self, member: str, entry_field: str, value: Json, now: datetime) -> Entry:
        """Make one change here: stamp it, apply it at once, keep it to publish; return the entry."""
        return self.change_many([(member, entry_field, value)], now)[0]

    def change_many(self, changes: Sequence[tuple[str, str, Json]], now: datetime) -> list[Entry]:
        """Several changes in one transaction, stamped in order (EntryError/DirectoryError: none made)."""
        made: list[Entry] = []
        with self.batch():
            clock = HybridClock(self.node, self._clock())
            touched: set[str] = set()
            old_refs = projection.refs_of(self.db, {m for m, _, _ in changes})
            for member, entry_field, value in changes:
                if self._final(member) and entry_field != ERASED:
                    raise DirectoryError(f"member {member} was removed: their entries are final")
                entry = Entry(self.lab, self.node, clock.now(wall_ms(now)), member, entry_field, value)
                if self._merge(entry) == "applied":
                    touched.add(member)
                self.db.execute("INSERT INTO directory_outbox (member, entry) VALUES (?, ?)",
                                [member, entry.to_json().decode()])  # fmt: skip
                made.append(entry)
            self._set_meta("clock", clock.last.text())
            self._after_merge(touched, old_refs, now)
        return made

    # --- entries from other nodes -------------------------------------------------------------------

    def apply(self, entries: Iterable[Entry], now: datetime) -> ApplyReport:
        """Merge entries (from other nodes, or this one's own coming back) in one transaction."""
        report = ApplyReport()
        self._apply_into(list(entries), now, report)
        return report

    def apply_sealed(self, blobs: Iterable[bytes], now: datetime) -> ApplyReport:
        """Open and merge sealed entries and snapshots; what does not open is refused and counted."""
        report = ApplyReport()
        entries: list[Entry] = []
        for blob in blobs:
            try:
                if bytes(blob[:4]) == MAGIC and bytes(blob[5:6]) == KIND_SNAPSHOT:
                    entries.extend(open_snapshot(self.secret, blob, self.lab))
                else:
                    entries.append(open_sealed(self.secret, blob, self.lab))
            except Refused as exc:
                report.refuse(exc.reason)
        self._apply_into(entries, now, report)
        return report

    def _apply_into(self, entries: list[Entry], now: datetime, report: ApplyReport) -> None:
        if not self._depth:
            entries = self._news(entries, report)
            if not entries and not report.refused:
                return
        with self.batch():
            clock = HybridClock(self.node, self._clock())
            old_refs = projection.refs_of(self.db, {e.member for e in entries})
            self._rows = self._load({e.member for e in entries})  # kept up to date by _merge
            touched: set[str] = set()
            for entry in entries:
                if entry.lab != self.lab:
                    report.refuse(OTHER_LAB)
                    continue
                outcome = self._merge(entry)
                if outcome == "applied":
                    report.applied += 1
                    touched.add(entry.member)
                elif outcome == "stale":
                    report.stale += 1
                else:
                    report.duplicate += 1
                clock.observe(entry.hlc, wall_ms(now))
            self._rows = None
            self._set_meta("clock", clock.last.text())
            self._after_merge(touched, old_refs, now)
            if report.refused:
                self._bump_refused(report.refused)

    def _news(self, entries: list[Entry], report: ApplyReport) -> list[Entry]:
        """The entries that could change the state or the clock, read without a transaction; the
        others (a snapshot part's, mostly) are counted in `report`. What the state holds only grows
        (a later stamp, a tombstone), so an entry stale or held now is so after the others too."""
        last = self._clock()
        seen = (last.wall_ms, last.counter) if last is not None else (-1, -1)
        news: list[Entry] = []
        self._rows = self._load({e.member for e in entries})
        try:
            for entry in entries:
                if entry.lab != self.lab or (entry.hlc.wall_ms, entry.hlc.counter) > seen:
                    news.append(entry)
                    continue
                outcome, _ = self._decide(entry, canonical(entry.value).decode())
                if outcome == "applied":
                    news.append(entry)
                elif outcome == "stale":
                    report.stale += 1
                else:
                    report.duplicate += 1
        finally:
            self._rows = None
        return news

    # --- the merge ----------------------------------------------------------------------------------

    def _final(self, member: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM directory_state WHERE member = ? AND field IN (?, ?)", [member, REMOVED, ERASED]
        ).fetchone()
        return row is not None

    def _load(self, members: set[str]) -> Held:
        """The state of these members, field by field, in a few queries."""
        rows: Held = {member: {} for member in members}
        for part in projection.chunks(sorted(members)):
            marks = ",".join("?" * len(part))
            for member, entry_field, wall, counter, node, value in self.db.execute(
                "SELECT member, field, wall_ms, counter, node, value FROM directory_state "
                f"WHERE member IN ({marks})", part,
            ):  # fmt: skip
                rows[member][entry_field] = ((wall, counter, node), value)
        return rows

    def _held(self, member: str, entry_field: str) -> tuple[Stamp, str] | None:
        if self._rows is not None and member in self._rows:
            return self._rows[member].get(entry_field)
        row = self.db.execute(
            "SELECT wall_ms, counter, node, value FROM directory_state WHERE member = ? AND field = ?",
            [member, entry_field],
        ).fetchone()
        return None if row is None else ((row[0], row[1], row[2]), row[3])

    def _decide(self, entry: Entry, value_json: str) -> tuple[str, tuple[Stamp, str] | None]:
        """What merging one entry would do ("applied", "stale" or "duplicate"), and the value held."""
        held, stamp = self._held(entry.member, entry.field), _stamp(entry.hlc)
        if held == (stamp, value_json):  # most of a snapshot part: decided without parsing values
            return "duplicate", held
        if held is not None:
            mine, theirs = _order(stamp, entry.field, value_json), _order(held[0], entry.field, held[1])
            if theirs == mine:
                return "duplicate", held
            if theirs > mine:
                return "stale", held
        if entry.field != ERASED:
            if self._held(entry.member, ERASED) is not None:
                return "stale", held
            if entry.field != REMOVED and self._held(entry.member, REMOVED) is not None:
                return "stale", held
        return "applied", held

    def _merge(self, entry: Entry) -> str:
        """Merge one entry into the state: "applied", "stale" or "duplicate"."""
        value_json = canonical(entry.value).decode()
        outcome, held = self._decide(entry, value_json)
        if outcome != "applied":
            return outcome
        total = self._current_sum()
        if held is not None:
            total -= state_digest.row_hash((entry.member, entry.field, *held[0], held[1]))
        if entry.field in (REMOVED, ERASED):
            # A tombstone keeps only itself: the rest of the member goes (an erasure takes the
            # removal's name too, and this node's unpublished changes of them).
            for row in self.db.execute(
                "SELECT member, field, wall_ms, counter, node, value FROM directory_state "
                "WHERE member = ? AND field != ?", [entry.member, entry.field],
            ).fetchall():  # fmt: skip
                total -= state_digest.row_hash(row)
            self.db.execute("DELETE FROM directory_state WHERE member = ? AND field != ?",
                            [entry.member, entry.field])  # fmt: skip
            if self._rows is not None and entry.member in self._rows:
                self._rows[entry.member].clear()
            if entry.field == ERASED:
                self.db.execute("DELETE FROM directory_outbox WHERE member = ?", [entry.member])
        total += state_digest.row_hash((entry.member, entry.field, *_stamp(entry.hlc), value_json))
        if self._rows is not None and entry.member in self._rows:
            self._rows[entry.member][entry.field] = (_stamp(entry.hlc), value_json)
        self._sum = total % state_digest.MODULUS
        self.db.execute(
            "INSERT INTO directory_state (member, field, wall_ms, counter, node, author, value, ref) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (member, field) DO UPDATE SET "
            "wall_ms = excluded.wall_ms, counter = excluded.counter, node = excluded.node, "
            "author = excluded.author, value = excluded.value, ref = excluded.ref",
            [entry.member, entry.field, entry.hlc.wall_ms, entry.hlc.counter, entry.hlc.node, entry.author,
             value_json, _ref(entry.field, entry.value)],
        )  # fmt: skip
        return "applied"

    def _after_merge(self, touched: set[str], old_refs: projection.Refs, now: datetime) -> None:
        if not touched:
            return
        if self._sum is not None:
            self._set_meta(SUM_KEY, f"{self._sum:064x}")
        projection.project(self.db, self.secret, touched, old_refs, now)

    # --- publishing ---------------------------------------------------------------------------------

    def unpublished(self) -> list[tuple[int, bytes]]:
        """This node's changes not yet acknowledged by the broker, sealed, oldest first."""
        out: list[tuple[int, bytes]] = []
        for row_id, text in self.db.execute(
            "SELECT id, entry FROM directory_outbox WHERE published IS NULL ORDER BY id"
        ).fetchall():
            entry = Entry.from_json(text.encode())
            if entry.lab != self.lab:  # made by a CLI that did not know the lab's id: seal it as ours
                entry = Entry(self.lab, entry.author, entry.hlc, entry.member, entry.field, entry.value)
            out.append((int(row_id), seal(self.secret, entry)))
        return out

    def unpublished_members(self) -> set[str]:
        """The members this node's changes not yet acknowledged are about."""
        rows = self.db.execute("SELECT DISTINCT member FROM directory_outbox WHERE published IS NULL")
        return {str(row[0]) for row in rows}

    def mark_published(self, ids: Sequence[int]) -> None:
        """The broker acknowledged these (ids from `unpublished`)."""
        if not ids:
            return
        now = utc_iso(datetime.now(UTC))
        with self.batch():
            for row_id in ids:
                self.db.execute("UPDATE directory_outbox SET published = ? WHERE id = ?", [now, int(row_id)])
            # Published changes are in every node's state (and in the snapshot): keep only the pending.
            self.db.execute("DELETE FROM directory_outbox WHERE published IS NOT NULL")

    def entries(self) -> list[Entry]:
        """The directory in force: the latest entry per (member, field), tombstones included."""
        rows = self.db.execute(
            "SELECT member, field, wall_ms, counter, node, author, value FROM directory_state "
            "ORDER BY member, field"
        ).fetchall()
        return [Entry(self.lab, r[5], Hlc(r[2], r[3], r[4]), r[0], r[1], json.loads(r[6])) for r in rows]

    def entry_count(self) -> int:
        """How many (member, field) values the directory holds."""
        return int(self.db.execute("SELECT count(*) FROM directory_state").fetchone()[0])

    def snapshot(self) -> bytes:
        """The whole directory in force, sealed as one blob."""
        return seal_snapshot(self.secret, self.lab, self.node, self.entries())

    def snapshot_parts(self, max_bytes: int) -> list[bytes]:
        """The whole directory as sealed snapshots of at most about `max_bytes` of entries each
        (at least one, empty for an empty directory)."""
        if max_bytes < 1024:
            raise ValueError(f"max_bytes {max_bytes}: at least 1024")
        parts: list[list[Entry]] = [[]]
        size = 0
        for entry in self.entries():
            n = len(entry.to_json())
            if parts[-1] and size + n > max_bytes:
                parts.append([])
                size = 0
            parts[-1].append(entry)
            size += n
        return [seal_snapshot(self.secret, self.lab, self.node, part) for part in parts]

    def digest(self) -> str:
        """A short hex digest of the directory in force: equal on nodes that hold the same directory."""
        text = self._meta(SUM_KEY)
        if text:
            return state_digest.shown(int(text, 16))
        total = None  # a file from before the sum was kept: summed once, and kept
        with contextlib.suppress(Exception), self.batch():  # a read-only caller just sums each time
            total = self._current_sum()
            self._set_meta(SUM_KEY, f"{total:064x}")
        return state_digest.shown(state_digest.scan(self.db) if total is None else total)

    def _current_sum(self) -> int:
        """The digest's sum as this transaction sees it (read, or computed once, on first use)."""
        if self._sum is None:
            text = self._meta(SUM_KEY)
            self._sum = int(text, 16) if text else state_digest.scan(self.db)
        return self._sum

    # --- counters -----------------------------------------------------------------------------------

    def refused_count(self) -> int:
        """Blobs and entries refused since this directory began (`directory.refused` in status)."""
        return int(self._meta("refused") or 0)

    def note_refused(self, reason: str) -> None:
        """Count one refusal seen by the caller (e.g. a message too big to hand over)."""
        with self.batch():
            self._bump_refused(1)

    def _bump_refused(self, n: int) -> None:
        self._set_meta("refused", str(self.refused_count() + n))

    def last_contact(self) -> datetime | None:
        """When this node last heard from the lab's broker (None: never)."""
        text = self._meta("last_contact")
        return datetime.fromisoformat(text) if text else None

    def note_contact(self, now: datetime) -> None:
        """This node is in contact with the lab now."""
        with self.batch():
            self._set_meta("last_contact", now.astimezone(UTC).isoformat())

    # --- meta -----------------------------------------------------------------------------------------

    def _clock(self) -> Hlc | None:
        text = self._meta("clock")
        if not text:
            return None
        wall, counter, node = text.split(".", 2)
        return Hlc(int(wall), int(counter), node)

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM directory_meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO directory_meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value])  # fmt: skip


__all__ = ["ApplyReport", "DirectoryError", "EntryError", "LabDirectory", "Refused", "wall_ms"]
