"""The node under faults, through the real daemon (`fabnode run --simulate` in a subprocess).

- The printer's USB cable pulled mid-job and plugged back: the job fails as `port_lost` with what
  the firmware acknowledged, the relay goes off after the grace period, the daemon reconnects by the
  same path, tells the board to stop heating, and the next job runs without a restart.
- The badge reader unplugged and plugged back: fault rows, `status --json`, taps work again.
- The disk full (a real tmpfs filled to the last byte): taps that would open a session are refused
  (red LED), the running job runs to its end, and its records are written once there is room again.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabnode.config.settings import load_config
from fabnode.gcode.analysis import analyze_file
from tests.integration.test_daemon_helpers import (
    MEMBER_UID,
    Node,
    gcode_prefix,
    wait_until,
    wire_commands,
    write_config,
)

pytestmark = pytest.mark.timeout(60)


def fault_config(folder: Path, *, serial: str = "", session: str = "", node: str = "",
                 checkpoint: float = 0.5) -> Path:  # fmt: skip
    """The helpers' simulated printer config with extra lines in [serial], [session] and [node]."""
    path = write_config(folder, checkpoint=checkpoint, machine="sim-printer")
    text = path.read_text(encoding="utf-8")
    text = text.replace('port = "sim"\n', f'port = "sim"\n{serial}\n')
    text = text.replace("[session]\n", f"[session]\n{session}\n")
    text = text.replace('machine = "sim-printer"\n', f'machine = "sim-printer"\n{node}\n', 1)
    path.write_text(text, encoding="utf-8")
    return path


def plain_job(folder: Path, moves: int, name: str = "moves.gcode") -> Path:
    """A job with moves only (no heating): a cold printer locks at once when its session ends."""
    lines = ["G28", "G90"] + [f"G1 X{20 + (i * 7) % 140} Y{20 + (i * 13) % 140} F6000" for i in range(moves)]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def kinds(node: Node, table: str = "faults") -> list[str]:
    return [r["kind"] for r in node.rows(f"SELECT kind FROM {table} ORDER BY id")]


# --- the printer's USB cable ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_usb_replug_mid_job_fails_it_cuts_power_after_grace_and_the_next_job_runs(tmp_path: Path) -> None:
    config = fault_config(tmp_path, serial="reconnect_every_s = 0.2", session="host_lost_relay_s = 3.0")
    node = Node(tmp_path / "state", config=config, sim_speed=20).start()
    try:
        node.add_members("sim-printer")
        part = gcode_prefix(tmp_path, 300)
        assert node.tap(MEMBER_UID)["ok"]
        assert node.cli("print", str(part)).returncode == 0
        node.wait_status(lambda s: s["state"] == "running" and s["job"]["lines_acked"] > 10
                         and (s["temperatures"].get("hotend") or {}).get("actual", 0) > 100, 20,
                         "the job runs with a hot hotend")  # fmt: skip
        pid = node.proc.pid if node.proc else None

        assert node.cli("sim-input", "port", "unplug").returncode == 0
        lost = node.wait_status(lambda s: s["state"] != "running", 5, "the job ends")
        # the session is over, the power stays on (hotend fan) for the grace period only
        assert (lost["state"], lost["relay"], lost["member"]) == ("cooldown", True, None)
        assert lost["port"]["open"] is False and lost["port"]["losses"] == 1
        assert lost["last_job"]["status"] == "failed"
        [job] = node.rows("SELECT * FROM jobs")
        assert job["status"] == "failed" and "lost" in job["reason"]
        n = job["last_line_acked"]
        analysis = analyze_file(part, load_config(config).machine)
        assert 10 < n < analysis.lines
        assert job["filament_mm"] == pytest.approx(analysis.filament_mm_at(n), rel=1e-9)
        off = node.wait_status(lambda s: not s["relay"], 8, "the relay goes off after the grace period")
        assert off["state"] == "locked" and off["port"]["open"] is False  # still unplugged: off anyway
        assert "port_lost" in kinds(node)

        executed_before = len(node.executed())
        assert node.cli("sim-input", "port", "plug").returncode == 0
        back = node.wait_status(lambda s: s["port"]["open"] and s["port"]["reconnects"] == 1, 5,
                                "reconnected")  # fmt: skip
        assert back["port"]["path"].endswith("sim-printer.tty")  # the same path as before the loss
        wait_until(lambda: {"M104 S0", "M140 S0"} <= set(node.executed()[executed_before:]), 5,
                   "the board is told to stop heating once it answers")  # fmt: skip
        assert "port_back" in kinds(node) and "back after" in node.output()

        assert node.tap(MEMBER_UID)["ok"]
        small = plain_job(tmp_path, 20)
        started = node.cli("print", str(small))
        assert started.returncode == 0, started.stderr
        node.wait_status(lambda s: (s["last_job"] or {}).get("status") == "completed", 20, "the next job")
        assert node.executed()[-len(wire_commands(small)):] == wire_commands(small)
        assert node.proc is not None and node.proc.pid == pid and node.proc.poll() is None
    finally:
        assert node.stop() == 0


def test_a_job_asked_for_while_the_port_is_unplugged_is_refused(tmp_path: Path) -> None:
    config = fault_config(tmp_path, serial="reconnect_every_s = 0.2")
    node = Node(tmp_path / "state", config=config, sim_speed=200).start()
    try:
        node.add_members("sim-printer")
        assert node.tap(MEMBER_UID)["ok"]
        assert node.cli("sim-input", "port", "unplug").returncode == 0
        node.wait_status(lambda s: not s["port"]["open"], 5, "the port is seen gone")
        refused = node.cli("print", str(plain_job(tmp_path, 5)))
        assert refused.returncode == 1 and "is not connected" in refused.stderr
        assert node.rows("SELECT * FROM jobs") == [] and node.status()["state"] == "unlocked"
    finally:
        assert node.stop() == 0


# --- the badge reader ---------------------------------------------------------------------------------


def test_reader_unplugged_is_recorded_and_shown_and_found_again_without_a_restart(tmp_path: Path) -> None:
    node = Node(tmp_path / "state").start()
    try:
        node.add_members("sim-printer")
        node.wait_status(lambda s: s["reader"]["present"] is True, 5, "the reader is found at start-up")
        assert node.cli("sim-input", "reader", "unplug").returncode == 0
        node.wait_status(lambda s: s["reader"]["present"] is False, 5, "the reader is lost")
        shown = json.loads(node.cli("status", "--json").stdout)
        assert shown["reader"]["present"] is False and shown["reader"]["losses"] == 1
        assert shown["state"] == "locked"
        tap = node.cli("badge", MEMBER_UID)
        assert tap.returncode == 1 and "reader is unplugged" in tap.stderr
        assert kinds(node) == ["reader_lost"]

        assert node.cli("sim-input", "reader", "plug").returncode == 0
        node.wait_status(lambda s: s["reader"]["present"] is True, 5, "the reader is back")
        assert node.tap(MEMBER_UID)["ok"]
        assert node.status()["state"] == "unlocked"
        assert kinds(node) == ["reader_lost", "reader_back"]
        assert "badge reader lost" in node.output() and "badge reader back" in node.output()
    finally:
        assert node.stop() == 0


# --- the disk -------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs mounted at tmp_path/state (root only): a disk the test can really fill."""
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system says ENOSPC; the file, to delete for room."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        for chunk in (b"\0" * 1024 * 1024, b"\0" * 4096, b"\0" * 512):
            with contextlib.suppress(OSError):
                while True:
                    out.write(chunk)
    return filler


@pytest.mark.timeout(60)
def test_disk_full_refuses_new_sessions_keeps_the_job_and_records_its_end_later(
    tmp_path: Path, small_disk: Path
) -> None:
    # the simulator's record of executed commands lives off the small disk (it is test equipment)
    (small_disk / "sim-firmware.log").symlink_to(tmp_path / "sim-firmware.log")
    config = fault_config(tmp_path, node="min_free_mb = 8")
    node = Node(small_disk, config=config, sim_speed=20).start()
    try:
        node.add_members("sim-printer")
        assert node.tap(MEMBER_UID)["ok"]
        job_file = plain_job(tmp_path, 400)
        assert node.cli("print", str(job_file)).returncode == 0
        node.wait_status(lambda s: s["state"] == "running" and s["job"]["lines_acked"] > 5, 10,
                         "the job runs")  # fmt: skip

        filler = fill(small_disk)
        full = node.wait_status(lambda s: not s["storage"]["ok"], 5, "the daemon sees the disk full")
        assert "disk full" in full["storage"]["problem"] or "cannot be written" in full["storage"]["problem"]
        assert full["state"] == "running"  # a job is never stopped for its records
        done = node.wait_status(lambda s: (s["last_job"] or {}).get("status") == "completed", 30,
                                "the job runs to its end on a full disk")  # fmt: skip
        assert done["last_job"]["recorded"] is False and done["storage"]["kept_records"] >= 1
        assert node.rows("SELECT status FROM jobs") == [{"status": "in_progress"}]  # not written yet
        assert node.executed()[-len(wire_commands(job_file)):] == wire_commands(job_file)

        out = node.tap(MEMBER_UID)  # badge-out: ending a session is never refused
        assert out["ok"] and out["state"] == "locked"
        refused = node.cli("badge", MEMBER_UID)
        assert refused.returncode == 1
        assert "the usage log cannot be written (database or disk is full): no new session" in refused.stderr
        status = node.status()
        assert (status["state"], status["relay"]) == ("locked", False)
        assert status["leds"] == {"green": False, "red": True, "blink": True}  # the refusal's red flash
        assert "usage log: cannot write" in node.output()

        filler.unlink()
        node.wait_status(lambda s: s["storage"]["ok"] and s["storage"]["kept_records"] == 0, 10,
                         "the kept records are written once there is room")  # fmt: skip
        [job] = node.rows("SELECT * FROM jobs")
        analysis = analyze_file(job_file, load_config(config).machine)
        assert job["status"] == "completed" and job["last_line_acked"] == analysis.lines
        [session] = node.rows("SELECT * FROM sessions")
        assert session["end_reason"] == "badge out" and session["ended"] >= job["ended"]
        reasons = [r["reason"] for r in node.rows("SELECT reason FROM access_events ORDER BY id")]
        assert any("no new session" in r for r in reasons)  # the refused tap is on record too
        assert "storage" in kinds(node)
        assert node.tap(MEMBER_UID)["ok"] and node.status()["state"] == "unlocked"
    finally:
        assert node.stop() == 0
