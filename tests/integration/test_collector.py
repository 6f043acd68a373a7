"""The collector against a real mosquitto: nodes' records stored once, acked end to end, bad input set
aside, the broker going away during a day of jobs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabnode.envelope import parse_ack
from fabnode.region.store import RegionStore
from fabnode.telemetry.publisher import TelemetryPublisher, TelemetrySettings
from tests.mqtt_broker import MosquittoBroker
from tests.region_support import (  # noqa: F401  (region_target is a fixture)
    CollectorThread,
    Node,
    RawPublisher,
    add_day,
    assert_report_matches_nodes,
    cli_app,
    make_node,
    power_cut,
    read_retained,
    region_target,
    synthetic_stream,
    wait_for,
)

pytestmark = pytest.mark.broker
ACK = "fablab/region/v1/north/mini-1/ack"


def count(target: str, sql: str) -> int:
    with RegionStore.open(target) as store:
        return int(store.query(sql)[0][0])


def report_json(target: str) -> dict:
    result = CliRunner().invoke(cli_app(), ["region", "report", "--db", target, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def publisher(node: Node, broker: MosquittoBroker, **options) -> TelemetryPublisher:
    settings = TelemetrySettings(broker.url, node.lab, node.machine, reconnect_max_s=1.0, **options)
    return TelemetryPublisher(node.open(), settings)


def last_seq(node: Node) -> int:
    with node.open() as log:
        return log.last_outbox_seq()


def outbox_ids(node: Node) -> set[str]:
    with node.open() as log:
        return {r[0] for r in log.db.execute("SELECT msg_id FROM outbox").fetchall()}


def stored_ids(target: str, node: Node) -> set[str]:
    with RegionStore.open(target) as store:
        rows = store.query("SELECT id FROM messages WHERE lab = ? AND machine = ? AND kind <> 'status'",
                           [node.lab, node.machine])  # fmt: skip
    return {r[0] for r in rows}


@pytest.mark.timeout(60)
def test_every_nodes_records_are_stored_once_and_the_report_equals_the_nodes(
    region_target: str,  # noqa: F811
    mosquitto: MosquittoBroker,
    tmp_path: Path,
) -> None:
    nodes = [make_node(tmp_path, "north", "mini-1", 1, days=2), make_node(tmp_path, "north", "laser-1", 2),
             make_node(tmp_path, "south", "mk4", 3, days=2)]  # fmt: skip
    collector = CollectorThread(region_target, mosquitto.url, client_id="region-test").start()
    publishers = [publisher(n, mosquitto) for n in nodes]
    try:
        for p in publishers:
            p.start()
        for node, p in zip(nodes, publishers, strict=True):
            assert p.wait_acked(last_seq(node), 20), f"{node} never acknowledged end to end: {p.status()}"
    finally:
        for p in publishers:
            p.stop()
        collector.stop()
    for node in nodes:
        assert stored_ids(region_target, node) == outbox_ids(node)
    assert_report_matches_nodes(report_json(region_target), nodes)
    ack = parse_ack(read_retained(mosquitto.host, mosquitto.port, "fablab/region/v1/south/mk4/ack") or b"")
    assert ack.seq == last_seq(nodes[2]) and ack.id is not None and ack.stored_at is not None


@pytest.mark.timeout(30)
def test_the_ack_stays_at_the_last_contiguous_seq_and_jumps_when_the_gap_fills(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    target = str(tmp_path / "region.db")
    stream = synthetic_stream("north", "mini-1", 5)
    collector = CollectorThread(target, mosquitto.url, client_id="region-test").start()
    pub = RawPublisher(mosquitto.host, mosquitto.port)
    try:
        pub.publish([stream[0], stream[1], stream[3], stream[4]])
        wait_for(lambda: count(target, "SELECT count(*) FROM messages") == 4, 10, "4 records stored")
        ack = wait_for(lambda: read_retained(mosquitto.host, mosquitto.port, ACK, 1.0), 10, "a retained ack")
        assert json.loads(ack)["seq"] == 2
        pub.publish([stream[2]])

        def acked() -> int:
            return json.loads(read_retained(mosquitto.host, mosquitto.port, ACK, 1.0) or b"{}").get("seq", 0)

        wait_for(lambda: acked() == 5, 10, "the ack to reach 5")
        assert (
            json.loads(read_retained(mosquitto.host, mosquitto.port, ACK) or b"")["id"]
            == json.loads(stream[4][1])["id"]
        )
    finally:
        pub.close()
        collector.stop()


BAD = {
    "invalid JSON": (b'{"schema": "fabnode.event", "version": 1,', "invalid JSON"),
    "unknown version": (None, "unknown version 2 of schema fabnode.event"),
    "missing fields": (None, "missing field 'seq'"),
    "huge payload": (b'{"pad": "' + b"x" * 300_000 + b'"}', "payload too large: 300011 bytes"),
    "binary": (b"\x00\xff\xfe garbage", "invalid JSON"),
}


def _bad_payloads(good: bytes) -> list[tuple[str, bytes]]:
    obj = json.loads(good)
    newer = dict(obj, version=2)
    missing = {k: v for k, v in obj.items() if k != "seq"}
    out = []
    for name, (payload, _reason) in BAD.items():
        if name == "unknown version":
            payload = json.dumps(newer).encode()
        elif name == "missing fields":
            payload = json.dumps(missing).encode()
        out.append(("fablab/v1/north/mini-1/event", payload))
    return out


@pytest.mark.timeout(30)
def test_bad_input_is_set_aside_with_its_reason_and_good_messages_keep_flowing(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    target = str(tmp_path / "region.db")
    stream = synthetic_stream("north", "mini-1", 3)
    collector = CollectorThread(target, mosquitto.url, client_id="region-test").start()
    pub = RawPublisher(mosquitto.host, mosquitto.port)
    try:
        pub.publish([stream[0], *_bad_payloads(stream[1][1]), stream[1]])
        wait_for(lambda: count(target, "SELECT count(*) FROM rejected") == len(BAD), 10, "every reject kept")
        wait_for(lambda: count(target, "SELECT count(*) FROM messages") == 2, 10, "the good ones stored")
        assert collector._thread.is_alive()
        pub.publish([stream[2]])
        wait_for(lambda: count(target, "SELECT count(*) FROM messages") == 3, 10, "the next good one stored")
    finally:
        pub.close()
        collector.stop()
    with RegionStore.open(target) as store:
        rows = store.query("SELECT topic, reason, size, head FROM rejected ORDER BY id")
    for (topic, reason, size, head), (name, (_p, expected)) in zip(rows, BAD.items(), strict=True):
        assert topic == "fablab/v1/north/mini-1/event", name
        assert expected in reason, (name, reason)
        assert len(head) <= 200 and size > 0
    assert rows[3][2] == 300_011
    # The rejects were acknowledged: a collector starting on the same session gets none of them again.
    again = CollectorThread(target, mosquitto.url, client_id="region-test").start()
    try:
        pub = RawPublisher(mosquitto.host, mosquitto.port)
        pub.publish([synthetic_stream("north", "mini-2", 1)[0]])
        wait_for(lambda: count(target, "SELECT count(*) FROM messages") == 4, 10, "a message after restart")
        assert count(target, "SELECT count(*) FROM rejected") == len(BAD)
    finally:
        pub.close()
        again.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("outage", ["stop", "kill"])
def test_broker_away_during_a_day_of_jobs_the_store_ends_with_exactly_the_nodes_records(
    outage: str, mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path
) -> None:
    broker = mosquitto_factory(persistence=True, autosave_interval=1, max_queued_messages=0)
    target = str(tmp_path / "region.db")
    nodes = [make_node(tmp_path, "north", "mini-1", 1, days=0),
             make_node(tmp_path, "south", "laser-1", 2, days=0)]  # fmt: skip
    collector = CollectorThread(target, broker.url, client_id="region-test").start()
    publishers = [publisher(n, broker, resend_after_s=2.0) for n in nodes]
    try:
        for p in publishers:
            p.start()
        for node, p in zip(nodes, publishers, strict=True):
            add_day(node, 10, 1)  # the morning, broker up
            p.wake()
        records = "SELECT count(*) FROM messages WHERE seq IS NOT NULL"
        wait_for(lambda: count(target, records) > 20, 10, "the morning's records")
        broker.kill() if outage == "kill" else broker.stop()
        for node, p in zip(nodes, publishers, strict=True):
            add_day(node, 11, 2)  # the afternoon, broker away
            power_cut(node, 3)
            p.wake()
        broker.start()
        for node, p in zip(nodes, publishers, strict=True):
            assert p.wait_acked(last_seq(node), 25), f"{node} not acknowledged end to end: {p.status()}"
    finally:
        for p in publishers:
            p.stop()
        collector.stop()
    for node in nodes:
        assert stored_ids(target, node) == outbox_ids(node)
    report = report_json(target)
    assert_report_matches_nodes(report, nodes)
    assert report["totals"]["gaps"] == 0
