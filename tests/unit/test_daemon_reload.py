"""What a config reload may change at once, and what `fabnode status` says about the node's own parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabnode.cli.node import render_status
from fabnode.config.settings import ConfigError, load_config
from fabnode.node.reload import _keep_restart_only, _restart_only, _serial_changed

BASE = """\
[node]
lab = "lab"
machine = "printer-1"

[serial]
port = "/dev/fabnode-printer"

[machine]
kind = "printer"

[session]
idle_timeout_s = 900.0

[gpio]
backend = "sim"

[reader]
backend = "sim"
"""


def config(tmp_path: Path, text: str, name: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_identity_hardware_and_firmware_wait_for_a_restart_the_rest_applies(tmp_path: Path) -> None:
    old = config(tmp_path, BASE, "old.toml")
    new = config(tmp_path, BASE.replace('machine = "printer-1"', 'machine = "printer-2"')
                 .replace('kind = "printer"', 'kind = "printer"\nfirmware = "grbl"\nmax_hotend_c = 230.0')
                 .replace('backend = "sim"\n\n[reader]', 'backend = "sim"\nrelay_pin = 16\n\n[reader]')
                 .replace("idle_timeout_s = 900.0", "idle_timeout_s = 300.0"), "new.toml")  # fmt: skip
    assert _restart_only(old, new) == ["node.machine", "machine.firmware", "gpio"]
    kept = _keep_restart_only(old, new)
    assert (kept.node.machine, kept.machine.firmware, kept.gpio) == ("printer-1", "marlin", old.gpio)
    assert kept.machine.max_hotend_c == 230.0 and kept.session.idle_timeout_s == 300.0  # applied
    assert not _serial_changed(old, kept)


def test_serial_settings_and_the_safe_stop_gcode_are_port_settings(tmp_path: Path) -> None:
    old = config(tmp_path, BASE, "old.toml")
    port = 'port = "/dev/fabnode-printer"\n'
    baud = config(tmp_path, BASE.replace(port, port + "baud = 250000\n"), "baud.toml")
    kind = 'kind = "printer"'
    stop = config(tmp_path, BASE.replace(kind, kind + '\nsafe_stop_gcode = ["M104 S0"]'), "stop.toml")
    assert _serial_changed(old, baud) and _serial_changed(old, stop)


def test_status_text_names_a_lost_port_an_unplugged_reader_and_a_full_disk() -> None:
    status = {
        "lab": "lab", "machine": "printer-1", "kind": "printer", "firmware": "marlin", "state": "locked",
        "relay": False, "fault": None, "inputs": {"estop": False, "lid": False},
        "port": {"path": "/dev/fabnode-printer", "open": False, "lost_s": 12.0, "reason": "read failed"},
        "reader": {"present": False, "detail": "usb: no such device"},
        "storage": {"ok": False, "problem": "disk full: 1.0 MB free in /var/lib/fabnode, 16 MB needed",
                    "kept_records": 3},
        "config": {"after_job": ["serial"]},
    }  # fmt: skip
    text = render_status(status)
    assert "port       /dev/fabnode-printer: NOT CONNECTED for 12 s (read failed)" in text
    assert "reader     UNPLUGGED (usb: no such device)" in text
    assert "storage    disk full: 1.0 MB free" in text and "3 record(s) waiting; no new session" in text
    assert "new serial settings apply after the job" in text
    healthy = dict(status, port={"open": True}, reader={"present": True}, storage={"ok": True}, config={})
    assert "NOT CONNECTED" not in render_status(healthy) and "storage" not in render_status(healthy)


def test_the_fault_options_have_defaults_and_bounds_that_name_the_key(tmp_path: Path) -> None:
    plain = config(tmp_path, BASE, "plain.toml")
    assert (plain.serial.reconnect_every_s, plain.session.host_lost_relay_s, plain.node.min_free_mb) == \
        (2.0, 120.0, 16.0)  # fmt: skip
    for section, line, key in (("[serial]", "reconnect_every_s = 0", "reconnect_every_s"),
                               ("[session]", "host_lost_relay_s = -1", "host_lost_relay_s"),
                               ("[node]", "min_free_mb = -2", "min_free_mb")):  # fmt: skip
        with pytest.raises(ConfigError, match=key) as err:
            config(tmp_path, BASE.replace(f"{section}\n", f"{section}\n{line}\n"), "bad.toml")
        assert "bad.toml" in str(err.value)
