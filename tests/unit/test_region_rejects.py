"""What the region sets aside: numbers the store cannot hold are invalid envelopes, a rejected record's
seq is acknowledged past and counted, a database that refuses one message loses no other, and a
database that refuses everything loses nothing."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fabnode.envelope import (
    EnvelopeError,
    build_envelope,
    encode_envelope,
    parse_ack,
    parse_envelope,
    topic,
    validate,
)
from fabnode.region.collector import Collector, CollectorConfig, Received
from fabnode.region.report import build_report
from fabnode.region.sql import open_database
from fabnode.region.store import RegionStore, Rejected
from tests.region_support import region_target  # noqa: F401  (a fixture)

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
TOPIC = "fablab/v1/north/mini-1/event"


def fault(seq: int, machine: str = "mini-1", detail: str = "e-stop") -> Any:
    return build_envelope(kind="fault", msg_id=uuid.uuid4().hex, lab="north", machine=machine, seq=seq,
                          data={"time": "2025-03-03T10:00:00Z", "machine": machine, "kind": "estop",
                                "detail": detail}, sent_at=NOW)  # fmt: skip


def session(seq: int, **data: Any) -> bytes:
    body = {"session_id": 1, "machine": "mini-1", "member_hash": None, "started": "2025-03-03T09:00:00Z",
            "ended": None, "end_reason": None, "maintenance": False, "duration_s": None, **data}  # fmt: skip
    env = build_envelope(kind="session_started", msg_id=uuid.uuid4().hex, lab="north", machine="mini-1",
                         seq=seq, data=body, sent_at=NOW)  # fmt: skip
    return json.dumps(env.as_dict()).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (session(2**63), "$.seq: 9223372036854775808 is above 9223372036854775807"),
        (session(1, session_id=2**63), "$.data.session_id: 9223372036854775808 is above"),
        (session(1, duration_s=-1.0), "$.data.duration_s: -1.0 is below 0"),
        (session(1, duration_s=1.5).replace(b"1.5", b"NaN"), "NaN is not a number"),
        (session(1, duration_s=1.5).replace(b"1.5", b"-Infinity"), "-Infinity is not a number"),
        (session(1, duration_s=1.5).replace(b"1.5", b"1e400"), "number 1e400 is out of range"),
    ],
)
def test_numbers_the_store_cannot_hold_are_not_valid_envelopes(payload: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(payload, "fablab/v1/north/mini-1/session")
    assert reason in str(caught.value)


def test_the_validator_counts_no_nan_or_infinity_as_a_number() -> None:
    assert validate(float("nan"), {"type": "number"}) == ["$: expected number, got NaN"]
    assert validate(float("inf"), {"type": ["number", "null"]}) != []
    assert validate(2**63 - 1, {"type": "integer", "maximum": 2**63 - 1}) == []
    with pytest.raises(EnvelopeError, match="from 0 to 9223372036854775807"):
        parse_ack(b'{"seq": 9223372036854775808}')


def test_a_rejected_record_is_acknowledged_past_and_counted(region_target: str) -> None:  # noqa: F811
    with RegionStore.open(region_target) as store:
        bad = Rejected(TOPIC, "NaN is not a number", json.dumps({"seq": 2, "id": "ab" * 16}).encode())
        result = store.store([fault(1), fault(3)], NOW, [bad])
        assert [(a.machine, a.seq, a.msg_id) for a in result.acks] == [("mini-1", 3, result.acks[0].msg_id)]
        assert store.gaps("north", "mini-1") == (0, [])
        assert store.rejected_seqs("north", "mini-1") == [2]
        row = store.query("SELECT lab, machine, seq, msg_id FROM rejected")
        assert row == [("north", "mini-1", 2, "ab" * 16)]
        (mini,) = build_report(store).machines
        assert (mini.rejected, mini.rejected_seqs, mini.gaps, mini.acked_seq) == (1, [(2, 2)], 0, 3)
        store.store([fault(2)], NOW)  # the node's mended record arrives after all: no longer rejected
        assert store.rejected_seqs("north", "mini-1") == []


def test_an_ack_walking_over_a_rejected_seq_names_the_rejected_records_id(region_target: str) -> None:  # noqa: F811
    with RegionStore.open(region_target) as store:
        store.store([fault(1)], NOW)
        second = Rejected(TOPIC, "bad", json.dumps({"seq": 2, "id": "cd" * 16}).encode())
        result = store.store([], NOW, [second])
        assert [(a.seq, a.msg_id) for a in result.acks] == [(2, "cd" * 16)]
        result = store.store([], NOW, [Rejected(TOPIC, "bad", b'{"seq": 3, "id": 7}')])
        assert [(a.seq, a.msg_id) for a in result.acks] == [(3, None)]


def test_whose_record_a_reject_was_is_only_taken_from_what_can_be_trusted() -> None:
    assert Rejected("nope", "x", b'{"seq": 4}').owner() == (None, None, None, None)
    assert Rejected(TOPIC, "x", b"\x00garbage").owner() == ("north", "mini-1", None, None)
    assert Rejected(TOPIC, "x", b'{"seq": 9223372036854775808}').owner()[2] is None
    assert Rejected(TOPIC, "x", b'{"seq": true}').owner()[2] is None
    assert Rejected(TOPIC, "x", b'{"seq": 5, "x": NaN, "id": "ab"}').owner() == ("north", "mini-1", 5, "ab")


def test_a_reason_quoting_a_nul_is_kept(region_target: str) -> None:  # noqa: F811
    with RegionStore.open(region_target) as store:
        store.store([], NOW, [Rejected(TOPIC, "refused \x00 here", b"{}")])
        assert store.query("SELECT reason FROM rejected") == [("refused \\x00 here",)]


def test_a_version_1_store_gains_the_reject_owner_columns(region_target: str) -> None:  # noqa: F811
    db = open_database(region_target)  # what fabnode before schema version 2 created
    for sql in ("CREATE TABLE region_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                "INSERT INTO region_meta VALUES ('schema_version', '1')",
                f"CREATE TABLE rejected (id {db.types['serial']}, received_at TEXT NOT NULL, "
                "topic TEXT NOT NULL, reason TEXT NOT NULL, size INTEGER NOT NULL, head TEXT NOT NULL)",
                "INSERT INTO rejected (received_at, topic, reason, size, head) "
                "VALUES ('then', 't', 'old', 2, '{}')"):  # fmt: skip
        db.execute(sql)
    db.close()
    with RegionStore.open(region_target) as store:
        assert store.query("SELECT value FROM region_meta") == [("2",)]
        assert store.query("SELECT reason, lab, seq FROM rejected") == [("old", None, None)]
        store.store([], NOW, [Rejected(TOPIC, "new", b'{"seq": 1}')])
        assert store.rejected_seqs("north", "mini-1") == [1]


class FlakyStore(RegionStore):
    """A real store that refuses some writes, as a database would."""

    def __init__(self, inner: RegionStore, refuse: Any) -> None:
        super().__init__(inner.db, inner.target)
        self.refuse = refuse

    def store(self, envelopes: Any, now: datetime, rejected: Any = ()) -> Any:
        if self.refuse(list(envelopes), list(rejected)):
            raise sqlite3.OperationalError("refused")
        return super().store(envelopes, now, rejected)


def received(*envelopes: Any) -> list[Received]:
    return [Received(0, n, 1, topic("fablab", e.lab, e.machine, e.topic_kind), encode_envelope(e))
            for n, e in enumerate(envelopes, 1)]  # fmt: skip


def collector_over(store: RegionStore, items: list[Received]) -> Collector:
    collector = Collector(store, CollectorConfig(broker="mqtt://127.0.0.1:1"))
    for item in items:
        collector._inbox.put(item)
    return collector


def test_one_message_the_database_refuses_is_set_aside_and_the_rest_of_the_batch_stored(
    tmp_path: Path,
) -> None:
    poisoned = fault(2, detail="poison")
    batch = [fault(1), poisoned, fault(3), fault(1, machine="mk4")]
    with RegionStore.open(tmp_path / "region.db") as inner:
        store = FlakyStore(inner, lambda envs, _r: any(e.id == poisoned.id for e in envs))
        collector = collector_over(store, received(*batch))
        assert collector.run_once(timeout=1.0) == 4
        assert inner.query("SELECT machine, seq FROM messages ORDER BY machine, seq") == [
            ("mini-1", 1), ("mini-1", 3), ("mk4", 1)]  # fmt: skip
        ((seq, reason),) = inner.query("SELECT seq, reason FROM rejected")
        assert (seq, reason) == (2, "cannot store: OperationalError: refused")
        assert {(a.machine, a.seq) for a in inner.acks()} == {("mini-1", 3), ("mk4", 1)}
        assert (collector.stats.stored, collector.stats.rejected, collector._retry) == (3, 1, [])


def test_a_database_that_refuses_every_write_loses_nothing(tmp_path: Path) -> None:
    with RegionStore.open(tmp_path / "region.db") as inner:
        store = FlakyStore(inner, lambda _e, _r: True)  # a full disk: it answers reads, refuses writes
        items = received(fault(1), fault(2))
        collector = collector_over(store, items)
        assert collector.run_once(timeout=1.0) == 0
        assert collector._retry == items  # tried again later, none of it set aside
        assert store.count("rejected") == 0 and store.count("messages") == 0  # reconnected meanwhile
        store.close()


def test_region_rejected_names_the_nodes_seq(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fabnode.cli import app

    db = tmp_path / "region.db"
    with RegionStore.open(str(db)) as store:
        bad = Rejected(TOPIC, "NaN is not a number", json.dumps({"seq": 7, "id": "ab" * 16}).encode())
        store.store([fault(1)], NOW, [bad])
    runner = CliRunner()
    table = runner.invoke(app, ["region", "rejected", "--db", str(db)])
    assert table.exit_code == 0, table.output
    header, _, row = table.stdout.splitlines()[:3]
    assert header.split()[:3] == ["received", "topic", "seq"] and row.split()[2] == "7"
    (one,) = json.loads(runner.invoke(app, ["region", "rejected", "--db", str(db), "--json"]).stdout)
    assert one["seq"] == 7 and one["reason"] == "NaN is not a number"
    csv_lines = runner.invoke(app, ["region", "rejected", "--db", str(db), "--csv"]).stdout.splitlines()
    assert csv_lines[0].endswith(",seq") and csv_lines[1].endswith(",7")


def test_a_payload_nested_too_deep_is_set_aside_and_the_batch_goes_on(region_target: str) -> None:  # noqa: F811
    deep = b"[" * 60_000  # under the size limit, deeper than the JSON parser recurses
    with pytest.raises(EnvelopeError, match="nested too deep"):
        parse_envelope(deep, TOPIC)
    bad = Rejected(TOPIC, "invalid JSON: nested too deep", deep)
    assert bad.owner() == ("north", "mini-1", None, None)
    with RegionStore.open(region_target) as store:
        result = store.store([fault(1)], NOW, [bad])
        assert [a.seq for a in result.acks] == [1]
        assert store.query("SELECT count(*) FROM rejected") == [(1,)]


def test_a_report_on_a_store_of_another_schema_says_what_to_do_and_changes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fabnode.cli import app

    db = tmp_path / "region.db"
    with RegionStore.open(str(db)) as store:
        store.store([fault(1)], NOW)
    with sqlite3.connect(db) as conn:  # as this morning's collector left it
        conn.execute("UPDATE region_meta SET value = '1' WHERE key = 'schema_version'")
    before = db.read_bytes()
    result = CliRunner().invoke(app, ["region", "report", "--db", str(db)])
    assert result.exit_code == 1
    assert "region store schema 1, this report reads 2" in result.output
    assert "fabnode collect" in result.output
    assert "Traceback" not in result.output and db.read_bytes() == before
