"""The directory through its members API on real SQLite files: local changes, publishing, snapshots,
and erasure that leaves neither name nor badge hash in the file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from fabnode.directory import members as lab
from fabnode.directory.store import LabDirectory
from fabnode.records import members as access
from fabnode.records.usage import UsageLog

SECRET = b"the lab's secret, 32 bytes long!"
LAB = "fablab-a"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TODAY = date(2026, 3, 1)
UID = "04:A2:2B:1C"


def _node(tmp_path: Path, name: str) -> tuple[UsageLog, LabDirectory]:
    log = UsageLog.open(tmp_path / f"{name}.db")
    return log, LabDirectory.open(log.db, SECRET, f"{LAB}.{name}", LAB)


def _publish(source: LabDirectory, *targets: LabDirectory) -> None:
    pending = source.unpublished()
    for target in targets:
        target.apply_sealed([blob for _, blob in pending], NOW)
    source.mark_published([row_id for row_id, _ in pending])


def test_an_enrolment_on_one_node_lets_the_member_in_on_another(tmp_path: Path) -> None:
    log_a, a = _node(tmp_path, "printer")
    log_b, b = _node(tmp_path, "laser")
    lab.add_member(a, SECRET, "Ada Lovelace", UID, now=NOW, email="ada@example.org")
    lab.grant_training(a, "ada lovelace", "laser", date(2026, 12, 31), now=NOW)
    _publish(a, b)
    assert a.unpublished() == []
    decision = access.check_access(log_b.db, access.badge_hash(SECRET, UID), "laser", TODAY)
    assert (decision.name, decision.granted) == ("Ada Lovelace", True)
    assert lab.find_member(b, email="ADA@example.org") == "Ada Lovelace"
    lab.revoke_training(b, "Ada Lovelace", "laser", now=NOW)
    _publish(b, a)
    assert access.check_access(log_a.db, access.badge_hash(SECRET, UID), "laser", TODAY).reason == \
        "not trained on laser"
    assert a.digest() == b.digest()


def test_a_new_node_gets_everything_from_a_snapshot(tmp_path: Path) -> None:
    _, a = _node(tmp_path, "printer")
    lab.add_member(a, SECRET, "Ada", UID, now=NOW)
    lab.add_member(a, SECRET, "Bob", "04556677", now=NOW)
    lab.remove_member(a, "Bob", now=NOW)
    log_c, c = _node(tmp_path, "cnc")
    report = c.apply_sealed(a.snapshot_parts(1024), NOW)
    assert report.refused == 0 and c.digest() == a.digest()
    assert [(m.name, m.removed is not None) for m in access.list_members(log_c.db, include_removed=True)] == \
        [("Ada", False), ("Bob", True)]


def test_api_keys_travel_as_hashes_and_end_everywhere(tmp_path: Path) -> None:
    from fabnode.records import api_keys

    _, a = _node(tmp_path, "printer")
    log_b, b = _node(tmp_path, "laser")
    lab.add_member(a, SECRET, "Ada", UID, now=NOW)
    key = lab.new_member_key(a, SECRET, "Ada", now=NOW)
    _publish(a, b)
    assert api_keys.key_owner(log_b.db, SECRET, key).name == "Ada"  # type: ignore[union-attr]
    lab.revoke_member_key(b, "Ada", now=NOW)
    assert api_keys.key_owner(log_b.db, SECRET, key) is None
    with pytest.raises(access.AccessError, match="has no API key"):
        lab.revoke_member_key(b, "Ada", now=NOW)


def test_a_removed_member_stays_removed_and_may_enrol_again_as_a_new_member(tmp_path: Path) -> None:
    log, a = _node(tmp_path, "printer")
    first = lab.add_member(a, SECRET, "Ada", UID, now=NOW)
    lab.remove_member(a, "Ada", now=NOW)
    with pytest.raises(access.AccessError, match="no member named 'Ada'"):
        lab.grant_training(a, "Ada", "printer", now=NOW)
    again = lab.add_member(a, SECRET, "Ada", UID, now=NOW)
    assert again != first
    assert [m.name for m in access.list_members(log.db, include_removed=True)] == ["Ada"]


def test_erasure_leaves_no_name_or_badge_hash_in_the_file(tmp_path: Path) -> None:
    log, a = _node(tmp_path, "printer")
    name, hashed = "Zygmunta Quarrelwood", access.badge_hash(SECRET, UID)
    lab.add_member(a, SECRET, name, UID, now=NOW, email="zq@example.org")
    lab.grant_training(a, name, "printer", now=NOW)
    lab.new_member_key(a, SECRET, name, now=NOW)
    lab.add_member(a, SECRET, "Ada", "04556677", now=NOW)
    member_id = access.check_access(log.db, hashed, "printer", TODAY).member_id
    session = log.open_session(member_id, "printer", NOW)
    log.record_access(hashed, "printer", member_id, True, "trained", NOW)
    log.close_session(session, NOW, "badge", 60.0)
    lab.remove_member(a, name, now=NOW, erase=True)
    log.db.execute("VACUUM")
    log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("printer.db"))
    for secret_part in (name.encode(), b"Zygmunta", hashed.encode(), hashed[:16].encode(), b"zq@example.org"):
        assert secret_part not in data
    conn = sqlite3.connect(tmp_path / "printer.db")
    member_hash = access.member_hash(SECRET, name)
    rows = conn.execute("SELECT s.member_id, m.member_hash FROM sessions s "
                        "JOIN members m ON m.id = s.member_id")
    assert list(rows) == [(member_id, member_hash)]  # the usage row keeps its pseudonymous member
    assert b"Ada" in data  # the others stay
