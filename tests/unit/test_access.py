"""Members, badges (stored as keyed hashes only), trainings and access decisions."""

from __future__ import annotations

import stat
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabnode.records import members as access
from fabnode.records.members import AccessError
from fabnode.records.usage import UsageLog

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SECRET = bytes(range(32))
UID = "04:A2:2B:1C"


@pytest.fixture
def log(tmp_path: Path):
    with UsageLog.open(tmp_path / "usage.db") as opened:
        yield opened


@pytest.mark.parametrize("text", ["04:A2:2B:1C", "04a22b1c", "04 A2 2B 1C", " 04-a2-2b-1c\n", "04A22B1C"])
def test_uid_spellings_are_the_same_badge(text: str) -> None:
    assert access.normalise_uid(text) == bytes([0x04, 0xA2, 0x2B, 0x1C])
    assert access.badge_hash(SECRET, text) == access.badge_hash(SECRET, bytes([0x04, 0xA2, 0x2B, 0x1C]))


@given(st.sampled_from(access.BADGE_LENGTHS).flatmap(lambda n: st.binary(min_size=n, max_size=n)), st.data())
def test_every_spelling_of_any_uid_gives_one_hash(uid: bytes, data: st.DataObject) -> None:
    separator = data.draw(st.sampled_from(["", ":", " ", "-"]))
    text = separator.join(f"{b:02x}" for b in uid)
    text = text.upper() if data.draw(st.booleans()) else text
    assert access.badge_hash(SECRET, text) == access.badge_hash(SECRET, uid)


def test_seven_and_ten_byte_uids_are_accepted() -> None:
    assert len(access.normalise_uid("04:11:22:33:44:55:66")) == 7
    assert len(access.normalise_uid("0411223344556677889a")) == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("04:A2:2B:1G", "badge UID '04…' (11 characters) is not hexadecimal"),
        ("", "badge UID '' (empty) is not hexadecimal"),
        ("04a22b1", "badge UID '04…' (7 characters) has an odd number of hex digits"),
        ("04:A2:2B", "badge UID '04…' (8 characters) is 3 bytes long; expected 4, 5, 7 or 10 bytes"),
        ("4:A2:2B:1C:00", "badge UID '4:…' (13 characters): separated groups must be two hex digits"),
        ("0x04a22b1c", "badge UID '0x…' (10 characters) is not hexadecimal"),
    ],
)
def test_bad_uids_are_rejected_saying_why_but_never_quoting_the_uid(text: str, message: str) -> None:
    with pytest.raises(AccessError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        access.normalise_uid(text)
    assert len(text) < 3 or text not in str(caught.value)  # a UID read off a card is enough to clone it


def test_the_hash_depends_on_the_lab_secret() -> None:
    assert access.badge_hash(SECRET, UID) != access.badge_hash(b"another lab secret..", UID)
    assert access.member_hash(SECRET, "Ada") == access.member_hash(SECRET, "ADA")


def test_the_raw_uid_is_nowhere_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    with UsageLog.open(path) as log:
        ada = access.add_member(log.db, SECRET, "Ada", UID, now=T0)
        hashed = access.badge_hash(SECRET, UID)
        log.record_access(hashed, "printer", ada, False, "not trained on printer", T0)
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for spelling in (b"04:A2:2B:1C", b"04a22b1c", b"04A22B1C", bytes([0x04, 0xA2, 0x2B, 0x1C])):
        assert spelling not in files
    assert hashed.encode() in files  # the hash itself is what is stored


def test_secret_is_created_owner_only_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secret.key"
    first = access.load_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert access.load_secret(path) == first
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_truncated_secret_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"short")
    with pytest.raises(AccessError, match=r"secret.key: the lab secret is 5 bytes"):
        access.load_secret(path)


def test_access_decisions(log: UsageLog) -> None:
    ada = access.add_member(log.db, SECRET, "Ada", UID, now=T0)
    access.add_member(log.db, SECRET, "Grace", "04112233", access.TECHNICIAN, now=T0)
    access.grant_training(log.db, "ada", "printer", date(2025, 6, 30), now=T0)
    ada_badge, grace_badge = access.badge_hash(SECRET, UID), access.badge_hash(SECRET, "04112233")

    def decide(badge: str, machine: str, today: date) -> tuple[object, ...]:
        d = access.check_access(log.db, badge, machine, today)
        return d.member_id, d.name, d.role, d.granted, d.reason

    assert decide(ada_badge, "printer", date(2025, 6, 30)) == (ada, "Ada", "member", True, "trained")
    assert decide(ada_badge, "printer", date(2025, 7, 1)) == (
        ada, "Ada", "member", False, "training expired on 2025-06-30"
    )  # fmt: skip
    assert decide(ada_badge, "laser", date(2025, 3, 1))[3:] == (False, "not trained on laser")
    assert decide(grace_badge, "laser", date(2030, 1, 1))[2:] == ("technician", True, "technician")
    unknown = access.badge_hash(SECRET, "04999999999999")
    assert decide(unknown, "printer", date(2025, 3, 1)) == (None, None, None, False, "unknown badge")


def test_grant_revoke_remove_and_readmit(log: UsageLog) -> None:
    access.add_member(log.db, SECRET, "Ada", UID, now=T0)
    access.grant_training(log.db, "Ada", "printer", None, now=T0)
    access.grant_training(log.db, "Ada", "laser", date(2025, 12, 31), now=T0)
    access.grant_training(log.db, "Ada", "laser", date(2026, 12, 31), now=T0)  # renewal replaces
    (ada,) = access.list_members(log.db)
    assert ada.trainings == (access.Training("laser", date(2026, 12, 31)), access.Training("printer", None))
    assert ada.badge_prefix == access.badge_hash(SECRET, UID)[:8]
    access.revoke_training(log.db, "Ada", "printer")
    with pytest.raises(AccessError, match="member 'Ada' has no training on 'printer'"):
        access.revoke_training(log.db, "Ada", "printer")
    badge = access.badge_hash(SECRET, UID)
    session = log.open_session(ada.id, "laser", T0)
    access.remove_member(log.db, "Ada", now=T0)
    assert access.list_members(log.db) == []
    assert access.check_access(log.db, badge, "laser", date(2025, 3, 1)).reason == "unknown badge"
    assert log.session(session)["member_id"] == ada.id  # history keeps the member
    assert access.add_member(log.db, SECRET, "Ada", "04556677", now=T0) == ada.id
    assert access.list_members(log.db)[0].trainings == ()


def test_member_errors(log: UsageLog) -> None:
    access.add_member(log.db, SECRET, "Ada", UID, now=T0)
    with pytest.raises(AccessError, match="member 'Ada' already exists"):
        access.add_member(log.db, SECRET, "ada", "04556677", now=T0)
    with pytest.raises(AccessError, match="that badge already belongs to member 'Ada'"):
        access.add_member(log.db, SECRET, "Bob", "04 a2 2b 1c", now=T0)
    with pytest.raises(AccessError, match="role 'admin': expected member or technician"):
        access.add_member(log.db, SECRET, "Bob", "04556677", "admin", now=T0)
    with pytest.raises(AccessError, match="no member named 'Nobody'"):
        access.grant_training(log.db, "Nobody", "printer", now=T0)
    assert [m.name for m in access.list_members(log.db)] == ["Ada"]


def test_set_badge_replaces_the_old_one(log: UsageLog) -> None:
    access.add_member(log.db, SECRET, "Ada", UID, access.TECHNICIAN, now=T0)
    access.set_badge(log.db, SECRET, "Ada", "04556677")
    old = access.check_access(log.db, access.badge_hash(SECRET, UID), "printer", date(2025, 3, 1))
    new = access.check_access(log.db, access.badge_hash(SECRET, "04556677"), "printer", date(2025, 3, 1))
    assert (old.granted, new.granted, new.name) == (False, True, "Ada")


def test_csv_import_keeps_good_rows_and_reports_bad_ones_by_line(log: UsageLog, tmp_path: Path) -> None:
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(
        "\ufeffname,badge,role,machines,until\n"
        "Ada,04:A2:2B:1C,member,printer;laser,2026-06-30\n"  # line 2: good
        "Bob,04:ZZ:00:00,member,printer,\n"  # line 3: bad UID
        "Grace,04112233,technician,,\n"  # line 4: good
        "\n"
        "Carl,04556677,boss,,\n"  # line 6: bad role
        "Dan,,member,printer,\n"  # line 7: new member without a badge
        "Eve,04998877,member,printer,30/06/2026\n"  # line 8: bad date
        "Ada,,,printer,2027-01-31\n"  # line 9: good, renews Ada's printer training
        "Fay,04:A2:2B:1C,member,,\n"  # line 10: Ada's badge
        "Gus,04887766,member,,,extra\n"  # line 11: too many fields
    )
    report = access.import_members(log.db, SECRET, csv_file, now=T0)
    assert [line for line, _ in report.errors] == [3, 6, 7, 8, 10, 11]
    reasons = dict(report.errors)
    assert "badge UID '04…' (11 characters) is not hexadecimal" in reasons[3]
    assert "role 'boss'" in reasons[6]
    assert "new member 'Dan' needs a badge" in reasons[7]
    assert "until '30/06/2026' is not a date" in reasons[8]
    assert "already belongs to member 'Ada'" in reasons[10]
    assert "6 fields; the header has 5" in reasons[11]
    members = {m.name: m for m in access.list_members(log.db)}
    assert sorted(members) == ["Ada", "Grace"]
    assert members["Ada"].trainings == (
        access.Training("laser", date(2026, 6, 30)),
        access.Training("printer", date(2027, 1, 31)),
    )
    assert members["Grace"].role == "technician"
    assert (report.added, report.updated, report.granted) == (2, 1, 3)


def test_csv_import_with_a_wrong_header_imports_nothing(log: UsageLog, tmp_path: Path) -> None:
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("name,uid,role\nAda,04a22b1c,member\n")
    with pytest.raises(AccessError, match=r"members.csv: line 1: unknown column\(s\) 'uid'"):
        access.import_members(log.db, SECRET, csv_file, now=T0)
    assert access.list_members(log.db) == []


def test_the_example_csv_imports_cleanly(log: UsageLog) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "members-example.csv"
    assert example.read_text().splitlines()[0] == ",".join(access.CSV_COLUMNS)
    report = access.import_members(log.db, SECRET, example, now=T0)
    assert report.errors == []
    assert report.added == len(access.list_members(log.db)) >= 2
