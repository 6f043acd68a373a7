"""The telemetry publisher: the usage log's outbox to the region's MQTT broker (paho-mqtt 2.x).

One thread of its own reads the outbox and publishes; paho's network thread only posts events
(CONNACK, PUBACK, the region's ack) back to it, so nothing here ever blocks the controller, which
talks to it through `wake()` and `publish_state()`. A message is kept until the region's retained
ack on `<prefix>/region/v1/<lab>/<machine>/ack` covers its seq (see fabnode.telemetry.window);
a PUBACK only marks it sent. paho keeps what it could not send while disconnected (publish()
then returns MQTT_ERR_NO_CONN) and re-sends it after the reconnect, so acknowledgements are
tracked by message id in `on_publish`, never through MessageInfo.

Topics and the envelope: fabnode.envelope. Settings, TLS and credentials: fabnode.telemetry.mqtt.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt

from fabnode.envelope import (
    EnvelopeError,
    ack_topic,
    build_envelope,
    encode_envelope,
    parse_ack,
    topic,
    utc_iso,
)
from fabnode.records.usage import KIND_STATE, OutboxMessage, UsageLog
from fabnode.telemetry.mqtt import (
    TelemetryError,
    TelemetrySettings,
    connect_error_kind,
    describe_connect_error,
    make_client,
    status_payload,
)
from fabnode.telemetry.window import OutboxWindow

__all__ = ["TelemetryError", "TelemetryPublisher", "TelemetrySettings"]

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 3600.0
_STATS_EVERY_S = 0.5
_STOP_PUBACK_S = 2.0
_READ_AHEAD = 200
_MARK_EVERY_S = 0.25  # sent_at is written in batches (it only informs `telemetry status`)


def utc_now() -> datetime:
    """The wall clock, aware UTC (the default `clock`)."""
    return datetime.now(UTC)


class TelemetryPublisher:
    """Publish the outbox in order and keep each message until the region acknowledges it."""

    def __init__(
        self,
        usage_log: UsageLog,
        settings: TelemetrySettings,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = usage_log
        self.settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._stopping = False
        self._connected = False
        self._window = OutboxWindow(settings.in_flight, settings.resend_after_s, settings.max_unacked)
        self._ack_topic = ack_topic(settings.prefix, settings.lab, settings.machine)
        self._snapshot: dict[str, Any] = {
            "connected": False, "broker": settings.broker_url, "last_error": None, "error_kind": None,
            "last_puback_at": None,
            "last_ack_seq": None, "last_ack_at": None, "published": 0, "resent": 0,
        }  # fmt: skip
        self._next_stats = 0.0
        self._next_mark = 0.0
        self._unmarked: list[int] = []
        self._ahead: deque[OutboxMessage] = deque()
        self._last_puback_at: str | None = None
        self._published = self._resent = 0
        self._next_prune = 0.0

    # --- what the daemon and the CLI call ---------------------------------------------------------

    def start(self) -> None:
        """Connect in the background and start publishing; TelemetryError for a bad configuration."""
        client, address = make_client(self.settings, self._clock())
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        stats = self._log.outbox_stats()
        self._window.acked_through = self._window.cursor = int(stats["acked_through"])
        self._client = client
        self._refresh_stats(force=True)
        client.connect_async(address.host, address.port, keepalive=self.settings.keepalive_s)
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say offline (retained), disconnect cleanly and end the thread; what is unsent stays queued."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def crashed(self) -> bool:
        """The publisher's thread ended without being asked to: the daemon should start a new one."""
        return self._thread is not None and not self._thread.is_alive() and not self._stopping

    def wake(self) -> None:
        """New outbox rows were written: look at the outbox now."""
        self._wake.set()

    def publish_state(self, state: str, detail: str | None = None) -> None:
        """Queue the machine's new state (retained on the `state` topic); returns at once."""
        self._events.put(("state", str(state), detail, self._clock()))
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """connected, backlog, in_flight, last_puback_at, last_ack_seq, last_error... (no I/O)."""
        with self._changed:
            return dict(self._snapshot)

    def wait_until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Wait until `predicate(status())` holds or `timeout` seconds pass; return whether it held."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._snapshot):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def wait_acked(self, seq: int, timeout: float) -> bool:
        """Wait until the region's ack covers `seq`."""
        return self.wait_until(lambda s: (s["last_ack_seq"] or 0) >= seq, timeout)

    # --- paho's thread: post events, nothing else --------------------------------------------------

    def _post(self, *event: Any) -> None:
        self._events.put(event)
        self._wake.set()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            text = f"broker {self.settings.broker_url} refused the connection: {reason}"
            self._post("error", text, "refused")
            return
        client.subscribe(self._ack_topic, qos=1)
        if self.settings.announce:
            online = status_payload(self.settings, "online", self._clock())
            client.publish(topic(self.settings.prefix, self.settings.lab, self.settings.machine, "status"),
                           online, qos=1, retain=True)  # fmt: skip
        self._post("connected")

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        # paho calls this inside its `except OSError:`: the exception is the reason.
        exc = sys.exc_info()[1]
        text = describe_connect_error(exc, self.settings) if exc else "connection failed"
        self._post("error", text, connect_error_kind(exc))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._post("disconnected", str(reason))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._post("puback", mid, self._monotonic())

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._ack_topic:
            self._post("ack", bytes(message.payload))

    # --- our thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.wait(self._wait_time())
                self._wake.clear()
                self._step()
        except Exception:  # a bug here must not pass silently: status shows it, the daemon can restart us
            log.exception("telemetry publisher stopped")
            self._set(last_error="telemetry publisher crashed (see the log)", connected=False)
        finally:
            self._shutdown()

    def _wait_time(self) -> float:
        if not self._connected or self._window.room == 0:
            return 1.0  # a (re)connect or a PUBACK wakes us: nothing to time
        due = self._window.next_due()
        wait = 1.0 if due is None else due - self._monotonic()
        return min(max(wait, 0.0), 1.0)

    def _step(self) -> None:
        self._unmarked += self._handle_events()
        if self._connected and not self._stopping:
            self._send()
        now = self._monotonic()
        if self._unmarked and (now >= self._next_mark or not self._window.waiting):
            self._next_mark = now + _MARK_EVERY_S
            self._mark_sent()
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY_S
            self._log.prune_outbox(self._clock() - timedelta(seconds=self.settings.keep_acked_s))
        self._refresh_stats()

    def _handle_events(self) -> list[int]:
        pubacked: list[int] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return pubacked
            kind = event[0]
            if kind == "puback":
                seq = self._window.puback(event[1], event[2])
                if seq is not None:
                    pubacked.append(seq)
            elif kind == "ack":
                self._region_ack(event[1])
            elif kind == "state":
                self._log.enqueue_state(event[1], event[3], event[2])
            elif kind == "connected":
                self._connected = True
                self._window.reconnected(self._monotonic())
                self._set(connected=True, last_error=None, error_kind=None)
            elif kind == "disconnected":
                self._connected = False
                self._set(connected=False)
            elif kind == "error":
                log.warning("telemetry: %s", event[1])
                self._set(last_error=event[1], error_kind=event[2])

    def _mark_sent(self) -> None:
        now_utc = self._clock()
        self._log.mark_outbox_sent(self._unmarked, now_utc)
        self._unmarked = []
        self._last_puback_at = utc_iso(now_utc)

    def _region_ack(self, payload: bytes) -> None:
        if not payload:
            return  # the retained ack was cleared: nothing to learn
        try:
            ack = parse_ack(payload)
        except EnvelopeError as exc:
            self._set(last_error=f"region ack on {self._ack_topic}: {exc}")
            return
        last = self._log.last_outbox_seq()
        mine = self._log.outbox_msg_id(ack.seq) if ack.seq else None
        if ack.seq > last or (ack.id and mine and ack.id != mine):
            # The region's ack is about another database of this node (a new SD card): trusting it
            # would drop records the region never had.
            self._set(last_error=f"region ack seq {ack.seq} (id {ack.id}) does not match this node's outbox "
                                 f"(last seq {last}, id {mine}): ignored")  # fmt: skip
            return
        if self._window.region_ack(ack.seq):
            self._log.mark_outbox_acked_through(ack.seq, self._clock())
            self._next_stats = 0.0  # the backlog shrank: show it now
        self._set(last_ack_at=ack.stored_at)

    def _send(self) -> None:
        window = self._window
        due = window.due_resends(self._monotonic())
        resend = self._log.outbox_messages(due) if due else []
        self._resent += len(resend)
        if len(resend) < len(due):  # acknowledged meanwhile: forget them
            for seq in set(due) - {m.seq for m in resend}:
                window.forget(seq)
        for msg in resend:
            if not self._publish(msg):
                return
        while window.new_allowance() > 0:
            new = self._next_new()
            if new is None:
                return
            if not self._publish(new):
                self._ahead.appendleft(new)
                return

    def _next_new(self) -> OutboxMessage | None:
        # Rows are read ahead in pages: one query per page, not one per PUBACK.
        cursor = self._window.cursor
        while self._ahead and self._ahead[0].seq <= cursor:
            self._ahead.popleft()  # the region acknowledged them meanwhile
        if not self._ahead:
            self._ahead.extend(self._log.outbox_after(cursor, _READ_AHEAD))
        return self._ahead.popleft() if self._ahead else None

    def _publish(self, msg: OutboxMessage) -> bool:
        s = self.settings
        try:
            env = build_envelope(kind=msg.kind, msg_id=msg.msg_id, lab=s.lab, machine=s.machine, seq=msg.seq,
                                 data=msg.payload, sent_at=self._clock(), created=msg.created)  # fmt: skip
            payload = encode_envelope(env)
        except EnvelopeError as exc:
            # Skipping it would leave a hole the region's ack never passes: stop, loudly, instead.
            self._set(last_error=f"outbox message {msg.seq} cannot be sent: {exc}")
            return False
        # Only the newest state may be retained: an older one re-sent must not replace it.
        retain = msg.kind == KIND_STATE and not self._log.outbox_has_newer(KIND_STATE, msg.seq)
        assert self._client is not None
        info = self._client.publish(topic(s.prefix, s.lab, s.machine, env.topic_kind), payload, qos=1,
                                    retain=retain)  # fmt: skip
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: paho keeps it
            self._set(last_error=f"publish of outbox message {msg.seq} failed: {mqtt.error_string(info.rc)}")
            return False
        self._window.published(msg.seq, info.mid, self._monotonic())
        self._published += 1
        return True

    def _refresh_stats(self, force: bool = False) -> None:
        # Cheap figures every step, after the database marks; the backlog query at most every 0.5 s.
        figures: dict[str, Any] = {"in_flight": len(self._window.waiting), "published": self._published,
                                   "resent": self._resent, "last_puback_at": self._last_puback_at,
                                   "last_ack_seq": self._window.acked_through}  # fmt: skip
        now = self._monotonic()
        if force or now >= self._next_stats:
            self._next_stats = now + _STATS_EVERY_S
            stats = self._log.outbox_stats()
            figures.update(backlog=stats["backlog"], oldest_unacked=stats["oldest_unacked"],
                           last_seq=stats["last_seq"])  # fmt: skip
        self._set(**figures)

    def _set(self, **values: Any) -> None:
        with self._changed:
            self._snapshot.update(values)
            self._changed.notify_all()

    def _shutdown(self) -> None:
        client = self._client
        if client is None:
            return
        self._unmarked += self._handle_events()
        if self._unmarked:
            self._mark_sent()
        if self._connected and self.settings.announce:
            s = self.settings
            offline = status_payload(s, "offline", self._clock())
            info = client.publish(topic(s.prefix, s.lab, s.machine, "status"), offline, qos=1, retain=True)
            self._await_puback(info.mid)
        client.disconnect()
        client.loop_stop()
        self._connected = False
        self._set(connected=False)

    def _await_puback(self, mid: int) -> None:
        deadline = time.monotonic() + _STOP_PUBACK_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                return
            if event[0] == "puback" and event[1] == mid:
                return
