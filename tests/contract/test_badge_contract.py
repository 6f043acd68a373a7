"""One contract for badge readers, run over every backend present.

- `sim`: simulators.badge.SimBadgeReader.
- `nfc-udp`: drivers.badge.nfc.NfcReader on nfcpy's `udp` frontend, reading a FeliCa tag that
  simulators.badge.NfcTagEmulator presents on a free local port: the real nfcpy discovery,
  activation and presence checks. "Unplugging" closes the real nfcpy frontend under the reader (as a
  vanished USB device does) and refuses to reopen it until "plugged" back.
- `wedge`: drivers.badge.readers.KeyboardWedgeReader on a FIFO; the test types the UIDs into it, closing
  the FIFO is unplugging. Its clock is the test's, so its hold-off is crossed without sleeping.
nfcpy's emulated link sometimes stalls 1-2 s while the emulator re-binds: every wait is on an
event, with generous timeouts.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.badge.nfc import NfcReader, open_frontend
from drivers.badge.readers import Backoff, KeyboardWedgeReader
from simulators.badge import NfcTagEmulator, SimBadgeReader

pytestmark = pytest.mark.timeout(60)

BADGE_A = bytes.fromhex("01A2B3C4D5E6F708")  # 8 bytes: a FeliCa IDm; hex letters so a wedge types hex
BADGE_B = bytes.fromhex("0BADCAFE12345678")
WAIT_S = 15.0


class Seen:
    """What the reader reported, with waits on it."""

    def __init__(self) -> None:
        self.badges: list[bytes] = []
        self.left: list[bytes] = []
        self.status: list[str] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def on_badge(self, uid: bytes) -> None:
        with self._cond:
            self.badges.append(uid)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def on_leave(self, uid: bytes) -> None:
        with self._cond:
            self.left.append(uid)
            self._cond.notify_all()

    def on_status(self, state: str, detail: str) -> None:
        with self._cond:
            self.status.append(state)
            self._cond.notify_all()

    def wait(self, check: Callable[[Seen], bool], what: str) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: check(self), WAIT_S), f"{what}: {vars(self)}"


class SimRig:
    holdoff_s = 0.0

    def __init__(self, tmp_path: Path) -> None:
        self.reader = SimBadgeReader(holdoff_s=self.holdoff_s)

    def hold(self, uid: bytes, seen: Seen) -> None:
        self.reader.place(uid)
        self.reader.place(uid)  # still there on the next sweep of the field
        assert self.reader.wait_idle()

    def release(self, seen: Seen) -> None:
        self.reader.remove()
        assert self.reader.wait_idle()

    def unplug(self) -> None:
        self.reader.unplug()

    def plug(self) -> None:
        self.reader.plug()

    def close(self) -> None:
        pass


class NfcUdpRig:
    def __init__(self, tmp_path: Path) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.unplugged = False
        self.frontends: list[Any] = []
        self.tag: NfcTagEmulator | None = None
        # A presence poll that the loaded machine answers late looks like the badge leaving and
        # coming back, as a badge wobbling at the edge of a real field does: the hold-off merges
        # them. Its clock is the test's, moved on only when the test takes the badge away.
        self.now = 100.0
        self.reader = NfcReader(
            f"udp:127.0.0.1:{self.port}",
            holdoff_s=1.0,
            clock=lambda: self.now,
            targets=("212F",),
            sense_iterations=1,
            backoff=Backoff(0.05, 0.2),
            opener=self._open,
        )

    def _open(self, device: str) -> Any:
        if self.unplugged:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        clf = open_frontend(device)
        self.frontends.append(clf)
        return clf

    def hold(self, uid: bytes, seen: Seen) -> None:
        self.tag = NfcTagEmulator("127.0.0.1", self.port, uid)
        self.tag.start()
        # Discovery then presence polls answered: the reader found the badge and kept seeing it.
        assert self._presence_checks(10), "the reader did not find the tag, or stopped polling it"

    def _presence_checks(self, count: int) -> bool:
        assert self.tag is not None
        after = self.tag.responses + count
        return self.tag.wait(lambda t: t.responses >= after, WAIT_S)

    def release(self, seen: Seen) -> None:
        assert self.tag is not None
        gone = len(seen.left)
        self.tag.stop()
        self.tag = None
        seen.wait(lambda s: len(s.left) > gone, "the reader noticed the badge left")
        self.now += 1.0

    def unplug(self) -> None:
        self.unplugged = True
        self.frontends[-1].close()

    def plug(self) -> None:
        self.unplugged = False

    def close(self) -> None:
        if self.tag is not None:
            self.tag.stop()


class WedgeRig:
    holdoff_s = 1.0

    def __init__(self, tmp_path: Path) -> None:
        self.fifo = tmp_path / "wedge"
        os.mkfifo(self.fifo)
        self.now = 100.0
        self.lines_read = 0  # the reader asks the clock once per UID line it reads
        self._cond = threading.Condition()
        self.reader = KeyboardWedgeReader(
            str(self.fifo), holdoff_s=self.holdoff_s, backoff=Backoff(0.02, 0.1), clock=self._clock
        )
        self.fd: int | None = None

    def _clock(self) -> float:
        with self._cond:
            self.lines_read += 1
            self._cond.notify_all()
            return self.now

    def plug(self) -> None:
        retry = threading.Event()
        while self.fd is None:  # a FIFO opens for writing once the reader has it open
            try:
                self.fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                assert error.errno == errno.ENXIO
                retry.wait(0.01)

    def hold(self, uid: bytes, seen: Seen) -> None:
        if self.fd is None:
            self.plug()
        assert self.fd is not None
        with self._cond:
            target = self.lines_read + 3
        for _ in range(3):  # a 125 kHz reader types a held card again and again
            os.write(self.fd, uid.hex().upper().encode() + b"\r\n")
        with self._cond:
            assert self._cond.wait_for(lambda: self.lines_read >= target, WAIT_S)

    def release(self, seen: Seen) -> None:
        self.now += self.holdoff_s  # silence for the hold-off: the card is gone

    def unplug(self) -> None:
        assert self.fd is not None
        os.close(self.fd)
        self.fd = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


RIGS = {"sim": SimRig, "nfc-udp": NfcUdpRig, "wedge": WedgeRig}


@pytest.fixture(params=list(RIGS))
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    made = RIGS[request.param](tmp_path)
    made.kind = request.param
    try:
        yield made
    finally:
        made.reader.stop()
        made.close()


def started(rig: Any) -> Seen:
    seen = Seen()
    rig.reader.start(seen.on_badge, seen.on_status, seen.on_leave)
    seen.wait(lambda s: s.status[-1:] == ["found"], "reader found at start")
    return seen


def held_taps(seen: Seen, uid: bytes) -> int:
    return seen.badges.count(uid)


def test_a_held_badge_is_one_tap(rig: Any) -> None:
    seen = started(rig)
    rig.hold(BADGE_A, seen)
    seen.wait(lambda s: BADGE_A in s.badges, "badge A read")
    assert held_taps(seen, BADGE_A) == 1
    assert seen.threads and "MainThread" not in seen.threads


def test_a_badge_taken_away_and_back_is_a_second_tap(rig: Any) -> None:
    seen = started(rig)
    rig.hold(BADGE_A, seen)
    rig.release(seen)
    rig.hold(BADGE_A, seen)
    seen.wait(lambda s: s.badges.count(BADGE_A) == 2, "badge A read twice")
    assert seen.badges.count(BADGE_A) == 2


def test_two_badges_are_two_taps_in_order(rig: Any) -> None:
    seen = started(rig)
    rig.hold(BADGE_A, seen)
    rig.release(seen)
    rig.hold(BADGE_B, seen)
    seen.wait(lambda s: BADGE_B in s.badges, "badge B read")
    assert [uid for uid in seen.badges if uid in (BADGE_A, BADGE_B)][:2] == [BADGE_A, BADGE_B]


def test_reader_lost_and_found_again_without_restart(rig: Any) -> None:
    seen = started(rig)
    if rig.kind == "wedge":
        rig.plug()  # the typist's end of the FIFO, so that closing it is an unplug
    rig.unplug()
    seen.wait(lambda s: "lost" in s.status, "reader lost")
    rig.plug()
    seen.wait(lambda s: s.status[-2:] == ["lost", "found"], "reader found again")
    rig.hold(BADGE_A, seen)
    seen.wait(lambda s: BADGE_A in s.badges, "a badge read after the reader came back")
    assert seen.status[:3] == ["found", "lost", "found"]
