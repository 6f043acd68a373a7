"""`fabnode console`: type commands to the firmware, see its answers and its own messages as they come.

A banner names the port, the firmware and its version, and how to quit. Each command waits (bounded by
--timeout) for its answer before the next is sent, so answers follow their commands and real-time bytes
never jump ahead of lines typed before them. On a terminal there is a prompt with readline history.
For GRBL, a line holding only `?`, `!` or `~` is sent as that real-time byte, and `ctrl-x` (or `^X`)
as the soft reset 0x18; `error:N` and `ALARM:N` are shown with their meaning. The console ends on end
of input or `exit`, after the answers still due; it exits 1 when the last command was refused.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer

from fabnode.cli import exits
from fabnode.cli.firmware_link import check_firmware, connect, make_protocol

if TYPE_CHECKING:
    from drivers.events import StatusReport, Temperatures
    from drivers.streamer import LinkLost, Streamer

GRBL_REALTIME = {"?": "?", "!": "!", "~": "~", "ctrl-x": "\x18", "^x": "\x18", "\x18": "\x18"}
_GRBL_ERROR = re.compile(r"^error:\s*\d+\s*$")
_GRBL_ALARM = re.compile(r"^ALARM:\s*\d+\s*$")
_MARLIN_NAME = re.compile(r"FIRMWARE_NAME:\s*(.+?)(?:\s+\(|\s+SOURCE_CODE_URL|\s+PROTOCOL_VERSION|$)")
QUIT_WORDS = ("exit", "quit")


def format_temperatures(event: Temperatures) -> str:
    """`T:210.0 /210.0 B:60.0 /60.0`, as Marlin prints them."""
    parts = []
    for name, (actual, target) in event.readings.items():
        parts.append(f"{name}:{actual:.1f}" + ("" if target is None else f" /{target:.1f}"))
    return " ".join(parts)


def format_status(event: StatusReport) -> str:
    """The status report as GRBL printed it."""
    return "<" + "|".join([event.state, *(f"{k}:{v}" for k, v in event.fields.items())]) + ">"


def explain_line(line: str) -> str:
    """`error:2` -> `error:2 (missing G-code word value, ...)`, `ALARM:1` likewise; others as they are."""
    if _GRBL_ERROR.match(line):
        from drivers.grbl.codes import describe_error

        return f"{line} ({describe_error(line)[1]})"
    if _GRBL_ALARM.match(line):
        from drivers.grbl.codes import describe_alarm

        return f"{line} ({describe_alarm(line)[1]})"
    return line


class ConsoleOutput:
    """Prints what the firmware says (called on the streamer's thread) and counts answers still due.

    A reply nobody asked for (the answer to the connection's own probe) is not printed: it would
    shift every later answer by one. A quiet command's reply is kept, not printed (the banner's M115).
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._pending: deque[tuple[str | None, bool]] = deque()  # (command, quiet), oldest first
        self._shown: list[str] = []  # messages printed while a command waited: not repeated in its reply
        self.lost: LinkLost | None = None
        self.greeting: str | None = None
        self.quiet_replies: list[tuple[str, ...]] = []
        self.last_ok: bool | None = None  # how the last command (not a quiet one) was answered
        self.status_reports = 0

    def expect_answer(self, command: str | None = None, quiet: bool = False) -> None:
        """One more command waits for its answer."""
        with self._lock:
            self._pending.append((command, quiet))

    @property
    def due(self) -> int:
        """Commands still waiting for their answer."""
        with self._lock:
            return len(self._pending)

    def wait_answers(self, timeout_s: float) -> bool:
        """Wait until every command was answered (or the port was lost); False after timeout_s."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending or self.lost is not None, timeout_s)

    def wait_status_after(self, seen: int, timeout_s: float) -> bool:
        """Wait for a status report after the `seen`-th (the answer to a `?`); False after timeout_s."""
        with self._lock:
            return self._lock.wait_for(lambda: self.status_reports > seen or self.lost is not None, timeout_s)

    def wait_greeting(self, timeout_s: float) -> str | None:
        """The board's greeting, waiting up to timeout_s for it (the ready flag can beat its event)."""
        with self._lock:
            self._lock.wait_for(lambda: self.greeting is not None, timeout_s)
            return self.greeting

    def echo(self, text: str) -> None:
        """Print a line of ours (the command being sent) between the firmware's, never inside one."""
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def __call__(self, event: object) -> None:
        with self._lock:
            text = self._text(event)
            if text is not None:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            self._lock.notify_all()

    def _text(self, event: object) -> str | None:
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
        from drivers.streamer import LinkLost

        if isinstance(event, CommandReply):
            return self._reply(event.command, event.lines, event.ok)
        if isinstance(event, FirmwareReady) and self.greeting is None:
            self.greeting = event.text
        if isinstance(event, FirmwareMessage | FirmwareBusy | FirmwareReady):
            if self._pending and self._pending[0][1]:
                return None  # part of a quiet command's answer
            if self._pending:
                self._shown.append(event.text)
            return event.text
        if isinstance(event, Temperatures):
            # While a command waits, its reply carries the temperatures line itself.
            return format_temperatures(event) if not self._pending else None
        if isinstance(event, StatusReport):
            self.status_reports += 1
            return format_status(event)
        if isinstance(event, AlarmRaised):
            return f"ALARM:{event.code} ({event.meaning})"
        if isinstance(event, HostActionRequested):
            return f"// the printer asks the host to {event.action}"
        if isinstance(event, LinkLost):
            self.lost = event
            return f"{exits.PREFIX}serial port {event.port} lost: {event.reason}"
        return None

    def _reply(self, command: str, lines: tuple[str, ...], ok: bool) -> str | None:
        if not self._pending:
            return None  # the answer to the connection's probe, not to a command of ours
        waiting, quiet = self._pending[0]
        if waiting and command and _first_word(waiting) != _first_word(command):
            return None  # the probe's answer, late (it went while the board booted): not this command's
        self._pending.popleft()
        if quiet:
            self.quiet_replies.append(lines)
            return None
        self.last_ok = ok
        fresh = [explain_line(line) for line in lines if not self._already_shown(line)]
        self._shown.clear()
        return "\n".join(fresh) if fresh else None

    def _already_shown(self, line: str) -> bool:
        if line in self._shown:
            self._shown.remove(line)
            return True
        return False


def send_line(streamer: Streamer, output: ConsoleOutput, firmware: str, line: str) -> bool:
    """Send one typed line: GRBL real-time bytes as they are, anything else as a command.

    True when an answer is due (a command), False for a real-time byte.
    """
    realtime = GRBL_REALTIME.get(line.lower()) if firmware == "grbl" else None
    if realtime is not None:
        streamer.send_command(realtime)  # the protocol sends it as one byte, outside its count
        return False
    output.expect_answer(line)
    streamer.send_command(line)
    return True


def _first_word(line: str) -> str:
    """The command word of a line (`m115 ; hi` -> `M115`), to tell whose answer a reply is."""
    return (line.split(";", 1)[0].split() or [""])[0].upper()


def firmware_version(streamer: Streamer, output: ConsoleOutput, firmware: str, timeout_s: float) -> str:
    """The firmware's name and version for the banner: GRBL's greeting, Marlin's answer to M115."""
    greeting = (output.wait_greeting(0.5) or "").strip()
    if firmware == "grbl":
        return greeting.split("[")[0].strip() or "version unknown (no greeting)"
    output.expect_answer("M115", quiet=True)
    streamer.send_command("M115")
    # One ask, waited for generously (it returns at the answer): a second M115 would make the answers
    # ambiguous if the first was lost, and a loaded host may be slow to hear a board that just booted.
    output.wait_answers(min(timeout_s, 10.0))
    for lines in output.quiet_replies:
        for line in lines:
            found = _MARLIN_NAME.search(line)
            if found:
                return found.group(1).strip()
    return "version unknown (no answer to M115)"


def typed_lines(tty: bool) -> Iterator[str]:
    """Lines from stdin: on a terminal with a prompt and readline's history, else as piped."""
    if not tty:
        yield from sys.stdin
        return
    with contextlib.suppress(ImportError):  # not on every platform
        import readline  # noqa: F401 - importing it gives input() line editing and history
    while True:
        try:
            yield input("> ") + "\n"
        except EOFError:
            sys.stdout.write("\n")
            return


def console(
    port: str = typer.Option(..., "--port", help="Serial port path or pyserial URL."),
    firmware: str = typer.Option(..., "--firmware", help="marlin or grbl."),
    baud: int = typer.Option(115200, "--baud", help="Baud rate."),
    greeting_timeout: float = typer.Option(
        3.0, "--greeting-timeout", help="Seconds to wait for the board's greeting after opening the port."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.1, help="Seconds to wait for each command's answer (default 10).",
        show_default=False),
    reply_timeout: float | None = typer.Option(None, "--reply-timeout", min=0.1, hidden=True),
) -> None:
    """Send commands to the firmware and print its answers, each after its command; `exit` or Ctrl-D quits."""
    check_firmware(firmware)
    wait_s = timeout if timeout is not None else reply_timeout if reply_timeout is not None else 10.0
    output = ConsoleOutput()
    streamer = connect(port, baud, make_protocol(firmware), firmware, output, greeting_timeout)
    tty = sys.stdin.isatty()
    try:
        version = firmware_version(streamer, output, firmware, wait_s)
        sys.stderr.write(f"fabnode console: {port} at {baud} baud, {firmware} ({version}); "
                         f"type a command, `exit` or Ctrl-D to quit\n")
        sys.stderr.flush()
        answered = _converse(streamer, output, firmware, typed_lines(tty), wait_s, echo=not tty)
    finally:
        streamer.close()
    if output.lost is not None:
        raise typer.Exit(exits.PORT)
    if not answered:
        exits.fail(f"no answer within {wait_s:g} s to the last command(s)", exits.NO_ANSWER)
    if output.last_ok is False:
        raise typer.Exit(exits.FAILED)


def _converse(streamer: Streamer, output: ConsoleOutput, firmware: str, lines: Iterator[str],
              wait_s: float, echo: bool) -> bool:
    """Send each line once the one before it was answered; True when nothing is left unanswered."""
    for raw in lines:
        line = raw.strip(" \t\r\n")
        if line.lower() in QUIT_WORDS:
            break
        if line:
            if echo:
                output.echo(f"> {line}")
            seen = output.status_reports
            if send_line(streamer, output, firmware, line):
                output.wait_answers(wait_s)  # a late answer is still printed, before the next one
            elif line == "?":
                output.wait_status_after(seen, wait_s)
        if output.lost is not None:
            break
    return output.wait_answers(wait_s)


def register(app: typer.Typer) -> None:
    """Add `console` to the app."""
    app.command("console", epilog=exits.help_text(exits.OK, exits.FAILED, exits.USAGE, exits.NO_ANSWER,
                                                    exits.PORT))(console)
