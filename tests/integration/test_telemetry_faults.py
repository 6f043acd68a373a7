"""Nothing is lost when the broker stops, is SIGKILLed or the node's publisher is SIGKILLed; the
region's fake collector drops duplicates by id and counts them. The last will says offline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fabnode.envelope import parse_envelope
from fabnode.records.schema import utc_iso, write_transaction
from fabnode.records.usage import KIND_FAULT, UsageLog
from fabnode.telemetry.publisher import TelemetryPublisher
from tests.integration.conftest import FakeCollector
from tests.integration.test_telemetry import add_faults, settings
from tests.mqtt_broker import MosquittoBroker, free_port

pytestmark = [pytest.mark.broker, pytest.mark.timeout(40)]

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


def bulk_faults(log: UsageLog, count: int) -> int:
    """`count` outbox rows in one transaction (one fsync, not `count`); return the last seq."""
    with write_transaction(log.db):
        for i in range(count):
            when = T0 + timedelta(seconds=i)
            # _enqueue is the usage log's own writer: the same rows record_fault makes, minus the fsync.
            log._enqueue(KIND_FAULT, {"time": utc_iso(when), "machine": "m", "kind": "test",
                                      "detail": f"fault {i}"}, when)  # fmt: skip
    return log.last_outbox_seq()


@pytest.fixture
def usage_log(tmp_path: Path):
    with UsageLog.open(tmp_path / "usage.db") as opened:
        yield opened


def _all_stored(collector: FakeCollector, last: int) -> bool:
    return collector.seqs() == list(range(1, last + 1))


def test_broker_stopped_during_a_stream_of_records_loses_nothing(
    mosquitto: MosquittoBroker, fake_collector: FakeCollector, usage_log: UsageLog
) -> None:
    publisher = TelemetryPublisher(usage_log, settings(mosquitto, resend_after_s=1.0))
    publisher.start()
    try:
        for i in range(40):
            add_faults(usage_log, 1, start=i)
            publisher.wake()
            if i == 15:
                assert fake_collector.wait_for(lambda c: len(c.seqs()) >= 10, 5)
                mosquitto.stop()
                assert publisher.wait_until(lambda s: not s["connected"], 5)
            if i == 25:
                mosquitto.start()
        assert publisher.wait_acked(40, 15), (publisher.status(), fake_collector.seqs())
    finally:
        publisher.stop()
    assert _all_stored(fake_collector, 40)
    assert usage_log.pending_outbox() == []


def test_broker_sigkilled_while_the_backlog_drains_loses_nothing(
    mosquitto_factory, usage_log: UsageLog
) -> None:
    broker = mosquitto_factory(persistence=True, max_queued_messages=10_000)
    collector = FakeCollector(broker).start()
    collector.stop()  # away for now: the broker queues the node's messages for its session
    last = bulk_faults(usage_log, 1500)
    publisher = TelemetryPublisher(usage_log, settings(broker, resend_after_s=1.0))
    publisher.start()
    try:
        assert publisher.wait_until(lambda s: s["published"] - s["in_flight"] >= 300, 10)
        broker.kill()  # what it PUBACKed and had not saved yet is gone
        broker.start()
        collector.start()
        assert publisher.wait_acked(last, 25), (publisher.status(), len(collector.seqs()))
        status = publisher.status()
    finally:
        publisher.stop()
        collector.stop()
    assert _all_stored(collector, last)
    assert status["resent"] >= 300  # the PUBACKed-then-lost ones came again, by the region's ack
    assert usage_log.pending_outbox() == []


class HoldingProxy:
    """A TCP relay between a node and the broker that can hold the broker's replies (PUBACKs)."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker, self.port = broker, free_port()
        self.replies = threading.Event()  # set: replies flow
        self.replies.set()
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                node, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.broker.host, self.broker.port))
            threading.Thread(target=self._pump, args=(node, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, node, self.replies), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, gate: threading.Event | None) -> None:
        try:
            while data := src.recv(65536):
                if gate is not None:
                    gate.wait()
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):  # one side gone: close both, as a dead node's kernel would
            sock.close()

    def close(self) -> None:
        self.replies.set()
        self.server.close()


NODE_SCRIPT = """
import sys, threading
from pathlib import Path
from fabnode.telemetry.publisher import TelemetryPublisher, TelemetrySettings
from fabnode.records.usage import UsageLog
log = UsageLog.open(Path(sys.argv[1]))
settings = TelemetrySettings(sys.argv[2], "lab", "m", reconnect_min_s=0.1, reconnect_max_s=0.5, keepalive_s=5)
TelemetryPublisher(log, settings).start()
print("started", flush=True)
threading.Event().wait()
"""


def _node_process(db: Path, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", NODE_SCRIPT, str(db), url], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip


def test_publisher_killed_between_publish_and_puback_sends_again_with_the_same_id(
    mosquitto: MosquittoBroker, fake_collector: FakeCollector, usage_log: UsageLog
) -> None:
    fake_collector.acking = False  # the region has not stored them yet either
    proxy = HoldingProxy(mosquitto)
    node = _node_process(usage_log.path, f"mqtt://127.0.0.1:{proxy.port}")
    try:
        assert fake_collector.wait_for(lambda c: any(s == "online" for s, _, _ in c.statuses), 10)
        proxy.replies.clear()  # from now on the node gets no PUBACK
        seqs = add_faults(usage_log, 5)  # the node's publisher finds them within a second
        assert fake_collector.wait_for(lambda c: c.seqs() == seqs, 10)
        rows = usage_log.db.execute("SELECT sent_at FROM outbox ORDER BY id").fetchall()
        assert rows == [(None,)] * 5  # published, never PUBACKed
        node.send_signal(signal.SIGKILL)
        node.wait(5)
    finally:
        if node.poll() is None:
            node.kill()
        proxy.close()
    ids = {seq: env.id for seq, env in fake_collector.records[("lab", "m")].items()}
    publisher = TelemetryPublisher(usage_log, settings(mosquitto))
    publisher.start()
    try:
        assert fake_collector.wait_for(lambda c: all(c.copies[i] == 2 for i in ids.values()), 10)
        fake_collector.resume_acks()
        assert publisher.wait_acked(seqs[-1], 10), publisher.status()
    finally:
        publisher.stop()
    assert {seq: env.id for seq, env in fake_collector.records[("lab", "m")].items()} == ids  # same ids
    assert usage_log.pending_outbox() == []


def test_last_will_says_offline_when_the_node_dies(mosquitto: MosquittoBroker, usage_log: UsageLog) -> None:
    node = _node_process(usage_log.path, mosquitto.url)
    statuses: list[tuple[str, bool]] = []
    changed = threading.Condition()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(_c, _u, msg) -> None:
        with changed:
            statuses.append((parse_envelope(bytes(msg.payload), msg.topic).data["status"], bool(msg.retain)))
            changed.notify_all()

    watcher.on_message = on_message
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe("fablab/v1/lab/m/status", qos=1)
    watcher.loop_start()
    try:
        with changed:
            assert changed.wait_for(lambda: ("online", False) in statuses or ("online", True) in statuses, 10)
        node.send_signal(signal.SIGKILL)
        node.wait(5)
        with changed:
            assert changed.wait_for(lambda: statuses[-1][0] == "offline", 10)
    finally:
        if node.poll() is None:
            node.kill()
        watcher.loop_stop()
        watcher.disconnect()
    late = mqtt.Client(CallbackAPIVersion.VERSION2)  # a subscriber that comes later sees it retained
    got: list[tuple[str, bool]] = []
    done = threading.Event()

    def on_late(_c, _u, m) -> None:
        got.append((parse_envelope(bytes(m.payload)).data["status"], bool(m.retain)))
        done.set()

    late.on_message = on_late
    late.connect(mosquitto.host, mosquitto.port)
    late.subscribe("fablab/v1/lab/m/status", qos=1)
    late.loop_start()
    try:
        assert done.wait(5)
        assert got[0] == ("offline", True)
    finally:
        late.loop_stop()
        late.disconnect()
