"""Carries out the controller's actions, in order, in the daemon's controller thread.

Each action is isolated: one that fails (a full disk, a lost port) is logged and the next still runs,
so a relay-off after it is never skipped. `SwitchRelay` always goes first when the controller says so.
RecordEvent has no table in the usage log (schema v1): it goes to the log (the journal).

Usage-log writes go through the daemon's storage guard: on a full disk a record is kept and written
later (in order); a session or a job whose start cannot be recorded does not go on (the session is
locked again, the job is reported failed before a line is sent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from fabnode.machine.actions import (
    AbortJob,
    Action,
    Buzz,
    CancelJob,
    CheckInboxFile,
    CloseSession,
    HeatersOff,
    OpenSession,
    PauseJob,
    PublishState,
    RecordAccess,
    RecordEvent,
    RecordFault,
    RecordJobEnded,
    RejectInboxFile,
    Reply,
    ResumeJob,
    SetLeds,
    StartJob,
    SwitchRelay,
)
from fabnode.machine.events import JobEnded, LockRequested
from fabnode.machine.profile import HEATERS_OFF
from fabnode.machine.state import JobStatus, Session
from fabnode.node.jobs import Preflight
from fabnode.node.logsafe import shown
from fabnode.node.ports import ActionHost, Outcome

log = logging.getLogger("fabnode.daemon")


class ActionRunner:
    """The daemon's hands: GPIO, streamer, usage log, replies."""

    def __init__(self, host: ActionHost) -> None:
        self.d = host  # what changes while the node runs: the config, the streamer, the inbox, telemetry
        self.io, self.storage, self.usage, self.jobs = host.parts.io, host.storage, host.log, host.jobs
        self.notifier = host.notifier
        self.session_row: int | None = None
        self.last_job: dict[str, object] | None = None  # the last job's summary, for `fabnode status`
        self.leds: dict[str, bool] = {"green": False, "red": False, "blink": False}  # as last set
        self._handlers: dict[type, Callable[..., str | None]] = {
            SwitchRelay: self._relay, SetLeds: self._leds, Buzz: self._buzz, StartJob: self._start_job,
            PauseJob: self._pause, ResumeJob: self._resume, CancelJob: self._cancel, AbortJob: self._abort,
            HeatersOff: self._heaters_off, OpenSession: self._open_session, CloseSession: self._close_session,
            RecordAccess: self._access, RecordJobEnded: self._job_ended, RecordFault: self._fault,
            RecordEvent: self._event, PublishState: self._publish, RejectInboxFile: self._reject_inbox_file,
        }  # fmt: skip

    def register(self, kind: type, handler: Callable[..., str | None]) -> None:
        """Carry out actions of `kind` with `handler(action, now)` (the part that serves them registers)."""
        self._handlers[kind] = handler

    def run(self, actions: list[Action], now: float) -> Outcome:
        """Carry out every action in order; the Reply among them, the access decision, a job not started."""
        reply, access, not_started, inbox_file = None, None, None, None
        for action in actions:
            if isinstance(action, Reply):
                reply = action
                continue
            if isinstance(action, CheckInboxFile):  # the tap desk preflights it aside
                inbox_file = action.file
                continue
            if isinstance(action, RecordAccess):
                access = action
            try:
                refused = self._handlers[type(action)](action, now)
            except Exception:
                log.exception("action %r failed", action)
            else:
                not_started = refused or not_started
        return Outcome(reply, access, not_started, inbox_file)

    # --- GPIO -------------------------------------------------------------------------------------

    def _relay(self, a: SwitchRelay, now: float) -> None:
        self.io.set_relay(a.on)
        log.info("relay %s", "on" if a.on else "off")

    def _leds(self, a: SetLeds, now: float) -> None:
        self.io.set_leds(a.green, a.red, a.blink)
        self.leds = {"green": a.green, "red": a.red, "blink": a.blink}

    def _buzz(self, a: Buzz, now: float) -> None:
        self.io.buzz(a.pattern)

    # --- the streamer -----------------------------------------------------------------------------

    def _start_job(self, a: StartJob, now: float) -> str | None:
        d, job, pre = self.d, a.job, a.prepared
        if not isinstance(pre, Preflight) or pre.analysis is None or pre.source is None:
            raise RuntimeError(f"job {job.id}: no preflight for {shown(job.file)}")
        try:
            self.storage.attempt(f"the start of job {job.id}",
                              lambda: self.jobs.start(job.id, pre, self.session_row, job.member_id, now,
                                                      job.source, job.uploaded_by))
        except Exception as exc:  # not recorded: not started (nothing was sent to the machine)
            return self._not_started(job.id, f"the job could not be recorded: {exc}")
        d.reset_acked()
        reason = self._stream(pre.source, job.id)
        if reason is not None:  # the job cannot run: the controller hears it ended
            return self._not_started(job.id, reason)
        log.info("job %s started: %s (%d commands)", job.id, shown(pre.path.name), pre.analysis.commands)
        return None

    def _not_started(self, job_id: str, reason: str) -> str:
        log.error("job %s not started: %s", job_id, shown(reason))
        self.d.post(lambda t: JobEnded(t, job_id, JobStatus.FAILED, reason, "rejected"))
        return reason

    def _stream(self, source: Sequence[str], job_id: str) -> str | None:
        streamer = self.d.streamer
        if streamer is None or streamer.lost is not None:
            return f"the firmware's port {self.d.parts.port} is not open"
        try:  # the file is read from disk as it streams; ports.FirmwareLink still says list[str]
            streamer.start_job(cast("list[str]", source), name=job_id)
        except RuntimeError as exc:  # the previous job's end was never reported (aborted job)
            return f"the streamer is still busy: {exc}"
        return None

    def _pause(self, a: PauseJob, now: float) -> None:
        if self.d.streamer is not None:
            (self.d.streamer.door_hold if a.door else self.d.streamer.pause)()
        self.jobs.paused(now)

    def _resume(self, a: ResumeJob, now: float) -> None:
        if self.d.streamer is not None:
            self.d.streamer.resume()
        self.jobs.resumed(now)

    def _cancel(self, a: CancelJob, now: float) -> None:
        if self.d.streamer is not None:
            self.d.streamer.cancel(a.reason)

    def _abort(self, a: AbortJob, now: float) -> None:
        # Power is already off: stop sending job lines now. The protocol's safe-stop lines (heaters
        # off) follow; they are harmless to a board without power and useful to one powered over USB.
        self.jobs.acked(*self.d.last_acked())
        if self.d.streamer is not None:
            self.d.streamer.cancel(f"aborted: {a.reason}")

    def _heaters_off(self, a: HeatersOff, now: float) -> None:
        if self.d.streamer is not None:
            for command in HEATERS_OFF:
                self.d.streamer.send_command(command)

    # --- the usage log ----------------------------------------------------------------------------

    def _open_session(self, a: OpenSession, now: float) -> None:
        s, d = a.session, self.d
        try:
            self.session_row = self.storage.attempt("a session start", lambda: self.usage.open_session(
                s.member.id, d.config.node.machine, d.wall(), s.is_maintenance))
        except Exception as exc:  # a session nobody could account for must not go on: lock again
            log.error("the session could not be recorded (%s): it ends at once", exc)
            d.post(lambda t: LockRequested(t))
            return
        if self.d.inbox is not None:
            for path in self.d.inbox.set_aside_stale():
                log.info("inbox: %s was waiting before the session: moved to %s", shown(path.name),
                         shown(path.parent))

    def _close_session(self, a: CloseSession, now: float) -> None:
        self.close_session(a.session, a.reason, now)

    def close_session(self, session: Session | None, reason: str, now: float) -> None:
        """Record the end of the open session (also at stop), its duration from the monotonic clock."""
        row, self.session_row = self.session_row, None
        if row is not None and session is not None:
            at, duration = self.d.wall(), now - session.started_at
            self.storage.write(f"the end of session {row}",
                            lambda: self.usage.close_session(row, at, reason, duration))

    def _access(self, a: RecordAccess, now: float) -> None:
        machine, at = self.d.config.node.machine, self.d.wall()
        self.storage.write("a badge tap", lambda: self.usage.record_access(
            a.badge_hash, machine, a.member_id, a.granted, a.reason, at))

    def _job_ended(self, a: RecordJobEnded, now: float) -> None:
        summary = self.jobs.finish(a.job.status, a.reason, now)
        if summary is not None:
            self.last_job = summary
        self.d.reopen_after_job(now)
        log.info("job %s ended %s: %s", a.job.id, a.job.status, shown(a.reason))

    def _fault(self, a: RecordFault, now: float) -> None:
        machine, at = self.d.config.node.machine, self.d.wall()
        self.storage.write(f"fault {a.kind}", lambda: self.usage.record_fault(a.kind, a.detail, machine, at))
        log.warning("fault %s: %s", a.kind, shown(a.detail))

    def _reject_inbox_file(self, a: RejectInboxFile, now: float) -> None:
        inbox, path = self.d.inbox, Path(a.file)
        moved = inbox.reject(path, list(a.problems)) if inbox is not None else path
        log.warning("inbox: %s fails preflight, moved to %s: %s", shown(path.name), shown(moved),
                    shown("; ".join(a.problems[:5])))

    def _event(self, a: RecordEvent, now: float) -> None:
        log.info("event %s: %s", a.kind, shown(a.detail))

    def _publish(self, a: PublishState, now: float) -> None:
        log.info("state %s", a.state.value)
        self.notifier.status(f"{self.d.config.node.machine}: {a.state.value}")
        at, telemetry = self.d.wall(), self.d.telemetry
        try:  # a state message is news, not a record: one the disk refuses is not kept for later
            if telemetry is not None:
                self.storage.attempt("a state message", lambda: telemetry.publish_state(a.state.value))
            else:
                self.storage.attempt("a state message", lambda: self.usage.enqueue_state(a.state.value, at))
        except Exception as exc:
            log.debug("state message not written: %s", exc)
