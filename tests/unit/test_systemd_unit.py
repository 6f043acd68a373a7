"""systemd/fabnode.service and the udev rules: what the service needs on a Pi (notify + watchdog, its user
and groups, the state dir the CLI uses, the devices it must reach through the sandbox), checked by
`systemd-analyze verify` where that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fabnode.paths import SYSTEM_STATE_DIR

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "fabnode.service"
SERIAL_RULES = REPO / "systemd" / "99-fabnode-serial.rules"
NFC_RULES = REPO / "systemd" / "99-fabnode-nfc.rules"
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
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/fabnode", str(program)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            timeout=25, check=False)
    complaints = [line for line in result.stderr.splitlines() if "fabnode.service" in line]
    assert result.returncode == 0 and complaints == [], result.stderr


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
