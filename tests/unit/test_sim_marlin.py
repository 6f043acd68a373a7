"""The Marlin simulator as a host sees it: pyserial on the pty, bytes on the wire."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from simulators.marlin.lines import LineChecker, marlin_checksum, normalise
from simulators.marlin.simulator import MarlinSimulator

pytestmark = pytest.mark.timeout(30)


def numbered(n: int, command: str) -> bytes:
    """A host's numbered line, checksum computed here (not with the simulator's code)."""
    body = f"N{n} {command}".encode()
    checksum = 0
    for byte in body:
        checksum ^= byte
    return body + f"*{checksum}\n".encode()


class Host:
    """A minimal host on a real pyserial port."""

    def __init__(self, sim: MarlinSimulator) -> None:
        self.sim = sim
        self.port = serial.Serial(sim.port, 115200, timeout=0.05)
        self.seen: list[str] = []

    def send(self, *lines: bytes | str) -> None:
        for line in lines:
            self.port.write(line if isinstance(line, bytes) else f"{line}\n".encode())

    def read_until(self, done: Callable[[str], bool], timeout: float = 3.0) -> list[str]:
        """Lines read up to and including the first that satisfies `done`."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self.port.readline()
            if not raw:
                continue
            line = raw.decode("latin-1").rstrip("\r\n")
            got.append(line)
            self.seen.append(line)
            if done(line):
                return got
        raise AssertionError(f"timed out; got {got!r}")

    def oks(self, count: int, timeout: float = 3.0) -> list[str]:
        """Lines read until `count` lines starting with `ok` arrived."""
        got: list[str] = []
        for _ in range(count):
            got += self.read_until(lambda line: line.startswith("ok"), timeout)
        return got

    def quiet_for(self, seconds: float) -> list[str]:
        """Everything that arrives within `seconds` (to check for silence)."""
        deadline = time.monotonic() + seconds
        got: list[str] = []
        while time.monotonic() < deadline:
            raw = self.port.readline()
            if raw:
                got.append(raw.decode("latin-1").rstrip())
        return got


@pytest.fixture
def make_host() -> Iterator[Callable[..., Host]]:
    sims: list[MarlinSimulator] = []
    hosts: list[Host] = []

    def make(**options: object) -> Host:
        options.setdefault("time_scale", 0)
        sim = MarlinSimulator(**options).start()  # type: ignore[arg-type]
        sims.append(sim)
        host = Host(sim)
        hosts.append(host)
        host.read_until(lambda line: line.startswith("echo:") and "Settings" in line)  # the greeting
        return host

    yield make
    for host in hosts:
        host.port.close()
    for sim in sims:
        sim.stop()


def test_greets_with_start_after_the_host_opens(make_host) -> None:
    host = make_host()
    assert host.seen[0] == "start"
    assert "echo:Marlin 2.1.2" in host.seen


def test_numbered_lines_are_acked_and_recorded_normalised(make_host, tmp_path: Path) -> None:
    record = tmp_path / "executed.txt"
    host = make_host(record=record)
    host.send(numbered(0, "M110 N0"))
    host.oks(1)
    host.send(numbered(1, "G28"), numbered(2, "G1  X10   Y5 F3000"), "G1 X1 ; unnumbered, commented")
    lines = host.oks(3)
    assert lines == ["ok", "ok", "ok"]
    assert host.sim.executed == ["M110 N0", "G28", "G1 X10 Y5 F3000", "G1 X1"]
    assert record.read_text().splitlines() == host.sim.executed
    assert host.sim.stats.lines_received == 4


def test_checksum_error_asks_for_a_resend_and_refuses_later_lines(make_host) -> None:
    host = make_host()
    host.send(numbered(0, "M110 N0"))
    # M110 sets the line number again when it runs: a line read before that would be refused
    host.oks(1)
    host.send(numbered(1, "G1 X1"))
    host.oks(1)
    bad = numbered(2, "G1 X2").replace(b"X2", b"X3")  # corrupted after the checksum was taken
    host.send(bad)
    assert host.oks(1) == ["Error:checksum mismatch, Last Line: 1", "Resend: 2", "ok"]
    host.send(numbered(3, "G1 X3"))  # sent after the bad one: refused too
    assert host.oks(1) == ["Error:Line Number is not Last Line Number+1, Last Line: 1", "Resend: 2", "ok"]
    host.send(numbered(2, "G1 X2"), numbered(3, "G1 X3"))
    assert host.oks(2) == ["ok", "ok"]
    assert host.sim.executed[-3:] == ["G1 X1", "G1 X2", "G1 X3"]
    assert host.sim.stats.checksum_errors == 1
    assert host.sim.stats.line_number_errors == 1
    assert host.sim.stats.resends_requested == 2


def test_numbered_line_without_checksum_is_refused_and_m110_sets_the_number(make_host) -> None:
    host = make_host()
    host.send("N1 G1 X1")
    assert host.oks(1) == ["Error:No Checksum with line number, Last Line: 0", "Resend: 1", "ok"]
    host.send(numbered(41, "M110 N41"), numbered(42, "G1 X1"))
    assert host.oks(2) == ["ok", "ok"]
    assert host.sim.stats.missing_checksum_errors == 1


def test_unknown_command_is_echoed_then_acked(make_host) -> None:
    host = make_host()
    host.send(numbered(1, 'M862.3 P "MINI"'))
    assert host.oks(1) == ['echo:Unknown command: "M862.3 P "MINI""', "ok"]


def test_advanced_ok_reports_line_planner_and_queue_room(make_host) -> None:
    host = make_host(advanced_ok=True, time_scale=1.0)
    host.send(numbered(1, "G1 X100 F600"))  # a 10 s move: it holds one planner block
    assert host.oks(1) == ["ok N1 P14 B3"]
    host.send("G1 X0")
    assert host.oks(1) == ["ok P13 B3"]


def test_m105_and_m115_answer_as_marlin_does(make_host) -> None:
    host = make_host()
    host.send("M104 S200", "M105")
    lines = host.oks(2)
    assert re.fullmatch(r"ok T:200\.00 /200\.00 B:\d+\.\d\d /0\.00 @:\d+ B@:0", lines[-1])
    host.send("M115")
    caps = host.oks(1)
    assert caps[0].startswith("FIRMWARE_NAME:Marlin 2.1.2 ")
    for cap in ("Cap:AUTOREPORT_TEMP:1", "Cap:EEPROM:1", "Cap:ADVANCED_OK:0"):
        assert cap in caps


def test_settings_are_stored_and_reported(make_host) -> None:
    host = make_host()
    host.send("M92 X100.5 E415", "M301 P30 I2.5 D90", "M851 Z-1.25", "M500", "M502", "M501", "M503")
    report = host.oks(7)
    assert any(line.startswith("echo:Settings Stored") for line in report)
    assert "echo:  M92 X100.50 Y80.00 Z400.00 E415.00" in report
    assert "echo:  M301 P30.00 I2.50 D90.00" in report
    assert "echo:  M851 X10.00 Y10.00 Z-1.25 ; (mm)" in report


def test_autotune_prints_a_result_block_and_applies_it(make_host) -> None:
    host = make_host(time_scale=0.001, temp_interval_s=0.05)
    host.send("M303 E0 S210 C8 U1", "M301")
    lines = host.oks(2)
    assert lines[0] == "PID Autotune start"
    kp = next(line for line in lines if line.startswith("#define DEFAULT_Kp "))
    assert f"echo:  M301 P{float(kp.split()[-1]):.2f} " in lines[-2]


def test_heating_wait_sends_busy_and_temperatures(make_host) -> None:
    host = make_host(time_scale=0.02, busy_interval_s=0.2, temp_interval_s=0.1)
    started = time.monotonic()
    host.send("M109 S200")
    lines = host.oks(1, timeout=10)
    assert "echo:busy: processing" in lines
    temps = [line for line in lines if line.startswith(" T:")]
    assert len(temps) >= 3
    assert temps[-1].startswith(" T:200.00 /200.00")
    assert time.monotonic() - started > 0.2  # it did wait


def test_m108_breaks_a_heating_wait(make_host) -> None:
    host = make_host(time_scale=1.0, temp_interval_s=0.1)
    host.send("M190 S100")
    host.read_until(lambda line: line.startswith(" T:"))
    host.send("M108")
    lines = host.oks(2, timeout=2)
    assert lines[-1] == "ok"
    assert not host.sim.halted


def test_m155_auto_reports_temperatures(make_host) -> None:
    host = make_host()
    host.send("M155 S1")
    host.oks(1)
    line = host.read_until(lambda line: line.startswith(" T:"), timeout=2)[-1]
    assert re.fullmatch(r" T:\d+\.\d\d /0\.00 B:\d+\.\d\d /0\.00 @:0 B@:0", line)


def test_m112_halts_and_falls_silent(make_host) -> None:
    host = make_host()
    host.send("M112")
    host.read_until(lambda line: line == "Error:Printer halted. kill() called!")
    host.send("M105")
    assert host.quiet_for(0.3) == []


def test_moves_take_their_scaled_time(make_host) -> None:
    host = make_host(time_scale=0.05)
    started = time.monotonic()
    host.send(*["G1 X100 F6000", "G1 X0"] * 5, "M400")  # 10 moves of 1 s each
    host.oks(11, timeout=5)
    assert time.monotonic() - started >= 10 * 1.0 * 0.05


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("kill_at_line", ["Error:Printer halted. kill() called!"]),
        (
            "thermal_runaway_at_line",
            ["Error:Thermal Runaway, system stopped! Heater_ID: 0", "Error:Printer halted. kill() called!"],
        ),
    ],
)
def test_halting_faults_fire_at_their_line(make_host, fault: str, expected: list[str]) -> None:
    host = make_host(**{fault: 3})
    host.send(*(numbered(n, f"G1 X{n}") for n in (1, 2, 3, 4)))
    lines = host.read_until(lambda line: line == expected[-1])
    assert lines[-len(expected) :] == expected
    assert lines.count("ok") == 2
    assert host.quiet_for(0.2) == []
    assert host.sim.executed == ["G1 X1", "G1 X2"]


def test_reset_fault_greets_again_and_forgets_line_numbers(make_host) -> None:
    host = make_host(reset_at_line=2)
    host.send(numbered(1, "G1 X1"), numbered(2, "G1 X2"))
    host.read_until(lambda line: line == "start")
    host.read_until(lambda line: "Settings" in line)
    host.send(numbered(3, "G1 X3"))
    assert host.oks(1) == ["Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok"]


def test_silence_fault_stops_answering(make_host) -> None:
    host = make_host(silence_at_line=2)
    host.send(numbered(1, "G1 X1"), numbered(2, "G1 X2"), "M105")
    assert host.oks(1) == ["ok"]
    assert host.quiet_for(0.3) == []


def test_resend_without_ok_fault(make_host) -> None:
    host = make_host(resend_without_ok_at_line=2)
    host.send(numbered(1, "G1 X1"))
    # one at a time: a refused line is answered when it is read, before the ok of a line queued with it
    assert host.oks(1) == ["ok"]
    host.send(numbered(2, "G1 X2"))
    lines = host.read_until(lambda line: line.startswith("Resend:"))
    assert lines == ["Error:checksum mismatch, Last Line: 1", "Resend: 2"]
    assert host.quiet_for(0.2) == []
    host.send(numbered(2, "G1 X2"))
    assert host.oks(1) == ["ok"]


def test_drop_connection_fault_closes_the_port(make_host) -> None:
    host = make_host(drop_connection_at_line=2)
    host.send(numbered(1, "G1 X1"), numbered(2, "G1 X2"))
    deadline = time.monotonic() + 3
    with pytest.raises(serial.SerialException):
        while time.monotonic() < deadline:
            host.port.read(100)
    assert host.sim.stats.connection_dropped


def test_action_fault_asks_the_host_to_pause(make_host) -> None:
    host = make_host(action_at_line=(2, "pause"))
    host.send(numbered(1, "G1 X1"), numbered(2, "G1 X2"))
    assert host.oks(2) == ["ok", "//action:pause", "ok"]


@pytest.mark.timeout(60)
def test_cli_prints_the_port_first_and_stats_on_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "job.txt"
    command = [sys.executable, "-m", "fabnode", "sim", "marlin", "--time-scale", "0"]
    proc = subprocess.Popen(
        [*command, "--advanced-ok", "--record", str(record)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port_path = proc.stdout.readline().strip()
        with serial.Serial(port_path, 115200, timeout=0.1) as port:
            deadline = time.monotonic() + 10
            reply = b""
            while b"Settings" not in reply and time.monotonic() < deadline:
                reply = port.readline()  # the greeting, after the reset the open caused
            port.write(numbered(1, "G1 X1"))
            while not reply.startswith(b"ok N1") and time.monotonic() < deadline:
                reply = port.readline()
            assert reply.startswith(b"ok N1 P")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert record.read_text() == "G1 X1\n"
    stats = json.loads(out.strip().splitlines()[-1].removeprefix("stats: "))
    assert stats["lines_received"] == 1


def test_checksum_matches_the_well_known_m110_line() -> None:
    # "N0 M110 N0*125" is the line OctoPrint and Pronterface open every Marlin connection with
    assert marlin_checksum("N0 M110 N0") == 125
    checker = LineChecker()
    assert checker.check("N0 M110 N0*125").accepted


def test_m110_line_number_is_taken_from_its_own_n() -> None:
    checker = LineChecker()
    verdict = checker.check(numbered(7, "M110 N99").decode().strip())
    assert verdict.accepted
    assert checker.last_n == 99


def test_m110_line_number_is_the_first_n_from_the_fifth_character_as_marlin_finds_it() -> None:
    # queue.cpp: strchr(command + 4, 'N'), so an N word before "M110" is the number taken
    checker = LineChecker()
    assert checker.check(numbered(7, "G4 N3 M110").decode().strip()).accepted
    assert checker.last_n == 3


def test_normalise_drops_number_checksum_comment_and_extra_spaces() -> None:
    assert normalise("N12  G1   X1 Y2*71 ; move") == "G1 X1 Y2"
    assert normalise("  M104 S200 ;hotend") == "M104 S200"


def test_without_rx_flush_every_line_behind_a_bad_one_is_refused(make_host) -> None:
    host = make_host(flush_on_error=False)
    bad = numbered(1, "G1 X1").replace(b"X1", b"X7")
    host.send(bad, numbered(2, "G1 X2"), numbered(3, "G1 X3"))  # together in the RX buffer
    lines = host.oks(3)
    assert lines == [
        "Error:checksum mismatch, Last Line: 0", "Resend: 1", "ok",
        "Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok",
        "Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok",
    ]  # fmt: skip
    assert host.sim.stats.resends_requested == 3


def test_checksum_error_fault_refuses_its_line_once(make_host) -> None:
    host = make_host(checksum_error_at_line=2)
    host.send(numbered(1, "G1 X1"))
    assert host.oks(1) == ["ok"]
    host.send(numbered(2, "G1 X2"))
    assert host.oks(1) == ["Error:checksum mismatch, Last Line: 1", "Resend: 2", "ok"]
    host.send(numbered(2, "G1 X2"))
    assert host.oks(1) == ["ok"]
    assert host.sim.executed == ["G1 X1", "G1 X2"]


def test_ok_before_output_answers_m105_with_ok_first(make_host) -> None:
    host = make_host(ok_before_output=True)
    host.send("M105")
    assert host.oks(1) == ["ok"]
    assert re.fullmatch(
        r" T:\d+\.\d\d /0\.00 B:\d+\.\d\d /0\.00 @:0 B@:0", host.read_until(lambda _: True)[0]
    )


def test_action_space_writes_host_actions_with_a_space(make_host) -> None:
    host = make_host(action_at_line=(2, "cancel"), action_space=True)
    host.send(numbered(1, "G1 X1"), numbered(2, "G1 X2"))
    assert host.oks(2) == ["ok", "// action:cancel", "ok"]


def test_a_locked_printer_answers_every_command_and_runs_none(make_host) -> None:
    host = make_host(locked=True)
    host.send(numbered(0, "M110 N0"))
    assert host.oks(1) == ["ok"]
    host.send(numbered(1, "G28"), "M105")
    assert host.oks(2) == ["echo:Printer locked! (Unlock with M511 or LCD)", "ok"] * 2
    assert host.sim.executed == ["M110 N0"]
