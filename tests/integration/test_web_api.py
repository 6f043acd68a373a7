"""The OctoPrint API over real HTTP on loopback (http.client), against a fake desk.

Response shapes are those of OctoPrint's documentation: docs/api/version.rst, server.rst,
connection.rst, printer.rst (state flags, temperature.tool0/bed), job.rst (job, progress, state;
POST commands answer 204 No Content, 409 when no job is active) and datamodel.rst.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fabnode.config.web import WebSettings
from fabnode.web.desk import Owner
from fabnode.web.fake_desk import FakeDesk
from fabnode.web.server import WebServer

ADA_KEY = "ada-key-0123456789abcdef"
GRACE_KEY = "grace-key-0123456789abcdef"
TECH_KEY = "tech-key-0123456789abcdef"
LAB_KEY = "lab-key-0123456789abcdef"


def web_settings(**changes: Any) -> WebSettings:
    """`[web]` with its defaults, on a free loopback port."""
    values: dict[str, Any] = {"enabled": True, "host": "127.0.0.1", "port": 0, "max_upload_mb": 200,
                              "upload_expiry_h": 24.0, "show_member": "first-name",
                              "claim_window_min": 15.0, "announce": False}  # fmt: skip
    values.update(changes)
    return WebSettings(**values)


def make_desk(folder: Path) -> FakeDesk:
    """A fake desk with Ada's, Grace's, a technician's and the lab's keys."""
    folder.mkdir(exist_ok=True)
    return FakeDesk(folder, keys={
        ADA_KEY: Owner("Ada Lovelace", "member", 1), GRACE_KEY: Owner("Grace Hopper", "member", 2),
        TECH_KEY: Owner("Tess Tech", "technician", 3), LAB_KEY: Owner("lab", "lab"),
    })  # fmt: skip


@pytest.fixture
def desk(tmp_path: Path) -> FakeDesk:
    return make_desk(tmp_path / "uploads")


@pytest.fixture
def server(desk: FakeDesk) -> Iterator[WebServer]:
    web = WebServer(desk, web_settings())
    web.start()
    yield web
    web.stop()


def request(server: WebServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any, http.client.HTTPResponse]:  # fmt: skip
    """One request; returns the status, the JSON body (None when empty) and the response."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None, response
    finally:
        conn.close()


def get(server: WebServer, path: str, key: str | None = ADA_KEY) -> tuple[int, Any]:
    status, body, _ = request(server, "GET", path, headers={"X-Api-Key": key} if key else {})
    return status, body


def post_job(server: WebServer, command: dict[str, Any] | bytes, key: str = ADA_KEY) -> tuple[int, Any]:
    body = command if isinstance(command, bytes) else json.dumps(command).encode()
    status, reply, _ = request(server, "POST", "/api/job", body,
                               {"X-Api-Key": key, "Content-Type": "application/json"})  # fmt: skip
    return status, reply


def running(desk: FakeDesk, state: str = "running") -> None:
    desk.state.update(state=state, member="Ada Lovelace", temperatures={
        "hotend": {"actual": 214.8, "target": 215.0}, "bed": {"actual": 59.5, "target": 60.0}})
    desk.state["job"] = {"id": 7, "status": state, "file": "/var/lib/fabnode/uploads/3f2a-benchy.gcode",
                         "percent": 42.5, "elapsed_s": 600.0, "eta_s": 812.0, "filament_mm": 1234.5}
    desk.job_owner = "Ada Lovelace"


def test_version_names_octoprint_first_then_fabnode(server: WebServer) -> None:
    status, body = get(server, "/api/version")
    assert status == 200
    assert set(body) == {"api", "server", "text"}
    assert body["text"].startswith("OctoPrint ") and "fabnode" in body["text"]


@pytest.mark.parametrize("how", ["header", "bearer", "query"])
def test_a_key_is_taken_from_the_header_bearer_or_query(server: WebServer, how: str) -> None:
    headers = {"header": {"X-Api-Key": ADA_KEY}, "bearer": {"Authorization": f"Bearer {ADA_KEY}"},
               "query": {}}[how]  # fmt: skip
    path = f"/api/version?apikey={ADA_KEY}" if how == "query" else "/api/version"
    status, body, _ = request(server, "GET", path, headers=headers)
    assert status == 200 and body["api"] == "0.1"


@pytest.mark.parametrize("path", ["/api/version", "/api/job", "/api/printer", "/api/files", "/api/server",
                                  "/api/connection", "/api/settings"])
def test_no_key_is_401_and_a_wrong_key_403(server: WebServer, path: str) -> None:
    status, body = get(server, path, key=None)
    assert status == 401 and "API key" in body["error"]
    status, body = get(server, path, key="not-a-key-of-this-lab")
    assert status == 403 and "not known" in body["error"]


def test_settings_as_cura_reads_them_to_accept_a_key(server: WebServer) -> None:
    """Cura's DiscoverOctoPrintAction.testApiKey: 200 from /api/settings means the key works."""
    status, body = get(server, "/api/settings")
    assert status == 200 and body["feature"]["sdSupport"] is False and body["webcam"]["streamUrl"] == ""
    assert get(server, "/api/settings", key="wrong-key-0123456789")[0] == 403


def test_other_paths_are_404_as_json(server: WebServer) -> None:
    """Cura probes /plugin/appkeys/probe: anything but 204 means "no app keys"."""
    status, body = get(server, "/plugin/appkeys/probe", key=None)
    assert status == 404 and "not served" in body["error"]


def test_a_key_in_the_query_never_reaches_the_log(server: WebServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert get(server, f"/api/version?apikey={ADA_KEY}", key=None)[0] == 200
        assert get(server, "/api/version?apikey=wrong-key-0123456789", key=None)[0] == 403
        deadline = time.monotonic() + 10  # the server logs just after the reply went out
        while not any("403 GET /api/version" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the 403 was not logged"
            time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records]
    assert any("200 GET /api/version" in line for line in lines)
    assert not any(ADA_KEY in line or "wrong-key" in line for line in lines)


def test_server_and_connection(server: WebServer, desk: FakeDesk) -> None:
    status, body = get(server, "/api/server")
    assert status == 200 and set(body) == {"version", "safemode"}
    desk.state["port"] = {"path": "/dev/ttyACM0", "baud": 115200, "open": True}
    status, body = get(server, "/api/connection")
    assert status == 200
    assert body["current"] == {"state": "Operational", "port": "/dev/ttyACM0", "baudrate": 115200,
                               "printerProfile": "_default"}
    assert body["options"]["printerProfiles"] == [{"id": "_default", "name": "prusa-mk4"}]


def test_printer_shows_state_flags_and_temperatures(server: WebServer, desk: FakeDesk) -> None:
    status, body = get(server, "/api/printer")
    assert status == 200
    assert body["state"]["text"] == "Operational"
    assert body["state"]["flags"]["ready"] is True and body["state"]["flags"]["printing"] is False
    running(desk)
    status, body = get(server, "/api/printer")
    assert body["state"]["text"] == "Printing" and body["state"]["flags"]["printing"] is True
    assert body["temperature"]["tool0"] == {"actual": 214.8, "target": 215.0, "offset": 0}
    assert body["temperature"]["bed"] == {"actual": 59.5, "target": 60.0, "offset": 0}
    desk.state["state"] = "fault"
    _, body = get(server, "/api/printer")
    assert body["state"]["text"] == "Error" and body["state"]["flags"]["closedOrError"] is True


def test_job_without_a_job_has_every_field_null(server: WebServer) -> None:
    status, body = get(server, "/api/job")
    assert status == 200 and body["state"] == "Operational"
    assert body["job"]["file"]["name"] is None and body["progress"]["completion"] is None


def test_job_shows_progress_and_the_member_as_show_member_allows(desk: FakeDesk) -> None:
    running(desk)
    for show, user in (("first-name", "Ada"), ("full", "Ada Lovelace"), ("none", None)):
        web = WebServer(desk, web_settings(show_member=show))
        web.start()
        try:
            status, body = get(web, "/api/job")
        finally:
            web.stop()
        assert status == 200 and body["state"] == "Printing"
        assert body["job"]["file"]["name"] == "3f2a-benchy.gcode" and body["job"]["user"] == user
        assert body["job"]["filament"] == {"tool0": {"length": 1234.5, "volume": None}}
        assert body["progress"]["completion"] == 42.5
        assert body["progress"]["printTime"] == 600.0 and body["progress"]["printTimeLeft"] == 812.0


@pytest.mark.parametrize(("command", "state", "verb"), [
    ({"command": "pause", "action": "pause"}, "running", "pause"),
    ({"command": "pause", "action": "resume"}, "paused", "resume"),
    ({"command": "pause", "action": "toggle"}, "paused", "resume"),
    ({"command": "pause"}, "running", "pause"),  # OctoPrint: no action is toggle
    ({"command": "cancel"}, "running", "cancel"),
])  # fmt: skip
def test_the_owner_pauses_resumes_and_cancels_their_job(
    server: WebServer, desk: FakeDesk, command: dict[str, str], state: str, verb: str
) -> None:
    running(desk, state)
    status, body = post_job(server, command)
    assert (status, body) == (204, None)
    assert desk.calls == [(verb, 7, "Ada Lovelace")]


def test_another_members_job_is_403_and_a_technicians_key_acts(server: WebServer, desk: FakeDesk) -> None:
    running(desk)
    status, body = post_job(server, {"command": "cancel"}, GRACE_KEY)
    assert status == 403 and "Ada Lovelace's" in body["error"]
    assert post_job(server, {"command": "cancel"}, TECH_KEY)[0] == 204


def test_the_lab_key_cannot_pause_or_cancel(server: WebServer, desk: FakeDesk) -> None:
    running(desk)
    status, body = post_job(server, {"command": "pause", "action": "pause"}, LAB_KEY)
    assert status == 403 and "lab key uploads only" in body["error"]
    assert desk.calls == []


@pytest.mark.parametrize(("command", "word"), [
    (b"{not json", "JSON"), ({"command": "start"}, "'start'"),
    ({"command": "pause", "action": "stop"}, "'stop'"),
    ({"command": "restart"}, "'restart'"), (b"[1, 2]", "None"),
])  # fmt: skip
def test_a_bad_job_command_is_400(server: WebServer, desk: FakeDesk, command: Any, word: str) -> None:
    running(desk)
    status, body = post_job(server, command)
    assert status == 400 and word in body["error"]


def test_a_command_without_a_job_is_409(server: WebServer, desk: FakeDesk) -> None:
    status, body = post_job(server, {"command": "cancel"})
    assert status == 409 and body["error"] == "no job is running"
    assert desk.calls == []


def test_files_lists_free_space(server: WebServer) -> None:
    status, body = get(server, "/api/files")
    assert status == 200 and body["files"] == [] and body["free"] > 0 and body["total"] >= body["free"]


def test_a_client_that_trickles_its_headers_does_not_block_others(server: WebServer) -> None:
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        slow.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-")  # ...and nothing more yet
        for _ in range(3):
            status, body = get(server, "/api/version")
            assert status == 200 and body["text"].startswith("OctoPrint")
        slow.sendall(b"Key: " + ADA_KEY.encode() + b"\r\n\r\n")
        conn = http.client.HTTPResponse(slow)
        conn.begin()
        assert conn.status == 200 and json.loads(conn.read())["api"] == "0.1"
    finally:
        slow.close()


def test_stop_frees_the_port(desk: FakeDesk) -> None:
    web = WebServer(desk, web_settings())
    web.start()
    port = web.port
    assert web.url == f"http://127.0.0.1:{port}"
    web.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_key_in_the_query_never_reaches_the_log_even_when_a_handler_fails(
    server: WebServer, desk: FakeDesk, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    monkeypatch.setattr(desk, "upload_folder", lambda: desk.folder / "gone")  # disk_usage will raise
    with caplog.at_level(logging.DEBUG):
        status, _body, _ = request(server, "GET", f"/api/files?apikey={ADA_KEY}")
    assert status == 500
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "uncaught exception GET /api/files" in logged and ADA_KEY not in logged
