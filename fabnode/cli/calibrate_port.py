"""The firmware as calibration and `fabnode doctor` use it: one command at a time, each answer awaited.

`FirmwareChannel` sits on a drivers.streamer.Streamer (its on_event); `command()` sends a line and
waits for its CommandReply, `stream()` runs a short job to its end with a progress bar. Long waits
(M109, M303, G29) show the heaters' temperatures on stderr every few seconds. `DaemonChannel` is
the same for a node whose daemon holds the port (the `calibrate_command` verb, see the report).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from drivers.events import CommandReply, Temperatures
from drivers.serial_link import PortLost, SerialLink
from drivers.streamer import LinkLost, Progress, StreamEnded, Streamer
from fabnode.cli.console import format_temperatures
from fabnode.cli.firmware_link import make_protocol
from fabnode.cli.stream import ProgressBar
from fabnode.machine.profile import SAFE_NOW
from fabnode.node.control import ControlError, request
from fabnode.technician.calibrate import CalibrationError, JobResult, Reply

TEMPS_EVERY_S = 5.0
SAFE_STOP = SAFE_NOW


class NoAnswer(CalibrationError):
    """The firmware (or the daemon) did not answer in time."""


class PortGone(CalibrationError):
    """The serial port could not be opened or was lost."""


class MachineBusy(CalibrationError):
    """The daemon refused: a member's session or a job is open on the machine."""


class FirmwareChannel:
    """Commands and short jobs over one Streamer; give `on_event` to the Streamer, then `attach()` it."""

    def __init__(self, firmware: str, show_temperatures: bool = True) -> None:
        self.firmware = firmware
        self._cond = threading.Condition()
        self._replies: list[CommandReply] = []
        self._temps: Temperatures | None = None
        self._progress: Progress | None = None
        self._ended: StreamEnded | None = None
        self._lost: LinkLost | None = None
        self._show_temps = show_temperatures
        self._sent = 0  # commands sent; their replies are counted in _replies
        self.streamer: Streamer | None = None

    def on_event(self, event: object) -> None:
        """The streamer's callback (its thread): keep what the main thread waits for."""
        with self._cond:
            if isinstance(event, CommandReply):
                self._replies.append(event)
            elif isinstance(event, Temperatures):
                self._temps = event
            elif isinstance(event, Progress):
                self._progress = event
            elif isinstance(event, StreamEnded):
                self._ended = event
            elif isinstance(event, LinkLost):
                self._lost = event
            self._cond.notify_all()

    def attach(self, streamer: Streamer) -> FirmwareChannel:
        """Use this streamer (already connected)."""
        self.streamer = streamer
        return self

    def command(self, line: str, timeout_s: float) -> Reply:
        """Send `line`, return its reply; NoAnswer after timeout_s, PortGone when the port went."""
        streamer = self._need_streamer()
        with self._cond:
            seen = len(self._replies)
            self._sent += 1
        streamer.send_command(line)
        deadline = last_shown = time.monotonic()
        deadline += timeout_s
        with self._cond:
            while len(self._replies) <= seen:
                self._check_lost()
                now = time.monotonic()
                if now >= deadline:
                    raise NoAnswer(f"no answer to {line!r} within {timeout_s:g} s")
                if self._show_temps and self._temps is not None and now - last_shown >= TEMPS_EVERY_S:
                    last_shown = now  # long waits (M109, M303) show the heaters now and then
                    sys.stderr.write(f"  {format_temperatures(self._temps)}\n")
                self._cond.wait(min(deadline - now, TEMPS_EVERY_S))
            reply = self._replies[seen]
        return Reply(reply.lines, reply.ok)

    def stream(self, name: str, lines: tuple[str, ...], timeout_s: float) -> JobResult:
        """Run a job to its end (cancelled safely after timeout_s), with a progress bar on stderr."""
        streamer = self._need_streamer()
        with self._cond:
            self._ended, self._progress = None, None
        streamer.start_job(list(lines), name=name)
        bar = ProgressBar(sys.stderr)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._ended is None and self._lost is None:
                if time.monotonic() >= deadline:
                    streamer.cancel(f"no end within {timeout_s:g} s")
                    deadline = float("inf")
                self._cond.wait(0.2)
                bar.update(self._progress)
            ended = self._ended
        bar.update(self._progress, force=True)
        bar.finish()
        if ended is None:
            self._check_lost()
            raise PortGone("the port was lost during the job")
        return JobResult(ended.status == "completed", ended.reason)

    def make_safe(self, timeout_s: float = 5.0) -> None:
        """After Ctrl-C: stop a job safely, end a heat wait, heaters / beam off (best effort)."""
        streamer = self.streamer
        if streamer is None or self._lost is not None:
            return
        if streamer.job_active:
            streamer.cancel("interrupted with Ctrl-C")
            with self._cond:
                self._cond.wait_for(lambda: self._ended is not None or self._lost is not None, timeout_s * 2)
        lines = SAFE_STOP.get(self.firmware, ())
        with self._cond:
            self._sent += len(lines)
        for line in lines:  # Marlin's emergency parser acts on M108 at once, even inside M109/M190
            streamer.send_command(line)
        with self._cond:  # every reply, the interrupted command's included, before the port closes
            self._cond.wait_for(lambda: len(self._replies) >= self._sent or self._lost is not None, timeout_s)

    def close(self) -> None:
        """Close the streamer and its port."""
        if self.streamer is not None:
            self.streamer.close()

    def _need_streamer(self) -> Streamer:
        if self.streamer is None:
            raise RuntimeError("FirmwareChannel used before attach()")
        return self.streamer

    def _check_lost(self) -> None:
        if self._lost is not None:
            raise PortGone(f"serial port {self._lost.port} lost: {self._lost.reason}")


def open_channel(port: str, baud: int, firmware: str, greeting_timeout_s: float,
                 show_temperatures: bool = False) -> tuple[FirmwareChannel, bool]:
    """Open the port without giving up on a silent board: (channel, greeted). PortGone if it won't open."""
    channel = FirmwareChannel(firmware, show_temperatures)
    try:
        streamer = Streamer(SerialLink(port, baud), make_protocol(firmware), channel.on_event)
    except PortLost as exc:
        raise PortGone(f"cannot open {port}: {exc.reason}") from None
    greeted = streamer.wait_ready(greeting_timeout_s)
    return channel.attach(streamer), greeted


class DaemonChannel:
    """Calibration commands through the daemon that holds the port (`calibrate_command` verb)."""

    def __init__(self, socket_path: Path, firmware: str) -> None:
        self.socket_path = socket_path
        self.firmware = firmware

    def command(self, line: str, timeout_s: float) -> Reply:
        """Ask the daemon to send one line and hand back the firmware's reply."""
        message = {"cmd": "calibrate_command", "line": line, "timeout_s": timeout_s}
        try:
            answer: dict[str, Any] = request(self.socket_path, message, timeout=timeout_s + 5.0)
        except ControlError as exc:
            raise NoAnswer(str(exc)) from None
        if not answer.get("ok"):
            error = str(answer.get("error", "no reason given"))
            if answer.get("busy"):
                raise MachineBusy(error)
            if answer.get("port_lost"):
                raise PortGone(error)
            if answer.get("no_answer"):
                raise NoAnswer(error)
            raise CalibrationError(
                f"the fabnode daemon runs and holds the serial port, and it did not pass {line!r} on "
                f"({answer.get('error', 'no reason given')}): stop it (sudo systemctl stop fabnode) and "
                "calibrate on the port")
        lines = answer.get("lines")
        text = tuple(str(x) for x in lines) if isinstance(lines, list) else ()
        return Reply(text, bool(answer.get("reply_ok")))

    def stream(self, name: str, lines: tuple[str, ...], timeout_s: float) -> JobResult:
        """Not offered by the daemon yet."""
        raise CalibrationError("the fabnode daemon holds the serial port and cannot stream a test job for "
                               "calibration yet: stop it (sudo systemctl stop fabnode) and run again")

    def make_safe(self, timeout_s: float = 5.0) -> None:
        """After Ctrl-C: heat wait ended, heaters / beam off, past the daemon's queue (best effort)."""
        for line in SAFE_STOP.get(self.firmware, ()):
            message = {"cmd": "calibrate_command", "line": line, "timeout_s": timeout_s, "urgent": True}
            try:
                request(self.socket_path, message, timeout=timeout_s + 5.0)
            except ControlError:
                return

    def close(self) -> None:
        """Nothing to close: each request is its own connection."""
