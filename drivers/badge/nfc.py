"""An nfcpy badge reader: `usb`, `usb:072f:2200` (ACR122U), `tty:AMA0:pn532` (PN532 on a UART),
`udp:host:port` (nfcpy's emulated link, which tests drive with simulators.badge.NfcTagEmulator).

One thread polls with `clf.connect(rdwr=...)`; a badge held on the reader is one tap, because
connect() only returns once nfcpy's presence check finds the tag gone. A reader that disappears
(unplugged, USB reset) is reopened with backoff, reported through on_status "lost" / "found".
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from drivers.badge.readers import Backoff, BadgeCallback, StatusCallback, TapFilter

log = logging.getLogger(__name__)

DEFAULT_TARGETS = ("106A", "212F", "424F")  # MIFARE/NTAG and FeliCa; 106B badges are rare in labs
MAX_CONSECUTIVE_ERRORS = 3  # unexpected errors in a row before the reader is reopened


def open_frontend(device: str) -> Any:
    """nfcpy's ContactlessFrontend on `device`; raises OSError (ENODEV) when none is there."""
    import nfc  # deferred: the daemon on a sim config never needs it

    return nfc.ContactlessFrontend(device)


class NfcReader:
    """Badge taps from an nfcpy reader, from the thread "badge-nfc"."""

    def __init__(
        self,
        device: str = "usb",
        *,
        holdoff_s: float = 0.5,
        targets: Sequence[str] = DEFAULT_TARGETS,
        sense_iterations: int = 2,
        sense_interval_s: float = 0.2,
        backoff: Backoff | None = None,
        opener: Callable[[str], Any] = open_frontend,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = device
        self._filter = TapFilter(holdoff_s)
        self._backoff = backoff or Backoff()
        self._opener = opener
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = 0
        self._rdwr = {
            "targets": list(targets),
            "iterations": sense_iterations,  # terminate() is checked after each round of these
            "interval": sense_interval_s,
            "beep-on-connect": False,  # the node's buzzer says granted or denied, not the reader
            "on-connect": self._on_connect,
            "on-release": self._on_release,
        }
        self._on_badge: BadgeCallback = lambda uid: None
        self._on_status: StatusCallback = lambda state, detail: None
        self._on_leave: BadgeCallback | None = None

    def start(
        self,
        on_badge: BadgeCallback,
        on_status: StatusCallback | None = None,
        on_leave: BadgeCallback | None = None,
    ) -> None:
        """Open the reader and poll for badges in a thread; callbacks run in that thread."""
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._on_badge, self._on_leave = on_badge, on_leave
        self._on_status = on_status or (lambda state, detail: None)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="badge-nfc", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling and close the reader (a sense round in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("nfc reader on %s did not stop within %.1f s", self.device, timeout)
            self._thread = None

    def _run(self) -> None:
        clf = None
        while not self._stop.is_set():
            if clf is None:
                clf = self._open()
                if clf is None:
                    self._stop.wait(self._backoff.next())
                    continue
            problem = self._poll(clf)
            if problem is not None and not self._stop.is_set():
                self._on_status("lost", f"{self.device}: {problem}")
                self._close(clf)
                clf = None
                self._stop.wait(self._backoff.next())
        if clf is not None:
            self._close(clf)

    def _open(self) -> Any:
        try:
            clf = self._opener(self.device)
        except (OSError, ValueError) as error:  # ValueError: a malformed device string
            log.debug("no reader on %s: %s", self.device, error)
            return None
        self._backoff.reset()
        self._errors = 0
        self._on_status("found", f"{self.device}: {clf}")
        return clf

    def _poll(self, clf: Any) -> str | None:
        """One connect() round; returns why the reader must be reopened, or None."""
        try:
            result = clf.connect(rdwr=self._rdwr, terminate=self._stop.is_set)
        except OSError as error:  # raised before connect()'s own handler: the device is gone
            return os.strerror(error.errno) if error.errno else str(error)
        except Exception as error:  # nfcpy errors outside its own handling: retry, up to a point
            self._errors += 1
            log.warning("nfc reader on %s: %r (%d in a row)", self.device, error, self._errors)
            return repr(error) if self._errors >= MAX_CONSECUTIVE_ERRORS else None
        if result is False:  # connect() caught an IOError: the device stopped answering
            return os.strerror(errno.EIO)
        self._errors = 0
        return None

    def _on_connect(self, tag: Any) -> bool:
        uid = bytes(tag.identifier)
        if self._filter.arrived(uid, self._clock()):
            try:
                self._on_badge(uid)
            except Exception:
                log.exception("on_badge callback")
        return True  # connect() then waits, checking presence, until the badge leaves

    def _on_release(self, tag: Any) -> bool:
        uid = bytes(tag.identifier)
        if self._stop.is_set():
            return True  # stopping while a badge lies on the reader: it has not left
        self._filter.left(uid, self._clock())
        if self._on_leave is not None:
            try:
                self._on_leave(uid)
            except Exception:
                log.exception("on_leave callback")
        return True

    @staticmethod
    def _close(clf: Any) -> None:
        try:
            clf.close()
        except Exception as error:  # closing a vanished USB device can fail in many ways
            log.debug("closing reader: %r", error)
