"""What of a G-code line may go on a wire: comments, blanks and non-ASCII never do."""

from __future__ import annotations


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
