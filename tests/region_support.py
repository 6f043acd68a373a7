"""Helpers for the region's tests and benchmark (not tests): PostgreSQL test databases, node usage logs
with a realistic day of records, a tiny outbox publisher, and the collector run in a thread or a process.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fabnode.envelope import build_envelope, encode_envelope, topic
from fabnode.records import members as access
from fabnode.records.usage import JobRates, UsageLog
from fabnode.region.collector import Collector, CollectorConfig
from fabnode.region.store import RegionStore

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = b"region-test-secret-32-bytes-long"
DAY = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # a Monday
_pg_problem: list[str] = []


def postgres_problem() -> str | None:
    """Why PostgreSQL at 127.0.0.1:5432 cannot be used (None when it can); asked once per run."""
    if not _pg_problem:
        try:
            import psycopg

            with psycopg.connect(PG_ADMIN, connect_timeout=3):
                _pg_problem.append("")
        except Exception as exc:
            _pg_problem.append(f"no PostgreSQL server at 127.0.0.1:5432 (user postgres, trust): {exc}")
    return _pg_problem[0] or None


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database `fabnode_test_<random>` (its URL), dropped afterwards; skips without a server."""
    problem = postgres_problem()
    if problem:
        pytest.skip(problem)
    import psycopg

    name = f"fabnode_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def region_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a region store goes: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "region.db")
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def pg_target() -> Iterator[str]:
    """A fresh PostgreSQL database URL (skips without a server)."""
    with postgres_database() as url:
        yield url


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll `predicate` until it returns something true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(every)


# --- nodes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One simulated node: its lab, machine and usage log folder."""

    lab: str
    machine: str
    state_dir: Path

    @property
    def db_path(self) -> Path:
        """The usage log (as `fabnode usage --state-dir` finds it)."""
        return self.state_dir / "usage.db"

    def open(self) -> UsageLog:
        """Open the node's usage log."""
        return UsageLog.open(self.db_path)


def make_node(root: Path, lab: str, machine: str, seed: int, days: int = 1, laser: bool = False) -> Node:
    """A node whose usage log holds `days` of realistic records: every job outcome, access, faults, states."""
    node = Node(lab, machine, root / f"{lab}-{machine}")
    with node.open() as log:
        for i in range(4):
            access.add_member(log.db, SECRET, f"member {lab} {i}", f"04{seed:02x}{i:06x}", now=DAY)
    for day in range(days):
        add_day(node, seed * 100 + day, day)
    power_cut(node, days)
    return node


def _members(log: UsageLog) -> list[int]:
    return [int(r[0]) for r in log.db.execute("SELECT id FROM members ORDER BY id").fetchall()]


def add_day(node: Node, seed: int, day: int) -> None:
    """A day of use (day N starts N x 3 days after DAY): five sessions with a job each, taps, a fault."""
    with node.open() as log:
        _one_day(log, node, _members(log), random.Random(seed), DAY + timedelta(days=day * 3))


def power_cut(node: Node, day: int) -> None:
    """A job left running when the power went, recovered at start-up as interrupted."""
    t = DAY + timedelta(days=day * 3, hours=1)
    with node.open() as log:
        who = _members(log)[0]
        session = log.open_session(who, node.machine, t)
        log.start_job(session, who, node.machine, "x.gcode", t, rates=_rates("laser" in node.machine))
        log.recover(t + timedelta(hours=2))


def _rates(laser: bool) -> JobRates:
    if laser:
        return JobRates(price_per_laser_hour=12.0)
    return JobRates(grams_per_mm=0.002981, price_per_kg=25.0)


def _one_day(log: UsageLog, node: Node, members: list[int], rng: random.Random, start: datetime) -> None:
    t = start
    laser = "laser" in node.machine
    for status in ("completed", "completed", "cancelled", "failed", "completed"):
        who = rng.choice(members)
        log.record_access("b" * 64, node.machine, who, True, "trained", t)
        log.enqueue_state("unlocked", t)
        session = log.open_session(who, node.machine, t)
        t += timedelta(minutes=rng.randint(1, 5))
        job = log.start_job(session, who, node.machine, "part.gcode", t, rates=_rates(laser))
        running = rng.uniform(300, 5400)
        t += timedelta(seconds=running)
        log.finish_job(job, status, "done" if status == "completed" else status, t, running_s=running,
                       filament_mm=0.0 if laser else rng.uniform(200, 20000),
                       laser_on_s=running * 0.7 if laser else 0.0)  # fmt: skip
        t += timedelta(minutes=rng.randint(1, 20))
        log.close_session(session, t, "badge", duration_s=(t - start).total_seconds() % 7200 + 60)
        start = t
    log.record_access("c" * 64, node.machine, None, False, "unknown badge", t)
    log.record_fault("estop", "e-stop pressed", node.machine, t)


def outbox_messages(node: Node, prefix: str = "fablab") -> list[tuple[str, bytes, int]]:
    """The node's whole outbox as (topic, payload, seq), built like the node's publisher builds them."""
    out = []
    with node.open() as log:
        for msg in log.pending_outbox(limit=1_000_000):
            env = build_envelope(kind=msg.kind, msg_id=msg.msg_id, lab=node.lab, machine=node.machine,
                                 seq=msg.seq, data=msg.payload, sent_at=datetime.now(UTC),
                                 created=msg.created)  # fmt: skip
            out.append((topic(prefix, node.lab, node.machine, env.topic_kind), encode_envelope(env), msg.seq))
    return out


# --- MQTT -------------------------------------------------------------------------------------


class RawPublisher:
    """A bare paho client that publishes at QoS 1 and waits for the broker's PUBACKs."""

    def __init__(self, host: str, port: int, client_id: str | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex,
                                  protocol=mqtt.MQTTv311)  # fmt: skip
        self._acked: set[int] = set()
        self._cond = threading.Condition()
        self.client.on_publish = self._on_publish
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._cond:
            self._acked.add(mid)
            self._cond.notify_all()

    def publish(self, items: list[tuple[str, bytes]], timeout: float = 20.0, retain: bool = False) -> None:
        """Publish each (topic, payload) and wait until the broker acknowledged all of them."""
        mids = [self.client.publish(t, p, qos=1, retain=retain).mid for t, p in items]
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._acked.issuperset(mids):
                left = deadline - time.monotonic()
                assert left > 0, f"broker did not acknowledge {len(set(mids) - self._acked)} messages"
                self._cond.wait(left)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def read_retained(host: str, port: int, topic_name: str, timeout: float = 5.0) -> bytes | None:
    """The retained message on `topic_name` (None if there is none within `timeout`)."""
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex)

    def on_connect(c: Any, *_a: Any) -> None:
        c.subscribe(topic_name, qos=1)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got.append(bytes(msg.payload))
            done.set()

    client.on_connect, client.on_message = on_connect, on_message
    client.connect(host, port)
    client.loop_start()
    done.wait(timeout)
    client.disconnect()
    client.loop_stop()
    return got[-1] if got else None


class CollectorThread:
    """The collector in a thread of the test process, with its own store connection."""

    def __init__(self, target: str, broker_url: str, **config: Any) -> None:
        self.store = RegionStore.open(target)
        self.collector = Collector(self.store, CollectorConfig(broker=broker_url, **config))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.collector.run, args=(self._stop,), daemon=True)

    def start(self, timeout: float = 10.0) -> CollectorThread:
        """Connect, start storing, and wait until the broker granted the subscription."""
        self.collector.start()
        self._thread.start()
        assert self.collector.stats.subscribed.wait(timeout), "the collector did not subscribe"
        return self

    def stop(self) -> None:
        """Finish the batch in hand, disconnect, close the store."""
        self._stop.set()
        self._thread.join(10)
        self.collector.close()
        self.store.close()


def collect_command() -> list[str]:
    """`python -m fabnode collect`, or the region CLI module itself until the main app lists `collect`."""
    from fabnode.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    if "collect" in names:
        return [sys.executable, "-m", "fabnode", "collect"]
    return [sys.executable, "-m", "fabnode.cli.region", "collect"]


def start_collector_process(
    broker_url: str, db: str, client_id: str, log_path: Path, group: str | None = None, in_flight: int = 200
) -> subprocess.Popen[bytes]:
    """`fabnode collect` as a child process (its output in `log_path`)."""
    args = [*collect_command(), "--broker", broker_url, "--db", db, "--client-id", client_id,
            "--in-flight", str(in_flight)]  # fmt: skip
    if group:
        args += ["--group", group]
    with log_path.open("ab") as out:
        return subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def cli_app() -> Any:
    """The `fabnode` app if it lists `region`, else the region CLI's own app (same verbs)."""
    from fabnode.cli import app
    from fabnode.cli.region import standalone_app

    if any(g.name == "region" for g in app.registered_groups):
        return app
    return standalone_app()


def _usage_json(node: Node, *args: str) -> Any:
    import json

    from typer.testing import CliRunner

    from fabnode.cli import app

    result = CliRunner().invoke(app, ["usage", *args, "--format", "json", "--state-dir", str(node.state_dir)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def node_figures(node: Node) -> dict[str, Any]:
    """What the node itself reports (`fabnode usage`, `usage sessions`, `usage summary --by machine`)."""
    from collections import Counter

    (summary,) = _usage_json(node, "summary", "--by", "machine")["rows"]
    sessions = _usage_json(node, "sessions")
    jobs = _usage_json(node, "--since", "2000-01-01")
    with node.open() as log:
        (members,) = log.db.execute(
            "SELECT count(DISTINCT member_id) FROM "
            "(SELECT member_id FROM jobs UNION SELECT member_id FROM sessions)"
        ).fetchone()
    return {"jobs": summary["jobs"], "job_hours": summary["hours"], "filament_g": summary["filament_g"],
            "laser_hours": summary["laser_hours"], "cost": summary["cost"],
            "outcomes": dict(Counter(j["status"] for j in jobs)), "sessions": len(sessions),
            "hours": sum(s["duration_s"] or 0.0 for s in sessions) / 3600.0, "members": members}  # fmt: skip


def assert_report_matches_nodes(report: dict[str, Any], nodes: list[Node]) -> None:
    """The region's report equals each node's own figures, machine by machine, and their sum."""
    by_node = {(m["lab"], m["machine"]): m for m in report["machines"]}
    assert set(by_node) == {(n.lab, n.machine) for n in nodes}
    sums: dict[str, float] = {}
    for node in nodes:
        mine, region = node_figures(node), by_node[(node.lab, node.machine)]
        assert {k: v for k, v in region["outcomes"].items() if v} == mine["outcomes"], node
        for key in ("jobs", "sessions", "members"):
            assert region[key] == mine[key], (node, key)
        for key, theirs, tolerance in (("job_hours", "job_hours", 1e-3), ("laser_hours", "laser_hours", 1e-3),
                                       ("cost", "cost", 0.011), ("hours", "hours", 1e-3)):  # fmt: skip
            assert region[key] == pytest.approx(mine[theirs], abs=tolerance), (node, key)
        assert region["filament_kg"] * 1000 == pytest.approx(mine["filament_g"], abs=0.01), node
        for key in ("jobs", "sessions", "hours", "job_hours", "laser_hours"):
            sums[key] = sums.get(key, 0) + mine[key]
        sums["filament_kg"] = sums.get("filament_kg", 0) + mine["filament_g"] / 1000
    totals = report["totals"]
    for key, value in sums.items():
        assert totals[key] == pytest.approx(value, abs=1e-3), key


def synthetic_stream(lab: str, machine: str, count: int, prefix: str = "fablab") -> list[tuple[str, bytes]]:
    """`count` fault records of one node with seqs 1..count, as (topic, payload): cheap load."""
    sent = datetime.now(UTC)
    out = []
    for seq in range(1, count + 1):
        env = build_envelope(kind="fault", msg_id=uuid.uuid4().hex, lab=lab, machine=machine, seq=seq,
                             data={"time": "2025-03-03T10:00:00Z", "machine": machine, "kind": "estop",
                                   "detail": f"fault {seq}"}, sent_at=sent)  # fmt: skip
        out.append((topic(prefix, lab, machine, "event"), encode_envelope(env)))
    return out
