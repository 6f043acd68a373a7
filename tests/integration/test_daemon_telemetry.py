"""The daemon keeps its telemetry going: a publisher that dies is replaced, and nothing is lost."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabnode.node.loop import Daemon
from fabnode.node.wiring import build_parts, simulated_config
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from fabnode.telemetry.publisher import TelemetryPublisher
from tests.integration.test_daemon_helpers import MEMBER_UID, STRANGER_UID, wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.broker]


@pytest.fixture
def daemon(tmp_path: Path, mosquitto, monkeypatch) -> Iterator[Daemon]:
    """A simulated printer node publishing to the test broker; the restart wait is made short."""
    monkeypatch.setattr("fabnode.node.loop.TELEMETRY_RESTART_EVERY_S", 0.5)
    folder = tmp_path / "state"
    config = simulated_config(None, "marlin", folder)
    telemetry = dataclasses.replace(config.telemetry, broker=mosquitto.url)
    config = dataclasses.replace(config, telemetry=telemetry)
    node = Daemon(config, build_parts(config, folder, sim_speed=200), folder)
    with UsageLog.open(usage_db_path(folder)) as log:
        now, secret = datetime.now(UTC), access.load_secret(secret_file_path(folder))
        access.add_member(log.db, secret, "Alice", MEMBER_UID, now=now)
        access.grant_training(log.db, "Alice", config.node.machine, now=now)
    thread = threading.Thread(target=node.run, name="controller")
    thread.start()
    assert node.ready.wait(10)
    yield node
    node.stop()
    thread.join(30)


def tap(node: Daemon, uid: str) -> dict:
    reader = node.parts.sim_reader
    return node.tap_and_wait(lambda: reader.tap(access.normalise_uid(uid)))


def test_a_crashed_publisher_is_replaced_and_its_records_still_reach_the_region(
    daemon: Daemon, fake_collector, monkeypatch
) -> None:
    step = TelemetryPublisher._step
    crashes: list[int] = []

    def crash_once(self: TelemetryPublisher) -> None:
        if not crashes:
            crashes.append(1)
            raise RuntimeError("a bug in the publisher")
        step(self)

    monkeypatch.setattr(TelemetryPublisher, "_step", crash_once)
    first = daemon.telemetry
    assert first is not None
    tap(daemon, STRANGER_UID)  # a refused tap: one access record for the region
    # The supervisor may replace the dead publisher before this thread looks: wait for the replacement.
    wait_until(lambda: crashes and daemon.telemetry not in (first, None), 10, "a publisher for the dead one")
    tap(daemon, MEMBER_UID)
    assert fake_collector.wait_for(
        lambda c: {"access", "session_started"} <= {e.kind for e in c.arrivals}, 20)
    refusals = [e for e in fake_collector.arrivals if e.kind == "access" and not e.data["granted"]]
    assert len({e.id for e in refusals}) == 1  # the record written while the publisher was dead
    assert daemon.telemetry is not first and not daemon.telemetry.crashed
