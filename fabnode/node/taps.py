"""Badge taps in the daemon: the access decision, the storage check, the inbox, and `tap_and_wait`.

A tap reaches the controller as a `BadgeTapped` carrying the access module's decision. The daemon adds
one refusal of its own: a tap that would open a session while the usage log cannot record it (a full
disk, an unwritable database) is refused with that reason (red LED, `denied` buzz), so no session runs
unrecorded; taps that end a session, clear a fault or start an inbox file are not affected.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fabnode.machine.types import BadgeTapped, MemberRef, Role, State
from fabnode.records import members as access

if TYPE_CHECKING:
    from fabnode.node.loop import Daemon

OPENS_A_SESSION = (State.LOCKED, State.COOLDOWN)


class TapDesk:
    """Decides what a tap means before the controller sees it; lets callers wait for its outcome."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._cond = threading.Condition()
        self._posted = 0
        self._done = 0
        self.last: dict[str, Any] = {}

    def posted(self) -> None:
        """A tap was put on the queue (any thread)."""
        with self._cond:
            self._posted += 1

    def consumed(self) -> None:
        """A badge read was taken by `fabnode calibrate badge` (any thread): handled, and not a tap."""
        with self._cond:
            self._posted += 1
            self._done += 1
            self.last = {"granted": False, "captured": True, "reason": "captured for enrolment, not a tap",
                         "before": self.d.controller.state.value, "state": self.d.controller.state.value}
            self._cond.notify_all()

    def wait(self, tap: Any, timeout: float = 5.0) -> dict[str, Any]:
        """Deliver a simulated tap (`tap()`) and wait until the controller thread handled it."""
        with self._cond:
            target = self._posted + 1
        tap()
        with self._cond:
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                raise TimeoutError("the tap was not handled in time")
            return dict(self.last)

    def handle(self, hashed: str | None, now: float) -> None:
        """One tap, in the controller thread."""
        try:
            self._decide(hashed, now)
        finally:
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def _decide(self, hashed: str | None, now: float) -> None:
        d = self.d
        tap = self._tap(hashed, now)
        waiting = self._inbox_file_for(tap)
        if waiting is not None:
            d.requests.start_from_inbox(tap, waiting, now)
            return
        if tap.granted and d.controller.state in OPENS_A_SESSION and (problem := d.storage.problem()):
            tap = dataclasses.replace(tap, denial=f"{problem}: no new session")
        state_before = d.controller.state
        d.actions.last_access = None
        d.feed(tap)
        decided = d.actions.last_access
        granted = decided.granted if decided is not None else tap.granted
        reason = decided.reason if decided is not None else (tap.denial or "granted")
        self.last = {"granted": granted, "reason": reason, "before": state_before.value,
                     "state": d.controller.state.value}  # fmt: skip

    def _tap(self, hashed: str | None, now: float) -> BadgeTapped:
        if hashed is None:
            return BadgeTapped(now, "unreadable", None, "unreadable badge")
        d = self.d
        today = d.wall().astimezone().date()  # trainings expire by the lab's calendar: the wall clock
        with d.log.locked() as db:  # the telemetry thread shares the connection
            decision = access.check_access(db, hashed, d.config.node.machine, today)
        role: Role = "technician" if decision.role == access.TECHNICIAN else "member"
        member = MemberRef(decision.member_id, role, decision.name or "") \
            if decision.member_id is not None else None  # fmt: skip
        return BadgeTapped(now, hashed, member, None if decision.granted else decision.reason)

    def _inbox_file_for(self, tap: BadgeTapped) -> Path | None:
        """The inbox file this tap starts: the session's own member, no job, a file waiting."""
        d = self.d
        session = d.controller.session
        if d.inbox is None or session is None or not tap.granted or tap.member is None:
            return None
        if d.controller.state not in (State.UNLOCKED, State.MAINTENANCE):
            return None
        if tap.member.id != session.member.id:
            return None
        return d.inbox.next_file()
