"""`fabnode doctor`: is this node ready? Each check gives one line: PASS, WARN, FAIL or SKIP, and what to do.

The checks that need hardware drivers (the serial port and firmware, the reader, the GPIO backend)
take a callable from the CLI (fabnode/cli/doctor.py), so this module imports no driver; the rest
(config, broker, database, disk, clock, USB-serial latency) are plain OS calls with short timeouts
and their paths and commands as parameters, so tests can point them at fakes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Protocol

from fabnode.broker_url import BrokerUrlError, parse_broker_url
from fabnode.config.settings import Config, ConfigError, load_config
from fabnode.machine.profile import GRBL, LASER
from fabnode.paths import usage_db_path
from fabnode.technician.calibrate import Reply
from fabnode.technician.parse import parse_capabilities, parse_grbl_build, parse_grbl_settings

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
MIN_FREE_BYTES = 200 * 1024 * 1024
CLOCK_COMMAND = ("timedatectl", "show", "-p", "NTPSynchronized")
SYSFS = Path("/sys")
_USB_SERIAL = re.compile(r"^ttyUSB\d+$")
_MARLIN_WANTED = ("EEPROM", "AUTOREPORT_TEMP", "ADVANCED_OK")


@dataclass(frozen=True, slots=True)
class Check:
    """One check's verdict; `advice` says what to do about a WARN or FAIL."""

    name: str
    status: str
    detail: str
    advice: str = ""

    def line(self) -> str:
        """`PASS config: ...`, with ` -> advice` when there is some."""
        return f"{self.status} {self.name}: {self.detail}" + (f" -> {self.advice}" if self.advice else "")

    def as_dict(self) -> dict[str, str]:
        """The `--json` form."""
        return asdict(self)


def all_passed(checks: Sequence[Check]) -> bool:
    """True when no check FAILed (WARN and SKIP do not fail the node)."""
    return all(c.status != FAIL for c in checks)


# --- config ----------------------------------------------------------------------------------------


def check_config(path: Path | None) -> tuple[Check, Config | None]:
    """Load the config the way `fabnode run` does; no config is a FAIL (nothing else can be checked)."""
    if path is None:
        advice = "pass --config FILE (the node's, e.g. /etc/fabnode/fabnode.toml) or set FABNODE_CONFIG"
        return Check("config", FAIL, "no config given: nothing to check", advice), None
    try:
        config = load_config(path)
    except ConfigError as exc:
        return Check("config", FAIL, str(exc), "fix the key named; `fabnode config check FILE`"), None
    except OSError as exc:
        return Check("config", FAIL, f"{path}: {exc.strerror or exc}", "check the path and permissions"), None
    m = config.machine
    detail = f"{path}: {config.node.lab}/{config.node.machine}, {m.kind} on {m.firmware}"
    return Check("config", PASS, detail), config


# --- serial port and firmware ----------------------------------------------------------------------


class FirmwareSession(Protocol):
    """An open port to the firmware, as the CLI provides it."""

    greeted: bool

    def ask(self, line: str, timeout_s: float) -> Reply | None:
        """The reply to `line`, or None when none came in time."""
        ...

    def close(self) -> None: ...


def check_serial(config: Config | None, open_session: Callable[[str, int, str], FirmwareSession],
                 timeout_s: float) -> list[Check]:
    """The port (exists, opens) and the firmware's handshake on it: two checks."""
    if config is None:
        return [Check("serial", SKIP, "no config"), Check("firmware", SKIP, "no config")]
    port, firmware = config.serial.port, config.machine.firmware
    if port == "sim":
        return [Check("serial", SKIP, "port = \"sim\": the simulator"), Check("firmware", SKIP, "simulator")]
    if port.startswith("/") and not os.path.exists(port):
        advice = "plug the USB cable in, power the machine, check the udev rule (ls -l /dev/serial/by-id)"
        return [Check("serial", FAIL, f"{port} does not exist", advice), Check("firmware", SKIP, "no port")]
    try:
        session = open_session(port, config.serial.baud, firmware)
    except Exception as exc:  # whatever the driver raises, the technician needs its words
        advice = "is another program (or fabnode run) using it? is the user in the dialout group?"
        failed = Check("serial", FAIL, f"{port} does not open: {exc}", advice)
        return [failed, Check("firmware", SKIP, "no port")]
    try:
        opened = Check("serial", PASS, f"{port} opens at {config.serial.baud} baud")
        if firmware == GRBL:
            return [opened, check_grbl(session, config, timeout_s)]
        return [opened, check_marlin(session.ask("M115", timeout_s), session.greeted, timeout_s)]
    finally:
        session.close()


def _silent(command: str, greeted: bool, timeout_s: float) -> Check:
    said = "greeted but" if greeted else "no greeting and"
    return Check("firmware", FAIL, f"{said} no answer to {command} within {timeout_s:g} s",
                 "check [serial] baud, [machine] firmware and the board's power")


def check_marlin(reply: Reply | None, greeted: bool, timeout_s: float) -> Check:
    """Marlin's M115: its name, and the capabilities fabnode uses (EEPROM, AUTOREPORT_TEMP, ADVANCED_OK)."""
    if reply is None:
        return _silent("M115", greeted, timeout_s)
    caps = parse_capabilities(reply.lines)
    if caps.firmware_name is None:
        return Check("firmware", FAIL, "M115 answered without FIRMWARE_NAME: " + "; ".join(reply.lines)[:200],
                     "is this a Marlin printer? set [machine] firmware")
    present = [c for c in _MARLIN_WANTED if caps.has(c)]
    missing = [c for c in _MARLIN_WANTED if not caps.has(c)]
    detail = f"{caps.firmware_name}; has {', '.join(present) or 'none of ' + ', '.join(_MARLIN_WANTED)}"
    if missing:
        detail += f"; lacks {', '.join(missing)}"
    if "EEPROM" in missing or "AUTOREPORT_TEMP" in missing:
        advice = ("without EEPROM calibrations are lost at reset; without AUTOREPORT_TEMP fabnode polls "
                  "M105: enable EEPROM_SETTINGS / AUTO_REPORT_TEMPERATURES in the firmware")
        return Check("firmware", WARN, detail, advice)
    return Check("firmware", PASS, detail)


def check_grbl(session: FirmwareSession, config: Config, timeout_s: float) -> Check:
    """GRBL's `$I` version (1.1 expected), its RX buffer against [serial] rx_window, laser mode on lasers."""
    reply = session.ask("$I", timeout_s)
    if reply is None:
        return _silent("$I", session.greeted, timeout_s)
    build = parse_grbl_build(reply.lines)
    if build.version is None:
        return Check("firmware", FAIL, "$I answered without [VER:...]: " + "; ".join(reply.lines)[:200],
                     "is this GRBL 1.1? set [machine] firmware")
    detail = f"GRBL {build.version}" + (f", RX buffer {build.rx_buffer} bytes" if build.rx_buffer else "")
    if not build.version.startswith("1.1"):
        return Check("firmware", FAIL, detail, "fabnode speaks GRBL 1.1: update the controller's firmware")
    if build.rx_buffer is not None and config.serial.rx_window > build.rx_buffer:
        return Check("firmware", FAIL, f"{detail}; [serial] rx_window {config.serial.rx_window} is larger",
                     f"set [serial] rx_window = {build.rx_buffer} (or less)")
    if config.machine.kind == LASER:
        settings = session.ask("$$", timeout_s)
        laser = parse_grbl_settings(settings.lines).get(32) if settings is not None else None
        if laser != 1:
            shown = "?" if laser is None else f"{laser:g}"
            return Check("firmware", FAIL, f"{detail}; laser mode off ($32={shown})",
                         "set `$32=1` (fabnode console): without it the beam stays on at every stop")
        detail += ", laser mode on"
    return Check("firmware", PASS, detail)


def check_latency_timer(port: str | None, sysfs: Path = SYSFS) -> Check:
    """An FTDI USB-serial adapter's latency timer: 16 ms (the default) slows every answer; 1 ms is best."""
    if not port or not port.startswith("/"):
        return Check("latency", SKIP, "no serial device path")
    real = os.path.realpath(port)
    device = os.path.basename(real)
    if not _USB_SERIAL.match(device):
        return Check("latency", SKIP, f"{real} is not a USB-serial (ttyUSB) adapter")
    path = sysfs / "bus" / "usb-serial" / "devices" / device / "latency_timer"
    try:
        value = int(path.read_text().strip())
    except FileNotFoundError:
        return Check("latency", SKIP, f"{device} has no latency timer (not an FTDI chip)")
    except (OSError, ValueError) as exc:
        return Check("latency", WARN, f"cannot read {path}: {exc}")
    if value > 1:
        advice = (f"echo 1 | sudo tee {path}; to keep it, a udev rule: ACTION==\"add\", "
                  "SUBSYSTEM==\"usb-serial\", DRIVER==\"ftdi_sio\", ATTR{latency_timer}=\"1\"")
        detail = f"{device} latency_timer is {value} ms: each answer may wait that long; 1 ms is best"
        return Check("latency", WARN, detail, advice)
    return Check("latency", PASS, f"{device} latency_timer is {value} ms")


# --- reader and GPIO -------------------------------------------------------------------------------


def check_reader(config: Config | None, probe: Callable[[str], None] | None) -> Check:
    """The badge reader opens (nfcpy), when a probe is available (drivers/badge.py)."""
    if config is None:
        return Check("reader", SKIP, "no config")
    backend, device = config.reader.backend, config.reader.device
    if backend != "nfc":
        return Check("reader", SKIP, f"backend {backend!r}: nothing to open")
    if probe is None:
        return Check("reader", SKIP, f"nfc {device!r}: checking the reader needs drivers/badge.py (absent)")
    try:
        probe(device)
    except Exception as exc:  # nfcpy raises IOError, or its own errors, by device
        advice = "plug the reader in; `python -m nfc` lists readers; a kernel module (pn533_usb) may hold it"
        return Check("reader", FAIL, f"nfc {device!r} does not open: {exc}", advice)
    return Check("reader", PASS, f"nfc {device!r} opens")


def check_gpio(config: Config | None, probe: Callable[[], None], on_pi: bool) -> Check:
    """The GPIO backend loads: RPi.GPIO (rpi-lgpio on a Pi 5) on a Pi; `sim` is fine anywhere."""
    if config is None:
        return Check("gpio", SKIP, "no config")
    if config.gpio.backend == "sim":
        return Check("gpio", SKIP, "backend \"sim\": simulated pins, no relay is switched")
    if not on_pi:
        return Check("gpio", FAIL, "RPi.GPIO only runs on a Raspberry Pi (this is not one)",
                     "on this computer set [gpio] backend = \"sim\"")
    try:
        probe()
    except Exception as exc:  # ImportError, RuntimeError: the library's own words
        return Check("gpio", FAIL, f"RPi.GPIO does not load: {exc}",
                     "install python3-rpi.gpio (a Pi 5 needs rpi-lgpio); run as a user in the gpio group")
    return Check("gpio", PASS, f"RPi.GPIO loads; relay on BCM {config.gpio.relay_pin}")


# --- broker ----------------------------------------------------------------------------------------


def check_broker(config: Config | None, timeout_s: float = 3.0) -> Check:
    """The broker answers on TCP and, for mqtts, its TLS certificate is valid for the configured CA."""
    if config is None:
        return Check("broker", SKIP, "no config")
    url = config.telemetry.broker
    if url is None:
        return Check("broker", SKIP, "no [telemetry] broker: usage records wait in the outbox")
    try:
        host, port, tls = astuple(parse_broker_url(url))
    except BrokerUrlError as exc:
        return Check("broker", FAIL, f"[telemetry] broker {exc}")
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if tls:
                _tls_handshake(sock, host, config, timeout_s)
    except ssl.SSLCertVerificationError as exc:
        return Check("broker", FAIL, f"{host}:{port}: TLS certificate not valid: {exc.verify_message}",
                     "check [telemetry] ca_file is the region's CA, and the node's clock")
    except (ssl.SSLError, ValueError) as exc:
        return Check("broker", FAIL, f"{host}:{port}: TLS handshake failed: {exc}",
                     "is it an mqtts port? check ca_file, client_cert and client_key")
    except TimeoutError:
        return Check("broker", FAIL, f"{host}:{port}: no answer within {timeout_s:g} s",
                     "a firewall or the network drops it; the records wait in the outbox meanwhile")
    except OSError as exc:
        return Check("broker", FAIL, f"{host}:{port}: {exc.strerror or exc}",
                     "check the broker's address and that it runs; the records wait in the outbox meanwhile")
    return Check("broker", PASS, f"{host}:{port} reachable" + (", TLS certificate valid" if tls else ""))


def _tls_handshake(sock: socket.socket, host: str, config: Config, timeout_s: float) -> None:
    t = config.telemetry
    context = ssl.create_default_context(cafile=str(t.ca_file) if t.ca_file else None)
    if t.client_cert is not None:
        context.load_cert_chain(str(t.client_cert), str(t.client_key) if t.client_key else None)
    sock.settimeout(timeout_s)
    with context.wrap_socket(sock, server_hostname=host):
        pass  # the handshake happens in wrap_socket


# --- the state dir: database, disk, clock ----------------------------------------------------------


def check_database(state_dir: Path) -> Check:
    """The usage log's integrity (`PRAGMA integrity_check`, read-only)."""
    path = usage_db_path(state_dir)
    if not path.exists():
        return Check("database", SKIP, f"no {path} yet (fabnode run creates it)")
    advice = f"stop fabnode, keep a copy of {path.name}, then `sqlite3 {path} .recover` or restore a backup"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0) as db:
            rows = [str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchmany(5)]
    except sqlite3.DatabaseError as exc:
        return Check("database", FAIL, f"{path}: {exc}", advice)
    if rows != ["ok"]:
        return Check("database", FAIL, f"{path}: integrity check: {'; '.join(rows)[:300]}", advice)
    return Check("database", PASS, f"{path}: integrity ok")


def check_disk(state_dir: Path, min_free_bytes: int = MIN_FREE_BYTES) -> Check:
    """Free space on the state dir's filesystem (the database and its journal grow there)."""
    folder = state_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    detail = f"{free / 2**20:.0f} MB free on the filesystem of {state_dir}"
    if free < min_free_bytes:
        return Check("disk", WARN, f"{detail} (below {min_free_bytes / 2**20:.0f} MB)",
                     "free some space: journals (journalctl --vacuum-size=50M), old files in the inbox")
    return Check("disk", PASS, detail)


def check_clock(command: Sequence[str] = CLOCK_COMMAND, timeout_s: float = 3.0) -> Check:
    """The clock is NTP-synchronised (TLS and the usage log's times need it); SKIP without timedatectl."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        return Check("clock", SKIP, f"{command[0]} not found: cannot tell whether the clock is synchronised")
    except subprocess.TimeoutExpired:
        return Check("clock", SKIP, f"{command[0]} gave no answer within {timeout_s:g} s")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        return Check("clock", SKIP, f"{command[0]} failed ({why})")
    value = done.stdout.strip().rpartition("=")[2].strip().lower()
    if value == "yes":
        return Check("clock", PASS, "synchronised (NTP)")
    if value == "no":
        return Check("clock", FAIL, "not synchronised (NTP)",
                     "sudo timedatectl set-ntp true and let UDP 123 out: TLS and usage times need it")
    return Check("clock", SKIP, f"{command[0]} said {done.stdout.strip()!r}")
