"""`fabnode calibrate pid|esteps` through a real `fabnode run --simulate` daemon that holds the port.

The routine's commands go over the control socket's `calibrate_command` request; the simulated printer
records what it executed (`sim-firmware.log` in the state dir), and the new settings are read back with
M503 through the same request, as a technician checking the printer would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from fabnode.cli.calibrate_run import refuse_during_member_job
from tests.integration.test_daemon_helpers import MEMBER_UID, TECH_UID, Node

pytestmark = pytest.mark.timeout(30)
ON_SIM = ("--port", "sim", "--firmware", "marlin")  # the port is the daemon's: never opened by the CLI
GAINS = r"P(\d+\.\d\d) I(\d+\.\d\d) D(\d+\.\d\d)"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A daemon on the simulated printer (instant sim time), with Alice (trained) and Tom (technician)."""
    n = Node(tmp_path / "state", sim_speed=0).start()
    n.add_members("sim-printer")
    yield n
    n.stop()


def m503(node: Node) -> str:
    """The printer's settings report, asked through the daemon."""
    reply = node.ask({"cmd": "calibrate_command", "line": "M503", "timeout_s": 10})
    assert reply["ok"] and reply["reply_ok"], reply
    return "\n".join(reply["lines"])


def test_pid_through_the_daemon_applies_the_new_gains_on_the_printer(node: Node) -> None:
    before = re.search(rf"M301 {GAINS}", m503(node))
    result = node.cli("calibrate", "pid", *ON_SIM, "--cycles", "3", "--no-save")
    assert result.returncode == 0, result.stderr + node.output()
    shown = re.search(rf"pid: hotend PID {GAINS} -> {GAINS} \(not saved\)", result.stdout)
    assert shown is not None and before is not None, result.stdout
    assert shown.groups()[:3] == before.groups()  # the old gains the CLI showed are the printer's
    new = shown.groups()[3:]
    assert new != before.groups()
    after = re.search(rf"M301 {GAINS}", m503(node))
    assert after is not None and after.groups() == new  # the printer runs on the gains the CLI showed
    executed = node.executed()
    assert "M303 E0 S200 C3 U1" in executed and f"M301 P{new[0]} I{new[1]} D{new[2]}" in executed
    assert "M500" not in executed  # --no-save
    assert "calibration command to sim-printer: M303 E0 S200 C3 U1" in node.output()
    assert node.status()["state"] == "locked"


def test_only_safety_commands_may_skip_the_queue(node: Node) -> None:
    """The CLI's Ctrl-C sends heaters-off as `urgent`, past a routine's long heat wait."""
    off = node.ask({"cmd": "calibrate_command", "line": "M104 S0", "timeout_s": 5, "urgent": True})
    assert off["ok"] and off["reply_ok"], off
    moved = node.ask({"cmd": "calibrate_command", "line": "G28", "timeout_s": 5, "urgent": True})
    assert moved["ok"] is False and "not a safety command" in moved["error"]
    assert node.executed() == ["M104 S0"]


def test_refused_during_a_members_session_then_a_technician_saves(node: Node) -> None:
    assert node.tap(MEMBER_UID)["ok"]
    refused = node.cli("calibrate", "esteps", *ON_SIM, "--remaining", "20", "--yes")
    assert refused.returncode == 12, refused.stdout + refused.stderr
    assert "a member's session is open on sim-printer: calibrate once it ends" in refused.stderr
    raw = node.ask({"cmd": "calibrate_command", "line": "M503"})
    assert raw["ok"] is False and raw["busy"] is True and "member's session" in raw["error"]
    assert node.executed() == []  # nothing reached the printer during the member's session

    assert node.tap(MEMBER_UID)["ok"]  # Alice badges out
    node.wait_status(lambda s: s["state"] == "locked", 10, "the machine locked after the badge-out")
    assert node.tap(TECH_UID)["ok"]
    assert node.status()["state"] == "maintenance"
    steps_before = float(re.search(r"M92 .*E(\d+\.\d\d)", m503(node)).group(1))  # type: ignore[union-attr]
    done = node.cli("calibrate", "esteps", *ON_SIM, "--remaining", "24", "--yes")
    assert done.returncode == 0, done.stderr + node.output()
    shown = re.search(r"esteps: E steps/mm (\d+\.\d\d) -> (\d+\.\d\d) \(saved with M500\)", done.stdout)
    assert shown is not None, done.stdout
    assert float(shown.group(1)) == steps_before
    # 100 mm asked; the mark, 120 mm above the inlet, ends 24 mm above it: only 96 mm went in.
    new = float(shown.group(2))
    assert new == pytest.approx(steps_before * 100 / 96, abs=0.01)
    after = re.search(r"M92 .*E(\d+\.\d\d)", m503(node))
    assert after is not None and float(after.group(1)) == new
    executed = node.executed()
    assert "M500" in executed  # lab-forbidden in jobs, the technician's path may save
    assert any(c.startswith("M92 E") for c in executed)
    assert "calibration command to sim-printer: M500 (lab-forbidden for jobs" in node.output()


def test_the_cli_guard_reads_the_daemons_status_as_it_answers() -> None:
    """The daemon nests its status under "status" and flags a technician's session `maintenance`."""
    member_job = {"ok": True, "status": {"state": "running", "machine": "sim-printer",
                                         "session": {"member": "Alice", "maintenance": False}}}
    with pytest.raises(typer.Exit) as refused:
        refuse_during_member_job(member_job, "sim-printer")
    assert refused.value.exit_code == 12
    technician_job = {"ok": True, "status": {"state": "paused", "machine": "sim-printer",
                                             "session": {"member": "Tom", "maintenance": True}}}
    refuse_during_member_job(technician_job, "sim-printer")  # the technician's own job: not refused
