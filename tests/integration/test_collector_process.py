"""`fabnode collect` as a real process: SIGKILLed mid-stream and restarted (its persistent session keeps
what arrived meanwhile), and two collectors sharing one subscription into one PostgreSQL."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fabnode.region.store import RegionStore
from tests.mqtt_broker import MosquittoBroker
from tests.region_support import RawPublisher, pg_target, start_collector_process, synthetic_stream, wait_for  # noqa: F401

pytestmark = pytest.mark.broker


def stored(target: str) -> int:
    with RegionStore.open(target) as store:
        return store.count("messages")


def subscribed(log: Path, times: int = 1) -> bool:
    return log.exists() and log.read_text().count("subscribed to") >= times


@contextlib.contextmanager
def collectors() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def stream_in_background(broker: MosquittoBroker, items: list[tuple[str, bytes]]) -> threading.Thread:
    def run() -> None:
        pub = RawPublisher(broker.host, broker.port)
        try:
            for start in range(0, len(items), 50):
                pub.publish(items[start : start + 50], timeout=20)
        finally:
            pub.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class StagedSender:
    """Publishes its stages in order from a thread, each stage only once the test has let it go, so a
    test can stop a collector knowing which records are not yet published."""

    def __init__(self, broker: MosquittoBroker, stages: list[list[tuple[str, bytes]]]) -> None:
        self.broker, self.stages = broker, stages
        self.allowed = [threading.Event() for _ in stages]
        self.done = [threading.Event() for _ in stages]
        self.allowed[0].set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pub = RawPublisher(self.broker.host, self.broker.port)
        try:
            for stage, allowed, done in zip(self.stages, self.allowed, self.done, strict=True):
                if not allowed.wait(30):
                    return
                for start in range(0, len(stage), 50):
                    pub.publish(stage[start : start + 50], timeout=20)
                done.set()  # the broker has acknowledged every record of the stage
        finally:
            pub.close()

    def publish(self, stage: int, timeout: float = 20.0) -> None:
        """Let stage `stage` go and wait until the broker holds all of it."""
        self.allowed[stage].set()
        assert self.done[stage].wait(timeout), f"stage {stage} not published within {timeout} s"


def check_every_record_once(target: str, nodes: dict[str, int]) -> None:
    with RegionStore.open(target) as store:
        for machine, count in nodes.items():
            seqs = store.query("SELECT seq FROM messages WHERE machine = ? ORDER BY seq", [machine])
            assert [s for (s,) in seqs] == list(range(1, count + 1)), machine
        assert {(a.machine, a.seq) for a in store.acks()} == set(nodes.items())
        assert store.count("rejected") == 0


@pytest.mark.timeout(60)
def test_a_collector_killed_mid_stream_and_restarted_loses_nothing_and_doubles_nothing(
    mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path
) -> None:
    broker = mosquitto_factory(max_queued_messages=0)
    db, log = str(tmp_path / "region.db"), tmp_path / "collector.log"
    nodes = {f"m{i}": 400 for i in range(3)}
    items = [m for machine, n in nodes.items() for m in synthetic_stream("north", machine, n)]
    items = [items[i] for i in sorted(range(len(items)), key=lambda i: (i % 400, i))]  # nodes interleaved
    with collectors() as procs:
        # Small batches (10 in flight): many commits, so a kill lands between a commit and its PUBACKs.
        procs.append(start_collector_process(broker.url, db, "region-1", log, in_flight=10))
        wait_for(lambda: subscribed(log), 15, "the collector to subscribe")
        # Three stages, each later one published only while the collector is dead, so a kill never comes
        # after everything is stored (a fast collector stored all 1200 before the SIGKILL landed).
        sender = StagedSender(broker, [items[:600], items[600:1000], items[1000:]])
        # Killed twice: mid-stream (stage 0 still arriving), then while catching up on stage 1.
        for stage, threshold in ((1, 200), (2, 700)):
            wait_for(lambda threshold=threshold: stored(db) >= threshold, 15, f"{threshold} records stored")
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(5)
            assert stored(db) < len(items)  # the rest waits in the broker for our session
            sender.publish(stage)  # published while no collector runs: the broker keeps it for the session
            procs.append(start_collector_process(broker.url, db, "region-1", log, in_flight=10))
        sender.thread.join(20)
        assert not sender.thread.is_alive()
        wait_for(lambda: stored(db) == len(items), 20, f"all {len(items)} records stored")
    check_every_record_once(db, nodes)


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_two_collectors_sharing_the_subscription_store_every_record_once_when_one_is_killed(
    mosquitto_factory: Callable[..., MosquittoBroker],
    pg_target: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    broker = mosquitto_factory(max_queued_messages=0)
    logs = [tmp_path / "collector-a.log", tmp_path / "collector-b.log"]
    nodes = {f"m{i}": 300 for i in range(5)}
    items = [m for machine, n in nodes.items() for m in synthetic_stream("north", machine, n)]
    items = [items[i] for i in sorted(range(len(items)), key=lambda i: (i % 300, i))]
    RegionStore.open(pg_target).close()
    with collectors() as procs:
        for name, log in zip("ab", logs, strict=True):
            proc = start_collector_process(broker.url, pg_target, f"region-{name}", log, group="region")
            procs.append(proc)
        for log in logs:
            wait_for(lambda log=log: subscribed(log), 15, f"{log.name} to subscribe")
        sender = stream_in_background(broker, items)
        wait_for(lambda: stored(pg_target) >= 300, 15, "300 records stored")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(5)
        sender.join(20)
        assert not sender.is_alive()
        procs.append(start_collector_process(broker.url, pg_target, "region-a", logs[0], group="region"))
        wait_for(lambda: stored(pg_target) == len(items), 20, f"all {len(items)} records stored")
    check_every_record_once(pg_target, nodes)
