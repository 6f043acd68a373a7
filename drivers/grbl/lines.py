"""What of a file or console line goes on GRBL's wire, and a line on the wire awaiting its answer (pure).

A line goes compact: GRBL's protocol.c throws away every character <= ' ' and both kinds of comment
before it parses a block, and its read_float (nuts_bolts.c) reads `.5` as `0.5` and `G01` as `G1`, so
those bytes only cost wire time. Trailing zeros are another matter: read_float builds a float32 from
at most 8 digits and a chain of *0.01 / *0.1 steps, so `43.9090` and `43.909` can differ by one float32
step; a zero goes only where GRBL's own reading of the number stays bit for bit the same. `$` lines
(settings, `$H`, `$J=` jogs) go as written.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

from drivers.gcode_text import strip_for_wire

_DROP_REALTIME = str.maketrans("", "", "?!~")
# Settings writes that put GRBL's EEPROM (and its serial interrupt) on hold for a moment.
_EEPROM_WRITE = re.compile(r"^\$(?:\d+|N\d|RST|I)=", re.IGNORECASE)
# A number as read_float takes it; possessive, so a long line that does not parse fails in linear time.
_NUMBER = r"[+-]?+(?:\d++(?:\.\d*+)?+|\.\d++)"
_BLOCK = re.compile(rf"(?:[A-Za-z]{_NUMBER})*+")  # a block GRBL's parser can take apart
_WORD = re.compile(rf"([A-Za-z])({_NUMBER})")
_MAX_INT_DIGITS = 8  # nuts_bolts.h: read_float keeps this many digits


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
    """What of one file or console line goes on GRBL's wire: compact, without comments, non-ASCII or
    real-time chars; a `$` line as written."""
    text = strip_for_wire(raw, paren_comments=True)
    if "?" in text or "!" in text or "~" in text:
        # Outside a comment they would still be real-time commands (a `!` holds the machine).
        text = text.translate(_DROP_REALTIME).strip()
    if not text or text[0] == "$":
        return text
    return compact_block(text)


def compact_block(text: str) -> str:
    """A block (comments gone) in the fewest bytes GRBL reads the same: `G01 X0.50 Y10.0` -> `G1X.5Y10`."""
    text = "".join(text.split())  # protocol.c drops every character <= ' ' itself
    if _BLOCK.fullmatch(text) is None:
        return text  # GRBL will refuse or read it as it is: its numbers are not ours to respell
    return _WORD.sub(_short_word, text)


def _short_word(word: re.Match[str]) -> str:
    number = word.group(2)
    body = number.lstrip("+-")
    if number[0] != "+" and body[0] != "0" and not ("." in body and body[-1] in "0."):
        return word.group(0)  # most numbers: nothing to spare (no sign, zero or point that GRBL skips)
    return word.group(1) + shortest_number(number)


@lru_cache(maxsize=4096)
def shortest_number(number: str) -> str:
    """The shortest spelling of `number` that GRBL's read_float turns into the very same float32."""
    sign = "-" if number[0] == "-" else ""
    whole, _, frac = number.lstrip("+-").partition(".")
    want = read_float_bits(number)
    whole = whole.lstrip("0")
    for keep in range(len(frac.rstrip("0")), len(frac) + 1):
        spelled = sign + (whole + ("." + frac[:keep] if keep else "") or "0")
        if read_float_bits(spelled) == want:
            return spelled
    return number  # only with more than 8 digits, where a leading zero takes a digit's place


def read_float_bits(number: str) -> int:
    """GRBL 1.1's read_float (nuts_bolts.c) on an AVR's IEEE float32: the value's 32 bits."""
    negative = number[0] == "-"
    intval = exp = digits = 0
    decimal = False
    for ch in number.lstrip("+-"):
        if ch == ".":
            decimal = True
            continue
        digits += 1
        if digits <= _MAX_INT_DIGITS:
            if decimal:
                exp -= 1
            intval = intval * 10 + ord(ch) - 48
        elif not decimal:
            exp += 1  # digits past 8 before the point still scale the value
    value = _f32(float(intval))
    if value != 0:
        while exp <= -2:
            value, exp = _f32(value * _HUNDREDTH), exp + 2
        if exp < 0:
            value = _f32(value * _TENTH)
        while exp > 0:
            value, exp = _f32(value * 10.0), exp - 1
    return int(struct.unpack("<I", struct.pack("<f", -value if negative else value))[0])


def _f32(value: float) -> float:
    """Round to float32 as the AVR does (a float32 product is exact in a double, then rounded once)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.inf


_HUNDREDTH, _TENTH = _f32(0.01), _f32(0.1)


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
