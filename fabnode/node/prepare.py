"""Preparing a job's file: the checks before reading, then one read in blocks that hashes and analyses it.

Only a regular file up to `[machine] max_job_mb` is read, and its size is checked before the first byte
(`fabnode print /dev/zero` once grew the daemon to 9 GB). The file is read in blocks of
fabnode.node.job_file.BLOCK_BYTES: each block is hashed, split into lines and fed to the analysis, so memory
stays flat in the file's size (the analysis's per-line figures go to files: fabnode.node.job_series)
and no single step holds the interpreter long (the controller thread runs between blocks: the e-stop
stays prompt). What runs
later is read from disk again by fabnode.node.job_file.JobFile, block by block, checked against the
digests kept here: the bytes checked are the bytes run. Runs on a worker thread, never the
controller's.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabnode.gcode import analysis as gcode_analysis
from fabnode.gcode.analysis import Analysis
from fabnode.machine.profile import MachineProfile
from fabnode.node.job_file import BLOCK_BYTES, JobFile, block_reader
from fabnode.node.job_series import SeriesFiles

DEFAULT_MAX_BYTES = 200 * 1024 * 1024  # [machine] max_job_mb's default
Progress = Callable[[int, int], None]  # (bytes read, bytes in the file)


@dataclass(frozen=True, slots=True)
class Preflight:
    """A file read and analysed before a job: where its lines come from, its hash and what is wrong."""

    path: Path
    source: JobFile | None  # the lines that will be streamed, read from disk as they go
    sha256: str
    analysis: Analysis | None
    problems: list[str]
    size: int = 0

    @property
    def ok(self) -> bool:
        """No problem: the file may run."""
        return not self.problems and self.analysis is not None and self.source is not None

    @property
    def lines(self) -> list[str]:
        """Every line as it will be streamed, read from disk now (for a look at a small file only)."""
        return list(self.source) if self.source is not None else []


def size_text(n: int) -> str:
    """A file size as a technician reads it (bytes, kB, MB, GB)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder, not a G-code file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file: only regular files are read"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO), not a regular file: only regular files are read"
    return "not a regular file: only regular files are read"


def too_large(size: int, max_bytes: int) -> str:
    """The refusal of a file over the limit: its size and the limit, and where the limit is set."""
    return (f"{size_text(size)} ({size} bytes), over the node's limit of {size_text(max_bytes)} "
            "([machine] max_job_mb)")  # fmt: skip


def _refused(path: Path, problem: str, size: int = 0) -> Preflight:
    return Preflight(path, None, "", None, [problem], size)


def preflight(path: Path, profile: MachineProfile, max_bytes: int = DEFAULT_MAX_BYTES,
              progress: Progress | None = None) -> Preflight:  # fmt: skip
    """Check, read and analyse a file against the machine; `problems` are lines like `line 12: ...`."""
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        return _refused(path, "a folder, not a G-code file")
    except OSError as exc:
        return _refused(path, f"cannot be read: {exc.strerror or exc}")
    try:
        info = os.fstat(fd)  # of what was opened: a file swapped after a check cannot slip through
        if not stat.S_ISREG(info.st_mode):
            return _refused(path, _kind(info.st_mode))
        if info.st_size > max_bytes:
            return _refused(path, too_large(info.st_size, max_bytes), info.st_size)
        os.set_blocking(fd, True)
        return _read(path, fd, info.st_size, profile, max_bytes, progress)
    except OSError as exc:
        return _refused(path, f"cannot be read: {exc.strerror or exc}")
    finally:
        os.close(fd)


class _TooLarge(Exception):
    """The file grew past the limit while it was read."""


def _read(path: Path, fd: int, size: int, profile: MachineProfile, max_bytes: int,
          progress: Progress | None) -> Preflight:  # fmt: skip
    whole = hashlib.sha256()
    digests: list[bytes] = []
    read = 0

    def blocks() -> Iterator[bytes]:
        nonlocal read
        for block in block_reader(fd, BLOCK_BYTES):
            read += len(block)
            if read > max_bytes:
                raise _TooLarge
            whole.update(block)
            digests.append(hashlib.sha256(block).digest())
            if progress is not None:
                progress(read, max(size, read))
            yield block

    try:  # the per-line figures go to disk as they come (SeriesFiles)
        analysis = gcode_analysis.analyze_blocks(blocks(), profile, SeriesFiles())
    except _TooLarge:
        return _refused(path, f"grew while it was read: {too_large(read, max_bytes)}", read)
    problems = [f"line {p.line}: {p.message}" for p in analysis.problems]
    if analysis.commands == 0 and not problems:
        problems.append("the file holds no G-code command")
    source = JobFile(path, digests, analysis.lines, analysis.commands, BLOCK_BYTES)
    return Preflight(path, source, whole.hexdigest(), analysis, problems, read)


class Preparation:
    """One file being prepared for `print`: how far its read is, and the answer once it ended."""

    def __init__(self, path: Path, started: float) -> None:
        self.path = path
        self.started = started
        self.read = (0, 0)  # (bytes read, bytes in the file): written by the job-prepare thread
        self.done = threading.Event()
        self.answer: dict[str, Any] = {}

    def progress(self, read: int, size: int) -> None:
        """The job-prepare thread read this far (a tuple: one atomic store)."""
        self.read = (read, size)


class Preparations:
    """At most one file prepared at a time (its read and analysis take memory and a core), and the last."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Preparation | None = None
        self._last: dict[str, Any] | None = None

    def begin(self, path: Path) -> Preparation | str:
        """A new preparation, or why not (another file is still being prepared)."""
        with self._lock:
            if self._current is not None:
                return (f"{self._current.path} is still being prepared: {path} was not taken "
                        "(`fabnode status` shows when it started or was refused)")  # fmt: skip
            self._current = Preparation(path, self._clock())
            return self._current

    def end(self, prep: Preparation, answer: dict[str, Any]) -> None:
        """The preparation ended with this answer (the job started, or why not)."""
        with self._lock:
            prep.answer = answer
            said = answer.get("message") if answer.get("ok") else answer.get("error")
            self._last = {"file": str(prep.path), "started": bool(answer.get("ok")), "message": said,
                          "took_s": round(self._clock() - prep.started, 1)}  # fmt: skip
            if self._current is prep:
                self._current = None
        prep.done.set()

    def snapshot(self) -> dict[str, Any]:
        """What `fabnode status` shows under `preparation`: the file being read, and the last one's end."""
        with self._lock:
            prep, last = self._current, self._last
        current = None
        if prep is not None:
            read, size = prep.read
            current = {"file": str(prep.path), "bytes_read": read, "bytes": size,
                       "percent": round(100.0 * read / size, 1) if size else 0.0,
                       "elapsed_s": round(self._clock() - prep.started, 1)}  # fmt: skip
        return {"current": current, "last": last}
