"""One job's bookkeeping on the streamer's side: Progress while it runs, one StreamEnded at its end.

Sans-I/O: drivers.streamer feeds it the protocol's events with its clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.events import JobCancelled, JobCompleted, JobFailed, JobStatus, LineAcked, ResendRequested

COMPLETED, CANCELLED, FAILED = JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the job is, by what the firmware acknowledged (= what was really executed)."""

    name: str
    lines_acked: int
    lines_total: int
    bytes_acked: int
    percent: float
    elapsed_s: float
    eta_s: float | None
    lines_per_s: float
    last_line_no: int  # 1-based file line of the last acknowledged line (0: none yet)


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The streamer's last word on one job: status is completed, cancelled or failed; kind is FAILURE_*."""

    name: str
    status: JobStatus
    kind: str
    reason: str
    lines_acked: int
    bytes_sent: int  # every byte written to the port while the job ran (framing, resends, polls)
    resends: int
    duration_s: float
    last_line_no: int


class JobTracker:
    """Sans-I/O bookkeeping of one job: turns protocol events into Progress and StreamEnded."""

    def __init__(self, name: str, total_lines: int, now: float, progress_interval_s: float) -> None:
        self.name = name
        self.total_lines = total_lines
        self.started = now
        self.interval = progress_interval_s
        self.lines_acked = 0
        self.bytes_acked = 0
        self.last_line_no = 0
        self.bytes_sent = 0
        self.resends = 0
        self.ended: StreamEnded | None = None
        self.failure: tuple[str, str] | None = None  # (kind, reason): however it ends, it ends failed
        self._last_progress = float("-inf")
        self._progress_dirty = False

    def on_event(self, event: object, now: float) -> list[object]:
        """Account for one protocol event; return the Progress/StreamEnded it causes."""
        if isinstance(event, LineAcked):
            self.lines_acked = event.acked_lines
            self.bytes_acked = event.acked_bytes
            self.last_line_no = max(self.last_line_no, event.line_no)
            self._progress_dirty = True
            if now - self._last_progress >= self.interval:
                return [self.progress(now)]
        elif isinstance(event, ResendRequested):
            self.resends += 1
        elif isinstance(event, JobCompleted):
            self.resends = event.resends
            return self.end(COMPLETED, "", "", now)
        elif isinstance(event, JobCancelled):
            self.last_line_no = max(self.last_line_no, event.last_line_no)
            return self.end(CANCELLED, CANCELLED, event.reason, now)
        elif isinstance(event, JobFailed):
            self.last_line_no = max(self.last_line_no, event.last_line_no)
            return self.end(FAILED, event.kind, event.reason, now)
        return []

    def progress(self, now: float) -> Progress:
        """A Progress snapshot as of `now`."""
        self._last_progress = now
        self._progress_dirty = False
        elapsed = max(now - self.started, 0.0)
        rate = self.lines_acked / elapsed if elapsed > 0 else 0.0
        total = max(self.total_lines, self.lines_acked)
        remaining = total - self.lines_acked
        eta = remaining / rate if rate > 0 else None
        percent = 100.0 * self.lines_acked / total if total else 100.0
        return Progress(
            self.name, self.lines_acked, total, self.bytes_acked, percent, elapsed, eta, rate,
            self.last_line_no,
        )

    def due_progress(self, now: float) -> Progress | None:
        """A Progress when acknowledgements are waiting to be reported and the interval has passed."""
        if self._progress_dirty and now - self._last_progress >= self.interval:
            return self.progress(now)
        return None

    def next_progress_at(self) -> float | None:
        """When a waiting Progress falls due, or None."""
        return self._last_progress + self.interval if self._progress_dirty else None

    def end(self, status: JobStatus, kind: str, reason: str, now: float) -> list[object]:
        """End the job (once): a final Progress, then StreamEnded."""
        if self.ended is not None:
            return []
        if self.failure is not None:
            status, (kind, reason) = FAILED, self.failure
        final = self.progress(now)
        self.ended = StreamEnded(
            self.name, status, kind, reason, self.lines_acked, self.bytes_sent, self.resends,
            max(now - self.started, 0.0), self.last_line_no,
        )
        return [final, self.ended]
