"""The status page at `/`: the files in fabnode/web/page/, a JSON snapshot, and a live stream of it.

    GET /             index.html (page.css and page.js under /page/); no CDN: lab networks are often offline
    GET /status.json  what the page shows, for polling
    GET /events       server-sent events: the same snapshot each time it changes

Looking needs no key; pausing, cancelling and uploading go to the OctoPrint API with the member's key.
Names appear only as `[web] show_member` allows: `page_view` copies the fields it shows, nothing else.
One `StatusFeed` asks the desk for every stream at once, on the event loop (a stream holds no worker
thread), and at most `MAX_STREAMS` are open at once (then 503: the page polls /status.json instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler, StaticFileHandler

from fabnode.web.context import WebContext
from fabnode.web.desk import Upload, upload_figures
from fabnode.web.octoprint import shown_member

log = logging.getLogger("fabnode.web")
PAGE_DIR = Path(__file__).resolve().parent / "page"
MAX_STREAMS = 16  # a kiosk and a few phones; each open stream costs a socket and a few KB, no thread
POLL_S = 1.0  # how often the feed asks the desk while a stream is open
HEARTBEAT_S = 15.0  # a comment line this often: a client that went away is noticed, proxies keep it open
RETRY_MS = 3000  # what EventSource waits before it reconnects
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")  # UploadHandler._queued names a file `<8 hex>-<name>`
_TEMPERATURE_ORDER = ("hotend", "bed", "chamber")
_SECURITY_HEADERS = {
    # Nothing inline, nothing from elsewhere: a hostile file name cannot run, even if it reached the DOM.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}  # fmt: skip


def _number(value: object, low: float = -math.inf, high: float = math.inf) -> float | None:
    """A finite number within bounds, else None (the page shows a dash; JSON never carries NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and low <= number <= high else None


def _text(value: object, limit: int = 300) -> str | None:
    """A string as the page shows it (bounded), or None."""
    return str(value)[:limit] if isinstance(value, str) and value else None


def _job(job: object) -> dict[str, Any] | None:
    if not isinstance(job, Mapping):
        return None
    name = os.path.basename(str(job.get("name") or job.get("file") or ""))  # never the node's folders
    if job.get("source") == "upload":
        name = _UPLOAD_PREFIX.sub("", name)  # the queue's unique prefix (octoprint.py): the slicer's name
    return {
        "id": job_id if isinstance(job_id := job.get("id"), int) and not isinstance(job_id, bool) else None,
        "name": _text(name),
        "status": _text(job.get("status"), 40),
        "pause_reason": _text(job.get("pause_reason")),
        "percent": _number(job.get("percent"), 0.0, 100.0),
        "elapsed_s": _number(job.get("elapsed_s"), 0.0),
        "eta_s": _number(job.get("eta_s"), 0.0),
        "filament_mm": _number(job.get("filament_mm"), 0.0),
    }


def _temperatures(temps: object) -> list[dict[str, Any]]:
    if not isinstance(temps, Mapping):
        return []
    names = sorted(temps, key=lambda n: (_TEMPERATURE_ORDER.index(n) if n in _TEMPERATURE_ORDER else 99, n))
    return [{"name": str(name)[:40], "actual": _number(reading.get("actual"), -300.0, 2000.0),
             "target": _number(reading.get("target"), -300.0, 2000.0)}
            for name in names if isinstance(reading := temps[name], Mapping)]  # fmt: skip


def _owner(upload: Upload, show: str) -> str | None:
    if upload.owner.role == "lab":
        return "lab key"  # not a person: the next trained member who taps may claim it
    return shown_member(upload.owner.name, show)


def _queued(upload: Upload, show: str) -> dict[str, Any]:
    figures = upload_figures(upload)
    return {"owner": _owner(upload, show), "file": _text(upload.name), "print_now": upload.print_now,
            **{key: _number(value, 0.0) for key, value in figures.items()}}


def _refused(status: Mapping[str, Any], show: str) -> dict[str, Any] | None:
    """The last refused tap: `last_refused` {reason, member?, at?}, or a refused `last_tap`."""
    tap = status.get("last_refused")
    if not isinstance(tap, Mapping):
        last = status.get("last_tap")
        tap = last if isinstance(last, Mapping) and last.get("granted") is False else None
    if tap is None or not _text(tap.get("reason")):
        return None
    member = tap.get("member")
    return {"reason": _text(tap.get("reason")), "at": _text(tap.get("at"), 40),
            "member": shown_member(member if isinstance(member, str) else None, show)}  # fmt: skip


def page_view(status: Mapping[str, Any], uploads: Sequence[Upload], show: str) -> dict[str, Any]:
    """What the page shows, from the desk's status and upload queue; names per `show` (show_member)."""
    return {
        "machine": _text(status.get("machine"), 80),
        "kind": _text(status.get("kind"), 20),
        "state": _text(status.get("state"), 20),
        "fault": _text(status.get("fault")),
        "member": shown_member(status.get("member") if isinstance(status.get("member"), str) else None, show),
        "job": _job(status.get("job")),
        "temperatures": _temperatures(status.get("temperatures")),
        "queue": [_queued(u, show) for u in uploads],
        "last_refused": _refused(status, show),
    }


class StatusFeed:
    """The page's snapshot, asked of the desk once per `POLL_S` while any stream is open."""

    def __init__(self, context: WebContext, max_streams: int = MAX_STREAMS, poll_s: float = POLL_S) -> None:
        self.context = context
        self.max_streams = max_streams
        self.poll_s = poll_s
        self.streams = 0
        self.version = 0
        self.text = ""
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def snapshot(self) -> dict[str, Any]:
        """A fresh snapshot (the desk's calls run on the worker pool)."""
        desk = self.context.desk
        status = await self.context.run(desk.status)
        uploads = await self.context.run(desk.uploads)
        return page_view(status, uploads, self.context.web.show_member)

    def join(self) -> bool:
        """Take a stream's place; False when `max_streams` are open already."""
        if self.streams >= self.max_streams:
            return False
        self.streams += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())
        return True

    def leave(self) -> None:
        """Give a stream's place back (the poller stops when none is left)."""
        self.streams = max(self.streams - 1, 0)

    async def newer_than(self, seen: int) -> tuple[int, str]:
        """Wait for a snapshot after version `seen`; its version and JSON text."""
        while self.version <= seen:
            await self._changed.wait()
        return self.version, self.text

    async def _poll(self) -> None:
        failing = False
        try:
            while self.streams > 0:
                try:
                    text = json.dumps(await self.snapshot(), sort_keys=True, allow_nan=False)
                except Exception:  # the streams keep the last snapshot; logged once per failing spell
                    if not failing:
                        log.exception("status page: the node's status could not be read")
                    failing = True
                else:
                    failing = False
                    if text != self.text:
                        self.text, self.version = text, self.version + 1
                        changed, self._changed = self._changed, asyncio.Event()
                        changed.set()
                await asyncio.sleep(self.poll_s)  # the desk has no change notice: ask it again
        finally:
            self._task = None


class PageFileHandler(StaticFileHandler):
    """index.html at `/`, page.css and page.js under /page/, with headers that forbid inline script."""

    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")  # revalidate (ETag): an upgraded node serves new files


class _FeedHandler(RequestHandler):
    def initialize(self, feed: StatusFeed) -> None:
        self.feed = feed

    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Cache-Control", "no-store")


class StatusJsonHandler(_FeedHandler):
    """GET /status.json: the page's snapshot, fresh."""

    async def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(await self.feed.snapshot(), sort_keys=True, allow_nan=False))


class EventsHandler(_FeedHandler):
    """GET /events: `text/event-stream`, one `data:` line per changed snapshot; 503 when full."""

    _gone: asyncio.Event | None = None

    def on_connection_close(self) -> None:
        if self._gone is not None:
            self._gone.set()

    async def get(self) -> None:
        if not self.feed.join():
            self.set_status(503)
            self.set_header("Retry-After", "30")
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"error": f"{self.feed.max_streams} live pages are open: "
                                             "poll /status.json instead"}))  # fmt: skip
            return
        self._gone = asyncio.Event()
        try:
            self.set_header("Content-Type", "text/event-stream; charset=utf-8")
            self.set_header("X-Accel-Buffering", "no")
            self.write(f"retry: {RETRY_MS}\n\n")
            await self.flush()
            await self._stream(self._gone)
        except StreamClosedError:
            pass  # the page was closed
        finally:
            self.feed.leave()
        with contextlib.suppress(StreamClosedError):
            self.finish()

    async def _stream(self, gone: asyncio.Event) -> None:
        seen = 0
        while not gone.is_set():
            newer = asyncio.ensure_future(self.feed.newer_than(seen))
            closed = asyncio.ensure_future(gone.wait())
            done, _ = await asyncio.wait({newer, closed}, timeout=HEARTBEAT_S,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            for task in (newer, closed):
                task.cancel()
            if newer in done:
                seen, text = newer.result()
                self.write(f"data: {text}\n\n")
            elif not done:
                self.write(": still here\n\n")
            else:
                return
            await self.flush()


def routes(context: WebContext) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """The page's routes, registered by the module that serves them."""
    feed = StatusFeed(context)
    return [
        (r"/()", PageFileHandler, {"path": str(PAGE_DIR), "default_filename": "index.html"}),
        (r"/page/(page\.css|page\.js)", PageFileHandler, {"path": str(PAGE_DIR)}),
        (r"/status\.json", StatusJsonHandler, {"feed": feed}),
        (r"/events", EventsHandler, {"feed": feed}),
    ]
