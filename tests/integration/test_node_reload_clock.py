"""The node's config reload (SIGHUP) during a job, and a wall clock that jumps, through the real daemon.

- SIGHUP re-reads the config: session timeouts and machine limits apply at once (the next preflight
  sees them), serial settings wait for the running job to end, a broken file is refused whole, and the
  job is never interrupted.
- The wall clock jumps (hours forward, a day back) while a session and a job run: timestamps follow
  it, durations and the idle timeout do not (the daemon runs in this process with its wall clock
  injected; every other part is the real one on simulators).
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabnode.node.loop import Daemon
from fabnode.node.wiring import build_parts, simulated_config
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.integration.test_daemon_helpers import MEMBER_UID, Node, gcode_prefix, wait_until
from tests.integration.test_node_faults import fault_config, plain_job

pytestmark = pytest.mark.timeout(60)


def hup(node: Node) -> None:
    assert node.proc is not None
    node.proc.send_signal(signal.SIGHUP)


def test_sighup_applies_what_it_can_keeps_the_job_and_refuses_a_broken_config(tmp_path: Path) -> None:
    config = fault_config(tmp_path)
    node = Node(tmp_path / "state", config=config, sim_speed=25).start()
    try:
        node.add_members("sim-printer")
        assert node.tap(MEMBER_UID)["ok"]
        part = gcode_prefix(tmp_path, 300)
        assert node.cli("print", str(part)).returncode == 0
        running = node.wait_status(lambda s: s["state"] == "running" and s["job"]["lines_acked"] > 5, 20,
                                   "the job runs")  # fmt: skip
        job_id = running["job"]["id"]
        assert running["config"]["live"]["idle_timeout_s"] == 900.0

        text = config.read_text(encoding="utf-8")
        changed = (text.replace("idle_timeout_s = 900.0", "idle_timeout_s = 600.0")
                   .replace('port = "sim"\n', 'port = "sim"\nrx_window = 96\n')
                   .replace('firmware = "marlin"\n', 'firmware = "marlin"\nmax_hotend_c = 200.0\n')
                   .replace("[gpio]\n", "[gpio]\nrelay_pin = 16\n"))  # fmt: skip
        config.write_text(changed, encoding="utf-8")
        hup(node)
        during = node.wait_status(lambda s: s["config"]["reloads"] == 1, 5, "the reload")
        assert during["config"]["live"]["idle_timeout_s"] == 600.0
        assert during["config"]["live"]["max_hotend_c"] == 200.0
        assert during["config"]["after_job"] == ["serial"] and during["config"]["at_restart"] == ["gpio"]
        assert (during["state"], during["job"]["id"]) == ("running", job_id)
        assert during["port"]["losses"] == 0 and during["port"]["open"]

        config.write_text(changed.replace("idle_timeout_s = 600.0", "idle_timeout_s = -5"), encoding="utf-8")
        hup(node)
        refused = node.wait_status(lambda s: s["config"]["refused"] == 1, 5, "the broken config refused")
        assert "idle_timeout_s" in refused["config"]["last_reload"]["message"]
        assert refused["config"]["live"]["idle_timeout_s"] == 600.0  # the running config is kept whole
        assert "config reload refused" in node.output() and str(config) in node.output()

        ended = node.wait_status(lambda s: s["last_job"] is not None, 40, "the job's end")
        [job] = node.rows("SELECT * FROM jobs")
        assert job["status"] == "completed" and ended["last_job"]["status"] == "completed"
        assert ended["config"]["after_job"] == []
        assert "reopened with the new serial settings" in node.output()
        # the new limit applies to the next preflight: this file heats to 215 °C
        again = node.cli("print", str(part))
        assert again.returncode == 1 and "fails preflight" in again.stderr and "200" in again.stderr
        cold = node.cli("print", str(plain_job(tmp_path, 30)))  # the reopened port streams the next job
        assert cold.returncode == 0, cold.stderr
        node.wait_status(lambda s: len(node.rows("SELECT * FROM jobs WHERE status = 'completed'")) == 2, 20,
                         "the next job, on the port reopened with the new settings")  # fmt: skip
    finally:
        assert node.stop() == 0


# --- the wall clock -----------------------------------------------------------------------------------


class JumpingWall:
    """The wall clock the daemon is given: the real one plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[Daemon, JumpingWall]]:
    """A daemon on the built-in simulated printer, in a thread, idle timeout 2 s, with Alice trained."""
    folder = tmp_path / "state"
    config = simulated_config(None, "marlin", folder)
    # Shorter than the config file allows (10 s), so that the test waits for it in 2 s.
    config = dataclasses.replace(config, session=dataclasses.replace(
        config.session, idle_timeout_s=2.0, idle_warning_s=0.5, checkpoint_every_s=0.5))
    wall = JumpingWall()
    parts = build_parts(config, folder, sim_speed=200)
    daemon = Daemon(config, parts, folder, wall=wall)
    with UsageLog.open(usage_db_path(folder)) as log:
        now = datetime.now(UTC)
        access.add_member(log.db, access.load_secret(secret_file_path(folder)), "Alice", MEMBER_UID, now=now)
        access.grant_training(log.db, "Alice", config.node.machine, now=now)
    thread = threading.Thread(target=daemon.run, name="controller")
    thread.start()
    try:
        assert daemon.ready.wait(10)
        yield daemon, wall
    finally:
        daemon.stop()
        thread.join(30)


def seconds_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def test_a_jumping_wall_clock_moves_timestamps_never_durations_or_timeouts(in_process, tmp_path) -> None:
    daemon, wall = in_process
    reader = daemon.parts.sim_reader
    status = lambda: daemon.call(daemon.requests.snapshot)  # noqa: E731
    tap = lambda: daemon.tap_and_wait(lambda: reader.tap(access.normalise_uid(MEMBER_UID)))  # noqa: E731

    assert tap()["state"] == "unlocked"
    opened = time.monotonic()
    wall.offset = timedelta(hours=6)  # NTP catches up after a boot without network
    assert status()["state"] == "unlocked"  # the jump ended nothing
    wait_until(lambda: status()["state"] == "locked", 10, "the idle timeout")
    idle = time.monotonic() - opened
    assert 1.8 <= idle < 4.0
    [session] = daemon.log.db.execute("SELECT started, ended, duration_s FROM sessions").fetchall()
    assert 1.9 <= session[2] < 4.0  # from the monotonic clock
    assert seconds_between(session[0], session[1]) > 6 * 3600 - 60  # the timestamps jumped with the wall

    wall.offset = timedelta(days=-1)  # and now a day back
    assert tap()["state"] == "unlocked"
    started = time.monotonic()
    reply = daemon.requests.handle({"cmd": "print", "file": str(plain_job(tmp_path, 200))})
    assert reply["ok"], reply
    wall.offset = timedelta(days=-1, hours=3)  # the clock jumps forward mid-job
    wait_until(lambda: (status()["last_job"] or {}).get("status") == "completed", 20, "the job's end")
    took = time.monotonic() - started
    [job] = daemon.log.db.execute("SELECT started, ended, running_s, paused_s FROM jobs").fetchall()
    assert 0 < job[2] <= took and job[3] == 0.0
    assert seconds_between(job[0], job[1]) > 3 * 3600 - 60


@pytest.mark.broker
def test_sighup_starts_telemetry_and_records_made_before_reach_the_region(tmp_path, fake_collector) -> None:
    config = fault_config(tmp_path)
    node = Node(tmp_path / "state", config=config).start()
    try:
        node.add_members("sim-printer")
        assert node.tap(MEMBER_UID)["ok"]  # recorded while no broker is configured: waits in the outbox
        assert fake_collector.arrivals == []
        text = config.read_text(encoding="utf-8") + f'\n[telemetry]\nbroker = "{fake_collector.broker.url}"\n'
        config.write_text(text, encoding="utf-8")
        hup(node)
        node.wait_status(lambda s: s["config"]["reloads"] == 1, 5, "the reload")
        wanted = {"access", "session_started"}
        assert fake_collector.wait_for(lambda c: wanted <= {e.kind for e in c.arrivals}, 15)
        assert "telemetry" in node.status()["config"]["last_reload"]["message"]
    finally:
        assert node.stop() == 0
