"""The job inbox: a folder where a member drops G-code during their session, started by a badge tap.

Files are taken oldest first. A file whose name starts with "." or ends in .part/.tmp/.crdownload/.swp
is still being written and is not offered: copy under such a name, then rename (atomic on one file
system). Nothing is ever deleted: a file is moved to `accepted/` when its job starts, to
`rejected/` (with `<name>.problems.txt` beside it) when it fails preflight, and to `stale/` when it
was already waiting as a session opened (it was dropped for somebody else's session). See
docs/inbox.md for the member's side of the flow.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

ACCEPTED = "accepted"
REJECTED = "rejected"
STALE = "stale"
SUBFOLDERS = (ACCEPTED, REJECTED, STALE)
_PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", ".partial")


def is_offered(path: Path) -> bool:
    """Whether a file in the inbox is complete and may be offered (not hidden, not a partial copy)."""
    name = path.name
    return not name.startswith(".") and not name.lower().endswith(_PARTIAL_SUFFIXES)


class Inbox:
    """One inbox folder and its `accepted/`, `rejected/` and `stale/` subfolders."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def ensure(self) -> Inbox:
        """Create the folder and its subfolders (group-writable, so members' uploads can land)."""
        self.folder.mkdir(mode=0o2775, parents=True, exist_ok=True)
        for sub in SUBFOLDERS:
            (self.folder / sub).mkdir(mode=0o2775, exist_ok=True)
        return self

    def waiting(self) -> list[Path]:
        """Files on offer, oldest first (then by name)."""
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        files = []
        for entry in entries:
            path = Path(entry.path)
            try:
                if entry.is_file(follow_symlinks=False) and is_offered(path):
                    files.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name, path))
            except FileNotFoundError:  # moved away while we looked
                continue
        return [path for _, _, path in sorted(files)]

    def next_file(self) -> Path | None:
        """The oldest file on offer, or None."""
        files = self.waiting()
        return files[0] if files else None

    def accept(self, path: Path) -> Path:
        """Move a file whose job starts to `accepted/`; return its new path (the job reads that one)."""
        return self._move(path, ACCEPTED)

    def reject(self, path: Path, problems: list[str]) -> Path:
        """Move a file that failed preflight to `rejected/`, with its problems in `<name>.problems.txt`.

        The report is complete before the file shows up in `rejected/`: whoever sees the file (the
        member, a script) can read why at once.
        """
        target = self._target(path, REJECTED)
        report = target.with_name(target.name + ".problems.txt")
        partial = report.with_name(f".{report.name}.part")
        partial.write_text("\n".join(problems) + "\n", encoding="utf-8")
        os.replace(partial, report)
        try:
            os.replace(path, target)
        except OSError:
            report.unlink(missing_ok=True)  # no report without its file
            raise
        return target

    def set_aside_stale(self) -> list[Path]:
        """Move every file already waiting to `stale/` (called as a session opens); return the new paths."""
        return [self._move(path, STALE) for path in self.waiting()]

    def _move(self, path: Path, sub: str) -> Path:
        target = self._target(path, sub)
        os.replace(path, target)
        return target

    def _target(self, path: Path, sub: str) -> Path:
        """A free name for `path` in subfolder `sub`, stamped with the time it is moved."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = self.folder / sub
        folder.mkdir(mode=0o2775, parents=True, exist_ok=True)
        target = folder / f"{stamp}-{path.name}"
        n = 1
        while target.exists():
            n += 1
            target = folder / f"{stamp}-{n}-{path.name}"
        return target
