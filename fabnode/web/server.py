"""The node's HTTP server: tornado on its own thread, serving the routes of fabnode.web.octoprint.

Tornado (pure Python, one event loop thread, `@stream_request_body` for uploads) keeps a Pi Zero 2 W's
memory for the machine: see the commit that added it for the figures. Blocking work (the desk's calls,
preflight of a finished upload) runs on a small worker pool, so one slow request never stalls the
others, nor a client that trickles its headers (tornado reads every connection on the one loop).

    server = WebServer(desk, settings, announce_as="prusa-mk4")  # `[web] announce`: _octoprint._tcp
    server.start()            # or start(("127.0.0.1", 0)): a free loopback port
    server.url                # http://127.0.0.1:5000
    server.stop()
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from fabnode.config.web import WebSettings
from fabnode.web.announce import Announcer
from fabnode.web.context import WebContext
from fabnode.web.desk import NodeDesk
from fabnode.web.octoprint import OCTOPRINT_VERSION, NotFoundHandler, routes
from fabnode.web.page import routes as page_routes
from fabnode.web.uploads import remove_leftovers

log = logging.getLogger("fabnode.web")
HEADER_TIMEOUT_S = 30.0  # a client that has not sent its whole request head by then is dropped
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def log_request(handler: RequestHandler) -> None:
    """One line per request, without the query string: `?apikey=` must never reach a log."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    log.log(level, "%d %s %s (%s) %.1f ms", status, request.method, request.path, request.remote_ip,
            1000.0 * request.request_time())


class WebServer:
    """The HTTP server in its own thread: `start(listen)`, `url`, `stop()`."""

    def __init__(self, desk: NodeDesk, settings: WebSettings, *, announce_as: str | None = None,
                 workers: int = 2) -> None:  # fmt: skip
        self.settings = settings
        self._announcer = (Announcer(announce_as, settings.host, 0, OCTOPRINT_VERSION)
                           if settings.announce and announce_as else None)  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fabnode-web")
        self.context = WebContext(desk, settings, self._pool)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HTTPServer | None = None
        self._host = ""
        self._port = 0

    @property
    def url(self) -> str:
        """Where a client on this host reaches the server (a wildcard address becomes loopback)."""
        host = _WILDCARDS.get(self._host, self._host)
        return f"http://[{host}]:{self._port}" if ":" in host else f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        """The port bound (the free one picked when the config said 0)."""
        return self._port

    def start(self, listen: tuple[str, int] | None = None) -> None:
        """Bind (errors such as a port in use raise here, in the caller's thread) and serve.

        Partial uploads an earlier run left (a crash mid-upload) are removed first."""
        host, port = listen if listen is not None else (self.settings.host, self.settings.port)
        removed = remove_leftovers(self.context.desk.upload_folder())
        if removed:
            log.warning("removed %d partial upload(s) left by an earlier run", removed)
        sockets = bind_sockets(port, host or None, reuse_port=False)
        self._host, self._port = host, sockets[0].getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sockets, ready), name="fabnode-web",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        ready.wait()
        if self._announcer is not None:
            self._announcer.host, self._announcer.port = host, self._port
            self._announcer.start()

    def _serve(self, sockets: list[Any], ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        app = Application([*routes(), *page_routes(self.context)], fabnode=self.context,
                          compress_response=False, xheaders=False, default_handler_class=NotFoundHandler,
                          log_function=log_request)  # fmt: skip
        self._server = HTTPServer(
            app,
            idle_connection_timeout=HEADER_TIMEOUT_S,
            max_header_size=64 * 1024,
            max_buffer_size=4 * 1024 * 1024,
            max_body_size=1024 * 1024,  # an upload handler raises its own limit for its request
            chunk_size=64 * 1024,
        )
        self._server.add_sockets(sockets)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening, close every connection (a partial upload is removed), end the thread."""
        if self._announcer is not None:
            self._announcer.stop()
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None:
            return

        async def shut() -> None:
            server.stop()
            await server.close_all_connections()
            # what handlers left running (the status page's feed, a stream's waits) ends before the loop
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        loop.call_soon_threadsafe(lambda: loop.create_task(shut()))
        thread.join(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._loop = self._server = self._thread = None
