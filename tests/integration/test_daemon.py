"""The node daemon end to end: `fabnode run --simulate` in a subprocess, driven through the CLI and socket.

Each test starts its own daemon (simulated Marlin on a pty, simulated GPIO and badge reader) on a
temporary state dir and checks what a member or technician would see: exit codes and messages, the
status, the usage log's rows, and the commands the simulated printer executed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fabnode.config.settings import load_config
from fabnode.gcode.analysis import analyze_file
from tests.integration.test_daemon_helpers import (
    MEMBER_UID,
    STRANGER_UID,
    Node,
    fabnode,
    gcode_prefix,
    wait_until,
    wire_commands,
    write_config,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A daemon on the built-in simulated printer, with Alice (trained) and Tom (technician)."""
    n = Node(tmp_path / "state").start()
    n.add_members("sim-printer")
    yield n
    n.stop()


def test_unknown_badge_is_denied_and_the_relay_stays_off(node: Node) -> None:
    result = node.cli("badge", STRANGER_UID)
    assert result.returncode == 1
    assert "unknown badge" in result.stderr
    rows = node.rows("SELECT * FROM access_events")
    assert [(r["granted"], r["reason"], r["member_id"]) for r in rows] == [(0, "unknown badge", None)]
    # Only the keyed hash is stored: the UID appears nowhere in the row.
    assert len(rows[0]["badge_hash"]) == 64 and "0400" not in rows[0]["badge_hash"].replace(":", "")
    status = node.status()
    assert status["state"] == "locked" and status["relay"] is False


def test_a_member_unlocks_the_machine(node: Node) -> None:
    result = node.cli("badge", MEMBER_UID)
    assert result.returncode == 0, result.stderr
    status = node.status()
    assert (status["state"], status["relay"], status["member"]) == ("unlocked", True, "Alice")
    sessions = node.rows("SELECT * FROM sessions")
    assert len(sessions) == 1 and sessions[0]["ended"] is None
    text = node.cli("status").stdout
    assert "UNLOCKED" in text and "relay      ON" in text and "Alice" in text


def test_a_job_runs_to_the_end(node: Node, tmp_path: Path) -> None:
    part = gcode_prefix(tmp_path, 300)
    refused = node.cli("print", str(part))
    assert refused.returncode == 1 and "no one is badged in" in refused.stderr
    assert node.tap(MEMBER_UID)["ok"]
    started = node.cli("print", str(part))
    assert started.returncode == 0, started.stderr
    status = node.wait_status(lambda s: (s["last_job"] or {}).get("status") == "completed", 30,
                              "the job completed")  # fmt: skip
    assert status["state"] == "unlocked" and status["relay"] is True
    [job] = node.rows("SELECT * FROM jobs")
    profile = load_config(node.state_dir / "fabnode-sim-printer.toml").machine
    analysis = analyze_file(part, profile)
    assert job["status"] == "completed" and job["file_name"] == "part.gcode"
    assert job["filament_mm"] == pytest.approx(analysis.filament_mm, rel=1e-6)
    assert job["filament_mm"] > 0
    assert node.executed() == wire_commands(part)


def test_badge_out_during_a_job_waits_for_the_job_then_the_hotend(tmp_path: Path) -> None:
    node = Node(tmp_path / "state", sim_speed=40).start()
    try:
        node.add_members("sim-printer")
        part = gcode_prefix(tmp_path, 300)
        assert node.tap(MEMBER_UID)["ok"]
        assert node.cli("print", str(part)).returncode == 0
        node.wait_status(lambda s: s["state"] == "running", 10, "the job runs")
        out = node.tap(MEMBER_UID)
        assert out["ok"], out
        during = node.status()
        assert during["state"] == "running" and during["relay"] is True
        assert during["session"]["badge_out_pending"] is True
        seen: list[dict] = []

        def locked() -> bool:
            seen.append(node.status())
            return seen[-1]["state"] == "locked"

        wait_until(locked, 40, "the machine locks after the job and the cooldown")
        cooling = [s for s in seen if s["state"] == "cooldown"]
        assert cooling and all(s["relay"] for s in cooling)
        assert seen[-1]["relay"] is False
        assert seen[-1]["temperatures"]["hotend"]["actual"] < 50.0
        assert cooling[0]["temperatures"]["hotend"]["actual"] >= 50.0  # it really had to wait
        [job] = node.rows("SELECT * FROM jobs")
        [session] = node.rows("SELECT * FROM sessions")
        assert job["status"] == "completed"
        assert session["end_reason"] == "badge out" and session["ended"] >= job["ended"]
    finally:
        node.stop()


@pytest.mark.timeout(60)
def test_idle_timeout_ends_the_session(tmp_path: Path) -> None:
    config = write_config(tmp_path, idle=10.0, warning=2.0, machine="sim-printer")
    node = Node(tmp_path / "state", config=config).start()
    try:
        node.add_members("sim-printer")
        assert node.tap(MEMBER_UID)["ok"]
        node.wait_status(lambda s: s["state"] == "locked" and not s["relay"], 20, "idle timeout locks")
        [session] = node.rows("SELECT * FROM sessions")
        assert session["end_reason"] == "idle timeout"
        assert 9.0 <= session["duration_s"] < 15.0
    finally:
        node.stop()


def test_a_file_failing_preflight_is_refused_and_nothing_changes(node: Node, tmp_path: Path) -> None:
    assert node.tap(MEMBER_UID)["ok"]
    bad = tmp_path / "bad.gcode"
    bad.write_text("G28\nM104 S215\nG1 X500 Y10 F3000\nM500\n", encoding="utf-8")
    result = node.cli("print", str(bad))
    assert result.returncode == 1
    assert "fails preflight" in result.stderr and "line 3" in result.stderr and "line 4" in result.stderr
    status = node.status()
    assert (status["state"], status["relay"], status["job"]) == ("unlocked", True, None)
    assert node.rows("SELECT * FROM jobs") == []


def test_badge_formats_are_checked(node: Node) -> None:
    for uid in ("zz:zz", "04:A2", "04A22B1"):
        result = node.cli("badge", uid)
        assert result.returncode == 2, (uid, result.stderr)
        assert "badge UID" in result.stderr
    assert node.rows("SELECT * FROM access_events") == []


def test_a_malformed_config_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("idle_timeout_s = 900.0", "idle_timeout_s = -5"))
    result = fabnode("run", "--config", str(config), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2
    assert str(config) in result.stderr and "idle_timeout_s" in result.stderr
    typo = write_config(tmp_path)
    typo.write_text(typo.read_text().replace("[gpio]", "[gpio]\nrelay_pinn = 4"))
    result = fabnode("run", "--config", str(typo), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2 and "relay_pinn" in result.stderr


def test_verbs_without_a_daemon_exit_10(tmp_path: Path) -> None:
    result = fabnode("status", "--state-dir", str(tmp_path))
    assert result.returncode == 10 and "no fabnode daemon is running" in result.stderr


def test_pause_resume_lock_and_cancel_from_the_cli(tmp_path: Path) -> None:
    node = Node(tmp_path / "state", sim_speed=20).start()
    try:
        node.add_members("sim-printer")
        # long enough that resume, lock and cancel (a CLI process each) all come while it still runs
        part = gcode_prefix(tmp_path, 2000)
        assert node.cli("pause").returncode == 1  # no job
        assert node.tap(MEMBER_UID)["ok"]
        assert node.cli("print", str(part)).returncode == 0
        node.wait_status(lambda s: s["state"] == "running" and s["job"]["lines_acked"] > 5, 20, "job runs")
        assert node.cli("pause").returncode == 0
        paused = node.wait_status(lambda s: s["state"] == "paused", 5, "paused")
        assert paused["job"]["status"] == "paused" and paused["relay"] is True
        assert node.cli("resume").returncode == 0
        refused = node.cli("lock")
        assert refused.returncode == 1 and "cancel it first" in refused.stderr
        cancelled = node.cli("cancel")
        assert cancelled.returncode == 0, cancelled.stderr
        node.wait_status(lambda s: (s["last_job"] or {}).get("status") == "cancelled", 20, "cancelled")
        [job] = node.rows("SELECT * FROM jobs")
        analysis = analyze_file(part, load_config(node.state_dir / "fabnode-sim-printer.toml").machine)
        n = job["last_line_acked"]
        assert 5 < n < analysis.lines
        assert job["filament_mm"] == pytest.approx(analysis.filament_mm_at(n), rel=1e-9)
        assert node.cli("lock").returncode == 0
        node.wait_status(lambda s: s["state"] in ("cooldown", "locked"), 5, "the session ends")
    finally:
        node.stop()
