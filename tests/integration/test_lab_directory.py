"""One lab directory for the whole lab: real `fabnode run --simulate` daemons of one lab on one real
mosquitto, changed with the real CLI, tapped on their simulated readers, read back over their control
sockets; forged, replayed, corrupted and oversized entries published straight to the broker with paho."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fabnode.envelope import directory_subscription, directory_topic
from fabnode.mosquitto import free_port
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.integration.test_daemon_helpers import (
    MEMBER_UID,
    TECH_UID,
    Node,
    wait_until,
    write_config,
)
from tests.mqtt_broker import MosquittoBroker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]
LAB = "test-lab"  # write_config's lab
PREFIX = "fablab"
SYNC_S = 30.0  # generous: two shared cores, and a reconnect backs off up to a few seconds


class Spy:
    """A client that reads everything on the broker, as the region (or anyone with an account) could."""

    def __init__(self, broker: MosquittoBroker, topic: str = "#") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spy-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect_async(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the spy got no SUBACK"

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()

    def entries(self) -> list[tuple[str, bytes]]:
        """The directory entries seen so far (topic, sealed blob)."""
        base = directory_topic(PREFIX, LAB, "entries", "")
        with self._cond:
            return [(t, p) for t, p in self.messages if t.startswith(base) and p]

    def wait_for(self, check: Callable[[Spy], bool], timeout: float, what: str) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: check(self), timeout), f"the spy saw no {what}"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Lab:
    """Nodes of one lab (one secret) on one broker, each `fabnode run --simulate --broker URL`."""

    def __init__(self, root: Path, broker: MosquittoBroker) -> None:
        self.root, self.broker = root, broker
        self.secret = os.urandom(32)
        self.nodes: dict[str, Node] = {}

    def prepare(self, machine: str, broker_url: str | None = None) -> Node:
        folder = self.root / machine
        folder.mkdir(parents=True)
        secret = secret_file_path(folder / "state")
        secret.parent.mkdir(mode=0o700, parents=True)
        secret.write_bytes(self.secret)
        secret.chmod(0o600)
        node = Node(folder / "state", write_config(folder, machine=machine),
                    extra=("--broker", broker_url or self.broker.url))  # fmt: skip
        self.nodes[machine] = node
        return node

    def start(self, *machines: str) -> list[Node]:
        return [self.prepare(m).start() for m in machines]

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.stop()


def directory(node: Node) -> dict[str, Any]:
    return dict(node.status()["directory"])


def members(node: Node) -> list[dict[str, Any]]:
    """`fabnode members list --json --all`, but when each node first heard of each member."""
    out = node.cli("members", "list", "--json", "--all")
    assert out.returncode == 0, out.stderr
    return sorted(({k: v for k, v in m.items() if k != "created"} for m in json.loads(out.stdout)),
                  key=lambda m: m["name"])  # fmt: skip


def cli_digest(node: Node) -> str:
    """`fabnode members digest`: the node's directory as its own SQLite holds it."""
    out = node.cli("members", "digest")
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


def converged(nodes: list[Node], what: str, target: str | None = None, timeout: float = SYNC_S) -> str:
    """Wait until every node's status shows the directory `target` (default: what the first node's
    SQLite holds, as `fabnode members digest` prints it); the digest."""
    goal = target or cli_digest(nodes[0])

    def there() -> bool:
        return all(directory(n)["digest"] == goal for n in nodes)

    wait_until(there, timeout, what, every=0.1)
    return goal


def cli_ok(node: Node, *args: str) -> None:
    out = node.cli(*args)
    assert out.returncode == 0, f"fabnode {' '.join(args)}: {out.stdout}{out.stderr}"


def tap_outcome(node: Node, uid: str) -> tuple[bool, str]:
    reply = node.tap(uid)
    return bool(reply["ok"]), str(reply.get("reason") or reply.get("error") or "")


def badge_out(node: Node, uid: str) -> None:
    """End the session the member's tap opened, so the next tap is a fresh decision."""
    assert node.tap(uid)["ok"]
    node.wait_status(lambda s: s["state"] in ("locked", "cooldown"), 20, "the session to end")


@pytest.fixture
def broker(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    return mosquitto_factory(persistence=True)


@pytest.fixture
def lab(tmp_path: Path, broker: MosquittoBroker) -> Iterator[Lab]:
    lab = Lab(tmp_path, broker)
    yield lab
    lab.stop()


@pytest.fixture
def spy(broker: MosquittoBroker) -> Iterator[Spy]:
    spy = Spy(broker)
    yield spy
    spy.close()


def test_enrol_on_one_node_revoke_on_another_edit_offline_and_join_late(
    lab: Lab, broker: MosquittoBroker, spy: Spy
) -> None:
    a, b, c = lab.start("node-a", "node-b", "node-c")
    cli_ok(a, "members", "add", "Alice", "--badge", MEMBER_UID)
    for machine in ("node-a", "node-b", "node-c"):
        cli_ok(a, "members", "grant", "Alice", machine)
    cli_ok(a, "members", "add", "Tom", "--badge", TECH_UID, "--role", "technician")
    converged([a, b, c], "the enrolment on A reaching B and C")

    for node in (b, c):  # enrolled on A, let in on B and C
        granted, reason = tap_outcome(node, MEMBER_UID)
        assert granted, reason
        badge_out(node, MEMBER_UID)

    cli_ok(c, "members", "revoke", "Alice", "node-a")  # revoked on C...
    converged([a, b, c], "the revocation on C reaching A")
    granted, reason = tap_outcome(a, MEMBER_UID)  # ...refused on A
    assert not granted and "node-a" in reason

    broker.stop()  # two nodes edit the same member while the broker is away
    wait_until(lambda: not any(directory(n)["connected"] for n in (a, b, c)), SYNC_S, "the nodes to notice")
    cli_ok(a, "members", "grant", "Alice", "node-a", "--until", "2099-12-31")  # the same training...
    cli_ok(b, "members", "grant", "Alice", "node-a", "--until", "2098-06-30")  # ...granted to another day
    cli_ok(b, "members", "revoke", "Alice", "node-c")

    def waiting() -> bool:  # the changes wait on each node, and each node has its own view meanwhile
        return (directory(a)["unpublished"] >= 1 and directory(b)["unpublished"] >= 2
                and len({directory(n)["digest"] for n in (a, b, c)}) == 3)  # fmt: skip

    wait_until(waiting, SYNC_S, "the offline changes to wait for the broker", every=0.1)
    broker.start()

    def agreed() -> str | None:  # they differed pairwise: agreeing means each got the others' edits
        digests = {directory(n)["digest"] for n in (a, b, c)}
        return digests.pop() if len(digests) == 1 else None

    digest = wait_until(agreed, SYNC_S, "the three nodes to agree after the broker came back", every=0.1)
    assert cli_digest(a) == cli_digest(b) == cli_digest(c) == digest
    assert members(a) == members(b) == members(c)
    assert all(directory(n)["unpublished"] == 0 for n in (a, b, c))

    [d] = lab.start("node-d")  # a fourth node, new, with only the lab secret
    converged([d], "the late node to receive the whole directory", target=digest)
    assert members(d) == members(a)
    granted, reason = tap_outcome(d, TECH_UID)  # a technician uses every machine
    assert granted, reason

    # Nothing readable on the broker: no name, no badge (nor its hash), no training.
    badge = access.badge_hash(lab.secret, MEMBER_UID)
    seen = b"".join(p for _t, p in spy.messages)
    for secret_text in ("Alice", "Tom", badge, MEMBER_UID, "2099-12-31", "technician"):
        assert secret_text.encode() not in seen, secret_text
    assert any(t.startswith(directory_topic(PREFIX, LAB, "snapshot", "")) for t, _p in spy.messages)


def test_forged_replayed_corrupted_and_oversized_entries_are_refused_and_counted(
    lab: Lab, spy: Spy
) -> None:
    from fabnode.directory.seal import open_sealed, seal

    a, b = lab.start("node-a", "node-b")
    cli_ok(a, "members", "add", "Alice", "--badge", MEMBER_UID)
    cli_ok(a, "members", "grant", "Alice", "node-b")
    converged([a, b], "the enrolment")

    def the_grant(s: Spy) -> bytes | None:  # the grant on node-b, sealed, as it travelled
        for _topic, blob in s.entries():
            entry = open_sealed(lab.secret, blob, LAB)
            if entry.field == "training:node-b" and entry.value == {"granted": True, "until": None}:
                return blob
        return None

    spy.wait_for(lambda s: the_grant(s) is not None, 10, "the sealed grant")
    grant = the_grant(spy)
    assert grant is not None
    cli_ok(a, "members", "revoke", "Alice", "node-b")
    digest = converged([a, b], "the revocation")
    assert not tap_outcome(b, MEMBER_UID)[0]
    before = {n: directory(n) for n in (a, b)}

    forged_entry = _entry_like(b, "training:node-b", {"granted": True, "until": None})
    other_lab = seal(os.urandom(32), forged_entry)
    flipped = bytearray(grant)
    flipped[len(flipped) // 2] ^= 0x01
    topic = directory_topic(PREFIX, LAB, "entries", "test-lab.intruder")
    for payload in (other_lab, grant, bytes(flipped), os.urandom(1024 * 1024)):
        spy.publish(topic, payload)

    def counted(node: Node) -> bool:
        now, then = directory(node), before[node]
        return now["refused"] >= then["refused"] + 4 and now["stale"] > then["stale"]

    for node in (a, b):
        wait_until(lambda n=node: counted(n), SYNC_S, f"{node.state_dir.parent.name} to count the refusals")
        now, then = directory(node), before[node]
        assert now["unopened"] == then["unopened"] + 3  # another lab's, the flipped bit, the megabyte
        assert now["stale"] == then["stale"] + 1  # the replayed grant: older than the revocation
        assert now["refused"] == then["refused"] + 4  # all four, never applied
        assert now["digest"] == digest and now["applied"] == then["applied"]  # none of them applied
        reasons = " | ".join(now["refusals"])
        assert all(why in reasons for why in ("other lab", "forged or corrupted", "too big")), reasons
    granted, reason = tap_outcome(b, MEMBER_UID)  # the replayed grant did not bring Alice back
    assert not granted and "node-b" in reason


def _entry_like(node: Node, field: str, value: Any) -> Any:
    """An entry for a member this lab knows, as another lab's node would write it."""
    from fabnode.directory.clock import Hlc
    from fabnode.directory.entry import Entry

    [row] = node.rows("SELECT directory_id AS member FROM members WHERE name = 'Alice'")
    stamp = Hlc(int(datetime.now(UTC).timestamp() * 1000) + 60_000, 0, "other-lab.intruder")
    return Entry(LAB, "other-lab.intruder", stamp, row["member"], field, value)


def test_past_max_age_without_contact_only_technicians_pass(lab: Lab) -> None:
    unreachable = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there: the broker is away
    node = lab.prepare("node-e", unreachable)
    node.start()
    cli_ok(node, "members", "add", "Alice", "--badge", MEMBER_UID)
    cli_ok(node, "members", "grant", "Alice", "node-e")
    cli_ok(node, "members", "add", "Tom", "--badge", TECH_UID, "--role", "technician")
    node.stop()
    from fabnode.directory.store import LabDirectory

    with UsageLog.open(usage_db_path(node.state_dir)) as usage:  # its last contact: 31 days ago
        store = LabDirectory.open(usage.db, lab.secret, f"{LAB}.node-e", LAB)
        store.note_contact(datetime.now(UTC) - timedelta(days=31))
    node.start()
    granted, reason = tap_outcome(node, MEMBER_UID)
    assert not granted and "only technicians pass" in reason and "max_age_days = 30" in reason
    status = directory(node)
    assert status["only_technicians"] == reason and status["max_age_days"] == 30
    text = node.cli("status")
    assert "only technicians pass" in text.stdout
    granted, reason = tap_outcome(node, TECH_UID)
    assert granted, reason


class _User:
    """One MQTT user of a broker with a password file and an ACL (plain listener)."""

    def __init__(self, broker: MosquittoBroker, user: str, password: str) -> None:
        self.messages: list[str] = []
        self._subscribed = threading.Event()
        connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}")
        self.client.username_pw_set(user, password)
        self.client.on_connect = lambda *_a: connected.set()
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(m.topic)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(10), f"{user} could not connect"

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_shipped_acl_lets_a_node_share_only_its_labs_directory(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoBroker]
) -> None:
    from tests.mqtt_broker import make_password_file

    shipped = Path(__file__).resolve().parents[2] / "config" / "mosquitto-region.acl"
    users = {"north.laser-1": "l-pw", "north.prusa-mini-1": "m-pw", "region-collector": "c-pw"}
    broker = mosquitto_factory(password_file=make_password_file(tmp_path / "passwd", users),
                               acl_file=shipped)  # fmt: skip
    laser, mini, region = (_User(broker, user, password) for user, password in users.items())
    try:
        mini.subscribe(directory_subscription(PREFIX, "north"))
        region.subscribe("#")
        own = directory_topic(PREFIX, "north", "entries", "north.laser-1")
        laser.client.publish(own, b"sealed", qos=1).wait_for_publish(5)
        laser.client.publish(f"{directory_topic(PREFIX, 'north', 'snapshot', 'north.laser-1')}/0", b"sealed",
                             qos=1, retain=True).wait_for_publish(5)  # fmt: skip
        wait_until(lambda: len(mini.messages) >= 2, 10, "the lab's other node to read the directory")
        forged = directory_topic(PREFIX, "north", "entries", "north.prusa-mini-1")
        laser.client.publish(forged, b"x", qos=1)  # another node's topic: dropped by the broker
        wait_until(laser.client.is_connected, 10, "the node to be connected")  # (it may close the link)
        laser.client.publish(own, b"after", qos=1).wait_for_publish(5)
        wait_until(lambda: len(mini.messages) >= 3, 10, "the node's next entry")  # in order, per publisher
        assert forged not in mini.messages and mini.messages.count(own) == 2
        assert region.messages == []  # the region reads no lab's directory
    finally:
        for user in (laser, mini, region):
            user.close()
