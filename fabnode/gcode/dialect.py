"""G-code read as the firmware reads it: command numbers, numbers it cannot take, GRBL's own lines.

The scanner's fast path (`str.split`, `float`) reads almost every slicer's line exactly as firmware
does. These checks cover what it would read differently, and run only on lines a cheap test flags:
- Marlin reads a command as letter, optional spaces, integer, optional `.subcode`, and ignores what
  follows the number: `M 500`, `M500S0`, `M500.1` and `m 502` are M500 and M502 to it.
- Python's `float` takes `nan`, `inf`, `1e999`, `1_0`; firmware takes none of them the same way (Marlin's
  strtof takes `nan` and `inf`, and stops at the `E` of `1e5`; GRBL's read_float stops at any letter),
  and a finite `1e308` overflows every distance computed from it.
- GRBL: `$` lines are its own settings and commands; a member's job may not write settings (`$32=0`
  turns laser mode off, so the beam stays on through a feed hold), startup lines (`$N0=`) or restore
  defaults (`$RST=`). GRBL answers `error:20` to G/M codes and letters it does not support.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "GRBL_G_CODES",
    "GRBL_LETTERS",
    "GRBL_M_CODES",
    "MAX_NUMBER",
    "bad_number",
    "firmware_command",
    "grbl_dollar_write",
    "grbl_refusal",
    "split_command",
    "suspect_number",
]

# Larger than any coordinate, feed, temperature, power or dwell a machine takes; small enough that
# squares and sums of such numbers stay finite.
MAX_NUMBER = 1e9
_COMMAND = re.compile(r"([GMT])\s*(\d+)(\.\d+)?")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
# Cheap filter: only lines matching this can hold a number the fast path misreads.
_GLUED_EXPONENT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)E[-+]?\.?\d")
_SUSPECT = re.compile(r"NAN|INF|_|[\d.]E|\d{10}")
_GRBL_WRITE = re.compile(r"\$(?:\d+|N\d*|RST|I)\s*=")
_GRBL_WORD = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))?")
GRBL_LETTERS = frozenset("FGIJKLMNPRSTXYZ")
# fmt: off
GRBL_G_CODES = frozenset({
    "0", "1", "2", "3", "4", "10", "17", "18", "19", "20", "21", "28", "28.1", "30", "30.1", "38.2",
    "38.3", "38.4", "38.5", "40", "43.1", "49", "53", "54", "55", "56", "57", "58", "59", "61", "80",
    "90", "91", "91.1", "92", "92.1", "93", "94",
})
# fmt: on
GRBL_M_CODES = frozenset({"0", "1", "2", "30", "3", "4", "5", "7", "8", "9", "56"})


def split_command(code: str) -> tuple[str, bool, str] | None:
    """(command, has a subcode, the rest) as Marlin reads a cleaned, upper-cased line: `M 500` and
    `M500S0` are ("M500", False, ...), `M500.1` is ("M500", True, ""); None without a command number."""
    match = _COMMAND.match(code)
    if match is None:
        return None
    return f"{match.group(1)}{int(match.group(2))}", match.group(3) is not None, code[match.end() :]


def firmware_command(code: str) -> str | None:
    """The command Marlin runs for a cleaned, upper-cased line (`M 500`, `M500S0`, `M500.1` -> `M500`)."""
    found = split_command(code)
    return found[0] if found else None


def suspect_number(code: str) -> bool:
    """Whether a line may hold a number the fast path reads differently from firmware (cheap)."""
    return _SUSPECT.search(code) is not None


def bad_number(words: list[str]) -> str | None:
    """Why a parameter word is not a number firmware reads as we do (NaN, infinity, exponent, too
    large), or None. `words` are the line's words, the command first."""
    for word in words[1:]:
        text = word[1:]
        if not text:
            continue  # a bare letter (G28 X)
        if _NUMBER.fullmatch(text) is None:
            why = f"{word[:24]} is not a number the firmware reads as written (NaN, infinity, exponent)"
            if _GLUED_EXPONENT.match(text):  # X10.5E1.2: strtof reads 10.5E1 = 105, not X10.5 and E1.2
                why += ": a number glued to E reads as its exponent (put a space before E)"
            return why
        value = float(text)
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            return f"{word[0]}{text[:12]}... is out of range (more than {MAX_NUMBER:g} in size)"
    return None


def grbl_dollar_write(code: str) -> str | None:
    """The GRBL write a `$` line makes (`$32=0` -> `$32=`), None for reads and actions (`$H`, `$X`, `$J=`)."""
    match = _GRBL_WRITE.match(code.replace(" ", ""))
    return match.group(0).replace(" ", "") if match else None


def grbl_refusal(code: str) -> str | None:
    """Why GRBL 1.1 refuses a G-code line (not `$`), in its own terms, or None when it accepts it."""
    words = _GRBL_WORD.findall(code)
    if "".join(letter + number for letter, number in words).replace(" ", "") != code.replace(" ", ""):
        return "error:1, expected a command letter"
    for letter, number in words:
        if letter not in GRBL_LETTERS:
            return f"error:20, unsupported command (letter {letter})"
        if not number:
            return f"error:2, bad number format ({letter} has no value)"
        if letter in "GM":
            code_no = number.lstrip("+")
            whole, _, frac = code_no.partition(".")
            name = str(int(whole)) + (f".{frac}" if frac else "") if whole.isdigit() else code_no
            if name not in (GRBL_G_CODES if letter == "G" else GRBL_M_CODES):
                return f"error:20, unsupported command ({letter}{name})"
    return None
