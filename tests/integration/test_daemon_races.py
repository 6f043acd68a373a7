"""Races inside the daemon, each made certain rather than left to the machine's load.

- A job asked for while the board is still booting: opening the port reset it (DTR), and what it is
  sent before its `start` greeting is lost. The daemon holds the job until the board greeted, then
  streams it whole; it never starts it into the reset ("the printer reset: the job is lost"). An upload
  a member's tap releases then waits for the greeting too, rather than for a second tap.
- The usage log's one connection is shared by the controller thread and the telemetry publisher's
  thread: a tap's access check must not break into the publisher's transactions, nor they into it.

The daemon runs in this process (real simulator, pty, streamer and usage log), so the board's boot
time can be set to what a real Marlin board takes and a second thread can write as the publisher does.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabnode.node.loop import Daemon
from fabnode.node.wiring import build_parts, simulated_config
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import api_keys
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.data.web.prusaslicer import prusaslicer_body
from tests.integration.test_daemon_helpers import (
    HOST_COMMANDS,
    MEMBER_UID,
    STRANGER_UID,
    gcode_prefix,
    wait_until,
    wire_commands,
)

pytestmark = pytest.mark.timeout(60)
BOOT_S = 1.5  # an ATmega board's bootloader and Marlin's start-up after a DTR reset
TAPS = 40  # without the lock, the two threads collide within a few taps


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[float], Daemon]]:
    """`start_daemon(boot_s)`: a daemon on the simulated printer, which greets `boot_s` after its port
    opens; Alice is trained on it. Stopped at the end of the test."""
    running: list[tuple[Daemon, threading.Thread]] = []

    def start(boot_s: float) -> Daemon:
        folder = tmp_path / "state"
        config = simulated_config(None, "marlin", folder)
        parts = build_parts(config, folder, sim_speed=200)
        parts.simulator.firmware.cfg.boot_s = boot_s  # before the daemon opens the port
        daemon = Daemon(config, parts, folder)
        with UsageLog.open(usage_db_path(folder)) as log:
            now, secret = datetime.now(UTC), access.load_secret(secret_file_path(folder))
            access.add_member(log.db, secret, "Alice", MEMBER_UID, now=now)
            access.grant_training(log.db, "Alice", config.node.machine, now=now)
        thread = threading.Thread(target=daemon.run, name="controller")
        thread.start()
        running.append((daemon, thread))
        assert daemon.ready.wait(10)
        return daemon

    yield start
    for daemon, thread in running:
        daemon.stop()
        thread.join(30)


def tap(daemon: Daemon, uid: str) -> dict:
    reader = daemon.parts.sim_reader
    return daemon.tap_and_wait(lambda: reader.tap(access.normalise_uid(uid)))


def test_a_job_asked_for_before_the_board_greets_waits_for_it_and_runs_whole(start_daemon, tmp_path) -> None:
    daemon = start_daemon(BOOT_S)
    assert tap(daemon, MEMBER_UID)["state"] == "unlocked"
    part = gcode_prefix(tmp_path, 60)
    assert daemon.parts.simulator.stats.lines_received == 0  # the board is still in its bootloader

    reply = daemon.requests.handle({"cmd": "print", "file": str(part)})
    assert reply["ok"], reply
    ended = wait_until(lambda: daemon.call(daemon.requests.snapshot)["last_job"], 30, "the job's end")
    assert (ended["status"], ended["reason"]) == ("completed", "completed")
    executed = [c for c in daemon.parts.simulator.executed if not c.startswith(HOST_COMMANDS)]
    assert executed == wire_commands(part)


def test_an_upload_released_before_the_board_greets_waits_for_it_and_runs_whole(start_daemon, tmp_path
                                                                               ) -> None:  # fmt: skip
    daemon = start_daemon(BOOT_S)
    with UsageLog.open(usage_db_path(daemon.state_dir)) as log:
        key = api_keys.new_member_key(log.db, daemon.secret, "Alice", now=datetime.now(UTC))
    part = gcode_prefix(tmp_path, 60)
    body, content_type = prusaslicer_body(part.read_bytes(), "part.gcode", print_=False)
    url = urllib.parse.urlsplit(daemon.call(daemon.requests.snapshot)["web"]["url"])
    conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=30)
    conn.request("POST", "/api/files/local", body, {"X-Api-Key": key, "Content-Type": content_type})
    assert conn.getresponse().status == 201
    conn.close()
    assert daemon.parts.simulator.stats.lines_received == 0  # the board is still in its bootloader

    out = tap(daemon, MEMBER_UID)  # her tap releases it; it starts once the board has greeted
    assert out["reason"] == "session opened; upload part.gcode released", out
    ended = wait_until(lambda: daemon.call(daemon.requests.snapshot)["last_job"], 30, "the job's end")
    assert (ended["status"], ended["reason"]) == ("completed", "completed")
    executed = [c for c in daemon.parts.simulator.executed if not c.startswith(HOST_COMMANDS)]
    assert executed == wire_commands(part)


def test_taps_and_the_publishers_writes_share_the_usage_log_safely(start_daemon) -> None:
    daemon = start_daemon(0.05)
    errors: list[BaseException] = []
    done = threading.Event()

    def publisher() -> None:
        """What the telemetry thread does with the shared log between two taps."""
        try:
            while not done.is_set():
                seq = daemon.log.enqueue_state("locked", datetime.now(UTC))
                daemon.log.mark_outbox_sent([seq], datetime.now(UTC))
                daemon.log.mark_outbox_acked_through(seq, datetime.now(UTC))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=publisher, name="publisher")
    thread.start()
    try:
        outcomes = [tap(daemon, STRANGER_UID) for _ in range(TAPS)]
    finally:
        done.set()
        thread.join(10)
    assert errors == []
    assert {(o["granted"], o["reason"]) for o in outcomes} == {(False, "unknown badge")}
    refused = daemon.log.db.execute("SELECT count(*) FROM access_events WHERE granted = 0").fetchone()[0]
    assert refused == TAPS


def test_a_request_the_controller_took_too_long_for_is_withdrawn_never_run_later(start_daemon) -> None:
    daemon = start_daemon(0.05)
    busy, release = threading.Event(), threading.Event()

    def hold(_now: float) -> None:  # the controller thread, busy (a slow disk, a long preflight)
        busy.set()
        release.wait(30)

    holder = threading.Thread(target=daemon.call, args=(hold, 40.0))
    holder.start()
    assert busy.wait(10)
    alices_tap = access.badge_hash(daemon.secret, MEMBER_UID)
    with pytest.raises(TimeoutError, match="withdrawn"):  # Alice's tap, told "no answer": it must not count
        daemon.call(lambda now: daemon.taps.handle(alices_tap, now), timeout=0.2)
    release.set()
    holder.join(30)
    status = daemon.call(daemon.requests.snapshot)  # queued after the withdrawn one: it has had its turn
    assert (status["state"], status["relay"]) == ("locked", False), status
    assert tap(daemon, MEMBER_UID)["state"] == "unlocked"  # her next tap is taken as usual
