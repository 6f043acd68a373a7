"""Benchmarks of the lab directory (issue 13), each beside a reference measured in the same run.

- Revocation: NODES `fabnode run --simulate` daemons of one lab on one local mosquitto; REVOCATIONS
  times a training is revoked on one node (through fabnode.directory.members, as `fabnode members
  revoke` does, on that node's SQLite while its daemon runs) and the time until another node refuses
  the member: what its taps read (fabnode.records.members.check_access on its usage log) polled every
  POLL_S, each refusal then confirmed by a real tap on its simulated reader. Reference: a bare MQTT
  QoS 1 hop between two paho clients through the same broker. Goal p99 < 2 s.
- A directory of BIG_MEMBERS members trained on TRAININGS_EACH of MACHINES machines each: the bytes of
  the retained snapshot (all parts; reference: the directory's entries as plain JSON), and how long a
  new node takes to hold it all (same digest), from its start and from its control socket answering
  (reference: the same with SMALL_MEMBERS members).
- Tap -> relay p99 (the simulated relay pin's change record, as tests/bench/node.py measures it) of an
  in-process daemon whose directory holds BIG_MEMBERS members, beside the same daemon with
  SMALL_MEMBERS. Goal: within 10 ms of each other, and < 50 ms.

`python -m tests.bench directory` (the lead registers the module in tests/bench/__main__.py).
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fabnode.directory import members as directory_members
from fabnode.directory.entry import BADGE, NAME, ROLE, TRAINING, training_value
from fabnode.directory.store import LabDirectory
from fabnode.envelope import broker_user
from fabnode.node.loop import Daemon
from fabnode.node.wiring import build_parts, simulated_config
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.bench.node import _one_tap, _pct, _wait_for_hotend
from tests.integration.test_daemon_helpers import Node, write_config
from tests.mqtt_broker import MosquittoBroker, mosquitto_binary

NODES = 10
REVOCATIONS = 100
POLL_S = 0.005
BIG_MEMBERS = 5_000
SMALL_MEMBERS = 10
MACHINES = 50
TRAININGS_EACH = 5
TAPS = 200
LAB = "test-lab"  # tests.integration.test_daemon_helpers.write_config's lab
TAPPER_UID = "04:A2:2B:1C"


@contextmanager
def _broker(folder: Path) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(folder, max_queued_messages=0).start()  # as config/mosquitto-region.conf
    try:
        yield broker
    finally:
        broker.stop()


def _uid(i: int) -> str:
    return f"0a{i:06x}"  # four bytes, unique per member


@contextmanager
def _directory(state_dir: Path, secret: bytes, node: str) -> Iterator[LabDirectory]:
    """The node's directory opened as the CLI opens it (its own connection, beside the daemon)."""
    with UsageLog.open(usage_db_path(state_dir)) as usage:
        yield LabDirectory.open(usage.db, secret, node, LAB)


def _enrol(directory: LabDirectory, count: int, machines: list[str], per_member: int, now: datetime) -> None:
    """`count` members with a badge each and `per_member` of `machines` (all in one transaction)."""
    rng = random.Random(13)
    changes: list[tuple[str, str, Any]] = []
    for i in range(count):
        member = f"m{i:06d}"
        badge = access.badge_hash(directory.secret, _uid(i))
        changes += [(member, NAME, f"Member {i:05d}"), (member, ROLE, "member"), (member, BADGE, badge)]
        for machine in rng.sample(machines, min(per_member, len(machines))):
            changes.append((member, TRAINING + machine, training_value(True, None)))
    directory.change_many(changes, now)


def _secret_for(state_dir: Path, secret: bytes) -> None:
    path = secret_file_path(state_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(secret)
    path.chmod(0o600)


def _node(root: Path, machine: str, broker: MosquittoBroker, secret: bytes) -> Node:
    folder = root / machine
    folder.mkdir(parents=True)
    _secret_for(folder / "state", secret)
    return Node(folder / "state", write_config(folder, machine=machine), sim_speed=1,
                extra=("--broker", broker.url))  # fmt: skip


def _digest(node: Node) -> str | None:
    return node.status()["directory"]["digest"]


def _wait(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout} s: {what}")
        time.sleep(every)  # another process's state: nothing to wait on
    return got


def _converged(nodes: list[Node], digest: str, timeout: float = 300.0) -> None:
    _wait(lambda: all(_digest(n) == digest for n in nodes), timeout, "the nodes to hold the directory",
          every=0.2)  # fmt: skip


_READERS: dict[Path, sqlite3.Connection] = {}


def _refused_on(node: Node, badge: str, machine: str) -> bool:
    """What a tap on the node reads now (one read-only connection per node, kept: polling must not
    load the machine it measures)."""
    conn = _READERS.get(node.state_dir)
    if conn is None:
        uri = f"file:{usage_db_path(node.state_dir)}?mode=ro"
        conn = _READERS[node.state_dir] = sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False)
    from sqlite_utils import Database

    return not access.check_access(Database(conn), badge, machine, date.today()).granted


# --- the reference: one MQTT QoS 1 hop ------------------------------------------------------------------

def _mqtt_hops(broker: MosquittoBroker, n: int) -> list[float]:
    got = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-hop-sub")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = lambda *_a: got.set()
    sub.connect(broker.host, broker.port)
    sub.subscribe("bench/hop", qos=1)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-hop-pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    subscribed.wait(10)
    out = []
    try:
        for _ in range(n):
            got.clear()
            t0 = time.perf_counter()
            pub.publish("bench/hop", os.urandom(200), qos=1)
            if not got.wait(10):
                raise RuntimeError("the reference hop got lost")
            out.append(time.perf_counter() - t0)
    finally:
        for client in (pub, sub):
            client.disconnect()
            client.loop_stop()
    return out


# --- revocation across NODES nodes ------------------------------------------------------------------------

def _revocations(root: Path, broker: MosquittoBroker) -> list[float]:
    secret = os.urandom(32)
    machines = [f"node-{i}" for i in range(NODES)]
    nodes = [_node(root, m, broker, secret) for m in machines]
    for node in nodes:
        node.start(timeout=60)
    try:
        with _directory(nodes[0].state_dir, secret, broker_user(LAB, machines[0])) as d:
            _enrol(d, REVOCATIONS, machines, NODES, datetime.now(UTC))
            digest = d.digest()
        _converged(nodes, digest)
        out = []
        for i in range(REVOCATIONS):
            source, target = i % NODES, (i % NODES + 1 + (i // NODES) % (NODES - 1)) % NODES
            badge = access.badge_hash(secret, _uid(i))
            t0 = time.perf_counter()
            with _directory(nodes[source].state_dir, secret, broker_user(LAB, machines[source])) as d:
                directory_members.revoke_training(d, f"Member {i:05d}", machines[target],
                                                  now=datetime.now(UTC))  # fmt: skip
            _wait(lambda b=badge, t=target: _refused_on(nodes[t], b, machines[t]), 30, "the refusal",
                  every=POLL_S)  # fmt: skip
            out.append(time.perf_counter() - t0)
            reply = nodes[target].tap(_uid(i))
            if reply.get("ok") or machines[target] not in str(reply.get("reason")):
                raise RuntimeError(f"the tap on {machines[target]} was not refused as revoked: {reply}")
        return out
    finally:
        for conn in _READERS.values():
            conn.close()
        _READERS.clear()
        for node in nodes:
            node.stop()


# --- a large directory: snapshot and a late node ----------------------------------------------------------

def _late_node(root: Path, broker: MosquittoBroker, members: int) -> dict[str, float]:
    """Snapshot bytes of a directory of `members`, and how long a new node takes to hold it all."""
    secret = os.urandom(32)
    machines = [f"machine-{i:02d}" for i in range(MACHINES)]
    first = _node(root, "node-a", broker, secret).start(timeout=60)
    late = _node(root, "node-late", broker, secret)
    try:
        with _directory(first.state_dir, secret, broker_user(LAB, "node-a")) as d:
            _enrol(d, members, machines, TRAININGS_EACH, datetime.now(UTC))
            entries = d.entries()
        plain = sum(len(e.to_json()) for e in entries)
        snapshot = _wait(lambda: _snapshot_published(first), 600, "the whole directory's snapshot", every=0.2)
        digest = snapshot["digest"]
        t_spawn = time.perf_counter()
        late.start(timeout=60)
        t_ready = time.perf_counter()
        _wait(lambda: _digest(late) == digest, 300, "the late node to hold the directory", every=0.02)
        t_done = time.perf_counter()
        return {"entries": len(entries), "plain": plain, "bytes": snapshot["snapshot_bytes"],
                "parts": snapshot["snapshot_parts"], "from_start": t_done - t_spawn,
                "from_ready": t_done - t_ready}  # fmt: skip
    finally:
        for node in (late, first):
            if node.proc is not None:
                node.stop()


def _snapshot_published(node: Node) -> dict[str, Any] | None:
    """The node's directory figures once its snapshot holds its whole directory and it published all."""
    d = dict(node.status()["directory"])
    return d if d["snapshot_digest"] == d["digest"] and d["unpublished"] == 0 else None


# --- tap -> relay with a large directory --------------------------------------------------------------------

def _tap_to_relay(folder: Path, members: int) -> list[float]:
    config = simulated_config(None, "marlin", folder)
    parts = build_parts(config, folder, sim_speed=1000)
    daemon = Daemon(config, parts, folder)
    secret = access.load_secret(secret_file_path(folder))
    machine = config.node.machine
    machines = [machine] + [f"machine-{i:02d}" for i in range(MACHINES - 1)]
    now = datetime.now(UTC)
    with _directory(folder, secret, broker_user(config.node.lab, machine)) as d:
        _enrol(d, members - 1, machines[1:], TRAININGS_EACH, now)
        directory_members.add_member(d, secret, "Alice", TAPPER_UID, now=now)
        directory_members.grant_training(d, "Alice", machine, now=now)
    thread = threading.Thread(target=daemon.run, name="controller")
    thread.start()
    try:
        daemon.ready.wait(30)
        _wait_for_hotend(daemon)
        return [_one_tap(daemon, parts) for _ in range(TAPS)]
    finally:
        daemon.stop()
        thread.join(30)


def run() -> list[tuple[str, str, str]]:
    """Rows (benchmark, result, reference/ratio)."""
    if mosquitto_binary() is None:
        return [("directory", "skipped", "no mosquitto binary (apt install mosquitto)")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with _broker(root / "broker-revoke") as broker:
            hops = _mqtt_hops(broker, REVOCATIONS)
            revoked = _revocations(root / "revoke", broker)
        print("revoke -> refused, sorted (ms):", [round(t * 1e3) for t in sorted(revoked)], file=sys.stderr)
        with _broker(root / "broker-small") as broker:
            small = _late_node(root / "small", broker, SMALL_MEMBERS)
        with _broker(root / "broker-big") as broker:  # no sessions of stopped nodes queueing for them
            big = _late_node(root / "big", broker, BIG_MEMBERS)
        taps_small = _tap_to_relay(root / "taps-small", SMALL_MEMBERS)
        taps_big = _tap_to_relay(root / "taps-big", BIG_MEMBERS)
    hop50, hop99 = statistics.median(hops), _pct(hops, 0.99)
    r50, r99 = statistics.median(revoked), _pct(revoked, 0.99)
    s99, b99 = _pct(taps_small, 0.99), _pct(taps_big, 0.99)
    across = f"({REVOCATIONS}, {NODES} nodes)"
    return [
        (f"directory: revoke -> refused on another node p50 {across}", f"{r50 * 1e3:.0f} ms",
         f"MQTT QoS 1 hop p50 {hop50 * 1e3:.2f} ms"),
        (f"directory: revoke -> refused on another node p99 {across}", f"{r99 * 1e3:.0f} ms",
         f"MQTT QoS 1 hop p99 {hop99 * 1e3:.2f} ms (goal < 2000 ms)"),
        (f"directory: snapshot of {BIG_MEMBERS} members x {MACHINES} machines",
         f"{big['bytes'] / 1024:.0f} KiB ({big['parts']:.0f} parts, {big['entries']:.0f} entries)",
         f"entries as plain JSON {big['plain'] / 1024:.0f} KiB: x{big['bytes'] / big['plain']:.2f}"),
        (f"directory: new node holds {BIG_MEMBERS} members",
         f"{big['from_ready']:.2f} s after its socket answers ({big['from_start']:.2f} s from start)",
         f"{SMALL_MEMBERS} members {small['from_ready']:.2f} s ({small['from_start']:.2f} s)"),
        (f"directory: tap -> relay p99 with {BIG_MEMBERS} members ({TAPS} taps)", f"{b99 * 1e3:.2f} ms",
         f"{SMALL_MEMBERS} members {s99 * 1e3:.2f} ms: {abs(b99 - s99) * 1e3:.2f} ms apart "
         "(goal < 10 ms apart, < 50 ms)"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print("  ".join(row))
