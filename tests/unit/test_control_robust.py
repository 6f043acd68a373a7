"""The control socket under abuse, over real Unix sockets: many clients, silent ones, huge or mistyped
requests, clients that hang up early, and no file descriptors left."""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabnode.node.control import MAX_REQUEST_BYTES, ControlServer, check_arguments, request

CALLS: list[dict[str, Any]] = []


def echo_handler(message: dict[str, Any]) -> dict[str, Any]:
    CALLS.append(message)
    return {"ok": True, "echo": message}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ControlServer]:
    CALLS.clear()
    srv = ControlServer(tmp_path / "control.sock", echo_handler, idle_s=0.5).start()
    yield srv
    srv.stop()


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_reply(sock: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


def test_fifty_clients_connected_at_once_are_all_served(server: ControlServer) -> None:
    clients = [connect(server.path) for _ in range(50)]  # all connected before any says a word
    try:
        for i, sock in enumerate(clients):
            sock.sendall(json.dumps({"cmd": "status", "n": i}).encode() + b"\n")
        replies = [read_reply(sock) for sock in clients]
    finally:
        for sock in clients:
            sock.close()
    assert [r["echo"]["n"] for r in replies] == list(range(50))


def test_a_client_that_says_nothing_is_closed_and_holds_nobody_up(server: ControlServer) -> None:
    silent = connect(server.path)
    try:
        assert request(server.path, {"cmd": "status"})["ok"] is True  # served while the other waits
        assert silent.recv(1) == b""  # closed by the server after its idle time (0.5 s here)
    finally:
        silent.close()


def test_a_request_without_end_is_refused_past_the_limit(server: ControlServer) -> None:
    with connect(server.path) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b'{"cmd": "' + b"x" * (MAX_REQUEST_BYTES + 10))
        reply = read_reply(sock)
        assert reply == {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        assert sock.recv(1) == b""
    assert CALLS == []
    assert request(server.path, {"cmd": "status"})["ok"] is True


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ({"cmd": "lock", "force": "no"}, "lock: 'force' must be true or false, not \"no\""),
        ({"cmd": "lock", "force": 1}, "lock: 'force' must be true or false, not 1"),
        ({"cmd": "print", "file": ["a.gcode"]}, "print: 'file' must be a string"),
        ({"cmd": "badge-capture", "timeout_s": True}, "'timeout_s' must be a number, not true"),
        ({"cmd": "relay", "on": "off"}, "relay: 'on' must be true or false"),
    ],
)
def test_arguments_of_the_wrong_type_are_refused_before_the_handler(
    server: ControlServer, message: dict[str, Any], words: str
) -> None:
    reply = request(server.path, message)
    assert reply["ok"] is False and reply["usage"] is True
    assert words in reply["error"]
    assert CALLS == []  # `"force": "no"` never became a forced lock


def test_arguments_of_the_right_type_pass() -> None:
    assert check_arguments({"cmd": "lock", "force": False}) is None
    assert check_arguments({"cmd": "badge-capture", "timeout_s": 2}) is None
    assert check_arguments({"cmd": "status", "anything": "goes"}) is None


def test_clients_that_hang_up_early_leave_no_traceback(
    server: ControlServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    for _ in range(20):
        sock = connect(server.path)
        sock.sendall(b'{"cmd": "sta')  # half a request, then a reset (SO_LINGER 0: RST, not FIN)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        sock = connect(server.path)
        sock.sendall(b'{"cmd": "status"}\n')  # a whole request, gone before its answer
        sock.close()
    with caplog.at_level(logging.WARNING, logger="fabnode.control"):
        assert request(server.path, {"cmd": "status"})["ok"] is True
    assert crashes == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


HALF_OPEN = """
import socket, sys
sys.stdin.readline()
held = []
for _ in range(400):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    if sock.connect_ex(sys.argv[1]) == 0:
        held.append(sock)
    else:
        sock.close()
print(len(held), flush=True)
sys.stdin.readline()
"""


class LogSeen(logging.Handler):
    """Sets `seen` once a record with `text` in its message is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_the_accept_loop_survives_400_half_open_clients_and_no_descriptors_left(
    server: ControlServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The clients live in another process, so it is the server that runs out of descriptors
    # (accept() fails with EMFILE): it must wait that out, not stop accepting for good.
    proc = subprocess.Popen([sys.executable, "-c", HALF_OPEN, str(server.path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ran_out = LogSeen("cannot accept")
    log = logging.getLogger("fabnode.control")
    log.addHandler(ran_out)
    caplog.set_level(logging.WARNING, logger="fabnode.control")  # whatever level the logger had
    try:
        in_use = len(list(Path("/proc/self/fd").iterdir()))
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 10, hard))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert int(proc.stdout.readline()) > 50
        # the server accepts at its own pace: keep the limit until it did run out
        assert ran_out.seen.wait(10), "the server never ran out of descriptors"
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        proc.stdin.write("done\n")
        proc.stdin.flush()
        proc.wait(timeout=10)
    finally:
        log.removeHandler(ran_out)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert request(server.path, {"cmd": "status"}, timeout=10.0)["ok"] is True
