"""Benchmark of the region's collector, against a bare subscriber measured in the same run.

1. Ingest: N messages wait in a real mosquitto for a persistent session; time until the collector has
   stored (committed) them all, on SQLite and on PostgreSQL, beside a bare paho subscriber with the same
   session settings that only counts and acknowledges.
2. Many nodes: 200 simulated nodes (one MQTT connection each) publish a day of sessions and jobs at once
   through one broker to two `fabnode collect` processes sharing the subscription into one PostgreSQL;
   the report's totals are checked against what the nodes sent.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fabnode.envelope import build_envelope, encode_envelope, topic
from fabnode.region.collector import Collector, CollectorConfig
from fabnode.region.report import build_report
from fabnode.region.store import RegionStore
from tests.mqtt_broker import MosquittoBroker, mosquitto_binary
from tests.region_support import RawPublisher, postgres_database, postgres_problem, start_collector_process

INGEST_NODES, INGEST_EACH = 20, 300  # 6,000 messages
MANY_NODES, JOBS_EACH = 200, 5  # 4 messages per job: 4,000 messages
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def _fault_stream(nodes: int, each: int) -> list[tuple[str, bytes]]:
    sent, out = datetime.now(UTC), []
    for seq in range(1, each + 1):
        for n in range(nodes):
            env = build_envelope(kind="fault", msg_id=uuid.uuid4().hex, lab="bench", machine=f"m{n}", seq=seq,
                                 data={"time": "2025-03-03T10:00:00Z", "machine": f"m{n}", "kind": "estop",
                                       "detail": "bench"}, sent_at=sent)  # fmt: skip
            out.append((topic("fablab", "bench", f"m{n}", "event"), encode_envelope(env)))
    return out


def _connect_props(receive_maximum: int = 200) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = receive_maximum
    return props


def _bare_drain(broker: MosquittoBroker, items: list[tuple[str, bytes]]) -> float:
    """Seconds a bare subscriber (count and PUBACK, nothing else) takes to drain `items` from its queue."""
    done, got = threading.Event(), [0]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare", protocol=mqtt.MQTTv5)

    def on_message(_c: Any, _u: Any, _m: mqtt.MQTTMessage) -> None:
        got[0] += 1
        if got[0] >= len(items):
            done.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port, clean_start=False, properties=_connect_props())
    client.subscribe("fablab/v1/+/+/+", qos=1)
    client.loop_start()
    time.sleep(0.3)  # let the SUBACK arrive before going away (no event to wait on after loop_stop)
    client.disconnect()
    client.loop_stop()
    _publish(broker, items)
    start = time.perf_counter()
    client.connect(broker.host, broker.port, clean_start=False, properties=_connect_props())
    client.loop_start()
    assert done.wait(120), f"bare subscriber got {got[0]} of {len(items)}"
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


def _publish(broker: MosquittoBroker, items: list[tuple[str, bytes]]) -> None:
    pub = RawPublisher(broker.host, broker.port)
    for start in range(0, len(items), 500):
        pub.publish(items[start : start + 500], timeout=60)
    pub.close()


def _collector_drain(broker: MosquittoBroker, target: str, items: list[tuple[str, bytes]]) -> float:
    """Seconds the collector takes to store (commit) and acknowledge `items` waiting for its session."""
    config = CollectorConfig(broker=broker.url, client_id=f"bench-{uuid.uuid4().hex[:8]}")
    with RegionStore.open(target) as store:
        first = Collector(store, config)
        first.start()
        assert first.stats.subscribed.wait(10)
        first.close()
        _publish(broker, items)
        collector = Collector(store, config)
        start = time.perf_counter()
        collector.start()
        deadline = time.monotonic() + 300
        while collector.stats.stored < len(items) and time.monotonic() < deadline:
            collector.run_once(timeout=0.5)
        elapsed = time.perf_counter() - start
        collector.close()
        assert collector.stats.stored == len(items), f"stored {collector.stats.stored} of {len(items)}"
    return elapsed


def _ingest_rows(workdir: Path) -> list[tuple[str, str, str]]:
    items = _fault_stream(INGEST_NODES, INGEST_EACH)
    n = len(items)
    rows = []
    with MosquittoBroker(workdir / "broker", max_queued_messages=0) as broker:
        bare = _bare_drain(broker, items)
        rows.append((f"bare subscriber, {n} msgs queued", f"{n / bare:,.0f} msg/s", "reference"))
        fresh = _fault_stream(INGEST_NODES, INGEST_EACH)  # new ids: the store must not take them as resent
        sqlite_s = _collector_drain(broker, str(workdir / "region.db"), fresh)
        rows.append(("collector ingest, SQLite (fsync per batch)", f"{n / sqlite_s:,.0f} msg/s",
                     f"{bare / sqlite_s:.2f} x bare subscriber"))  # fmt: skip
        problem = postgres_problem()
        if problem:
            rows.append(("collector ingest, PostgreSQL", "skipped", problem[:60]))
            return rows
        with postgres_database() as url:
            pg_s = _collector_drain(broker, url, _fault_stream(INGEST_NODES, INGEST_EACH))
        rows.append(("collector ingest, PostgreSQL", f"{n / pg_s:,.0f} msg/s",
                     f"{bare / pg_s:.2f} x bare subscriber"))  # fmt: skip
    return rows


# --- many nodes ---------------------------------------------------------------------------------


def _node_day(n: int, rng: random.Random) -> tuple[list[tuple[str, bytes]], dict[str, float]]:
    lab, machine = f"lab{n % 20}", f"m{n}"
    out, seq, t = [], 0, T0
    sums = {"jobs": 0.0, "sessions": 0.0, "job_hours": 0.0, "filament_kg": 0.0, "hours": 0.0}
    member = f"{rng.getrandbits(256):064x}"

    def send(kind: str, data: dict[str, Any], when: datetime) -> None:
        nonlocal seq
        seq += 1
        env = build_envelope(kind=kind, msg_id=uuid.uuid4().hex, lab=lab, machine=machine, seq=seq, data=data,
                             sent_at=datetime.now(UTC), occurred_at=when)  # fmt: skip
        out.append((topic("fablab", lab, machine, env.topic_kind), encode_envelope(env)))

    for i in range(1, JOBS_EACH + 1):
        running, grams = rng.uniform(600, 7200), rng.uniform(5, 200)
        end = t + timedelta(seconds=running + 120)
        session = {"session_id": i, "machine": machine, "member_hash": member, "started": _iso(t),
                   "ended": None, "end_reason": None, "maintenance": False, "duration_s": None}  # fmt: skip
        job = {"job_id": i, "session_id": i, "machine": machine, "member_hash": member, "file_sha256": None,
               "lines_total": 1000, "started": _iso(t), "ended": None, "checkpoint_at": None,
               "status": "in_progress", "reason": None, "material": "PLA", "running_s": 0.0, "paused_s": 0.0,
               "filament_mm": 0.0, "filament_g": None, "laser_on_s": 0.0, "cost": None,
               "last_line_acked": 0}  # fmt: skip
        send("session_started", session, t)
        send("job_started", job, t)
        send("job_ended", {**job, "ended": _iso(end), "status": "completed", "running_s": running,
                           "filament_g": grams, "last_line_acked": 1000}, end)  # fmt: skip
        send("session_ended", {**session, "ended": _iso(end), "end_reason": "badge",
                               "duration_s": running + 120}, end)  # fmt: skip
        sums["jobs"] += 1
        sums["sessions"] += 1
        sums["job_hours"] += running / 3600
        sums["hours"] += (running + 120) / 3600
        sums["filament_kg"] += grams / 1000
        t = end + timedelta(minutes=30)
    return out, sums


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_client(broker: MosquittoBroker, n: int, items: list[tuple[str, bytes]], errors: list[str]) -> None:
    try:
        pub = RawPublisher(broker.host, broker.port, client_id=f"fabnode-node-{n}")
        pub.publish(items, timeout=120)
        pub.close()
    except Exception as exc:
        errors.append(f"node {n}: {exc}")


def _many_nodes_rows(workdir: Path) -> list[tuple[str, str, str]]:
    problem = postgres_problem()
    if problem:
        return [(f"{MANY_NODES} nodes -> 2 collectors -> PostgreSQL", "skipped", problem[:60])]
    rng = random.Random(1)
    days = [_node_day(n, rng) for n in range(MANY_NODES)]
    expected = {k: sum(d[1][k] for d in days) for k in days[0][1]}
    total = sum(len(d[0]) for d in days)
    many = MosquittoBroker(workdir / "broker-many", max_queued_messages=0)
    with many as broker, postgres_database() as url:
        RegionStore.open(url).close()
        logs = [workdir / f"collector-{c}.log" for c in "ab"]
        procs = [start_collector_process(broker.url, url, f"bench-{c}", log, group="bench")
                 for c, log in zip("ab", logs, strict=True)]  # fmt: skip
        try:
            _wait(lambda: all(log.exists() and "subscribed to" in log.read_text() for log in logs), 20)
            errors: list[str] = []
            threads = [threading.Thread(target=_node_client, args=(broker, n, d[0], errors))
                       for n, d in enumerate(days)]  # fmt: skip
            start = time.perf_counter()
            for th in threads:
                th.start()
            with RegionStore.open(url) as store:
                _wait(lambda: store.count("messages") >= total, 180)
                elapsed = time.perf_counter() - start
                report = build_report(store)
            for th in threads:
                th.join(30)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    totals = report.totals()
    diffs = {k: (round(totals[k], 4), round(v, 4)) for k, v in expected.items() if abs(totals[k] - v) > 1e-3}
    ok = not diffs and not errors and totals["gaps"] == 0
    verdict = "totals match" if ok else f"DIFF {json.dumps(diffs)} gaps {totals['gaps']} errors {errors[:3]}"
    return [(f"{MANY_NODES} nodes -> 2 collectors ($share) -> PostgreSQL",
             f"{total / elapsed:,.0f} msg/s ({total} msgs in {elapsed:.1f} s)", verdict)]  # fmt: skip


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: condition not met within {timeout}s")
        time.sleep(0.05)


def run() -> list[tuple[str, str, str]]:
    """Ingest rates beside a bare subscriber, then 200 nodes into two collectors sharing PostgreSQL."""
    if mosquitto_binary() is None:
        return [("region collector", "skipped", "no mosquitto binary")]
    with tempfile.TemporaryDirectory(prefix="fabnode-bench-region-") as tmp:
        workdir = Path(tmp)
        return _ingest_rows(workdir) + _many_nodes_rows(workdir)


if __name__ == "__main__":
    for row in run():
        print("  ".join(row))
