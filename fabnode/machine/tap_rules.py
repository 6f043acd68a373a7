"""Badge taps: open, end or resume a session, clear a fault (handlers named in controller.TRANSITIONS)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from fabnode.machine.actions import (
    Action,
    Buzz,
    CheckInboxFile,
    OpenSession,
    RecordAccess,
    RecordEvent,
)
from fabnode.machine.core import LOCKED, MAINTENANCE, MAINTENANCE_IN_PROGRESS, UNLOCKED
from fabnode.machine.events import (
    BadgeTapped,
)
from fabnode.machine.state import MemberRef, Session
from fabnode.machine.upload_rules import UploadRules

TapHandler = Callable[["TapRules", BadgeTapped, MemberRef], list[Action]]


def _granted(handler: TapHandler) -> Callable[[TapRules, BadgeTapped], list[Action]]:
    """Wrap a tap handler: taps the access module denied are refused (red LED, buzz, logged) in any state."""

    @functools.wraps(handler)
    def on_tap(c: TapRules, tap: BadgeTapped) -> list[Action]:
        if tap.denial is not None or tap.member is None:
            return c._deny(tap, tap.denial or "unknown badge")
        return handler(c, tap, tap.member)

    on_tap.__doc__ = f"{(handler.__doc__ or '').strip()} Denied badges: refused."
    return on_tap


class TapRules(UploadRules):
    """What a tap does, state by state; denied badges are refused the same way everywhere."""

    @_granted
    def _tap_opens(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """Open a session (a technician's: MAINTENANCE), relay on, and start the member's waiting upload (or
        a lab upload still offered) in the same tap; refused while records cannot be kept."""
        if self._storage_problem is not None:  # no session runs unrecorded
            return self._deny(tap, f"{self._storage_problem}: no new session")
        maintenance = member.is_technician
        self._session = Session(member, tap.now, maintenance)
        self._restart_idle(tap.now)
        self._go(MAINTENANCE if maintenance else UNLOCKED)
        what = "maintenance session opened" if maintenance else "session opened"
        upload, blocked = self._release(tap, member)  # print release: the same tap starts a waiting upload
        if upload is not None:
            what += f"; upload {upload.name} " + ("released" if blocked is None else f"waits: {blocked}")
        opened: list[Action] = [
            RecordAccess(tap.badge_hash, member.id, True, what),
            OpenSession(self._session),
            *self._switch(True),
            Buzz("granted"),
        ]
        if upload is not None and blocked is None:
            opened.append(self._check_upload(upload, member))  # checked aside; UploadChecked starts it
        return opened

    @_granted
    def _tap_ends(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """Badge-out or another's tap ends the session: COOLDOWN (only technicians end maintenance); the
        session's member starts a file waiting in the inbox, or an upload waiting for them, instead."""
        session = self._need_session()
        if tap.inbox_file is not None and member.id == session.member.id:
            return [CheckInboxFile(tap.inbox_file)]  # the session's own member starts the waiting file
        if session.is_maintenance and not member.is_technician:
            return self._deny(tap, MAINTENANCE_IN_PROGRESS)
        upload, blocked = self._release(tap, member) if member.id == session.member.id else (None, None)
        if upload is not None:  # print release in the member's own session: the tap starts it
            if blocked is not None:
                return self._deny(tap, f"upload {upload.name} cannot start: {blocked}")
            released = RecordAccess(tap.badge_hash, member.id, True, f"upload {upload.name} released")
            return [released, Buzz("granted"), self._check_upload(upload, member)]
        reason = "badge out" if member.id == session.member.id else "another member tapped"
        return [
            RecordAccess(tap.badge_hash, member.id, True, reason),
            Buzz("granted"),
            *self._enter_cooldown(tap.now, reason),
        ]

    @_granted
    def _tap_during_job(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """Badge-out or another member's tap: the session ends when the job ends; the power stays on."""
        return self._badge_out_later(tap, member)

    @_granted
    def _tap_paused(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """The session's member resumes the job (lid closed); another's tap ends the session after it."""
        if member.id != self._need_session().member.id:
            return self._badge_out_later(tap, member)
        refusal = self._resume_refusal()
        if refusal is not None:
            return self._deny(tap, refusal)
        resumed = RecordAccess(tap.badge_hash, member.id, True, "job resumed")
        return [resumed, Buzz("granted"), *self._resume()]

    @_granted
    def _tap_fault(self, tap: BadgeTapped, member: MemberRef) -> list[Action]:
        """A technician's tap clears the fault once the e-stop is released: LOCKED; members' are refused."""
        if not member.is_technician:
            return self._deny(tap, f"machine fault ({self._fault}): a technician must clear it")
        if self._estop_pressed:
            return self._deny(tap, "release the emergency stop first")
        cleared, self._fault = self._fault, None
        self._go(LOCKED)
        return [
            RecordAccess(tap.badge_hash, member.id, True, "fault cleared"),
            RecordEvent("fault_cleared", f"{cleared}: cleared by technician {member.id}"),
            Buzz("granted"),
        ]
