"""The control socket: JSON lines over a Unix socket, owner-and-group only, robust to bad requests."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from fabnode.node.control import ControlError, ControlServer, request


def echo_handler(message: dict[str, Any]) -> dict[str, Any]:
    if message["cmd"] == "boom":
        raise ValueError("broken handler")
    return {"ok": True, "echo": message}


@pytest.fixture
def server(tmp_path: Path) -> Any:
    srv = ControlServer(tmp_path / "control.sock", echo_handler).start()
    yield srv
    srv.stop()


def test_request_and_reply(server: ControlServer) -> None:
    reply = request(server.path, {"cmd": "status", "json": True})
    assert reply == {"ok": True, "echo": {"cmd": "status", "json": True}}


def test_socket_is_owner_and_group_only(server: ControlServer) -> None:
    mode = stat.S_IMODE(server.path.stat().st_mode)
    assert mode == 0o660


def test_bad_requests_get_errors_and_the_socket_survives(server: ControlServer) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(server.path))
        stream = sock.makefile("rwb")
        for raw, expected in [
            (b"not json\n", "not JSON"),
            (b'["cmd"]\n', 'a request is an object with a "cmd" string'),
            (b'{"cmd": "boom"}\n', "ValueError: broken handler"),
        ]:
            stream.write(raw)
            stream.flush()
            reply = json.loads(stream.readline())
            assert reply["ok"] is False
            assert expected in reply["error"]
    assert request(server.path, {"cmd": "still-there"})["ok"] is True


def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no fabnode daemon is running"):
        request(tmp_path / "absent.sock", {"cmd": "status"})


def test_stale_socket_file_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a crash leaves the file behind with nobody listening
    live = ControlServer(path, echo_handler).start()
    try:
        assert request(path, {"cmd": "x"})["ok"] is True
        with pytest.raises(ControlError, match="already running"):
            ControlServer(path, echo_handler).start()
    finally:
        live.stop()
    assert not path.exists()
