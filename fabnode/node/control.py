"""The local control socket between the CLI and the daemon: JSON lines over a Unix socket.

One request object per line, one reply object per line: `{"cmd": "status"}` ->
`{"ok": true, ...}`; a refusal is `{"ok": false, "error": "no one is badged in"}`. The socket is
owner-and-group only (0660), so a technician in the daemon's group can use the CLI and nobody else.
The server only parses and hands requests to a handler; the daemon's handler posts them to the
controller thread and waits for its reply, so no machine state is touched here.

Why it cannot be worn down: one selector thread accepts and reads every connection without blocking,
so a client that connects and says nothing holds no thread; it is dropped after CLIENT_IDLE_S. Only a
complete request line goes to the bounded pool of HANDLER_THREADS. At most MAX_CLIENTS connections
are open at once (one more is told so and closed), a line longer than MAX_REQUEST_BYTES is refused,
an argument of the wrong JSON type (`{"force": "no"}`) is refused before the handler sees it, and an
error while accepting (no file descriptors left) is logged and waited out, never the end of the loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server's machinery, imported when a server starts: `fabnode status` needs none
    import queue
    import selectors
    from concurrent.futures import ThreadPoolExecutor

LOGGER = "fabnode.control"
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPLY_BYTES = 16 * 2**20  # a status with a long inbox is far below this
BACKLOG = 128  # 50 clients connecting at once must all be queued by the kernel, not refused
MAX_CLIENTS = 256
HANDLER_THREADS = 8
CLIENT_IDLE_S = 30.0  # a connection with no complete request for this long is closed
REPLY_TIMEOUT_S = 10.0  # a client that does not read its reply for this long is dropped
Handler = Callable[[dict[str, Any]], dict[str, Any]]
_NUMBER = (int, float)
# The JSON type of each verb's arguments; an argument of another type is refused, never coerced
# (bool("no") is True: `{"cmd": "lock", "force": "no"}` once meant a forced lock).
ARGUMENT_TYPES: Mapping[str, Mapping[str, tuple[type, ...]]] = {
    "lock": {"force": (bool,)},
    "print": {"file": (str,)},
    "badge": {"uid": (str,)},
    "sim-input": {"input": (str,), "action": (str,)},
    "relay": {"on": (bool,)},
    "leds": {"green": (bool,), "red": (bool,), "blink": (bool,)},
    "badge-capture": {"timeout_s": _NUMBER},
    "calibrate_command": {"line": (str,), "timeout_s": _NUMBER, "urgent": (bool,)},
}
_TYPE_NAMES = {bool: "true or false", str: "a string", int: "a number", float: "a number"}


class ControlError(RuntimeError):
    """The daemon could not be reached, or answered something that is not a reply."""


class NoDaemon(ControlError):
    """No daemon listens on the socket (no socket file, or nobody accepts on it)."""


def check_arguments(request: Mapping[str, Any]) -> str | None:
    """Why a request's arguments have the wrong type (naming the verb and the key), or None."""
    cmd = request.get("cmd")
    for key, types in ARGUMENT_TYPES.get(str(cmd), {}).items():
        if key not in request:
            continue
        value = request[key]
        # JSON true is a Python bool, and bool is an int: a number argument must not take it.
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            wanted = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))
            return f"{cmd}: {key!r} must be {wanted}, not {json.dumps(value)[:40]}"
    return None


class _Client:
    """One connection as the selector thread sees it: bytes read so far, when it goes stale."""

    __slots__ = ("buffer", "busy", "deadline", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = bytearray()
        self.busy = False  # a request of this connection is with a handler thread


class ControlServer:
    """Accepts CLI connections on a Unix socket; each request line is answered by `handler`."""

    def __init__(self, path: Path, handler: Handler, *, mode: int = 0o660,
                 idle_s: float = CLIENT_IDLE_S, max_clients: int = MAX_CLIENTS,
                 threads: int = HANDLER_THREADS) -> None:
        self.path = path
        self._handler = handler
        self._mode = mode
        self._idle_s = idle_s
        self._max_clients = max_clients
        self._threads = threads
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closing = threading.Event()
        self._inode: int | None = None
        self._clients: dict[int, _Client] = {}
        self._returned: queue.SimpleQueue[_Client] | None = None  # back from a handler thread
        self._wake_r, self._wake_w = socket.socketpair()

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
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self._sock = sock
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self._returned = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="control-client")
        self._thread = threading.Thread(target=self._loop, name="control-socket", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and remove the socket file."""
        self._closing.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._sock is not None:
            self._sock.close()
        for client in list(self._clients.values()):
            _close(client.sock)
        self._clients.clear()
        for end in (self._wake_r, self._wake_w):
            end.close()
        # Remove the socket file only while it is still ours: a second daemon that was refused
        # (or started after us) must not lose its socket to our shutdown.
        with contextlib.suppress(FileNotFoundError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()

    @property
    def open_connections(self) -> int:
        """Connections open now (for tests and the status)."""
        return len(self._clients)

    # --- the selector thread -------------------------------------------------------------------

    def _loop(self) -> None:
        import logging
        import selectors

        assert self._sock is not None
        log = logging.getLogger(LOGGER)
        selector = selectors.DefaultSelector()
        selector.register(self._sock, selectors.EVENT_READ, "listen")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closing.is_set():
                try:
                    self._turn(selector)
                except Exception:  # never the end of the loop: log it and go on serving
                    log.exception("control socket: unexpected error (still serving)")
                    self._closing.wait(0.05)
        finally:
            selector.close()

    def _turn(self, selector: selectors.BaseSelector) -> None:
        import selectors

        assert self._returned is not None
        events = selector.select(timeout=min(1.0, self._idle_s))
        now = time.monotonic()
        for key, _ in events:
            if key.data == "listen":
                self._accept(selector, now)
            elif key.data == "wake":
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            else:
                self._read(selector, key.data, now)
        while not self._returned.empty():
            client = self._returned.get()
            client.busy = False
            if self._clients.get(client.sock.fileno()) is client:
                client.deadline = now + self._idle_s
                if client.buffer and self._dispatch(selector, client):
                    continue
                selector.register(client.sock, selectors.EVENT_READ, client)
        for client in [c for c in self._clients.values() if not c.busy and c.deadline < now]:
            self._drop(selector, client)  # connected, then silent: no thread was ever held by it

    def _accept(self, selector: selectors.BaseSelector, now: float) -> None:
        import selectors  # loaded by the selector thread already: free here

        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: wait a moment, the clients time out
                import logging

                logging.getLogger(LOGGER).warning("control socket: cannot accept a connection (%s)", exc)
                self._closing.wait(0.05)
                return
            if len(self._clients) >= self._max_clients:
                with contextlib.suppress(OSError):
                    conn.send(_encode({"ok": False, "error": f"the daemon serves {self._max_clients} "
                                                             "connections already: try again"}))
                _close(conn)
                continue
            conn.setblocking(False)
            client = _Client(conn, now + self._idle_s)
            self._clients[conn.fileno()] = client
            selector.register(conn, selectors.EVENT_READ, client)

    def _read(self, selector: selectors.BaseSelector, client: _Client, now: float) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the peer: it hung up early
            self._drop(selector, client)
            return
        if not data:  # the client hung up
            self._drop(selector, client)
            return
        client.buffer += data
        if b"\n" not in client.buffer and len(client.buffer) > MAX_REQUEST_BYTES:
            error = {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
            with contextlib.suppress(OSError):
                client.sock.send(_encode(error))
            self._drop(selector, client)
            return
        if b"\n" in client.buffer:
            selector.unregister(client.sock)
            self._dispatch(selector, client)

    def _dispatch(self, selector: selectors.BaseSelector, client: _Client) -> bool:
        """Hand the next complete line to a handler thread; False when there is none yet."""
        line, sep, rest = bytes(client.buffer).partition(b"\n")
        if not sep:
            return False
        client.buffer = bytearray(rest)
        client.busy = True
        assert self._pool is not None
        try:
            self._pool.submit(self._serve, client, line)
        except RuntimeError:  # the pool is shut down: we are stopping
            self._drop(selector, client)
        return True

    def _drop(self, selector: selectors.BaseSelector, client: _Client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(client.sock)
        self._clients.pop(client.sock.fileno(), None)
        _close(client.sock)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # --- a handler thread ----------------------------------------------------------------------

    def _serve(self, client: _Client, line: bytes) -> None:
        reply = self._answer(line)
        try:
            client.sock.settimeout(REPLY_TIMEOUT_S)
            client.sock.sendall(_encode(reply))
            client.sock.setblocking(False)
        except OSError:  # the client hung up before reading its reply: nothing to say to anyone
            client.buffer.clear()
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)  # the selector thread sees it and closes it
        assert self._returned is not None
        self._returned.put(client)
        self._wake()

    def _answer(self, raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        try:
            request = json.loads(raw)
        except ValueError as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is an object with a "cmd" string'}
        wrong = check_arguments(request)
        if wrong is not None:
            return {"ok": False, "error": wrong, "usage": True}
        try:
            return self._handler(request)
        except Exception as exc:  # a bad request must never take the socket down
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, default=str).encode() + b"\n"


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _connect(sock: socket.socket, path: Path, deadline: float) -> None:
    """connect(), again while the daemon's backlog is full (EAGAIN: it is busy, not gone)."""
    while True:
        try:
            sock.connect(str(path))
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def request(path: Path, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon and return its reply; NoDaemon when none runs, ControlError else."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            _connect(sock, path, time.monotonic() + timeout)
        except FileNotFoundError:
            raise NoDaemon(f"no fabnode daemon is running (no socket at {path})") from None
        except ConnectionRefusedError:
            raise NoDaemon(f"no fabnode daemon is running (nobody answers at {path})") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the fabnode daemon at {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            with sock.makefile("rb") as stream:
                line = stream.readline(MAX_REPLY_BYTES)
        except TimeoutError:
            why = f"the fabnode daemon at {path} did not answer within {timeout:g} s"
            raise ControlError(why) from None
        except OSError as exc:
            raise ControlError(f"the fabnode daemon at {path} hung up: {exc.strerror or exc}") from None
    if not line:
        raise ControlError(f"the fabnode daemon at {path} closed the connection without an answer")
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise ControlError(f"the fabnode daemon at {path} answered {line[:200]!r}")
    return reply

