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
from typing import TYPE_CHECKING, Any

from fabnode.machine.profile import HEATERS_OFF
from fabnode.machine.types import (
    AbortJob,
    Action,
    Buzz,
    CancelJob,
    CloseSession,
    HeatersOff,
    JobEnded,
    LockRequested,
    OpenSession,
    PauseJob,
    PublishState,
    RecordAccess,
    RecordEvent,
    RecordFault,
    RecordJobEnded,
    Reply,
    ResumeJob,
    SetLeds,
    StartJob,
    SwitchRelay,
)

if TYPE_CHECKING:
    from fabnode.node.loop import Daemon

log = logging.getLogger("fabnode.daemon")


class ActionRunner:
    """The daemon's hands: GPIO, streamer, usage log, replies."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.session_row: int | None = None
        self.last_access: RecordAccess | None = None  # the last tap's decision, for `fabnode badge`
        self.start_refused: str | None = None  # why the last StartJob did not start, for the reply
        self.leds: dict[str, bool] = {"green": False, "red": False, "blink": False}  # as last set
        self._handlers: dict[type, Any] = {
            SwitchRelay: self._relay, SetLeds: self._leds, Buzz: self._buzz, StartJob: self._start_job,
            PauseJob: self._pause, ResumeJob: self._resume, CancelJob: self._cancel, AbortJob: self._abort,
            HeatersOff: self._heaters_off, OpenSession: self._open_session, CloseSession: self._close_session,
            RecordAccess: self._access, RecordJobEnded: self._job_ended, RecordFault: self._fault,
            RecordEvent: self._event, PublishState: self._publish,
        }  # fmt: skip

    def run(self, actions: list[Action], now: float) -> Reply | None:
        """Carry out every action in order; return the Reply among them, if any."""
        reply = None
        for action in actions:
            if isinstance(action, Reply):
                reply = action
                continue
            try:
                self._handlers[type(action)](action, now)
            except Exception:
                log.exception("action %r failed", action)
        return reply

    # --- GPIO -------------------------------------------------------------------------------------

    def _relay(self, a: SwitchRelay, now: float) -> None:
        self.d.parts.io.set_relay(a.on)
        self.d.technician.controller_switched_relay()
        log.info("relay %s", "on" if a.on else "off")

    def _leds(self, a: SetLeds, now: float) -> None:
        self.d.parts.io.set_leds(a.green, a.red, a.blink)
        self.leds = {"green": a.green, "red": a.red, "blink": a.blink}
        self.d.technician.controller_set_leds()

    def _buzz(self, a: Buzz, now: float) -> None:
        self.d.parts.io.buzz(a.pattern)

    # --- the streamer -----------------------------------------------------------------------------

    def _start_job(self, a: StartJob, now: float) -> None:
        d, job = self.d, a.job
        pre = d.prepared.get(job.id)
        if pre is None or pre.analysis is None:
            raise RuntimeError(f"job {job.id}: no preflight for {job.file}")
        self.start_refused = None
        try:
            d.storage.attempt(f"the start of job {job.id}",
                              lambda: d.jobs.start(job.id, pre, self.session_row, job.member_id, now))
        except Exception as exc:  # not recorded: not started (nothing was sent to the machine)
            self._not_started(job.id, f"the job could not be recorded: {exc}")
            return
        d.reset_acked()
        reason = self._stream(pre.lines, job.id)
        if reason is not None:  # the job cannot run: the controller hears it ended
            self._not_started(job.id, reason)
        else:
            log.info("job %s started: %s (%d commands)", job.id, pre.path.name, pre.analysis.commands)

    def _not_started(self, job_id: str, reason: str) -> None:
        log.error("job %s not started: %s", job_id, reason)
        self.start_refused = reason
        self.d.post(lambda t: JobEnded(t, job_id, "failed", reason, "rejected"))

    def _stream(self, lines: list[str], job_id: str) -> str | None:
        streamer = self.d.streamer
        if streamer is None or streamer.lost is not None:
            return f"the firmware's port {self.d.parts.port} is not open"
        try:
            streamer.start_job(lines, name=job_id)
        except RuntimeError as exc:  # the previous job's end was never reported (aborted job)
            return f"the streamer is still busy: {exc}"
        return None

    def _pause(self, a: PauseJob, now: float) -> None:
        if self.d.streamer is not None:
            self.d.streamer.pause()
        self.d.jobs.paused(now)

    def _resume(self, a: ResumeJob, now: float) -> None:
        if self.d.streamer is not None:
            self.d.streamer.resume()
        self.d.jobs.resumed(now)

    def _cancel(self, a: CancelJob, now: float) -> None:
        if self.d.streamer is not None:
            self.d.streamer.cancel(a.reason)

    def _abort(self, a: AbortJob, now: float) -> None:
        # Power is already off: stop sending job lines now. The protocol's safe-stop lines (heaters
        # off) follow; they are harmless to a board without power and useful to one powered over USB.
        self.d.jobs.acked(*self.d.last_acked())
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
            self.session_row = d.storage.attempt("a session start", lambda: d.log.open_session(
                s.member.id, d.config.node.machine, d.wall(), s.is_maintenance))
        except Exception as exc:  # a session nobody could account for must not go on: lock again
            log.error("the session could not be recorded (%s): it ends at once", exc)
            d.post(lambda t: LockRequested(t))
            return
        if self.d.inbox is not None:
            for path in self.d.inbox.set_aside_stale():
                log.info("inbox: %s was waiting before the session: moved to %s", path.name, path.parent)

    def _close_session(self, a: CloseSession, now: float) -> None:
        row, self.session_row = self.session_row, None
        if row is not None:
            d, at, duration = self.d, self.d.wall(), now - a.session.started_at
            d.storage.write(f"the end of session {row}",
                            lambda: d.log.close_session(row, at, a.reason, duration))

    def _access(self, a: RecordAccess, now: float) -> None:
        self.last_access = a
        d, machine, at = self.d, self.d.config.node.machine, self.d.wall()
        d.storage.write("a badge tap", lambda: d.log.record_access(a.badge_hash, machine, a.member_id,
                                                                   a.granted, a.reason, at))  # fmt: skip

    def _job_ended(self, a: RecordJobEnded, now: float) -> None:
        summary = self.d.jobs.finish(a.job.status, a.reason, now)
        if summary is not None:
            self.d.last_job = summary
        self.d.reopen_after_job(now)
        log.info("job %s ended %s: %s", a.job.id, a.job.status, a.reason)

    def _fault(self, a: RecordFault, now: float) -> None:
        d, machine, at = self.d, self.d.config.node.machine, self.d.wall()
        d.storage.write(f"fault {a.kind}", lambda: d.log.record_fault(a.kind, a.detail, machine, at))
        log.warning("fault %s: %s", a.kind, a.detail)

    def _event(self, a: RecordEvent, now: float) -> None:
        log.info("event %s: %s", a.kind, a.detail)

    def _publish(self, a: PublishState, now: float) -> None:
        log.info("state %s", a.state.value)
        self.d.notifier.status(f"{self.d.config.node.machine}: {a.state.value}")
        d, at = self.d, self.d.wall()
        try:  # a state message is news, not a record: one the disk refuses is not kept for later
            if d.telemetry is not None:
                d.storage.attempt("a state message", lambda: d.telemetry.publish_state(a.state.value))
            else:
                d.storage.attempt("a state message", lambda: d.log.enqueue_state(a.state.value, at))
        except Exception as exc:
            log.debug("state message not written: %s", exc)
