"""The region store's two databases behind one small interface: SQLite (a file) or PostgreSQL (a URL).

The store's SQL is written once, portable, with `?` placeholders; the PostgreSQL side turns them into
psycopg's `%s`. What differs is kept here: column types, how a write transaction starts, row locks,
which errors mean "try the transaction again".
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Database", "RegionStoreError", "open_database"]

# A write that lost a deadlock or a serialisation race is retried this many times.
_RETRIES = 8


class RegionStoreError(RuntimeError):
    """The region store cannot do what was asked; the message names the database."""


class Database(Protocol):
    """What the store needs from a database connection."""

    dialect: str
    name: str
    types: dict[str, str]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (empty for statements without any)."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction: committed on exit, rolled back on an exception."""
        ...

    def lock_clause(self) -> str:
        """What to append to a SELECT to lock the rows it reads until commit ('' where writes serialise)."""
        ...

    def retryable(self, exc: BaseException) -> bool:
        """Whether a failed transaction may simply be run again (deadlock, serialisation failure)."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class SqliteDatabase:
    """One SQLite file in WAL mode; every commit is fsynced (synchronous=FULL) before it returns."""

    dialect = "sqlite"

    def __init__(self, path: Path, read_only: bool = False) -> None:
        """Open (or create) the file; read_only opens it as it is, changing nothing (a report)."""
        self.types = {"float": "DOUBLE PRECISION", "json": "TEXT", "serial": "INTEGER PRIMARY KEY"}
        self.name = str(path)
        if read_only:  # not even WAL mode: the file may be anyone's database, given by mistake
            target, uri = f"{path.resolve().as_uri()}?mode=ro", True
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            target, uri = str(path), False
        self._conn = sqlite3.connect(target, timeout=30.0, isolation_level=None, check_same_thread=False,
                                     uri=uri)  # fmt: skip
        try:
            self._conn.execute("PRAGMA busy_timeout = 30000")
            if read_only:
                self._conn.execute("SELECT count(*) FROM sqlite_master")  # not a database: say so here
                return
            self._conn.execute("PRAGMA journal_mode = WAL")
            # The collector acknowledges a message to the broker right after COMMIT: it must be on disk.
            self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise RegionStoreError(f"{path}: not a usable SQLite database ({exc})") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows."""
        return self._conn.execute(sql, list(params)).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE: writers queue at the start, so a read-then-write never fails half-way."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.rollback()
            raise
        self._conn.execute("COMMIT")

    def lock_clause(self) -> str:
        """SQLite serialises writers already."""
        return ""

    def retryable(self, exc: BaseException) -> bool:
        """A lock that outlasted busy_timeout: try again."""
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    def close(self) -> None:
        """Close the file."""
        self._conn.close()


class PostgresDatabase:
    """One psycopg 3 connection; each `transaction()` is one BEGIN ... COMMIT at READ COMMITTED."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self.types = {"float": "DOUBLE PRECISION", "json": "JSONB", "serial": "BIGSERIAL PRIMARY KEY"}
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is in the `region` extra
            raise RegionStoreError("PostgreSQL needs psycopg: pip install 'fabnode[region]'") from exc
        self._psycopg = psycopg
        self.name = _redact(url)
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise RegionStoreError(f"{self.name}: cannot connect ({str(exc).strip()})") from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (`?` placeholders); return its rows."""
        cur = self._conn.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))
        return cur.fetchall() if cur.description is not None else []

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """BEGIN ... COMMIT (ROLLBACK on an exception)."""
        return self._conn.transaction()  # type: ignore[return-value]

    def lock_clause(self) -> str:
        """Row locks: two collectors updating one node's acknowledgement take turns."""
        return " FOR UPDATE"

    def retryable(self, exc: BaseException) -> bool:
        """Deadlocks and serialisation failures are safe to run again."""
        errors = self._psycopg.errors
        return isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _redact(url: str) -> str:
    # A password in the URL must not reach logs or error messages.
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userinfo = head.partition("//")
    return f"{scheme}//{userinfo.split(':', 1)[0]}:***@{tail}"


def open_database(target: str | Path, read_only: bool = False) -> Database:
    """A `postgresql://` (or `postgres://`) URL opens PostgreSQL; anything else is an SQLite file path
    (read_only: opened as it is, never created nor switched to WAL)."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    if "://" in text:
        raise RegionStoreError(f"{text!r}: expected a file path or a postgresql:// URL")
    return SqliteDatabase(Path(text), read_only=read_only)


def run_transaction(db: Database, work: Any, *args: Any) -> Any:
    """Run `work(*args)` in a write transaction, again after a deadlock or a busy database."""
    for attempt in range(_RETRIES):
        try:
            with db.transaction():
                return work(*args)
        except Exception as exc:
            if not db.retryable(exc) or attempt == _RETRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))  # back off: the other writer needs the lock for a moment
    raise AssertionError("unreachable")
