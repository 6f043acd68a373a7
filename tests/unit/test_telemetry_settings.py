"""Telemetry settings: broker URLs, the password file's permissions, TLS files, the config, and
`fabnode telemetry status` from the usage log (no broker needed)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fabnode.cli import telemetry as telemetry_cli
from fabnode.config.settings import load_config
from fabnode.records.usage import UsageLog
from fabnode.telemetry.mqtt import (
    BrokerAddress,
    TelemetryError,
    TelemetrySettings,
    make_client,
    parse_broker_url,
    read_password,
)
from fabnode.telemetry.publisher import TelemetryPublisher

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://broker.lan", BrokerAddress("broker.lan", 1883, False)),
        ("mqtts://broker.lan", BrokerAddress("broker.lan", 8883, True)),
        ("mqtts://10.0.0.2:9999", BrokerAddress("10.0.0.2", 9999, True)),
    ],
)
def test_broker_urls(url: str, address: BrokerAddress) -> None:
    assert parse_broker_url(url) == address


@pytest.mark.parametrize("url", ["http://broker", "broker:1883", "mqtt://", "mqtt://host:99999"])
def test_bad_broker_urls_are_refused(url: str) -> None:
    with pytest.raises(TelemetryError, match=re.escape(repr(url))):
        parse_broker_url(url)


def test_a_world_readable_password_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "broker-password"
    secret.write_text("hunter2\n")
    secret.chmod(0o644)
    with pytest.raises(TelemetryError, match=r"readable by every user \(mode -rw-r--r--\).*chmod 600"):
        read_password(secret)
    secret.chmod(0o600)
    assert read_password(secret) == "hunter2"


def test_publisher_refuses_to_start_with_a_world_readable_password(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0o604)
    settings = TelemetrySettings("mqtt://127.0.0.1:1", "lab", "m", username="u", password_file=secret)
    expected = f"password_file {secret} is readable by every user"
    with UsageLog.open(tmp_path / "usage.db") as log, pytest.raises(TelemetryError, match=expected):
        TelemetryPublisher(log, settings).start()


def test_missing_tls_files_name_the_file(tmp_path: Path) -> None:
    settings = TelemetrySettings("mqtts://broker", "lab", "m", ca_file=tmp_path / "nope.pem")
    with pytest.raises(TelemetryError, match=r"ca_file .*nope\.pem"):
        make_client(settings, T0)


def test_tls_options_need_an_mqtts_url(tmp_path: Path) -> None:
    settings = TelemetrySettings("mqtt://broker", "lab", "m", ca_file=tmp_path / "ca.pem")
    with pytest.raises(TelemetryError, match="need an mqtts:// URL"):
        make_client(settings, T0)


def test_settings_from_the_config_and_the_broker_flag() -> None:
    config = load_config(REPO / "config" / "fabnode-printer.toml")
    with pytest.raises(TelemetryError, match=r"no \[telemetry\] broker"):
        TelemetrySettings.from_config(config)
    settings = TelemetrySettings.from_config(config, "mqtt://region:1884")
    assert (settings.broker_url, settings.lab, settings.machine) == (
        "mqtt://region:1884", "makerspace-north", "prusa-mini-1")  # fmt: skip
    assert (settings.prefix, settings.in_flight, settings.resend_after_s) == ("fablab", 20, 300.0)
    assert settings.mqtt_client_id == "fabnode-makerspace-north-prusa-mini-1"


def _app() -> typer.Typer:
    local = typer.Typer()
    local.callback()(lambda: None)
    telemetry_cli.register(local)
    return local


def test_status_shows_the_backlog_from_the_usage_log(tmp_path: Path) -> None:
    with UsageLog.open(tmp_path / "usage.db") as log:
        for i in range(3):
            log.record_fault("estop", f"#{i}", "m", T0)
        log.mark_outbox_sent([1, 2], T0)
        log.mark_outbox_acked_through(1, T0)
    result = CliRunner().invoke(_app(), ["telemetry", "status", "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert (figures["backlog"], figures["sent_unacked"], figures["acked_through"], figures["last_seq"]) == (
        2, 1, 1, 3)  # fmt: skip
    assert figures["oldest_unacked_seq"] == 2 and figures["last_acked_at"] == "2025-03-01T09:00:00Z"
    text = CliRunner().invoke(_app(), ["telemetry", "status", "--state-dir", str(tmp_path)]).stdout
    assert re.search(r"waiting for the region's ack:\s+2\n", text)


def test_status_without_a_usage_log_says_where_it_looked(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["telemetry", "status", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no usage log at" in result.stderr


def test_flush_without_a_config_says_how_to_give_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FABNODE_CONFIG", raising=False)
    result = CliRunner().invoke(_app(), ["telemetry", "flush", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "pass --config FILE" in result.stderr
