"""What of a file or console line goes on GRBL's wire, and a line on the wire awaiting its answer (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.gcode_text import strip_for_wire

_DROP_REALTIME = str.maketrans("", "", "?!~")
# Settings writes that put GRBL's EEPROM (and its serial interrupt) on hold for a moment.
_EEPROM_WRITE = re.compile(r"^\$(?:\d+|N\d|RST|I)=", re.IGNORECASE)


@dataclass(slots=True)
class Sent:
    """One line on the wire awaiting its ok/error."""

    kind: str  # "job", "command" or "internal"
    size: int  # bytes with the newline
    text: str
    line_no: int = 0  # file line (job lines)
    job: int = 0  # which job it belongs to (lines of an ended job are still answered)
    command: str = ""  # the manual command as given


def clean_line(raw: str) -> str:
    """What of one file or console line goes on GRBL's wire: no comments, non-ASCII or real-time chars."""
    text = strip_for_wire(raw, paren_comments=True)
    if "?" in text or "!" in text or "~" in text:
        # Outside a comment they would still be real-time commands (a `!` holds the machine).
        text = text.translate(_DROP_REALTIME).strip()
    return text


def command_text(line: str, rx_buffer_bytes: int) -> str:
    """The wire text of a manual command; ValueError if blank or too long for the receive buffer."""
    text = clean_line(line)
    if not text:
        raise ValueError(f"nothing to send in {line!r} (comments and blanks never go to GRBL)")
    if len(text) + 1 > rx_buffer_bytes:
        raise ValueError(f"{text!r} is longer than GRBL's {rx_buffer_bytes}-byte receive buffer")
    return text


def is_eeprom_write(text: str) -> bool:
    """`$x=`, `$Nx=`, `$RST=`, `$I=`: GRBL writes EEPROM with its serial interrupt off."""
    return _EEPROM_WRITE.match(text) is not None
