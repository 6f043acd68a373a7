"""`fabnode console`: type commands to the firmware, see its answers and its own messages as they come.

For GRBL, a line holding only `?`, `!` or `~` is sent as that real-time byte, and `ctrl-x` (or `^X`)
as the soft reset 0x18. The console ends on end of input or `exit`, after the answers still due.
"""

from __future__ import annotations

import sys
import threading

import typer

from drivers.events import (
    AlarmRaised,
    CommandReply,
    FirmwareBusy,
    FirmwareMessage,
    FirmwareReady,
    HostActionRequested,
    StatusReport,
    Temperatures,
)
from drivers.streamer import LinkLost, Streamer
from fabnode.cli.stream import EXIT_CODES, FIRMWARES, connect, make_protocol

GRBL_REALTIME = {"?": "?", "!": "!", "~": "~", "ctrl-x": "\x18", "^x": "\x18", "\x18": "\x18"}


def format_temperatures(event: Temperatures) -> str:
    """`T:210.0 /210.0 B:60.0 /60.0`, as Marlin prints them."""
    parts = []
    for name, (actual, target) in event.readings.items():
        parts.append(f"{name}:{actual:.1f}" + ("" if target is None else f" /{target:.1f}"))
    return " ".join(parts)


def format_status(event: StatusReport) -> str:
    """The status report as GRBL printed it."""
    return "<" + "|".join([event.state, *(f"{k}:{v}" for k, v in event.fields.items())]) + ">"


class ConsoleOutput:
    """Prints what the firmware says (called on the streamer's thread) and counts answers still due."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._due = 0
        self._shown: list[str] = []  # messages printed while a command waited: not repeated in its reply
        self.lost: LinkLost | None = None

    def expect_answer(self) -> None:
        """One more command waits for its answer."""
        with self._lock:
            self._due += 1

    def wait_answers(self, timeout_s: float) -> bool:
        """Wait until every command was answered (or the port was lost); False after timeout_s."""
        with self._lock:
            return self._lock.wait_for(lambda: self._due <= 0 or self.lost is not None, timeout_s)

    def __call__(self, event: object) -> None:
        with self._lock:
            text = self._text(event)
            if text is not None:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            self._lock.notify_all()

    def _text(self, event: object) -> str | None:
        if isinstance(event, CommandReply):
            self._due -= 1
            fresh = [line for line in event.lines if not self._already_shown(line)]
            self._shown.clear()
            return "\n".join(fresh) if fresh else None
        if isinstance(event, FirmwareMessage | FirmwareBusy | FirmwareReady):
            if self._due > 0:
                self._shown.append(event.text)
            return event.text
        if isinstance(event, Temperatures):
            # While a command waits, its reply carries the temperatures line itself.
            return format_temperatures(event) if self._due <= 0 else None
        if isinstance(event, StatusReport):
            return format_status(event)
        if isinstance(event, AlarmRaised):
            return f"ALARM:{event.code} ({event.meaning})"
        if isinstance(event, HostActionRequested):
            return f"// the printer asks the host to {event.action}"
        if isinstance(event, LinkLost):
            self.lost = event
            return f"fabnode: serial port {event.port} lost: {event.reason}"
        return None

    def _already_shown(self, line: str) -> bool:
        if line in self._shown:
            self._shown.remove(line)
            return True
        return False


def send_line(streamer: Streamer, output: ConsoleOutput, firmware: str, line: str) -> None:
    """Send one typed line: GRBL real-time bytes as they are, anything else as a command."""
    realtime = GRBL_REALTIME.get(line.lower()) if firmware == "grbl" else None
    if realtime is not None:
        streamer.send_command(realtime)  # the protocol sends it as one byte, outside its count
        return
    output.expect_answer()
    streamer.send_command(line)


def console(
    port: str = typer.Option(..., "--port", help="Serial port path or pyserial URL."),
    firmware: str = typer.Option(..., "--firmware", help="marlin or grbl."),
    baud: int = typer.Option(115200, "--baud", help="Baud rate."),
    greeting_timeout: float = typer.Option(
        3.0, "--greeting-timeout", help="Seconds to wait for the board's greeting after opening the port."),
    reply_timeout: float = typer.Option(
        10.0, "--reply-timeout", help="At the end, wait this long for answers still due."),
) -> None:
    """Read commands from stdin, send each, print the firmware's answers; `exit` or end of input quits."""
    if firmware not in FIRMWARES:
        raise typer.BadParameter(f"use one of {', '.join(FIRMWARES)}", param_hint="--firmware")
    output = ConsoleOutput()
    streamer = connect(port, baud, make_protocol(firmware), firmware, output, greeting_timeout)
    try:
        for raw in sys.stdin:
            line = raw.strip(" \t\r\n")
            if line.lower() in ("exit", "quit"):
                break
            if line:
                send_line(streamer, output, firmware, line)
            if output.lost is not None:
                break
        answered = output.wait_answers(reply_timeout)
    finally:
        streamer.close()
    if output.lost is not None:
        raise typer.Exit(EXIT_CODES["port_lost"])
    if not answered:
        typer.echo(f"fabnode: no answer within {reply_timeout:g} s to the last command(s)", err=True)
        raise typer.Exit(EXIT_CODES["no_answer"])


def register(app: typer.Typer) -> None:
    """Add `console` to the app."""
    app.command("console")(console)
