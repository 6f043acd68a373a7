"""The lab directory over the lab's MQTT broker (an adapter): this node's entries out, the lab's in.

Topics (fabnode.envelope.directory_topic), every payload sealed with the lab secret: each local change
goes to `<prefix>/lab/v1/<lab>/directory/entries/<node>` (QoS 1, not retained; marked published on its
PUBACK); the node's whole directory to `.../snapshot/<node>/<part>` (retained), in parts the region
broker's `max_packet_size` (128 KiB) lets through; parts left over from a larger snapshot are cleared.
A part goes out again when a member in it was changed here (SNAPSHOT_EVERY_S), else at the refresh.
Every node subscribes to `.../directory/#` with a persistent session: a node that was away catches up
from the retained snapshots plus the entries the broker kept for it, and a new node with the lab secret
receives the whole directory from the snapshots as soon as it subscribes.

Threads: paho's network thread only posts onto a queue. One thread of our own ("directory") owns a
connection of its own to the usage database and applies what arrives through `LabDirectory`, the
entries of a batch in one transaction and its snapshot parts in another (those this node holds
already take none): the file is in WAL mode with a busy timeout, so the controller's connection, the
telemetry publisher and the CLI write beside it. Applying changes no machine state (a tap reads the
member tables on the controller's connection and sees a batch at its commit), so no event is posted.
A change the CLI (another process) writes is noticed by polling SQLite's `PRAGMA data_version` every
POLL_S (no table is read unless it moved) and published at once. `status()` and the `[directory]
max_age_days` rule read figures this thread keeps under a lock: the controller never waits on SQLite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from fabnode.config.settings import Config
from fabnode.directory.members import adopt_local_members
from fabnode.directory.seal import seal_snapshot
from fabnode.directory.store import ApplyReport, LabDirectory
from fabnode.envelope import broker_user, directory_subscription, directory_topic
from fabnode.node.directory_snapshot import bucket, split
from fabnode.node.logsafe import shown
from fabnode.node.ports import JsonObject
from fabnode.records.usage import UsageLog

log = logging.getLogger("fabnode.directory")

POLL_S = 0.1  # how often a change written by another process (the CLI) is looked for
OFFLINE_CHECK_S = 1.0  # while the broker is away, how often the unpublished changes are counted
# After a local change (the CLI's, the web's) the part of our snapshot that holds its member is
# republished, at most this often; the parts that only remote changes moved wait for
# SNAPSHOT_REFRESH_S: the author of every change republishes its part, so that every node
# republishing every change (or every part a change moved) would multiply by N the parts each node
# receives and merges.
SNAPSHOT_EVERY_S = 5.0
SNAPSHOT_REFRESH_S = 600.0
# After a (re)subscription our own retained parts come back first: they say how many parts to clear.
FIRST_SNAPSHOT_AFTER_S = 1.0
CONTACT_EVERY_S = 60.0  # while subscribed, the contact time is written this often
START_WAIT_S = 10.0
RESTART_S = 30.0  # after the directory could not be opened or its sync failed outside a step
RETRY_S = 1.0  # after a step failed
SNAPSHOT_PART_BYTES = 96 * 1024  # entry JSON per part (compressed and sealed: well below 128 KiB)
MAX_ENTRY_MESSAGE = 64 * 1024  # a sealed entry (fabnode.directory.seal.MAX_ENTRY_BLOB)
MAX_PART_MESSAGE = 256 * 1024  # a sealed snapshot part, from this version or a later one
REFUSALS_SHOWN = 5
PARTS_PER_BATCH = 16  # snapshot parts merged in one transaction (a few thousand entries)
COUNTS = ("applied", "stale", "duplicate")

OpenStore = Callable[[UsageLog, bytes, str, str], LabDirectory]


def _open_lab_directory(usage: UsageLog, secret: bytes, node: str, lab: str) -> LabDirectory:
    return LabDirectory.open(usage.db, secret, node, lab)


class DirectorySync:
    """Keeps this node's copy of the lab directory in step with the lab's other nodes."""

    def __init__(self, config: Callable[[], Config], db_path: Path, secret: bytes,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC), *,
                 monotonic: Callable[[], float] = time.monotonic,
                 open_store: OpenStore = _open_lab_directory) -> None:  # fmt: skip
        self._config = config  # read where used: a reload's [directory] max_age_days applies at once
        self._db_path = db_path
        self._secret = secret
        self.wall = wall
        self.monotonic = monotonic
        self._open_store = open_store
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._loaded = threading.Event()
        self._run: _Run | None = None
        self._figures: dict[str, Any] = {
            "digest": None, "entries": 0, "refused": 0, "unopened": 0, **dict.fromkeys(COUNTS, 0),
            "last_contact": None, "unpublished": 0, "connected": False, "broker": None, "last_error": None,
            "refusals": [],
            "snapshot_parts": None, "snapshot_bytes": None, "snapshot_digest": None,
        }  # fmt: skip

    # --- what the daemon calls (any thread) --------------------------------------------------------

    def start(self) -> None:
        """Open the directory and, with a broker configured, connect; returns once the figures are in."""
        self._stopping = False
        self._loaded.clear()
        self._thread = threading.Thread(target=self._main, name="directory", daemon=True)
        self._thread.start()
        self._loaded.wait(START_WAIT_S)

    def stop(self, timeout: float = 5.0) -> None:
        """Mark what was PUBACKed, disconnect and end the thread; what is unpublished stays so."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def restart(self) -> None:
        """New broker settings (a reload): reconnect with them."""
        self.stop()
        self.start()

    def status(self) -> JsonObject:
        """`directory` in `fabnode status`: digest, entries, refused, stale, last_contact, and why only
        technicians pass (`only_technicians`, null when everyone trained does)."""
        with self._changed:
            figures = dict(self._figures)
        contact = figures["last_contact"]
        figures["last_contact"] = contact.isoformat() if isinstance(contact, datetime) else None
        figures["refusals"] = list(figures["refusals"])
        figures["max_age_days"] = self._config().directory.max_age_days
        figures["only_technicians"] = self.only_technicians(self.wall())
        return figures

    def only_technicians(self, now: datetime) -> str | None:
        """Why only technicians pass now (the lab's broker unheard of for over `max_age_days`), or None.

        A node without a broker keeps its own directory (there is no lab to hear from), and one that
        never reached its broker has no lab directory to distrust yet.
        """
        config = self._config()
        with self._changed:
            last = self._figures["last_contact"]
        if config.telemetry.broker is None or last is None:
            return None
        age_s = (now - last).total_seconds()
        if age_s <= config.directory.max_age_s:
            return None
        return (f"lab directory out of date: no contact with the lab's broker since "
                f"{last.isoformat(timespec='minutes')} ({age_s / 86_400:.0f} days; [directory] "
                f"max_age_days = {config.directory.max_age_days}): only technicians pass")  # fmt: skip

    def figure(self, name: str) -> Any:
        """One figure as the directory thread last set it."""
        with self._changed:
            return self._figures[name]

    def set(self, **values: Any) -> None:
        """Update figures (the directory thread)."""
        with self._changed:
            self._figures.update(values)
            self._changed.notify_all()

    # --- paho's thread: post events, nothing else ----------------------------------------------------

    def post(self, *event: Any) -> None:
        """An event for the directory thread."""
        self.events.put(event)
        self._wake.set()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        run = self._run
        if reason.is_failure or run is None:
            self.post("error", f"broker refused the connection: {reason}")
            return
        client.subscribe(run.subscription, qos=1)
        self.post("connected")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        if any(getattr(code, "is_failure", False) for code in codes):
            self.post("error", f"broker refused the subscription to the lab directory ({codes})")
        else:
            self.post("subscribed")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.post("disconnected", str(reason))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self.post("puback", mid)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        run, topic, size = self._run, message.topic, len(message.payload)
        kind = run.kind_of(topic) if run is not None else None
        if run is None or kind is None or topic == run.entries_topic:
            return  # not our lab's directory, or our own entry coming back
        limit = MAX_ENTRY_MESSAGE if kind == "entries" else MAX_PART_MESSAGE
        if size == 0:
            return  # a cleared snapshot part
        if size > limit:  # refused here, unread, so that a flood of large messages holds no memory
            self.post("refused", f"too big: a {kind} message of {size} bytes on {topic} (at most {limit})")
        elif topic.startswith(run.snapshot_topic + "/"):
            self.post("own part", topic, bytes(message.payload))
        else:
            self.post("message", kind, topic, bytes(message.payload))

    # --- our thread ----------------------------------------------------------------------------------

    def _main(self) -> None:
        # A directory that cannot be opened now (a file locked past the busy timeout, a full disk) is
        # tried again: a node must not stop hearing revocations until someone restarts it.
        while not self._stopping:
            if self._session():
                return
            self._wake.wait(RESTART_S)
            self._wake.clear()

    def _session(self) -> bool:
        """Open the directory and sync until stopped (True), or fail on the way (False: try again)."""
        usage: UsageLog | None = None
        try:
            config = self._config()
            usage = UsageLog.open(self._db_path)
            node = broker_user(config.node.lab, config.node.machine)
            store = self._open_store(usage, self._secret, node, config.node.lab)
            if adopted := adopt_local_members(store, now=self.wall()):  # enrolled before the directory
                log.info("lab directory: %d member(s) enrolled here before it joined it", adopted)
            self._run = run = _Run(self, config, usage, store, node)
            run.refresh()
            self._loaded.set()
            run.connect()
            while not self._stopping:
                self._wake.wait(run.wait_s())
                self._wake.clear()
                try:
                    run.step()
                except Exception as exc:  # e.g. a file locked past the busy timeout: try again shortly
                    log.exception("lab directory: a step failed")
                    self.set(last_error=f"lab directory: {exc} (retrying)")
                    run.retry_later()
            run.shut_down()
            return True
        except Exception as exc:  # status shows it; the machine's access control carries on without it
            log.exception("lab directory sync stopped")
            self.set(last_error=f"lab directory sync stopped: {exc} (trying again in {RESTART_S:g} s)",
                     connected=False)  # fmt: skip
            return False
        finally:
            self._run = None
            self._loaded.set()
            if usage is not None:
                usage.close()


@dataclasses.dataclass(eq=False)
class _Run:
    """What the directory thread holds between its steps (only that thread touches it)."""

    sync: DirectorySync
    config: Config
    usage: UsageLog
    store: LabDirectory
    node: str
    client: mqtt.Client | None = None
    subscribed: bool = False
    data_version: int | None = None
    moved: bool = True  # the database changed since we last looked at the unpublished changes
    next_poll: float = 0.0
    next_offline_check: float = 0.0
    next_contact: float = 0.0
    next_snapshot: float = 0.0
    digest: str | None = None
    snapshot_digest: str | None = None  # the digest of the snapshot last published (None: publish one)
    snapshot_parts: int = 0  # how many parts our retained snapshot has (those beyond are cleared)
    next_refresh: float = 0.0
    local_changes: set[str] = dataclasses.field(default_factory=set)  # changed here since the snapshot
    part_digests: dict[int, bytes] = dataclasses.field(default_factory=dict)  # part -> digest published
    part_bytes: dict[int, int] = dataclasses.field(default_factory=dict)  # part -> sealed size
    in_flight: dict[int, int] = dataclasses.field(default_factory=dict)  # mid -> entry id
    pubacked: list[int] = dataclasses.field(default_factory=list)
    seen_parts: dict[str, bytes] = dataclasses.field(default_factory=dict)  # topic -> sha256 of its part
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    def __post_init__(self) -> None:
        prefix, lab = self.config.telemetry.prefix, self.config.node.lab
        self.subscription = directory_subscription(prefix, lab)
        self.entries_topic = directory_topic(prefix, lab, "entries", self.node)
        self.snapshot_topic = directory_topic(prefix, lab, "snapshot", self.node)
        self.base = self.subscription[:-1]  # `<prefix>/lab/v1/<lab>/directory/`

    def kind_of(self, topic: str) -> str | None:
        """`entries` or `snapshot` for a topic of our lab's directory, else None (paho's thread)."""
        kind, _, rest = topic[len(self.base):].partition("/") if topic.startswith(self.base) else ("", "", "")
        if (kind == "entries" and rest and "/" not in rest) or (kind == "snapshot" and rest.count("/") == 1):
            return kind
        return None

    # --- connecting ---

    def connect(self) -> None:
        """Connect in the background when a broker is configured (errors go to status)."""
        if self.config.telemetry.broker is None:
            return
        from fabnode.telemetry.mqtt import TelemetryError, TelemetrySettings, make_client

        s = self.sync
        try:
            base = TelemetrySettings.from_config(self.config)
            settings = dataclasses.replace(base, client_id=f"{base.mqtt_client_id}-directory", announce=False,
                                           persistent_session=True)  # fmt: skip
            client, address = make_client(settings, s.wall())
        except TelemetryError as exc:
            s.set(last_error=str(exc))
            log.error("lab directory not shared: %s", shown(str(exc)))
            return
        client.on_connect, client.on_subscribe = s._on_connect, s._on_subscribe
        client.on_disconnect, client.on_publish = s._on_disconnect, s._on_publish
        client.on_message = s._on_message
        self.client = client
        s.set(broker=f"{address.host}:{address.port}")
        client.connect_async(address.host, address.port, keepalive=settings.keepalive_s)
        client.loop_start()

    def shut_down(self) -> None:
        """Last marks, then a clean disconnect."""
        self.handle_events()
        self.mark_published()
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        self.sync.set(connected=False)

    # --- one turn ---

    def wait_s(self) -> float:
        """Until the next poll (a snapshot waits no longer than that)."""
        return max(0.0, self.next_poll - self.sync.monotonic())

    def step(self) -> None:
        """Events first (messages, PUBACKs), then changes written elsewhere, contact and the snapshot."""
        self.handle_events()
        self.mark_published()
        now = self.sync.monotonic()
        if now >= self.next_poll:
            self.next_poll = now + POLL_S
            with self.usage.locked() as db:  # moves only when another connection committed
                version = int(db.execute("PRAGMA data_version").fetchone()[0])
            if version != self.data_version:
                self.data_version, self.moved = version, True
        if self.moved and (self.subscribed or now >= self.next_offline_check):
            self.moved, self.next_offline_check = False, now + OFFLINE_CHECK_S
            pending = self.pending()
            self.sync.set(unpublished=pending)
            if self.subscribed and pending > len(self.in_flight):
                self.publish_entries()
            self.refresh()
        if self.subscribed and now >= self.next_contact:
            self.next_contact = now + CONTACT_EVERY_S
            self.store.note_contact(self.sync.wall())
            self.refresh()
        if self.subscribed and now >= self.next_snapshot and self.digest != self.snapshot_digest and (
                self.snapshot_digest is None or self.local_changes or now >= self.next_refresh):
            self.publish_snapshot(now)

    def handle_events(self) -> None:
        """Everything paho posted. Entries and snapshot parts that come one after the other are merged
        in one transaction of at most PARTS_PER_BATCH parts (a tap's record never waits long for it)."""
        batch: list[tuple[str | None, bytes]] = []  # (the topic of a snapshot part, or None; blob)
        while True:
            try:
                event = self.sync.events.get_nowait()
            except queue.Empty:
                break
            kind = event[0]
            if kind == "own part" and self.snapshot_digest is None:  # what we left retained says how
                number = event[1].rsplit("/", 1)[1]  # many parts to clear (and what a new SD card lacks)
                if number.isdigit() and int(number) < 100_000:
                    self.snapshot_parts = max(self.snapshot_parts, int(number) + 1)
                kind, event = "message", ("message", "snapshot", event[1], event[2])
            if kind == "message":
                part = event[2] if event[1] == "snapshot" else None
                if part is None or self.seen_parts.get(part) != hashlib.sha256(event[3]).digest():
                    batch.append((part, event[3]))  # a part seen already brings nothing new: skipped
                if sum(1 for t, _ in batch if t) >= PARTS_PER_BATCH:
                    batch = self.apply(batch)
                continue
            batch = self.apply(batch)  # entries keep their order around the other events
            if kind == "puback":
                entry_id = self.in_flight.pop(event[1], None)
                if entry_id is not None:
                    self.pubacked.append(entry_id)
            elif kind == "refused":
                self.store.note_refused(event[1])
                self.remember([event[1]])
            elif kind == "connected":
                self.sync.set(connected=True, last_error=None)
            elif kind == "subscribed":
                self.on_subscribed()
            elif kind == "disconnected":
                self.subscribed = False
                self.sync.set(connected=False)
            elif kind == "error":
                log.warning("lab directory: %s", shown(event[1]))
                self.sync.set(last_error=event[1])
        self.apply(batch)

    def retry_later(self) -> None:
        """A step failed (what it held may be lost): look again at everything in RETRY_S."""
        self.moved, self.digest = True, None
        self.next_poll = self.sync.monotonic() + RETRY_S
        if self.client is not None and self.subscribed:  # the retained snapshots come again
            self.seen_parts.clear()
            self.client.subscribe(self.subscription, qos=1)

    def on_subscribed(self) -> None:
        now = self.sync.monotonic()
        self.subscribed, self.moved = True, True  # publish what waited, now
        self.next_contact = 0.0
        self.snapshot_digest = None  # a broker that restarted without persistence lost our snapshot
        self.part_digests.clear()
        self.next_snapshot = now + FIRST_SNAPSHOT_AFTER_S
        # paho re-sends what it had in flight; what has no PUBACK yet is sealed and sent again too (a
        # second copy is a duplicate to the other nodes, harmless), and its old PUBACK is ignored.
        self.in_flight.clear()

    def apply(self, batch: list[tuple[str | None, bytes]]) -> list[tuple[str | None, bytes]]:
        """Merge sealed entries, then snapshot parts, each kind in one transaction (a change sent as an
        entry does not wait on the parts beside it, which mostly hold nothing new); count what it came
        to. An empty batch to go on with."""
        entries = [blob for part, blob in batch if part is None]
        parts = [(part, blob) for part, blob in batch if part is not None]
        for blobs in (entries, [blob for _, blob in parts]):
            if blobs:
                self.count(self.store.apply_sealed(blobs, self.sync.wall()))
        for part, blob in parts:
            self.seen_parts[part] = hashlib.sha256(blob).digest()
        return []

    def count(self, report: ApplyReport) -> None:
        for key in COUNTS:
            self.counts[key] += getattr(report, key)
        if report.reasons:
            self.remember(report.reasons)
        if report.applied or report.refused:
            self.refresh()
        self.sync.set(**self.counts)
        self._set_refused()

    def remember(self, reasons: list[str]) -> None:
        log.warning("lab directory: refused %s", shown("; ".join(reasons[:REFUSALS_SHOWN])))
        shown_before = list(self.sync.figure("refusals"))
        self.sync.set(refusals=(shown_before + reasons)[-REFUSALS_SHOWN:])
        self.refresh()

    # --- publishing ---

    def pending(self) -> int:
        """How many of this node's changes wait for a PUBACK, counted without sealing them (a bulk
        import offline must not be sealed again at every tap's commit)."""
        sql = "SELECT count(*) FROM directory_outbox WHERE published IS NULL"  # fabnode.directory.store's
        return int(self.store.db.execute(sql).fetchone()[0])

    def publish_entries(self) -> None:
        """This node's changes that have no PUBACK yet (the CLI's, the web's, ours), QoS 1."""
        pending, members = self.store.unpublished(), self.store.unpublished_members()
        if self.client is None:
            return
        sending = set(self.in_flight.values())
        for entry_id, blob in pending:
            if entry_id in sending:
                continue
            info = self.client.publish(self.entries_topic, blob, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: paho keeps it
                self.sync.set(last_error=f"publishing a directory entry: {mqtt.error_string(info.rc)}")
                return
            self.in_flight[info.mid] = entry_id
        self.local_changes |= members

    def mark_published(self) -> None:
        if self.pubacked:
            self.store.mark_published(self.pubacked)
            self.pubacked = []
            self.moved = True  # count what is left

    def publish_snapshot(self, now: float) -> None:
        """The parts of our snapshot that changed, retained: those that hold a member changed here, or
        all (after a reconnect, every SNAPSHOT_REFRESH_S); parts left over from a larger snapshot are
        cleared."""
        assert self.client is not None
        whole = self.snapshot_digest is None or now >= self.next_refresh
        self.next_snapshot = now + SNAPSHOT_EVERY_S
        if whole:
            self.next_refresh = now + SNAPSHOT_REFRESH_S
        local, self.local_changes = self.local_changes, set()
        parts, before = split(self.store.entries(), SNAPSHOT_PART_BYTES), self.snapshot_parts
        due = {bucket(member, len(parts)) for member in local}
        if len(parts) != before:
            self.part_digests.clear()  # split anew: every part's content moved
            whole = whole or len(parts) < before  # fewer parts: the ones cleared held members
            # A changed member's old part goes too: an erased name must not stay retained there.
            due |= {bucket(member, before) for member in local} if before else set()
        behind = False  # a part that moved is left for later
        for part in parts:
            if self.part_digests.get(part.number) == part.digest:
                continue
            if not whole and part.number not in due:
                behind = True  # moved by remote changes only: their authors republish it
                continue
            blob = seal_snapshot(self.store.secret, self.store.lab, self.node, part.entries)
            self.client.publish(f"{self.snapshot_topic}/{part.number}", blob, qos=1, retain=True)
            self.part_digests[part.number], self.part_bytes[part.number] = part.digest, len(blob)
        for number in range(len(parts), self.snapshot_parts):
            self.client.publish(f"{self.snapshot_topic}/{number}", b"", qos=1, retain=True)
            self.part_digests.pop(number, None)
            self.part_bytes.pop(number, None)
        # Partly behind: the digest of no directory (but not None: a snapshot is retained).
        self.snapshot_parts, self.snapshot_digest = len(parts), "" if behind else self.digest
        self.sync.set(snapshot_parts=len(parts), snapshot_bytes=sum(self.part_bytes.values()),
                      snapshot_digest=self.snapshot_digest or None)  # fmt: skip

    # --- figures for status ---

    def refresh(self) -> None:
        """The digest (cached by the store until a merge), the counters and the contact time."""
        digest = self.store.digest()
        if digest != self.digest:
            self.digest = digest
            self.sync.set(digest=digest, entries=self.store.entry_count())
        self._set_refused()
        self.sync.set(last_contact=self.store.last_contact())

    def _set_refused(self) -> None:
        # `refused` is what was never applied: entries that could not be opened (kept across restarts)
        # plus, since start, entries older than what the node holds for that field (a replayed grant is
        # one; so is the loser of two concurrent edits, which is why `stale` is shown on its own too).
        unopened = self.store.refused_count()
        self.sync.set(refused=unopened + self.counts["stale"], unopened=unopened)
