"""Print release through the real daemon: `fabnode run --simulate`, HTTP over loopback, badge taps.

Uploads are sent as PrusaSlicer sends them (src/slic3r/Utils/OctoPrint.cpp: `print`, `path`, then
`file`; X-Api-Key; libcurl's `Expect: 100-continue`), with the standard library's HTTP client.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import select
import socket
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import api_keys
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.data.web.prusaslicer import prusaslicer_body
from tests.integration.test_daemon_helpers import Node, gcode_prefix, wait_until

pytestmark = pytest.mark.timeout(120)
ADA_UID, BOB_UID, CAROL_UID, DAVE_UID, TOM_UID = "04:A1:00:01", "04:B0:00:02", "04:C0:00:03", "04:D0:00:04", \
    "04:7E:00:09"  # fmt: skip
MACHINE = "sim-printer"


class WebNode:
    """A simulated node with Ada and Bob (trained), Carol (not), Dave (expired), Tom (technician) and keys."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.keys: dict[str, str] = {}
        secret = access.load_secret(secret_file_path(node.state_dir))
        now = datetime.now(UTC)
        with UsageLog.open(usage_db_path(node.state_dir)) as log:
            for name, uid, role in (("Ada Lovelace", ADA_UID, "member"), ("Bob", BOB_UID, "member"),
                                    ("Carol", CAROL_UID, "member"), ("Dave", DAVE_UID, "member"),
                                    ("Tom", TOM_UID, "technician")):  # fmt: skip
                access.add_member(log.db, secret, name, uid, role=role, now=now)
                self.keys[name] = api_keys.new_member_key(log.db, secret, name, now=now)
            access.grant_training(log.db, "Ada Lovelace", MACHINE, now=now)
            access.grant_training(log.db, "Bob", MACHINE, now=now)
            self.expired = date.today() - timedelta(days=2)
            access.grant_training(log.db, "Dave", MACHINE, until=self.expired, now=now)
            self.keys["lab"] = api_keys.lab_key(log.db, secret, now=now)
        url = urllib.parse.urlsplit(node.status()["web"]["url"])
        assert url.hostname == "127.0.0.1", "a simulated node listens on loopback only"
        self.port = int(url.port or 0)

    @property
    def uploads_dir(self) -> Path:
        return self.node.state_dir / "uploads"

    def upload(self, data: bytes, name: str, key: str, print_: bool = True) -> tuple[int, Any]:
        """POST /api/files/local byte for byte as PrusaSlicer does (headers, 100-continue, field order)."""
        body, content_type = prusaslicer_body(data, name, print_=print_)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.putrequest("POST", "/api/files/local", skip_accept_encoding=True)
        for header, value in (("User-Agent", "PrusaSlicer/2.9.2"), ("Accept", "*/*"), ("X-Api-Key", key),
                              ("Content-Length", str(len(body))), ("Content-Type", content_type),
                              ("Expect", "100-continue")):  # fmt: skip
            conn.putheader(header, value)
        conn.endheaders()
        assert conn.sock is not None and select.select([conn.sock], [], [], 30)[0], "no answer to the head"
        if conn.sock.recv(64, socket.MSG_PEEK).startswith(b"HTTP/1.1 100"):
            conn.send(body)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        return response.status, json.loads(raw) if raw else None

    def api(self, method: str, path: str, key: str | None, body: dict[str, Any] | None = None
            ) -> tuple[int, Any]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["X-Api-Key"] = key
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        return response.status, json.loads(raw) if raw else None

    def queue(self) -> list[dict[str, Any]]:
        return list(self.node.status()["web"]["uploads"])


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebNode]:
    node = Node(tmp_path / "state", sim_speed=400).start()
    try:
        yield WebNode(node)
    finally:
        node.stop()


def job_file(tmp_path: Path, lines: int = 120, name: str = "part.gcode") -> bytes:
    return gcode_prefix(tmp_path, lines, name).read_bytes()


def test_adas_upload_waits_for_her_tap_which_opens_the_session_and_starts_it(web: WebNode, tmp_path: Path
                                                                             ) -> None:  # fmt: skip
    data = job_file(tmp_path)
    status, reply = web.upload(data, "benchy.gcode", web.keys["Ada Lovelace"])
    assert status == 201 and reply["done"] is True and reply["effectivePrint"] is True
    [queued] = web.queue()
    assert (queued["name"], queued["owner"], queued["print"], queued["waits_for"]) == (
        "benchy.gcode", "Ada Lovelace", True, "Ada Lovelace's tap")
    assert queued["estimated_s"] > 0 and queued["size"] == len(data)
    assert web.node.status()["state"] == "locked"
    _, files = web.api("GET", "/api/files", web.keys["Bob"])
    assert [f["name"] for f in files["files"]] == ["benchy.gcode"]

    out = web.node.tap(BOB_UID)  # another member's tap opens Bob's session only
    assert out["ok"] and out["state"] == "unlocked" and len(web.queue()) == 1
    assert web.node.tap(BOB_UID)["state"] in ("cooldown", "locked")
    out = web.node.tap(ADA_UID)  # the session opens; the upload is checked aside, then starts
    assert out["ok"] and out["reason"] == "session opened; upload benchy.gcode released", out
    job = web.node.wait_status(lambda s: s["state"] == "running", 15, "Ada's upload runs")["job"]
    assert (job["source"], job["uploaded_by"]) == ("upload", "Ada Lovelace") and web.queue() == []
    ended = web.node.wait_status(lambda s: s["last_job"] is not None, 60, "the upload's job ends")["last_job"]
    assert ended["status"] == "completed", web.node.output()
    [row] = web.node.rows("SELECT * FROM jobs")
    assert (row["source"], row["uploaded_by"], row["status"]) == ("upload", "Ada Lovelace", "completed")
    [ada] = web.node.rows("SELECT id FROM members WHERE name = 'Ada Lovelace'")
    assert row["member_id"] == ada["id"]
    taps = web.node.rows("SELECT reason FROM access_events WHERE member_id = ? AND granted = 1", ada["id"])
    assert [t["reason"] for t in taps] == ["session opened; upload benchy.gcode released"]
    started = web.uploads_dir / "started"
    [kept] = [p for p in started.iterdir() if not p.name.endswith(".json")]
    assert kept.read_bytes() == data and kept.name.endswith("-benchy.gcode")
    note = json.loads((started / f"{kept.name}.json").read_text(encoding="utf-8"))
    assert note["owner"] == "Ada Lovelace" and note["job_id"]
    # telemetry says where the job came from, never who uploaded it
    ended_rows = web.node.rows("SELECT payload FROM outbox WHERE kind = 'job_ended'")
    payloads = [json.loads(r["payload"]) for r in ended_rows]
    assert payloads[0]["source"] == "upload" and "uploaded_by" not in payloads[0]
    assert "Ada" not in json.dumps(payloads)


def test_print_true_in_her_open_session_starts_at_once_and_only_she_or_a_technician_may_act(
        web: WebNode, tmp_path: Path) -> None:  # fmt: skip
    assert web.node.tap(ADA_UID)["state"] == "unlocked"
    status, reply = web.upload(job_file(tmp_path, 4000), "long.gcode", web.keys["Ada Lovelace"])
    assert status == 201, reply
    running = web.node.wait_status(lambda s: s["state"] == "running", 10, "the upload runs")
    assert running["job"]["source"] == "upload" and web.queue() == []
    _, job = web.api("GET", "/api/job", web.keys["Bob"])
    assert job["state"] == "Printing" and job["job"]["user"] == "Ada"
    command = {"command": "pause", "action": "pause"}
    assert web.api("POST", "/api/job", None, command)[0] == 401
    assert web.api("POST", "/api/job", "not-a-key-0123456789", command)[0] == 403
    status, body = web.api("POST", "/api/job", web.keys["Bob"], command)
    assert status == 403 and "another member's" in body["error"]
    assert web.api("POST", "/api/job", web.keys["lab"], command)[0] == 403
    assert web.node.status()["state"] == "running"
    assert web.api("POST", "/api/job", web.keys["Ada Lovelace"], command)[0] == 204
    web.node.wait_status(lambda s: s["state"] == "paused", 10, "paused by Ada's key")
    assert web.api("POST", "/api/job", web.keys["Tom"], {"command": "pause", "action": "resume"})[0] == 204
    web.node.wait_status(lambda s: s["state"] == "running", 10, "resumed by the technician's key")
    assert web.api("POST", "/api/job", web.keys["Bob"], {"command": "cancel"})[0] == 403
    assert web.api("POST", "/api/job", web.keys["Ada Lovelace"], {"command": "cancel"})[0] == 204
    ended = web.node.wait_status(lambda s: s["last_job"] is not None, 30, "cancelled")["last_job"]
    assert ended["status"] == "cancelled"


def test_a_lab_upload_goes_to_the_next_trained_member_who_taps(web: WebNode, tmp_path: Path) -> None:
    status, _ = web.upload(job_file(tmp_path), "lab-pc.gcode", web.keys["lab"])
    assert status == 201
    [queued] = web.queue()
    assert queued["owner"] == "lab" and queued["claim_until"] is not None
    refused = web.node.tap(CAROL_UID)
    assert not refused["ok"] and refused["reason"] == f"not trained on {MACHINE}"
    last = web.node.status()["last_refused"]
    assert last["reason"] == f"not trained on {MACHINE}" and last["at"].endswith("Z")
    assert web.node.tap(BOB_UID)["ok"]
    web.node.wait_status(lambda s: s["state"] == "running", 15, "the lab upload runs for Bob")
    web.node.wait_status(lambda s: s["last_job"] is not None, 60, "the lab upload's job ends")
    [row] = web.node.rows("SELECT j.source, j.uploaded_by, m.name FROM jobs j "
                          "JOIN members m ON m.id = j.member_id")
    assert (row["source"], row["uploaded_by"], row["name"]) == ("upload", "lab", "Bob")


def test_an_untrained_or_expired_members_upload_is_refused_at_once_naming_why(web: WebNode, tmp_path: Path
                                                                              ) -> None:  # fmt: skip
    data = job_file(tmp_path)
    status, body = web.upload(data, "carol.gcode", web.keys["Carol"])
    assert status == 403 and body["error"] == f"upload refused: Carol: not trained on {MACHINE}"
    status, body = web.upload(data, "dave.gcode", web.keys["Dave"])
    assert status == 403 and body["error"] == f"upload refused: Dave: training expired on {web.expired}"
    assert web.queue() == []
    assert [p.name for p in web.uploads_dir.iterdir() if p.is_file()] == []
    assert list((web.uploads_dir / ".queue").iterdir()) == []


def test_a_file_failing_preflight_is_409_naming_each_line_and_nothing_is_kept(web: WebNode, tmp_path: Path
                                                                              ) -> None:  # fmt: skip
    bad = b"G28\nM104 S215\nG1 X500 Y10 F3000\nM500\n"  # outside the volume, then a settings write
    status, body = web.upload(bad, "bad.gcode", web.keys["Ada Lovelace"])
    assert status == 409 and body["error"] == "bad.gcode: 2 problem(s) for this machine; nothing was kept"
    assert [p["line"] for p in body["problems"]] == [3, 4] and all(p["message"] for p in body["problems"])
    assert web.queue() == [] and [p.name for p in web.uploads_dir.iterdir() if p.is_file()] == []
    assert list((web.uploads_dir / ".queue").iterdir()) == []
    assert web.node.rows("SELECT * FROM jobs") == []


def test_twenty_concurrent_uploads_are_all_accounted_for(web: WebNode, tmp_path: Path) -> None:
    data = job_file(tmp_path, 300)
    owners = ["Ada Lovelace", "Bob", "lab", "Tom"]

    def send(i: int) -> tuple[int, Any]:
        return web.upload(data, f"part-{i:02d}.gcode", web.keys[owners[i % 4]], print_=False)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(send, range(20)))
    assert [status for status, _ in answers] == [201] * 20, answers
    queued = web.queue()
    assert sorted(u["name"] for u in queued) == [f"part-{i:02d}.gcode" for i in range(20)]
    assert len(list((web.uploads_dir / ".queue").glob("*.json"))) == 20
    stored = [p for p in web.uploads_dir.iterdir() if p.is_file()]
    assert len(stored) == 20 and all(p.read_bytes() == data for p in stored)
    _, files = web.api("GET", "/api/files", web.keys["Bob"])
    assert len(files["files"]) == 20


def test_a_client_closing_mid_upload_leaves_nothing_queued(web: WebNode, tmp_path: Path) -> None:
    data = job_file(tmp_path, 2000)
    body, content_type = prusaslicer_body(data, "cut.gcode", print_=True)
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    head = (f"POST /api/files/local HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {web.keys['Ada Lovelace']}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[: len(body) // 2])
    wait_until(lambda: list(web.uploads_dir.glob(".incoming-*.part")), 10, "the partial upload on disk")
    sock.close()
    wait_until(lambda: not list(web.uploads_dir.glob(".incoming-*.part")), 10, "the partial upload removed")
    assert web.queue() == [] and list((web.uploads_dir / ".queue").iterdir()) == []
    assert web.upload(data, "whole.gcode", web.keys["Ada Lovelace"], print_=False)[0] == 201
    assert [u["name"] for u in web.queue()] == ["whole.gcode"]


def test_a_restart_keeps_the_queue_and_what_expired_meanwhile_moves_to_stale(tmp_path: Path) -> None:
    node = Node(tmp_path / "state", sim_speed=400).start()
    try:
        web = WebNode(node)
        data = job_file(tmp_path)
        assert web.upload(data, "keep.gcode", web.keys["Ada Lovelace"], print_=False)[0] == 201
        assert web.upload(data, "old.gcode", web.keys["Ada Lovelace"], print_=False)[0] == 201
        assert node.stop() == 0
        # old.gcode arrived two days ago as far as its sidecar says (beyond upload_expiry_h = 24)
        [old] = [p for p in (web.uploads_dir / ".queue").glob("*.json")
                 if json.loads(p.read_text(encoding="utf-8"))["name"] == "old.gcode"]
        note = json.loads(old.read_text(encoding="utf-8"))
        note["received"] = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        old.write_text(json.dumps(note), encoding="utf-8")

        node.start()
        web.port = int(urllib.parse.urlsplit(node.status()["web"]["url"]).port or 0)
        queued = wait_until(lambda: web.queue() or None, 20, "the queue read back")
        assert [u["name"] for u in queued] == ["keep.gcode"]
        stale = web.uploads_dir / "stale"
        [moved] = [p for p in stale.iterdir() if p.name.endswith("-old.gcode")]
        assert moved.read_bytes() == data
        reason = json.loads((stale / f"{moved.name}.json").read_text(encoding="utf-8"))["reason"]
        assert reason == "not started within [web] upload_expiry_h"
        assert node.tap(ADA_UID)["ok"]
        node.wait_status(lambda s: s["state"] == "running", 15, "the kept upload runs")
        node.wait_status(lambda s: s["last_job"] is not None, 60, "the kept upload's job ends")
    finally:
        node.stop()
