"""The daemon's NodeDesk (fabnode.web.desk): the HTTP server's requests as controller events, and the
upload queue that print release works on (its rules: fabnode.machine.upload_rules; its files:
fabnode.node.uploads_store).

Every method runs on a web worker thread: what reads or changes the machine goes to the controller
thread with `Daemon.call` and waits for its reply, as the control socket does. An upload is checked
here before the controller hears of it: its owner's training (the access module's decision, as for a
tap), then preflight read in blocks (fabnode.node.prepare: flat memory, the same lines later streamed).
While an upload waits only its analysis's totals are held (the per-line figures of a 50 MB file are
over 100 MB); the tap that releases it has it preflighted again here (CheckUpload -> UploadChecked).

`status()` is the snapshot `fabnode status --json` prints, with two changes for OctoPrint's clients:
`job.id` is the job's row in the usage log (an integer, as `/api/job` and `POST /api/job` use it) and
`job.job_id` the controller's id. The fields the status page reads:

    machine, kind, state, member (the session's member's full name; the page applies show_member),
    session {member, role, started_s_ago, ...}, fault,
    job {id, job_id, file, status, percent, elapsed_s, eta_s, lines_acked, lines_total,
         filament_mm, source ("cli" | "inbox" | "upload"), uploaded_by}, last_job,
    temperatures {hotend: {actual, target}, bed: {...}},
    web {url, enabled, error, uploads: [upload entry, oldest first]},
    last_refused {reason, at (UTC ISO)} or None: the last tap refused (e.g. "not trained on X",
         "training expired on 2026-10-01").

An upload entry: {id, name, owner (a member's name or "lab"), role, print, size, received, expires,
claim_until (lab uploads; UTC ISO or None), waits_for, estimated_s, filament_g, cost}.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fabnode.config.settings import Config
from fabnode.envelope import utc_iso
from fabnode.gcode.analysis import Analysis
from fabnode.machine.actions import CheckUpload, ExpireUpload, TakeUpload
from fabnode.machine.actions import Reply as MachineReply
from fabnode.machine.controller import Controller
from fabnode.machine.events import (
    CancelRequested,
    PauseRequested,
    ResumeRequested,
    UploadChecked,
    UploadReceived,
)
from fabnode.machine.profile import MachineProfile
from fabnode.machine.state import LAB_OWNER, MemberRef, QueuedUpload, Role
from fabnode.node.actions import ActionRunner
from fabnode.node.jobs import JobBook
from fabnode.node.logsafe import shown
from fabnode.node.ports import Outcome
from fabnode.node.prepare import Preflight, preflight
from fabnode.node.requests import RequestHandler
from fabnode.node.taps import TapDesk
from fabnode.node.uploads_store import UploadRecord, UploadStore
from fabnode.records import api_keys
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from fabnode.web.desk import KeyRole, Owner, Reply, Upload, refused_by_preflight, upload_figures

if TYPE_CHECKING:  # tornado is imported only when `[web] enabled`: a node without it saves its memory
    from fabnode.web.server import WebServer

log = logging.getLogger("fabnode.web")
T = TypeVar("T")
UPLOADS_DIR = "uploads"


class WebHost(Protocol):
    """What the desk needs of the daemon (fabnode.node.loop.Daemon)."""

    @property
    def config(self) -> Config: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def log(self) -> UsageLog: ...
    @property
    def secret(self) -> bytes: ...
    @property
    def controller(self) -> Controller: ...
    @property
    def jobs(self) -> JobBook: ...
    @property
    def actions(self) -> ActionRunner: ...
    @property
    def taps(self) -> TapDesk: ...
    @property
    def requests(self) -> RequestHandler: ...

    def call(self, fn: Callable[[float], T], timeout: float = 10.0) -> T: ...

    def feed(self, event: Any) -> Outcome: ...

    def wall(self) -> datetime: ...

    def wait_settled(self) -> bool: ...


def totals_only(analysis: Analysis) -> Analysis:
    """The analysis without its per-line figures (its `_`-named series): what a waiting upload shows."""
    light = {f.name: f.default_factory() for f in dataclasses.fields(analysis)
             if f.name.startswith("_") and f.default_factory is not dataclasses.MISSING}  # fmt: skip
    return dataclasses.replace(analysis, **light)


def preflight_problems(pre: Preflight) -> list[dict[str, object]]:
    """What a file fails by, as the API shows it: its lines' problems, else what refused the file."""
    if pre.analysis is not None and pre.analysis.problems:
        return [p.to_json() for p in pre.analysis.problems]
    return [{"line": None, "message": message} for message in pre.problems]


def _key_role(text: str) -> KeyRole:
    return "lab" if text == "lab" else "technician" if text == "technician" else "member"


def _outcome(reply: MachineReply | None, data: Mapping[str, Any] | None = None) -> Reply:
    """The controller's reply in the desk's words (forbidden: not yours; conflict: not now)."""
    if reply is None:
        return Reply("conflict", "the controller gave no answer")
    if reply.ok:
        return Reply("done", reply.message, dict(data or {}))
    return Reply("forbidden" if reply.forbidden else "conflict", reply.message)


class WebDesk:
    """The NodeDesk of `fabnode run`, the upload queue's keeper, and the web server's starter."""

    def __init__(self, daemon: WebHost) -> None:
        self.d = daemon
        self.store = UploadStore(daemon.state_dir / UPLOADS_DIR)
        self.server: WebServer | None = None
        self.error: str | None = None  # why the server is not serving (a port in use)
        self._lock = threading.Lock()
        self._queued: dict[str, tuple[Upload, UploadRecord]] = {}  # by upload id, in arrival order
        daemon.actions.register(CheckUpload, self._check)
        daemon.actions.register(TakeUpload, self._taken)
        daemon.actions.register(ExpireUpload, self._expired)

    # --- start and stop (the controller thread) ---------------------------------------------------

    def start(self) -> None:
        """Read the queue back from disk (preflighted aside), then serve HTTP when `[web] enabled`."""
        # a waiting upload starts only if it can; its check (_check) waits for a board still greeting
        self.d.taps.link_problem = lambda: self.d.requests._link_problem(settling_blocks=False)
        records = self.store.load()
        if records:
            threading.Thread(target=self._restore, args=(records,), name="uploads-restore",
                             daemon=True).start()  # fmt: skip
        web = self.d.config.web
        if not web.enabled:
            return
        from fabnode.web.server import WebServer

        server = WebServer(self, web, announce_as=self.d.config.node.machine)
        try:
            server.start()
        except OSError as exc:  # the machine's access control goes on without its web page
            self.error = f"cannot listen on {web.listen}: {exc.strerror or exc}"
            log.error("web server: %s ([web] listen)", self.error)
            return
        self.server = server
        log.info("web server on %s (OctoPrint API, status page)", server.url)

    def stop(self) -> None:
        """Stop serving (a partial upload is removed by the server)."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    @property
    def url(self) -> str | None:
        """Where this host reaches the server, or None when it is not serving."""
        return self.server.url if self.server is not None else None

    # --- NodeDesk ---------------------------------------------------------------------------------

    def status(self) -> Mapping[str, Any]:
        """The snapshot of `fabnode status --json`, `job.id` the usage row's (see the module's docstring)."""
        status: dict[str, Any] = dict(self.d.requests.handle({"cmd": "status"})["status"])
        job = status.get("job")
        if isinstance(job, dict):
            status["job"] = {**job, "id": job.get("row"), "job_id": job.get("id")}
        return status

    def uploads(self) -> Sequence[Upload]:
        """The uploads waiting, oldest first."""
        with self._lock:
            return [upload for upload, _ in self._queued.values()]

    def upload_folder(self) -> Path:
        """`<state dir>/uploads`."""
        return self.store.folder

    def machine_profile(self) -> MachineProfile:
        """The machine in force."""
        return self.d.config.machine

    def key_owner(self, key: str) -> Owner | None:
        """Who holds the key (fabnode.records.api_keys), or None."""
        with self.d.log.locked() as db:
            holder = api_keys.key_owner(db, self.d.secret, key)
        if holder is None or holder.role not in ("member", "technician", "lab"):
            return None
        return Owner(holder.name, _key_role(holder.role), holder.member_id)

    def submit_upload(self, upload: Upload) -> Reply:
        """Check the owner's training, preflight the file, queue it (or start it: print=true in their
        session); refused at once, naming why, when the owner may not use this machine."""
        member = self._member(upload.owner)
        denial = self._denial(upload.owner)
        if denial is not None:  # a row of the table too: the controller refuses it, as a denied tap
            probe = QueuedUpload(uuid.uuid4().hex, upload.name, member, upload.print_now, float("inf"))
            reply = self.d.call(lambda now: self.d.feed(UploadReceived(now, probe, denial)).reply)
            return _outcome(reply)
        at = self.d.wall()
        record = UploadRecord(
            id=uuid.uuid4().hex, file=upload.path.name, name=upload.name, folder=upload.folder,
            size=upload.size, sha256=upload.sha256, owner=upload.owner.name, role=upload.owner.role,
            member_id=upload.owner.member_id, print_now=upload.print_now, select=upload.select,
            received=utc_iso(at),
        )  # fmt: skip
        self.store.save(record)  # in the queue from now on, whatever happens to this process
        try:
            return self._arrive(record, upload, restored=False)
        except BaseException:
            self.store.forget(record.id)
            with self._lock:
                self._queued.pop(record.id, None)
            raise

    def pause(self, job_id: int, who: Owner) -> Reply:
        """Pause job `job_id` (its usage row) for `who`: a member only their own, the lab key never."""
        return self._job_request(job_id, who, lambda now, by, jid: PauseRequested(now, by, jid))

    def resume(self, job_id: int, who: Owner) -> Reply:
        """Resume job `job_id` for `who`."""
        return self._job_request(job_id, who, lambda now, by, jid: ResumeRequested(now, by, jid))

    def cancel(self, job_id: int, who: Owner) -> Reply:
        """Cancel job `job_id` the safe way for `who`."""
        reason = f"cancelled over the API by {who.name}"
        return self._job_request(job_id, who, lambda now, by, jid: CancelRequested(now, reason, by, jid))

    # --- the status page's part of `fabnode status` (the controller thread) ------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """`web` and `last_refused` for `fabnode status` (see the module's docstring)."""
        web = self.d.config.web
        with self._lock:
            queued = list(self._queued.values())
        entries = []
        for upload, record in queued:
            received = record.received_at
            lab = upload.owner.role == "lab"
            entries.append({
                "id": record.id, "name": upload.name, "owner": upload.owner.name, "role": upload.owner.role,
                "print": upload.print_now, "size": upload.size, "received": record.received,
                "expires": utc_iso(received + timedelta(hours=web.upload_expiry_h)),
                "claim_until": utc_iso(received + timedelta(minutes=web.claim_window_min)) if lab else None,
                "waits_for": "a trained member's tap" if lab else f"{upload.owner.name}'s tap",
                **upload_figures(upload),
            })  # fmt: skip
        return {"web": {"url": self.url, "enabled": web.enabled, "error": self.error, "uploads": entries},
                "last_refused": self.d.taps.last_refused}  # fmt: skip

    # --- inside -----------------------------------------------------------------------------------

    @staticmethod
    def _member(owner: Owner) -> MemberRef | None:
        if owner.role == "lab" or owner.member_id is None:
            return None
        role: Role = "technician" if owner.role == "technician" else "member"
        return MemberRef(owner.member_id, role, owner.name)

    def _denial(self, owner: Owner) -> str | None:
        """Why this key's owner may not use this machine now (the access module's words), or None."""
        if owner.role == "lab" or owner.member_id is None:
            return None  # the lab key's uploads go to a trained member's tap
        machine = self.d.config.node.machine
        today = self.d.wall().astimezone().date()  # trainings expire by the lab's calendar
        with self.d.log.locked() as db:
            rows = list(db.query("SELECT badge_hash FROM members WHERE id = ? AND removed IS NULL",
                                 [owner.member_id]))  # fmt: skip
            badge = rows[0]["badge_hash"] if rows else None
            if badge is None:
                return f"{owner.name} has no badge registered on this node: ask a technician"
            decision = access.check_access(db, str(badge), machine, today)
        return None if decision.granted else f"{owner.name}: {decision.reason}"

    def _times(self, record: UploadRecord, now: float) -> tuple[float, float | None]:
        """The upload's deadlines on the controller's clock, from its wall-clock arrival (a restart)."""
        web = self.d.config.web
        age = max((self.d.wall() - record.received_at).total_seconds(), 0.0)
        arrived = now - age
        claim = arrived + 60.0 * web.claim_window_min if record.role == "lab" else None
        return arrived + 3600.0 * web.upload_expiry_h, claim

    def _arrive(self, record: UploadRecord, upload: Upload, *, restored: bool) -> Reply:
        """Preflight the file (blocks, flat memory), then hand it to the controller; its answer."""
        pre = preflight(self.store.folder / record.file, self.d.config.machine, self.d.config.max_job_bytes)
        if not pre.ok:
            if restored:
                self.store.shelve(record, "stale", reason=f"fails preflight: {'; '.join(pre.problems[:3])}")
            else:
                self.store.forget(record.id)
            return refused_by_preflight(upload.name, preflight_problems(pre))
        assert pre.analysis is not None  # pre.ok
        kept = dataclasses.replace(upload, analysis=totals_only(pre.analysis))
        if upload.print_now:
            self.d.wait_settled()  # a board reset by its port opening would lose the first lines

        def arrive(now: float) -> Reply:
            expires, claim = self._times(record, now)
            queued = QueuedUpload(record.id, upload.name, self._member(upload.owner), upload.print_now,
                                  expires, claim)  # fmt: skip
            with self._lock:
                self._queued[record.id] = (kept, record)
            link = self.d.requests._link_problem()
            outcome = self.d.feed(UploadReceived(now, queued, None, link, pre))
            reply = outcome.reply
            if reply is None or not reply.ok:
                with self._lock:
                    self._queued.pop(record.id, None)
                if restored:
                    self.store.shelve(record, "stale", reason=reply.message if reply else "no answer")
                else:
                    self.store.forget(record.id)
            elif outcome.not_started is not None:
                return Reply("conflict", f"{upload.name}: the job was not started: {outcome.not_started}")
            with self._lock:
                waiting = record.id in self._queued
            return _outcome(reply, {"upload_id": record.id, "queued": waiting})

        return self.d.call(arrive, timeout=30.0)

    def _restore(self, records: list[UploadRecord]) -> None:
        """The queue a restart found on disk, each preflighted again (the uploads-restore thread)."""
        for record in records:
            owner = Owner(record.owner, _key_role(record.role), record.member_id)
            try:
                denial = self._denial(owner)
                if denial is not None:
                    self.store.shelve(record, "stale", reason=f"refused after a restart: {denial}")
                    log.warning("upload %s: %s: moved to stale/", shown(record.name), shown(denial))
                    continue
                upload = Upload(self.store.folder / record.file, record.name, record.folder, record.size,
                                record.sha256, owner, record.print_now, record.select)
                reply = self._arrive(record, upload, restored=True)
                log.info("upload %s back in the queue: %s", shown(record.name), shown(reply.message))
            except Exception:  # one bad upload must not keep the others out of the queue
                log.exception("restoring upload %s", shown(record.name))

    def _job_request(self, job_id: int, who: Owner,
                     make: Callable[[float, MemberRef, str], Any]) -> Reply:  # fmt: skip
        if who.role == "lab":
            return Reply("forbidden", "the lab key uploads only: use your own key to pause or cancel a job")
        by = self._member(who)
        if by is None:
            return Reply("forbidden", "this key acts for no member")

        def ask(now: float) -> Reply:
            running = self.d.jobs.current
            if running is None or running.row_id != job_id:
                return Reply("not_found", f"job {job_id} is not running")
            return _outcome(self.d.feed(make(now, by, running.job_id)).reply)

        return self.d.call(ask)

    # --- the controller's actions (the controller thread) -----------------------------------------

    def _check(self, action: CheckUpload, now: float) -> None:
        """A tap released an upload: preflight it again on a thread of its own, then tell the controller."""
        with self._lock:
            entry = self._queued.get(action.upload_id)
        if entry is None:
            return
        path = self.store.folder / entry[1].file

        def check() -> None:
            try:
                pre = preflight(path, self.d.config.machine, self.d.config.max_job_bytes)
                if pre.ok:
                    self.d.wait_settled()
                link = self.d.requests._link_problem

                def checked(later: float) -> None:
                    event = UploadChecked(later, action.upload_id, action.member_id, pre if pre.ok else None,
                                          tuple(pre.problems), link())  # fmt: skip
                    reply = self.d.feed(event).reply
                    log.info("upload %s: %s", shown(entry[1].name), shown(reply.message if reply else "?"))

                self.d.call(checked, timeout=60.0)
            except Exception:  # the upload stays in the queue: the next tap tries again
                log.exception("checking upload %s", shown(entry[1].name))

        threading.Thread(target=check, name="upload-check", daemon=True).start()

    def _taken(self, action: TakeUpload, now: float) -> None:
        with self._lock:
            entry = self._queued.pop(action.upload_id, None)
        if entry is not None:
            self.store.shelve(entry[1], "started", job_id=action.job_id)

    def _expired(self, action: ExpireUpload, now: float) -> None:
        with self._lock:
            entry = self._queued.pop(action.upload_id, None)
        if entry is not None:
            moved = self.store.shelve(entry[1], "stale", reason=action.reason)
            log.info("upload %s moved to %s: %s", shown(entry[1].name), shown(moved.parent), action.reason)


__all__ = ["LAB_OWNER", "WebDesk", "WebHost"]
