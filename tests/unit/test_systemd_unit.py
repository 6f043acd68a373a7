"""systemd/fabnode.service and the udev rules: what the service needs on a Pi (notify + watchdog, its user
and groups, the state dir the CLI uses, the devices it must reach through the sandbox), checked by
`systemd-analyze verify` where that exists."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fabnode.config.settings import load_config
from fabnode.node.relay_record import RELAY_RECORD_NAME, record_relay_wiring
from fabnode.node.wiring import WiringError, build_parts
from fabnode.paths import SYSTEM_STATE_DIR

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "fabnode.service"
SERIAL_RULES = REPO / "systemd" / "99-fabnode-serial.rules"
NFC_RULES = REPO / "systemd" / "99-fabnode-nfc.rules"
RELAY_OFF = REPO / "scripts" / "relay-off.py"
RULE_PAIR = re.compile(r'[A-Z_]+(\{[A-Za-z_]+\})?(==|!=|\+=|=)"[^"]*"')  # KEY{attr}=="value"


def unit_entries(path: Path = UNIT) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys such as DeviceAllow= repeat)."""
    entries, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_entries() if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, f"{key}= appears {len(found)} times in [{section}]"
    return found[0]


def test_notify_with_a_watchdog_the_daemon_pets() -> None:
    assert value("Type") == "notify"
    assert value("NotifyAccess") == "main"
    assert int(value("WatchdogSec")) >= 10
    # The daemon pets at half the interval systemd hands it (WATCHDOG_USEC).
    from fabnode.node.sdnotify import Notifier

    assert Notifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": str(int(value("WatchdogSec")) * 10**6)}
                    ).watchdog_s == int(value("WatchdogSec")) / 2


def test_runs_as_its_own_user_with_serial_and_gpio_groups() -> None:
    assert value("User") == "fabnode" and value("Group") == "fabnode"
    assert set(value("SupplementaryGroups").split()) >= {"dialout", "gpio"}
    assert value("CapabilityBoundingSet") == ""
    assert value("NoNewPrivileges") == "yes"


def test_the_state_dir_is_the_one_the_cli_finds() -> None:
    assert value("StateDirectory") == "fabnode"
    assert f"FABNODE_STATE_DIR={SYSTEM_STATE_DIR}" in values("Environment")
    assert Path("/var/lib") / value("StateDirectory") == SYSTEM_STATE_DIR
    assert value("StateDirectoryMode") == "2770"
    assert value("RuntimeDirectory") == "fabnode"
    assert f"LG_WD=/run/{value('RuntimeDirectory')}" in values("Environment")
    assert value("UMask") == "0007"  # socket and database stay the fabnode group's


def test_starts_the_installed_cli_with_the_system_config() -> None:
    assert value("ExecStart") == "/usr/local/bin/fabnode run --config /etc/fabnode/fabnode.toml"
    assert value("Restart") == "on-failure"
    assert value("WantedBy", "Install") == "multi-user.target"


def test_reload_never_sends_a_signal_the_daemon_dies_of() -> None:
    # An unhandled SIGHUP kills the daemon, and systemd counts that as a clean exit: no restart.
    handles_hup = "SIGHUP" in (REPO / "fabnode" / "cli" / "run.py").read_text()
    for command in values("ExecReload"):
        assert "HUP" not in command or handles_hup, f"ExecReload={command} but fabnode run ignores no SIGHUP"


def test_sandbox_still_reaches_the_ports_gpio_and_reader() -> None:
    assert value("ProtectSystem") == "strict"
    assert values("PrivateDevices") in ([], ["no"])
    assert value("DevicePolicy") == "closed"
    allowed = {v.split()[0]: v.split()[1] for v in values("DeviceAllow")}
    for device in ("char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-gpiochip", "char-usb_device"):
        assert allowed.get(device) == "rw", device
    gpiomem = [d for d in allowed if "gpiomem" in d]
    assert gpiomem and all(allowed[d] == "rw" for d in gpiomem)
    # The inbox under /srv/fabnode (install-pi.sh creates it); "-": fine when it is absent.
    assert "-/srv/fabnode" in values("ReadWritePaths")
    assert "AF_NETLINK" in value("RestrictAddressFamilies")  # libusb's hotplug monitor


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.timeout(30)
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: point it at a stand-in.
    program = tmp_path / "fabnode"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    unit = tmp_path / "fabnode.service"
    text = UNIT.read_text().replace("/usr/local/bin/fabnode", str(program))
    unit.write_text(text.replace("/opt/fabnode/bin/python", str(program)))  # ExecStopPost's interpreter
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            timeout=25, check=False)
    complaints = [line for line in result.stderr.splitlines() if "fabnode.service" in line]
    assert result.returncode == 0 and complaints == [], result.stderr


FAKE_GPIO = """\
import json, os
BCM, OUT, IN, LOW, HIGH = "BCM", "OUT", "IN", 0, 1
def _log(*call):
    with open(os.environ["FAKE_GPIO_LOG"], "a") as f:
        f.write(json.dumps(call) + "\\n")
def setwarnings(flag): _log("setwarnings", flag)
def setmode(mode): _log("setmode", mode)
def setup(pin, direction, initial=None, pull_up_down=None): _log("setup", pin, direction, initial)
def output(pin, level): _log("output", pin, level)
def cleanup(*pins): _log("cleanup", *pins)
"""


def relay_off(tmp_path: Path, gpio_table: str | None, fake_gpio: bool = True,
              driven: tuple[str, int, bool] | None = None) -> tuple[int, str, list[list[Any]]]:  # fmt: skip
    """Run ExecStopPost's script on a config with `gpio_table` (None: no config file), the daemon having
    recorded the wiring `driven` (as fabnode.node.wiring does; None: no record); with a stand-in
    RPi.GPIO that logs its calls, or with none (this machine is no Pi). (exit status, stdout, calls)."""
    config = tmp_path / "fabnode.toml"
    if gpio_table is not None:
        config.write_text(f'[node]\nlab = "l"\nmachine = "m"\n\n[gpio]\n{gpio_table}\n')
    state = tmp_path / "state"
    shutil.rmtree(state, ignore_errors=True)
    if driven is not None:
        record_relay_wiring(state, *driven)
    env = {"PATH": os.environ.get("PATH", ""), "FAKE_GPIO_LOG": str(tmp_path / "calls.jsonl"),
           "FABNODE_STATE_DIR": str(state)}
    if fake_gpio:
        (tmp_path / "fake" / "RPi").mkdir(parents=True, exist_ok=True)
        (tmp_path / "fake" / "RPi" / "__init__.py").write_text("")
        (tmp_path / "fake" / "RPi" / "GPIO.py").write_text(FAKE_GPIO)
        env["PYTHONPATH"] = str(tmp_path / "fake")
    done = subprocess.run([sys.executable, "-S", str(RELAY_OFF), str(config)], capture_output=True, text=True,
                          timeout=20, env=env, check=False)  # fmt: skip
    log = tmp_path / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return done.returncode, done.stdout + done.stderr, calls


def test_after_any_stop_the_relay_pin_is_driven_off() -> None:
    [command] = values("ExecStopPost")
    program, script, config = command.split()
    assert program == "/opt/fabnode/bin/python"  # the venv: RPi.GPIO (or rpi-lgpio) is installed there
    assert Path(script).name == RELAY_OFF.name and config == "/etc/fabnode/fabnode.toml"
    assert not command.startswith(("-", "+", "!", "@"))  # a failure to drive the relay shows as a failed unit


def test_relay_off_drives_the_off_level_and_leaves_the_pin_driven(tmp_path: Path) -> None:
    status, out, calls = relay_off(tmp_path, 'backend = "rpi"\nrelay_pin = 17')
    assert status == 0 and "relay off: BCM 17 driven low" in out
    assert ["setup", 17, "OUT", 0] in calls and calls[-1] == ["output", 17, 0]
    assert not any(call[0] == "cleanup" for call in calls)  # cleanup() would let the pin float
    status, out, calls = relay_off(tmp_path, 'backend = "rpi"\nrelay_pin = 4\nrelay_active_low = true')
    assert status == 0 and "BCM 4 driven high" in out
    assert ["setup", 4, "OUT", 1] in calls and calls[-1] == ["output", 4, 1]


def test_relay_off_with_nothing_to_drive_exits_0_saying_why(tmp_path: Path) -> None:
    status, out, calls = relay_off(tmp_path, 'backend = "sim"')
    assert (status, calls) == (0, []) and "backend is 'sim'" in out
    status, out, calls = relay_off(tmp_path, 'backend = "rpi"', fake_gpio=False)
    assert (status, calls) == (0, []) and "not on a Raspberry Pi" in out


def test_relay_off_also_drives_the_pin_the_daemon_drove_when_the_config_changed_since(tmp_path: Path) -> None:
    status, out, calls = relay_off(tmp_path, 'backend = "rpi"\nrelay_pin = 6', driven=("rpi", 17, True))
    assert status == 0 and "the daemon drove BCM 17 (the config now says BCM 6): driving both off" in out
    assert ["output", 6, 0] in calls and ["output", 17, 1] in calls
    status, out, calls = relay_off(tmp_path, 'backend = "rpi"\nrelay_pin = 6', driven=("sim", 17, False))
    assert status == 0 and [c for c in calls if c[0] == "output"] == [["output", 6, 0]]  # no real pin then


def test_a_broken_config_still_drives_off_the_relay_the_daemon_drove(tmp_path: Path) -> None:
    status, out, calls = relay_off(tmp_path, "backend = ", driven=("rpi", 17, False))
    assert status == 1 and "fabnode.toml" in out and "driving the relay the daemon last drove" in out
    assert ["setup", 17, "OUT", 0] in calls and calls[-1] == ["output", 17, 0]
    assert "relay off: BCM 17 driven low" in out


def test_the_daemon_records_the_relay_it_drives_before_it_drives_it(tmp_path: Path) -> None:
    if importlib.util.find_spec("RPi") is not None:
        pytest.skip("RPi.GPIO is here: build_parts would drive this machine's pins")
    example = load_config(REPO / "config" / "fabnode-printer.toml")
    config = dataclasses.replace(example, gpio=dataclasses.replace(example.gpio, backend="rpi", relay_pin=12,
                                                                   relay_active_low=True))  # fmt: skip
    with pytest.raises(WiringError):  # this is no Pi: the GPIO cannot be opened, but the record is made first
        build_parts(config, tmp_path / "state")
    assert json.loads((tmp_path / "state" / RELAY_RECORD_NAME).read_text()) == {
        "backend": "rpi", "relay_pin": 12, "relay_active_low": True}
    assert f'RECORD_NAME = "{RELAY_RECORD_NAME}"' in RELAY_OFF.read_text()


@pytest.mark.parametrize(("gpio_table", "message"), [
    ('backend = "rpi"\nrelay_pin = 99', "[gpio] relay_pin must be a BCM pin from 2 to 27, not 99"),
    ('backend = "rpi"\nrelay_pin = true', "relay_pin must be a BCM pin"),
    ('backend = "rpi"\nrelay_active_low = "yes"', "relay_active_low must be true or false"),
    ("backend = ", "fabnode.toml"),
    (None, "fabnode.toml"),
])  # fmt: skip
def test_relay_off_refuses_a_config_it_cannot_use_naming_it(tmp_path: Path, gpio_table: str | None,
                                                            message: str) -> None:  # fmt: skip
    status, out, calls = relay_off(tmp_path, gpio_table)
    assert (status, calls) == (1, []) and message in out and "the relay pin was not driven" in out


def rule_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize("path", [SERIAL_RULES, NFC_RULES])
def test_udev_rules_are_well_formed(path: Path) -> None:
    lines = rule_lines(path)
    labels = {m.group(1) for line in lines for m in re.finditer(r'LABEL="([^"]+)"', line)}
    for line in lines:
        for target in re.findall(r'GOTO="([^"]+)"', line):
            assert target in labels, f"{path.name}: GOTO {target} has no LABEL"
        for pair in re.split(r",\s*", line):
            assert RULE_PAIR.fullmatch(pair), f"{path.name}: {pair!r}"


def test_the_serial_rule_names_the_port_the_printer_config_uses() -> None:
    symlinks = {m for line in rule_lines(SERIAL_RULES) for m in re.findall(r'SYMLINK\+="([^"]+)"', line)}
    assert symlinks == {"fabnode-printer"}
    assert 'port = "/dev/fabnode-printer"' in (REPO / "config" / "fabnode-printer.toml").read_text()
    for line in rule_lines(SERIAL_RULES):
        if "SYMLINK" in line:
            assert 'GROUP="dialout"' in line and 'ENV{ID_MM_DEVICE_IGNORE}="1"' in line


def test_every_usb_reader_nfcpy_knows_belongs_to_the_fabnode_group() -> None:
    device = pytest.importorskip("nfc.clf.device")
    granted = {
        (int(v, 16), int(p, 16))
        for v, p in re.findall(r'ATTR\{idVendor\}=="([0-9a-f]{4})", ATTR\{idProduct\}=="([0-9a-f]{4})"',
                               NFC_RULES.read_text())
    }
    assert set(device.usb_device_map) <= granted
    for line in rule_lines(NFC_RULES):
        if "idVendor" in line:
            assert line.endswith('GROUP="fabnode", MODE="0660"'), line
