"""The usage database's schema as an ordered list of migrations, versioned by `PRAGMA user_version`.

Migration N (1-based) takes the schema from version N-1 to N. They run in order when the log is
opened, all in one `BEGIN IMMEDIATE` transaction so that two processes opening the same new file
(daemon and CLI) cannot both migrate it. Never edit a released migration: append a new one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from sqlite_utils import Database

# Stored times are formatted as telemetry sends them.
from fabnode.envelope import utc_iso as utc_iso

Migration = Callable[[Database], None]

JOB_STATUSES = ("in_progress", "completed", "cancelled", "failed", "aborted", "interrupted")
ROLES = ("member", "technician")

_V1 = [
    """
    CREATE TABLE members (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        role TEXT NOT NULL CHECK (role IN ('member', 'technician')),
        badge_hash TEXT UNIQUE,          -- HMAC-SHA256 of the badge UID; NULL once removed
        member_hash TEXT NOT NULL UNIQUE, -- HMAC-SHA256 of the name: how telemetry names a member
        created TEXT NOT NULL,
        removed TEXT                      -- kept (not deleted) so that history keeps its member
    )
    """,
    """
    CREATE TABLE trainings (
        member_id INTEGER NOT NULL REFERENCES members(id),
        machine TEXT NOT NULL,
        until TEXT,                       -- last valid day (YYYY-MM-DD), NULL for no expiry
        granted TEXT NOT NULL,
        PRIMARY KEY (member_id, machine)
    )
    """,
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        member_id INTEGER REFERENCES members(id),
        machine TEXT NOT NULL,
        started TEXT NOT NULL,
        ended TEXT,
        end_reason TEXT,
        maintenance INTEGER NOT NULL DEFAULT 0,
        duration_s REAL                   -- from the caller's monotonic clock
    )
    """,
    "CREATE INDEX sessions_open ON sessions(ended) WHERE ended IS NULL",
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        session_id INTEGER REFERENCES sessions(id),
        member_id INTEGER REFERENCES members(id),
        machine TEXT NOT NULL,
        file_name TEXT NOT NULL,
        file_sha256 TEXT,
        lines_total INTEGER,
        started TEXT NOT NULL,
        ended TEXT,
        running_s REAL NOT NULL DEFAULT 0,
        paused_s REAL NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'in_progress' CHECK (status IN
            ('in_progress', 'completed', 'cancelled', 'failed', 'interrupted')),
        reason TEXT,
        material TEXT,
        grams_per_mm REAL,                -- filament cross-section x density, fixed at job start
        price_per_kg REAL,
        price_per_laser_hour REAL,
        filament_mm REAL NOT NULL DEFAULT 0,
        filament_g REAL,
        laser_on_s REAL NOT NULL DEFAULT 0,
        cost REAL,
        last_line_acked INTEGER NOT NULL DEFAULT 0,
        checkpoint_at TEXT
    )
    """,
    "CREATE INDEX jobs_started ON jobs(started)",
    "CREATE INDEX jobs_open ON jobs(status) WHERE status = 'in_progress'",
    """
    CREATE TABLE access_events (
        id INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        machine TEXT NOT NULL,
        badge_hash TEXT NOT NULL,
        member_id INTEGER REFERENCES members(id),
        granted INTEGER NOT NULL,
        reason TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE faults (
        id INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        machine TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )
    """,
    # AUTOINCREMENT: ids are never reused, even after acknowledged rows are pruned, so the id is
    # the node's message sequence number.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        msg_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        created TEXT NOT NULL,
        sent_at TEXT,
        acked_at TEXT
    )
    """,
    "CREATE INDEX outbox_pending ON outbox(id) WHERE acked_at IS NULL",
]


def _v1_initial(db: Database) -> None:
    for statement in _V1:
        db.execute(statement)


def _v2_aborted(db: Database) -> None:
    """Jobs the node cut short itself (e-stop, firmware fault) get their own status, `aborted`.

    SQLite cannot change a CHECK constraint: the jobs table is rebuilt with it (same columns, same
    order) and the aborts v1 stored as failed with an "aborted: " reason become `aborted`.
    """
    v1 = next(statement for statement in _V1 if "CREATE TABLE jobs" in statement)
    old = "('in_progress', 'completed', 'cancelled', 'failed', 'interrupted')"
    new = "('in_progress', 'completed', 'cancelled', 'failed', 'aborted', 'interrupted')"
    assert old in v1, "migration 2 rebuilds the jobs table of migration 1"
    db.execute(v1.replace("CREATE TABLE jobs", "CREATE TABLE jobs_v2").replace(old, new))
    db.execute("INSERT INTO jobs_v2 SELECT * FROM jobs")
    db.execute("DROP TABLE jobs")
    db.execute("ALTER TABLE jobs_v2 RENAME TO jobs")
    for statement in _V1:
        if statement.startswith("CREATE INDEX jobs_"):
            db.execute(statement)
    db.execute("UPDATE jobs SET status = 'aborted' WHERE status = 'failed' AND reason LIKE 'aborted: %'")


JOB_SOURCES = ("cli", "inbox", "upload")


def _v3_uploads(db: Database) -> None:
    """How a job's file came (`fabnode print`, the inbox, an upload) and an upload's key owner (a
    member's name, or "lab"; local only: telemetry sends `source`, never the name). Old rows: cli."""
    db.execute("ALTER TABLE jobs ADD COLUMN source TEXT NOT NULL DEFAULT 'cli' "
               "CHECK (source IN ('cli', 'inbox', 'upload'))")  # fmt: skip
    db.execute("ALTER TABLE jobs ADD COLUMN uploaded_by TEXT")


_V4 = [
    # Who owns each members row in the lab directory (a member id, not the name), and how Fab-manager
    # knows them. A row stays per name (member_hash is the name's keyed hash); its owner may change.
    "ALTER TABLE members ADD COLUMN directory_id TEXT",
    "ALTER TABLE members ADD COLUMN email TEXT",
    "ALTER TABLE members ADD COLUMN fab_manager_id INTEGER",
    "CREATE UNIQUE INDEX members_directory_id ON members(directory_id)",
    # The directory in force: the latest entry per (member, field); `ref` is what projections look up
    # (a name's casefold for name and removed, the badge hash for badge).
    """
    CREATE TABLE directory_state (
        member TEXT NOT NULL,
        field TEXT NOT NULL,
        wall_ms INTEGER NOT NULL,
        counter INTEGER NOT NULL,
        node TEXT NOT NULL,
        author TEXT NOT NULL,
        value TEXT NOT NULL,              -- canonical JSON
        ref TEXT,
        PRIMARY KEY (member, field)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX directory_state_ref ON directory_state(field, ref) WHERE ref IS NOT NULL",
    # This node's own changes, until the broker has acknowledged them (sealed when published).
    """
    CREATE TABLE directory_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        member TEXT NOT NULL,
        entry TEXT NOT NULL,              -- the entry's canonical JSON
        published TEXT
    )
    """,
    "CREATE INDEX directory_outbox_pending ON directory_outbox(id) WHERE published IS NULL",
    "CREATE TABLE directory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
]


def _v4_directory(db: Database) -> None:
    """The lab directory (fabnode.directory): its state, this node's unpublished changes, its counters."""
    for statement in _V4:
        db.execute(statement)


MIGRATIONS: list[Migration] = [_v1_initial, _v2_aborted, _v3_uploads, _v4_directory]
SCHEMA_VERSION = len(MIGRATIONS)


class UsageLogError(RuntimeError):
    """The usage log cannot do what was asked; the message names the file or the record."""


class SchemaTooNew(UsageLogError):
    """The file was written by a newer fabnode: refusing to touch it."""


def schema_version(db: Database) -> int:
    """The schema version recorded in the file (0 for a new, empty file)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Database, path: str) -> int:
    """Apply pending migrations in order, in one immediate transaction; return the new version."""
    if schema_version(db) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the common case takes no write lock
    with write_transaction(db, durable=True):
        version = schema_version(db)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{path}: schema version {version} is newer than this fabnode knows ({SCHEMA_VERSION})"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[number - 1](db)
            # user_version lives in the file header and is part of the transaction.
            db.execute(f"PRAGMA user_version = {number}")
    return SCHEMA_VERSION


@contextlib.contextmanager
def write_transaction(db: Database, durable: bool = False) -> Iterator[Database]:
    """An immediate write transaction; `durable` fsyncs the WAL at commit (synchronous=FULL).

    Immediate, because a deferred transaction that reads then writes fails at once with
    SQLITE_BUSY (no retry) when the other process (daemon or CLI) wrote in between.
    """
    if durable:
        db.execute("PRAGMA synchronous = FULL")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.rollback()
            raise
        db.execute("COMMIT")
    finally:
        if durable:
            db.execute("PRAGMA synchronous = NORMAL")
