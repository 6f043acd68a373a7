"""Badge taps in the daemon: the access decision, the inbox, and `tap_and_wait`.

A tap reaches the controller as a `BadgeTapped` carrying the access module's decision and, when a file
waits in the inbox during a session, that file. The controller decides what the tap means in its state
(docs/state-machine.md): a tap that would open a session while the usage log cannot record it is
refused there (the loop reports storage trouble to it first, as an input), and the session's member's
tap with a file waiting starts that file (preflighted aside, by the request desk).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fabnode.envelope import utc_iso
from fabnode.machine.events import BadgeTapped
from fabnode.machine.state import MemberRef, Role
from fabnode.node.ports import JsonObject, TapHost
from fabnode.records import members as access

InboxStart = Callable[[BadgeTapped, Path, float], JsonObject]
# Why only technicians pass now (the lab directory is too old: fabnode.node.directory_sync), or None.
DirectoryGate = Callable[[datetime], str | None]


class TapDesk:
    """Decides what a tap means before the controller sees it; lets callers wait for its outcome."""

    def __init__(self, daemon: TapHost, start_inbox: InboxStart,
                 directory_gate: DirectoryGate = lambda _now: None) -> None:  # fmt: skip
        self.d = daemon
        self._directory_gate = directory_gate
        self.controller = daemon.controller
        self.storage = daemon.storage
        self.usage = daemon.log
        self._start_inbox = start_inbox  # the request desk preflights and starts a waiting inbox file
        self._cond = threading.Condition()
        self._posted = 0
        self._done = 0
        self._last: JsonObject = {}  # written only here, by the controller thread, under _cond
        # The last refused tap {reason, at} for the status page; why the firmware cannot take a job now
        # (set by the web desk: a tap that would start a waiting upload hands it to the controller).
        self.last_refused: JsonObject | None = None
        self.link_problem: Callable[[], str | None] = lambda: None

    def posted(self) -> None:
        """A tap was put on the queue (any thread)."""
        with self._cond:
            self._posted += 1

    def consumed(self) -> None:
        """A badge read was taken by `fabnode calibrate badge` (any thread): handled, and not a tap."""
        with self._cond:
            self._posted += 1
            self._done += 1
            state = self.controller.state.value
            self._last = {"granted": False, "captured": True, "reason": "captured for enrolment, not a tap",
                          "before": state, "state": state}
            self._cond.notify_all()

    def last(self) -> JsonObject:
        """The last tap's outcome (granted, reason, state before and after)."""
        with self._cond:
            return dict(self._last)

    def wait(self, tap: Callable[[], None], timeout: float = 5.0) -> JsonObject:
        """Deliver a simulated tap (`tap()`) and wait until the controller thread handled it."""
        with self._cond:
            target = self._posted + 1
        tap()
        with self._cond:
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                raise TimeoutError("the tap was not handled in time")
            return dict(self._last)

    def handle(self, hashed: str | None, now: float) -> None:
        """One tap, in the controller thread."""
        outcome: JsonObject | None = None
        try:
            outcome = self._decide(hashed, now)
        finally:
            with self._cond:
                if outcome is not None:
                    self._last = outcome
                    if not outcome.get("granted", True):
                        self.last_refused = {"reason": outcome.get("reason"), "at": utc_iso(self.d.wall())}
                self._done += 1
                self._cond.notify_all()

    def _decide(self, hashed: str | None, now: float) -> JsonObject:
        d = self.d
        tap = self._tap(hashed, now)
        waiting = self._inbox_file_for(tap)
        if waiting is not None:
            tap = dataclasses.replace(tap, inbox_file=str(waiting))
        if tap.granted:  # a waiting upload starts with this tap only if the firmware can take it
            tap = dataclasses.replace(tap, link_problem=self.link_problem())
        d.report_storage(now)  # the controller refuses a new session it could not record
        state_before = self.controller.state
        outcome = d.feed(tap)
        if outcome.inbox_file is not None:
            return self._start_inbox(tap, Path(outcome.inbox_file), now)
        decided = outcome.access
        granted = decided.granted if decided is not None else tap.granted
        reason = decided.reason if decided is not None else (tap.denial or "granted")
        return {"granted": granted, "reason": reason, "before": state_before.value,
                "state": self.controller.state.value}  # fmt: skip

    def _tap(self, hashed: str | None, now: float) -> BadgeTapped:
        if hashed is None:
            return BadgeTapped(now, "unreadable", None, "unreadable badge")
        d = self.d
        today = d.wall().astimezone().date()  # trainings expire by the lab's calendar: the wall clock
        with self.usage.locked() as db:  # the telemetry thread shares the connection
            decision = access.check_access(db, hashed, d.config.node.machine, today)
        role: Role = "technician" if decision.role == access.TECHNICIAN else "member"
        member = MemberRef(decision.member_id, role, decision.name or "") \
            if decision.member_id is not None else None  # fmt: skip
        denial = None if decision.granted else decision.reason
        if denial is None and role != "technician":  # a directory unheard of too long: technicians only
            denial = self._directory_gate(d.wall())
        return BadgeTapped(now, hashed, member, denial)

    def _inbox_file_for(self, tap: BadgeTapped) -> Path | None:
        """The inbox file this tap offers the controller: a file waiting while the tapper's session is open.

        Whether it starts is the controller's decision; the session is looked at only to spare the
        reader's taps a folder listing when no file could start.
        """
        d = self.d
        session = self.controller.session
        if d.inbox is None or session is None or tap.member is None or tap.member.id != session.member.id:
            return None
        return d.inbox.next_file()
