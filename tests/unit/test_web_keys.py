"""API keys, stored only as keyed hashes; `fabnode members key` and `fabnode web lab-key` as seen."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fabnode.cli import members, web
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import api_keys
from fabnode.records import members as access
from fabnode.records.usage import UsageLog

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SECRET = b"s" * 32


@pytest.fixture
def log(tmp_path: Path):
    with UsageLog.open(tmp_path / "usage.sqlite") as opened:
        access.add_member(opened.db, SECRET, "Ada Lovelace", "04a22b1c", now=NOW)
        access.add_member(opened.db, SECRET, "Tess Tech", "04112233", "technician", now=NOW)
        yield opened


def test_a_personal_key_acts_for_its_member_and_is_stored_only_as_a_keyed_hash(log: UsageLog) -> None:
    key = api_keys.new_member_key(log.db, SECRET, "ada lovelace", now=NOW)
    holder = api_keys.key_owner(log.db, SECRET, key)
    assert holder is not None and (holder.name, holder.role) == ("Ada Lovelace", "member")
    rows = list(log.db.query("SELECT * FROM api_keys"))
    assert [r["key_hash"] for r in rows] == [api_keys.key_hash(SECRET, key)]
    dump = "\n".join(log.db.conn.iterdump())
    assert key not in dump
    assert api_keys.key_owner(log.db, b"another lab's secret!!", key) is None


def test_a_new_key_ends_the_old_and_revoke_ends_the_new(log: UsageLog) -> None:
    old = api_keys.new_member_key(log.db, SECRET, "Ada Lovelace", now=NOW)
    new = api_keys.new_member_key(log.db, SECRET, "Ada Lovelace", now=NOW)
    assert old != new
    assert api_keys.key_owner(log.db, SECRET, old) is None
    assert api_keys.key_owner(log.db, SECRET, new) is not None
    api_keys.revoke_member_key(log.db, "Ada Lovelace", now=NOW)
    assert api_keys.key_owner(log.db, SECRET, new) is None
    with pytest.raises(access.AccessError, match="has no API key"):
        api_keys.revoke_member_key(log.db, "Ada Lovelace", now=NOW)


def test_a_removed_member_s_key_stops_working_and_roles_are_as_they_are_now(log: UsageLog) -> None:
    tess = api_keys.new_member_key(log.db, SECRET, "Tess Tech", now=NOW)
    holder = api_keys.key_owner(log.db, SECRET, tess)
    assert holder is not None and holder.role == "technician"
    log.db.execute("UPDATE members SET role = 'member' WHERE name = 'Tess Tech'")
    holder = api_keys.key_owner(log.db, SECRET, tess)
    assert holder is not None and holder.role == "member"
    access.remove_member(log.db, "Tess Tech", now=NOW)
    assert api_keys.key_owner(log.db, SECRET, tess) is None


def test_no_key_for_an_unknown_member(log: UsageLog) -> None:
    with pytest.raises(access.AccessError, match="no member named 'Nobody'"):
        api_keys.new_member_key(log.db, SECRET, "Nobody", now=NOW)


def test_the_lab_key_is_the_same_until_renewed(log: UsageLog) -> None:
    first = api_keys.lab_key(log.db, SECRET, now=NOW)
    assert api_keys.lab_key(log.db, SECRET, now=NOW) == first
    holder = api_keys.key_owner(log.db, SECRET, first)
    assert holder is not None and (holder.name, holder.role, holder.member_id) == ("lab", "lab", None)
    second = api_keys.lab_key(log.db, SECRET, now=NOW, new=True)
    assert second != first and api_keys.key_owner(log.db, SECRET, first) is None
    assert api_keys.key_owner(log.db, SECRET, second) is not None
    assert api_keys.lab_key(log.db, SECRET, now=NOW) == second


@pytest.mark.parametrize("key", ["", "short", "x" * 500, "lab-\x00" + "a" * 20, "ключ" * 8])
def test_odd_keys_are_simply_unknown(log: UsageLog, key: str) -> None:
    assert api_keys.key_owner(log.db, SECRET, key) is None


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FABNODE_SECRET_FILE", raising=False)
    monkeypatch.delenv("FABNODE_STATE_DIR", raising=False)
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    members.register(app)
    web.register(app)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [*args, "--state-dir", str(tmp_path)])

    return invoke


def test_members_key_prints_a_key_once_and_revoke_ends_it(run, tmp_path: Path) -> None:
    assert run("members", "add", "Ada Lovelace", "--badge", "04a22b1c", "--new-lab").exit_code == 0
    made = run("members", "key", "Ada Lovelace")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    secret = access.load_secret(secret_file_path(tmp_path))
    with UsageLog.open(usage_db_path(tmp_path)) as opened:
        holder = api_keys.key_owner(opened.db, secret, key)
        assert holder is not None and holder.name == "Ada Lovelace"
    assert key not in run("members", "list", "--json").output
    revoked = run("members", "key", "Ada Lovelace", "--revoke")
    assert revoked.exit_code == 0 and "no API key any more" in revoked.output
    with UsageLog.open(usage_db_path(tmp_path)) as opened:
        assert api_keys.key_owner(opened.db, secret, key) is None
    again = run("members", "key", "Ada Lovelace", "--revoke")
    assert again.exit_code == 1 and "has no API key" in again.output
    assert run("members", "key", "Nobody").exit_code == 1


def test_web_lab_key_prints_the_same_key_until_new(run, tmp_path: Path) -> None:
    assert run("members", "add", "Ada Lovelace", "--badge", "04a22b1c", "--new-lab").exit_code == 0
    first = run("web", "lab-key")
    assert first.exit_code == 0, first.output
    assert run("web", "lab-key").stdout == first.stdout
    renewed = run("web", "lab-key", "--new")
    assert renewed.exit_code == 0 and renewed.stdout != first.stdout
    assert run("web", "lab-key").stdout == renewed.stdout


def test_web_lab_key_without_a_lab_says_where_it_looked(run, tmp_path: Path) -> None:
    result = run("web", "lab-key")
    assert result.exit_code == 1 and "no usage log" in result.output
