"""`fabnode doctor` against the simulators, a real mosquitto (plain and TLS) and a real usage database."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from fabnode.cli import doctor
from fabnode.node.control import ControlServer
from fabnode.paths import control_socket_path, usage_db_path
from fabnode.records.usage import UsageLog
from simulators.grbl.simulator import GrblSimulator
from simulators.marlin.simulator import MarlinSimulator
from tests.mqtt_broker import MosquittoBroker, TlsListener, free_port, make_ca, make_tls_files

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(30)


def run_doctor(config: Path, state: Path, *extra: str) -> Result:
    app = typer.Typer()
    doctor.register(app)
    app.callback()(lambda: None)
    clock = state.parent / "timedatectl"
    if not clock.exists():
        clock.write_text("#!/bin/sh\necho NTPSynchronized=yes\n")
        clock.chmod(clock.stat().st_mode | stat.S_IEXEC)
    args = ["doctor", "--config", str(config), "--state-dir", str(state), "--timeout", "1",
            "--clock-command", f"{clock} show -p NTPSynchronized", *extra]
    return CliRunner().invoke(app, args)


def statuses(result: Result) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line.split()[0] for line in result.output.splitlines()}


def node_config(tmp_path: Path, kind: str, port: str, broker: str | None = None,
                ca: Path | None = None) -> Path:
    name = "fabnode-laser.toml" if kind == "laser" else "fabnode-printer.toml"
    text = (REPO / "config" / name).read_text()
    text = text.replace(f"/dev/fabnode-{kind}", port).replace('backend = "rpi"', 'backend = "sim"')
    text = text.replace('backend = "nfc"', 'backend = "sim"')
    if kind == "laser":
        text = text.replace("rx_window = 128", "rx_window = 127")
    if broker is not None:
        text = text.replace('# broker = "mqtts://telemetry.region.example:8883"', f'broker = "{broker}"')
    if ca is not None:
        text = text.replace('# ca_file = "/etc/fabnode/region-ca.pem"', f'ca_file = "{ca}"')
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    with UsageLog.open(usage_db_path(folder)):
        pass  # a real, healthy usage log
    return folder


@pytest.fixture
def marlin() -> Iterator[MarlinSimulator]:
    with MarlinSimulator(time_scale=0) as sim:
        yield sim


def test_a_ready_printer_node_passes(tmp_path: Path, state: Path, marlin: MarlinSimulator,
                                     mosquitto: MosquittoBroker) -> None:
    result = run_doctor(node_config(tmp_path, "printer", marlin.port, mosquitto.url), state)
    assert result.exit_code == 0, result.output
    assert statuses(result) == {"config": "PASS", "daemon": "SKIP", "serial": "PASS", "firmware": "PASS",
                                "latency": "SKIP", "reader": "SKIP", "gpio": "SKIP", "broker": "PASS",
                                "database": "PASS", "disk": "PASS", "clock": "PASS"}
    assert "PASS firmware: Marlin 2.1.2" in result.output
    assert marlin.executed == ["M115"]


def test_a_ready_laser_node_passes_and_reports_laser_mode(tmp_path: Path, state: Path) -> None:
    with GrblSimulator(time_scale=0) as sim:
        result = run_doctor(node_config(tmp_path, "laser", sim.port), state, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    firmware = next(c for c in report["checks"] if c["name"] == "firmware")
    assert firmware["status"] == "PASS" and firmware["detail"].startswith("GRBL 1.1h")
    assert "laser mode on" in firmware["detail"]


def test_silent_firmware_fails(tmp_path: Path, state: Path) -> None:
    with GrblSimulator(time_scale=0, silence_at_line=1) as sim:
        result = run_doctor(node_config(tmp_path, "laser", sim.port), state)
    assert result.exit_code == 1
    assert "FAIL firmware: greeted but no answer to $I within 1 s" in result.output
    master, slave = os.openpty()  # a port nothing answers on: no greeting either
    try:
        result = run_doctor(node_config(tmp_path, "printer", os.ttyname(slave)), state)
    finally:
        os.close(master)
        os.close(slave)
    assert result.exit_code == 1
    assert "FAIL firmware: no greeting and no answer to M115 within 1 s" in result.output


def test_missing_port_fails(tmp_path: Path, state: Path) -> None:
    result = run_doctor(node_config(tmp_path, "printer", str(tmp_path / "ttyUSB7")), state)
    assert result.exit_code == 1
    assert statuses(result)["serial"] == "FAIL" and "does not exist" in result.output


def test_bad_config_fails(tmp_path: Path, state: Path) -> None:
    path = node_config(tmp_path, "printer", "/dev/null")
    path.write_text(path.read_text().replace("[session]", "[session]\nidle_timeot_s = 5"))
    result = run_doctor(path, state)
    assert result.exit_code == 1
    assert statuses(result)["config"] == "FAIL" and "idle_timeot_s" in result.output


def test_unreachable_broker_fails(tmp_path: Path, state: Path, marlin: MarlinSimulator) -> None:
    port = free_port()
    result = run_doctor(node_config(tmp_path, "printer", marlin.port, f"mqtt://127.0.0.1:{port}"), state)
    assert result.exit_code == 1
    assert f"FAIL broker: 127.0.0.1:{port}" in result.output


def test_tls_broker_needs_the_configured_ca(tmp_path: Path, state: Path, marlin: MarlinSimulator,
                                           mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    files = make_tls_files(tmp_path / "tls")
    broker = mosquitto_factory(tls=TlsListener(files.ca_cert, files.server_cert, files.server_key))
    good = run_doctor(node_config(tmp_path, "printer", marlin.port, broker.url, files.ca_cert), state)
    assert "PASS broker: 127.0.0.1" in good.output and "TLS certificate valid" in good.output
    other_ca, _ = make_ca(tmp_path / "other", "Other CA")
    bad = run_doctor(node_config(tmp_path, "printer", marlin.port, broker.url, other_ca), state)
    assert bad.exit_code == 1 and "FAIL broker" in bad.output and "certificate" in bad.output


def test_corrupt_database_fails_and_low_disk_warns(tmp_path: Path, state: Path,
                                                   marlin: MarlinSimulator) -> None:
    config = node_config(tmp_path, "printer", marlin.port)
    low = run_doctor(config, state, "--min-free-mb", str(2**40))
    assert low.exit_code == 0 and statuses(low)["disk"] == "WARN"
    usage_db_path(state).write_bytes(b"\0garbage" * 1000)
    result = run_doctor(config, state)
    assert result.exit_code == 1 and statuses(result)["database"] == "FAIL"


def test_a_running_daemon_keeps_its_port(tmp_path: Path, state: Path, marlin: MarlinSimulator) -> None:
    server = ControlServer(control_socket_path(state), lambda r: {"ok": True, "state": "running"}).start()
    try:
        result = run_doctor(node_config(tmp_path, "printer", marlin.port), state)
    finally:
        server.stop()
    assert statuses(result)["daemon"] == "PASS" and statuses(result)["serial"] == "SKIP"
    assert "held by the running daemon" in result.output
    assert marlin.executed == []
