"""The telemetry publisher against a real mosquitto and a fake region collector: order, envelopes,
the region's ack, retained status and state, the last will."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fabnode.envelope import build_ack, parse_envelope
from fabnode.records.usage import UsageLog
from fabnode.telemetry.publisher import TelemetryPublisher, TelemetrySettings
from tests.integration.conftest import FakeCollector
from tests.mqtt_broker import MosquittoBroker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]

T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


def settings(broker: MosquittoBroker, **options) -> TelemetrySettings:
    """Fast reconnects and keepalive for tests; everything else as configured in the field."""
    base = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "keepalive_s": 5}
    return TelemetrySettings(broker.url, "lab", "m", **{**base, **options})


def add_faults(log: UsageLog, count: int, start: int = 0) -> list[int]:
    """`count` outbox rows (faults); return their seqs."""
    for i in range(start, start + count):
        log.record_fault("test", f"fault {i}", "m", T0 + timedelta(seconds=i))
    return [m.seq for m in log.pending_outbox(limit=100_000)][-count:]


@pytest.fixture
def usage_log(tmp_path: Path):
    with UsageLog.open(tmp_path / "usage.db") as opened:
        yield opened


def test_every_outbox_row_arrives_in_order_with_its_envelope_and_is_acked(
    mosquitto: MosquittoBroker, fake_collector: FakeCollector, usage_log: UsageLog
) -> None:
    seqs = add_faults(usage_log, 60)
    pending = {m.seq: m for m in usage_log.pending_outbox(limit=1000)}
    publisher = TelemetryPublisher(usage_log, settings(mosquitto, in_flight=5))
    publisher.start()
    try:
        assert publisher.wait_acked(seqs[-1], 15), publisher.status()
    finally:
        publisher.stop()
    first_copies = list(dict.fromkeys(e.seq for e in fake_collector.arrivals))
    assert first_copies == seqs  # in order, none missing
    assert fake_collector.errors == []
    for seq, env in fake_collector.records[("lab", "m")].items():
        assert (env.id, env.kind, env.data) == (pending[seq].msg_id, "fault", pending[seq].payload)
        assert env.schema == "fabnode.event" and env.occurred_at == pending[seq].payload["time"]
    assert usage_log.pending_outbox() == []  # the region's ack marked them all
    stats = usage_log.outbox_stats()
    assert stats["acked_through"] == seqs[-1] and stats["backlog"] == 0


def test_puback_alone_marks_sent_not_acked(
    mosquitto: MosquittoBroker, fake_collector: FakeCollector, usage_log: UsageLog
) -> None:
    fake_collector.acking = False
    seqs = add_faults(usage_log, 5)
    publisher = TelemetryPublisher(usage_log, settings(mosquitto))
    publisher.start()
    try:
        assert fake_collector.wait_for(lambda c: c.seqs() == seqs)
        assert publisher.wait_until(lambda s: s["last_puback_at"] is not None and s["in_flight"] == 0, 5)
        rows = usage_log.db.execute("SELECT sent_at IS NOT NULL, acked_at FROM outbox ORDER BY id").fetchall()
        assert rows == [(1, None)] * 5  # sent, kept
        fake_collector.resume_acks()
        assert publisher.wait_acked(seqs[-1], 5)
    finally:
        publisher.stop()
    assert usage_log.pending_outbox() == []


def test_unacked_messages_are_sent_again_with_the_same_id(
    mosquitto: MosquittoBroker, fake_collector: FakeCollector, usage_log: UsageLog
) -> None:
    fake_collector.acking = False
    seqs = add_faults(usage_log, 3)
    publisher = TelemetryPublisher(usage_log, settings(mosquitto, resend_after_s=0.3))
    publisher.start()
    try:
        assert fake_collector.wait_for(lambda c: all(c.copies[e.id] >= 2 for e in c.arrivals) and
                                       len(c.copies) == 3)  # fmt: skip
        fake_collector.resume_acks()
        assert publisher.wait_acked(seqs[-1], 5)
    finally:
        publisher.stop()
    resent = [e for e in fake_collector.arrivals if e.seq == seqs[0]]
    assert len({e.id for e in resent}) == 1 and len(resent) >= 2


Watch = tuple[mqtt.Client, list[tuple[bytes, bool]], threading.Event]


def _watch(broker: MosquittoBroker, topic: str) -> Watch:
    got: list[tuple[bytes, bool]] = []
    event = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(_c, _u, msg) -> None:
        got.append((bytes(msg.payload), bool(msg.retain)))
        event.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    return client, got, event


def _retained(broker: MosquittoBroker, topic: str) -> tuple[bytes, bool]:
    """What a client subscribing now gets first: the topic's retained message, flagged retained."""
    client, got, event = _watch(broker, topic)
    try:
        assert event.wait(5), f"nothing retained on {topic}"
        return got[0]
    finally:
        client.disconnect()  # before loop_stop: the loop then ends at once, not after its select()
        client.loop_stop()


def test_status_online_retained_and_offline_on_clean_stop(
    mosquitto: MosquittoBroker, usage_log: UsageLog
) -> None:
    status_topic = "fablab/v1/lab/m/status"
    # The region's collector, subscribed before the node: it gets `online` live (retain flag off) or,
    # if its SUBSCRIBE lands after the PUBLISH, as the retained copy; either way the broker has it now.
    client, got, event = _watch(mosquitto, status_topic)
    publisher = TelemetryPublisher(usage_log, settings(mosquitto))
    publisher.start()
    try:
        assert event.wait(5)
        env = parse_envelope(got[0][0], status_topic)
        assert (env.data, env.seq) == ({"status": "online"}, None)
        payload, retained = _retained(mosquitto, status_topic)  # a dashboard opened now
        assert (parse_envelope(payload, status_topic).data, retained) == ({"status": "online"}, True)
        event.clear()
        publisher.stop()
        assert event.wait(5)
        assert parse_envelope(got[-1][0], status_topic).data == {"status": "offline"}
        payload, retained = _retained(mosquitto, status_topic)
        assert (parse_envelope(payload, status_topic).data, retained) == ({"status": "offline"}, True)
    finally:
        publisher.stop()
        client.disconnect()
        client.loop_stop()


def test_state_is_retained_newest_last(
    mosquitto: MosquittoBroker, fake_collector: FakeCollector, usage_log: UsageLog
) -> None:
    publisher = TelemetryPublisher(usage_log, settings(mosquitto))
    publisher.start()
    try:
        for state in ("unlocked", "running", "paused", "running"):
            publisher.publish_state(state)
        assert fake_collector.wait_for(lambda c: len(c.seqs()) == 4)
        assert publisher.wait_acked(4, 5)
    finally:
        publisher.stop()
    client, got, event = _watch(mosquitto, "fablab/v1/lab/m/state")
    try:
        assert event.wait(5)
        env = parse_envelope(got[0][0], "fablab/v1/lab/m/state")
        assert (env.data["state"], env.seq, got[0][1]) == ("running", 4, True)
    finally:
        client.loop_stop()
        client.disconnect()


def test_an_ack_from_another_database_is_ignored(
    mosquitto: MosquittoBroker, usage_log: UsageLog
) -> None:
    seqs = add_faults(usage_log, 2)
    # A retained ack left by the region for an earlier database of this node (e.g. before a new SD card).
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    ack = build_ack(2, "cd" * 16, T0)  # seq 2 there was another message than ours
    client.publish("fablab/region/v1/lab/m/ack", ack, qos=1, retain=True).wait_for_publish(5)
    publisher = TelemetryPublisher(usage_log, settings(mosquitto))
    publisher.start()
    try:
        mismatch = "does not match this node's outbox"
        assert publisher.wait_until(lambda s: mismatch in (s["last_error"] or ""), 5)
        assert publisher.wait_until(lambda s: s["in_flight"] == 0 and s["published"] == 2, 5)
    finally:
        publisher.stop()
        client.loop_stop()
        client.disconnect()
    assert [m.seq for m in usage_log.pending_outbox()] == seqs  # kept: the region never had these
