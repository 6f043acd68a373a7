"""Integration fixtures: a real mosquitto per test (SHARED with the region's collector tests).

`mosquitto` is a started broker (no persistence); `mosquitto_factory(**options)` makes more, with
any `MosquittoBroker` option (persistence, max_queued_messages, tls, password_file, acl_file...),
started or not. Every broker is stopped at the end of the test. Without a mosquitto binary the
tests that use them are skipped. `fake_collector` (FakeCollector) stands in for the region's
collector in the node's telemetry tests.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fabnode.envelope import Envelope, EnvelopeError, ack_topic, build_ack, node_subscription, parse_envelope
from tests.mqtt_broker import BrokerError, MosquittoBroker, mosquitto_binary


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Make brokers: `mosquitto_factory(persistence=True, start=True)`; all stopped at teardown."""
    if mosquitto_binary() is None:
        pytest.skip("no mosquitto binary (apt install mosquitto)")
    brokers: list[MosquittoBroker] = []

    def make(start: bool = True, **options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"broker{len(brokers)}", **options)
        brokers.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in brokers:
        with contextlib.suppress(BrokerError):
            broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """A started mosquitto on a free port, no persistence."""
    return mosquitto_factory()


class FakeCollector:
    """A stand-in for the region's collector: stores records by id (counting copies), and publishes
    the retained ack `{"seq": N}` = every record of a node up to N stored. Its own MQTT client,
    persistent session; re-subscribes after every reconnect."""

    def __init__(
        self, broker: MosquittoBroker, prefix: str = "fablab", acking: bool = True, port: int | None = None
    ) -> None:
        self.broker, self.prefix, self.acking = broker, prefix, acking
        self.port = port or broker.port  # another (plain) listener of a TLS broker
        self.copies: Counter[str] = Counter()  # msg id -> copies received
        self.records: dict[tuple[str, str], dict[int, Envelope]] = {}  # (lab, machine) -> seq -> envelope
        self.arrivals: list[Envelope] = []
        self.statuses: list[tuple[str, bool, Envelope]] = []  # (status, retained flag, envelope)
        self.errors: list[str] = []
        self.acked: dict[tuple[str, str], int] = {}
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-collector-{id(self)}",
                                  clean_session=False)  # fmt: skip
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()

    def start(self) -> FakeCollector:
        self.client.connect_async(self.broker.host, self.port, keepalive=5)
        self.client.loop_start()
        assert self._subscribed.wait(10), "fake collector: no SUBACK"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, _u, _f, reason, _p) -> None:
        if not reason.is_failure:
            client.subscribe(node_subscription(self.prefix), qos=1)

    def _on_subscribe(self, _c, _u, _mid, _codes, _p) -> None:
        self._subscribed.set()

    def _on_message(self, client, _u, message) -> None:
        try:
            env = parse_envelope(bytes(message.payload), topic_name=message.topic)
        except EnvelopeError as exc:
            with self._cond:
                self.errors.append(f"{message.topic}: {exc}")
                self._cond.notify_all()
            return
        with self._cond:
            if env.kind == "status":
                self.statuses.append((env.data["status"], bool(message.retain), env))
            else:
                self.arrivals.append(env)
                self.copies[env.id] += 1
                self.records.setdefault((env.lab, env.machine), {})[env.seq] = env  # type: ignore[index]
                self._ack(client, env.lab, env.machine)
            self._cond.notify_all()

    def _ack(self, client, lab: str, machine: str) -> None:
        stored, through = self.records[(lab, machine)], self.acked.get((lab, machine), 0)
        while through + 1 in stored:
            through += 1
        if self.acking and through > self.acked.get((lab, machine), 0):
            self.acked[(lab, machine)] = through
            payload = build_ack(through, stored[through].id, datetime.now(UTC))
            client.publish(ack_topic(self.prefix, lab, machine), payload, qos=1, retain=True)

    def resume_acks(self) -> None:
        with self._cond:
            self.acking = True
            for lab, machine in list(self.records):
                self._ack(self.client, lab, machine)

    def wait_for(self, predicate: Callable[[FakeCollector], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def seqs(self, lab: str = "lab", machine: str = "m") -> list[int]:
        with self._cond:
            return sorted(self.records.get((lab, machine), {}))

    def duplicates(self) -> int:
        """Copies received beyond the first, over all messages."""
        with self._cond:
            return sum(self.copies.values()) - len(self.copies)


@pytest.fixture
def fake_collector(mosquitto: MosquittoBroker) -> Iterator[FakeCollector]:
    """A started FakeCollector on the `mosquitto` broker (prefix `fablab`)."""
    collector = FakeCollector(mosquitto).start()
    yield collector
    collector.stop()
