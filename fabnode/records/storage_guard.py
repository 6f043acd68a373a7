"""The usage log under a full disk (or an unwritable database): keep records, refuse new sessions.

A write that fails for lack of storage (SQLite's "database or disk is full", an I/O error, a read-only
file, ENOSPC) is not lost: `write()` keeps it, in order, and `retry()` writes what was kept once the
disk has room again (each record keeps the wall-clock time it was made with). While anything is kept,
or the state dir has less than `min_free_mb` free, `problem()` says why: the daemon refuses taps that
would open a session (red LED, the reason logged) but never stops a job that runs: a checkpoint that
cannot be written is skipped, the job's end is kept and written later. Used from the controller
thread only; no thread, no sleep.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fabnode.records.schema import write_transaction
from fabnode.records.usage import UsageLog

log = logging.getLogger("fabnode.storage")
T = TypeVar("T")
MAX_KEPT = 10_000  # records kept in memory at most; past that the oldest are dropped (and counted)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def is_storage_error(exc: BaseException) -> bool:
    """True for errors of the disk or the file (full, read-only, I/O), not for a bug or a bad record."""
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return False
    if isinstance(exc, sqlite3.DatabaseError):  # OperationalError: full, locked, readonly, disk I/O
        return True
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of `folder`."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def probe_write(usage: UsageLog) -> None:
    """One real, tiny write (the schema version rewritten as it is): fails as any record would."""
    with usage.locked() as db, write_transaction(db):  # the log may be shared with another thread
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute(f"PRAGMA user_version = {version}")


@dataclass(frozen=True, slots=True)
class _Kept:
    what: str
    write: Callable[[], Any]


class StorageGuard:
    """Runs the usage log's writes, keeps those the disk refused, and says when sessions must wait."""

    def __init__(self, folder: Path, min_free_mb: float, probe: Callable[[], None], *,
                 free: Callable[[Path], int] = free_bytes,
                 on_trouble: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.folder = folder
        self._on_trouble = on_trouble  # told once per outage, after the failed record was kept
        self.min_free_bytes = int(min_free_mb * 1024 * 1024)
        self._probe = probe
        self._free = free
        self._kept: deque[_Kept] = deque()
        self.dropped = 0
        self.last_error: str | None = None
        self.written_late = 0

    # --- writes -----------------------------------------------------------------------------------

    def write(self, what: str, fn: Callable[[], Any]) -> bool:
        """Write now (True), or keep it for `retry()` when the disk refuses or earlier ones wait (False)."""
        if self._kept:  # keep the order: a job's end is written before its session's end
            self._keep(what, fn)
            return False
        try:
            fn()
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            first = self._failed(what, exc)
            self._keep(what, fn)
            if first and self._on_trouble is not None:
                self._on_trouble(f"{exc}")
            return False
        return True

    def attempt(self, what: str, fn: Callable[[], T]) -> T:
        """A write that cannot wait (a row whose id is needed, a checkpoint): noted on failure, re-raised."""
        try:
            return fn()
        except Exception as exc:
            if is_storage_error(exc) and self._failed(what, exc) and self._on_trouble is not None:
                self._on_trouble(f"{exc}")
            raise

    def retry(self) -> int:
        """Write the kept records in order until one fails; return how many were written.

        With nothing kept after a failed write, a probe write tells whether the log works again.
        """
        if not self._kept and self.last_error is not None:
            self._probe_again()
        written = 0
        while self._kept:
            kept = self._kept[0]
            try:
                kept.write()
            except Exception as exc:
                if is_storage_error(exc):
                    self.last_error = f"{exc}"
                    break
                log.exception("usage log: dropping %s, which cannot be written", kept.what)
            self._kept.popleft()
            written += 1
        self.written_late += written
        if written and not self._kept:
            log.warning("usage log writable again: %d record(s) written late", written)
            self.last_error = None
        return written

    def ok_again(self) -> None:
        """A direct write worked (a checkpoint): forget the last error if nothing is kept."""
        if not self._kept and self.last_error is not None:
            self.last_error = None
            log.warning("usage log writable again")

    def _probe_again(self) -> None:
        try:
            self._probe()
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self.last_error = f"{exc}"
            return
        self.ok_again()

    # --- what the daemon asks ---------------------------------------------------------------------

    @property
    def kept(self) -> int:
        """Records waiting to be written."""
        return len(self._kept)

    def free_mb(self) -> float | None:
        """Free space in the state dir, MiB (None when it cannot be read)."""
        try:
            return self._free(self.folder) / (1024 * 1024)
        except OSError:
            return None

    def problem(self) -> str | None:
        """Why a new session (or job) must not start now, or None."""
        if self._kept or self.last_error is not None:
            why = self.last_error or "earlier records are not written yet"
            return f"the usage log cannot be written ({why})"
        free = self.free_mb()
        if free is not None and free * 1024 * 1024 < self.min_free_bytes:
            need = self.min_free_bytes / (1024 * 1024)
            return f"disk full: {free:.1f} MB free in {self.folder}, {need:g} MB needed to keep records"
        return None

    def snapshot(self) -> dict[str, Any]:
        """What `fabnode status` shows under `storage`."""
        free = self.free_mb()
        return {"ok": self.problem() is None, "problem": self.problem(), "kept_records": len(self._kept),
                "dropped_records": self.dropped, "written_late": self.written_late,
                "free_mb": None if free is None else round(free, 1),
                "min_free_mb": round(self.min_free_bytes / (1024 * 1024), 1)}  # fmt: skip

    # --- inside -----------------------------------------------------------------------------------

    def _failed(self, what: str, exc: BaseException) -> bool:
        first = self.last_error is None and not self._kept
        self.last_error = f"{exc}"
        if first:
            log.error("usage log: cannot write %s (%s): records are kept and written once it works "
                      "again; new sessions are refused meanwhile", what, exc)  # fmt: skip
        else:
            log.debug("usage log: cannot write %s (%s)", what, exc)
        return first

    def _keep(self, what: str, fn: Callable[[], Any]) -> None:
        if len(self._kept) >= MAX_KEPT:
            dropped = self._kept.popleft()
            self.dropped += 1
            log.error("usage log: too many records waiting: %s dropped", dropped.what)
        self._kept.append(_Kept(what, fn))
