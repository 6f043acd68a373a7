"""The daemon's side of `fabnode calibrate relay|leds|inputs|badge`: the technician's wiring checks.

(`calibrate_command`, the firmware routines through the daemon, is fabnode.node.calibrate.)

relay and leds are events of the controller (`WiringCheckRequested`): its table decides, by the
machine's state, whether they may act (LOCKED, or MAINTENANCE without a job) and the action runner
writes the relay and LEDs, as for any other decision. The check is an override that the controller
ends itself, its own relay and LEDs applying again, at its next act or after TECHNICIAN_HOLD_S.
badge-capture arms a slot that the reader's next badge fills: its keyed hash is returned for
enrolment and that read is not a tap. inputs reports the live GPIO inputs and what the controller
believes. Requests arrive on socket threads and act through `Daemon.call` (the controller thread).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

from fabnode.machine.actions import SetLeds
from fabnode.machine.desk_rules import WIRING_CHECK_HOLD_S
from fabnode.machine.events import WiringCheckRequested
from fabnode.node.ports import JsonObject, TechnicianHost

log = logging.getLogger("fabnode.daemon")
TECHNICIAN_HOLD_S = WIRING_CHECK_HOLD_S  # a technician's relay / LEDs setting lasts at most this long
MAX_CAPTURE_S = 600.0


@dataclass
class _Capture:
    """One armed badge capture: filled by the reader's thread, read by the waiting request."""

    done: threading.Event = field(default_factory=threading.Event)
    hashed: str | None = None


def _error(message: str) -> JsonObject:
    return {"ok": False, "error": message}


class TechnicianDesk:
    """Technician overrides of relay and LEDs, and the armed badge capture."""

    def __init__(self, daemon: TechnicianHost) -> None:
        self.d = daemon
        self._lock = threading.Lock()
        self._capture: _Capture | None = None

    # --- requests (control-socket threads) --------------------------------------------------------

    def relay_request(self, request: JsonObject) -> JsonObject:
        """`{"cmd": "relay", "on": bool}` -> `{"ok", "relay", "message"}`."""
        on = request.get("on")
        if not isinstance(on, bool):
            return {**_error('relay needs "on": true or false'), "usage": True}
        answer: JsonObject = self.d.call(lambda now: self._switch_relay(on, now))
        return answer

    def leds_request(self, request: JsonObject) -> JsonObject:
        """`{"cmd": "leds", "green", "red", "blink"}` -> `{"ok", "leds", "message"}`."""
        leds = {name: request.get(name, False) for name in ("green", "red", "blink")}
        if not all(isinstance(v, bool) for v in leds.values()):
            return {**_error("leds needs green, red and blink as true or false"), "usage": True}
        answer: JsonObject = self.d.call(lambda now: self._set_leds(leds, now))
        return answer

    def inputs_request(self, request: JsonObject) -> JsonObject:
        """`{"cmd": "inputs"}` -> `{"ok", "inputs": the live GPIO, "controller": what it believes}`."""
        answer: JsonObject = self.d.call(self._inputs)
        return answer

    def capture_request(self, request: JsonObject) -> JsonObject:
        """`{"cmd": "badge-capture", "timeout_s"}` -> `{"ok", "badge_hash"}` of the next badge read."""
        timeout = request.get("timeout_s", 30.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) \
                or not 0 < timeout <= MAX_CAPTURE_S:
            why = f"badge-capture needs timeout_s between 0 and {MAX_CAPTURE_S:g} s"
            return {**_error(why), "usage": True}
        capture = _Capture()
        refused: str | None = self.d.call(lambda now: self._arm(capture))
        if refused is not None:
            return _error(refused)
        capture.done.wait(float(timeout))
        with self._lock:
            if self._capture is capture:
                self._capture = None
        if not capture.done.is_set():
            return _error(f"no badge was tapped on the reader within {float(timeout):g} s")
        if capture.hashed is None:
            return _error("the badge could not be read (unreadable UID): run it again and tap again")
        return {"ok": True, "badge_hash": capture.hashed, "message": "badge captured for enrolment"}

    # --- any thread --------------------------------------------------------------------------------

    def take_badge(self, hashed: str | None) -> bool:
        """The reader saw a badge: True when an armed capture took it (then it is not a tap)."""
        with self._lock:
            capture, self._capture = self._capture, None
        if capture is None:
            return False
        capture.hashed = hashed
        capture.done.set()
        log.info("badge captured for enrolment (%s): not a tap", "unreadable" if hashed is None
                 else f"hash {hashed[:8]}...")  # fmt: skip
        return True

    # --- the controller thread -------------------------------------------------------------------

    def snapshot(self, now: float) -> JsonObject | None:
        """What `fabnode status` shows of a technician's check in progress."""
        relay, leds, until = self.d.controller.wiring_check
        capturing = self._capture is not None
        if until is None and not capturing:
            return None
        ends = None if until is None else round(max(0.0, until - now), 1)
        return {"relay": relay, "leds": leds, "ends_in_s": ends, "badge_capture": capturing}

    def _member_job(self) -> str | None:
        c = self.d.controller
        session = c.session
        if c.job is not None and (session is None or not session.is_maintenance):
            return f"a member's job is running on {self.d.config.node.machine}: calibrate after it ends"
        return None

    def _switch_relay(self, on: bool, now: float) -> JsonObject:
        reply = self.d.feed(WiringCheckRequested(now, self.d.config.node.machine, relay=on)).reply
        if reply is None or not reply.ok:
            return _error(reply.message if reply is not None else "the controller gave no answer")
        said = "on" if on else "off"
        back = reply.message.removeprefix(f"relay {said}")  # "; back off in 60 s or at the next tap"
        log.warning("technician check: relay switched %s by `fabnode calibrate relay`%s", said, back)
        return {"ok": True, "relay": on, "message": reply.message}

    def _set_leds(self, leds: dict[str, bool], now: float) -> JsonObject:
        setting = SetLeds(leds["green"], leds["red"], leds["blink"])
        reply = self.d.feed(WiringCheckRequested(now, self.d.config.node.machine, leds=setting)).reply
        if reply is None or not reply.ok:
            return _error(reply.message if reply is not None else "the controller gave no answer")
        log.warning("technician check: LEDs set to %s by `fabnode calibrate leds` (for %g s at most)",
                    ", ".join(f"{k} {'on' if v else 'off'}" for k, v in leds.items()), TECHNICIAN_HOLD_S)
        return {"ok": True, "leds": leds, "message": reply.message}

    def _inputs(self, now: float) -> JsonObject:
        refused = self._member_job()
        if refused is not None:
            return _error(refused)
        c = self.d.controller
        return {"ok": True, "inputs": self.d.parts.io.read_inputs(),
                "controller": {"estop": c.estop_pressed, "lid": c.lid_open}}  # fmt: skip

    def _arm(self, capture: _Capture) -> str | None:
        c = self.d.controller
        session = c.session
        if session is not None and not session.is_maintenance:  # its next tap is likely the member's own
            return (f"a member's session is open on {self.d.config.node.machine} ({session.member.name}): "
                    "capture a badge when it has ended")
        if self.d.health.reader_present is False:
            return f"the badge reader is unplugged ({self.d.health.reader_detail}): plug it back in"
        with self._lock:
            if self._capture is not None:
                return "another `fabnode calibrate badge` is already waiting for a tap"
            self._capture = capture
        return None
