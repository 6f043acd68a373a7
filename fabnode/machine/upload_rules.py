"""Print release: uploads wait in the node's queue for their member's tap (handlers named in TRANSITIONS).

- A member's upload with `print=true` starts at once when that member's session is open and the
  machine idle (UNLOCKED, or a technician's MAINTENANCE); otherwise it waits, and that member's next
  tap opens the session (or, in their own session, replaces the badge-out) and releases it: the file
  is checked again aside (CheckUpload; no preflight is held while an upload waits) and its
  UploadChecked starts the job, all from that one tap.
- A lab-key upload (owner None) is offered to the next trained member (not a technician) who taps
  before its `claim_until`; unclaimed by then it moves to stale/.
- An upload no tap started before `expires_at` moves to stale/ (ExpireUpload: nothing is deleted).
- An upload whose owner may not use this machine (the access module's `denial`) is refused at once.
Pure: the daemon turns the uploads' times into monotonic seconds; time comes in with each event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from fabnode.machine.actions import Action, CheckUpload, ExpireUpload, Reply, StartJob, TakeUpload
from fabnode.machine.core import RUNNING, Core
from fabnode.machine.events import BadgeTapped, Tick, UploadChecked, UploadReceived
from fabnode.machine.state import Job, JobStatus, MemberRef, QueuedUpload

TickHandler = Callable[..., list[Action]]
UPLOAD_SESSION_CHANGED = "the session changed while the upload was checked: it waits for the next tap"


def expiring(handler: TickHandler) -> TickHandler:
    """A Tick handler that first moves uploads past their time to stale/, then does its own work."""

    @functools.wraps(handler)
    def on_tick(c: UploadRules, e: Tick) -> list[Action]:
        return [*c._expire_uploads(e), *handler(c, e)]

    first = " ".join((handler.__doc__ or handler.__name__).strip().split("\n\n")[0].split())
    on_tick.__doc__ = f"{first} Uploads past their time move to stale/."
    return on_tick


class UploadRules(Core):
    """The upload queue: what an arriving upload, a tap and time do with it."""

    # --- an upload arrives ------------------------------------------------------------------------

    def _upload_waits(self, e: UploadReceived) -> list[Action]:
        """Queue the upload for its member's next tap (a lab upload: the next trained member's within
        claim_window_min); refused at once when its owner may not use this machine."""
        if e.denial is not None:
            return [Reply(False, f"upload refused: {e.denial}", forbidden=True)]
        return self._enqueue(e.upload, e.now)

    def _upload_in_session(self, e: UploadReceived) -> list[Action]:
        """The session's member's upload with print=true starts at once (the machine is idle); any other
        waits in the queue as in every state; refused when its owner may not use this machine."""
        if e.denial is not None:
            return [Reply(False, f"upload refused: {e.denial}", forbidden=True)]
        upload, session = e.upload, self._need_session()
        if not upload.print_now or upload.owner is None or upload.owner.id != session.member.id:
            return self._enqueue(upload, e.now)
        blocked = self._job_blocked(e.link_problem)
        if blocked is not None:
            return self._enqueue(upload, e.now, f"it waits ({blocked}): tap your badge to start it")
        job = self._start_upload(upload, e.now, e.prepared)
        return [*job, Reply(True, f"{upload.name}: job {upload.id} started")]

    def _enqueue(self, upload: QueuedUpload, now: float, why: str = "") -> list[Action]:
        if now >= upload.deadline:  # found on disk at start-up after its time
            return [ExpireUpload(upload.id, self._expiry_reason(upload, now)),
                    Reply(True, f"{upload.name}: expired while the node was down (moved to stale/)")]
        self._uploads = (*(u for u in self._uploads if u.id != upload.id), upload)
        waits = why or ("it waits for a trained member's tap" if upload.owner is None
                        else f"it waits for {upload.owner.name or 'its member'}'s tap")  # fmt: skip
        return [Reply(True, f"{upload.name} queued: {waits}")]

    # --- a tap releases it ------------------------------------------------------------------------

    def _upload_for(self, tap: BadgeTapped, member: MemberRef) -> QueuedUpload | None:
        """The upload this granted tap starts: the member's own oldest, else a lab upload still offered."""
        own = [u for u in self._uploads if u.owner is not None and u.owner.id == member.id]
        if own:
            return own[0]
        if member.is_technician:  # a technician's tap (maintenance) never claims the lab's uploads
            return None
        offered = [u for u in self._uploads if u.owner is None and u.claim_until is not None
                   and tap.now <= u.claim_until]  # fmt: skip
        return offered[0] if offered else None

    def _job_blocked(self, link_problem: str | None) -> str | None:
        """Why no job can start now (records, the firmware's link, a laser's open lid), or None."""
        if self._storage_problem is not None:
            return self._storage_problem
        if link_problem is not None:
            return link_problem
        return "the lid is open" if self._lid_blocks() else None

    def _release(self, tap: BadgeTapped, member: MemberRef) -> tuple[QueuedUpload | None, str | None]:
        """The upload this tap releases and why it cannot start now (None: it is checked, then starts)."""
        upload = self._upload_for(tap, member)
        return upload, (self._job_blocked(tap.link_problem) if upload is not None else None)

    def _upload_checked(self, e: UploadChecked) -> list[Action]:
        """The released upload passed its check: it starts as the tapping member's job (RUNNING); one that
        fails moves to stale/; the session changed meanwhile: it waits for the next tap."""
        upload = next((u for u in self._uploads if u.id == e.upload_id), None)
        if upload is None:
            return [Reply(False, "the upload is no longer waiting (started, or moved to stale/)")]
        if self._need_session().member.id != e.member_id:
            return [Reply(False, UPLOAD_SESSION_CHANGED)]
        if e.problems:
            self._uploads = tuple(u for u in self._uploads if u.id != upload.id)
            more = len(e.problems) - 1
            why = f"fails preflight: {e.problems[0]}" + (f" (+{more} more)" if more else "")
            return [ExpireUpload(upload.id, why), Reply(False, f"{upload.name} {why}")]
        if (blocked := self._job_blocked(e.link_problem)) is not None:
            return [Reply(False, f"{upload.name} waits: {blocked}")]
        return [*self._start_upload(upload, e.now, e.prepared), Reply(True, f"{upload.name}: job started")]

    def _start_upload(self, upload: QueuedUpload, now: float, prepared: object) -> list[Action]:
        """The upload becomes the session's job (its id is the job's): RUNNING."""
        session = self._need_session()
        job = Job(upload.id, upload.name, JobStatus.RUNNING, session.member.id, session.is_maintenance, now,
                  source="upload", uploaded_by=upload.uploaded_by)  # fmt: skip
        self._uploads = tuple(u for u in self._uploads if u.id != upload.id)
        self._job = job
        self._go(RUNNING)
        return [StartJob(job, prepared), TakeUpload(upload.id, job.id)]

    # --- time -------------------------------------------------------------------------------------

    def _expiry_reason(self, upload: QueuedUpload, now: float) -> str:
        if upload.claim_until is not None and upload.claim_until <= upload.expires_at:
            return "no trained member tapped within [web] claim_window_min"
        return "not started within [web] upload_expiry_h"

    def _expire_uploads(self, e: Tick) -> list[Action]:
        """Uploads no tap started in time (upload_expiry_h; a lab upload unclaimed after claim_window_min)
        move to stale/."""
        due = [u for u in self._uploads if e.now >= u.deadline]
        if not due:
            return []
        self._uploads = tuple(u for u in self._uploads if e.now < u.deadline)
        return [ExpireUpload(u.id, self._expiry_reason(u, e.now)) for u in due]

    def upload_deadline(self) -> float | None:
        """When the next upload leaves the queue for stale/, or None with an empty queue."""
        return min((u.deadline for u in self._uploads), default=None)

    @property
    def upload_queue(self) -> tuple[QueuedUpload, ...]:
        """The uploads waiting, oldest first (for the status; nothing outside machine/ decides by it)."""
        return self._uploads

    def _check_upload(self, upload: QueuedUpload, member: MemberRef) -> CheckUpload:
        return CheckUpload(upload.id, member.id)
