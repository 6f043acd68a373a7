"""The upload queue on disk: each upload's file in `<state dir>/uploads/`, beside a small JSON sidecar.

    uploads/<stored name>            the G-code, as the HTTP server stored it (fabnode.web.uploads)
    uploads/.queue/<id>.json         its sidecar while it waits: who, when, what the slicer asked
    uploads/started/<stored name>    once a tap (or print=true) made it a job; sidecar beside it (+job_id)
    uploads/stale/<stored name>      not started in time, or refused after a restart; sidecar (+reason)

A sidecar is written atomically (a temporary file, fsync, rename, fsync of the folder), so a crash
leaves either the old queue or the new one; the queue is read back at start-up. Nothing is deleted:
an upload leaves the queue by moving to started/ or stale/. Used from the daemon's threads; no
machine state here (fabnode.machine.upload_rules decides).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fabnode.envelope import utc_iso
from fabnode.node.durable_files import fsync_dir, write_json

log = logging.getLogger("fabnode.uploads")
SIDECAR_VERSION = 1
QUEUE = ".queue"
Shelf = Literal["started", "stale"]
_ID = re.compile(r"^[0-9a-f]{32}$")
_ROLES = ("member", "technician", "lab")


class SidecarError(ValueError):
    """A sidecar that cannot be read back; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """What a sidecar holds: enough to rebuild the queue entry after a restart."""

    id: str  # 32 hex digits: also the job's id once it starts
    file: str  # the stored file's name in the upload folder
    name: str  # the name the slicer gave
    folder: str  # the `path` field
    size: int
    sha256: str
    owner: str  # the key owner's name, or "lab"
    role: str  # member, technician or lab
    member_id: int | None
    print_now: bool
    select: bool
    received: str  # UTC ISO time it arrived (the wall clock: it outlives a restart)

    @property
    def received_at(self) -> datetime:
        """`received` as an aware datetime."""
        return datetime.fromisoformat(self.received.replace("Z", "+00:00"))


def _field(data: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):  # JSON true is no int
        raise SidecarError(f"{where}: field {key!r} is missing or of the wrong type ({value!r:.40})")
    return value


def parse_record(data: object, where: Path) -> UploadRecord:
    """A sidecar's JSON as a record; SidecarError names the file and the field that is wrong."""
    if not isinstance(data, dict) or data.get("version") != SIDECAR_VERSION:
        raise SidecarError(f"{where}: not a version {SIDECAR_VERSION} upload sidecar")
    ident = _field(data, "id", str, where)
    if not _ID.match(ident):
        raise SidecarError(f"{where}: field 'id' {ident!r:.40} is not 32 hex digits")
    file = _field(data, "file", str, where)
    if "/" in file or "\\" in file or file.startswith(".") or not file:
        raise SidecarError(f"{where}: field 'file' {file!r:.60} is not a file name in the upload folder")
    size = _field(data, "size", int, where)
    if not 0 <= size < 2**53:
        raise SidecarError(f"{where}: field 'size' {size} is out of range")
    role = _field(data, "role", str, where)
    if role not in _ROLES:
        raise SidecarError(f"{where}: field 'role' {role!r:.20}: expected member, technician or lab")
    member_id = data.get("member_id")
    if member_id is not None and (isinstance(member_id, bool) or not isinstance(member_id, int)):
        raise SidecarError(f"{where}: field 'member_id' {member_id!r:.20} is not a member id")
    received = _field(data, "received", str, where)
    try:
        stamp = datetime.fromisoformat(received.replace("Z", "+00:00"))
    except ValueError:
        raise SidecarError(f"{where}: field 'received' {received!r:.40} is not an ISO time") from None
    if stamp.tzinfo is None:
        raise SidecarError(f"{where}: field 'received' {received!r:.40} has no time zone")
    return UploadRecord(
        id=ident, file=file, name=_field(data, "name", str, where), folder=_field(data, "folder", str, where),
        size=size, sha256=_field(data, "sha256", str, where), owner=_field(data, "owner", str, where),
        role=role, member_id=member_id, print_now=_field(data, "print_now", bool, where),
        select=_field(data, "select", bool, where), received=received,
    )  # fmt: skip


class UploadStore:
    """The upload folder and its sidecars: save, move to started/ or stale/, read back."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.queue = folder / QUEUE
        for path in (folder, self.queue):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _sidecar(self, upload_id: str) -> Path:
        if not _ID.match(upload_id):
            raise ValueError(f"upload id {upload_id!r:.40} is not 32 hex digits")
        return self.queue / f"{upload_id}.json"

    def save(self, record: UploadRecord) -> None:
        """Write the upload's sidecar (atomically): from now on it is in the queue, across restarts."""
        write_json(self._sidecar(record.id), {"version": SIDECAR_VERSION, **asdict(record)})

    def forget(self, upload_id: str) -> None:
        """Drop a sidecar whose upload was refused (its file is the HTTP server's to remove)."""
        with contextlib.suppress(FileNotFoundError):
            self._sidecar(upload_id).unlink()
        fsync_dir(self.queue)

    def shelve(self, record: UploadRecord, shelf: Shelf, **extra: object) -> Path:
        """Move the file and its sidecar (with `extra`, e.g. reason or job_id) to started/ or stale/."""
        target = self.folder / shelf
        target.mkdir(mode=0o700, exist_ok=True)
        moved = target / record.file
        with contextlib.suppress(FileNotFoundError):  # a file gone by hand: its sidecar still says why
            os.replace(self.folder / record.file, moved)
        note = {"version": SIDECAR_VERSION, **asdict(record), **extra, shelf: utc_iso(datetime.now(UTC))}
        write_json(target / f"{record.file}.json", note)
        self.forget(record.id)
        return moved

    def load(self) -> list[UploadRecord]:
        """The queue as the sidecars say, oldest first; a sidecar that cannot be read is set aside in
        stale/ with the reason logged (its file stays where it is)."""
        records: list[UploadRecord] = []
        for path in sorted(self.queue.glob("*.json")):
            try:
                records.append(parse_record(json.loads(path.read_text(encoding="utf-8")), path))
            except (OSError, ValueError) as exc:  # SidecarError and JSON errors are ValueErrors
                log.error("upload queue: %s; moved to stale/", exc)
                (self.folder / "stale").mkdir(mode=0o700, exist_ok=True)
                with contextlib.suppress(OSError):
                    os.replace(path, self.folder / "stale" / path.name)
        return sorted(records, key=lambda r: r.received_at)
