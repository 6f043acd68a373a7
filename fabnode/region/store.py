"""The region's store of every node's telemetry: an SQLite file, or PostgreSQL for several collectors.

`messages` keeps each envelope once, keyed by its unique id: a resent copy is dropped by
`INSERT ... ON CONFLICT (id) DO NOTHING`, whichever collector received it. In the same transaction:
`jobs` and `sessions` keep the latest record of each (an ended record replaces a started one, never
the reverse, whatever order they arrive in), and `nodes` keeps each node's acknowledged sequence
number: the highest N such that every record 1..N of that node is stored.

A record the region set aside (`rejected`: invalid, or refused by the database) counts as heard of
when its topic and payload say whose it was: the ack passes over its seq, so the node stops resending
it, and `rejected_seqs` (the report's `rejected`) names it; it is not a gap.

Contiguity counts from seq 1. A node whose first records never reached the region (its outbox was
pruned before the region existed, or its messages were lost) stays acknowledged below them and the
report shows the missing numbers as gaps; nothing is guessed.

Two collectors writing at once: each inserts its messages, then locks the node rows (sorted, so two
transactions cannot deadlock) and recomputes the acknowledged seq from the stored seqs. Under
PostgreSQL's READ COMMITTED, the second to take a node's lock sees everything the first committed, so
the mark never stays behind a record that is stored. SQLite serialises writers with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fabnode.envelope import INT64_MAX, MAX_MESSAGE_BYTES, Envelope, EnvelopeError, parse_topic
from fabnode.region.sql import Database, RegionStoreError, open_database, run_transaction

__all__ = ["SEQ_KINDS", "NodeAck", "RegionStore", "RegionStoreError", "Rejected", "StoreResult", "iso_now"]

SCHEMA_VERSION = 2  # 2: `rejected` says whose record it was (lab, machine, seq, msg_id)
# Records from the node's outbox: these carry the node's sequence numbers that acks count.
SEQ_KINDS = ("session_started", "session_ended", "job_started", "job_ended", "access", "fault", "state")
HEAD_BYTES = 200  # how much of a rejected message is kept, to see what it was
_WALK = 1000  # seqs read per query while advancing a node's acknowledged seq
_MESSAGE_COLUMNS = ("id", "lab", "machine", "kind", "schema", "version", "seq", "occurred_at", "sent_at",
                    "received_at", "data")  # fmt: skip
_JOB_COLUMNS = ("lab", "machine", "job_id", "msg_id", "status", "member_hash", "started", "ended",
                "running_s", "filament_mm", "filament_g", "laser_on_s", "cost", "material")  # fmt: skip
_SESSION_COLUMNS = ("lab", "machine", "session_id", "msg_id", "member_hash", "started", "ended", "end_reason",
                    "maintenance", "duration_s")  # fmt: skip


def _schema(types: dict[str, str]) -> list[str]:
    f, j = types["float"], types["json"]
    return [
        "CREATE TABLE IF NOT EXISTS region_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS messages (
            id TEXT PRIMARY KEY, lab TEXT NOT NULL, machine TEXT NOT NULL, kind TEXT NOT NULL,
            schema TEXT NOT NULL, version INTEGER NOT NULL, seq BIGINT, occurred_at TEXT NOT NULL,
            sent_at TEXT NOT NULL, received_at TEXT NOT NULL, data {j} NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS messages_node_seq ON messages (lab, machine, seq)",
        f"""CREATE TABLE IF NOT EXISTS jobs (
            lab TEXT NOT NULL, machine TEXT NOT NULL, job_id BIGINT NOT NULL, msg_id TEXT NOT NULL,
            status TEXT NOT NULL, member_hash TEXT, started TEXT NOT NULL, ended TEXT,
            running_s {f} NOT NULL DEFAULT 0, filament_mm {f} NOT NULL DEFAULT 0, filament_g {f},
            laser_on_s {f} NOT NULL DEFAULT 0, cost {f}, material TEXT,
            PRIMARY KEY (lab, machine, job_id))""",
        "CREATE INDEX IF NOT EXISTS jobs_started ON jobs (started)",
        f"""CREATE TABLE IF NOT EXISTS sessions (
            lab TEXT NOT NULL, machine TEXT NOT NULL, session_id BIGINT NOT NULL, msg_id TEXT NOT NULL,
            member_hash TEXT, started TEXT NOT NULL, ended TEXT, end_reason TEXT,
            maintenance INTEGER NOT NULL DEFAULT 0, duration_s {f},
            PRIMARY KEY (lab, machine, session_id))""",
        "CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started)",
        """CREATE TABLE IF NOT EXISTS nodes (
            lab TEXT NOT NULL, machine TEXT NOT NULL, acked_seq BIGINT NOT NULL DEFAULT 0, acked_id TEXT,
            max_seq BIGINT NOT NULL DEFAULT 0, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
            PRIMARY KEY (lab, machine))""",
        f"""CREATE TABLE IF NOT EXISTS rejected (
            id {types["serial"]}, received_at TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
            size INTEGER NOT NULL, head TEXT NOT NULL, lab TEXT, machine TEXT, seq BIGINT, msg_id TEXT)""",
        "CREATE INDEX IF NOT EXISTS rejected_node_seq ON rejected (lab, machine, seq)",
    ]


_REJECTED_V2 = (("lab", "TEXT"), ("machine", "TEXT"), ("seq", "BIGINT"), ("msg_id", "TEXT"))


def iso_now(now: datetime) -> str:
    """A UTC time to the millisecond, e.g. 2025-03-01T12:34:56.789Z."""
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now.isoformat()}: pass an aware UTC time")
    return now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class NodeAck:
    """Every record of node (lab, machine) up to `seq` is stored; `msg_id` is record `seq`'s id."""

    lab: str
    machine: str
    seq: int
    msg_id: str | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message set aside: where it came from, why, and its first bytes."""

    topic: str
    reason: str
    payload: bytes

    def head(self) -> str:
        """The first bytes as text (PostgreSQL text cannot hold NUL)."""
        return self.payload[:HEAD_BYTES].decode("utf-8", "replace").replace("\x00", "\\x00")

    def owner(self) -> tuple[str | None, str | None, int | None, str | None]:
        """(lab, machine, seq, msg_id) as far as they can be told: lab and machine from the topic (the
        broker's ACL lets a node write only its own), seq and id from the payload when they are sane."""
        try:
            where = parse_topic(self.topic)
        except EnvelopeError:
            return None, None, None, None
        try:  # leniently: a NaN figure must not hide whose record it was
            obj = json.loads(self.payload) if len(self.payload) <= MAX_MESSAGE_BYTES else None
        except (ValueError, RecursionError):  # a payload nested too deep is no one's record, not a crash
            obj = None
        if not isinstance(obj, dict):
            return where.lab, where.machine, None, None
        seq, msg_id = obj.get("seq"), obj.get("id")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= INT64_MAX:
            seq = None
        if not isinstance(msg_id, str) or not 0 < len(msg_id) <= 64 or "\x00" in msg_id:
            msg_id = None
        return where.lab, where.machine, seq, msg_id


@dataclass(slots=True)
class StoreResult:
    """What one `store()` call did: new and duplicate ids, rejects kept, and the touched nodes' acks."""

    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: int = 0
    acks: list[NodeAck] = field(default_factory=list)


class RegionStore:
    """The region's database. `RegionStore.open(path_or_url)`; the same code on SQLite and PostgreSQL."""

    def __init__(self, db: Database, target: str | Path | None = None) -> None:
        self.db = db
        self.target = target

    @classmethod
    def open(cls, target: str | Path) -> RegionStore:
        """Open (creating the tables if needed) an SQLite file or a `postgresql://` database."""
        db = open_database(target)
        try:
            run_transaction(db, _create, db)
        except RegionStoreError:
            db.close()
            raise
        except Exception as exc:
            db.close()
            raise RegionStoreError(f"{db.name}: cannot set up the region store ({exc})") from exc
        return cls(db, target)

    def reconnect(self) -> bool:
        """Open the database again after an error (a PostgreSQL restart); False while it is still away."""
        if self.target is None:
            return False
        try:
            db = open_database(self.target)
        except RegionStoreError:
            return False
        old, self.db = self.db, db
        with contextlib.suppress(Exception):  # the old connection is broken anyway
            old.close()
        return True

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.db.dialect

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> RegionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read query in portable SQL with `?` placeholders."""
        return self.db.execute(sql, params)

    def store(
        self, envelopes: Sequence[Envelope], now: datetime, rejected: Sequence[Rejected] = ()
    ) -> StoreResult:
        """Store envelopes (duplicates dropped) and rejects in ONE committed transaction."""
        result: StoreResult = run_transaction(self.db, self._store, envelopes, rejected, iso_now(now))
        return result

    def _store(self, envelopes: Sequence[Envelope], rejected: Sequence[Rejected], now: str) -> StoreResult:
        result = StoreResult(rejected=len(rejected))
        unique = {e.id: e for e in envelopes}  # the same id twice in one batch: keep one
        # Sorted by id (and below by node, job, session) so concurrent writers take locks in one order.
        fresh = self._insert_messages(sorted(unique.values(), key=lambda e: e.id), now)
        new = [unique[i] for i in sorted(fresh)]
        for e in envelopes:  # the first copy of a new id is stored; every other copy is a duplicate
            (result.stored if e.id in fresh else result.duplicates).append(e.id)
            fresh.discard(e.id)
        self._upsert_jobs(new)
        self._upsert_sessions(new)
        skipped: list[tuple[str, str, int]] = []  # rejected records of a node: its ack passes over them
        for r in rejected:
            lab, machine, seq, msg_id = r.owner()
            if lab is not None and machine is not None and seq is not None:
                skipped.append((lab, machine, seq))
            self.db.execute(
                "INSERT INTO rejected (received_at, topic, reason, size, head, lab, machine, seq, msg_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [now, _text(r.topic), _text(r.reason), len(r.payload), r.head(), lab, machine, seq, msg_id],
            )
        touched = sorted({(e.lab, e.machine) for e in unique.values() if e.kind in SEQ_KINDS}
                         | {(lab, machine) for lab, machine, _s in skipped})  # fmt: skip
        result.acks = [self._advance(lab, machine, now, unique.values(), skipped) for lab, machine in touched]
        return result

    def _insert_messages(self, envelopes: Sequence[Envelope], now: str) -> set[str]:
        fresh: set[str] = set()
        for chunk in _chunks(envelopes, 400):
            rows = [(e.id, e.lab, e.machine, e.kind, e.schema, e.version, e.seq, e.occurred_at, e.sent_at,
                     now, json.dumps(e.data, separators=(",", ":"))) for e in chunk]  # fmt: skip
            sql = _insert_sql("messages", _MESSAGE_COLUMNS, len(rows))
            returned = self.db.execute(f"{sql} ON CONFLICT (id) DO NOTHING RETURNING id", _flat(rows))
            fresh.update(str(r[0]) for r in returned)
        return fresh

    def _upsert_jobs(self, envelopes: Iterable[Envelope]) -> None:
        latest: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        for e in envelopes:
            if e.kind in ("job_started", "job_ended"):
                d = e.data
                key = (e.lab, e.machine, int(d["job_id"]))
                row = (*key, e.id, d["status"], d.get("member_hash"), d["started"], d.get("ended"),
                       d.get("running_s") or 0.0, d.get("filament_mm") or 0.0, d.get("filament_g"),
                       d.get("laser_on_s") or 0.0, d.get("cost"), d.get("material"))  # fmt: skip
                if key not in latest or latest[key][4] == "in_progress":
                    latest[key] = row
        updates = ", ".join(f"{c} = excluded.{c}" for c in _JOB_COLUMNS[3:])
        for chunk in _chunks([latest[k] for k in sorted(latest)], 200):
            self.db.execute(
                f"{_insert_sql('jobs', _JOB_COLUMNS, len(chunk))} ON CONFLICT (lab, machine, job_id) "
                f"DO UPDATE SET {updates} WHERE jobs.status = 'in_progress'",  # an ended job stays ended
                _flat(chunk),
            )

    def _upsert_sessions(self, envelopes: Iterable[Envelope]) -> None:
        latest: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        for e in envelopes:
            if e.kind in ("session_started", "session_ended"):
                d = e.data
                key = (e.lab, e.machine, int(d["session_id"]))
                row = (*key, e.id, d.get("member_hash"), d["started"], d.get("ended"), d.get("end_reason"),
                       int(bool(d.get("maintenance"))), d.get("duration_s"))  # fmt: skip
                if key not in latest or latest[key][6] is None:
                    latest[key] = row
        updates = ", ".join(f"{c} = excluded.{c}" for c in _SESSION_COLUMNS[3:])
        for chunk in _chunks([latest[k] for k in sorted(latest)], 200):
            self.db.execute(
                f"{_insert_sql('sessions', _SESSION_COLUMNS, len(chunk))} "
                f"ON CONFLICT (lab, machine, session_id) DO UPDATE SET {updates} "
                "WHERE sessions.ended IS NULL",
                _flat(chunk),
            )

    def _advance(
        self, lab: str, machine: str, now: str, batch: Iterable[Envelope],
        skipped: Sequence[tuple[str, str, int]],
    ) -> NodeAck:  # fmt: skip
        """Lock the node's row and move its acknowledged seq over every contiguous stored record."""
        self.db.execute(
            "INSERT INTO nodes (lab, machine, first_seen, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (lab, machine) DO NOTHING",
            [lab, machine, now, now],
        )
        acked, acked_id, max_seq = self.db.execute(
            "SELECT acked_seq, acked_id, max_seq FROM nodes WHERE lab = ? AND machine = ?"
            + self.db.lock_clause(),
            [lab, machine],
        )[0]
        seqs = [e.seq for e in batch if e.lab == lab and e.machine == machine and e.seq is not None]
        seqs += [seq for lab_, machine_, seq in skipped if (lab_, machine_) == (lab, machine)]
        max_seq = max([int(max_seq), *seqs])
        acked, acked_id = self._walk(lab, machine, int(acked), acked_id)
        self.db.execute(
            "UPDATE nodes SET acked_seq = ?, acked_id = ?, max_seq = ?, last_seen = ? "
            "WHERE lab = ? AND machine = ?",
            [acked, acked_id, max_seq, now, lab, machine],
        )
        return NodeAck(lab, machine, acked, acked_id)

    def _walk(self, lab: str, machine: str, acked: int, acked_id: str | None) -> tuple[int, str | None]:
        kinds = ", ".join("?" * len(SEQ_KINDS))
        while True:
            # A record set aside as rejected counts as heard of: the node must not resend it forever.
            rows = self.db.execute(
                "SELECT seq, id FROM messages WHERE lab = ? AND machine = ? AND seq > ? "
                f"AND kind IN ({kinds}) UNION SELECT seq, msg_id FROM rejected "
                "WHERE lab = ? AND machine = ? AND seq > ? ORDER BY 1, 2 LIMIT ?",
                [lab, machine, acked, *SEQ_KINDS, lab, machine, acked, _WALK],
            )
            for seq, msg_id in rows:
                if int(seq) == acked + 1:
                    acked, acked_id = acked + 1, None if msg_id is None else str(msg_id)
                elif int(seq) > acked + 1:
                    return acked, acked_id  # the first gap: stop here
            if len(rows) < _WALK:
                return acked, acked_id

    def acks(self) -> list[NodeAck]:
        """Every node's acknowledgement, by lab and machine."""
        rows = self.db.execute("SELECT lab, machine, acked_seq, acked_id FROM nodes ORDER BY lab, machine")
        return [NodeAck(str(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]

    def node_ack(self, lab: str, machine: str) -> NodeAck | None:
        """One node's acknowledgement, or None for a node never heard of."""
        found = [a for a in self.acks() if (a.lab, a.machine) == (lab, machine)]
        return found[0] if found else None

    def gaps(self, lab: str, machine: str) -> tuple[int, list[tuple[int, int]]]:
        """Sequence numbers above the node's ack that are not stored: (how many, [(first, last), ...])."""
        rows = self.db.execute(
            "SELECT acked_seq, max_seq FROM nodes WHERE lab = ? AND machine = ?", [lab, machine]
        )
        if not rows:
            return 0, []
        acked, top = int(rows[0][0]), int(rows[0][1])
        kinds = ", ".join("?" * len(SEQ_KINDS))
        have = [int(r[0]) for r in self.db.execute(
            "SELECT seq FROM messages WHERE lab = ? AND machine = ? AND seq > ? "
            f"AND kind IN ({kinds}) UNION SELECT seq FROM rejected WHERE lab = ? AND machine = ? "
            "AND seq > ? ORDER BY 1",
            [lab, machine, acked, *SEQ_KINDS, lab, machine, acked],
        )]  # fmt: skip
        ranges: list[tuple[int, int]] = []
        expected = acked + 1
        for seq in [*have, top + 1]:
            if seq > expected:
                ranges.append((expected, seq - 1))
            expected = seq + 1
        return sum(last - first + 1 for first, last in ranges), ranges

    def rejected_seqs(self, lab: str, machine: str) -> list[int]:
        """The node's sequence numbers set aside as rejected and never stored since (the ack skipped them)."""
        kinds = ", ".join("?" * len(SEQ_KINDS))
        return [int(r[0]) for r in self.db.execute(
            "SELECT DISTINCT seq FROM rejected WHERE lab = ? AND machine = ? AND seq IS NOT NULL "
            "AND seq NOT IN (SELECT seq FROM messages WHERE lab = ? AND machine = ? AND seq IS NOT NULL "
            f"AND kind IN ({kinds})) ORDER BY seq",
            [lab, machine, lab, machine, *SEQ_KINDS],
        )]  # fmt: skip

    def healthy(self) -> bool:
        """Whether the database answers a trivial query (so a failed store was the data's fault)."""
        try:
            self.db.execute("SELECT 1")
        except Exception:
            return False
        return True

    def count(self, table: str) -> int:
        """Rows in one of the store's tables."""
        if table not in ("messages", "jobs", "sessions", "nodes", "rejected"):
            raise ValueError(f"no table {table!r} in the region store")
        return int(self.db.execute(f"SELECT count(*) FROM {table}")[0][0])


def _create(db: Database) -> None:
    if db.dialect == "postgresql":
        # Two collectors starting at once must not both create the tables.
        db.execute("SELECT pg_advisory_xact_lock(7316001)")
    statements = _schema(db.types)
    for statement in statements[:-1]:
        db.execute(statement)
    rows = db.execute("SELECT value FROM region_meta WHERE key = 'schema_version'")
    if not rows:
        db.execute("INSERT INTO region_meta (key, value) VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    elif int(rows[0][0]) > SCHEMA_VERSION:
        raise RegionStoreError(
            f"{db.name}: region store schema version {rows[0][0]} is newer than "
            f"this fabnode knows ({SCHEMA_VERSION})"
        )
    elif int(rows[0][0]) < 2:
        _add_rejected_owner(db)
        db.execute("UPDATE region_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
    db.execute(statements[-1])


def _add_rejected_owner(db: Database) -> None:
    """Version 1 -> 2: the owner columns of `rejected` (NULL for the rows already there)."""
    if db.dialect == "sqlite":
        have = {str(r[1]) for r in db.execute("PRAGMA table_info(rejected)")}
    else:
        have = {str(r[0]) for r in db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'rejected' "
            "AND table_schema = current_schema()"
        )}  # fmt: skip
    for name, kind in _REJECTED_V2:
        if name not in have:
            db.execute(f"ALTER TABLE rejected ADD COLUMN {name} {kind}")


def _text(value: str) -> str:
    # PostgreSQL text holds no NUL; a reason can quote the very bytes that were refused.
    return value[:2000].replace("\x00", "\\x00")


def _insert_sql(table: str, columns: Sequence[str], rows: int) -> str:
    one = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * rows)


def _flat(rows: Iterable[Sequence[Any]]) -> list[Any]:
    return [value for row in rows for value in row]


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
