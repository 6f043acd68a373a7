"""The daemon's side of the control socket: each request is answered with a JSON object.

Requests arrive on the control socket's client threads. Preflight (reading and analysing a file, which
can take seconds) runs there; everything that reads or changes the machine's state is handed to the
controller thread with `Daemon.call`. Replies are `{"ok": true, "message": ...}` or
`{"ok": false, "error": ...}`; the CLI maps them to exit codes.

Verbs: status, print {file}, pause, resume, cancel, lock {force}, badge {uid} (simulated reader only),
sim-input {input, action} (simulated GPIO only), relay {on}, leds {green, red, blink},
inputs, badge-capture {timeout_s} (fabnode.node.technician), calibrate_command {line, timeout_s}.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabnode.machine.types import (
    BadgeTapped,
    CancelRequested,
    JobRequested,
    LockRequested,
    PauseRequested,
    Reply,
    ResumeRequested,
    State,
)
from fabnode.node.jobs import Preflight, preflight
from fabnode.records import members as access

if TYPE_CHECKING:
    from fabnode.node.loop import Daemon

log = logging.getLogger("fabnode.daemon")
MAX_PROBLEMS_SHOWN = 20
# How long a job request waits for a board that was just reset by its port opening (the daemon gives
# it GREETING_WAIT_S to greet, then speaks to it anyway); the margin is for a loaded machine.


def _reply(reply: Reply | None) -> dict[str, Any]:
    if reply is None:
        return {"ok": False, "error": "the controller gave no answer"}
    return {"ok": True, "message": reply.message} if reply.ok else {"ok": False, "error": reply.message}


class RequestHandler:
    """Turns control-socket requests into controller events and status snapshots."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (runs on a control-socket client thread)."""
        cmd = request["cmd"]
        simple: dict[str, type[PauseRequested] | type[ResumeRequested]] = {
            "pause": PauseRequested, "resume": ResumeRequested}
        if cmd == "status":
            return {"ok": True, "status": self.d.call(self.snapshot)}
        if cmd in simple:
            event_type = simple[cmd]
            return _reply(self.d.call(lambda now: self.d.feed(event_type(now))))
        if cmd == "cancel":
            return _reply(self.d.call(lambda now: self.d.feed(CancelRequested(now))))
        if cmd == "lock":
            force = bool(request.get("force", False))
            return _reply(self.d.call(lambda now: self.d.feed(LockRequested(now, force))))
        if cmd == "print":
            return self._print(request)
        if cmd == "badge":
            return self._badge(request)
        technician = {"relay": self.d.technician.relay_request, "leds": self.d.technician.leds_request,
                      "inputs": self.d.technician.inputs_request,
                      "badge-capture": self.d.technician.capture_request}  # fabnode.node.technician
        if cmd in technician:
            return technician[cmd](request)
        if cmd == "sim-input":
            return self._sim_input(request)
        if cmd == "calibrate_command":  # a technician's routine (fabnode.node.calibrate)
            return self.d.calibration.handle(request)
        if cmd == "telemetry":
            publisher = self.d.telemetry  # its status() is a copy under its own lock: no controller call
            return {"ok": True, "telemetry": publisher.status() if publisher is not None else None}
        return {"ok": False, "error": f"unknown request {cmd!r}"}

    # --- print ------------------------------------------------------------------------------------

    def _print(self, request: dict[str, Any]) -> dict[str, Any]:
        file = request.get("file")
        if not isinstance(file, str) or not file:
            return {"ok": False, "error": 'print needs a "file"'}
        pre = preflight(Path(file), self.d.config.machine)
        if not pre.ok:
            return self._refused(pre)
        self.d.wait_settled()
        job_id = uuid.uuid4().hex
        answer = _reply(self.d.call(lambda now: self.submit_job(pre, job_id, now)))
        if answer["ok"]:
            answer["job_id"] = job_id
        return answer

    def submit_job(self, pre: Preflight, job_id: str, now: float) -> Reply | None:
        """Ask the controller to run a file that passed preflight (controller thread); its Reply.

        Refused before the controller hears of it when it could not run or not be recorded: the
        firmware's port is not connected, its board has not greeted since the port opened (callers wait
        for `firmware_settled` first), or the usage log cannot be written (a full disk).
        """
        d = self.d
        if d.controller.state in (State.UNLOCKED, State.MAINTENANCE):  # it would start: can it run?
            if (problem := d.storage.problem()) is not None:
                return Reply(False, f"{problem}: no new job")
            if d.streamer is None or d.streamer.lost is not None:
                return Reply(False, f"the firmware's port {d.parts.port} is not connected (USB cable?): "
                                    "the job was not started")  # fmt: skip
            if not d.firmware_settled.is_set():  # lines sent now would be lost in the board's reset
                return Reply(False, f"the firmware on {d.parts.port} is still starting up (it resets when "
                                    "its port opens): the job was not started, try again")  # fmt: skip
        d.prepared[job_id] = pre
        d.actions.start_refused = None
        try:
            reply: Reply | None = d.feed(JobRequested(now, job_id, str(pre.path)))
        finally:
            d.prepared.pop(job_id, None)
        refused = d.actions.start_refused
        return Reply(False, f"the job was not started: {refused}") if refused is not None else reply

    @staticmethod
    def _refused(pre: Preflight) -> dict[str, Any]:
        shown = pre.problems[:MAX_PROBLEMS_SHOWN]
        more = len(pre.problems) - len(shown)
        text = "\n".join(f"  {p}" for p in shown) + (f"\n  ... and {more} more" if more else "")
        return {"ok": False, "error": f"{pre.path} fails preflight:\n{text}", "problems": pre.problems}

    # --- the inbox (controller thread) ------------------------------------------------------------

    def start_from_inbox(self, tap: BadgeTapped, path: Path, now: float) -> None:
        """The session's member tapped while a file waits: preflight it aside, then start or refuse it."""
        self.d.taps.last = {"granted": True, "reason": f"inbox: checking {path.name}",
                            "before": self.d.controller.state.value, "state": self.d.controller.state.value}

        def check() -> None:
            pre = preflight(path, self.d.config.machine)
            if pre.ok:
                self.d.wait_settled()
            self.d.call(lambda later: self._inbox_checked(tap, pre, later), timeout=60.0)

        threading.Thread(target=check, name="inbox-preflight", daemon=True).start()

    def _inbox_checked(self, tap: BadgeTapped, pre: Preflight, now: float) -> None:
        d = self.d
        session = d.controller.session
        if d.inbox is None or d.controller.state not in (State.UNLOCKED, State.MAINTENANCE) or \
                session is None or tap.member is None or session.member.id != tap.member.id:
            log.info("inbox: %s left waiting: the session changed during its preflight", pre.path.name)
            return
        denied = dataclasses.replace(tap, now=now)
        if not pre.ok:
            moved = d.inbox.reject(pre.path, pre.problems)
            log.warning("inbox: %s fails preflight, moved to %s: %s", pre.path.name, moved,
                        "; ".join(pre.problems[:5]))  # fmt: skip
            first = pre.problems[0] if pre.problems else "unreadable"
            more = f" (+{len(pre.problems) - 1} more)" if len(pre.problems) > 1 else ""
            why = f"inbox file fails preflight: {first}{more}"
            d.feed(dataclasses.replace(denied, denial=why))
            return
        job_id = uuid.uuid4().hex
        reply = self.submit_job(pre, job_id, now)
        if reply is None or not reply.ok:
            why = reply.message if reply is not None else "no answer"
            d.feed(dataclasses.replace(denied, denial=f"inbox file not started: {why}"))
            return
        accepted = d.inbox.accept(pre.path)
        if d.jobs.current is not None:
            d.jobs.current.file = accepted
        member_id, machine, at = tap.member.id, d.config.node.machine, d.wall()
        d.storage.write("a badge tap", lambda: d.log.record_access(
            tap.badge_hash, machine, member_id, True, "job started from the inbox", at))

    # --- simulated hardware -----------------------------------------------------------------------

    def _badge(self, request: dict[str, Any]) -> dict[str, Any]:
        reader = self.d.parts.sim_reader
        if reader is None:
            backend = self.d.config.reader.backend
            return {"ok": False, "error": f"the badge reader is not simulated (backend {backend!r}): "
                                          "tap a real badge on it"}  # fmt: skip
        uid = request.get("uid")
        try:
            raw = access.normalise_uid(uid if isinstance(uid, str) else "")
        except access.AccessError as exc:
            return {"ok": False, "error": str(exc), "usage": True}
        if self.d.health.reader_present is False:  # an unplugged reader reads nothing: say so at once
            return {"ok": False, "error": f"the badge reader is unplugged ({self.d.health.reader_detail}): "
                                          "plug it back in, then tap"}  # fmt: skip
        outcome = self.d.tap_and_wait(lambda: reader.tap(raw))
        if outcome.get("captured"):
            return {"ok": True, "message": "captured by `fabnode calibrate badge` (not a tap)", **outcome}
        if not outcome.get("granted", False):
            return {"ok": False, "error": f"badge refused: {outcome.get('reason')}", **outcome}
        return {"ok": True, "message": f"badge accepted: {outcome.get('state')}", **outcome}

    def _sim_input(self, request: dict[str, Any]) -> dict[str, Any]:
        from fabnode.node.wiring import WiringError, sim_input  # the wiring module; no driver import here

        try:
            done = sim_input(self.d.parts, str(request.get("input")), str(request.get("action")))
        except WiringError as exc:
            return {"ok": False, "error": str(exc), "usage": True}
        return {"ok": True, "message": done}

    # --- status (controller thread) ---------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """What `fabnode status` shows."""
        d, c = self.d, self.d.controller
        from fabnode.node.wiring import sim_relay_on

        relay = sim_relay_on(d.parts)
        if relay is None and d.technician.relay is not None:
            relay = d.technician.relay  # a technician's check switched it: the controller did not
        session = c.session
        return {
            "lab": d.config.node.lab,
            "machine": d.config.node.machine,
            "kind": d.config.machine.kind,
            "firmware": d.config.machine.firmware,
            "state": c.state.value,
            "relay": c.relay_on if relay is None else relay,
            "leds": d.actions.leds,
            "technician_check": d.technician.snapshot(now),
            "fault": c.fault,
            "member": session.member.name if session is not None else None,
            "session": None if session is None else {
                "member": session.member.name, "role": session.member.role,
                "maintenance": session.is_maintenance, "started_s_ago": round(now - session.started_at, 1),
                "badge_out_pending": session.badge_out_pending,
            },
            "job": self._job(now),
            "last_job": d.last_job,
            "temperatures": d.temperatures,
            "inputs": {"estop": c.estop_pressed, "lid": c.lid_open},
            "inbox": self._inbox(),
            "port": d.health.port_snapshot(now),
            "reader": d.health.reader_snapshot(now),
            "storage": d.storage.snapshot(),
            "config": d.reloader.snapshot(now),
            "simulated": {"gpio": d.parts.sim_gpio is not None, "reader": d.parts.sim_reader is not None,
                          "firmware": d.parts.simulator is not None},
            "uptime_s": round(now - d.started_at, 1),
        }  # fmt: skip

    def _job(self, now: float) -> dict[str, Any] | None:
        job, running = self.d.controller.job, self.d.jobs.current
        if job is None:
            return None
        info: dict[str, Any] = {"id": job.id, "status": job.status, "pause_reason": job.pause_reason,
                                "file": job.file}  # fmt: skip
        if running is not None and running.job_id == job.id:
            info.update(running.progress(now))
        return info

    def _inbox(self) -> dict[str, Any] | None:
        inbox = self.d.inbox
        if inbox is None:
            return None
        return {"path": str(inbox.folder), "waiting": [p.name for p in inbox.waiting()]}
