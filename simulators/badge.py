"""Simulated badges: an in-process reader for tests and the demo, and an NFC tag for nfcpy's udp link.

`SimBadgeReader` is a peer of the real readers (start/stop, `on_badge(uid)` from its own thread,
`on_status("found"|"lost", detail)`), driven by `tap`, `place`/`remove` and `unplug`/`plug`.
`NfcTagEmulator` presents a FeliCa (NFC Forum Type 3) tag with a given IDm through nfcpy's `udp`
frontend, so that a reader opened on `udp:127.0.0.1:<port>` runs the real nfcpy discovery,
activation and presence checks against it.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def as_uid(uid: bytes | str) -> bytes:
    """Badge UIDs as bytes; text is hex ("04a2b3c4", "04:A2:B3:C4")."""
    if isinstance(uid, bytes):
        return uid
    return bytes.fromhex(uid.replace(":", "").replace(" ", ""))


class SimBadgeReader:
    """A badge reader in the process: what lies on it is what the test or demo says.

    Like a reader with a presence check, a badge that stays on the reader is reported once; it is
    reported again after it was removed, unless it comes back within `holdoff_s`.
    """

    def __init__(self, holdoff_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.holdoff_s = holdoff_s
        self._clock = clock
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._plugged = True
        self._on_field: bytes | None = None
        self._reported: bytes | None = None  # the badge last reported, while it is still on
        self._last_uid: bytes | None = None
        self._last_gone_at = float("-inf")
        self._callbacks: tuple[Callable[..., None], ...] = ()

    # -- the BadgeReader interface ----------------------------------------------------------------
    def start(
        self,
        on_badge: Callable[[bytes], None],
        on_status: Callable[[str, str], None] | None = None,
        on_leave: Callable[[bytes], None] | None = None,
    ) -> None:
        """Start the reader's thread ("badge-sim"); it reports "found" first if plugged in."""
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._callbacks = (on_badge, on_status or (lambda s, d: None), on_leave or (lambda uid: None))
        self._thread = threading.Thread(target=self._run, name="badge-sim", daemon=True)
        self._thread.start()
        self._events.put(("start", None))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread once it has handled what was already queued."""
        if self._thread is not None:
            self._events.put(("stop", None))
            self._thread.join(timeout)
            self._thread = None

    # -- the lab's side ---------------------------------------------------------------------------
    def tap(self, uid: bytes | str) -> None:
        """Hold a badge to the reader and take it away."""
        self.place(uid)
        self.remove()

    def place(self, uid: bytes | str) -> None:
        """Lay a badge on the reader (and leave it there)."""
        self._events.put(("place", as_uid(uid)))

    def remove(self) -> None:
        """Take the badge off the reader."""
        self._events.put(("remove", None))

    def unplug(self) -> None:
        """Pull the reader's cable."""
        self._events.put(("unplug", None))

    def plug(self) -> None:
        """Plug the reader back in."""
        self._events.put(("plug", None))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the reader's thread has handled everything asked so far."""
        done = threading.Event()
        self._events.put(("done", done))
        return done.wait(timeout)

    # -- the reader's thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            kind, value = self._events.get()
            if kind == "stop":
                return
            try:
                self._handle(kind, value)
            except Exception:
                log.exception("simulated reader: %s", kind)

    def _handle(self, kind: str, value: Any) -> None:
        on_badge, on_status, on_leave = self._callbacks
        if kind == "start" and self._plugged:
            on_status("found", "simulated reader")
        elif kind == "place":
            self._on_field = value
            self._sense(on_badge)
        elif kind == "remove":
            gone, self._on_field = self._on_field, None
            if gone is not None and self._reported == gone and self._plugged:
                self._reported, self._last_gone_at = None, self._clock()
                on_leave(gone)
        elif kind == "unplug" and self._plugged:
            self._plugged = False
            if self._reported is not None:  # the badge's fate is unknown from here: count it as gone
                self._reported, self._last_gone_at = None, self._clock()
            on_status("lost", "simulated reader unplugged")
        elif kind == "plug" and not self._plugged:
            self._plugged = True
            on_status("found", "simulated reader")
            self._sense(on_badge)
        elif kind == "done":
            value.set()

    def _sense(self, on_badge: Callable[[bytes], None]) -> None:
        uid = self._on_field
        if uid is None or not self._plugged or uid == self._reported:
            return
        again_too_soon = uid == self._last_uid and self._clock() - self._last_gone_at < self.holdoff_s
        self._reported, self._last_uid = uid, uid
        if not again_too_soon:
            on_badge(uid)


class NfcTagEmulator:
    """A FeliCa tag (Type 3) with IDm `uid` (8 bytes) on nfcpy's udp link at host:port.

    The emulator listens on the port (nfcpy's `connect(card=...)`); a reader opened on
    `udp:host:port` finds it and checks its presence by polling, which the listening tag answers.
    `stop()` takes the tag away (the reader's presence check then fails); `start()` brings it back.
    """

    PMM = bytes.fromhex("FFFFFFFFFFFFFFFF")  # no Sony IC code: readers treat it as a plain Type 3 Tag
    SYSTEM_CODE = bytes.fromhex("12FC")  # NFC Forum Type 3
    # One long listen: each new listen re-binds the socket, and a reader's poll sent in that gap is lost.
    LISTEN_S = 3600.0

    def __init__(self, host: str = "127.0.0.1", port: int = 54321, uid: bytes | str = b"\x01" * 8) -> None:
        self.host, self.port, self.uid = host, port, as_uid(uid)
        if len(self.uid) != 8:
            raise ValueError(f"a FeliCa IDm is 8 bytes, got {len(self.uid)}: {self.uid.hex()}")
        self.responses = 0  # frames the tag sent: answers to discovery and to presence polls
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Put the tag in the field (a thread runs nfcpy's card emulation)."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        import nfc  # deferred so that importing the simulators needs no nfcpy

        clf = nfc.ContactlessFrontend(f"udp:{self.host}:{self.port}")
        self._count_responses(clf.device)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(clf,), name="nfc-tag", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Take the tag out of the field."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError(f"tag emulator on port {self.port} did not stop in {timeout} s")
            self._wake_listener()
            self._thread.join(0.2)
        self._thread = None

    def wait(self, check: Callable[[NfcTagEmulator], bool], timeout: float = 10.0) -> bool:
        """Wait until `check(self)` holds (e.g. `lambda t: t.responses >= 10`)."""
        with self._cond:
            return self._cond.wait_for(lambda: check(self), timeout)

    def _run(self, clf: Any) -> None:
        options = {
            "on-startup": self._on_startup,
            "on-discover": lambda target: not self._stop.is_set(),
            "on-release": lambda tag: False,
            "timeout": self.LISTEN_S,
        }
        try:
            while not self._stop.is_set():
                clf.connect(card=options, terminate=self._stop.is_set)
        except Exception:
            log.exception("tag emulator on port %d", self.port)
        finally:
            clf.close()

    def _on_startup(self, target: Any) -> Any:
        target.brty = "212F"
        target.sensf_res = bytearray(b"\x01" + self.uid + self.PMM + self.SYSTEM_CODE)
        return target

    def _wake_listener(self) -> None:
        """End a listen or an exchange in progress so that connect() sees stop: an RF-off frame
        ends an exchange; a poll then a command to our IDm ends a listen (on-discover refuses it)."""
        command = bytes([10, 0x04]) + self.uid  # Request Response, addressed to this IDm
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for frame in (b"RFOFF", b"212F 0600ffff0100", b"212F " + command.hex().encode()):
                sock.sendto(frame, (self.host, self.port))

    def _count_responses(self, device: Any) -> None:
        send = device._send_data

        def counted(brty: str, data: Any, addr: Any) -> Any:
            result = send(brty, data, addr)
            with self._cond:
                self.responses += 1
                self._cond.notify_all()
            return result

        device._send_data = counted
