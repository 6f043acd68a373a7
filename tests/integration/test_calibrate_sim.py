"""`fabnode calibrate ...` as a technician runs it, against the Marlin and GRBL simulators on real ptys."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from fabnode.cli import calibrate
from fabnode.config.settings import load_config
from fabnode.node.control import ControlServer
from fabnode.paths import control_socket_path
from fabnode.records import members as access
from simulators.grbl.simulator import GrblSimulator
from simulators.marlin.simulator import MarlinSimulator

REPO = Path(__file__).resolve().parents[2]
BAUD = "1000000"
pytestmark = pytest.mark.timeout(30)


def cli() -> typer.Typer:
    app = typer.Typer()
    calibrate.register(app)
    app.callback()(lambda: None)
    return app


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli(), ["calibrate", *args], input=stdin)


@pytest.fixture
def marlin() -> Iterator[MarlinSimulator]:
    with MarlinSimulator(time_scale=0, baud=int(BAUD)) as sim:
        yield sim


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


def on_marlin(sim: MarlinSimulator, state: Path) -> list[str]:
    return ["--port", sim.port, "--firmware", "marlin", "--baud", BAUD, "--state-dir", str(state)]


def sent(sim: Any, prefix: str) -> list[str]:
    return [c for c in sim.executed if c.startswith(prefix)]


def test_esteps_applies_and_saves_the_new_steps_with_flags(marlin: MarlinSimulator, state: Path) -> None:
    old = marlin.firmware.settings.steps_per_mm["E"]
    result = invoke("esteps", *on_marlin(marlin, state), "--remaining", "24", "--yes")
    assert result.exit_code == 0, result.output
    expected = round(old * 100 / (120 - 24), 2)
    assert marlin.firmware.settings.steps_per_mm["E"] == expected
    assert marlin.firmware.stored is not None and marlin.firmware.stored.steps_per_mm["E"] == expected
    assert sent(marlin, "G1 E") == ["G1 E100 F100"] and sent(marlin, "M109") == ["M109 S200"]
    assert f"esteps: E steps/mm {old:.2f} -> {expected:.2f} (saved with M500)" in result.output


def test_esteps_asks_on_stdin_and_does_not_save_without_a_yes(marlin: MarlinSimulator, state: Path) -> None:
    old = marlin.firmware.settings.steps_per_mm["E"]
    result = invoke("esteps", *on_marlin(marlin, state), "--json", stdin="\n18\n\n")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["saved"] is False and info["data"]["new"] == round(old * 100 / 102, 2)
    assert marlin.firmware.settings.steps_per_mm["E"] == info["data"]["new"]
    assert marlin.firmware.stored is None and sent(marlin, "M500") == []


def test_esteps_without_an_answer_stops_with_a_clear_message(marlin: MarlinSimulator, state: Path) -> None:
    result = invoke("esteps", *on_marlin(marlin, state), "--yes", stdin="")
    assert result.exit_code == 1
    assert "give --remaining" in result.output
    assert sent(marlin, "M92 E") == []


def test_pid_applies_the_autotune_gains_with_m301_and_saves(marlin: MarlinSimulator, state: Path) -> None:
    result = invoke("pid", *on_marlin(marlin, state), "--yes")
    assert result.exit_code == 0, result.output
    assert sent(marlin, "M303") == ["M303 E0 S200 C8 U1"]
    p, i, d = marlin.firmware.settings.hotend_pid
    assert sent(marlin, "M301") == [f"M301 P{p:.2f} I{i:.2f} D{d:.2f}"]
    assert marlin.firmware.stored is not None and marlin.firmware.stored.hotend_pid == (p, i, d)


def test_bed_pid_uses_m304(marlin: MarlinSimulator, state: Path) -> None:
    result = invoke("pid", *on_marlin(marlin, state), "--heater", "bed", "--cycles", "5", "--no-save")
    assert result.exit_code == 0, result.output
    assert sent(marlin, "M303") == ["M303 E-1 S60 C5 U1"]
    p, i, d = marlin.firmware.settings.bed_pid
    assert sent(marlin, "M304") == [f"M304 P{p:.2f} I{i:.2f} D{d:.2f}"]
    assert marlin.firmware.stored is None


def test_zoffset_sets_the_probe_offset(marlin: MarlinSimulator, state: Path) -> None:
    result = invoke("zoffset", *on_marlin(marlin, state), "--z", "-1.35", "--no-save")
    assert result.exit_code == 0, result.output
    assert marlin.firmware.settings.probe_offset["Z"] == -1.35
    assert "probe Z offset 0.00 -> -1.35 mm (not saved)" in result.output


def test_zoffset_refuses_a_value_outside_marlins_range(marlin: MarlinSimulator, state: Path) -> None:
    result = invoke("zoffset", *on_marlin(marlin, state), "--z", "-25")
    assert result.exit_code == 1 and "--z -25" in result.output
    assert sent(marlin, "M851 Z") == []


def test_level_homes_probes_shows_the_mesh_and_saves(marlin: MarlinSimulator, state: Path) -> None:
    result = invoke("level", *on_marlin(marlin, state), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert [c for c in marlin.executed if c in ("G28", "G29", "M500")] == ["G28", "G29", "M500"]
    info = json.loads(result.stdout)
    assert len(info["data"]["points"]) == 9
    assert max(info["data"]["z"]) - min(info["data"]["z"]) == pytest.approx(info["data"]["range_mm"])


def test_no_probe_is_refused_before_any_motion(marlin: MarlinSimulator, state: Path) -> None:
    result = invoke("level", *on_marlin(marlin, state), "--no-probe", "--yes")
    assert result.exit_code == 1 and "no bed probe" in result.output
    assert sent(marlin, "G2") == []


def test_a_silent_port_ends_with_the_no_answer_code(tmp_path: Path, state: Path) -> None:
    master, slave = os.openpty()  # nothing answers on the far end
    try:
        result = invoke("pid", "--port", os.ttyname(slave), "--firmware", "marlin", "--state-dir", str(state),
                        "--greeting-timeout", "0.2", "--yes")
    finally:
        os.close(master)
        os.close(slave)
    assert result.exit_code == 8 and "no answer" in result.output


# --- the laser grid ---------------------------------------------------------------------------------


@pytest.fixture
def laser_config(tmp_path: Path) -> Path:
    path = tmp_path / "laser.toml"
    path.write_text((REPO / "config" / "fabnode-laser.toml").read_text())
    return path


def test_laser_grid_burns_the_grid_and_records_the_chosen_cell(laser_config: Path, state: Path) -> None:
    before = laser_config.read_text()
    with GrblSimulator(time_scale=0, baud=int(BAUD)) as sim:
        result = invoke("laser-grid", "--port", sim.port, "--baud", BAUD, "--config", str(laser_config),
                        "--state-dir", str(state), "--powers", "300,600", "--feeds", "500,1000,2000",
                        "--interval", "1", "--cell", "3,1", "--yes")
        assert result.exit_code == 0, result.output
        assert sim.executed[0] == "$$"
        first_burns = [c for c in sim.executed if c.startswith("G1") and "F" in c]  # sent compact
        # the first line of each cell: rows are feeds, columns powers, cells 5 mm + 2 mm gap apart
        cells = [f"G1X{x}F{f}S{s}" for f in (500, 1000, 2000) for x, s in ((5, 300), (12, 600))]
        assert first_burns == cells
        assert sim.stats.laser_on_s > 0
    material = load_config(laser_config).materials["plywood-3mm"]
    assert (material.laser_power, material.laser_feed_mm_min) == (300.0, 2000.0)
    old, new = before.splitlines(), laser_config.read_text().splitlines()
    assert [a for a, b in zip(old, new, strict=True) if a != b] == ["laser_power = 800.0",
                                                                     "laser_feed_mm_min = 600.0"]


def test_laser_grid_refuses_when_laser_mode_is_off(laser_config: Path, state: Path) -> None:
    with GrblSimulator(time_scale=0, baud=int(BAUD), laser_mode=False) as sim:
        result = invoke("laser-grid", "--port", sim.port, "--baud", BAUD, "--config", str(laser_config),
                        "--state-dir", str(state), "--yes", "--cell", "1,1")
        assert result.exit_code == 1 and "$32=1" in result.output
        assert sim.executed == ["$$"]
    assert tomllib.loads(laser_config.read_text())["materials"]["plywood-3mm"]["laser_power"] == 800.0


# --- the daemon ---------------------------------------------------------------------------------------


@pytest.fixture
def daemon(state: Path) -> Iterator[dict[str, Any]]:
    """A stand-in daemon on the control socket: answers from `replies`, records requests."""
    seen: list[dict[str, Any]] = []
    replies: dict[str, dict[str, Any]] = {"status": {"ok": True, "state": "locked"}}

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return replies.get(request["cmd"], {"ok": False, "error": f"unknown cmd {request['cmd']!r}"})

    server = ControlServer(control_socket_path(state), handle).start()
    yield {"seen": seen, "replies": replies}
    server.stop()


def test_routines_refuse_while_a_members_job_runs(marlin: MarlinSimulator, state: Path, daemon: dict) -> None:
    daemon["replies"]["status"] = {"ok": True, "state": "running", "machine": "prusa-mini-1",
                                   "session": {"is_maintenance": False}}
    for routine in ("esteps", "pid", "zoffset", "level"):
        result = invoke(routine, *on_marlin(marlin, state), "--yes")
        assert result.exit_code == 12
        assert "a member's job is running on prusa-mini-1: calibrate after it ends" in result.output
    assert marlin.executed == []


def test_with_an_idle_daemon_commands_go_through_it(marlin: MarlinSimulator, state: Path,
                                                    daemon: dict) -> None:
    result = invoke("pid", *on_marlin(marlin, state), "--yes")
    assert result.exit_code == 1
    assert "stop it (sudo systemctl stop fabnode)" in result.output
    assert daemon["seen"][-1] == {"cmd": "calibrate_command", "line": "M503", "timeout_s": 30.0}
    assert marlin.executed == []  # the port stayed the daemon's


def test_relay_leds_and_inputs_are_control_socket_requests(state: Path, daemon: dict) -> None:
    daemon["replies"].update(relay={"ok": True, "relay": True}, leds={"ok": True},
                             inputs={"ok": True, "inputs": {"estop": False, "lid": True}})
    assert invoke("relay", "--on", "--state-dir", str(state)).output == "relay on\n"
    assert invoke("leds", "--red", "--blink", "--state-dir", str(state)).exit_code == 0
    assert invoke("inputs", "--state-dir", str(state)).output == "e-stop: released, lid: OPEN\n"
    asked = [r for r in daemon["seen"] if r["cmd"] != "status"]
    leds = {"cmd": "leds", "green": False, "red": True, "blink": True}
    assert asked == [{"cmd": "relay", "on": True}, leds, {"cmd": "inputs"}]


def test_relay_is_refused_during_a_members_job(state: Path, daemon: dict) -> None:
    daemon["replies"]["status"] = {"ok": True, "state": "paused", "machine": "laser-1"}
    result = invoke("relay", "--off", "--state-dir", str(state))
    assert result.exit_code == 12 and "running on laser-1" in result.output
    assert [r["cmd"] for r in daemon["seen"]] == ["status"]


def test_socket_verbs_without_a_daemon_say_so(state: Path) -> None:
    for args in (["relay", "--on"], ["inputs"], ["badge"]):
        result = invoke(*args, "--state-dir", str(state))
        assert result.exit_code == 10, args
        assert "daemon" in result.output


def test_badge_prints_the_keyed_hash_the_members_table_uses(state: Path) -> None:
    secret = access.load_secret(state / "secret.key")
    result = invoke("badge", "--uid", "04:A2:2B:1C", "--state-dir", str(state))
    assert result.exit_code == 0
    assert result.output.strip() == access.badge_hash(secret, "04a22b1c")
    assert re.fullmatch(r"[0-9a-f]{64}", result.output.strip())


def test_badge_without_a_lab_secret_does_not_invent_one(state: Path) -> None:
    result = invoke("badge", "--uid", "04a22b1c", "--state-dir", str(state))
    assert result.exit_code == 1 and "no lab secret" in result.output
    assert not (state / "secret.key").exists()


@pytest.mark.timeout(40)
def test_ctrl_c_while_heating_switches_the_heaters_off(state: Path) -> None:
    program = ("import typer; from fabnode.cli import calibrate; app = typer.Typer(); "
               "calibrate.register(app); app.callback()(lambda: None); app()")
    with MarlinSimulator(time_scale=1.0, baud=int(BAUD)) as sim:  # heating takes a real minute
        proc = subprocess.Popen(
            [sys.executable, "-c", program, "calibrate", "esteps", *on_marlin(sim, state), "--yes"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Heating"):
                break
        deadline = time.monotonic() + 10
        while sim.firmware.hotend.target != 200.0:  # M109 is on its way: no event to wait on, poll
            assert time.monotonic() < deadline, "M109 never reached the printer"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert "Ctrl-C" in err
        assert sim.firmware.hotend.target == 0.0 and sim.firmware.bed.target == 0.0
        assert sent(sim, "M92 E") == [] and sent(sim, "G1 E") == []
