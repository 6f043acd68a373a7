"""scripts/install-pi.sh into a temporary root: the tree it lays, twice the same, a lab's edits kept,
uninstall keeping the usage log, --purge removing it. System commands are only printed ("skipped:")."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-pi.sh"
UNINSTALL = REPO / "scripts" / "uninstall-pi.sh"

pytestmark = [
    pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash"),
    pytest.mark.timeout(60),
]

Tree = dict[str, tuple[str, int, str]]


def run(
    script: Path, root: Path, *args: str, model: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run an install script into `root`, as the tests always do: no pip, this interpreter."""
    model_file = root.parent / "model"
    model_file.write_bytes(model.encode() + b"\0")
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "FABNODE_ROOT", "SUDO_USER")}
    env["FABNODE_MODEL_FILE"] = str(model_file)
    argv = ["bash", str(script), "--root", str(root), "--no-pip", "--python", sys.executable, *args]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=50, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def snapshot(root: Path) -> Tree:
    """Every path under root: its kind, permission bits and content digest (or link target)."""
    tree: Tree = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            tree[rel] = ("link", 0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            tree[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
        else:
            tree[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return tree


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def test_install_lays_the_tree_with_its_modes(root: Path) -> None:
    result = run(SCRIPT, root)
    etc, state = root / "etc/fabnode", root / "var/lib/fabnode"
    assert mode(etc) == 0o750
    assert (etc / "fabnode.toml").read_bytes() == (REPO / "config/fabnode-printer.toml").read_bytes()
    assert mode(etc / "fabnode.toml") == 0o640
    # setgid + group-writable: technicians in the fabnode group write usage.db and its -wal/-shm.
    assert mode(state) == 0o2770
    assert mode(state / "usage.db") == 0o660 and (state / "usage.db").stat().st_size == 0
    assert mode(state / "secret.key") == 0o640 and len((state / "secret.key").read_bytes()) == 32
    assert mode(root / "srv/fabnode/inbox") == 0o2770
    assert os.readlink(root / "usr/local/bin/fabnode") == "/opt/fabnode/bin/fabnode"
    assert (root / "opt/fabnode/pyvenv.cfg").is_file()
    unit = root / "etc/systemd/system/fabnode.service"
    assert unit.read_bytes() == (REPO / "systemd/fabnode.service").read_bytes() and mode(unit) == 0o644
    for rule in ("99-fabnode-serial.rules", "99-fabnode-nfc.rules"):
        assert (root / "etc/udev/rules.d" / rule).read_bytes() == (REPO / "systemd" / rule).read_bytes()
    assert (root / "etc/modprobe.d/fabnode-nfc-blacklist.conf").read_text().count("blacklist pn533_usb") == 1
    profile = (root / "etc/profile.d/fabnode.sh").read_text()
    assert "export FABNODE_STATE_DIR=/var/lib/fabnode\n" in profile
    assert "export FABNODE_CONFIG=/etc/fabnode/fabnode.toml\n" in profile
    out = result.stdout
    assert "--groups dialout,gpio" in out and "--shell /usr/sbin/nologin" in out
    assert "skipped: chown fabnode:fabnode " in out and "skipped: chown root:fabnode " in out
    assert "skipped: udevadm control --reload" in out
    assert "skipped: systemctl daemon-reload" in out
    # The config is checked, then the service enabled; it is never started by the installer.
    assert f"{root}/etc/fabnode/fabnode.toml: ok" in out
    assert out.index(": ok (") < out.index("skipped: systemctl enable fabnode.service")
    assert "skipped: systemctl start" not in out and "--now" not in out
    assert "still the example" in out


def test_install_twice_changes_nothing_and_keeps_the_labs_edits(root: Path) -> None:
    run(SCRIPT, root)
    first = snapshot(root)
    run(SCRIPT, root)
    assert snapshot(root) == first

    config = root / "etc/fabnode/fabnode.toml"
    edited = config.read_text().replace('machine = "prusa-mini-1"', 'machine = "mk4-2"')
    config.write_text(edited)
    rule = root / "etc/udev/rules.d/99-fabnode-serial.rules"
    rule.write_text(rule.read_text().replace('SYMLINK+="fabnode-printer"', 'SYMLINK+="fabnode-laser"'))
    secret = (root / "var/lib/fabnode/secret.key").read_bytes()
    result = run(SCRIPT, root)
    assert config.read_text() == edited
    assert "fabnode-laser" in rule.read_text()
    assert "kept your edited /etc/udev/rules.d/99-fabnode-serial.rules" in result.stdout
    assert "makerspace-north/mk4-2" in result.stdout  # the config check read the lab's file
    assert (root / "var/lib/fabnode/secret.key").read_bytes() == secret


def test_a_rule_shipped_by_an_older_install_is_updated(root: Path) -> None:
    run(SCRIPT, root)
    # As if the previous install had shipped (and installed) an older version of the rule.
    old = "# an older fabnode's rule\n"
    (root / "opt/fabnode/share/fabnode/99-fabnode-nfc.rules").write_text(old)
    (root / "etc/udev/rules.d/99-fabnode-nfc.rules").write_text(old)
    result = run(SCRIPT, root)
    assert (root / "etc/udev/rules.d/99-fabnode-nfc.rules").read_bytes() == (
        REPO / "systemd/99-fabnode-nfc.rules").read_bytes()
    assert "kept your edited" not in result.stdout


def test_a_broken_config_is_reported_and_the_service_not_enabled(root: Path) -> None:
    run(SCRIPT, root)
    config = root / "etc/fabnode/fabnode.toml"
    config.write_text(config.read_text().replace("relay_pin = 17", "relay_pin = 99"))
    result = run(SCRIPT, root, check=False)
    assert result.returncode == 1
    assert "relay_pin" in result.stdout + result.stderr
    assert "skipped: systemctl enable" not in result.stdout
    assert "fix /etc/fabnode/fabnode.toml" in result.stdout


def test_laser_node_starts_from_the_laser_example(root: Path) -> None:
    result = run(SCRIPT, root, "--machine", "laser")
    example = (REPO / "config/fabnode-laser.toml").read_bytes()
    assert (root / "etc/fabnode/fabnode.toml").read_bytes() == example
    assert "laser on grbl at /dev/fabnode-laser" in result.stdout


def installed_names(root: Path) -> tuple[set[str], str]:
    """(the names the installed serial rule creates under /dev, the port the installed config opens)."""
    rule = (root / "etc/udev/rules.d/99-fabnode-serial.rules").read_text()
    rule_lines = [line for line in rule.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    names = {f"/dev/{name}" for line in rule_lines for name in re.findall(r'SYMLINK\+="([^"]+)"', line)}
    config = tomllib.loads((root / "etc/fabnode/fabnode.toml").read_text())
    return names, config["serial"]["port"]


@pytest.mark.parametrize(("machine", "port"), [("printer", "/dev/fabnode-printer"),
                                               ("laser", "/dev/fabnode-laser")])  # fmt: skip
def test_the_udev_rule_creates_the_port_the_config_opens(root: Path, machine: str, port: str) -> None:
    result = run(SCRIPT, root, "--machine", machine)
    assert installed_names(root) == ({port}, port)
    # The copy kept to tell a lab's edits from ours is the one installed: an update changes nothing.
    shipped = root / "opt/fabnode/share/fabnode/99-fabnode-serial.rules"
    assert shipped.read_bytes() == (root / "etc/udev/rules.d/99-fabnode-serial.rules").read_bytes()
    assert f"machine kind: {machine} (serial port {port})" in result.stdout
    before = snapshot(root)
    again = run(SCRIPT, root)  # an update without --machine keeps the node's kind
    assert snapshot(root) == before and "kept your edited" not in again.stdout
    assert installed_names(root) == ({port}, port)


def test_the_units_relay_off_command_is_installed(root: Path) -> None:
    run(SCRIPT, root)
    unit = (root / "etc/systemd/system/fabnode.service").read_text()
    [command] = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStopPost=")]
    script = root / command.split()[1].lstrip("/")
    assert script.read_bytes() == (REPO / "scripts/relay-off.py").read_bytes() and mode(script) == 0o755


def test_a_printer_node_turned_laser_gets_the_laser_name_and_a_warning(root: Path) -> None:
    run(SCRIPT, root)
    result = run(SCRIPT, root, "--machine", "laser")
    names, config_port = installed_names(root)
    assert names == {"/dev/fabnode-laser"} and config_port == "/dev/fabnode-printer"  # the lab's config kept
    assert "the kept /etc/fabnode/fabnode.toml is a printer config" in result.stdout


def test_uninstall_keeps_the_usage_log_then_purge_removes_it(root: Path) -> None:
    run(SCRIPT, root)
    db = root / "var/lib/fabnode/usage.db"
    db.write_bytes(b"the lab's usage log")
    result = run(UNINSTALL, root)
    for gone in ("etc/systemd/system/fabnode.service", "etc/udev/rules.d/99-fabnode-serial.rules",
                 "etc/udev/rules.d/99-fabnode-nfc.rules", "etc/modprobe.d/fabnode-nfc-blacklist.conf",
                 "etc/profile.d/fabnode.sh", "opt/fabnode", "usr/local/bin/fabnode"):
        assert not os.path.lexists(root / gone), gone
    assert db.read_bytes() == b"the lab's usage log"
    assert (root / "etc/fabnode/fabnode.toml").is_file() and (root / "var/lib/fabnode/secret.key").is_file()
    assert "skipped: systemctl disable --now fabnode.service" in result.stdout

    run(UNINSTALL, root)  # again: nothing left to remove, still fine
    run(UNINSTALL, root, "--purge")
    for gone in ("etc/fabnode", "var/lib/fabnode", "srv/fabnode"):
        assert not os.path.lexists(root / gone), gone


def test_uninstall_leaves_a_fabnode_it_did_not_install(root: Path) -> None:
    run(SCRIPT, root)
    link = root / "usr/local/bin/fabnode"
    link.unlink()
    link.symlink_to("/home/pi/.local/bin/fabnode")
    run(UNINSTALL, root)
    assert os.readlink(link) == "/home/pi/.local/bin/fabnode"


def test_dry_run_changes_nothing(root: Path) -> None:
    root.mkdir()
    result = run(SCRIPT, root, "--dry-run")
    assert list(root.iterdir()) == []
    assert f"would run: install -m 0640 {REPO}/config/fabnode-printer.toml {root}/etc/fabnode/fabnode.toml" \
        in result.stdout
    assert "would run: systemctl daemon-reload" in result.stdout


@pytest.mark.parametrize(("model", "extra"), [
    ("Raspberry Pi 5 Model B Rev 1.0", "pi5"),
    ("Raspberry Pi 4 Model B Rev 1.4", "pi"),
    ("Raspberry Pi Zero 2 W Rev 1.0", "pi"),
    ("", "none"),
])
def test_the_gpio_extra_follows_the_pi_model(root: Path, model: str, extra: str) -> None:
    root.mkdir()
    result = run(SCRIPT, root, "--dry-run", model=model)
    assert f"pip extra: {extra}\n" in result.stdout


def test_bad_options_are_refused(root: Path) -> None:
    result = run(SCRIPT, root, "--machine", "lathe", check=False)
    assert result.returncode == 1 and "--machine lathe: use printer or laser" in result.stderr
    result = run(SCRIPT, root, "--purge", check=False)
    assert result.returncode == 1 and "--purge goes with --uninstall" in result.stderr
    assert not root.exists()
