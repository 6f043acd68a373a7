"""The job inbox through the real daemon: drop a file during a session, tap to start it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_daemon_helpers import MEMBER_UID, Node, gcode_prefix, wait_until

pytestmark = pytest.mark.timeout(60)


def _drop(source: Path, inbox: Path) -> Path:
    """Copy under a hidden name, then rename: how docs/inbox.md tells members to upload."""
    hidden = inbox / f".{source.name}"
    hidden.write_bytes(source.read_bytes())
    target = inbox / source.name
    os.replace(hidden, target)
    return target


def test_inbox_files_start_by_a_tap_bad_ones_are_set_aside(tmp_path: Path) -> None:
    node = Node(tmp_path / "state", sim_speed=200).start()
    try:
        node.add_members("sim-printer")
        inbox = Path(node.status()["inbox"]["path"])
        stale = _drop(gcode_prefix(tmp_path, 50, "old.gcode"), inbox)  # dropped before the session
        assert node.tap(MEMBER_UID)["ok"]
        assert not stale.exists() and list((inbox / "stale").glob("*old.gcode"))

        bad = tmp_path / "bad.gcode"
        bad.write_text("G28\nG1 X900 F3000\n", encoding="utf-8")
        _drop(bad, inbox)
        assert node.tap(MEMBER_UID)["ok"]  # the tap is taken; the file is checked aside
        rejected = wait_until(lambda: list((inbox / "rejected").glob("*bad.gcode")), 10, "bad file rejected")
        problems = Path(f"{rejected[0]}.problems.txt").read_text(encoding="utf-8")
        assert "line 2" in problems
        denied = wait_until(lambda: node.rows("SELECT * FROM access_events WHERE granted = 0"), 5, "denial")
        # the reason goes to the region with the access record: it names the problem, not the file
        assert denied[0]["reason"].startswith("inbox file fails preflight: line 2:")
        assert "bad.gcode" not in denied[0]["reason"]
        status = node.status()
        assert (status["state"], status["relay"]) == ("unlocked", True)
        assert node.rows("SELECT * FROM jobs") == []

        _drop(gcode_prefix(tmp_path, 200, "good.gcode"), inbox)
        assert node.tap(MEMBER_UID)["ok"]
        ended = node.wait_status(lambda s: s["last_job"] is not None, 30, "the inbox job's end")["last_job"]
        assert ended["status"] == "completed", f"{ended}\ndaemon log:\n{node.output()}"
        [job] = node.rows("SELECT * FROM jobs")
        assert job["file_name"] == "good.gcode" and job["status"] == "completed"
        assert list((inbox / "accepted").glob("*good.gcode")) and node.status()["inbox"]["waiting"] == []

        out = node.tap(MEMBER_UID)  # nothing waiting: the tap ends the session
        assert out["ok"] and out["state"] in ("cooldown", "locked")
        [session] = node.rows("SELECT * FROM sessions")
        assert session["end_reason"] == "badge out"
    finally:
        node.stop()
