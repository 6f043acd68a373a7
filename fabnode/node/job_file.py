"""A job's file read from disk as it is streamed, never held whole in memory.

Preflight (fabnode.node.prepare) reads the file once in blocks of BLOCK_BYTES and keeps each block's
SHA-256 (32 bytes per block). `JobFile` is the sequence of lines a protocol streams (`len()` and `[i]`
in increasing order, as drivers.marlin and drivers.grbl read them; drivers.streamer knows it as a
FileSource): it reads the same blocks again, one at a time, and checks each against its digest before
a line of it is handed out. A file changed since preflight so never sends a line nobody checked: the
lines stop before the changed block and `problem` says why (the streamer then fails the job). Lines
are split at "\\n" only, exactly as the analysis numbered them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, overload

from fabnode.gcode.bulk_scan import BOM, line_chunks

BLOCK_BYTES = 1 << 18  # 256 KiB: a short hold of the interpreter per block, 32 bytes of digest each


class JobFile(Sequence[str]):
    """The lines of a file that passed preflight, read block by block and checked as they go."""

    def __init__(self, path: Path, digests: Sequence[bytes], lines: int, commands: int,
                 block_bytes: int = BLOCK_BYTES) -> None:  # fmt: skip
        self.path = Path(path)
        self.digests = tuple(digests)
        self.lines = lines  # how many lines the analysis counted
        self.commands = commands  # of which commands (what the streamer reports as its total)
        self.block_bytes = block_bytes
        self.problem: str | None = None  # why the lines stopped early (the file changed)
        self._limit = lines
        # Opened now, on the preparing thread, and kept: the inbox may move the file away once it is
        # accepted, and a path re-opened later could be anything (a FIFO would block the streamer).
        self._file = self._open()
        self._rewind()

    def _open(self) -> BinaryIO | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            self._changed(f"it cannot be read any more: {exc.strerror or exc}")
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._changed("it is no regular file any more")
            return None
        return os.fdopen(fd, "rb")

    def close(self) -> None:
        """Let go of the file (the job ended)."""
        if self._file is not None:
            self._file.close()

    def _rewind(self) -> None:
        self._next = 0  # the index of the line that starts at self._pos in self._text
        self._text = ""
        self._pos = 0
        self._last: tuple[int, str] | None = None
        self._chunks = line_chunks(self._checked_blocks())

    def _checked_blocks(self) -> Iterator[bytes]:
        f = self._file
        if f is None:
            return
        try:
            f.seek(0)
            for k, digest in enumerate(self.digests):
                block = f.read(self.block_bytes) or b""
                if hashlib.sha256(block).digest() != digest:
                    self._changed(f"block {k + 1} of {len(self.digests)} differs")
                    return
                yield block[len(BOM) :] if k == 0 and block.startswith(BOM) else block
        except (OSError, ValueError) as exc:  # ValueError: closed
            self._changed(f"it cannot be read any more: {getattr(exc, 'strerror', None) or exc}")

    def _changed(self, why: str) -> None:
        self.problem = f"{self.path} changed since its preflight ({why}): the job stops"

    def __len__(self) -> int:
        return self._limit

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < self._limit:
            raise IndexError(index)
        if self._last is not None and self._last[0] == index:
            return self._last[1]
        if index < self._next:  # protocols read forward; going back costs a new read from the start
            self._rewind()
        text = ""
        while self._next <= index:
            if self._pos >= len(self._text):
                chunk = next(self._chunks, None)
                if chunk is not None and self.problem is not None and not chunk.endswith(b"\n"):
                    chunk = None  # the start of a line whose end was in the changed block: not sent
                if chunk is None:  # the file changed: a blank (never sent), and the lines end here
                    self._limit = index + 1
                    if self.problem is None:
                        self._changed("it is shorter")
                    return ""
                self._text, self._pos = chunk.decode("utf-8", errors="replace"), 0
            end = self._text.find("\n", self._pos)
            end = len(self._text) if end < 0 else end + 1
            text, self._pos = self._text[self._pos : end], end
            self._next += 1
        if text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        self._last = (index, text)
        return text


def block_reader(fd: int, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The file behind an open descriptor, in the blocks JobFile checks (full blocks but the last)."""
    with open(fd, "rb", closefd=False) as f:
        while block := f.read(block_bytes):
            yield block
