"""The daemon's small parts: sd_notify, the systemd files, job figures from acknowledged lines."""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.events import JobStatus
from fabnode.config.settings import load_config
from fabnode.gcode.analysis import analyze_file
from fabnode.machine.profile import MachineProfile
from fabnode.node.jobs import JobBook, preflight
from fabnode.node.loop import controller_settings
from fabnode.node.sdnotify import Notifier
from fabnode.records.usage import UsageLog

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "fabnode.service"
WALL = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


# --- sd_notify ---------------------------------------------------------------------------------


def test_notify_sends_datagrams_to_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        assert notifier.enabled and notifier.watchdog_s == 15.0
        assert notifier.ready("locked")
        assert listener.recv(256) == b"READY=1\nSTATUS=locked"
        assert notifier.watchdog()
        assert listener.recv(256) == b"WATCHDOG=1"


def test_notify_in_the_abstract_namespace() -> None:
    name = f"fabnode-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert listener.recv(64) == b"STOPPING=1"


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_s is None
    assert notifier.ready() is False
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_s is None  # another process's


# --- systemd files -----------------------------------------------------------------------------


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_the_unit_declares_notify_watchdog_user_and_sandbox() -> None:
    service = _unit()["Service"]
    expected = {
        "Type": "notify", "User": "fabnode", "StateDirectory": "fabnode", "RuntimeDirectory": "fabnode",
        "Restart": "on-failure",
        "ProtectSystem": "strict", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    }  # fmt: skip
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert set(service["SupplementaryGroups"].split()) == {"dialout", "gpio"}
    assert int(service["WatchdogSec"]) > 0 and "ProtectHome" in service
    text = UNIT.read_text(encoding="utf-8")
    assert "Environment=FABNODE_STATE_DIR=/var/lib/fabnode" in text.splitlines()  # one of several
    allowed = [line for line in text.splitlines() if line.startswith("DeviceAllow=")]
    for device in ("char-ttyUSB", "char-ttyACM", "char-ttyAMA", "gpiomem", "gpiochip"):
        assert any(device in line for line in allowed), device  # serial ports and the GPIO stay reachable
    assert "fabnode run --config" in service["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: point it at one that does.
    unit = tmp_path / "fabnode.service"
    text = UNIT.read_text().replace("/usr/local/bin/fabnode", "/bin/true")
    unit.write_text(text.replace("/opt/fabnode/bin/python", "/bin/true"), encoding="utf-8")  # ExecStopPost
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_udev_rule_names_the_printer_port() -> None:
    rules = [line for line in (REPO / "systemd" / "99-fabnode-serial.rules").read_text().splitlines()
             if line and not line.startswith("#")]  # fmt: skip
    symlinks = [r for r in rules if 'SYMLINK+="fabnode-printer"' in r]
    assert len(symlinks) >= 4
    assert all('ATTRS{idVendor}=="' in r and 'GROUP="dialout"' in r for r in symlinks)


# --- jobs: figures up to the last acknowledged line --------------------------------------------


def _print(tmp_path: Path) -> Path:
    moves = [f"G1 X{10 + i} Y10 E{i + 1}.0 F1200" for i in range(10)]
    path = tmp_path / "part.gcode"
    path.write_text("\n".join(["G28", "G92 E0", "M82", *moves]) + "\n", encoding="utf-8")
    return path


def test_a_cancelled_job_records_the_filament_of_what_was_acknowledged(tmp_path: Path) -> None:
    profile = MachineProfile()
    pre = preflight(_print(tmp_path), profile)
    assert pre.ok and len(pre.lines) == 13
    with UsageLog.open(tmp_path / "usage.db") as log:
        book = JobBook(log, "printer-1", profile, 5.0, lambda: WALL)
        job = book.start("job-a", pre, None, None, now=100.0)
        book.acked(lines_acked=6, last_line_no=7)  # 4 of the 10 extruding moves ran
        book.checkpoint(now=101.0)
        assert log.job(job.row_id)["filament_mm"] == pytest.approx(4.0)
        summary = book.finish("cancelled", "cancelled from the control socket", now=102.0)
        assert summary is not None and summary["recorded"] is True
        row = log.job(job.row_id)
    assert row["status"] == "cancelled" and summary["status"] == "cancelled"
    assert summary["filament_mm"] == pytest.approx(row["filament_mm"])
    assert row["filament_mm"] == pytest.approx(4.0) and row["last_line_acked"] == 7
    full = analyze_file(tmp_path / "part.gcode", profile)
    assert full.filament_mm == pytest.approx(10.0) and row["running_s"] == pytest.approx(2.0)


def test_an_aborted_job_is_stored_aborted_and_sent_failed_with_the_reason(tmp_path: Path) -> None:
    profile = MachineProfile()
    with UsageLog.open(tmp_path / "usage.db") as log:
        book = JobBook(log, "printer-1", profile, 5.0, lambda: WALL)
        book.start("job-b", preflight(_print(tmp_path), profile), None, None, now=0.0)
        row = book.finish(JobStatus.ABORTED, "emergency stop pressed", now=1.0)
        stored = log.job(row["id"]) if row is not None else None
        sent = [m.payload for m in log.pending_outbox() if m.kind == "job_ended"]
    aborted = ("aborted", "aborted: emergency stop pressed")
    assert row is not None and (row["status"], row["reason"]) == aborted
    assert stored is not None and (stored["status"], stored["reason"]) == aborted
    # The region's schema is unchanged: telemetry says failed, with the "aborted: " reason, as before.
    assert [(p["status"], p["reason"]) for p in sent] == [("failed", "aborted: emergency stop pressed")]


def test_preflight_names_lines_and_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gcode"
    bad.write_text("G28\nG1 X999 F100\nM500\n", encoding="utf-8")
    pre = preflight(bad, MachineProfile())
    assert not pre.ok and [p.split(":")[0] for p in pre.problems] == ["line 2", "line 3"]
    missing = preflight(tmp_path / "nope.gcode", MachineProfile())
    assert not missing.ok and "cannot be read" in missing.problems[0]
    empty = tmp_path / "empty.gcode"
    empty.write_text("; only a comment\n", encoding="utf-8")
    assert "no G-code command" in preflight(empty, MachineProfile()).problems[0]


def test_preflight_streams_the_text_it_checked_without_a_byte_order_mark(tmp_path: Path) -> None:
    part = tmp_path / "part.gcode"
    part.write_bytes(b"\xef\xbb\xbfG28 ; home\r\nG1 X10 F600\r\n")  # as some Windows editors save it
    pre = preflight(part, MachineProfile())
    assert pre.ok, pre.problems
    assert pre.lines == ["G28 ; home", "G1 X10 F600"]  # line 1 reaches Marlin as G28, not \ufeffG28


def test_controller_settings_come_from_the_config() -> None:
    config = load_config(REPO / "config" / "fabnode-laser.toml")
    settings = controller_settings(config)
    assert settings.kind == "laser" and settings.idle_timeout_s == 600.0 and settings.fume_runon_s == 120.0


def test_firmware_faults_reach_the_loop_classified_by_the_driver() -> None:
    from drivers.events import FAILURE_HALTED, FAILURE_THERMAL, FirmwareMessage
    from drivers.marlin.host import MarlinHost

    def idle_says(line: str) -> list[str | None]:  # no job: what the loop gets for one firmware line
        host = MarlinHost(temperature_interval_s=0)
        return [e.fault for e in host.receive(line.encode() + b"\n", 1.0) if isinstance(e, FirmwareMessage)]

    assert idle_says("Error:Printer halted. kill() called!") == [FAILURE_HALTED]
    assert idle_says("Error:MAXTEMP triggered, system stopped!") == [FAILURE_THERMAL]
    assert idle_says('echo:Unknown command: "M999 halted-ish"') in ([], [None])
    assert idle_says("echo:busy: processing") in ([], [None])


