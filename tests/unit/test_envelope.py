"""The telemetry envelope: every record kind built from a real UsageLog, checked against its schema;
nothing that names a member, a badge or a file leaves the node; bad messages refused with a reason."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabnode.envelope import (
    MAX_MESSAGE_BYTES,
    RECORD_KINDS,
    EnvelopeError,
    ack_topic,
    build_ack,
    build_envelope,
    encode_envelope,
    load_schema,
    parse_ack,
    parse_envelope,
    parse_topic,
    topic,
    validate,
)
from fabnode.records import members as access
from fabnode.records.usage import JobRates, OutboxMessage, UsageLog

T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)
SECRET = b"s" * 32
NAME, EMAIL, UID = "Grace Hopper", "grace@example.org", "04:A2:2B:1C:5D:6E:7F"
FILE_NAME = "grace-secret-bracket_v3.gcode"
SHA = "ab" * 32


def _every_kind(log: UsageLog) -> list[OutboxMessage]:
    """Drive a real usage log through every record kind the outbox knows."""
    member = access.add_member(log.db, SECRET, NAME, UID, now=T0)
    badge = access.badge_hash(SECRET, UID)
    log.record_access(badge, "prusa-1", member, True, "trained", T0)
    log.record_access(access.badge_hash(SECRET, "04:00:00:01"), "prusa-1", None, False, "unknown badge", T0)
    session = log.open_session(member, "prusa-1", T0)
    log.enqueue_state("unlocked", T0)
    job = log.start_job(session, member, "prusa-1", FILE_NAME, T0 + timedelta(seconds=5), file_sha256=SHA,
                        lines_total=1000, material="PLA", rates=JobRates(0.003, 25.0, None))  # fmt: skip
    log.enqueue_state("running", T0 + timedelta(seconds=5))
    log.checkpoint_job(job, 500, 100.0, 0.0, 60.0, 0.0, T0 + timedelta(seconds=65))
    end = T0 + timedelta(seconds=120)
    log.finish_job(job, "completed", "done", end, last_line_acked=1000, filament_mm=200)
    log.record_fault("estop", "e-stop pressed", "prusa-1", T0 + timedelta(seconds=130))
    log.close_session(session, T0 + timedelta(seconds=140), "badge", duration_s=140.0)
    open_job = log.start_job(None, member, "prusa-1", FILE_NAME, T0 + timedelta(seconds=150))
    log.recover(T0 + timedelta(seconds=200))  # job_ended (interrupted)
    assert open_job
    return log.pending_outbox(limit=1000)


def _wire(msg: OutboxMessage) -> bytes:
    env = build_envelope(kind=msg.kind, msg_id=msg.msg_id, lab="fablab-nord", machine="prusa-1",
                         seq=msg.seq, data=msg.payload, sent_at=T0 + timedelta(minutes=5),
                         created=msg.created)  # fmt: skip
    return encode_envelope(env)


@pytest.fixture
def messages(tmp_path: Path) -> list[OutboxMessage]:
    with UsageLog.open(tmp_path / "usage.db") as log:
        return _every_kind(log)


def test_every_record_kind_builds_a_valid_envelope_on_its_topic(messages: list[OutboxMessage]) -> None:
    kinds = {m.kind for m in messages}
    assert kinds == set(RECORD_KINDS) - {"status"}
    for msg in messages:
        raw = _wire(msg)
        name = topic("fablab", "fablab-nord", "prusa-1", msg.kind)
        env = parse_envelope(raw, topic_name=name)
        assert (env.id, env.seq, env.kind, env.data) == (msg.msg_id, msg.seq, msg.kind, msg.payload)
        assert env.schema == f"fabnode.{RECORD_KINDS[msg.kind]}" and env.version == 1
        assert name == f"fablab/v1/fablab-nord/prusa-1/{RECORD_KINDS[msg.kind]}"
        assert env.sent_at == "2025-03-01T09:05:00Z"


def test_occurred_at_is_when_it_happened_not_when_sent(messages: list[OutboxMessage]) -> None:
    by_kind = {m.kind: parse_envelope(_wire(m)) for m in reversed(messages)}  # the first of each kind
    assert by_kind["job_started"].occurred_at == "2025-03-01T09:00:05Z"
    assert by_kind["session_ended"].occurred_at == "2025-03-01T09:02:20Z"
    assert by_kind["fault"].occurred_at == "2025-03-01T09:02:10Z"


def test_nothing_that_names_a_member_badge_or_file_leaves_the_node(
    messages: list[OutboxMessage],
) -> None:
    forbidden_fields = {"name", "email", "e-mail", "badge", "badge_hash", "uid", "file_name", "member_id"}
    forbidden_values = [NAME, NAME.casefold(), EMAIL, UID, UID.replace(":", "").lower(), FILE_NAME,
                        access.badge_hash(SECRET, UID), "grace-secret-bracket"]  # fmt: skip
    for msg in messages:
        raw = _wire(msg).decode()
        env = json.loads(raw)
        assert not forbidden_fields & set(env) and not forbidden_fields & set(env["data"]), msg.kind
        for value in forbidden_values:
            assert value.lower() not in raw.lower(), (msg.kind, value)
    members = {json.loads(_wire(m))["data"].get("member_hash") for m in messages}
    assert access.member_hash(SECRET, NAME) in members  # the member is there, as a hash only
    job = next(m for m in messages if m.kind == "job_ended")
    assert job.payload["file_sha256"] == SHA  # a file's hash may go


def test_status_message_has_no_seq() -> None:
    env = build_envelope(kind="status", msg_id=uuid.uuid4().hex, lab="lab", machine="m", seq=None,
                         data={"status": "offline"}, sent_at=T0)  # fmt: skip
    parsed = parse_envelope(encode_envelope(env), topic_name="x/y/v1/lab/m/status")
    assert parsed.seq is None and parsed.data == {"status": "offline"}
    bad = json.loads(encode_envelope(env))
    bad["seq"] = 3
    with pytest.raises(EnvelopeError, match=r"\$\.seq: expected null"):
        parse_envelope(json.dumps(bad).encode())


def _valid(messages: list[OutboxMessage], kind: str = "job_ended") -> dict:
    return json.loads(_wire(next(m for m in messages if m.kind == kind)))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("id"), r"missing field 'id'"),
        (lambda e: e.update(schema="fabnode.print"), r"unknown schema 'fabnode.print'"),
        (lambda e: e.update(version=2), r"unknown version 2 of schema fabnode.job"),
        (lambda e: e.update(seq="7"), r"\$\.seq: expected integer"),
        (lambda e: e.update(seq=0), r"\$\.seq: 0 is below 1"),
        (lambda e: e.update(id="not-a-uuid"), r"\$\.id: 'not-a-uuid' does not match"),
        (lambda e: e.update(occurred_at="yesterday"), r"occurred_at: 'yesterday' is not an ISO-8601"),
        (lambda e: e.update(sent_at="2025-03-01T09:00"), r"sent_at: .* not an ISO-8601 time with a zone"),
        (lambda e: e.update(kind="access"), r"\$\.kind: 'access' is not one of"),
        (lambda e: e["data"].update(file_name="x.gcode"), r"\$\.data: unexpected field 'file_name'"),
        (lambda e: e["data"].update(member_hash="Grace"), r"member_hash: 'Grace' does not match"),
        (lambda e: e.update(extra=1), r"unexpected field 'extra'"),
    ],
)
def test_bad_envelopes_are_refused_with_the_reason(messages, mutate, reason) -> None:
    env = _valid(messages)
    mutate(env)
    with pytest.raises(EnvelopeError, match=reason):
        parse_envelope(json.dumps(env).encode())


def test_event_data_must_match_its_kind(messages: list[OutboxMessage]) -> None:
    access_env = _valid(messages, "access")
    access_env["kind"] = "fault"
    with pytest.raises(EnvelopeError, match=r"no alternative of oneOf.*unexpected field 'granted'"):
        parse_envelope(json.dumps(access_env).encode())


def test_invalid_json_non_object_and_oversize_are_refused() -> None:
    with pytest.raises(EnvelopeError, match="invalid JSON"):
        parse_envelope(b"{not json")
    with pytest.raises(EnvelopeError, match="invalid JSON"):
        parse_envelope(b"\xff\xfe")
    with pytest.raises(EnvelopeError, match="must be a JSON object, got list"):
        parse_envelope(b"[1, 2]")
    with pytest.raises(EnvelopeError, match=f"payload too large: {MAX_MESSAGE_BYTES + 1} bytes"):
        parse_envelope(b" " * (MAX_MESSAGE_BYTES + 1))


def test_topic_must_match_the_envelope(messages: list[OutboxMessage]) -> None:
    raw = _wire(next(m for m in messages if m.kind == "fault"))
    with pytest.raises(EnvelopeError, match="does not match the envelope"):
        parse_envelope(raw, topic_name="fablab/v1/fablab-nord/laser-2/event")
    with pytest.raises(EnvelopeError, match="is not <prefix>/v1/<lab>/<machine>/<kind>"):
        parse_topic("fablab/v2/lab/m/event")
    assert parse_topic("a/b/v1/lab/m/job").prefix == "a/b"


def test_long_fault_detail_is_clipped_not_refused() -> None:
    env = build_envelope(kind="fault", msg_id=uuid.uuid4().hex, lab="lab", machine="m", seq=9,
                         data={"time": "2025-03-01T09:00:00Z", "machine": "m", "kind": "halt",
                               "detail": "x" * 100_000}, sent_at=T0)  # fmt: skip
    parsed = parse_envelope(encode_envelope(env))
    assert len(parsed.data["detail"]) == 2000 and parsed.data["detail"].endswith("…")


def test_ack_round_trip_and_its_topic() -> None:
    assert ack_topic("fablab", "lab", "m") == "fablab/region/v1/lab/m/ack"
    ack = parse_ack(build_ack(41, "ab" * 16, T0))
    assert (ack.seq, ack.id, ack.stored_at) == (41, "ab" * 16, "2025-03-01T09:00:00Z")
    assert parse_ack(b'{"seq": 0}').seq == 0
    for bad in (b'{"seq": -1}', b'{"seq": "3"}', b'{"seq": true}', b"[]", b"nope"):
        with pytest.raises(EnvelopeError):
            parse_ack(bad)


def test_validator_refuses_keywords_it_does_not_check() -> None:
    with pytest.raises(EnvelopeError, match="unsupported keywords: items"):
        validate([1], {"type": "array", "items": {"type": "string"}})
    assert validate(True, {"type": "integer"}) == ["$: expected integer, got true"]
    assert load_schema("fabnode.job", 1)["$id"] == "fabnode.job.v1.json"
