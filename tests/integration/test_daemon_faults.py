"""The daemon under faults: the emergency stop, and a SIGKILL (power cut) in the middle of a job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fabnode.config.settings import load_config
from fabnode.gcode.analysis import analyze_file
from tests.integration.test_daemon_helpers import (
    MEMBER_UID,
    TECH_UID,
    Node,
    gcode_prefix,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(60)


def test_emergency_stop_cuts_power_aborts_the_job_and_needs_a_technician(tmp_path: Path) -> None:
    node = Node(tmp_path / "state", sim_speed=20).start()
    try:
        node.add_members("sim-printer")
        assert node.tap(MEMBER_UID)["ok"]
        assert node.cli("print", str(gcode_prefix(tmp_path, 300))).returncode == 0
        node.wait_status(lambda s: s["state"] == "running", 10, "the job runs")
        pressed = node.cli("sim-input", "estop", "press")
        assert pressed.returncode == 0, pressed.stderr
        t0 = time.monotonic()
        status = node.wait_status(lambda s: s["state"] == "fault", 5, "FAULT")
        assert status["relay"] is False and time.monotonic() - t0 < 1.0
        assert status["inputs"]["estop"] is True and status["job"] is None
        [job] = node.rows("SELECT * FROM jobs")
        # an abort is a status of its own (schema v2); its reason still says so; telemetry sends failed
        assert job["status"] == "aborted" and job["reason"].startswith("aborted: emergency stop")
        assert [f["kind"] for f in node.rows("SELECT kind FROM faults")] == ["estop"]
        [session] = node.rows("SELECT * FROM sessions")
        assert session["ended"] is not None

        member = node.cli("badge", MEMBER_UID)
        assert member.returncode == 1 and "a technician must clear it" in member.stderr
        early = node.tap(TECH_UID)
        assert not early["ok"] and "release the emergency stop first" in early["error"]
        assert node.status()["state"] == "fault"
        assert node.cli("sim-input", "estop", "release").returncode == 0
        node.wait_status(lambda s: not s["inputs"]["estop"], 5, "the e-stop reads released")
        assert node.status()["state"] == "fault"  # releasing alone clears nothing
        cleared = node.tap(TECH_UID)
        assert cleared["ok"], cleared
        status = node.status()
        assert (status["state"], status["relay"]) == ("locked", False)
    finally:
        node.stop()


def test_sigkill_during_a_job_is_recovered_as_interrupted(tmp_path: Path) -> None:
    config = write_config(tmp_path, checkpoint=0.5, machine="sim-printer")
    node = Node(tmp_path / "state", config=config, sim_speed=10).start()
    node.add_members("sim-printer")
    part = gcode_prefix(tmp_path, 300)
    assert node.tap(MEMBER_UID)["ok"]
    assert node.cli("print", str(part)).returncode == 0

    def checkpointed() -> bool:
        rows = node.rows("SELECT last_line_acked, checkpoint_at FROM jobs")
        return bool(rows) and rows[0]["checkpoint_at"] is not None and rows[0]["last_line_acked"] > 40

    wait_until(checkpointed, 30, "a checkpoint with progress")
    node.kill()
    access_before = node.rows("SELECT * FROM access_events ORDER BY id")
    node.start()
    try:
        [job] = node.rows("SELECT * FROM jobs")
        [session] = node.rows("SELECT * FROM sessions")
        assert job["status"] == "interrupted" and session["end_reason"] == "interrupted"
        analysis = analyze_file(part, load_config(config).machine)
        n = job["last_line_acked"]
        assert 40 < n < analysis.lines
        assert job["filament_mm"] == pytest.approx(analysis.filament_mm_at(n), rel=1e-9)
        assert job["filament_mm"] < analysis.filament_mm
        assert node.rows("SELECT * FROM access_events ORDER BY id") == access_before
        assert node.rows("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
        status = node.status()
        assert (status["state"], status["relay"]) == ("locked", False)
    finally:
        assert node.stop() == 0


def test_sigterm_during_a_job_cancels_it_and_switches_the_relay_off(tmp_path: Path) -> None:
    node = Node(tmp_path / "state", sim_speed=40).start()
    node.add_members("sim-printer")
    assert node.tap(MEMBER_UID)["ok"]
    assert node.cli("print", str(gcode_prefix(tmp_path, 300))).returncode == 0
    node.wait_status(lambda s: s["state"] == "running" and s["job"]["lines_acked"] > 5, 20, "the job runs")
    assert node.stop() == 0
    [job] = node.rows("SELECT * FROM jobs")
    [session] = node.rows("SELECT * FROM sessions")
    assert (job["status"], job["reason"]) == ("cancelled", "fabnode stopped")
    assert job["last_line_acked"] > 5 and session["end_reason"] == "fabnode stopped"
    assert "relay off" in node.output().splitlines()[-1]


@pytest.mark.broker
def test_broker_flag_sends_the_records_to_the_region(tmp_path: Path, mosquitto, fake_collector) -> None:
    node = Node(tmp_path / "state", extra=("--broker", mosquitto.url)).start()
    try:
        node.add_members("sim-printer")
        assert node.tap(MEMBER_UID)["ok"]
        assert fake_collector.wait_for(
            lambda c: {"access", "session_started"} <= {e.kind for e in c.arrivals}, 15)
        kinds = [e.kind for e in fake_collector.arrivals]
        assert "state" in kinds or any(s == "online" for s, _, _ in fake_collector.statuses)
        sent = str([e.data for e in fake_collector.arrivals]).lower()
        assert MEMBER_UID.replace(":", "").lower() not in sent and "alice" not in sent
    finally:
        node.stop()
