"""An upload's multipart body, fed chunk by chunk as it arrives, its file part written straight to disk.

The body is parsed by python-multipart (a streaming parser); nothing here holds the file in memory.
The size limit is checked on every chunk, so a too-large upload is refused the moment it passes the
limit; the first bytes are sniffed so that an STL or a binary file is refused before it is stored.
Every way out but `finish()` removes the partial file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, TypeVar

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

T = TypeVar("T")
RefusalKind = Literal["too_large", "not_gcode", "bad_name", "bad_form", "disk_full"]
FILE_FIELD = "file"
FORM_FIELDS = ("print", "select", "path", "userdata", "foldername", "filename")
FIELD_MAX = 4096  # a form field other than the file (OctoPrint's `path`, `print`, `select`)
FORM_OVERHEAD = 64 * 1024  # what a multipart body may carry beyond its file: boundaries, headers, fields
SNIFF_BYTES = 512
NAME_MAX = 200
_MODEL_SUFFIXES = (".stl", ".3mf", ".obj", ".step", ".stp", ".amf", ".bgcode", ".gcode.3mf")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PART = ".incoming-"


class UploadRefused(Exception):
    """An upload that cannot be kept; `kind` picks the HTTP status, the message is for the member."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class ReceivedFile:
    """A whole upload on disk, under a name the server chose, with the form's other fields."""

    path: Path
    name: str  # as the client named it, checked
    folder: str  # the `path` field, checked ("" when absent)
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type; UploadRefused(bad_form) otherwise."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if kind != b"multipart/form-data" or not 1 <= len(boundary) <= 70:
        raise UploadRefused("bad_form", f"Content-Type {content_type[:100]!r}: expected multipart/form-data "
                                        "with a boundary (the `file` field holds the G-code)")  # fmt: skip
    return boundary


def check_name(name: str, what: str = "file name") -> str:
    """A file name from the client, refused (bad_name) if it could leave the upload folder or hide."""
    if not name or len(name.encode()) > NAME_MAX:
        raise UploadRefused("bad_name", f"{what} {name[:80]!r}: 1 to {NAME_MAX} bytes expected")
    if _CONTROL.search(name):
        raise UploadRefused("bad_name", f"{what} {name[:80]!r} contains a NUL or control character")
    if "/" in name or "\\" in name or ".." in name or name.startswith(".") or re.match(r"[A-Za-z]:", name):
        raise UploadRefused("bad_name", f"{what} {name!r}: no folders, '..', drive letters or leading '.'")
    return name


def check_folder(folder: str) -> str:
    """The `path` form field (a folder below the upload folder): relative, no '..', no control chars."""
    if folder in ("", "/"):
        return ""  # PrusaSlicer sends the parent of a bare file name: "" (and OctoPrint's root is "/")
    if _CONTROL.search(folder):
        raise UploadRefused("bad_name", f"path {folder[:80]!r} contains a NUL or control character")
    if folder.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", folder):
        raise UploadRefused("bad_name", f"path {folder!r} is absolute: give a folder relative to the uploads")
    parts = [p for p in folder.replace("\\", "/").split("/") if p]
    for part in parts:
        check_name(part, "path")
    return "/".join(parts)


def sniff(head: bytes, name: str) -> None:
    """Refuse (not_gcode) a file whose name or first bytes say it is a model or binary, not G-code."""
    lower = name.lower()
    if lower.endswith(_MODEL_SUFFIXES):
        hint = ("binary G-code: switch off binary G-code in the slicer's printer settings"
                if lower.endswith(".bgcode") else "a 3D model: slice it first and send the G-code")
        raise UploadRefused("not_gcode", f"{name}: {hint}")  # fmt: skip
    if head.startswith(b"GCDE"):
        raise UploadRefused("not_gcode", f"{name}: binary G-code (bgcode); send text G-code")
    if head.lstrip().lower().startswith(b"solid") and b"facet" in head.lower():
        raise UploadRefused("not_gcode", f"{name}: an ASCII STL model, not G-code: slice it first")
    if head.startswith(b"PK\x03\x04"):
        raise UploadRefused("not_gcode", f"{name}: a ZIP archive (3MF?), not G-code text")
    if b"\x00" in head:
        raise UploadRefused("not_gcode", f"{name}: binary data (NUL bytes), not G-code text")
    text = head.removeprefix(b"\xef\xbb\xbf")
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(text) - 3:  # a multi-byte character cut by the sniff's end is fine
            raise UploadRefused("not_gcode", f"{name}: not text (byte {exc.start} is not UTF-8)") from None


def _open_part(folder: Path) -> tuple[Path, BinaryIO]:
    path = folder / f"{_PART}{secrets.token_hex(8)}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return path, os.fdopen(fd, "wb")


class UploadReceiver:
    """Feed it a multipart body chunk by chunk; `finish()` returns the file, `abort()` removes it."""

    def __init__(self, folder: Path, boundary: bytes, max_file_bytes: int,
                 open_part: Callable[[Path], tuple[Path, BinaryIO]] = _open_part) -> None:  # fmt: skip
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self._open_part = open_part
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_end": self._end,
        })  # fmt: skip
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._part_name: str | None = None
        self._part_filename: str | None = None
        self._value = bytearray()
        self._head = bytearray()
        self._sniffed = False
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._name = ""
        self._size = 0
        self._sha = hashlib.sha256()
        self._files = 0
        self._this_part_started = False
        self._ended = False
        self.fields: dict[str, str] = {}

    # --- python-multipart's callbacks ---------------------------------------------------------

    def _part_begin(self) -> None:
        self._part_name = self._part_filename = None
        self._this_part_started = False
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]
        if len(self._hvalue) > FIELD_MAX:
            raise UploadRefused("bad_form", "a part's header is longer than 4 KiB")

    def _header_end(self) -> None:
        if bytes(self._hname).lower() == b"content-disposition":
            _, options = parse_options_header(bytes(self._hvalue))
            self._part_name = options.get(b"name", b"").decode("utf-8", "replace")
            filename = options.get(b"filename")
            self._part_filename = None if filename is None else filename.decode("utf-8", "replace")
        self._hname.clear()
        self._hvalue.clear()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part_name != FILE_FIELD:
            self._value += chunk
            if len(self._value) > FIELD_MAX:
                raise UploadRefused("bad_form", f"form field {self._part_name!r} is longer than 4 KiB")
            return
        if not self._this_part_started:
            self._start_file()
        self._size += len(chunk)
        if self._size > self.max_file_bytes:
            limit_mb = self.max_file_bytes // (1024 * 1024)
            raise UploadRefused("too_large", f"{self._name}: larger than the limit of {limit_mb} MB "
                                             "([web] max_upload_mb)")
        self._sha.update(chunk)
        if not self._sniffed:
            self._head += chunk  # held back (one chunk at most) until there is enough to tell
            if len(self._head) < SNIFF_BYTES:
                return
            self._check_head()
            chunk = bytes(self._head)
            self._head.clear()
        self._write(chunk)

    def _part_end(self) -> None:
        if self._part_name == FILE_FIELD:
            if not self._this_part_started:
                self._start_file()
            if not self._sniffed:
                self._check_head()
                self._write(bytes(self._head))
        elif self._part_name:
            self.fields[self._part_name] = self._value.decode("utf-8", "replace")

    def _end(self) -> None:
        self._ended = True

    # --- the file ----------------------------------------------------------------------------

    def _start_file(self) -> None:
        self._this_part_started = True
        self._files += 1
        if self._files > 1:
            raise UploadRefused("bad_form", "more than one `file` field: send one G-code file per upload")
        if self._part_filename is None:
            raise UploadRefused("bad_form", "the `file` field has no filename")
        self._name = check_name(self._part_filename)
        self._path, self._file = self._disk(lambda: self._open_part(self.folder))

    def _check_head(self) -> None:
        self._sniffed = True
        sniff(bytes(self._head[:SNIFF_BYTES]), self._name)

    def _write(self, chunk: bytes) -> None:
        if chunk and self._file is not None:
            file = self._file
            self._disk(lambda: file.write(chunk))

    def _disk(self, act: Callable[[], T]) -> T:
        try:
            return act()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UploadRefused("disk_full", "the node's upload disk is full; ask a technician") from None
            raise

    # --- the caller's side -------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body; UploadRefused says why the upload cannot be kept."""
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise UploadRefused("bad_form", f"the multipart body is malformed: {exc}") from None

    def finish(self) -> ReceivedFile:
        """The body ended: flush the file to disk and return it with the form's fields."""
        if not self._ended or self._file is None or self._path is None:
            what = "ended early" if not self._ended else "has no `file` field"
            raise UploadRefused("bad_form", f"the upload {what} (send the G-code in the `file` field)")
        file = self._file
        self._disk(file.flush)
        self._disk(lambda: os.fsync(file.fileno()))
        file.close()
        self._file = None
        folder = check_folder(self.fields.get("path", ""))
        return ReceivedFile(self._path, self._name, folder, self._size, self._sha.hexdigest(),
                            dict(self.fields))

    def abort(self) -> None:
        """Remove whatever was written (a refused upload, a client that went away)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._path = None


def remove_leftovers(folder: Path) -> int:
    """Remove partial uploads a crash left behind (at start-up); return how many."""
    count = 0
    for path in folder.glob(f"{_PART}*.part"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            count += 1
    return count
