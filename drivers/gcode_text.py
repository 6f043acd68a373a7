"""What of a G-code line may go on a wire: comments, blanks and non-ASCII never do."""

from __future__ import annotations

import re


def strip_for_wire(line: str, *, paren_comments: bool) -> str:
    """Return the line without `;` comments (and `( )` comments when asked), non-ASCII and outer blanks.

    A `!`, `~` or `?` inside a comment would be a real-time command to GRBL, so comments must go
    before anything else looks at the line. A `%` line (a CAM program's start and end mark, from
    paper tape) is no command: GRBL refuses it and it would fail the job, so it never goes either.
    """
    semi = line.find(";")
    if semi >= 0:
        line = line[:semi]
    if paren_comments and "(" in line:
        out: list[str] = []
        depth = 0
        for ch in line:
            if ch == "(":
                depth += 1
            elif ch == ")" and depth:
                depth -= 1
            elif not depth:
                out.append(ch)
        line = "".join(out)
    if not line.isascii():
        line = line.encode("ascii", "ignore").decode("ascii")
    # Control characters (incl. GRBL's real-time bytes 0x18, 0x80+) must not leak from a file.
    if any(ord(c) < 32 for c in line):
        line = "".join(c if ord(c) >= 32 else " " for c in line)
    line = line.strip()
    return "" if line == "%" else line


# Commands whose argument is text (file names, messages, macros, Wi-Fi names): sent as written.
# Marlin's parser hands these the raw rest of the line (GCodeParser::parse: M16, M23, M28, M30,
# M117, M118, M810-M819, M928; M32's `!path#`; M0/M1's message after the parameters); M33 takes a
# path, M587/M588 (RepRapFirmware Wi-Fi) take names.
_TEXT_M_CODES = frozenset({0, 1, 16, 23, 28, 30, 32, 33, 117, 118, 587, 588, 928, *range(810, 820)})
_COMMAND_RE = re.compile(r"([GMTgmt])\s*(\d+)(\.\d+)?")
_WORD_RE = re.compile(r"([A-Za-z])\s*([+-]?(?:\d+\.?\d*|\.\d+))?\s*")
_PLAIN_TEXT_RE = re.compile(r"^[A-Za-z0-9.+\- ]*$")  # anything else (quotes, `!`, `#`, `=`, `(`) is text
# `M0 Insert filament`, `Tx` (MMU): two letters side by side are a word, not parameters.
_ADJACENT_LETTERS_RE = re.compile(r"[A-Za-z]{2}")


def _compact_number(value: str) -> str:
    """`10.000` -> `10`, `0.50` -> `.5`, `+5` -> `5`: the same float to Marlin's strtof (not to GRBL's
    read_float, whose float32 steps differ: drivers/grbl/lines.py compacts for GRBL on its own).

    Marlin's valid_float accepts `[-+]?.?[0-9]` so `.5` and `-.5` are values; strtol reads `.5` as
    0 like `0.5`, so integer parameters read the same too.
    """
    sign = ""
    if value[0] in "+-":
        sign = "-" if value[0] == "-" else ""
        value = value[1:]
    whole, dot, frac = value.partition(".")
    frac = frac.rstrip("0") if dot else ""
    whole = whole.lstrip("0")
    if not whole and not frac:
        return sign + "0"
    return sign + whole + ("." + frac if frac else "")


def compact_for_wire(line: str) -> str:
    """Return the line as few bytes as the firmware reads the same: `G1 X10.000 Y0.50 ; c` -> `G1X10Y.5`.

    No spaces between words, no `;` comments, no zeros that change nothing. Lines whose argument
    is text (M117, M23 file names, M0 messages...) or that hold anything but letters, numbers and
    blanks are returned as `strip_for_wire` leaves them. `( )` comments are not removed here: a
    GRBL caller strips them first with `strip_for_wire(line, paren_comments=True)`.
    """
    line = strip_for_wire(line, paren_comments=False)
    prefix = ""
    if line[:3].upper() == "$J=":  # a GRBL jog is a G-code block after `$J=`
        prefix, line = line[:3], line[3:].strip()
    if not line or not _PLAIN_TEXT_RE.match(line) or _ADJACENT_LETTERS_RE.search(line):
        return prefix + line
    first = line[0].upper()
    if first == "N":  # a file's own line number: Marlin skips `N<digits>` up to the first space
        return prefix + line
    command = _COMMAND_RE.match(line)
    if command and first == "M" and int(command.group(2)) in _TEXT_M_CODES:
        return prefix + line
    out: list[str] = []
    pos = 0
    if command:
        out.append(command.group(1) + command.group(2) + (command.group(3) or ""))
        pos = command.end()
    previous_value = ""
    while pos < len(line):
        if line[pos] == " ":
            pos += 1
            continue
        word = _WORD_RE.match(line, pos)
        if word is None:  # a number with no letter before it: not ours to reshape
            return prefix + line
        letter, value = word.group(1), word.group(2)
        if letter in "Xx" and previous_value in ("0", "-0"):
            # `E0X5` would be the hex float 0x5 to strtof (Marlin's value_float cuts only at `E`).
            out.append(" ")
        number = _compact_number(value) if value else ""
        out.append(letter + number)
        previous_value = number
        pos = word.end()
    return prefix + "".join(out)
