"""OctoPrint's REST API as slicers and apps use it, with the field names of OctoPrint's documentation.

Shapes follow OctoPrint's docs/api/{version,server,files,job,printer,connection}.rst and
datamodel.rst (1.10); the upload takes the fields PrusaSlicer's src/slic3r/Utils/OctoPrint.cpp sends
(`print`, `path`, then `file`). Every route needs an API key (X-Api-Key, Authorization: Bearer, or
`apikey=`): none 401, unknown 403. What a request may do is the desk's decision; here its reply
becomes a status code.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tornado.log import app_log
from tornado.web import HTTPError, RequestHandler, stream_request_body

from fabnode import __version__
from fabnode.web.context import WebContext
from fabnode.web.desk import Owner, Reply, Upload
from fabnode.web.uploads import FORM_OVERHEAD, ReceivedFile, UploadReceiver, UploadRefused, boundary_of

OCTOPRINT_VERSION = "1.10.0"  # the OctoPrint API level served; clients compare it
_REFUSAL_STATUS = {"too_large": 413, "not_gcode": 415, "bad_name": 400, "bad_form": 400, "disk_full": 507}
_REPLY_STATUS = {"done": 200, "forbidden": 403, "conflict": 409, "not_found": 404}
_TRUE = ("true", "1", "yes", "on")


def _octoprint_state(status: Mapping[str, Any]) -> tuple[str, dict[str, bool]]:
    """OctoPrint's state text and flags for the node's state."""
    state = str(status.get("state", ""))
    printing, paused, error = state == "running", state == "paused", state == "fault"
    text = {"running": "Printing", "paused": "Paused", "fault": "Error"}.get(state, "Operational")
    flags = {
        "operational": not error, "paused": paused, "printing": printing, "pausing": False,
        "cancelling": False, "sdReady": False, "error": error, "ready": not (error or printing or paused),
        "closedOrError": error, "finishing": False, "resuming": False,
    }  # fmt: skip
    return text, flags


def shown_member(name: str | None, show: str) -> str | None:
    """A member's name as `[web] show_member` allows: none, the first name, or in full."""
    if not name or show == "none":
        return None
    return name.split()[0] if show == "first-name" else name


class ApiHandler(RequestHandler):
    """The base of every route: the key, JSON replies, OctoPrint-style errors."""

    owner: Owner | None = None

    def _request_summary(self) -> str:
        # tornado's own logs quote the whole URI; a key passed as ?apikey= must never reach a log
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:  # fmt: skip
        """As tornado's, without its repr of the request (which holds the query string and headers)."""
        if isinstance(value, HTTPError):
            super().log_exception(typ, value, tb)  # logs the summary only
            return
        app_log.error("uncaught exception %s", self._request_summary(), exc_info=(typ, value, tb))  # type: ignore[arg-type]

    @property
    def fab(self) -> WebContext:
        """The server's context: the desk, `[web]` settings and the worker pool."""
        context: WebContext = self.settings["fabnode"]
        return context

    def api_key(self) -> str | None:
        """The key from X-Api-Key, `Authorization: Bearer`, or the `apikey` query argument."""
        key = self.request.headers.get("X-Api-Key")
        if not key:
            scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
            key = value.strip() if scheme.lower() == "bearer" else None
        if not key:
            key = self.get_query_argument("apikey", None)
        return key.strip() if key else None

    async def prepare(self) -> None:
        """Every route needs a known key: none 401, unknown 403."""
        key = self.api_key()
        if key is None:
            self.fail(401, "no API key: send it in the X-Api-Key header (the slicer's API key field)")
            return
        self.owner = await self.fab.run(self.fab.desk.key_owner, key)
        if self.owner is None:
            self.fail(403, "this API key is not known (or was revoked): ask a technician for yours")

    def reply(self, body: Mapping[str, Any], status: int = 200) -> None:
        """Send a JSON body."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def fail(self, status: int, message: str, **extra: Any) -> None:
        """An error as OctoPrint sends one ({"error": ...}), plus the lab's details."""
        if not self._finished:
            self.reply({"error": message, **extra}, status)

    def answer(self, reply: Reply) -> None:
        """The desk's reply: 204 when done (as OctoPrint's job commands), else its refusal."""
        if reply.ok:
            self.set_status(204)
            self.finish()
        else:
            self.fail(_REPLY_STATUS[reply.outcome], reply.message, **dict(reply.data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Uncaught errors as JSON, never a traceback page."""
        self.reply({"error": self._reason}, status_code)

    async def status(self) -> Mapping[str, Any]:
        """The node's status snapshot, from the desk."""
        return await self.fab.run(self.fab.desk.status)


class VersionHandler(ApiHandler):
    """GET /api/version (docs/api/version.rst)."""

    async def get(self) -> None:
        self.reply({"api": "0.1", "server": OCTOPRINT_VERSION,
                    "text": f"OctoPrint {OCTOPRINT_VERSION} (fabnode {__version__})"})  # fmt: skip


class ServerHandler(ApiHandler):
    """GET /api/server (docs/api/server.rst)."""

    async def get(self) -> None:
        self.reply({"version": OCTOPRINT_VERSION, "safemode": None})


class SettingsHandler(ApiHandler):
    """GET /api/settings (docs/api/settings.rst), the part Cura's OctoPrint Connection plugin reads to
    accept a key: no SD card, no webcam."""

    async def get(self) -> None:
        self.reply({"feature": {"sdSupport": False}, "webcam": {"webcamEnabled": False, "streamUrl": ""}})


class NotFoundHandler(ApiHandler):
    """Any other path: 404 as JSON, with or without a key (Cura probes /plugin/appkeys/probe)."""

    async def prepare(self) -> None:
        self.fail(404, f"{self.request.path}: not served by this node")


class ConnectionHandler(ApiHandler):
    """GET /api/connection (docs/api/connection.rst): the node keeps its own connection to the machine."""

    async def get(self) -> None:
        status = await self.status()
        text, flags = _octoprint_state(status)
        port = status.get("port")
        port_name = port.get("path") if isinstance(port, Mapping) else None
        baud = port.get("baud") if isinstance(port, Mapping) else None
        profile = {"id": "_default", "name": str(status.get("machine", "fabnode"))}
        self.reply({
            "current": {"state": text if flags["operational"] else "Error", "port": port_name,
                        "baudrate": baud, "printerProfile": "_default"},
            "options": {"ports": [port_name] if port_name else [], "baudrates": [baud] if baud else [],
                        "printerProfiles": [profile],
                        "portPreference": port_name, "baudratePreference": baud,
                        "printerProfilePreference": "_default", "autoconnect": True},
        })  # fmt: skip


class PrinterHandler(ApiHandler):
    """GET /api/printer (docs/api/printer.rst): state flags and temperature.tool0 / bed."""

    async def get(self) -> None:
        status = await self.status()
        text, flags = _octoprint_state(status)
        temperature: dict[str, Any] = {}
        temps = status.get("temperatures") or {}
        for ours, theirs in (("hotend", "tool0"), ("bed", "bed"), ("chamber", "chamber")):
            reading = temps.get(ours)
            if isinstance(reading, Mapping):
                temperature[theirs] = {"actual": reading.get("actual"), "target": reading.get("target"),
                                       "offset": 0}  # fmt: skip
        self.reply({"temperature": temperature, "sd": {"ready": False},
                    "state": {"text": text, "flags": flags}})


class JobHandler(ApiHandler):
    """GET and POST /api/job (docs/api/job.rst): progress, and `cancel` / `pause` for the key's owner."""

    async def get(self) -> None:
        status = await self.status()
        text, _ = _octoprint_state(status)
        job = status.get("job") if isinstance(status.get("job"), Mapping) else None
        show = self.fab.web.show_member
        if job is None:
            nothing = {"name": None, "origin": None, "size": None, "date": None, "path": None}
            self.reply({"job": {"file": nothing,
                                "estimatedPrintTime": None, "lastPrintTime": None,
                                "filament": None, "user": None},
                        "progress": {"completion": None, "filepos": None, "printTime": None,
                                     "printTimeLeft": None, "printTimeLeftOrigin": None},
                        "state": text})  # fmt: skip
            return
        name = os.path.basename(str(job.get("file") or "")) or None
        filament = job.get("filament_mm")
        self.reply({
            "job": {"file": {"name": name, "origin": "local", "size": None, "date": None, "path": name,
                             "display": name},
                    "estimatedPrintTime": job.get("estimated_s"), "lastPrintTime": None,
                    "filament": None if filament is None else {"tool0": {"length": filament, "volume": None}},
                    "user": shown_member(status.get("member"), show)},
            "progress": {"completion": job.get("percent"), "filepos": None, "printTime": job.get("elapsed_s"),
                         "printTimeLeft": job.get("eta_s"),
                         "printTimeLeftOrigin": None if job.get("eta_s") is None else "linear"},
            "state": text,
        })  # fmt: skip

    async def post(self) -> None:
        owner = self.owner
        assert owner is not None  # prepare() finished the request otherwise
        try:
            body = json.loads(self.request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            self.fail(400, "the body must be JSON, e.g. {\"command\": \"pause\", \"action\": \"pause\"}")
            return
        command = body.get("command") if isinstance(body, dict) else None
        if command not in ("cancel", "pause"):
            self.fail(400, f"command {command!r}: this node serves 'cancel' and 'pause' (a job starts "
                           "with its member's badge)")  # fmt: skip
            return
        action = body.get("action", "toggle") if command == "pause" else None
        if action not in (None, "pause", "resume", "toggle"):
            self.fail(400, f"action {action!r}: expected pause, resume or toggle")
            return
        if owner.role == "lab":
            self.fail(403, "the lab key uploads only: use your own key to pause or cancel a job")
            return
        status = await self.status()
        job = status.get("job")
        if not isinstance(job, Mapping) or not isinstance(job.get("id"), int):
            self.fail(409, "no job is running")
            return
        verb = "cancel" if command == "cancel" else action
        if verb == "toggle":
            verb = "resume" if status.get("state") == "paused" else "pause"
        desk = self.fab.desk
        call = {"cancel": desk.cancel, "pause": desk.pause, "resume": desk.resume}[str(verb)]
        self.answer(await self.fab.run(call, int(job["id"]), owner))


def _file_entry(upload: Upload) -> dict[str, Any]:
    """One file as OctoPrint's datamodel lists it (docs/api/datamodel.rst, File information)."""
    path = f"{upload.folder}/{upload.name}" if upload.folder else upload.name
    analysis = upload.analysis
    figures = None if analysis is None else {
        "estimatedPrintTime": round(analysis.estimated_s, 1),
        "filament": {"tool0": {"length": round(analysis.filament_mm, 2), "volume": None}}}
    return {
        "name": upload.name, "display": upload.name, "path": path, "type": "machinecode",
        "typePath": ["machinecode", "gcode"], "origin": "local", "size": upload.size, "hash": upload.sha256,
        "refs": {"resource": f"/api/files/local/{path}"},
        "gcodeAnalysis": figures,
        "prints": {"success": 0, "failure": 0},
    }  # fmt: skip


class FilesHandler(ApiHandler):
    """GET /api/files and /api/files/local (docs/api/files.rst): the uploads waiting on this node."""

    async def get(self) -> None:
        uploads = await self.fab.run(self.fab.desk.uploads)
        folder = await self.fab.run(self.fab.desk.upload_folder)
        disk = shutil.disk_usage(folder)
        self.reply({"files": [_file_entry(u) for u in uploads], "free": disk.free, "total": disk.total})


@stream_request_body
class UploadHandler(FilesHandler):
    """POST /api/files/local: the multipart body streamed to disk and handed to the desk, which
    preflights it (once: the daemon's preflight also keeps the block digests the job is checked by)."""

    receiver: UploadReceiver | None = None

    async def prepare(self) -> None:
        await super().prepare()
        if self._finished or self.request.method != "POST":
            return
        limit = self.fab.web.max_upload_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit + FORM_OVERHEAD:
            mb, limit_mb = int(length) // (1024 * 1024), limit // (1024 * 1024)
            self.refuse(UploadRefused("too_large", f"the upload is {mb} MB; the limit is {limit_mb} MB "
                                                   "([web] max_upload_mb)"))
            return
        try:
            boundary = boundary_of(self.request.headers.get("Content-Type", ""))
        except UploadRefused as refused:
            self.refuse(refused)
            return
        self.request.connection.set_max_body_size(limit + FORM_OVERHEAD)  # type: ignore[union-attr]
        folder = await self.fab.run(self.fab.desk.upload_folder)
        self.receiver = UploadReceiver(folder, boundary, limit)

    def data_received(self, chunk: bytes) -> None:
        """A chunk of the body: into the receiver, which writes the file part to disk."""
        if self._finished or self.receiver is None:
            return  # refused already: the rest of the body is read and dropped, then the connection closes
        try:
            self.receiver.feed(chunk)
        except UploadRefused as refused:
            self.refuse(refused)

    def refuse(self, refused: UploadRefused, **extra: Any) -> None:
        """Remove what was written, answer with the refusal's status; the connection closes after."""
        if self.receiver is not None:
            self.receiver.abort()
        self.fail(_REFUSAL_STATUS[refused.kind], refused.message, **extra)

    def on_connection_close(self) -> None:
        """The client went away mid-upload: nothing of it stays."""
        if self.receiver is not None:
            self.receiver.abort()

    async def post(self) -> None:
        receiver, owner = self.receiver, self.owner
        assert receiver is not None and owner is not None  # prepare() finished the request otherwise
        try:
            received = receiver.finish()
        except UploadRefused as refused:
            self.refuse(refused)
            return
        upload = self._queued(received, owner)
        try:
            reply = await self.fab.run(self.fab.desk.submit_upload, upload)
        except BaseException:
            _remove(upload.path)
            raise
        if not reply.ok:
            _remove(upload.path)  # refused (not trained, ...): kept nowhere
            self.fail(_REPLY_STATUS[reply.outcome], reply.message, **dict(reply.data))
            return
        entry = _file_entry(upload)
        self.set_header("Location", f"{self.request.protocol}://{self.request.host}{entry['refs']['resource']}")
        self.reply({"files": {"local": {"name": upload.name, "path": entry["path"], "origin": "local",
                                        "refs": entry["refs"]}},
                    "done": True, "effectivePrint": upload.print_now, "effectiveSelect": upload.select},
                   201)  # fmt: skip

    def _queued(self, received: ReceivedFile, owner: Owner) -> Upload:
        """The received file under its queue name (unique, so two uploads of one name both stay)."""
        final = received.path.with_name(f"{secrets.token_hex(4)}-{received.name}")
        os.replace(received.path, final)
        self.receiver = None  # the file is no longer a partial upload
        fields = received.fields
        return Upload(path=final, name=received.name, folder=received.folder, size=received.size,
                      sha256=received.sha256, owner=owner,
                      print_now=fields.get("print", "").lower() in _TRUE,
                      select=fields.get("select", "").lower() in _TRUE)  # fmt: skip


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def routes() -> list[tuple[str, type[RequestHandler]]]:
    """The API's routes, registered by the module that serves them."""
    return [
        (r"/api/version", VersionHandler),
        (r"/api/server", ServerHandler),
        (r"/api/settings", SettingsHandler),
        (r"/api/connection", ConnectionHandler),
        (r"/api/printer", PrinterHandler),
        (r"/api/job", JobHandler),
        (r"/api/files", FilesHandler),
        (r"/api/files/local", UploadHandler),
    ]

