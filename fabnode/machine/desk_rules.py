"""A technician's desks and the inbox: wiring checks, calibration commands, inbox files (see TRANSITIONS).

A wiring check (`fabnode calibrate relay|leds`) switches the relay or sets the LEDs only while no one's
session or job is active (LOCKED, or MAINTENANCE without a job). It is an override that ends, the
controller's own relay and LEDs applying again, at the controller's next act (a tap, a request, a state
change: any event but the background ones) or after WIRING_CHECK_HOLD_S, so a relay switched on from
LOCKED never leaves the machine powered. The refusals are the texts the technician's CLI shows.
"""

from __future__ import annotations

from dataclasses import replace

from fabnode.machine.actions import Action, RecordEvent, RejectInboxFile, Reply, SetLeds, SwitchRelay
from fabnode.machine.core import Core
from fabnode.machine.events import (
    ActivitySeen,
    CalibrationRequested,
    InboxChecked,
    StorageChanged,
    TemperatureReported,
    Tick,
    WiringCheckRequested,
)

WIRING_CHECK_HOLD_S = 60.0  # a technician's relay / LEDs setting lasts at most this long
INBOX_SESSION_CHANGED = "the session changed during its preflight"
# Events that are not the controller acting on the machine: they leave a technician's check alone.
BACKGROUND = (Tick, TemperatureReported, ActivitySeen, StorageChanged, CalibrationRequested,
              WiringCheckRequested)  # fmt: skip


class DeskRules(Core):
    """Answers the technician's desks and the inbox by the machine's state."""

    # --- wiring checks ----------------------------------------------------------------------------

    def _wiring_check(self, e: WiringCheckRequested) -> list[Action]:
        """Switch the relay or set the LEDs for WIRING_CHECK_HOLD_S at most (the next act ends it)."""
        if e.relay is not None:
            on, controller = e.relay, self._relay_on
            self._check_relay = None if on == controller else on
            if self._check_relay is not None:
                self._check_until = e.now + WIRING_CHECK_HOLD_S
            elif self._check_leds is None:
                self._check_until = None
            back = f"; back {'on' if controller else 'off'} in {WIRING_CHECK_HOLD_S:g} s or at the next tap" \
                if self._check_relay is not None else ""  # fmt: skip
            return [SwitchRelay(on), RecordEvent("wiring_check", f"relay {'on' if on else 'off'}{back}"),
                    Reply(True, f"relay {'on' if on else 'off'}{back}")]  # fmt: skip
        leds = e.leds if e.leds is not None else SetLeds(False, False)
        self._check_leds = leds
        self._check_until = e.now + WIRING_CHECK_HOLD_S
        return [leds, Reply(True, f"LEDs set for {WIRING_CHECK_HOLD_S:g} s at most")]

    def _wiring_refused(self, e: WiringCheckRequested) -> list[Action]:
        """Refused: wiring checks only while locked or in maintenance (a session's or a job's, named)."""
        session, state, machine = self._session, self._state.value, e.machine
        if session is not None and not session.is_maintenance:
            return [Reply(False, f"a member's session is open on {machine} ({session.member.name}, {state}): "
                                 "wiring checks wait until it ends")]  # fmt: skip
        if self._job is not None:
            return [Reply(False, f"a job runs on {machine} ({state}): wiring checks wait until it ends")]
        why = f"{machine} is {state}: wiring checks only while it is locked or in maintenance"
        return [Reply(False, why)]

    # --- calibration commands ---------------------------------------------------------------------

    def _job_streams(self, e: CalibrationRequested) -> list[Action]:
        session = self._session
        whose = "a technician's" if session is not None and session.is_maintenance else "a member's"
        return [Reply(False, f"{whose} job is running on {e.machine}: calibrate after it ends")]

    def _calibration_idle(self, e: CalibrationRequested) -> list[Action]:
        """The command may go to the firmware, unless a job still streams."""
        return self._job_streams(e) if e.job_running else [Reply(True, "send")]

    def _calibration_in_job(self, e: CalibrationRequested) -> list[Action]:
        """Refused: a job is running (a member's or a technician's): calibrate after it ends."""
        return self._job_streams(e)

    def _calibration_in_session(self, e: CalibrationRequested) -> list[Action]:
        """Refused: a member's session is open: calibrate once it ends."""
        if e.job_running:
            return self._job_streams(e)
        why = (f"a member's session is open on {e.machine}: calibrate once it ends (badge out, or "
               "`fabnode lock`), with the machine locked or a technician badged in")
        return [Reply(False, why)]

    def _calibration_in_cooldown(self, e: CalibrationRequested) -> list[Action]:
        """Refused: cooling down after a member's session: calibrate once it is locked."""
        if e.job_running:
            return self._job_streams(e)
        return [Reply(False, f"{e.machine} is cooling down after a member's session: calibrate once it is "
                             "locked")]  # fmt: skip

    def _calibration_in_fault(self, e: CalibrationRequested) -> list[Action]:
        """Refused: in fault, a technician must clear it before calibrating."""
        if e.job_running:
            return self._job_streams(e)
        return [Reply(False, f"{e.machine} is in fault ({self._fault}): a technician must clear it before "
                             "calibrating")]  # fmt: skip

    # --- the inbox --------------------------------------------------------------------------------

    def _inbox_checked(self, e: InboxChecked) -> list[Action]:
        """The session's member's inbox file may start; one failing preflight is moved aside and refused."""
        session, member = self._session, e.tap.member
        if session is None or member is None or session.member.id != member.id:
            return [Reply(False, INBOX_SESSION_CHANGED)]
        if not e.problems:
            return [Reply(True, f"{e.file} may start")]
        first, more = e.problems[0], len(e.problems) - 1
        why = f"inbox file fails preflight: {first}" + (f" (+{more} more)" if more else "")
        tap = replace(e.tap, now=e.now, inbox_file=None)
        return [RejectInboxFile(e.file, e.problems), *self._deny(tap, why), Reply(False, why)]
