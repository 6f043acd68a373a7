"""A node's jobs in the usage log: preflight, the in_progress row, checkpoints and the final figures.

Material is counted from what the firmware acknowledged, never from what was sent: every figure is
the analysis's running total up to the LAST ACKNOWLEDGED FILE LINE (`Analysis.filament_mm_at(n)`,
`laser_on_s_at(n)`, `cost_at(n)`), so a print cancelled at 40 % records the filament of that 40 %.
Used only from the daemon's controller thread; no I/O but the usage log (a file is prepared aside, by
fabnode.node.prepare). The job's end goes through the storage guard (fabnode.records.storage_guard): on
a full disk it is kept and written once there is room, with the figures and the time of the end itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.events import JobStatus
from fabnode.gcode.analysis import Analysis
from fabnode.machine.profile import MachineProfile
from fabnode.node.prepare import Preflight, preflight
from fabnode.records.storage_guard import StorageGuard
from fabnode.records.usage import ABORTED, ABORTED_PREFIX, END_STATUSES, FAILED, JobRates, UsageLog

__all__ = ["JobBook", "Preflight", "RunningJob", "preflight"]  # Preflight and preflight: fabnode.node.prepare


@dataclass(slots=True)
class RunningJob:
    """The job being streamed, as the daemon follows it."""

    job_id: str  # the controller's id (a uuid), carried by the streamer's events
    row_id: int  # the jobs table's id
    file: Path
    analysis: Analysis
    lines_total: int
    started: float  # monotonic
    lines_acked: int = 0
    last_line_no: int = 0  # 1-based file line of the last acknowledged line
    paused_since: float | None = None
    paused_s: float = 0.0
    last_checkpoint: float = 0.0

    def paused_total(self, now: float) -> float:
        """Seconds spent paused so far."""
        return self.paused_s + (now - self.paused_since if self.paused_since is not None else 0.0)

    def progress(self, now: float) -> dict[str, Any]:
        """What `fabnode status` shows under `job`."""
        elapsed = max(now - self.started, 0.0)
        total = max(self.lines_total, self.lines_acked)
        percent = 100.0 * self.lines_acked / total if total else 0.0
        running = elapsed - self.paused_total(now)
        rate = self.lines_acked / running if running > 0 else 0.0
        eta = (total - self.lines_acked) / rate if rate > 0 else None
        return {
            "file": str(self.file),
            "lines_acked": self.lines_acked,
            "lines_total": total,
            "percent": round(percent, 1),
            "elapsed_s": round(elapsed, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "last_line": self.last_line_no,
            "filament_mm": round(self.analysis.filament_mm_at(self.last_line_no), 2),
            "laser_on_s": round(self.analysis.laser_on_s_at(self.last_line_no), 2),
        }


class JobBook:
    """Starts, checkpoints and finishes job rows; one job at a time."""

    def __init__(
        self,
        log: UsageLog,
        machine: str,
        profile: MachineProfile,
        checkpoint_every_s: float,
        wall: Callable[[], datetime],
        storage: StorageGuard | None = None,
    ) -> None:
        self._log = log
        self._machine = machine
        self._profile = profile
        self._every = checkpoint_every_s
        self._wall = wall
        self._storage = storage
        self.current: RunningJob | None = None

    def configure(self, profile: MachineProfile, checkpoint_every_s: float) -> None:
        """A reloaded config: the next job's material and limits, the checkpoint interval from now on."""
        self._profile = profile
        self._every = checkpoint_every_s

    def start(
        self, job_id: str, pre: Preflight, session_row: int | None, member_id: int | None, now: float,
        source: str = "cli", uploaded_by: str | None = None,
    ) -> RunningJob:
        """Insert the job's row (in_progress; `source`, `uploaded_by`: UsageLog.start_job's) and follow it."""
        assert pre.analysis is not None, "start() needs a file that passed preflight"
        material = self._profile.material
        row = self._log.start_job(
            session_row, member_id, self._machine, pre.path.name, self._wall(),
            file_sha256=pre.sha256, lines_total=pre.analysis.commands, material=material.name,
            rates=JobRates.for_material(material), source=source, uploaded_by=uploaded_by,
        )  # fmt: skip
        job = RunningJob(job_id, row, pre.path, pre.analysis, pre.analysis.commands, now, last_checkpoint=now)
        self.current = job
        return job

    def acked(self, lines_acked: int, last_line_no: int) -> None:
        """What the firmware acknowledged so far (from the streamer's progress)."""
        job = self.current
        if job is not None:
            job.lines_acked = max(job.lines_acked, lines_acked)
            job.last_line_no = max(job.last_line_no, last_line_no)

    def paused(self, now: float) -> None:
        """The job stopped running (its time no longer counts as running)."""
        if self.current is not None and self.current.paused_since is None:
            self.current.paused_since = now

    def resumed(self, now: float) -> None:
        """The job runs again."""
        job = self.current
        if job is not None and job.paused_since is not None:
            job.paused_s += now - job.paused_since
            job.paused_since = None

    def checkpoint_due(self, now: float) -> float | None:
        """When the next checkpoint is due, or None without a job."""
        return None if self.current is None else self.current.last_checkpoint + self._every

    def checkpoint(self, now: float) -> None:
        """Write the running job's figures up to the last acknowledged line (not fsynced)."""
        job = self.current
        if job is None:
            return
        n, paused = job.last_line_no, job.paused_total(now)
        self._log.checkpoint_job(
            job.row_id, n, job.analysis.filament_mm_at(n), job.analysis.laser_on_s_at(n),
            max(now - job.started - paused, 0.0), paused, self._wall(),
        )  # fmt: skip
        job.last_checkpoint = now

    def finish(self, status: JobStatus, reason: str, now: float) -> dict[str, Any] | None:
        """Complete the row with the controller's final status and the acknowledged figures.

        Returns what was recorded (the row's id, file name, status, reason and figures, `recorded`
        False when a full disk made the storage guard keep the write for later), or None without a job.
        """
        job, self.current = self.current, None
        if job is None:
            return None
        db_status = JobStatus(status) if status in END_STATUSES else FAILED  # the controller's word
        if db_status == ABORTED:  # the reason says so too, as telemetry has always sent it
            reason = f"{ABORTED_PREFIX}{reason}"
        n, paused, ended = job.last_line_no, job.paused_total(now), self._wall()
        figures: dict[str, Any] = {
            "last_line_acked": n, "filament_mm": job.analysis.filament_mm_at(n),
            "laser_on_s": job.analysis.laser_on_s_at(n), "running_s": max(now - job.started - paused, 0.0),
            "paused_s": paused, "cost": round(job.analysis.cost_at(n), 4),
        }  # fmt: skip

        def write() -> None:
            self._log.finish_job(job.row_id, db_status, reason, ended, **figures)

        if self._storage is not None:
            recorded = self._storage.write(f"the end of job {job.row_id}", write)
        else:
            write()
            recorded = True
        return {"id": job.row_id, "file_name": job.file.name, "status": db_status, "reason": reason,
                "recorded": recorded, **figures}  # fmt: skip
