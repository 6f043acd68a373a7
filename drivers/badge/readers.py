"""Badge readers: each runs its own thread and hands badge UIDs (bytes) to `on_badge(uid)`.

Backends: `drivers.badge.nfc.NfcReader` (nfcpy: USB PN533/ACR122U, PN532 on a UART, `udp:` for
tests), `KeyboardWedgeReader` here (125 kHz readers that type the UID and Enter), and
`simulators.badge.SimBadgeReader`. A badge held on the reader is one tap; `on_status(state, detail)`
reports "found" and "lost" as a reader comes and goes, so the daemon can log it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import IO, Literal, Protocol

log = logging.getLogger(__name__)

BadgeCallback = Callable[[bytes], None]
StatusCallback = Callable[[str, str], None]  # ("found" | "lost", detail for the log)
UidFormat = Literal["auto", "hex", "decimal"]


class BadgeReader(Protocol):
    """What the daemon needs from any badge reader."""

    def start(
        self,
        on_badge: BadgeCallback,
        on_status: StatusCallback | None = None,
        on_leave: BadgeCallback | None = None,
    ) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class TapFilter:
    """Turns sightings of badges into taps. Sans-I/O: pass `now`.

    A badge is reported when it arrives; while it stays (or comes back within `holdoff_s` of last
    being seen, as a badge wobbling at the edge of the field does) it is the same tap.
    """

    def __init__(self, holdoff_s: float) -> None:
        self.holdoff_s = holdoff_s
        self._uid: bytes | None = None
        self._present = False
        self._last_seen = 0.0

    def arrived(self, uid: bytes, now: float) -> bool:
        """A badge is in the field; True when this is a new tap to report."""
        repeat = uid == self._uid and (self._present or now - self._last_seen < self.holdoff_s)
        self._uid, self._present, self._last_seen = uid, True, now
        return not repeat

    def left(self, uid: bytes, now: float) -> None:
        """The badge left the field (or a reader that cannot tell presence saw it once)."""
        if uid == self._uid:
            self._present, self._last_seen = False, now


class Backoff:
    """Delays between attempts to reopen a lost reader: doubling from `first_s` up to `max_s`."""

    def __init__(self, first_s: float = 0.5, max_s: float = 10.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self._next = first_s

    def next(self) -> float:
        """The delay to wait now; the following one is longer."""
        delay, self._next = self._next, min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """The reader is back: start from `first_s` next time."""
        self._next = self.first_s


def parse_uid(text: str, fmt: UidFormat = "auto") -> bytes:
    """A UID as a wedge reader types it: hex ("04A2B3C4", "04:a2:b3:c4") or decimal ("0012345678").

    `auto` takes digits-only text as decimal, anything with a-f as hex; the same card always
    types the same text, so it always gives the same bytes.
    """
    cleaned = "".join(ch for ch in text.strip() if ch not in " :-")
    if not cleaned:
        raise ValueError("empty badge UID")
    if fmt == "decimal" or (fmt == "auto" and cleaned.isdigit()):
        if not cleaned.isdigit():
            raise ValueError(f"badge UID {text.strip()!r} is not decimal")
        number = int(cleaned)
        return number.to_bytes(max(4, (number.bit_length() + 7) // 8), "big")
    try:
        return bytes.fromhex(cleaned if len(cleaned) % 2 == 0 else "0" + cleaned)
    except ValueError:
        raise ValueError(f"badge UID {text.strip()!r} is neither hex nor decimal") from None


class KeyboardWedgeReader:
    """A reader that types one UID per line into a stream: a tty, a FIFO or a pipe.

    With a path, the reader is reopened (with backoff) after it goes away; with an open stream,
    end of input reports "lost" and the thread ends.
    """

    def __init__(
        self,
        source: str | IO[bytes] | IO[str],
        *,
        fmt: UidFormat = "auto",
        holdoff_s: float = 1.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._fmt = fmt
        self._filter = TapFilter(holdoff_s)
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(
        self,
        on_badge: BadgeCallback,
        on_status: StatusCallback | None = None,
        on_leave: BadgeCallback | None = None,
    ) -> None:
        """Start reading in a thread named "badge-wedge"."""
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._stop.clear()
        args = (on_badge, on_status or (lambda state, detail: None))
        self._thread = threading.Thread(target=self._run, args=args, name="badge-wedge", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (within ~0.2 s) and close what it opened."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, on_badge: BadgeCallback, on_status: StatusCallback) -> None:
        name = self._source if isinstance(self._source, str) else getattr(self._source, "name", "stream")
        while not self._stop.is_set():
            fd = self._open()
            if fd is None:
                self._stop.wait(self._backoff.next())
                continue
            self._backoff.reset()
            on_status("found", f"keyboard wedge on {name}")
            reason = self._read_lines(fd, on_badge)
            if isinstance(self._source, str):
                with contextlib.suppress(OSError):
                    os.close(fd)
            if self._stop.is_set():
                return
            on_status("lost", f"keyboard wedge on {name}: {reason}")
            if not isinstance(self._source, str):
                return  # an open stream cannot be reopened
            self._stop.wait(self._backoff.next())

    def _open(self) -> int | None:
        if not isinstance(self._source, str):
            return self._source.fileno()
        try:
            return os.open(self._source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as error:
            log.debug("cannot open %s: %s", self._source, error)
            return None

    def _read_lines(self, fd: int, on_badge: BadgeCallback) -> str:
        """Read until the stream ends or stop(); returns why it ended."""
        pending = b""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
                chunk = os.read(fd, 256) if ready else None
            except BlockingIOError:
                continue
            except OSError as error:
                return str(error)
            if chunk == b"":
                return "end of input"
            pending += chunk or b""
            *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
            for line in lines:
                self._line(line.decode("ascii", "replace"), on_badge)
        return "stopped"

    def _line(self, line: str, on_badge: BadgeCallback) -> None:
        if not line.strip():
            return
        try:
            uid = parse_uid(line, self._fmt)
        except ValueError as error:
            log.warning("keyboard wedge: %s", error)
            return
        now = self._clock()
        new = self._filter.arrived(uid, now)
        self._filter.left(uid, now)  # a wedge cannot tell presence: the hold-off alone merges repeats
        if new:
            try:
                on_badge(uid)
            except Exception:
                log.exception("on_badge callback")
