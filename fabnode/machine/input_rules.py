"""Inputs and timers: e-stop, firmware faults, idle timeout, cooldown, pause limit (see TRANSITIONS)."""

from __future__ import annotations

from fabnode.machine.actions import (
    Action,
    Buzz,
    RecordEvent,
)
from fabnode.machine.core import IDLE_WARNING_LEDS, Core
from fabnode.machine.events import (
    ActivitySeen,
    EStopPressed,
    EStopReleased,
    FirmwareFault,
    TemperatureReported,
    Tick,
)


class InputRules(Core):
    """What the e-stop, the firmware's faults and the clock do."""

    def _estop(self, e: EStopPressed) -> list[Action]:
        """Relay off first, job aborted, session closed: FAULT until a technician clears it."""
        return self._enter_fault("estop", "emergency stop pressed")

    def _estop_released(self, e: EStopReleased) -> list[Action]:
        """Logged; the fault stays until a technician's tap clears it."""
        return [RecordEvent("estop_released", "a technician's tap clears the fault")]

    def _firmware_fault(self, e: FirmwareFault) -> list[Action]:
        """Relay off first, job aborted, session closed: FAULT until a technician clears it."""
        return self._enter_fault(f"firmware_{e.kind}", e.reason)

    def _idle_check(self, e: Tick) -> list[Action]:
        """Warn before the idle timeout; at the timeout the session ends: COOLDOWN."""
        idle = self._idle_deadlines()
        if idle is None:
            return []
        warn_at, timeout_at = idle
        if e.now >= timeout_at:
            return self._enter_cooldown(e.now, "idle timeout")
        if warn_at is not None and e.now >= warn_at and not self._idle_warned:
            self._idle_warned = True
            return [IDLE_WARNING_LEDS, Buzz("warning")]
        return []

    def _activity(self, e: ActivitySeen) -> list[Action]:
        """Restart the idle timer (and end its warning)."""
        warned = self._idle_warned
        self._restart_idle(e.now)
        return [self._leds()] if warned and self._signal_until is None else []

    def _cooldown_tick(self, e: Tick | TemperatureReported) -> list[Action]:
        """Relay off once the hotend is cool (printer), the fumes are out (laser) or at most: LOCKED."""
        return self._cooldown_check(e.now)

    def _pause_check(self, e: Tick) -> list[Action]:
        """A job paused longer than pause_max_s is cancelled (power is not held forever)."""
        deadline = self._pause_deadline()
        if deadline is None or e.now < deadline:
            return []
        return self._cancel(f"paused longer than {self.settings.pause_max_s:g} s")
