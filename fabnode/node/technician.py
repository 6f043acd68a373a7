"""The daemon's side of `fabnode calibrate relay|leds|inputs|badge`: the technician's wiring checks.

(`calibrate_command`, the firmware routines through the daemon, is fabnode.node.calibrate.)

relay and leds switch the GPIO directly, only while no one's session or job is active (LOCKED, or
MAINTENANCE without a job). The technician's setting is an override that ends, the controller's own
relay and LEDs applying again, when the controller next acts (a tap, a request, a state change) or
after TECHNICIAN_HOLD_S, so a relay switched on from LOCKED never leaves the machine powered.
badge-capture arms a slot that the reader's next badge fills: its keyed hash is returned for
enrolment and that read is not a tap. inputs reports the live GPIO inputs and what the controller
believes. Requests arrive on socket threads and act through `Daemon.call` (the controller thread).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fabnode.machine.types import ActivitySeen, Event, State, TemperatureReported, Tick

if TYPE_CHECKING:
    from fabnode.node.loop import Daemon

log = logging.getLogger("fabnode.daemon")
TECHNICIAN_HOLD_S = 60.0  # a technician's relay / LEDs setting lasts at most this long
MAX_CAPTURE_S = 600.0
# Events that are not the controller acting on the machine: they leave a technician's check alone.
_BACKGROUND = (Tick, TemperatureReported, ActivitySeen)


@dataclass
class _Capture:
    """One armed badge capture: filled by the reader's thread, read by the waiting request."""

    done: threading.Event = field(default_factory=threading.Event)
    hashed: str | None = None


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class TechnicianDesk:
    """Technician overrides of relay and LEDs, and the armed badge capture."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.relay: bool | None = None  # the technician's relay while it overrides the controller's
        self.leds_saved: dict[str, bool] | None = None  # the controller's LEDs, to put back
        self.until: float | None = None  # when the override ends by itself
        self._lock = threading.Lock()
        self._capture: _Capture | None = None

    # --- requests (control-socket threads) --------------------------------------------------------

    def relay_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """`{"cmd": "relay", "on": bool}` -> `{"ok", "relay", "message"}`."""
        on = request.get("on")
        if not isinstance(on, bool):
            return {**_error('relay needs "on": true or false'), "usage": True}
        answer: dict[str, Any] = self.d.call(lambda now: self._switch_relay(on, now))
        return answer

    def leds_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """`{"cmd": "leds", "green", "red", "blink"}` -> `{"ok", "leds", "message"}`."""
        leds = {name: request.get(name, False) for name in ("green", "red", "blink")}
        if not all(isinstance(v, bool) for v in leds.values()):
            return {**_error("leds needs green, red and blink as true or false"), "usage": True}
        answer: dict[str, Any] = self.d.call(lambda now: self._set_leds(leds, now))
        return answer

    def inputs_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """`{"cmd": "inputs"}` -> `{"ok", "inputs": the live GPIO, "controller": what it believes}`."""
        answer: dict[str, Any] = self.d.call(self._inputs)
        return answer

    def capture_request(self, request: dict[str, Any]) -> dict[str, Any]:
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

    def deadline(self) -> float | None:
        """When the override ends by itself (for the loop's wait)."""
        return self.until

    def housekeeping(self, now: float) -> None:
        """End the override at its deadline, or when the machine left LOCKED / MAINTENANCE."""
        if self.until is None:
            return
        if now >= self.until:
            self.end(f"after {TECHNICIAN_HOLD_S:g} s")
        elif self._busy() is not None:
            self.end(f"the machine is {self.d.controller.state.value}")

    def before(self, event: Event) -> None:
        """The controller is about to act: its own relay and LEDs apply again."""
        if self.until is not None and not isinstance(event, _BACKGROUND):
            self.end(f"{type(event).__name__}: the controller decides again")

    def controller_switched_relay(self) -> None:
        """The controller switched the relay itself: its decision wins."""
        self.relay = None
        self._maybe_done()

    def controller_set_leds(self) -> None:
        """The controller set the LEDs itself: its choice wins."""
        self.leds_saved = None
        self._maybe_done()

    def end(self, why: str) -> None:
        """Put the controller's relay and LEDs back."""
        d = self.d
        if self.relay is not None and self.relay != d.controller.relay_on:
            d.parts.io.set_relay(d.controller.relay_on)
            log.warning("technician check over (%s): relay back %s", why, "on" if d.controller.relay_on
                        else "off")  # fmt: skip
        if self.leds_saved is not None:
            saved = self.leds_saved
            d.parts.io.set_leds(saved["green"], saved["red"], saved["blink"])
            d.actions.leds = dict(saved)
            log.info("technician check over (%s): LEDs back to the controller's", why)
        self.relay, self.leds_saved, self.until = None, None, None

    def snapshot(self, now: float) -> dict[str, Any] | None:
        """What `fabnode status` shows of a technician's check in progress."""
        capturing = self._capture is not None
        if self.until is None and not capturing:
            return None
        ends = None if self.until is None else round(max(0.0, self.until - now), 1)
        return {"relay": self.relay, "leds": self.leds_saved is not None, "ends_in_s": ends,
                "badge_capture": capturing}  # fmt: skip

    def _maybe_done(self) -> None:
        if self.relay is None and self.leds_saved is None:
            self.until = None

    def _busy(self) -> str | None:
        """Why relay and LEDs must not be switched now; None in LOCKED or MAINTENANCE without a job."""
        c, machine = self.d.controller, self.d.config.node.machine
        if c.state == State.LOCKED or (c.state == State.MAINTENANCE and c.job is None):
            return None
        session = c.session
        if session is not None and not session.is_maintenance:
            return (f"a member's session is open on {machine} ({session.member.name}, {c.state.value}): "
                    "wiring checks wait until it ends")
        if c.job is not None:
            return f"a job runs on {machine} ({c.state.value}): wiring checks wait until it ends"
        return f"{machine} is {c.state.value}: wiring checks only while it is locked or in maintenance"

    def _member_job(self) -> str | None:
        c = self.d.controller
        session = c.session
        if c.job is not None and (session is None or not session.is_maintenance):
            return f"a member's job is running on {self.d.config.node.machine}: calibrate after it ends"
        return None

    def _switch_relay(self, on: bool, now: float) -> dict[str, Any]:
        refused = self._busy()
        if refused is not None:
            return _error(refused)
        self.d.parts.io.set_relay(on)
        controller = self.d.controller.relay_on
        self.relay = None if on == controller else on
        if self.relay is not None:
            self.until = now + TECHNICIAN_HOLD_S
        self._maybe_done()
        back = f"; back {'on' if controller else 'off'} in {TECHNICIAN_HOLD_S:g} s or at the next tap" \
            if self.relay is not None else ""  # fmt: skip
        log.warning("technician check: relay switched %s by `fabnode calibrate relay`%s",
                    "on" if on else "off", back)  # fmt: skip
        return {"ok": True, "relay": on, "message": f"relay {'on' if on else 'off'}{back}"}

    def _set_leds(self, leds: dict[str, bool], now: float) -> dict[str, Any]:
        refused = self._busy()
        if refused is not None:
            return _error(refused)
        if self.leds_saved is None:
            self.leds_saved = dict(self.d.actions.leds)
        self.d.parts.io.set_leds(leds["green"], leds["red"], leds["blink"])
        self.d.actions.leds = dict(leds)
        self.until = now + TECHNICIAN_HOLD_S
        log.warning("technician check: LEDs set to %s by `fabnode calibrate leds` (for %g s at most)",
                    ", ".join(f"{k} {'on' if v else 'off'}" for k, v in leds.items()), TECHNICIAN_HOLD_S)
        return {"ok": True, "leds": leds, "message": f"LEDs set for {TECHNICIAN_HOLD_S:g} s at most"}

    def _inputs(self, now: float) -> dict[str, Any]:
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
