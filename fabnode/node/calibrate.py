"""The daemon's `calibrate_command` request: a technician's calibration routine speaking to the firmware
through the daemon that holds its port (`fabnode calibrate esteps|pid|zoffset|level`).

Each request is one manual command: checked and sent in the controller thread (the controller's table
refuses it while a member's session or any job is open; the desk while the port is lost), then its
CommandReply awaited on the control socket's client thread, never the controller's. Commands are
serialised with a lock; `urgent` requests (the CLI's Ctrl-C heaters-off, SAFE_COMMANDS only) skip it
so they reach the firmware during a heat wait. The lab's forbidden_commands (M500...) are allowed here,
as on the serial port: this is the technician's path. Every command sent is logged.

Reply: `{"ok": true, "lines": [...], "reply_ok": bool}`, or `{"ok": false, "error": ...}` with `busy`,
`port_lost` or `no_answer` set to true when that is why (the CLI maps them to its exit codes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from fabnode.machine.events import CalibrationRequested
from fabnode.machine.profile import SAFE_NOW
from fabnode.node.logsafe import shown
from fabnode.node.ports import Firmware, JsonObject

log = logging.getLogger("fabnode.daemon")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0  # the longest routine step (a bed's PID autotune, a 10x10 G29) is well inside this
LOST_CHECK_S = 0.5  # how often a waiting request looks whether the port went
SAFE_COMMANDS = frozenset(line for lines in SAFE_NOW.values() for line in lines)  # the CLI's Ctrl-C lines


class Reply(Protocol):
    """A drivers.events.CommandReply, as this module reads it (no driver import outside the daemon)."""

    @property
    def command(self) -> str: ...

    @property
    def lines(self) -> tuple[str, ...]: ...

    @property
    def ok(self) -> bool: ...


def same_command(sent: str, answered: str) -> bool:
    """Whether a reply's command (as the protocol put it on the wire) is the line that was sent."""

    def norm(text: str) -> str:
        return " ".join(text.split(";", 1)[0].split()).upper()

    return norm(sent) == norm(answered)


class _Waiter:
    """One request waiting for its command's reply."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.reply: Reply | None = None


class CalibrateDesk:
    """Answers `calibrate_command` requests; `on_reply` is fed every CommandReply (streamer thread)."""

    def __init__(self, daemon: Firmware, clock: Callable[[], float] = time.monotonic) -> None:
        self.d = daemon
        self.jobs = daemon.jobs
        self.parts = daemon.parts
        self.clock = clock
        self._serial = threading.Lock()  # one routine command at a time
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []

    # --- the streamer's thread ----------------------------------------------------------------------

    def on_reply(self, reply: Reply) -> None:
        """A CommandReply: hand it to the oldest request waiting for that command, else only log it."""
        with self._cond:
            waiting = (w for w in self._waiters if w.reply is None and same_command(w.line, reply.command))
            waiter = next(waiting, None)
            if waiter is not None:
                waiter.reply = reply
                self._cond.notify_all()
                return
        log.debug("firmware reply to %r (%s) with no calibration waiting for it", reply.command,
                  "ok" if reply.ok else "error")  # fmt: skip

    # --- a control-socket client thread -------------------------------------------------------------

    def handle(self, request: JsonObject) -> JsonObject:
        """Send one command for a calibration routine and answer with the firmware's reply."""
        line = request.get("line")
        if not isinstance(line, str) or not line.strip():
            return {"ok": False, "error": 'calibrate_command needs a "line"', "usage": True}
        line = line.strip()
        try:
            timeout_s = min(float(request.get("timeout_s", DEFAULT_TIMEOUT_S)), MAX_TIMEOUT_S)
        except (TypeError, ValueError):
            return {"ok": False, "error": f"timeout_s {request.get('timeout_s')!r}: a number", "usage": True}
        if request.get("urgent"):
            if " ".join(line.upper().split()) not in SAFE_COMMANDS:
                return {"ok": False, "error": f"{line!r} is not a safety command: "
                                              f"only {', '.join(sorted(SAFE_COMMANDS))} skip the queue",
                        "usage": True}  # fmt: skip
            return self._exchange(line, timeout_s)
        if not self._serial.acquire(timeout=max(timeout_s, 0.0)):
            return {"ok": False, "busy": True,
                    "error": f"another calibration command kept the firmware busy for {timeout_s:g} s"}
        try:
            return self._exchange(line, timeout_s)
        finally:
            self._serial.release()

    def _exchange(self, line: str, timeout_s: float) -> JsonObject:
        self.d.wait_settled()
        waiter = _Waiter(line)
        with self._cond:
            self._waiters.append(waiter)
        try:
            refusal: JsonObject | None = self.d.call(lambda now: self._send(line, now))
            if refusal is not None:
                return refusal
            return self._wait(waiter, timeout_s)
        finally:
            with self._cond:
                self._waiters.remove(waiter)

    def _send(self, line: str, now: float) -> JsonObject | None:
        """Controller thread: refuse (the reply) or send the line (None); no state changes in between."""
        d = self.d
        job_running = self.jobs.current is not None or (d.streamer is not None and d.streamer.job_active)
        answer = d.feed(CalibrationRequested(now, d.config.node.machine, job_running)).reply
        if answer is None or not answer.ok:  # the controller's table decides by the machine's state
            refusal = answer.message if answer is not None else "the controller gave no answer"
            log.info("calibration command %r refused: %s", line, shown(refusal))
            return {"ok": False, "error": refusal, "busy": True}
        streamer = d.streamer
        if streamer is None or streamer.lost is not None:
            port = self.parts.port
            why = f"the firmware's port {port} is not connected (USB cable?): {line!r} was not sent"
            log.info("calibration command %r refused: port not connected", line)
            return {"ok": False, "error": why, "port_lost": True}
        code = line.split(None, 1)[0].upper()
        note = " (lab-forbidden for jobs, allowed for calibration)" if code in \
            d.config.machine.forbidden_commands else ""  # fmt: skip
        log.info("calibration command to %s: %s%s", d.config.node.machine, line, note)
        streamer.send_command(line)
        return None

    def _wait(self, waiter: _Waiter, timeout_s: float) -> JsonObject:
        deadline = self.clock() + timeout_s
        with self._cond:
            while waiter.reply is None:
                streamer = self.d.streamer
                lost = streamer.lost if streamer is not None else None
                if streamer is None or lost is not None:
                    log.warning("calibration command %r: the port went while waiting", waiter.line)
                    reason = f" ({lost.reason})" if lost is not None else ""
                    return {"ok": False, "port_lost": True,
                            "error": f"the firmware's port {self.parts.port} was lost{reason} while "
                                     f"waiting for {waiter.line!r}"}  # fmt: skip
                left = deadline - self.clock()
                if left <= 0:
                    log.warning("calibration command %r: no answer within %g s", waiter.line, timeout_s)
                    return {"ok": False, "no_answer": True,
                            "error": f"no answer to {waiter.line!r} within {timeout_s:g} s"}
                self._cond.wait(min(left, LOST_CHECK_S))
            reply = waiter.reply
        log.info("calibration command %r answered %s", waiter.line, "ok" if reply.ok else "with an error")
        return {"ok": True, "lines": list(reply.lines), "reply_ok": reply.ok}
