"""The badge reader's and the firmware port's comings and goings: logged once, recorded, shown in status.

A reader unplugged, or the firmware's USB cable pulled, is an event the lab wants to know about, not a
reason to stop: the daemon keeps running, the reader reopens itself (with backoff) and the daemon
reopens the port by the same path every `[serial] reconnect_every_s`. Each loss is a fault row
(`reader_lost`, `port_lost`) and each return one more (`reader_back`, `port_back`, with how long it was
away), written through the storage guard, so a full disk delays them but does not lose them.
Used from the daemon's controller thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fabnode.node.logsafe import shown
from fabnode.node.ports import JsonObject, Link

log = logging.getLogger("fabnode.daemon")


class PartsHealth:
    """Whether the reader and the firmware's port are there, since when, and how often they went."""

    def __init__(self, link: Link, record_fault: Callable[[str, str], None]) -> None:
        self.d = link
        self.parts = link.parts
        self._record = record_fault  # through the storage guard: a full disk delays the row, never loses it
        self.reader_present: bool | None = None  # None: the reader has not said yet
        self.reader_detail = ""
        self.reader_since: float | None = None
        self.reader_losses = 0
        self.port_lost_at: float | None = None
        self.port_reason = ""
        self.port_losses = 0
        self.port_reconnects = 0
        self._port_waiting_logged = False

    # --- the badge reader -------------------------------------------------------------------------

    def reader_status(self, state: str, detail: str, now: float) -> None:
        """The reader said "found" or "lost" (from its own thread, posted to the controller thread)."""
        was = self.reader_present
        present = state == "found"
        if present == was:
            return
        self.reader_present, self.reader_detail, self.reader_since = present, detail, now
        if not present:
            self.reader_losses += 1
            log.warning("badge reader lost: %s (the daemon runs on; it reopens by itself)", shown(detail))
            self._record("reader_lost", detail)
        elif was is False:
            log.warning("badge reader back: %s", shown(detail))
            self._record("reader_back", detail)
        else:
            log.info("badge reader ready: %s", shown(detail))

    def reader_snapshot(self, now: float) -> JsonObject:
        """What `fabnode status` shows under `reader`."""
        since = None if self.reader_since is None else round(now - self.reader_since, 1)
        return {"backend": self.d.config.reader.backend, "present": self.reader_present,
                "detail": self.reader_detail, "since_s": since, "losses": self.reader_losses}  # fmt: skip

    # --- the firmware's port ----------------------------------------------------------------------

    def port_lost(self, reason: str, now: float) -> None:
        """The open port failed (the streamer said so)."""
        if self.port_lost_at is not None:
            return
        self.port_lost_at, self.port_reason = now, reason
        self.port_losses += 1
        self._port_waiting_logged = False
        every = self.d.config.serial.reconnect_every_s
        log.error("firmware port %s lost: %s (the daemon runs on; reopening it every %g s)",
                  self.parts.port, shown(reason), every)  # fmt: skip
        self._record("port_lost", f"{self.parts.port}: {reason}")

    def port_absent(self, reason: str, now: float) -> None:
        """Opening the port failed: at start-up, or while waiting for it to come back (logged once)."""
        if self.port_lost_at is None:
            self.port_lost_at, self.port_reason = now, reason
        if not self._port_waiting_logged:
            self._port_waiting_logged = True
            every = self.d.config.serial.reconnect_every_s
            log.warning("firmware port %s: %s (trying again every %g s)", self.parts.port, shown(reason),
                        every)

    def port_open(self, now: float) -> bool:
        """The port opened; True when it had been lost (a reconnection)."""
        lost_at, self.port_lost_at = self.port_lost_at, None
        self._port_waiting_logged = False
        if lost_at is None:
            log.info("firmware port %s open", self.parts.port)
            return False
        away = now - lost_at
        if self.port_losses == 0:  # absent at start-up, never open before
            log.info("firmware port %s open (after %.1f s)", self.parts.port, away)
            return False
        self.port_reconnects += 1
        log.warning("firmware port %s back after %.1f s: reconnected", self.parts.port, away)
        self._record("port_back", f"{self.parts.port}: back after {away:.1f} s")
        return True

    def port_snapshot(self, now: float) -> JsonObject:
        """What `fabnode status` shows under `port`."""
        streamer = self.d.streamer
        lost_for = None if self.port_lost_at is None else round(now - self.port_lost_at, 1)
        return {"path": self.parts.port, "baud": self.parts.baud,
                "open": streamer is not None and streamer.lost is None,
                "lost_s": lost_for, "reason": self.port_reason if lost_for is not None else None,
                "losses": self.port_losses, "reconnects": self.port_reconnects}  # fmt: skip
