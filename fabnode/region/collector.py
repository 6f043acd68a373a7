"""The region's collector: subscribe to every node, validate, store, then acknowledge.

One MQTT client with a PERSISTENT session (fixed client id, MQTT v5 clean_start=False, a session
expiry) subscribed at QoS 1 to `<prefix>/v1/+/+/+`, or `$share/<group>/<prefix>/v1/+/+/+` when
several collectors share the load. Messages are acknowledged by hand (paho's `manual_ack`):

    receive (paho's thread) -> inbox -> batch -> parse -> ONE committed transaction -> PUBACK each
                                                                                    -> retained end-to-end ack

so a message the broker has forgotten is always in the database. A collector that dies between its
commit and its PUBACK gets the message again and drops it as a duplicate (the unique message id).
A message that is not a valid envelope goes to the `rejected` table with its reason and is
acknowledged like any other, so it never comes back. So does a valid one the database still refuses:
when a batch fails while the database answers, its messages are stored one by one and the ones that
fail are set aside, so one poisoned message never holds back the rest of the batch or another node.
The node's ack passes over a rejected sequence number (`region report` counts them as `rejected`).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from fabnode.broker_url import parse_broker_url
from fabnode.envelope import Envelope, EnvelopeError, ack_topic, build_ack, node_subscription, parse_envelope
from fabnode.region.store import NodeAck, RegionStore, Rejected, StoreResult

__all__ = [
    "Collector",
    "CollectorConfig",
    "Received",
    "acks_to_publish",
    "sort_batch",
    "sort_received",
    "subscription",
]

log = logging.getLogger("fabnode.collector")


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """How the collector reaches the broker; `group` shares one subscription between collectors."""

    broker: str  # mqtt://host[:port] or mqtts://host[:port]
    prefix: str = "fablab"
    group: str | None = None
    client_id: str = "fabnode-collector"
    session_expiry_s: int = 7 * 86400  # how long the broker keeps our queue while we are away
    receive_maximum: int = 200  # unacknowledged messages the broker may have in flight to us
    batch_max: int = 500  # messages per transaction at most
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """One PUBLISH as it arrived: `generation` counts connections, so a stale PUBACK is never sent."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass(slots=True)
class CollectorStats:
    """Counters since start."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    acks_published: int = 0
    errors: int = 0
    connected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)  # the broker granted QoS 1


def subscription(prefix: str, group: str | None) -> str:
    """The topic filter: every node's messages, shared by `group` when one is given."""
    topic = node_subscription(prefix)
    return f"$share/{group}/{topic}" if group else topic


def sort_batch(items: Sequence[Received]) -> tuple[list[Envelope], list[Rejected]]:
    """Split received messages into valid envelopes and rejects (with the reason); pure."""
    pairs, rejected = sort_received(items)
    return [e for _item, e in pairs], rejected


def sort_received(items: Sequence[Received]) -> tuple[list[tuple[Received, Envelope]], list[Rejected]]:
    """Like `sort_batch`, keeping each envelope beside the message it came in (to set it aside later)."""
    envelopes: list[tuple[Received, Envelope]] = []
    rejected: list[Rejected] = []
    for item in items:
        try:
            envelopes.append((item, parse_envelope(item.payload, item.topic)))
        except EnvelopeError as exc:
            rejected.append(Rejected(item.topic, str(exc), item.payload))
        except Exception as exc:  # a validator bug must not stop the region: set the message aside
            rejected.append(Rejected(item.topic, f"cannot check: {type(exc).__name__}: {exc}", item.payload))
    return envelopes, rejected


def acks_to_publish(
    result: StoreResult, envelopes: Sequence[Envelope], published: dict[tuple[str, str], int]
) -> list[NodeAck]:
    """The acks worth publishing: changed ones, and those of nodes that resent (they wait for one)."""
    resent = {(e.lab, e.machine) for e in envelopes if e.id in set(result.duplicates)}
    return [a for a in result.acks
            if published.get((a.lab, a.machine)) != a.seq or (a.lab, a.machine) in resent]  # fmt: skip


def _log_connect_failures(client: mqtt.Client, broker: str) -> None:
    """Say why a connection failed (paho retries in silence): a TLS handshake names the certificate
    problem. Logged once per distinct reason, not on every retry."""
    attempt = client.reconnect
    last: list[str] = [""]

    def reconnect() -> mqtt.MQTTErrorCode:
        try:
            return attempt()
        except OSError as exc:
            reason = connect_failure(exc)
            if reason != last[0]:
                last[0] = reason
                log.error("cannot connect to %s: %s", broker, reason)
            raise

    client.reconnect = reconnect  # type: ignore[method-assign]


def connect_failure(exc: OSError) -> str:
    """A connection error in words: TLS problems say so and name the certificate check that failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason
        return f"TLS handshake failed: the broker's certificate was refused ({why})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def _merge(total: StoreResult, part: StoreResult) -> None:
    """Add one `store()` call's result to a running total; the later ack of a node wins (acks only grow)."""
    total.stored += part.stored
    total.duplicates += part.duplicates
    total.rejected += part.rejected
    acks = {(a.lab, a.machine): a for a in total.acks}
    acks.update({(a.lab, a.machine): a for a in part.acks})
    total.acks = [acks[k] for k in sorted(acks)]


class Collector:
    """Subscribes, stores and acknowledges; `run(stop)` until the event is set."""

    def __init__(
        self,
        store: RegionStore,
        config: CollectorConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.stats = CollectorStats()
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._generation = 0
        self._republish = threading.Event()  # set on each connect: publish every node's ack again
        self._published: dict[tuple[str, str], int] = {}
        self._closing = False
        self._arrivals = 0
        self._disconnected = threading.Event()
        self._retry: list[Received] = []  # a batch the database refused: stored first next time
        self.client = self._make_client()

    # --- MQTT (paho's network thread) -------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)  # fmt: skip
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if parse_broker_url(cfg.broker).tls:
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                           certfile=str(cfg.client_cert) if cfg.client_cert else None,
                           keyfile=str(cfg.client_key) if cfg.client_key else None,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
        client.reconnect_delay_set(1, 10)
        _log_connect_failures(client, cfg.broker)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the collector: %s", self.config.broker, reason)
            return
        self._generation += 1
        topic = subscription(self.config.prefix, self.config.group)
        client.subscribe(topic, options=SubscribeOptions(qos=1))
        log.info("connected to %s (session present: %s), subscribed to %s",
                 self.config.broker, flags.session_present, topic)  # fmt: skip
        self._republish.set()
        self.stats.connected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("broker %s refused the subscription: %s", self.config.broker, reasons)
            return
        self.stats.subscribed.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.stats.connected.clear()
        self.stats.subscribed.clear()
        self._disconnected.set()
        if not self._closing:
            log.warning("disconnected from %s (%s); reconnecting", self.config.broker, reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._arrivals += 1
        self._inbox.put(Received(self._generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    def start(self) -> None:
        """Connect in the background (retrying while the broker is away) and start paho's loop."""
        address = parse_broker_url(self.config.broker)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self.client.connect_async(address.host, address.port, keepalive=self.config.keepalive_s,
                                  clean_start=False, properties=props)  # fmt: skip
        self.client.loop_start()

    def close(self) -> None:
        """Disconnect cleanly (the broker keeps our session and queue) and stop paho's loop."""
        self._closing = True
        self._quiesce()
        self._disconnected.clear()
        if self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
            # loop_stop() ends paho's thread at once: wait until the last PUBACKs and the DISCONNECT went out.
            self._disconnected.wait(5.0)
        self.client.loop_stop()

    def _quiesce(self, quiet_s: float = 0.1, most_s: float = 2.0) -> None:
        """Let the broker fill our receive window before leaving: a socket closed with unread bytes is
        reset, and the broker then drops the last PUBACKs it had not read (a redelivery, stored twice
        over for nothing). What arrives now is not acknowledged: it comes again next time."""
        deadline = time.monotonic() + most_s
        seen = -1
        while self._arrivals != seen and time.monotonic() < deadline:
            seen = self._arrivals
            time.sleep(quiet_s)  # nothing to wait on: "no more messages" has no event

    # --- storing (the caller's thread) ------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Store and acknowledge batches until `stop` is set."""
        while not stop.is_set():
            self.run_once(timeout=0.2)

    def run_once(self, timeout: float) -> int:
        """Take what has arrived (waiting up to `timeout` for the first), store and acknowledge it."""
        if self._republish.is_set():
            self._republish.clear()
            self._publish_acks(self.store.acks(), force=True)
        batch = self._take(timeout)
        if not batch:
            return 0
        pairs, rejected = sort_received(batch)
        for r in rejected:
            log.warning("rejected a message on %s: %s", r.topic, r.reason)
        envelopes = [e for _item, e in pairs]
        result = self._store(pairs, rejected)
        if result is None:
            self._retry = batch  # not stored, so not acknowledged: the same batch again, first
            return 0
        self._ack(batch)
        self._publish_acks(acks_to_publish(result, envelopes, self._published))
        self._count(len(batch), result)
        return len(batch)

    def _take(self, timeout: float) -> list[Received]:
        if self._retry:
            batch, self._retry = self._retry, []
            return batch
        try:
            batch = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < self.config.batch_max:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store(self, pairs: list[tuple[Received, Envelope]], rejected: list[Rejected]) -> StoreResult | None:
        try:
            return self.store.store([e for _item, e in pairs], self.clock(), rejected)
        except Exception as exc:
            if self.store.healthy():
                # The database answers, so some message of the batch is what it refuses: find it.
                log.warning("cannot store a batch of %d messages (%s: %s); storing them one by one",
                            len(pairs), type(exc).__name__, exc)  # fmt: skip
                return self._store_apart(pairs, rejected)
            self._database_away(len(pairs))
            return None

    def _database_away(self, count: int) -> None:
        self.stats.errors += 1
        log.exception("cannot store %d messages in %s; will retry", count, self.store.db.name)
        time.sleep(1.0)  # the database is away: do not spin
        self.store.reconnect()

    def _store_apart(
        self, pairs: list[tuple[Received, Envelope]], rejected: list[Rejected]
    ) -> StoreResult | None:
        """Each message in its own transaction; one the database refuses goes to `rejected` instead.

        Writing its rejection is itself a write: if that fails too, the database is at fault (a full
        disk), not the message, and the whole batch is tried again later (what is stored is a duplicate).
        """
        total = StoreResult()
        try:
            _merge(total, self.store.store([], self.clock(), rejected))
            for item, envelope in pairs:
                try:
                    part = self.store.store([envelope], self.clock())
                except Exception as exc:
                    reason = f"cannot store: {type(exc).__name__}: {exc}".strip()
                    log.warning("rejected message %s on %s: %s", envelope.id, item.topic, reason)
                    part = self.store.store([], self.clock(), [Rejected(item.topic, reason, item.payload)])
                _merge(total, part)
        except Exception:
            self._database_away(len(pairs))
            return None
        return total

    def _ack(self, batch: Sequence[Received]) -> None:
        # In arrival order, as MQTT asks; a message from an earlier connection is redelivered anyway.
        for item in batch:
            if item.qos > 0 and item.generation == self._generation:
                self.client.ack(item.mid, item.qos)

    def _publish_acks(self, acks: Sequence[NodeAck], force: bool = False) -> None:
        now = self.clock()
        for a in acks:
            if a.seq == 0 and not force:
                continue
            topic = ack_topic(self.config.prefix, a.lab, a.machine)
            self.client.publish(topic, build_ack(a.seq, a.msg_id, now), qos=1, retain=True)
            self._published[(a.lab, a.machine)] = a.seq
            self.stats.acks_published += 1

    def _count(self, received: int, result: StoreResult) -> None:
        # the rejected count includes the messages the database refused (set aside one by one)
        s = self.stats
        s.received += received
        s.stored += len(result.stored)
        s.duplicates += len(result.duplicates)
        s.rejected += result.rejected
        s.batches += 1
