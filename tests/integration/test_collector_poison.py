"""One message never stops the region: numbers the store cannot hold, and records the database refuses,
are set aside with their reason and acknowledged past, through a real mosquitto and the real collector,
while every other message of the batch and of every other node is stored."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fabnode.envelope import build_envelope, encode_envelope, parse_ack, topic
from fabnode.region.store import RegionStore
from tests.mqtt_broker import MosquittoBroker, TlsListener, make_ca, make_tls_files
from tests.region_support import (  # noqa: F401  (region_target, pg_target are fixtures)
    CollectorThread,
    RawPublisher,
    cli_app,
    pg_target,
    read_retained,
    region_target,
    synthetic_stream,
    wait_for,
)

pytestmark = pytest.mark.broker
SENT = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)


def job_payload(
    seq: int, job_id: int, raw: dict[str, str] | None = None, **figures: Any
) -> tuple[str, bytes]:
    """A job_ended record of north/mini-1; `raw` replaces a figure's JSON text (`NaN`, `Infinity`)."""
    data = {"job_id": job_id, "session_id": 1, "machine": "mini-1", "member_hash": "a" * 64,
            "file_sha256": None, "lines_total": 10, "started": "2025-03-03T09:00:00Z",
            "ended": "2025-03-03T10:00:00Z", "checkpoint_at": None, "status": "completed", "reason": None,
            "material": "PLA", "running_s": 60.0, "paused_s": 0.0, "filament_mm": 100.0, "filament_g": 0.3,
            "laser_on_s": 0.0, "cost": 0.01, "last_line_acked": 10, **figures}  # fmt: skip
    env = build_envelope(kind="job_ended", msg_id=uuid.uuid4().hex, lab="north", machine="mini-1", seq=seq,
                         data=data, sent_at=SENT)  # fmt: skip
    obj = env.as_dict()
    text = json.dumps(obj)
    for key, literal in (raw or {}).items():
        text = text.replace(f'"{key}": {json.dumps(data[key])}', f'"{key}": {literal}', 1)
    return topic("fablab", "north", "mini-1", "job"), text.encode()


def fault_payload(seq: int, lab: str = "north", machine: str = "mini-1") -> tuple[str, bytes]:
    env = build_envelope(kind="fault", msg_id=uuid.uuid4().hex, lab=lab, machine=machine, seq=seq,
                         data={"time": "2025-03-03T10:00:00Z", "machine": machine, "kind": "estop",
                               "detail": "e-stop"}, sent_at=SENT)  # fmt: skip
    return topic("fablab", lab, machine, "event"), encode_envelope(env)


def acked(broker: MosquittoBroker, lab: str, machine: str) -> int:
    payload = read_retained(broker.host, broker.port, f"fablab/region/v1/{lab}/{machine}/ack", 1.0)
    return parse_ack(payload).seq if payload else 0


def report(target: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli_app(), ["region", "report", "--db", target, "--json"])
    assert result.exit_code == 0, result.output
    return {(m["lab"], m["machine"]): m for m in json.loads(result.stdout)["machines"]}


@pytest.mark.timeout(60)
def test_numbers_the_store_cannot_hold_are_rejected_and_the_ack_passes_over_them(
    region_target: str,  # noqa: F811
    mosquitto: MosquittoBroker,
) -> None:
    poisoned = {
        2: job_payload(2, 2**63),  # job id one past BIGINT
        3: job_payload(3, 3, raw={"filament_mm": "NaN"}),
        4: job_payload(4, 4, raw={"running_s": "Infinity"}),
        5: job_payload(5, 5, raw={"cost": "1e999"}),
        6: job_payload(6, 6, filament_g=-5.0),  # negative grams mean nothing
    }
    seq_too_big = fault_payload(2**63)
    good = [job_payload(1, 1), fault_payload(7), job_payload(8, 8)]
    other = synthetic_stream("south", "mk4", 3)
    collector = CollectorThread(region_target, mosquitto.url, client_id="region-poison").start()
    pub = RawPublisher(mosquitto.host, mosquitto.port)
    try:
        # One batch: the other node's messages arrive between the poisoned ones.
        pub.publish([good[0], other[0], *poisoned.values(), other[1], seq_too_big, *good[1:], other[2]])
        wait_for(lambda: acked(mosquitto, "north", "mini-1") == 8, 20, "north/mini-1 acked through seq 8")
        wait_for(lambda: acked(mosquitto, "south", "mk4") == 3, 20, "south/mk4 acked through seq 3")
        assert collector._thread.is_alive()
        pub.publish([fault_payload(9)])  # and the collector goes on
        wait_for(lambda: acked(mosquitto, "north", "mini-1") == 9, 20, "the next record acked")
    finally:
        pub.close()
        collector.stop()
    with RegionStore.open(region_target) as store:
        stored = store.query("SELECT lab, machine, seq FROM messages ORDER BY lab, machine, seq")
        rejected = store.query("SELECT seq, reason FROM rejected ORDER BY id")
    assert stored == [("north", "mini-1", s) for s in (1, 7, 8, 9)] + [("south", "mk4", s) for s in (1, 2, 3)]
    reasons = dict(rejected[:5] if rejected[0][0] == 2 else sorted(r for r in rejected if r[0]))
    assert "$.data.job_id: 9223372036854775808 is above 9223372036854775807" in reasons[2]
    assert "NaN is not a number JSON allows" in reasons[3]
    assert "Infinity is not a number JSON allows" in reasons[4]
    assert "number 1e999 is out of range" in reasons[5]
    assert "$.data.filament_g: -5.0 is below 0" in reasons[6]
    assert any(seq is None and "$.seq: 9223372036854775808 is above" in r for seq, r in rejected)
    mini = report(region_target)[("north", "mini-1")]
    assert (mini["gaps"], mini["rejected"], mini["rejected_seqs"], mini["acked_seq"]) == (0, 5, [[2, 6]], 9)


@pytest.mark.timeout(60)
def test_a_record_postgresql_refuses_is_set_aside_and_the_rest_of_the_batch_is_stored(
    pg_target: str,  # noqa: F811
    mosquitto: MosquittoBroker,
) -> None:
    # A NUL character is valid JSON and passes the schema, but PostgreSQL's text and jsonb cannot hold it.
    refused = job_payload(2, 2, reason="firmware said \u0000")
    collector = CollectorThread(pg_target, mosquitto.url, client_id="region-poison").start()
    pub = RawPublisher(mosquitto.host, mosquitto.port)
    try:
        pub.publish([job_payload(1, 1), fault_payload(1, "south", "mk4"), refused, fault_payload(3)])
        wait_for(lambda: acked(mosquitto, "north", "mini-1") == 3, 20, "north/mini-1 acked through seq 3")
        wait_for(lambda: acked(mosquitto, "south", "mk4") == 1, 20, "south/mk4 acked")
    finally:
        pub.close()
        collector.stop()
    with RegionStore.open(pg_target) as store:
        stored = store.query("SELECT lab, machine, seq FROM messages ORDER BY lab, machine, seq")
        rejected = store.query("SELECT lab, machine, seq, reason FROM rejected")
        jobs = store.query("SELECT job_id FROM jobs")
    assert stored == [("north", "mini-1", 1), ("north", "mini-1", 3), ("south", "mk4", 1)]
    assert jobs == [(1,)]
    ((lab, machine, seq, reason),) = rejected
    assert (lab, machine, seq) == ("north", "mini-1", 2) and reason.startswith("cannot store: ")
    assert report(pg_target)[("north", "mini-1")]["rejected"] == 1


@pytest.mark.timeout(30)
def test_the_collector_logs_why_a_tls_handshake_failed(
    mosquitto_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = make_tls_files(tmp_path / "tls")
    broker = mosquitto_factory(tls=TlsListener(files.ca_cert, files.server_cert, files.server_key))
    wrong_ca, _key = make_ca(tmp_path / "other", "Another CA")
    caplog.set_level(logging.ERROR, logger="fabnode.collector")
    collector = CollectorThread(str(tmp_path / "region.db"), broker.url, client_id="region-tls",
                                ca_file=wrong_ca)  # fmt: skip
    collector.collector.start()
    try:
        wait_for(lambda: "TLS handshake failed" in caplog.text, 10, "the reason in the collector's log")
    finally:
        collector.collector.close()
        collector.store.close()
    assert "certificate was refused (self-signed certificate in certificate chain)" in caplog.text
    assert broker.url.removeprefix("mqtts://") in caplog.text
