"""`fabnode members ...` through the CLI, as a technician sees it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fabnode.cli import members, usage
from fabnode.paths import secret_file_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog

UID = "04:A2:2B:1C"


def _app() -> typer.Typer:
    # Mirrors fabnode.cli.app until the lead registers these verbs there.
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    members.register(app)
    usage.register(app)
    return app


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FABNODE_SECRET_FILE", raising=False)
    monkeypatch.delenv("FABNODE_STATE_DIR", raising=False)
    app, runner = _app(), CliRunner()

    def invoke(*args: str, stdin: str | None = None):
        return runner.invoke(app, [*args, "--state-dir", str(tmp_path)], input=stdin)

    return invoke


def test_add_grant_list_never_prints_the_uid_or_the_full_hash(run, tmp_path: Path) -> None:
    r = run("members", "add", "Ada Lovelace", "--badge", UID)
    assert r.exit_code == 0, r.output
    assert run("members", "add", "Grace", "--badge", "04112233", "--role", "technician").exit_code == 0
    assert run("members", "grant", "ada lovelace", "prusa-mini-1", "--until", "2030-06-30").exit_code == 0
    assert run("members", "grant", "Ada Lovelace", "laser-1").exit_code == 0
    table = run("members", "list")
    assert table.exit_code == 0
    full_hash = access.badge_hash(access.load_secret(secret_file_path(tmp_path)), UID)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["name", "role", "badge", "trainings", "since"]
    ada = next(line for line in lines if line.startswith("Ada Lovelace"))
    assert "member" in ada and full_hash[:8] in ada
    assert "laser-1, prusa-mini-1 (until 2030-06-30)" in ada
    assert "technician" in next(line for line in lines if line.startswith("Grace"))
    everything = "".join(x.output for x in (r, table, run("members", "list", "--json")))
    for secret_text in (UID, "04a22b1c", "04A22B1C", full_hash):
        assert secret_text not in everything


def test_list_json(run) -> None:
    run("members", "add", "Ada", "--badge", UID)
    run("members", "grant", "Ada", "printer", "--until", "2030-01-31")
    (ada,) = json.loads(run("members", "list", "--json").stdout)
    assert (ada["name"], ada["role"], len(ada["badge"])) == ("Ada", "member", 8)
    assert ada["trainings"] == [{"machine": "printer", "until": "2030-01-31"}]


def test_badge_from_stdin(run, tmp_path: Path) -> None:
    r = run("members", "add", "Ada", "--badge", "-", stdin="04a22b1c\n")
    assert r.exit_code == 0, r.output
    with UsageLog.open(tmp_path / "usage.db") as log:
        secret = access.load_secret(tmp_path / "secret.key")
        decision = access.check_access(log.db, access.badge_hash(secret, UID), "printer", date(2025, 1, 1))
    assert (decision.name, decision.reason) == ("Ada", "not trained on printer")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["members", "add", "Bob", "--badge", "04:A2:2B"],
         "fabnode: badge UID '04…' (8 characters) is 3 bytes long"),
        (["members", "add", "Bob", "--badge", "nothex"],
         "fabnode: badge UID 'no…' (6 characters) is not hexadecimal"),
        (["members", "add", "Ada", "--badge", "04556677"], "fabnode: member 'Ada' already exists"),
        (
            ["members", "add", "Bob", "--badge", "04a22b1c"],
            "fabnode: that badge already belongs to member 'Ada'",
        ),
        (["members", "grant", "Nobody", "printer"], "fabnode: no member named 'Nobody'"),
        (["members", "revoke", "Ada", "laser"], "fabnode: member 'Ada' has no training on 'laser'"),
        (["members", "remove", "Nobody"], "fabnode: no member named 'Nobody'"),
    ],
)
def test_errors_exit_1_with_a_message(run, args: list[str], message: str) -> None:
    assert run("members", "add", "Ada", "--badge", UID).exit_code == 0
    r = run(*args)
    assert r.exit_code == 1
    assert message in r.stderr


def test_bad_until_date_names_the_option(run) -> None:
    run("members", "add", "Ada", "--badge", UID)
    r = run("members", "grant", "Ada", "printer", "--until", "31/12/2025")
    assert r.exit_code == 2
    assert "--until" in r.stderr and "'31/12/2025' is not a date" in r.stderr


def test_revoke_and_remove(run) -> None:
    run("members", "add", "Ada", "--badge", UID)
    run("members", "grant", "Ada", "printer")
    assert run("members", "revoke", "Ada", "printer").exit_code == 0
    assert json.loads(run("members", "list", "--json").stdout)[0]["trainings"] == []
    assert run("members", "remove", "Ada").exit_code == 0
    assert run("members", "list").stdout.strip() == "no members"
    removed = json.loads(run("members", "list", "--json", "--all").stdout)
    assert [(m["name"], m["badge"], m["removed"] is not None) for m in removed] == [("Ada", None, True)]


def test_import_reports_bad_rows_by_line_commits_good_ones_and_exits_1(run, tmp_path: Path) -> None:
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(
        "name,badge,role,machines,until\n"
        "Ada,04:A2:2B:1C,,printer;laser,2030-06-30\n"
        "Bob,04:A2:2B,member,printer,\n"
        "Grace,04112233,technician,,\n"
        "Carl,04556677,member,printer,tomorrow\n"
    )
    r = run("members", "import", str(csv_file))
    assert r.exit_code == 1
    assert f"{csv_file}:3: badge UID '04…' (8 characters) is 3 bytes long" in r.stderr
    assert "04:A2:2B" not in r.stderr  # never the UID itself
    assert f"{csv_file}:5: until 'tomorrow' is not a date" in r.stderr
    assert "2 added, 0 updated, 2 trainings granted; 2 rows rejected" in r.stdout
    listed = {m["name"]: m for m in json.loads(run("members", "list", "--json").stdout)}
    assert sorted(listed) == ["Ada", "Grace"]
    assert [t["machine"] for t in listed["Ada"]["trainings"]] == ["laser", "printer"]


def test_import_help_documents_the_columns(run) -> None:
    r = run("members", "import", "--help")
    assert r.exit_code == 0
    assert "name,badge,role,machines,until" in r.stdout


def test_import_of_a_missing_file(run, tmp_path: Path) -> None:
    r = run("members", "import", str(tmp_path / "nope.csv"))
    assert r.exit_code == 1
    assert "nope.csv: cannot read it" in r.stderr
