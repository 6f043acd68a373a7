"""`fabnode config check` refuses a secret file others can read, naming it and the fix (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabnode.cli import app

CONFIG = """
[node]
lab = "lab-a"
machine = "m1"
[serial]
port = "sim"
[machine]
kind = "printer"
[telemetry]
broker = "mqtt://127.0.0.1:1883"
username = "lab-a.m1"
password_file = "broker-password"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FABNODE_SECRET_FILE", raising=False)
    (tmp_path / "broker-password").write_text("hunter2\n")
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    return path


def test_a_password_file_only_the_service_reads_passes(config: Path) -> None:
    (config.parent / "broker-password").chmod(0o600)
    result = CliRunner().invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    assert f"{config}: ok" in result.output


def test_a_world_readable_password_file_is_refused_with_the_fix(config: Path) -> None:
    secret = config.parent / "broker-password"
    secret.chmod(0o644)
    result = CliRunner().invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "[telemetry] password_file" in result.output and str(secret) in result.output
    assert "chmod 600" in result.output and "hunter2" not in result.output
