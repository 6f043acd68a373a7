"""Jobs and the control socket's requests about them (handlers named in controller.TRANSITIONS)."""

from __future__ import annotations

from dataclasses import replace

from fabnode.machine.actions import (
    Action,
    Buzz,
    PauseJob,
    RecordEvent,
    RecordFault,
    RecordJobEnded,
    Reply,
    StartJob,
)
from fabnode.machine.core import LASER, RUNNING, Core
from fabnode.machine.events import (
    CancelRequested,
    JobEnded,
    JobPaused,
    JobRequested,
    JobResumed,
    LidClosed,
    LidOpened,
    LockRequested,
    PauseRequested,
    ResumeRequested,
)
from fabnode.machine.state import Job, JobStatus


class JobRules(Core):
    """Start, pause, resume, cancel and end jobs; lock the session."""

    def _start_job(self, e: JobRequested) -> list[Action]:
        """Start the job (marked maintenance in a technician's session); refused while storage fails, the
        firmware cannot take it, or (laser) the lid is open."""
        if self._storage_problem is not None:  # no job runs unrecorded
            return [Reply(False, f"{self._storage_problem}: no new job")]
        if e.link_problem is not None:  # lines sent now would be lost (no port, a board resetting)
            return [Reply(False, e.link_problem)]
        if self._lid_blocks():
            return [Reply(False, "the lid is open: close it before starting a job")]
        session = self._need_session()
        if e.asked_at is not None and session.started_at > e.asked_at:  # not this session's job
            return [Reply(False, "it was asked for in a session that has ended since: print it again")]
        job = Job(e.job_id, e.file, JobStatus.RUNNING, session.member.id, session.is_maintenance, e.now,
                  source=e.source)
        self._job = job
        self._go(RUNNING)
        return [StartJob(job, e.prepared), Reply(True, f"job {job.id} started")]

    def _job_ended(self, e: JobEnded) -> list[Action]:
        """Record the job; back to the session (COOLDOWN: badge-out pending or port lost; FAULT: halt)."""
        if (stale := self._stale(e)) is not None:
            return stale
        job = self._need_job()
        reason = e.reason or e.outcome.value
        failed = e.outcome is JobStatus.FAILED
        if failed and e.failure in self.settings.fault_failures:
            return self._enter_fault(f"firmware_{e.failure}", reason, JobStatus.FAILED)
        self._job = None
        ended = RecordJobEnded(replace(job, status=e.outcome), reason)  # the streamer's word is the record's
        if failed and e.failure in self.settings.host_lost_failures:
            # Nothing can reach the firmware, which may still be heating: end the session and keep the
            # power only for the hotend fan / fume extraction, for host_lost_relay_s at most.
            return [ended, *self._enter_cooldown(e.now, f"the firmware's port was lost: {reason}", True)]
        return [ended, *self._back_to_session(e.now)]

    def _job_paused(self, e: JobPaused) -> list[Action]:
        """The machine paused the job itself (the printer's screen, M600): PAUSED."""
        if (stale := self._stale(e)) is not None:
            return stale
        if self._need_job().status == JobStatus.CANCELLING:
            return []
        reason = e.reason or "paused on the machine"
        self._pause(e.now, reason)  # the firmware is paused already: no PauseJob to send
        return [RecordEvent("job_paused", reason)]

    def _job_resumed(self, e: JobResumed) -> list[Action]:
        """The machine resumed the job itself: RUNNING; laser with the lid open: paused again."""
        if (stale := self._stale(e)) is not None:
            return stale
        if self._need_job().status == JobStatus.CANCELLING:
            return []
        if self._lid_blocks():
            detail = "job resumed with the lid open: paused again"
            return [PauseJob("lid open", door=True), RecordFault("lid_open", detail)]
        self._resume()  # the firmware runs already: no ResumeJob to send
        return [RecordEvent("job_resumed", "resumed on the machine")]

    def _lid_opened_during_job(self, e: LidOpened) -> list[Action]:
        """Laser: feed hold (the job pauses), logged as a fault: PAUSED; printer: logged only."""
        job = self._need_job()
        if self.settings.kind != LASER or job.status == JobStatus.CANCELLING:
            return [RecordEvent("lid_opened", f"opened during job {job.id}")]
        detail = f"lid opened during job {job.id}: job paused until resumed"
        return [*self._pause(e.now, "lid open", door=True), RecordFault("lid_open", detail), Buzz("fault")]

    def _lid_while_paused(self, e: LidOpened | LidClosed) -> list[Action]:
        """Logged; the job stays paused: it resumes only by a deliberate action, never on the lid closing.
        A laser's lid opening during any pause also gets the door hold: a feed hold may keep the beam on."""
        kind = "lid_opened" if isinstance(e, LidOpened) else "lid_closed"
        logged = RecordEvent(kind, f"job {self._need_job().id} stays paused")
        door = isinstance(e, LidOpened) and self.settings.kind == LASER
        return [PauseJob("lid open", door=True), logged] if door else [logged]

    def _not_theirs(self, e: PauseRequested | ResumeRequested | CancelRequested) -> list[Action] | None:
        """Refused when an API key's member asks about another's job (or a job that is not running)."""
        job, verb = self._need_job(), type(e).__name__.removesuffix("Requested").lower()
        if e.job_id is not None and e.job_id != job.id:
            return [Reply(False, f"that job is no longer running (job {job.id} is)")]
        if e.by is None or e.by.is_technician or e.by.id == job.member_id:
            return None
        return [Reply(False, f"this job is another member's: only they or a technician may {verb} it",
                      forbidden=True)]  # fmt: skip

    def _pause_requested(self, e: PauseRequested) -> list[Action]:
        """Pause the job (an API key's member: only their own): PAUSED."""
        if (refused := self._not_theirs(e)) is not None:
            return refused
        if self._need_job().status == JobStatus.CANCELLING:
            return [Reply(False, "the job is being cancelled")]
        return [*self._pause(e.now, "paused from the control socket"), Reply(True, "job paused")]

    def _resume_requested(self, e: ResumeRequested) -> list[Action]:
        """Resume the job (a laser's lid must be closed; an API key's member: only their own): RUNNING."""
        if (refused := self._not_theirs(e)) is not None:
            return refused
        refusal = self._resume_refusal()
        if refusal is not None:
            return [Reply(False, refusal)]
        return [*self._resume(), Reply(True, "job resumed")]

    def _cancel_requested(self, e: CancelRequested) -> list[Action]:
        """Cancel the job the safe way (an API key's member: only their own); the state follows JobEnded."""
        if (refused := self._not_theirs(e)) is not None:
            return refused
        job = self._need_job()
        if job.status == JobStatus.CANCELLING:
            return [Reply(False, f"job {job.id} is already being cancelled")]
        return [*self._cancel(e.reason), Reply(True, f"cancelling job {job.id}")]

    def _lock_session(self, e: LockRequested) -> list[Action]:
        """The session ends: COOLDOWN."""
        return [*self._enter_cooldown(e.now, "locked from the control socket"), Reply(True, "session ended")]

    def _lock_during_job(self, e: LockRequested) -> list[Action]:
        """Refused while a job runs; forced: the job is cancelled and the session ends with it."""
        if not e.force:
            return [Reply(False, "a job is running: cancel it first, or lock with --force to cancel it")]
        reason = "locked from the control socket"
        self._session = replace(self._need_session(), badge_out_pending=True, badge_out_reason=reason)
        return [*self._cancel(reason), Reply(True, "cancelling the job, then locking")]
