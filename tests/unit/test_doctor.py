"""`fabnode doctor`'s checks, each failing in turn and passing, with fakes for what a laptop lacks."""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
from pathlib import Path

import pytest

from fabnode.config.settings import load_config
from fabnode.technician import doctor as d
from fabnode.technician.calibrate import Reply

REPO = Path(__file__).resolve().parents[2]
M115 = ("FIRMWARE_NAME:Marlin 2.1.2 (Mar 21 2023) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin",
        "Cap:EEPROM:1", "Cap:AUTOREPORT_TEMP:1", "Cap:ADVANCED_OK:1", "ok")


def write_config(tmp_path: Path, **replace: str) -> Path:
    text = (REPO / "config" / "fabnode-printer.toml").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


class FakeSession:
    def __init__(self, replies: dict[str, tuple[str, ...]], greeted: bool = True) -> None:
        self.replies = replies
        self.greeted = greeted
        self.asked: list[str] = []
        self.closed = False

    def ask(self, line: str, timeout_s: float) -> Reply | None:
        self.asked.append(line)
        lines = self.replies.get(line)
        return None if lines is None else Reply(lines, True)

    def close(self) -> None:
        self.closed = True


def test_config_fails_naming_the_key_and_passes_when_valid(tmp_path: Path) -> None:
    bad = write_config(tmp_path, **{"baud = 115200": "baud = 12"})
    check, config = d.check_config(bad)
    assert (check.status, config) == (d.FAIL, None)
    assert "baud" in check.detail and str(bad) in check.detail
    missing, _ = d.check_config(tmp_path / "nope.toml")
    assert missing.status == d.FAIL
    good, config = d.check_config(write_config(tmp_path))
    assert good.status == d.PASS and config is not None
    expected = f"PASS config: {tmp_path / 'node.toml'}: makerspace-north/prusa-mini-1, printer on marlin"
    assert good.line() == expected


def test_serial_port_that_does_not_exist_fails_without_opening(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))  # /dev/fabnode-printer
    opened: list[str] = []
    checks = d.check_serial(config, lambda *a: opened.append(a[0]), 1.0)  # type: ignore[func-returns-value]
    assert [(c.name, c.status) for c in checks] == [("serial", d.FAIL), ("firmware", d.SKIP)]
    assert "does not exist" in checks[0].detail and opened == []


def test_serial_port_that_refuses_to_open_fails_with_the_drivers_words(tmp_path: Path) -> None:
    port = tmp_path / "ttyACM0"
    port.touch()
    config = load_config(write_config(tmp_path, **{"/dev/fabnode-printer": str(port)}))

    def refuse(port: str, baud: int, firmware: str) -> d.FirmwareSession:
        raise OSError("[Errno 16] Device or resource busy")

    serial, firmware = d.check_serial(config, refuse, 1.0)
    assert serial.status == d.FAIL and "Device or resource busy" in serial.detail
    assert firmware.status == d.SKIP


@pytest.mark.parametrize(("lines", "status", "words"), [
    (M115, d.PASS, "has EEPROM, AUTOREPORT_TEMP, ADVANCED_OK"),
    (tuple(x.replace("ADVANCED_OK:1", "ADVANCED_OK:0") for x in M115), d.PASS, "lacks ADVANCED_OK"),
    (tuple(x.replace("EEPROM:1", "EEPROM:0") for x in M115), d.WARN, "lacks EEPROM"),
    (("ok",), d.FAIL, "without FIRMWARE_NAME"),
    (None, d.FAIL, "no answer to M115"),
])  # fmt: skip
def test_marlin_handshake(lines: tuple[str, ...] | None, status: str, words: str) -> None:
    check = d.check_marlin(None if lines is None else Reply(lines, True), greeted=False, timeout_s=1.0)
    assert check.status == status and words in check.detail


def test_grbl_handshake_checks_version_rx_buffer_and_laser_mode(tmp_path: Path) -> None:
    path = write_config(tmp_path, **{'kind = "printer"': 'kind = "laser"',
                                     'firmware = "marlin"': 'firmware = "grbl"',
                                     "rx_window = 127": "rx_window = 128"})
    config = load_config(path)
    info = ("[VER:1.1h.20190825:]", "[OPT:V,15,128]", "ok")
    assert d.check_grbl(FakeSession({"$I": info, "$$": ("$32=1", "ok")}), config, 1).status == d.PASS
    off = d.check_grbl(FakeSession({"$I": info, "$$": ("$32=0", "ok")}), config, 1)
    assert off.status == d.FAIL and "$32=1" in off.advice
    small = ("[VER:1.1f.20170801:]", "[OPT:V,15,64]", "ok")
    over = d.check_grbl(FakeSession({"$I": small, "$$": ("$32=1", "ok")}), config, 1)
    assert over.status == d.FAIL and "rx_window = 64" in over.advice
    old = d.check_grbl(FakeSession({"$I": ("[VER:0.9j.20160303:]", "ok")}), config, 1)
    assert old.status == d.FAIL and "GRBL 0.9j" in old.detail
    assert d.check_grbl(FakeSession({}), config, 1).status == d.FAIL


def test_latency_timer_of_an_ftdi_adapter(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    timer = sysfs / "bus" / "usb-serial" / "devices" / "ttyUSB0" / "latency_timer"
    timer.parent.mkdir(parents=True)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "ttyUSB0").touch()
    (dev / "fabnode-laser").symlink_to(dev / "ttyUSB0")  # the udev rule's name
    timer.write_text("16\n")
    slow = d.check_latency_timer(str(dev / "fabnode-laser"), sysfs)
    assert slow.status == d.WARN and "16 ms" in slow.detail and f"echo 1 | sudo tee {timer}" in slow.advice
    timer.write_text("1\n")
    assert d.check_latency_timer(str(dev / "ttyUSB0"), sysfs).status == d.PASS
    timer.unlink()
    assert d.check_latency_timer(str(dev / "ttyUSB0"), sysfs).status == d.SKIP  # not an FTDI chip
    assert d.check_latency_timer("/dev/ttyACM0", sysfs).status == d.SKIP


def test_gpio_rpi_backend_fails_off_a_pi_and_sim_is_skipped(tmp_path: Path) -> None:
    rpi = load_config(write_config(tmp_path))
    check = d.check_gpio(rpi, lambda: None, on_pi=False)
    assert check.status == d.FAIL and "RPi.GPIO only runs on a Raspberry Pi" in check.detail

    def broken() -> None:
        raise RuntimeError("Cannot determine SOC peripheral base address")

    assert "SOC peripheral" in d.check_gpio(rpi, broken, on_pi=True).detail
    assert d.check_gpio(rpi, lambda: None, on_pi=True).status == d.PASS
    sim = load_config(write_config(tmp_path, **{'backend = "rpi"': 'backend = "sim"'}))
    assert d.check_gpio(sim, broken, on_pi=False).status == d.SKIP


def test_reader_is_skipped_without_a_probe_and_fails_when_it_does_not_open(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))  # backend nfc, device usb
    assert d.check_reader(config, None).status == d.SKIP

    def absent(device: str) -> None:
        raise OSError(19, "No such device")

    failed = d.check_reader(config, absent)
    assert failed.status == d.FAIL and "'usb' does not open" in failed.detail
    assert d.check_reader(config, lambda device: None).status == d.PASS


def test_broker_unreachable_fails_and_listening_passes(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        closed = load_config(write_config(tmp_path, **{
            '# broker = "mqtts://telemetry.region.example:8883"': f'broker = "mqtt://127.0.0.1:{port}"'}))
        refused = d.check_broker(closed, 1.0)  # bound, not listening: refused
        assert refused.status == d.FAIL and f"127.0.0.1:{port}" in refused.detail
        listener.listen(1)
        assert d.check_broker(closed, 1.0).status == d.PASS
    assert d.check_broker(load_config(write_config(tmp_path)), 1.0).status == d.SKIP  # no broker configured


def test_database_integrity(tmp_path: Path) -> None:
    assert d.check_database(tmp_path).status == d.SKIP
    db = tmp_path / "usage.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, file TEXT)")
        rows = [(f"part-{i}.gcode" * 20,) for i in range(500)]
        conn.executemany("INSERT INTO jobs (file) VALUES (?)", rows)
        conn.execute("CREATE INDEX jobs_file ON jobs (file)")
    conn.close()
    assert d.check_database(tmp_path).status == d.PASS
    data = bytearray(db.read_bytes())
    page = 4096
    data[3 * page + 100 : 3 * page + 400] = os.urandom(300)  # a torn page in the middle of the file
    db.write_bytes(bytes(data))
    torn = d.check_database(tmp_path)
    assert torn.status == d.FAIL and ".recover" in torn.advice
    db.write_bytes(b"this is not a database" * 100)
    garbage = d.check_database(tmp_path)
    assert garbage.status == d.FAIL and "not a database" in garbage.detail


def test_disk_warns_below_the_threshold(tmp_path: Path) -> None:
    assert d.check_disk(tmp_path / "not-yet", min_free_bytes=1).status == d.PASS
    low = d.check_disk(tmp_path, min_free_bytes=2**62)
    assert low.status == d.WARN and "MB free" in low.detail


def fake_command(tmp_path: Path, output: str, rc: int = 0) -> list[str]:
    script = tmp_path / "timedatectl"
    script.write_text(f"#!/bin/sh\necho '{output}'\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return [str(script), "show", "-p", "NTPSynchronized"]


def test_clock(tmp_path: Path) -> None:
    assert d.check_clock(fake_command(tmp_path, "NTPSynchronized=yes")).status == d.PASS
    unsynced = d.check_clock(fake_command(tmp_path, "NTPSynchronized=no"))
    assert unsynced.status == d.FAIL and "set-ntp true" in unsynced.advice
    assert d.check_clock(fake_command(tmp_path, "Failed to connect to bus", rc=1)).status == d.SKIP
    assert d.check_clock([str(tmp_path / "absent")]).status == d.SKIP


def test_only_a_fail_fails_the_node() -> None:
    assert d.all_passed([d.Check("a", d.PASS, ""), d.Check("b", d.WARN, ""), d.Check("c", d.SKIP, "")])
    assert not d.all_passed([d.Check("a", d.PASS, ""), d.Check("b", d.FAIL, "")])
