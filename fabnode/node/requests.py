"""The daemon's side of the control socket: each request is answered with a JSON object.

Requests arrive on the control socket's client threads; everything that reads or changes the machine's
state is handed to the controller thread with `Daemon.call`. Replies are `{"ok": true, "message": ...}`
or `{"ok": false, "error": ...}`; the CLI maps them to exit codes.

`print` prepares its file (fabnode.node.prepare: size check, one read in blocks, analysis; minutes for
a 200 MB file on a Pi) on a worker thread of its own, which posts the job onto the loop's queue when
it passed; the controller thread never waits for a file. The request waits for that end and says what
really happened (started, or refused with the preflight's problems), as a technician at the terminal
expects; only a file still being read after PRINT_WAIT_S (below the CLI's 120 s) is answered
"preparing": the job then starts by itself once it passed, and `fabnode status` shows under
`preparation` how far it is and how the last one ended. One file is prepared at a time.

Verbs: status, print {file}, pause, resume, cancel, lock {force}, badge {uid} (simulated reader only),
sim-input {input, action} (simulated GPIO only), relay {on}, leds {green, red, blink},
inputs, badge-capture {timeout_s} (fabnode.node.technician), calibrate_command {line, timeout_s}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from fabnode.machine.actions import Reply
from fabnode.machine.events import (
    BadgeTapped,
    CancelRequested,
    InboxChecked,
    JobRequested,
    LockRequested,
    PauseRequested,
    ResumeRequested,
)
from fabnode.machine.state import JobSource
from fabnode.node.logsafe import shown
from fabnode.node.ports import JsonObject, RequestHost
from fabnode.node.prepare import Preflight, Preparation, Preparations, preflight, size_text
from fabnode.records import members as access

Desk = Callable[[JsonObject], JsonObject]

log = logging.getLogger("fabnode.daemon")
MAX_PROBLEMS_SHOWN = 20
PRINT_WAIT_S = 60.0  # how long `print` waits for its file's preparation before it answers "preparing"
# How long a job request waits for a board that was just reset by its port opening (the daemon gives
# it GREETING_WAIT_S to greet, then speaks to it anyway); the margin is for a loaded machine.


def _reply(reply: Reply | None) -> JsonObject:
    if reply is None:
        return {"ok": False, "error": "the controller gave no answer"}
    return {"ok": True, "message": reply.message} if reply.ok else {"ok": False, "error": reply.message}


class RequestHandler:
    """Turns control-socket requests into controller events and status snapshots."""

    def __init__(self, daemon: RequestHost, desks: Mapping[str, Desk],
                 status: Callable[[float], JsonObject]) -> None:  # fmt: skip
        self.d = daemon  # what changes while the node runs: the config, the streamer, the inbox, telemetry
        self.controller = daemon.controller
        self.storage = daemon.storage
        self.usage = daemon.log
        self.jobs = daemon.jobs
        self.health = daemon.health
        self.parts = daemon.parts
        self.desks = dict(desks)  # the technician's checks and calibration commands, by verb
        self.snapshot = status  # what `fabnode status` shows (controller thread)
        self.preparing = Preparations(daemon.clock)  # the controller's clock: a request's time is compared

    def handle(self, request: JsonObject) -> JsonObject:
        """Answer one request (runs on a control-socket client thread)."""
        cmd = request["cmd"]
        simple: dict[str, type[PauseRequested] | type[ResumeRequested]] = {
            "pause": PauseRequested, "resume": ResumeRequested}
        if cmd == "status":
            status = {**self.d.call(self.snapshot), "preparation": self.preparing.snapshot()}
            return {"ok": True, "status": status}
        if cmd in simple:
            event_type = simple[cmd]
            return _reply(self.d.call(lambda now: self.d.feed(event_type(now)).reply))
        if cmd == "cancel":
            return _reply(self.d.call(lambda now: self.d.feed(CancelRequested(now)).reply))
        if cmd == "lock":
            force = bool(request.get("force", False))
            return _reply(self.d.call(lambda now: self.d.feed(LockRequested(now, force)).reply))
        if cmd == "print":
            return self._print(request)
        if cmd == "badge":
            return self._badge(request)
        if cmd in self.desks:  # relay, leds, inputs, badge-capture, calibrate_command
            return self.desks[cmd](request)
        if cmd == "sim-input":
            return self._sim_input(request)
        if cmd == "telemetry":
            publisher = self.d.telemetry  # its status() is a copy under its own lock: no controller call
            return {"ok": True, "telemetry": publisher.status() if publisher is not None else None}
        return {"ok": False, "error": f"unknown request {cmd!r}"}

    # --- print ------------------------------------------------------------------------------------

    def _print(self, request: JsonObject) -> JsonObject:
        file = request.get("file")
        if not isinstance(file, str) or not file:
            return {"ok": False, "error": 'print needs a "file"'}
        path = Path(file)
        prep = self.preparing.begin(path)
        if isinstance(prep, str):
            return {"ok": False, "error": prep}
        threading.Thread(target=self._prepare, args=(prep,), name="job-prepare", daemon=True).start()
        if prep.done.wait(PRINT_WAIT_S):
            return prep.answer
        read, size = prep.read
        if not size:  # not a block read yet
            with contextlib.suppress(OSError):
                size = path.stat().st_size
        percent = 100.0 * read / size if size else 0.0
        return {"ok": True, "preparing": True, "message": (
            f"preparing {path} ({size_text(size)}): {percent:.0f} % read after {PRINT_WAIT_S:g} s; the job "
            "starts by itself once it passes preflight (`fabnode status` shows how far it is, and a "
            "refusal)")}  # fmt: skip

    def _prepare(self, prep: Preparation) -> None:
        """Read and analyse the file, then hand the job to the controller (the job-prepare thread)."""
        d, answer = self.d, None
        try:
            pre = preflight(prep.path, d.config.machine, d.config.max_job_bytes, prep.progress)
            if not pre.ok:
                answer = self._refused(pre)
            else:
                d.wait_settled()
                job_id = uuid.uuid4().hex
                answer = _reply(d.call(lambda now: self.submit_job(pre, job_id, now, prep.started)))
                if answer["ok"]:
                    answer["job_id"] = job_id
        except Exception as exc:  # a bug here must still answer the request and free the next one
            log.exception("preparing %s", shown(prep.path))
            answer = {"ok": False, "error": f"{prep.path} could not be prepared: {exc}"}
        finally:
            answer = answer or {"ok": False, "error": f"{prep.path} could not be prepared"}
            self.preparing.end(prep, answer)
        if answer.get("ok"):
            log.info("print %s: %s", shown(prep.path), shown(str(answer.get("message"))))
        else:
            problems = answer.get("problems")
            said = "; ".join(problems[:5]) if isinstance(problems, list) else str(answer.get("error"))
            log.info("print %s refused: %s", shown(prep.path), shown(said))

    def submit_job(self, pre: Preflight, job_id: str, now: float,
                   asked_at: float | None = None, source: JobSource = "cli") -> Reply | None:
        """Ask the controller to run a file that passed preflight (controller thread); its Reply.

        The controller refuses it (in the states where it would start) when it could not run or not be
        recorded: the firmware's port is not connected, its board has not greeted since the port opened
        (callers wait for `firmware_settled` first), or the usage log cannot be written (a full disk).
        """
        d = self.d
        d.report_storage(now)
        link = self._link_problem()
        outcome = d.feed(JobRequested(now, job_id, str(pre.path), pre, link, asked_at, source))
        refused = outcome.not_started
        return Reply(False, f"the job was not started: {refused}") if refused is not None else outcome.reply

    def _link_problem(self, settling_blocks: bool = True) -> str | None:
        """Why the firmware cannot take a job now, or None; `settling_blocks=False` passes a board still
        greeting after its port opened, for a caller that waits for it before the job starts."""
        d = self.d
        if d.streamer is None or d.streamer.lost is not None:
            return (f"the firmware's port {self.parts.port} is not connected (USB cable?): "
                    "the job was not started")
        if settling_blocks and not d.firmware_settled.is_set():  # lines sent now would be lost in the reset
            return (f"the firmware on {self.parts.port} is still starting up (it resets when its port "
                    "opens): the job was not started, try again")
        if d.laser_mode_off is not None:  # with $32=0 a feed hold leaves the beam on
            return (f"GRBL laser mode is off ({d.laser_mode_off}): a technician sets $32=1 before jobs run "
                    "(fabnode console: $32=1)")
        return None

    @staticmethod
    def _refused(pre: Preflight) -> JsonObject:
        shown = pre.problems[:MAX_PROBLEMS_SHOWN]
        more = len(pre.problems) - len(shown)
        text = "\n".join(f"  {p}" for p in shown) + (f"\n  ... and {more} more" if more else "")
        return {"ok": False, "error": f"{pre.path} fails preflight:\n{text}", "problems": pre.problems}

    # --- the inbox (controller thread) ------------------------------------------------------------

    def start_from_inbox(self, tap: BadgeTapped, path: Path, now: float) -> JsonObject:
        """The session's member tapped while a file waits: preflight it aside, then start or refuse it.

        Returns the tap's outcome now (the check runs on; its end is logged and recorded).
        """

        def check() -> None:
            pre = preflight(path, self.d.config.machine, self.d.config.max_job_bytes)
            if pre.ok:
                self.d.wait_settled()
            self.d.call(lambda later: self._inbox_checked(tap, pre, later), timeout=60.0)

        threading.Thread(target=check, name="inbox-preflight", daemon=True).start()
        state = self.controller.state.value
        return {"granted": True, "reason": f"inbox: checking {path.name}", "before": state, "state": state}

    def _inbox_checked(self, tap: BadgeTapped, pre: Preflight, now: float) -> None:
        d, inbox, member = self.d, self.d.inbox, tap.member
        problems = () if pre.ok else (tuple(pre.problems) or ("unreadable",))
        checked = d.feed(InboxChecked(now, tap, str(pre.path), problems)) if inbox is not None else None
        reply = checked.reply if checked is not None else None
        if inbox is None or member is None or reply is None or not reply.ok:
            if checked is None or checked.access is None:  # not refused as a tap: the session changed
                log.info("inbox: %s left waiting: the session changed during its preflight",
                         shown(pre.path.name))
            return
        denied = dataclasses.replace(tap, now=now, inbox_file=None)
        job_id = uuid.uuid4().hex
        started = self.submit_job(pre, job_id, now, source="inbox")
        if started is None or not started.ok:
            why = started.message if started is not None else "no answer"
            d.feed(dataclasses.replace(denied, denial=f"inbox file not started: {why}"))
            return
        accepted = inbox.accept(pre.path)
        if self.jobs.current is not None:
            self.jobs.current.file = accepted
        member_id, machine, at = member.id, d.config.node.machine, d.wall()
        self.storage.write("a badge tap", lambda: self.usage.record_access(
            tap.badge_hash, machine, member_id, True, "job started from the inbox", at))

    # --- simulated hardware -----------------------------------------------------------------------

    def _badge(self, request: JsonObject) -> JsonObject:
        reader = self.parts.sim_reader
        if reader is None:
            backend = self.d.config.reader.backend
            return {"ok": False, "error": f"the badge reader is not simulated (backend {backend!r}): "
                                          "tap a real badge on it"}  # fmt: skip
        uid = request.get("uid")
        try:
            raw = access.normalise_uid(uid if isinstance(uid, str) else "")
        except access.AccessError as exc:
            return {"ok": False, "error": str(exc), "usage": True}
        if self.health.reader_present is False:  # an unplugged reader reads nothing: say so at once
            return {"ok": False, "error": f"the badge reader is unplugged ({self.health.reader_detail}): "
                                          "plug it back in, then tap"}  # fmt: skip
        outcome = self.d.tap_and_wait(lambda: reader.tap(raw))
        if outcome.get("captured"):
            return {"ok": True, "message": "captured by `fabnode calibrate badge` (not a tap)", **outcome}
        if not outcome.get("granted", False):
            return {"ok": False, "error": f"badge refused: {outcome.get('reason')}", **outcome}
        return {"ok": True, "message": f"badge accepted: {outcome.get('state')}", **outcome}

    def _sim_input(self, request: JsonObject) -> JsonObject:
        from fabnode.node.wiring import WiringError, sim_input  # the wiring module; no driver import here

        try:
            done = sim_input(self.parts, str(request.get("input")), str(request.get("action")))
        except WiringError as exc:
            return {"ok": False, "error": str(exc), "usage": True}
        return {"ok": True, "message": done}
