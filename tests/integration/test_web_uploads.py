"""Uploads over real HTTP on loopback: as PrusaSlicer sends them, and every bad one.

PrusaSlicer's src/slic3r/Utils/OctoPrint.cpp posts `print`, then `path` (the parent folder of the
upload path, "" for a bare name), then `file`, with libcurl's multipart framing, `X-Api-Key` and
`Expect: 100-continue`; OctoPrint's docs/api/files.rst answers 201 Created with a Location header
and `{"files": {"local": {...}}, "done": true}`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fabnode.web.fake_desk import FakeDesk
from fabnode.web.server import WebServer
from tests.conftest import gcode_path
from tests.data.web.prusaslicer import cura_body, prusaslicer_body
from tests.integration.test_web_api import ADA_KEY, LAB_KEY, make_desk, web_settings

BENCH = "prusaslicer-cubhelix.gcode"
PROBLEMS = b"G28\nG90\nM104 S400\nG1 X500 Y10 F3000\nG1 X10 Y10 F3000\n"


def upload(server: WebServer, data: bytes, filename: str = "benchy.gcode", key: str | None = ADA_KEY,
           **fields: Any) -> tuple[int, Any, http.client.HTTPResponse]:  # fmt: skip
    body, content_type = prusaslicer_body(data, filename, **fields)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": content_type, "User-Agent": "PrusaSlicer/2.9.2", "Accept": "*/*"}
    if key:
        headers["X-Api-Key"] = key
    try:
        conn.request("POST", "/api/files/local", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None, response
    finally:
        conn.close()


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def desk(tmp_path: Path) -> FakeDesk:
    return make_desk(tmp_path / "uploads")


@pytest.fixture
def server(desk: FakeDesk) -> Iterator[WebServer]:
    web = WebServer(desk, web_settings(max_upload_mb=1))
    web.start()
    yield web
    web.stop()


def test_an_upload_as_prusaslicer_sends_it_byte_for_byte(server: WebServer, desk: FakeDesk) -> None:
    data = gcode_path(BENCH).read_bytes()
    body, content_type = prusaslicer_body(data, "cubhelix.gcode", print_=True)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/api/files/local", skip_accept_encoding=True)
    for name, value in (("User-Agent", "PrusaSlicer/2.9.2"), ("Accept", "*/*"), ("X-Api-Key", ADA_KEY),
                        ("Content-Length", str(len(body))), ("Content-Type", content_type),
                        ("Expect", "100-continue")):  # fmt: skip
        conn.putheader(name, value)
    conn.endheaders()
    assert conn.sock is not None
    assert select.select([conn.sock], [], [], 10)[0], "no 100 Continue"
    assert conn.sock.recv(64, socket.MSG_PEEK).startswith(b"HTTP/1.1 100")
    conn.send(body)
    response = conn.getresponse()  # reads past the 100 Continue
    reply = json.loads(response.read())
    conn.close()
    assert response.status == 201
    assert reply["done"] is True and reply["effectivePrint"] is True and reply["effectiveSelect"] is False
    local = reply["files"]["local"]
    assert local["name"] == "cubhelix.gcode" and local["origin"] == "local"
    assert response.headers["Location"].endswith("/api/files/local/cubhelix.gcode")
    [queued] = desk.uploads()
    assert (queued.name, queued.folder, queued.print_now, queued.owner.name) == (
        "cubhelix.gcode", "", True, "Ada Lovelace")
    assert queued.path.parent == desk.folder and queued.path.read_bytes() == data
    assert queued.sha256 == hashlib.sha256(data).hexdigest() and queued.size == len(data)
    assert queued.analysis.estimated_s > 0 and not queued.analysis.problems
    assert left_in(desk.folder) == [queued.path.name]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/api/files", headers={"X-Api-Key": ADA_KEY})
    files = json.loads(conn.getresponse().read())["files"]
    conn.close()
    assert [f["name"] for f in files] == ["cubhelix.gcode"] and files[0]["size"] == len(data)
    assert files[0]["gcodeAnalysis"]["estimatedPrintTime"] == round(queued.analysis.estimated_s, 1)


def test_an_upload_as_cura_sends_it(server: WebServer, desk: FakeDesk) -> None:
    data = gcode_path(BENCH).read_bytes()
    body, content_type = cura_body(data, "UM2_cubhelix.gcode")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/api/files/local", body=body, headers={
        "Content-Type": content_type, "X-Api-Key": ADA_KEY, "User-Agent": "Cura/5.8.0 OctoPrintPlugin/3.7.3"})
    response = conn.getresponse()
    reply = json.loads(response.read())
    conn.close()
    assert response.status == 201 and reply["effectiveSelect"] is True and reply["effectivePrint"] is True
    [queued] = desk.uploads()
    assert (queued.name, queued.select, queued.print_now) == ("UM2_cubhelix.gcode", True, True)
    assert queued.path.read_bytes() == data


def test_print_false_and_a_folder_are_kept_for_the_desk(server: WebServer, desk: FakeDesk) -> None:
    status, reply, _ = upload(server, gcode_path(BENCH).read_bytes(), "part.gcode", path="ada/brackets")
    assert status == 201 and reply["files"]["local"]["path"] == "ada/brackets/part.gcode"
    [queued] = desk.uploads()
    assert (queued.folder, queued.print_now) == ("ada/brackets", False)


def test_a_wrong_key_is_refused_before_the_body_is_sent(server: WebServer, desk: FakeDesk) -> None:
    """With `Expect: 100-continue` (libcurl's, for PrusaSlicer) the slicer hears 403 instead of 100."""
    body, content_type = prusaslicer_body(gcode_path(BENCH).read_bytes(), "cubhelix.gcode")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/api/files/local")
    for name, value in (("X-Api-Key", "revoked-key-0123456789"), ("Content-Length", str(len(body))),
                        ("Content-Type", content_type), ("Expect", "100-continue")):  # fmt: skip
        conn.putheader(name, value)
    conn.endheaders()  # no body
    response = conn.getresponse()
    assert response.status == 403 and "not known" in json.loads(response.read())["error"]
    conn.close()
    assert left_in(desk.folder) == []


def test_partial_uploads_of_an_earlier_run_are_removed_at_start(desk: FakeDesk) -> None:
    (desk.folder / ".incoming-0123456789abcdef.part").write_bytes(b"G28\nG1 X")
    (desk.folder / "1a2b3c4d-queued.gcode").write_bytes(b"G28\n")
    web = WebServer(desk, web_settings())
    web.start()
    web.stop()
    assert left_in(desk.folder) == ["1a2b3c4d-queued.gcode"]


def test_no_key_is_401_and_nothing_is_written(server: WebServer, desk: FakeDesk) -> None:
    status, _, _ = upload(server, gcode_path(BENCH).read_bytes(), key=None)
    assert status == 401 and left_in(desk.folder) == [] and desk.uploads() == []


def test_a_content_length_over_the_limit_is_413_before_the_body(server: WebServer, desk: FakeDesk) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/api/files/local")
    conn.putheader("X-Api-Key", ADA_KEY)
    conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()  # and no body at all
    response = conn.getresponse()
    assert response.status == 413 and "limit is 1 MB" in json.loads(response.read())["error"]
    conn.close()
    assert left_in(desk.folder) == []


def test_the_limit_is_enforced_while_reading(server: WebServer, desk: FakeDesk) -> None:
    """Chunked, so no Content-Length warns: the answer comes once 1 MB is passed, the rest unsent."""
    line = b"G1 X10 Y10 E0.5 F1200 ; padding to make the file large enough\n"
    data = line * (3 * 1024 * 1024 // len(line))
    body, content_type = prusaslicer_body(data, "big.gcode")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/api/files/local")
    conn.putheader("X-Api-Key", ADA_KEY)
    conn.putheader("Content-Type", content_type)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    sock = conn.sock
    assert sock is not None
    sent = 0
    while sent < 1536 * 1024:  # half of the body: past the limit, far from the end
        chunk = body[sent : sent + 64 * 1024]
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sent += len(chunk)
    assert select.select([sock], [], [], 10)[0], "no answer while the body is still coming"
    response = http.client.HTTPResponse(sock)
    response.begin()
    assert response.status == 413
    assert "big.gcode: larger than the limit of 1 MB" in json.loads(response.read())["error"]
    conn.close()
    wait_for(lambda: left_in(desk.folder) == [])
    assert desk.uploads() == []


BINARY_STL = b"STL exported by FreeCAD".ljust(80, b" ") + (12).to_bytes(4, "little") + bytes(600)
ASCII_STL = b"solid cube\n  facet normal 0 0 1\n    outer loop\n      vertex 0 0 0\n" * 10


@pytest.mark.parametrize(("data", "name", "why"), [
    (BINARY_STL, "cube.gcode", "binary data (NUL bytes)"),
    (ASCII_STL, "cube.gcode", "an ASCII STL model"),
    (ASCII_STL, "cube.stl", "a 3D model: slice it first"),
    (b"GCDE\x01\x00\x00\x00" + bytes(100), "benchy.bgcode", "binary G-code"),
    (b"PK\x03\x04" + bytes(100), "plate.gcode", "ZIP archive"),
    (b"G28\n" + bytes(range(128, 256)) * 4, "latin.gcode", "not UTF-8"),
])  # fmt: skip
def test_a_file_that_is_not_gcode_is_415_with_the_reason(server: WebServer, desk: FakeDesk,
                                                         data: bytes, name: str, why: str) -> None:
    status, reply, _ = upload(server, data, name)
    assert status == 415 and why in reply["error"]
    wait_for(lambda: left_in(desk.folder) == [])
    assert desk.uploads() == []


@pytest.mark.parametrize(("name", "path", "why"), [
    ("../evil.gcode", "", "no folders, '..'"),
    ("..gcode", "", "'..'"),
    ("/etc/cron.d/evil", "", "no folders"),
    ("a\x01b.gcode", "", "control character"),
    ("ok.gcode", "../up", "'..'"),
    ("ok.gcode", "/etc", "absolute"),
    ("ok.gcode", "C:\\Users", "absolute"),
    ("ok.gcode", "a\x00b", "NUL"),
])  # fmt: skip
def test_a_bad_name_or_path_is_400(server: WebServer, desk: FakeDesk, name: str, path: str, why: str) -> None:
    status, reply, _ = upload(server, gcode_path(BENCH).read_bytes(), name, path=path)
    assert status == 400 and why in reply["error"]
    wait_for(lambda: left_in(desk.folder) == [])


def test_preflight_problems_are_409_with_every_line_and_nothing_kept(server: WebServer,
                                                                      desk: FakeDesk) -> None:
    status, reply, _ = upload(server, PROBLEMS, "hot.gcode")
    assert status == 409 and "nothing was kept" in reply["error"]
    lines = {p["line"] for p in reply["problems"]}
    assert {3, 4} <= lines and all(p["message"] for p in reply["problems"])
    assert left_in(desk.folder) == [] and desk.uploads() == []


def test_an_upload_the_desk_refuses_is_kept_nowhere(server: WebServer, desk: FakeDesk) -> None:
    desk.refuse_upload = "Ada Lovelace is not trained on prusa-mk4"
    status, reply, _ = upload(server, gcode_path(BENCH).read_bytes())
    assert status == 403 and reply["error"] == "Ada Lovelace is not trained on prusa-mk4"
    assert left_in(desk.folder) == []


def test_a_client_that_closes_mid_upload_leaves_nothing(server: WebServer, desk: FakeDesk) -> None:
    body, content_type = prusaslicer_body(gcode_path(BENCH).read_bytes(), "half.gcode")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"POST /api/files/local HTTP/1.1\r\nHost: x\r\nX-Api-Key: {ADA_KEY}\r\n"
                 f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                 + body[: len(body) // 2])  # fmt: skip
    wait_for(lambda: any(n.endswith(".part") for n in left_in(desk.folder)))
    sock.close()
    wait_for(lambda: left_in(desk.folder) == [])
    assert desk.uploads() == []


def test_twenty_concurrent_uploads_are_all_accounted_for(server: WebServer, desk: FakeDesk) -> None:
    data = gcode_path(BENCH).read_bytes()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: upload(server, data + f"; copy {i}\n".encode(), f"copy-{i}.gcode",
                                                 key=LAB_KEY if i % 2 else ADA_KEY)[0], range(20)))
    assert results == [201] * 20
    queued = desk.uploads()
    assert sorted(u.name for u in queued) == sorted(f"copy-{i}.gcode" for i in range(20))
    assert len({u.path for u in queued}) == 20 and left_in(desk.folder) == sorted(u.path.name for u in queued)
    for u in queued:
        i = int(u.name.removeprefix("copy-").removesuffix(".gcode"))
        assert u.path.read_bytes() == data + f"; copy {i}\n".encode()
        assert u.owner.role == ("lab" if i % 2 else "member")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs as the upload folder: a real ENOSPC (needs root's mount; skipped elsewhere)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_is_507_and_nothing_is_left(tiny_disk: Path) -> None:
    desk = make_desk(tiny_disk)
    web = WebServer(desk, web_settings(max_upload_mb=5))
    web.start()
    try:
        status, reply, _ = upload(web, gcode_path("prusaslicer-vase.gcode").read_bytes())  # 300 kB > 256 KiB
    finally:
        web.stop()
    assert status == 507 and "disk is full" in reply["error"]
    assert left_in(tiny_disk) == [] and desk.uploads() == []
