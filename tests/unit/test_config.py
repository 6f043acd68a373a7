"""The config: the examples load, and every kind of mistake is refused naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fabnode.cli import app
from fabnode.config.settings import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
[node]
lab = "lab-a"
machine = "m1"
[serial]
port = "sim"
[machine]
kind = "printer"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["fabnode-printer.toml", "fabnode-laser.toml"])
def test_example_configs_load(name: str) -> None:
    config = load_config(REPO / "config" / name)
    assert config.node.lab == "makerspace-north"
    assert config.machine.kind in ("printer", "laser")


def test_minimal_config_takes_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.machine.firmware == "marlin"
    assert config.serial.baud == 115200
    assert config.gpio.backend == "sim"
    assert config.telemetry.broker is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[session]\nidle_timout_s = 5\n", "[session] unknown option 'idle_timout_s'"),
        ("[sesion]\nidle_timeout_s = 5\n", "unknown section [sesion]"),
        ("[session]\nidle_timeout_s = 1\n", "[session] idle_timeout_s: 1 is below the minimum 10.0"),
        ("[session]\nidle_timeout_s = \"ten\"\n", "[session] idle_timeout_s: 'ten' must be a number"),
        ("[gpio]\nrelay_pin = 40\n", "[gpio] relay_pin: 40 is above the maximum 27"),
        ("[gpio]\nbuzzer_pin = 17\n", "[gpio] buzzer_pin: BCM 17 is already used by relay_pin"),
        ("[telemetry]\nbroker = \"http://x\"\n", "[telemetry] broker: 'http://x' must look like mqtt://"),
        ("[reader]\nbackend = \"rfid\"\n", "[reader] backend: 'rfid' must be one of nfc, keyboard, sim"),
    ],
)
def test_mistakes_name_file_section_and_key(tmp_path: Path, extra: str, expected: str) -> None:
    path = write(tmp_path, MINIMAL + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_required_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[node\] machine: is required"):
        load_config(write(tmp_path, MINIMAL.replace('machine = "m1"', "")))
    with pytest.raises(ConfigError, match=r"node.toml: not valid TOML: .*line 3"):
        load_config(write(tmp_path, "[node]\nlab = 'a'\nmachine = \n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_material_must_be_defined(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[machine\] material: 'ABS' is not a \[materials.X\] table"):
        load_config(write(tmp_path, MINIMAL + 'material = "ABS"\n'))


def test_config_check_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["config", "check", str(write(tmp_path, MINIMAL))])
    assert good.exit_code == 0, good.output
    assert "ok (lab-a/m1, printer on marlin at sim" in good.output
    bad = runner.invoke(app, ["config", "check", str(write(tmp_path, MINIMAL + "[gpio]\nrelay_pin = 99\n"))])
    assert bad.exit_code == 2
    assert "relay_pin: 99 is above the maximum" in bad.output


def test_a_broker_port_that_is_not_a_number_is_refused_at_config_check(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[telemetry\] broker: 'mqtt://region:abc'"):
        load_config(write(tmp_path, MINIMAL + '[telemetry]\nbroker = "mqtt://region:abc"\n'))
