"""Marlin's serial line checks (GCodeQueue::get_serial_commands), written from Marlin 2.x behaviour.

Sans-I/O: `LineChecker.check(raw)` takes one received line and says whether it is accepted, and if
not, which error Marlin prints before its `Resend:` and `ok`. Also the emergency parser (M108, M112,
M410 acted on as their bytes arrive, before the command queue sees them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ERR_LINE_NO = "Line Number is not Last Line Number+1, Last Line: "
ERR_CHECKSUM = "checksum mismatch, Last Line: "
ERR_NO_CHECKSUM = "No Checksum with line number, Last Line: "
ERR_NO_LINENUMBER = "No Line Number with checksum, Last Line: "

_N_PREFIX = re.compile(r"^N-?\d+\s*")
_LEADING_INT = re.compile(r"^\s*(-?\d+)")


def marlin_checksum(text: str) -> int:
    """XOR of every byte before the `*` (Marlin's own loop over command[] in get_serial_commands)."""
    checksum = 0
    for byte in text.encode("latin-1", errors="replace"):
        checksum ^= byte
    return checksum


def _strtol(text: str) -> int:
    """C strtol(text, nullptr, 10): the leading integer, 0 if none."""
    match = _LEADING_INT.match(text)
    return int(match.group(1)) if match else 0


def strip_comment(raw: str) -> str:
    """What Marlin keeps of a received line: text before `;`, trimmed (it drops comments as it reads)."""
    return raw.split(";", 1)[0].strip()


def normalise(command: str) -> str:
    """A command without N number, checksum or comment, with single spaces (for `executed`)."""
    text = strip_comment(command)
    star = text.rfind("*")
    if star >= 0:
        text = text[:star]
    text = _N_PREFIX.sub("", text)
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Verdict:
    """What Marlin does with one received line."""

    accepted: bool
    command: str = ""  # the command without N and checksum, as the queue stores it
    line_number: int | None = None  # N of a numbered line
    error: str = ""  # the `Error:` text (without the "Error:" prefix) when refused
    kind: str = ""  # "line", "checksum" or "no_checksum" when refused


class LineChecker:
    """Keeps gcode_LastN and checks each numbered line: line number first, then the checksum."""

    def __init__(self, unnumbered_any: bool = False) -> None:
        self.last_n = 0
        self.unnumbered_any = unnumbered_any  # Marlin 2.x: a line without N is never checked

    def check(self, raw: str) -> Verdict:
        """Check one line (comment already stripped, non-empty)."""
        raw = raw.lstrip(" ")  # Marlin skips leading spaces before it looks for N
        if not raw.startswith("N"):
            if self.unnumbered_any:
                # GCodeParser::parse nullifies the first `*` and the blanks before it
                return Verdict(True, command=raw.split("*", 1)[0].strip())
            if "*" in raw:
                return self._refuse(ERR_NO_LINENUMBER, "no_line_number")
            return Verdict(True, command=raw)
        n_pos = 0
        if "M110" in raw:
            # M110's own N is the number to take. Marlin 2.1 (src/gcode/queue.cpp,
            # get_serial_commands) looks for it with strchr(command + 4, 'N'): from the line's fifth
            # character, not from "M110", so any later N word counts.
            second = raw.find("N", 4)
            if second >= 0:
                n_pos = second
        number = _strtol(raw[n_pos + 1 :])
        if number != self.last_n + 1 and "M110" not in raw:
            return self._refuse(ERR_LINE_NO, "line")
        star = raw.rfind("*")
        if star < 0:
            return self._refuse(ERR_NO_CHECKSUM, "no_checksum")
        if _strtol(raw[star + 1 :]) != marlin_checksum(raw[:star]):
            return self._refuse(ERR_CHECKSUM, "checksum")
        self.last_n = number
        command = _N_PREFIX.sub("", raw[:star]).strip()
        return Verdict(True, command=command, line_number=number)

    def _refuse(self, error: str, kind: str) -> Verdict:
        return Verdict(False, error=f"{error}{self.last_n}", kind=kind)


class EmergencyParser:
    """Marlin's EMERGENCY_PARSER: sees M108/M112/M410 as the bytes arrive, even while a command blocks."""

    COMMANDS = ("M108", "M112", "M410")

    def __init__(self) -> None:
        self._line = bytearray()

    def feed(self, byte: int) -> str | None:
        """Take one byte; at a line end return the emergency command it completed, if any."""
        if byte not in (0x0A, 0x0D):
            if len(self._line) < 64:
                self._line.append(byte)
            return None
        text = self._line.decode("latin-1")
        self._line.clear()
        command = _N_PREFIX.sub("", text.strip()).split("*", 1)[0].strip()
        head = command.split(" ", 1)[0]
        return head if head in self.COMMANDS else None
