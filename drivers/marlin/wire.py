"""Marlin's host wire format: framing of numbered lines and the meaning of each received line.

Pure functions, no state: drivers.marlin.host keeps the state. Written from Marlin 2.x behaviour
(GCodeQueue::get_serial_commands, ok_to_send with ADVANCED_OK, M105/M155 reports, kill()).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CMD_SIZE = 96  # Marlin's command buffer, N number and checksum included

# Kinds of received lines.
OK = "ok"
RESEND = "resend"
BUSY = "busy"
START = "start"
TEMPS = "temps"
ACTION = "action"
LINE_ERROR = "line_error"  # a refused line: Resend follows
THERMAL = "thermal"
LOCKED = "locked"  # PASSWORD_FEATURE: `echo:Printer locked! (Unlock with M511 or LCD)`, then `ok`
FATAL_ERROR = "fatal_error"  # Klipper's `!! ...`: the command failed and the printer stopped it
HALTED = "halted"
ERROR = "error"  # any other Error: line
UNKNOWN_COMMAND = "unknown_command"
MESSAGE = "message"

_ACTION_RE = re.compile(r"^//\s*action:\s*(\S*)")  # `// action:cancel` too (Prusa MK3, Repetier)
_RESEND_RE = re.compile(r"^(?:Resend:\s*N?|rs\s+N?)(\d+)", re.IGNORECASE)
_ADVANCED_RE = re.compile(r"^ok(?:\s+N(\d+))?\s+P(\d+)\s+B(\d+)\s*$")
_TEMP_START_RE = re.compile(r"^(?:ok\s*)?(?:T\d*|B|C):")
_TEMP_RE = re.compile(r"(?:^|\s)(T\d*|B|C|P|A|R):\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(-?\d+(?:\.\d+)?))?")
_THERMAL_RE = re.compile(
    r"thermal runaway|thermal malfunction|maxtemp|mintemp|heating failed|temp(?:erature)? error",
    re.IGNORECASE,
)
_HALT_RE = re.compile(r"printer halted|kill\(\) called|system stopped|printer stopped", re.IGNORECASE)
_N_WORD_RE = re.compile(r"^N\d+\s*")
# Marlin's gcode_line_error with its flush and `Resend: <last + 1>` (FlushSerialRequestResend)
_RESENT_ERRORS = ("line number is not last line number", "checksum mismatch", "no checksum with line number")
_LINE_ERRORS = (
    *_RESENT_ERRORS,
    "no line number with checksum",
    "expected line",  # OctoPrint's virtual printer, Repetier: `Error: expected line 41 got 42`
    "missing checksum",
)
_REFUSED_RE = re.compile(r"expected line\s+(\d+)\s+got\s+(\d+)", re.IGNORECASE)
_LAST_LINE_RE = re.compile(r"last line:\s*(\d+)\s*$")


def checksum(data: bytes) -> int:
    """XOR of all bytes, folded in halves so a 232k-line file costs no per-byte Python loop."""
    x = int.from_bytes(data, "little")
    width = len(data)
    while width > 1:
        half = (width + 1) // 2
        x = (x & ((1 << (8 * half)) - 1)) ^ (x >> (8 * half))
        width = half
    return x


def frame(n: int, command: str) -> bytes:
    """`N<n> <command>*<xor of every byte before *>` and a newline, as Marlin checks it."""
    body = f"N{n} {command}".encode("ascii")
    return body + b"*" + str(checksum(body)).encode("ascii") + b"\n"


def manual_line(line: str, command: str) -> bytes:
    """The bytes of a manual command (`command`, the wire text of `line`); ValueError if blank or too long."""
    if not command:
        raise ValueError(f"{line!r} is blank once comments are removed")
    if len(command) + 1 > MAX_CMD_SIZE:
        raise ValueError(f"{command[:20]!r}... is longer than Marlin's {MAX_CMD_SIZE}-byte buffer")
    return command.encode("ascii") + b"\n"


@dataclass(frozen=True, slots=True)
class OkInfo:
    """What one `ok` line says."""

    bare: bool  # exactly `ok`: Marlin's answer to a refused line, or to a command without ADVANCED_OK
    line_number: int | None = None  # ADVANCED_OK `N<n>`: the numbered line just processed
    planner_free: int | None = None  # ADVANCED_OK `P<n>`
    buffer_free: int | None = None  # ADVANCED_OK `B<n>`: free command-queue slots
    temperatures: bool = False  # `ok T:...`: the answer to M105


BARE_OK = OkInfo(bare=True)


def parse_ok(line: str) -> OkInfo:
    """Read an `ok` line (the caller checked it starts with `ok`)."""
    if line == "ok":
        return BARE_OK
    advanced = _ADVANCED_RE.match(line)
    if advanced:
        n = advanced.group(1)
        return OkInfo(False, int(n) if n else None, int(advanced.group(2)), int(advanced.group(3)))
    return OkInfo(False, temperatures=bool(_TEMP_START_RE.match(line)))


def implied_resend(error: str) -> int | None:
    """The `Resend:` that Marlin's refusal `Error:..., Last Line: <n>` is followed by (n + 1), or None
    for errors not followed by one (Marlin 1.x `No Line Number with checksum`, other firmware)."""
    lower = error.lower()
    match = _LAST_LINE_RE.search(lower)
    if match is None or not any(text in lower for text in _RESENT_ERRORS):
        return None
    return int(match.group(1)) + 1


def mangled_ok(line: str) -> bool:
    """A line that may be an `ok` noise hit in its first two letters (`oj`, `Ok N12 P15 B3`)."""
    return len(line) <= 2 or bool(_ADVANCED_RE.match("ok" + line[2:])) or mangled_m105_ok(line)


def mangled_m105_ok(line: str) -> bool:
    """An M105's `ok T:...` noise hit in its `ok` (`oK T:210.0 /210.0`): nothing else reads so."""
    return line[2:4] == " T" and bool(_TEMP_START_RE.match("ok" + line[2:]))


def parse_resend(line: str) -> int | None:
    """The line number asked for by `Resend: <n>` / `rs <n>`, or None."""
    match = _RESEND_RE.match(line)
    return int(match.group(1)) if match else None


def refused_line(error: str) -> int | None:
    """The line number a refusal names (`expected line 41 got 42`: 42), or None (Marlin names none)."""
    match = _REFUSED_RE.search(error)
    return int(match.group(2)) if match else None


def parse_temperatures(line: str) -> dict[str, tuple[float, float | None]]:
    """Heater readings of `ok T:210.0 /210.0 B:60.0 /60.0 @:127 B@:0` or an M155/M109 report."""
    readings: dict[str, tuple[float, float | None]] = {}
    for name, actual, target in _TEMP_RE.findall(line):
        readings[name] = (float(actual), float(target) if target else None)
    return readings


def classify(line: str) -> str:
    """The kind of one received line (stripped, not empty)."""
    if line.startswith("ok") and (len(line) == 2 or line[2] in " \t:"):
        return OK
    if _RESEND_RE.match(line):
        return RESEND
    lower = line.lower()
    if lower.startswith(("echo:busy:", "busy:")):
        return BUSY
    if lower == "start":
        return START
    if _ACTION_RE.match(line):
        return ACTION
    if lower.startswith("error:") or line.startswith("!!"):
        kind = _classify_error(lower)
        return FATAL_ERROR if kind == ERROR and line.startswith("!!") else kind
    if "printer locked" in lower:
        return LOCKED
    if _TEMP_START_RE.match(line):
        return TEMPS
    if "unknown command" in lower:
        return UNKNOWN_COMMAND
    return MESSAGE


def host_action(line: str) -> str:
    """`cancel` of `//action:cancel` or `// action:cancel`; empty if the line is not a host action."""
    match = _ACTION_RE.match(line)
    return match.group(1) if match else ""


def unknown_command_text(line: str) -> str:
    """The command in `echo:Unknown command: "<command>"`."""
    text = line.split(":", 2)[-1].strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def first_word(command: str) -> str:
    """`G1` of `N12 G1 X3*45`: the command's letter and number, upper case."""
    words = _N_WORD_RE.sub("", command.strip()).replace("*", " ").split()
    return words[0].upper() if words else ""


def answers(unknown: str, expected: str, numbered: bool) -> bool:
    """True if Marlin's `Unknown command: "<unknown>"` is about the command we sent (`expected`).

    A manual command may arrive glued to stray bytes left in Marlin's RX buffer (`?M105` after a
    `?` meant for GRBL, line noise after a reset): it still answers that command, and its `ok` is
    the sign of life the handshake waits for.
    """
    if first_word(unknown) == first_word(expected):
        return True
    return bool(expected.strip()) and not numbered and unknown.upper().endswith(expected.strip().upper())


def _classify_error(lower: str) -> str:
    if any(text in lower for text in _LINE_ERRORS):
        return LINE_ERROR
    if _THERMAL_RE.search(lower):
        return THERMAL
    if _HALT_RE.search(lower):
        return HALTED
    return ERROR
