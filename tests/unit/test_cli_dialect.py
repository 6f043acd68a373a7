"""The `fabnode` CLI speaks one dialect: -h and --version, one error prefix, one table of exit codes,
--json/--csv beside --format, FABNODE_CONFIG and FABNODE_STATE_DIR, and read-only verbs that create
nothing. What a user sees: exit codes, stdout and stderr."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from typer.testing import CliRunner

from fabnode import __version__
from fabnode.cli import VERBS, app, exits, verb_module
from fabnode.cli.sim import time_factor
from tests.conftest import REPO

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FABNODE_CONFIG", "FABNODE_STATE_DIR", "FABNODE_SECRET_FILE", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default state dir lands in here
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")) if folder.exists() else []


def every_command() -> list[list[str]]:
    """The path of every command and group under `fabnode`, e.g. ["usage", "summary"]."""
    root = typer.main.get_command(app)
    ctx = click.Context(root)
    paths: list[list[str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, f"fabnode {' '.join(path)} lists {name!r} but has no such command"
                walk(sub, [*path, name])

    walk(root, [])
    return paths


def test_the_verb_table_says_what_each_module_registers() -> None:
    for name, (module, _) in VERBS.items():
        scratch = typer.Typer()
        verb_module(module).register(scratch)
        assert name in typer.main.get_group(scratch).commands, f"fabnode.cli.{module} does not add {name!r}"
    registered: set[str] = set()
    for module in {m for m, _ in VERBS.values()}:
        scratch = typer.Typer()
        verb_module(module).register(scratch)
        registered |= set(typer.main.get_group(scratch).commands)
    assert registered == set(VERBS)  # nothing registered that `fabnode --help` would not list


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = runner.invoke(app, [flag])
    assert (result.exit_code, result.stdout) == (0, f"fabnode {__version__}\n")
    fast = subprocess.run([sys.executable, "-m", "fabnode", flag], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert (fast.returncode, fast.stdout) == (0, f"fabnode {__version__}\n")


def test_version_imports_neither_typer_nor_the_verbs() -> None:
    probe = ("import sys; sys.argv = ['fabnode', '--version']; import fabnode.cli as c; c.main(); "
             "print(sorted(m for m in sys.modules if m.startswith(('typer', 'click', 'rich', 'drivers', "
             "'fabnode.gcode', 'fabnode.records', 'sqlite_utils'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == [f"fabnode {__version__}", "[]"], out.stderr


def test_status_without_a_daemon_imports_no_driver_or_analysis(tmp_path: Path) -> None:
    probe = (f"import sys; sys.argv = ['fabnode', 'status', '--json', '--state-dir', {str(tmp_path)!r}]\n"
             "import fabnode.cli as c\ntry:\n    c.main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print(code, sorted(m for m in sys.modules if m.startswith(('drivers', 'simulators', "
             "'fabnode.gcode', 'fabnode.records', 'fabnode.region', 'sqlite_utils', 'rich', 'paho'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"{exits.NO_DAEMON} []", out.stderr


def test_help_lists_every_verb_and_the_exit_codes() -> None:
    result = runner.invoke(app, ["-h"])
    assert result.exit_code == 0
    for name in VERBS:
        assert re.search(rf"^  {re.escape(name)}\s", result.stdout, re.M), name
    assert "Exit codes: 0 done" in result.stdout and "10 no fabnode daemon runs" in result.stdout


def test_every_command_takes_h_and_documents_every_option() -> None:
    for path in every_command():
        result = runner.invoke(app, [*path, "-h"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage: " in result.stdout and "-h, --help" in result.stdout, path
        root = typer.main.get_command(app)
        cmd: Any = root
        ctx = click.Context(root)
        for name in path:
            cmd = cmd.get_command(ctx, name)
        assert (cmd.help or cmd.short_help or "").strip(), f"fabnode {' '.join(path)} has no help text"
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert (param.help or "").strip(), f"fabnode {' '.join(path)} {param.opts[0]} has no help"


def test_usage_sessions_help_is_the_sessions_help() -> None:
    result = runner.invoke(app, ["usage", "sessions", "--help"])
    assert result.exit_code == 0
    assert "List sessions" in result.stdout and "List jobs" not in result.stdout


@pytest.mark.parametrize("verb", [["status"], ["status", "--json"], ["pause"], ["resume"], ["cancel"],
                                  ["lock"], ["lock", "--force"], ["badge", "04a22b1c"]])
def test_no_daemon_is_one_code_and_one_message_everywhere(tmp_path: Path, verb: list[str]) -> None:
    result = runner.invoke(app, [*verb, "--state-dir", str(tmp_path)])
    assert result.exit_code == exits.NO_DAEMON == 10
    assert result.stderr.startswith("fabnode: no fabnode daemon is running")
    assert "fabnode run" in result.stderr
    assert files_under(tmp_path) == []


def test_calibrate_without_a_daemon_uses_the_same_code(tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", "relay", "--on", "--state-dir", str(tmp_path)])
    assert result.exit_code == exits.NO_DAEMON, result.output
    assert result.stderr.startswith("fabnode: no fabnode daemon")


def test_fabnode_config_names_the_state_dir_of_every_daemon_verb(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "node-state"
    config = tmp_path / "node.toml"
    text = (REPO / "config" / "fabnode-printer.toml").read_text()
    config.write_text(text.replace('# state_dir = "/var/lib/fabnode"', f'state_dir = "{state}"'))
    monkeypatch.setenv("FABNODE_CONFIG", str(config))
    result = runner.invoke(app, ["status"])
    assert result.exit_code == exits.NO_DAEMON
    assert f"no socket at {state / 'control.sock'}" in result.stderr
    checked = runner.invoke(app, ["config", "check"])
    assert checked.exit_code == 0 and f"{config}: ok" in checked.stdout
    doctor = runner.invoke(app, ["doctor", "--timeout", "0.2", "--state-dir", str(tmp_path / "d")])
    assert doctor.stdout.startswith(f"PASS config: {config}")


def test_fabnode_state_dir_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABNODE_STATE_DIR", str(tmp_path / "elsewhere"))
    assert f"no socket at {tmp_path / 'elsewhere' / 'control.sock'}" in runner.invoke(app, ["status"]).stderr
    assert f"no usage log at {tmp_path / 'elsewhere' / 'usage.db'}" in runner.invoke(app, ["usage"]).stderr


def test_a_bad_config_is_a_usage_error_with_the_prefix(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[node]\nlab = 'UPPER'\n")
    result = runner.invoke(app, ["status", "--config", str(config)])
    assert result.exit_code == exits.USAGE
    assert result.stderr.startswith("fabnode: config error: ")


def test_no_cli_module_prints_another_error_prefix() -> None:
    for source in (REPO / "fabnode" / "cli").glob("*.py"):
        text = source.read_text()
        assert not re.search(r"""echo\(f?["'](error|warning): """, text), source
        assert 'f"fabnode run: ' not in text and 'f"fabnode analyze: ' not in text, source


def test_the_readme_table_is_the_exit_codes_module() -> None:
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", readme, re.M)
    assert [(int(code), meaning) for code, meaning in rows] == list(exits.TABLE)


def test_sim_speed_is_bigger_faster_and_time_scale_stays_its_alias() -> None:
    assert time_factor(50.0, None) == pytest.approx(0.02)
    assert time_factor(0.0, None) == 0.0  # instant, as `fabnode run --sim-speed 0`
    assert time_factor(None, 0.5) == 0.5
    assert time_factor(None, None) == 1.0
    both = runner.invoke(app, ["sim", "marlin", "--sim-speed", "2", "--time-scale", "0.5"])
    assert both.exit_code == exits.USAGE and "not both" in both.output
    assert "--sim-speed" in runner.invoke(app, ["sim", "grbl", "-h"]).stdout


# --- read-only verbs create nothing ----------------------------------------------------------------


@pytest.mark.parametrize("verb", [["members", "list"], ["members", "list", "--json"], ["usage"],
                                  ["usage", "sessions"], ["usage", "summary"], ["telemetry", "status"]])
def test_listings_on_an_empty_state_dir_say_where_they_looked_and_create_nothing(
        tmp_path: Path, verb: list[str]) -> None:
    state = tmp_path / "state"
    result = runner.invoke(app, [*verb, "--state-dir", str(state)])
    assert result.exit_code == exits.FAILED
    assert result.stderr.startswith(f"fabnode: no usage log at {state / 'usage.db'}")
    assert "--state-dir" in result.stderr and "FABNODE_STATE_DIR" in result.stderr
    assert not state.exists()


def test_listings_with_no_state_dir_given_create_nothing_in_the_default(tmp_path: Path) -> None:
    for verb in (["members", "list"], ["usage"], ["status"], ["doctor", "--timeout", "0.2"]):
        runner.invoke(app, verb)
    assert files_under(tmp_path / "home") == []


def test_doctor_with_nothing_to_check_fails_and_says_what_to_pass(tmp_path: Path) -> None:
    result = runner.invoke(app, ["doctor", "--state-dir", str(tmp_path / "state"), "--timeout", "0.2"])
    assert result.exit_code == exits.FAILED
    assert result.stdout.startswith("FAIL config: no config given")
    assert "pass --config FILE" in result.stdout and "FABNODE_CONFIG" in result.stdout
    args = ["doctor", "--json", "--state-dir", str(tmp_path / "state"), "--timeout", "0.2"]
    as_json = runner.invoke(app, args)
    assert as_json.exit_code == exits.FAILED and '"ok": false' in as_json.stdout
    assert not (tmp_path / "state").exists()


def test_members_add_without_a_lab_says_what_to_do_and_creates_no_secret(tmp_path: Path) -> None:
    state = tmp_path / "nowhere"
    result = runner.invoke(app, ["members", "add", "Ada", "--badge", "04a22b1c", "--state-dir", str(state)])
    assert result.exit_code == exits.FAILED
    assert f"fabnode: no state dir at {state}" in result.stderr and "--new-lab" in result.stderr
    assert not state.exists()
    started = runner.invoke(app, ["members", "add", "Ada", "--badge", "04a22b1c", "--state-dir", str(state),
                                  "--new-lab"])
    assert started.exit_code == 0, started.output
    assert "starting a new lab" in started.stderr and (state / "secret.key").exists()
    listed = runner.invoke(app, ["members", "list", "--state-dir", str(state)])
    assert listed.exit_code == 0 and "Ada" in listed.stdout


def test_members_list_leaves_the_usage_log_as_it_was(tmp_path: Path) -> None:
    assert runner.invoke(app, ["members", "add", "Ada", "--badge", "04a22b1c", "--state-dir", str(tmp_path)]
                         ).exit_code == 0  # a state dir that exists: the first member starts the lab
    db = tmp_path / "usage.db"
    before = db.read_bytes()
    assert runner.invoke(app, ["members", "list", "--state-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["usage", "--state-dir", str(tmp_path)]).exit_code == 0
    assert db.read_bytes() == before


def test_region_report_refuses_a_database_without_the_region_tables(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    for verb in (["region", "report"], ["region", "rejected"]):
        result = runner.invoke(app, [*verb, "--db", str(other)])
        assert result.exit_code == exits.FAILED
        assert "holds no region store" in result.stderr and "nothing was created" in result.stderr
    assert sqlite3.connect(other).execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not made WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no -wal, no -shm beside it
    with sqlite3.connect(other) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["unrelated"]
    missing = runner.invoke(app, ["region", "report", "--db", str(tmp_path / "absent.db")])
    assert missing.exit_code == exits.FAILED and not (tmp_path / "absent.db").exists()


def test_region_rejected_speaks_json_and_csv(tmp_path: Path) -> None:
    from fabnode.region.store import RegionStore

    db = tmp_path / "region.db"
    RegionStore.open(db).close()
    assert runner.invoke(app, ["region", "rejected", "--db", str(db), "--json"]).stdout == "[]\n"
    assert runner.invoke(app, ["region", "rejected", "--db", str(db), "--csv"]).stdout.startswith("received,")


def test_usage_json_and_csv_are_the_format_options(tmp_path: Path) -> None:
    assert runner.invoke(app, ["members", "add", "Ada", "--badge", "04a22b1c", "--state-dir", str(tmp_path)]
                         ).exit_code == 0
    for verb in ([], ["sessions"], ["summary"]):
        for flag, fmt in (("--json", "json"), ("--csv", "csv")):
            short = runner.invoke(app, ["usage", *verb, flag, "--state-dir", str(tmp_path)])
            long = runner.invoke(app, ["usage", *verb, "--format", fmt, "--state-dir", str(tmp_path)])
            assert short.exit_code == 0 and short.stdout == long.stdout, (verb, flag, short.output)
    clash = runner.invoke(app, ["usage", "--json", "--csv", "--state-dir", str(tmp_path)])
    assert clash.exit_code == exits.USAGE


@pytest.mark.postgres
def test_region_report_on_an_empty_postgresql_database_creates_no_tables() -> None:
    from tests.region_support import postgres_database

    with postgres_database() as url:
        result = runner.invoke(app, ["region", "report", "--db", url])
        assert result.exit_code == exits.FAILED
        assert "holds no region store" in result.stderr and "nothing was created" in result.stderr
        import psycopg

        with psycopg.connect(url) as conn:
            tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        assert tables == []


@pytest.mark.parametrize("verb", [["set-badge", "Ada", "--badge", "04a22b1c"], ["grant", "Ada", "laser-1"],
                                  ["revoke", "Ada", "laser-1"], ["remove", "Ada"]])
def test_members_changes_other_than_add_never_start_a_lab(tmp_path: Path, verb: list[str]) -> None:
    result = runner.invoke(app, ["members", *verb, "--state-dir", str(tmp_path)])  # exists, but empty
    assert result.exit_code == exits.FAILED
    assert f"fabnode: no usage log at {tmp_path / 'usage.db'}" in result.stderr
    assert files_under(tmp_path) == []
