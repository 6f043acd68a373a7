"""Benchmark of the telemetry backlog drain: 10,000 queued outbox messages to a local mosquitto.

Reference measured in the same run: a publisher that sends the same envelopes from the same outbox
and waits for each PUBACK before the next (stop-and-wait). The publisher under test keeps
`in_flight` messages on the wire; the end-to-end figure waits for a region's ack (a small acker
client here) covering every message.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fabnode.envelope import ack_topic, build_ack, build_envelope, encode_envelope, node_subscription, topic
from fabnode.records.schema import utc_iso, write_transaction
from fabnode.records.usage import KIND_FAULT, UsageLog
from fabnode.telemetry.publisher import TelemetryPublisher, TelemetrySettings
from tests.mqtt_broker import MosquittoBroker, mosquitto_binary

COUNT = 10_000
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


def _fill(log: UsageLog, count: int) -> None:
    with write_transaction(log.db):  # one transaction: the bench measures the drain, not fsyncs
        for i in range(count):
            when = T0 + timedelta(seconds=i)
            log._enqueue(KIND_FAULT, {"time": utc_iso(when), "machine": "m", "kind": "bench",
                                      "detail": f"fault {i}"}, when)  # fmt: skip


def _stop_and_wait(log: UsageLog, broker: MosquittoBroker, port: int | None = None) -> float:
    """Seconds to send every outbox row, one PUBACK at a time (the region's acker runs too, as in
    the publisher's runs, so both share the CPU with it)."""
    acker = _Acker(broker, log.last_outbox_seq())
    host, port = broker.host, port or broker.port
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-stop-and-wait")
    client.on_publish = lambda *_a: done.set()
    client.connect(host, port)
    client.loop_start()
    start = time.perf_counter()
    cursor = 0
    while batch := log.outbox_after(cursor, 100):
        for msg in batch:
            env = build_envelope(kind=msg.kind, msg_id=msg.msg_id, lab="lab", machine="m",
                                 seq=msg.seq, data=msg.payload, sent_at=datetime.now(UTC),
                                 created=msg.created)  # fmt: skip
            done.clear()
            client.publish(topic("fablab", "lab", "m", msg.kind), encode_envelope(env), qos=1)
            if not done.wait(10):
                raise RuntimeError(f"no PUBACK for seq {msg.seq}")
        log.mark_outbox_sent([m.seq for m in batch], datetime.now(UTC))
        cursor = batch[-1].seq
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    acker.stop()
    return elapsed


class _SlowLink:
    """A TCP relay to the broker that delays every chunk by `delay_s` each way (a WAN's latency)."""

    def __init__(self, broker: MosquittoBroker, delay_s: float) -> None:
        self.broker, self.delay_s = broker, delay_s
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                node, _ = self.server.accept()
            except OSError:
                return
            up = socket.create_connection((self.broker.host, self.broker.port))
            for src, dst in ((node, up), (up, node)):
                q: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
                threading.Thread(target=self._read, args=(src, q), daemon=True).start()
                threading.Thread(target=self._write, args=(dst, q), daemon=True).start()

    def _read(self, src: socket.socket, q: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                q.put((time.monotonic() + self.delay_s, data))
        q.put((0.0, b""))

    @staticmethod
    def _write(dst: socket.socket, q: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        with contextlib.suppress(OSError):
            while (item := q.get())[1]:
                time.sleep(max(0.0, item[0] - time.monotonic()))  # the simulated wire, not a wait
                dst.sendall(item[1])
        dst.close()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.close()


class _Acker:
    """The region's side, reduced to the ack: every 200 contiguous records, and the last one."""

    def __init__(self, broker: MosquittoBroker, last: int) -> None:
        self.through, self.last = 0, last
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-acker")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(node_subscription("fablab"), qos=1)
        self.client.loop_start()
        self.seen: dict[int, str] = {}

    def _on_message(self, client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        env = json.loads(message.payload)
        if env.get("seq") is None:
            return
        self.seen[env["seq"]] = env["id"]
        before = self.through
        while self.through + 1 in self.seen:
            self.through += 1
        if self.through != before and (self.through % 200 == 0 or self.through == self.last):
            ack = build_ack(self.through, self.seen[self.through], datetime.now(UTC))
            client.publish(ack_topic("fablab", "lab", "m"), ack, qos=1, retain=True)

    def stop(self) -> None:
        # Clear the retained ack: the next run's node has another database.
        self.client.publish(ack_topic("fablab", "lab", "m"), b"", qos=1, retain=True).wait_for_publish(5)
        self.client.loop_stop()
        self.client.disconnect()


def _publisher(
    log: UsageLog, broker: MosquittoBroker, in_flight: int, count: int = COUNT, url: str | None = None
) -> tuple[float, float]:
    """Seconds until every message is PUBACKed, and until the region's ack covers every one."""
    acker = _Acker(broker, count)
    settings = TelemetrySettings(url or broker.url, "lab", "m", in_flight=in_flight, max_unacked=count * 2)
    publisher = TelemetryPublisher(log, settings)
    start = time.perf_counter()
    publisher.start()
    try:
        if not publisher.wait_until(lambda s: s["published"] - s["in_flight"] >= count, 120):
            raise RuntimeError(f"drain stalled: {publisher.status()}")
        pubacked = time.perf_counter() - start
        if not publisher.wait_acked(count, 120):
            raise RuntimeError(f"no region ack: {publisher.status()}")
        acked = time.perf_counter() - start
    finally:
        publisher.stop()
        acker.stop()
    return pubacked, acked


def run() -> list[tuple[str, str, str]]:
    """Rows: (benchmark, figure, reference/ratio)."""
    if mosquitto_binary() is None:
        return [("telemetry drain", "skipped", "no mosquitto binary")]
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoBroker(Path(tmp) / "broker", max_queued_messages=COUNT * 2).start()
        try:
            with UsageLog.open(Path(tmp) / "ref.db") as log:
                _fill(log, COUNT)
                reference = COUNT / _stop_and_wait(log, broker)
            name = f"telemetry drain {COUNT:,}"
            rows.append((f"{name}: stop-and-wait (reference)", f"{reference:,.0f} msg/s", "1.00"))
            for in_flight in (1, 20):
                with UsageLog.open(Path(tmp) / f"node{in_flight}.db") as log:
                    _fill(log, COUNT)
                    pubacked, acked = _publisher(log, broker, in_flight)
                for label, seconds in (("PUBACKed", pubacked), ("region-acked", acked)):
                    rate = COUNT / seconds
                    rows.append((f"{name}: in_flight={in_flight}, all {label}", f"{rate:,.0f} msg/s",
                                 f"x{rate / reference:.2f} vs stop-and-wait"))  # fmt: skip
            rows += _over_a_slow_link(broker, Path(tmp))
        finally:
            broker.stop()
    return rows


def _over_a_slow_link(broker: MosquittoBroker, tmp: Path, count: int = 1000) -> list[tuple[str, str, str]]:
    """The same drain through a relay adding 10 ms each way (20 ms round trip, a region's WAN)."""
    link = _SlowLink(broker, 0.010)
    try:
        with UsageLog.open(tmp / "slow-ref.db") as log:
            _fill(log, count)
            reference = count / _stop_and_wait(log, broker, link.port)
        with UsageLog.open(tmp / "slow-node.db") as log:
            _fill(log, count)
            _, acked = _publisher(log, broker, 20, count, link.url)
    finally:
        link.close()
    rate = count / acked
    name = f"telemetry drain {count:,} over 20 ms RTT"
    return [(f"{name}: stop-and-wait (reference)", f"{reference:,.0f} msg/s", "1.00"),
            (f"{name}: in_flight=20, all region-acked", f"{rate:,.0f} msg/s",
             f"x{rate / reference:.2f} vs stop-and-wait")]  # fmt: skip
