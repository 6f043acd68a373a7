"""What the HTTP server asks of the node: the `NodeDesk` protocol and the values that cross it.

The daemon implements NodeDesk by posting events onto the controller's queue and waiting for the
reply; the server calls it from a worker thread (never its event loop), so a desk may block briefly.
Tests use a fake desk. Nothing here knows HTTP: a reply says what happened, in the lab's words, and
fabnode.web.octoprint picks the status code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from fabnode.gcode.analysis import Analysis
from fabnode.machine.profile import MachineProfile

# Who holds a key: a member (their own jobs), a technician (any job) or the lab (uploads only).
KeyRole = Literal["member", "technician", "lab"]
Outcome = Literal["done", "forbidden", "conflict", "not_found"]


@dataclass(frozen=True, slots=True)
class Owner:
    """The holder of an API key: `name` is the member's name, or "lab" for the lab key."""

    name: str
    role: KeyRole
    member_id: int | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """A G-code file that arrived whole; the desk preflights it and, once queued, holds its totals."""

    path: Path  # in the desk's upload folder, under a name the server chose
    name: str  # the file name the slicer gave (checked: no folders, no control characters)
    folder: str  # the `path` field (a folder the slicer asked for; "" for none), checked likewise
    size: int
    sha256: str
    owner: Owner
    print_now: bool  # `print=true`: start as soon as the owner's session and the machine allow
    select: bool  # `select=true`
    analysis: Analysis | None = field(default=None, repr=False)  # set by the desk that queued it


def upload_figures(upload: Upload) -> dict[str, float | None]:
    """A queued upload's estimated_s, filament_g and cost, rounded (None before its preflight)."""
    a = upload.analysis
    if a is None:
        return {"estimated_s": None, "filament_g": None, "cost": None}
    return {"estimated_s": round(a.estimated_s, 1), "filament_g": round(a.filament_g, 2),
            "cost": round(a.cost, 2)}


@dataclass(frozen=True, slots=True)
class Reply:
    """The node's answer to a request: `done`, or why not (`message` is shown to the member)."""

    outcome: Outcome
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the request was carried out."""
        return self.outcome == "done"


class NodeDesk(Protocol):
    """The node as the HTTP server sees it; every method may be called from any worker thread."""

    def status(self) -> Mapping[str, Any]:
        """The snapshot `fabnode status --json` prints (state, job with percent, temperatures...)."""
        ...

    def uploads(self) -> Sequence[Upload]:
        """The uploads waiting in the node's upload queue, oldest first."""
        ...

    def upload_folder(self) -> Path:
        """Where the server writes uploads (it exists, on the state dir's disk)."""
        ...

    def machine_profile(self) -> MachineProfile:
        """The machine that uploads are preflighted against."""
        ...

    def submit_upload(self, upload: Upload) -> Reply:
        """Preflight the upload and queue it (or start it); `forbidden` names why (e.g. not trained),
        `conflict` with `problems` (see `refused_by_preflight`) what the file gets wrong."""
        ...

    def pause(self, job_id: int, who: Owner) -> Reply:
        """Pause job `job_id` for `who` (a member only their own; the lab key never)."""
        ...

    def resume(self, job_id: int, who: Owner) -> Reply:
        """Resume job `job_id` for `who`."""
        ...

    def cancel(self, job_id: int, who: Owner) -> Reply:
        """Cancel job `job_id` the safe way for `who`."""
        ...

    def key_owner(self, key: str) -> Owner | None:
        """Who holds this API key (fabnode.records.api_keys.key_owner), or None for no such key."""
        ...


def refused_by_preflight(name: str, problems: Sequence[Mapping[str, object]]) -> Reply:
    """A desk's answer to a file that fails preflight: `problems` as {"line": n or None, "message": ...}."""
    return Reply("conflict", f"{name}: {len(problems)} problem(s) for this machine; nothing was kept",
                 {"problems": list(problems)})  # fmt: skip
