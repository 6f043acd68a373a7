"""The loop's records between events: job checkpoints, fault rows, and the retry of records a full disk
held back (fabnode.records.storage_guard). Used from the controller thread only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from fabnode.node.jobs import JobBook
from fabnode.records.storage_guard import StorageGuard
from fabnode.records.usage import UsageLog

log = logging.getLogger("fabnode.daemon")
STORAGE_RETRY_S = 2.0  # how often records a full disk held back are tried again


class Bookkeeper:
    """Writes checkpoints and fault rows through the storage guard, and retries what it kept."""

    def __init__(self, usage: UsageLog, storage: StorageGuard, jobs: JobBook, machine: Callable[[], str],
                 wall: Callable[[], datetime]) -> None:  # fmt: skip
        self.usage, self.storage, self.jobs = usage, storage, jobs
        self._machine = machine  # the config's machine name (a reload may not change it, but reads it)
        self._wall = wall
        self.retry_at: float | None = None  # when kept records are tried again (for the loop's wait)

    def record_fault(self, kind: str, detail: str) -> None:
        """A fault row, through the storage guard (a full disk delays it, never loses it)."""
        machine, at = self._machine(), self._wall()
        self.storage.write(f"fault {kind}", lambda: self.usage.record_fault(kind, detail, machine, at))

    def checkpoint(self, now: float) -> None:
        """Write the running job's checkpoint when it is due."""
        due = self.jobs.checkpoint_due(now)
        if due is None or now < due:
            return
        try:  # a checkpoint the disk refuses is skipped: the job runs on, the next one or its end tells
            self.storage.attempt("a job checkpoint", lambda: self.jobs.checkpoint(now))
        except Exception as exc:
            if self.jobs.current is not None:
                self.jobs.current.last_checkpoint = now
            log.debug("job checkpoint skipped: %s", exc)
        else:
            self.storage.ok_again()

    def retry(self, now: float) -> None:
        """Try the records a full disk held back again, every STORAGE_RETRY_S while there are some."""
        if not self.storage.kept and self.storage.last_error is None:
            self.retry_at = None
            return
        if self.retry_at is None:
            self.retry_at = now + STORAGE_RETRY_S
        elif now >= self.retry_at:
            self.storage.retry()
            self.retry_at = now + STORAGE_RETRY_S
