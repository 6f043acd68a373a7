"""A NodeDesk without a node: for tests and for trying a slicer against the API on a laptop.

It keeps uploads in a list and answers pause/cancel by the rules the daemon's desk follows (a member
acts on their own job, a technician on any, the lab key on none); it drives no machine.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabnode.gcode.analysis import analyze_file
from fabnode.machine.profile import MachineProfile
from fabnode.web.desk import Owner, Reply, Upload, refused_by_preflight


@dataclass
class FakeDesk:
    """Answers from fields a test sets; records every request in `calls`."""

    folder: Path
    profile: MachineProfile = field(default_factory=MachineProfile)
    keys: dict[str, Owner] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=lambda: {"machine": "prusa-mk4", "state": "locked",
                                                           "member": None, "job": None, "temperatures": {}})
    job_owner: str | None = None  # the member whose job is running
    refuse_upload: str | None = None  # a message: uploads are refused (e.g. "not trained on prusa-mk4")
    queued: list[Upload] = field(default_factory=list)
    calls: list[tuple[str, int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> Mapping[str, Any]:
        """The status a test set."""
        with self._lock:
            return dict(self.state)

    def uploads(self) -> Sequence[Upload]:
        """The uploads accepted so far."""
        with self._lock:
            return list(self.queued)

    def upload_folder(self) -> Path:
        """The folder a test gave."""
        return self.folder

    def machine_profile(self) -> MachineProfile:
        """The profile a test gave."""
        return self.profile

    def submit_upload(self, upload: Upload) -> Reply:
        """Refuse the upload with `refuse_upload`, or with its problems for `profile`; else queue it."""
        if self.refuse_upload is not None:
            return Reply("forbidden", self.refuse_upload)
        analysis = analyze_file(upload.path, self.profile, per_line=False)
        if analysis.problems:
            return refused_by_preflight(upload.name, [p.to_json() for p in analysis.problems])
        with self._lock:
            self.queued.append(dataclasses.replace(upload, analysis=analysis))
        return Reply("done")

    def _act(self, verb: str, job_id: int, who: Owner) -> Reply:
        with self._lock:
            self.calls.append((verb, job_id, who.name))
        if who.role == "lab":
            return Reply("forbidden", "the lab key uploads only")
        if who.role == "member" and who.name != self.job_owner:
            return Reply("forbidden", f"job {job_id} is {self.job_owner}'s, not yours")
        return Reply("done")

    def pause(self, job_id: int, who: Owner) -> Reply:
        """Record a pause."""
        return self._act("pause", job_id, who)

    def resume(self, job_id: int, who: Owner) -> Reply:
        """Record a resume."""
        return self._act("resume", job_id, who)

    def cancel(self, job_id: int, who: Owner) -> Reply:
        """Record a cancel."""
        return self._act("cancel", job_id, who)

    def key_owner(self, key: str) -> Owner | None:
        """The owner a test registered for the key."""
        return self.keys.get(key)
