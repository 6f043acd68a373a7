"""A job's per-line figures (filament, beam time, time, command lines) kept in files, not on the heap.

The analysis of a 5 MB file holds about 5 MB of running totals (one entry per move) that the job needs
until it ends (`Analysis.filament_mm_at(n)` when it is cancelled at line n). Preflight
(fabnode.node.prepare) hands them here as it reads (Scanner.take_series); each series is appended to
an unlinked temporary file and mapped read-only at the end. The lookups are binary searches: they
touch a few pages of the mapping, so the daemon's memory stays flat in the file's size. The files
vanish with the last view of them (the mapping closes; the file has no name).
"""

from __future__ import annotations

import mmap
import tempfile
from array import array
from collections.abc import Sequence
from typing import IO

from fabnode.gcode.analysis import Taken

SERIES = ("filament", "laser", "time", "commands")


class SeriesFiles:
    """A fabnode.gcode.analysis.SeriesStore on unlinked temporary files in `directory` (None: the
    system's temporary directory)."""

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._files: dict[str, IO[bytes]] = {}

    def add(self, taken: Taken) -> None:
        """Append each series' new entries to its files."""
        for name, (lines, cum) in taken.items():
            for key, values in ((f"{name}.lines", lines), (f"{name}.cum", cum)):
                if values:
                    self._file(key).write(memoryview(values).cast("B"))

    def _file(self, key: str) -> IO[bytes]:
        f = self._files.get(key)
        if f is None:
            # Kept open until views(): one file per series, written as the analysis goes.
            f = tempfile.TemporaryFile(prefix=f"fabnode-{key}-", dir=self._directory)  # noqa: SIM115
            self._files[key] = f
        return f

    def views(self) -> dict[str, tuple[Sequence[int], Sequence[float]]]:
        """Every series added, as read-only views of its mapped files (the files are closed here)."""
        out = {name: (self._lines(f"{name}.lines"), self._cum(f"{name}.cum")) for name in SERIES}
        for f in self._files.values():
            f.close()
        self._files.clear()
        return out

    def _mapped(self, key: str) -> mmap.mmap | None:
        f = self._files.get(key)
        if f is None:
            return None
        f.flush()
        if f.tell() == 0:
            return None
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the mapping outlives the file object

    def _lines(self, key: str) -> Sequence[int]:
        mapped = self._mapped(key)
        return array("I") if mapped is None else memoryview(mapped).cast("I")

    def _cum(self, key: str) -> Sequence[float]:
        mapped = self._mapped(key)
        return array("d") if mapped is None else memoryview(mapped).cast("d")
