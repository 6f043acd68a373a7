"""Text from outside (file names, problems quoting a file) made safe for one log line.

A file name may hold a newline or other control characters: written raw, it would forge a second
journal line ("relay off") or hide the rest of the record. Every log line the node writes about a file
goes through `shown()`.
"""

from __future__ import annotations

from os import PathLike


def shown(text: str | PathLike[str] | None) -> str:
    """The text with control characters (newline, carriage return, ESC, DEL, C1) escaped as \\n, \\x1b..."""
    s = "" if text is None else str(text)
    if s.isprintable() and "\\" not in s:
        return s
    out = []
    for ch in s:
        if ch == "\\":  # escaped too, so a name holding a real backslash-n is told from a newline
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:  # the escapes repr() uses: \n, \r, \t, \x1b, \u2028, \udce9...
            out.append(repr(ch)[1:-1])
    return "".join(out)
