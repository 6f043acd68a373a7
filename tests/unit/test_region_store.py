"""The region store: the same tests on SQLite and PostgreSQL (rows as stored, acks as computed)."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fabnode.envelope import Envelope, build_envelope
from fabnode.region.store import RegionStore, RegionStoreError, Rejected
from tests.region_support import pg_target, region_target  # noqa: F401  (fixtures)

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def fault(seq: int, lab: str = "north", machine: str = "mini-1") -> Envelope:
    return build_envelope(kind="fault", msg_id=uuid.uuid4().hex, lab=lab, machine=machine, seq=seq,
                          data={"time": "2025-03-03T10:00:00Z", "machine": machine, "kind": "estop",
                                "detail": "e-stop 100% pressed"}, sent_at=NOW)  # fmt: skip


def job(seq: int, job_id: int, status: str, **figures: Any) -> Envelope:
    data = {"job_id": job_id, "session_id": 1, "machine": "mini-1", "member_hash": "a" * 64,
            "file_sha256": None, "lines_total": 10, "started": "2025-03-03T09:00:00Z",
            "ended": None if status == "in_progress" else "2025-03-03T10:00:00Z", "checkpoint_at": None,
            "status": status, "reason": None, "material": "PLA", "running_s": 0.0, "paused_s": 0.0,
            "filament_mm": 0.0, "filament_g": None, "laser_on_s": 0.0, "cost": None, "last_line_acked": 0,
            **figures}  # fmt: skip
    kind = "job_started" if status == "in_progress" else "job_ended"
    return build_envelope(kind=kind, msg_id=uuid.uuid4().hex, lab="north", machine="mini-1", seq=seq,
                          data=data, sent_at=NOW)  # fmt: skip


@pytest.fixture
def store(region_target: str):  # noqa: F811
    with RegionStore.open(region_target) as opened:
        yield opened


def test_a_record_is_stored_with_every_envelope_field(store: RegionStore) -> None:
    env = fault(1)
    result = store.store([env], NOW)
    assert result.stored == [env.id] and result.duplicates == []
    columns = "id, lab, machine, kind, schema, version, seq, occurred_at, sent_at, received_at"
    row = store.query(f"SELECT {columns} FROM messages")
    assert row == [(env.id, "north", "mini-1", "fault", "fabnode.event", 1, 1, "2025-03-03T10:00:00Z",
                    "2025-03-03T12:00:00Z", "2025-03-03T12:00:00.000Z")]  # fmt: skip
    (data,) = store.query("SELECT data FROM messages")[0]
    assert (data if isinstance(data, dict) else __import__("json").loads(data))[
        "detail"
    ] == "e-stop 100% pressed"


def test_a_duplicate_message_id_is_kept_once(store: RegionStore) -> None:
    first, second = fault(1), fault(2)
    assert store.store([first, first], NOW).stored == [first.id]  # twice in one batch
    again = store.store([second, first], NOW)  # and resent later, beside a new one
    assert again.stored == [second.id] and again.duplicates == [first.id]
    assert store.count("messages") == 2
    assert store.query("SELECT seq FROM messages ORDER BY seq") == [(1,), (2,)]


def test_the_ack_stays_at_the_last_contiguous_seq_and_jumps_when_the_gap_fills(store: RegionStore) -> None:
    envs = {seq: fault(seq) for seq in range(1, 7)}
    result = store.store([envs[1], envs[2], envs[4], envs[6]], NOW)
    assert [(a.seq, a.msg_id) for a in result.acks] == [(2, envs[2].id)]
    assert store.gaps("north", "mini-1") == (2, [(3, 3), (5, 5)])
    assert store.store([envs[5]], NOW).acks[0].seq == 2
    assert store.gaps("north", "mini-1") == (1, [(3, 3)])
    filled = store.store([envs[3]], NOW).acks
    assert [(a.seq, a.msg_id) for a in filled] == [(6, envs[6].id)]
    assert store.gaps("north", "mini-1") == (0, [])


def test_contiguity_counts_from_seq_one(store: RegionStore) -> None:
    # The region never saw 1..4 (a node whose outbox was pruned before the region existed): not acked.
    store.store([fault(5), fault(6)], NOW)
    ack = store.node_ack("north", "mini-1")
    assert ack is not None and ack.seq == 0
    assert store.gaps("north", "mini-1") == (4, [(1, 4)])


def test_each_node_is_acknowledged_on_its_own(store: RegionStore) -> None:
    store.store(
        [fault(1, machine="a"), fault(1, machine="b"), fault(2, machine="b"), fault(3, machine="a")], NOW
    )
    assert [(a.machine, a.seq) for a in store.acks()] == [("a", 1), ("b", 2)]


def test_status_messages_carry_no_seq_and_do_not_move_the_ack(store: RegionStore) -> None:
    status = build_envelope(kind="status", msg_id=uuid.uuid4().hex, lab="north", machine="mini-1", seq=None,
                            data={"status": "online"}, sent_at=NOW)  # fmt: skip
    result = store.store([status], NOW)
    assert result.stored == [status.id] and result.acks == []
    assert store.query("SELECT seq FROM messages") == [(None,)]


def test_an_ended_job_is_not_replaced_by_its_late_started_record(store: RegionStore) -> None:
    ended = job(2, 7, "completed", running_s=3600.0, filament_g=12.5)
    started = job(1, 7, "in_progress")
    store.store([ended], NOW)
    store.store([started], NOW)
    assert store.query("SELECT job_id, status, running_s, filament_g, msg_id FROM jobs") == [
        (7, "completed", 3600.0, 12.5, ended.id)
    ]
    store.store([job(3, 8, "in_progress"), job(4, 8, "failed", running_s=60.0)], NOW)  # both in one batch
    assert store.query("SELECT status, running_s FROM jobs WHERE job_id = 8") == [("failed", 60.0)]


def test_a_reject_keeps_topic_reason_size_and_first_bytes(store: RegionStore) -> None:
    payload = b'{"schema": "x"\x00' + b"z" * 1000
    result = store.store(
        [fault(1)], NOW, [Rejected("fablab/v1/north/mini-1/job", "invalid JSON: ...", payload)]
    )
    assert result.rejected == 1 and store.count("messages") == 1
    ((topic, reason, size, head),) = store.query("SELECT topic, reason, size, head FROM rejected")
    assert (topic, reason, size) == ("fablab/v1/north/mini-1/job", "invalid JSON: ...", len(payload))
    assert head.startswith('{"schema": "x"\\x00zzz') and len(head) < 250


def test_two_writers_at_once_store_each_record_once_and_keep_the_ack_right(region_target: str) -> None:  # noqa: F811
    envs = [fault(seq, machine=f"m{n}") for n in range(3) for seq in range(1, 201)]
    rng = random.Random(7)
    copies = envs + rng.sample(envs, 150)  # some messages reach both writers
    rng.shuffle(copies)
    halves = [copies[0::2], copies[1::2]]
    RegionStore.open(region_target).close()
    errors: list[BaseException] = []

    def write(part: list[Envelope]) -> None:
        try:
            with RegionStore.open(region_target) as mine:
                for start in range(0, len(part), 13):
                    mine.store(part[start : start + 13], NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(h,)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with RegionStore.open(region_target) as store:
        assert store.count("messages") == 600
        assert [(a.machine, a.seq) for a in store.acks()] == [("m0", 200), ("m1", 200), ("m2", 200)]


def test_reopening_keeps_the_records(region_target: str) -> None:  # noqa: F811
    env = fault(1)
    with RegionStore.open(region_target) as store:
        store.store([env], NOW)
    with RegionStore.open(region_target) as store:
        assert store.query("SELECT id FROM messages") == [(env.id,)]


def test_a_store_from_a_newer_fabnode_is_refused(region_target: str) -> None:  # noqa: F811
    with RegionStore.open(region_target) as store:
        store.db.execute("UPDATE region_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RegionStoreError, match="schema version 99 is newer"):
        RegionStore.open(region_target)


def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "region.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(RegionStoreError, match=str(path)):
        RegionStore.open(path)


@pytest.mark.postgres
def test_a_postgres_url_without_a_server_names_the_database() -> None:
    with pytest.raises(RegionStoreError, match=r"postgresql://fab:\*\*\*@127.0.0.1:1/region: cannot connect"):
        RegionStore.open("postgresql://fab:secret@127.0.0.1:1/region")
