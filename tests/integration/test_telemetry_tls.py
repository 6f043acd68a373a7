"""TLS to the broker (a throw-away CA made with openssl), passwords, and `fabnode telemetry flush`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fabnode.cli import telemetry as telemetry_cli
from fabnode.records.usage import UsageLog
from fabnode.telemetry.publisher import TelemetryPublisher
from tests.integration.conftest import FakeCollector
from tests.integration.test_telemetry import add_faults, settings
from tests.mqtt_broker import (
    MosquittoBroker,
    TlsListener,
    free_port,
    make_ca,
    make_password_file,
    make_tls_files,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]

REPO = Path(__file__).resolve().parents[2]


def _runner_app() -> typer.Typer:
    # `fabnode telemetry` as the lead will register it in fabnode/cli/__init__.py.
    local = typer.Typer()
    local.callback()(lambda: None)
    telemetry_cli.register(local)
    return local


def write_config(folder: Path, broker: str, **telemetry: str | Path) -> Path:
    """The example printer config, as lab `lab` machine `m`, with this [telemetry] section."""
    text = (REPO / "config" / "fabnode-printer.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^lab = "[^"]*"', 'lab = "lab"', text)
    text = re.sub(r'(?m)^machine = "[^"]*"', 'machine = "m"', text)
    text = text[: text.index("[telemetry]")]
    lines = [f'broker = "{broker}"'] + [f'{k} = "{v}"' for k, v in telemetry.items()]
    path = folder / "node.toml"
    path.write_text(text + "[telemetry]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tls_broker(tmp_path: Path, mosquitto_factory) -> tuple[MosquittoBroker, Path, int]:
    """A broker with a TLS listener (test CA) and a plain one for the fake collector: (broker, CA, port)."""
    files = make_tls_files(tmp_path / "tls")
    plain = free_port()
    broker = mosquitto_factory(tls=TlsListener(files.ca_cert, files.server_cert, files.server_key),
                               extra_config=f"listener {plain} 127.0.0.1\n")  # fmt: skip
    return broker, files.ca_cert, plain


def test_node_that_trusts_the_test_ca_publishes_over_tls(tls_broker, tmp_path: Path) -> None:
    broker, ca, plain = tls_broker
    collector = FakeCollector(broker, port=plain).start()
    with UsageLog.open(tmp_path / "usage.db") as log:
        seqs = add_faults(log, 3)
        publisher = TelemetryPublisher(log, settings(broker, ca_file=ca))
        publisher.start()
        try:
            assert publisher.wait_acked(seqs[-1], 10), publisher.status()
        finally:
            publisher.stop()
            collector.stop()
    assert broker.url.startswith("mqtts://") and collector.seqs() == seqs


def test_node_that_trusts_another_ca_refuses_the_broker(tls_broker, tmp_path: Path) -> None:
    broker, _, _ = tls_broker
    other_ca, _ = make_ca(tmp_path / "other", "Other CA")
    with UsageLog.open(tmp_path / "usage.db") as log:
        add_faults(log, 1)
        publisher = TelemetryPublisher(log, settings(broker, ca_file=other_ca))
        publisher.start()
        try:
            assert publisher.wait_until(lambda s: s["error_kind"] == "tls", 10)
            status = publisher.status()
        finally:
            publisher.stop()
        assert not status["connected"] and status["published"] == 0
        assert status["last_error"].startswith(
            f"TLS: refusing broker {broker.url}: its certificate is not trusted by the CA in {other_ca} ("
        )
        assert log.outbox_stats()["backlog"] == 1  # still waiting, nothing lost


def test_flush_sends_the_backlog_and_exits_0_once_the_region_acknowledges(tls_broker, tmp_path: Path) -> None:
    broker, ca, plain = tls_broker
    collector = FakeCollector(broker, port=plain).start()
    state = tmp_path / "state"
    with UsageLog.open(state / "usage.db") as log:
        seqs = add_faults(log, 4)
    config = write_config(tmp_path, broker.url, ca_file=ca)
    runner = CliRunner()
    try:
        result = runner.invoke(_runner_app(), ["telemetry", "flush", "--config", str(config),
                                               "--state-dir", str(state), "--timeout", "10"])  # fmt: skip
    finally:
        collector.stop()
    assert result.exit_code == 0, result.output
    assert f"flushed: the region acknowledged every message through seq {seqs[-1]}" in result.output
    assert collector.seqs() == seqs
    status = runner.invoke(_runner_app(), ["telemetry", "status", "--state-dir", str(state), "--json"])
    figures = json.loads(status.stdout)
    assert (figures["backlog"], figures["acked_through"], figures["last_seq"]) == (0, 4, 4)


def test_flush_with_an_untrusted_broker_exits_1_and_says_why(tls_broker, tmp_path: Path) -> None:
    broker, _, _ = tls_broker
    other_ca, _ = make_ca(tmp_path / "other", "Other CA")
    state = tmp_path / "state"
    with UsageLog.open(state / "usage.db") as log:
        add_faults(log, 2)
    config = write_config(tmp_path, "mqtt://127.0.0.1:1", ca_file=other_ca)
    args = ["telemetry", "flush", "--config", str(config), "--broker", broker.url, "--state-dir", str(state),
            "--timeout", "10"]  # fmt: skip
    result = CliRunner().invoke(_runner_app(), args)
    assert result.exit_code == 1
    assert "fabnode: 2 message(s) not acknowledged by the region" in result.stderr
    assert "its certificate is not trusted by the CA in" in result.stderr


def test_password_login_and_a_wrong_password_is_refused(mosquitto_factory, tmp_path: Path) -> None:
    users = make_password_file(tmp_path / "broker-users", {"lab-m": "right"})
    broker = mosquitto_factory(password_file=users)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("right\n")
    bad.write_text("wrong\n")
    for path in (good, bad):
        path.chmod(0o600)
    with UsageLog.open(tmp_path / "usage.db") as log:
        base = settings(broker, username="lab-m")
        refused = TelemetryPublisher(log, dataclasses.replace(base, password_file=bad))
        refused.start()
        try:
            assert refused.wait_until(lambda s: s["error_kind"] == "refused", 10)
            assert "refused the connection: Not authorized" in refused.status()["last_error"]
        finally:
            refused.stop()
        accepted = TelemetryPublisher(log, dataclasses.replace(base, password_file=good))
        accepted.start()
        try:
            assert accepted.wait_until(lambda s: s["connected"], 10), accepted.status()
        finally:
            accepted.stop()
