"""The local control socket between the CLI and the daemon: JSON lines over a Unix socket.

One request object per line, one reply object per line: `{"cmd": "status"}` ->
`{"ok": true, ...}`; a refusal is `{"ok": false, "error": "no one is badged in"}`. The socket is
owner-and-group only (0660), so a technician in the daemon's group can use the CLI and nobody else.
The server only parses and hands requests to a handler; the daemon's handler posts them to the
controller thread and waits for its reply, so no machine state is touched here.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_REQUEST_BYTES = 64 * 1024
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(RuntimeError):
    """The daemon could not be reached, or answered something that is not a reply."""


class ControlServer:
    """Accepts CLI connections on a Unix socket; each request line is answered by `handler`."""

    def __init__(self, path: Path, handler: Handler, *, mode: int = 0o660) -> None:
        self.path = path
        self._handler = handler
        self._mode = mode
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._inode: int | None = None

    def start(self) -> ControlServer:
        """Bind (replacing a stale socket file left by a crash) and serve in a background thread."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _answers(self.path):
                raise ControlError(f"{self.path}: another fabnode daemon is already running")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind under a restrictive umask so the socket is never briefly world-accessible.
        old_umask = os.umask(0o117)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, self._mode)
        self._inode = self.path.stat().st_ino
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="control-socket", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and remove the socket file."""
        self._closing.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # Remove the socket file only while it is still ours: a second daemon that was refused
        # (or started after us) must not lose its socket to our shutdown.
        with contextlib.suppress(FileNotFoundError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="control-client", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for raw in stream:
                reply = self._answer(raw)
                try:
                    stream.write(json.dumps(reply, default=str).encode() + b"\n")
                    stream.flush()
                except OSError:
                    return

    def _answer(self, raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        try:
            request = json.loads(raw)
        except ValueError as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is an object with a "cmd" string'}
        try:
            return self._handler(request)
        except Exception as exc:  # a bad request must never take the socket down
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon and return its reply; ControlError when none runs."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no fabnode daemon is running (no socket at {path})") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the fabnode daemon at {path}: {exc.strerror or exc}") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as stream:
            try:
                line = stream.readline()
            except TimeoutError:
                why = f"the fabnode daemon at {path} did not answer within {timeout:g} s"
                raise ControlError(why) from None
    if not line:
        raise ControlError(f"the fabnode daemon at {path} closed the connection without an answer")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ControlError(f"the fabnode daemon at {path} answered {line!r}")
    return reply
