"""A laser node checks GRBL's laser mode before any job, and an open lid turns the beam off by the door hold.

With `$32=0` GRBL keeps the spindle output (the beam) on during a feed hold, so a job that ran with it
off would burn through a lid-open pause. The daemon runs in this process on the simulated GRBL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.node_prepare import MEMBER_UID, TECH_UID, SimNode
from tests.integration.test_daemon_helpers import wait_until

MOVES = "".join(f"G1 X{i % 2 * 40} Y{i * 0.2:.1f} F600\n" for i in range(400))
LASER_JOB = "G21\nG90\nM4 S800\n" + MOVES + "M5\n"


def laser_node(folder: Path, laser_mode: bool) -> SimNode:
    node = SimNode(folder, firmware="grbl")
    assert node.parts.simulator is not None
    # as the board was left, before the node connects
    node.parts.simulator.core.settings[32] = 1 if laser_mode else 0
    return node


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "engrave.gcode"
    path.write_text(LASER_JOB, encoding="utf-8")
    return path


def status(node: SimNode) -> dict[str, object]:
    reply = node.daemon.requests.handle({"cmd": "status"})
    assert reply["ok"], reply
    return dict(reply["status"])  # type: ignore[arg-type]


def _print(node: SimNode, file: Path) -> dict[str, object]:
    return node.daemon.requests.handle({"cmd": "print", "file": str(file)})


@pytest.mark.timeout(60)
def test_jobs_wait_for_a_technician_while_laser_mode_is_off(tmp_path: Path, job: Path) -> None:
    with laser_node(tmp_path / "state", laser_mode=False) as node:
        wait_until(lambda: status(node)["laser_mode_off"] == "$32=0", 15, "the node read $32")
        assert node.tap(MEMBER_UID)["granted"]
        refused = _print(node, job)
        assert refused["ok"] is False
        assert "GRBL laser mode is off ($32=0): a technician sets $32=1" in str(refused["error"])
        assert node.parts.simulator is not None and "M4S800" not in node.parts.simulator.executed
        node.tap(MEMBER_UID)  # the member leaves; a technician fixes the setting through the node
        wait_until(lambda: status(node)["state"] == "locked", 30, "the machine locks")
        assert node.tap(TECH_UID)["granted"]
        fixed = node.daemon.requests.handle({"cmd": "calibrate_command", "line": "$32=1", "timeout_s": 10})
        assert fixed["ok"] is True, fixed
        wait_until(lambda: status(node)["laser_mode_off"] is None, 10, "the node saw $32=1")
        started = _print(node, job)
        assert started["ok"] is True, started


@pytest.mark.timeout(60)
def test_an_open_lid_turns_the_beam_off_even_with_laser_mode_off(tmp_path: Path, job: Path) -> None:
    with laser_node(tmp_path / "state", laser_mode=True) as node:
        sim, pins = node.parts.simulator, node.parts.sim_gpio
        assert sim is not None and pins is not None
        assert node.tap(MEMBER_UID)["granted"]
        assert _print(node, job)["ok"] is True
        wait_until(lambda: sim.core.beam_power() > 0, 20, "the beam burns")
        sim.core.settings[32] = 0  # as a job that wrote $32=0 would leave it (preflight refuses that now)
        pins.open_lid()
        wait_until(lambda: status(node)["state"] == "paused", 10, "the job pauses")
        wait_until(lambda: sim.core.beam_power() == 0, 10, "the beam goes off behind the safety door")
        assert sim.core.door
