"""`fabnode stream` and `fabnode console` as a technician runs them, against the Marlin simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.marlin.simulator import MarlinSimulator
from tests.conftest import gcode_path
from tests.integration.test_stream_helpers import (
    REPO,
    SimFactory,
    fabnode,
    job_commands,
    json_summary,
    sim_factory,
    wire_commands,
    write_prefix,
)

BAUD = 1_000_000
SUMMARY_KEYS = {"status", "lines", "lines_acked", "bytes", "resends", "duration_s", "last_line", "reason",
                "filament_mm", "laser_on_s", "efficiency"}

@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    yield from sim_factory(MarlinSimulator, BAUD)


@pytest.fixture
def vase(tmp_path: Path) -> tuple[Path, list[str]]:
    return write_prefix(gcode_path("prusaslicer-vase.gcode"), 600, tmp_path)


def stream_args(port: str, path: Path, *extra: str) -> list[str]:
    return ["stream", "--port", port, "--firmware", "marlin", "--baud", str(BAUD), *extra, str(path)]


@pytest.mark.timeout(30)
def test_stream_json_summary_of_a_completed_job(start_sim: SimFactory, vase: tuple) -> None:
    path, lines = vase
    sim = start_sim()
    result = fabnode(*stream_args(sim.port, path, "--json"))  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stderr
    info = json_summary(result)
    assert info.keys() >= SUMMARY_KEYS
    commands = wire_commands(lines)
    assert (info["status"], info["lines"], info["lines_acked"]) == ("completed", len(commands), len(commands))
    assert info["last_line"] == max(i for i, line in enumerate(lines, 1) if wire_commands([line]))
    assert info["resends"] == 0 and info["reason"] is None
    assert isinstance(info["filament_mm"], float) and info["filament_mm"] > 0
    assert 0 < float(info["efficiency"]) <= 1.05  # type: ignore[arg-type]
    assert job_commands(sim.executed) == job_commands(commands)  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_stream_shows_progress_and_a_human_summary(start_sim: SimFactory, vase: tuple) -> None:
    path, lines = vase
    sim = start_sim()
    result = fabnode(*stream_args(sim.port, path))  # type: ignore[attr-defined]
    assert result.returncode == 0, result.stderr
    assert "lines/s" in result.stderr and "100.0%" in result.stderr
    n = len(wire_commands(lines))
    assert f"completed, {n}/{n} lines acknowledged" in result.stdout
    assert "filament" in result.stdout


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [
        ("kill_at_line", 3, "printer halted"),
        ("thermal_runaway_at_line", 4, "thermal protection"),
        ("reset_at_line", 5, "firmware reset"),
        ("silence_at_line", 8, "no answer"),
        ("drop_connection_at_line", 9, "port was lost"),
    ],
)
def test_stream_exit_codes_name_the_fault(
    start_sim: SimFactory, vase: tuple, fault: str, code: int, message: str
) -> None:
    path, _ = vase
    sim = start_sim(**{fault: 30})
    result = fabnode(*stream_args(sim.port, path, "--json", "--answer-timeout", "1"))  # type: ignore[attr-defined]
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "last acknowledged file line" in result.stderr
    info = json_summary(result)
    assert info["status"] == "failed" and int(info["lines_acked"]) < 30  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_cancel_after_lines_stops_safely(start_sim: SimFactory, vase: tuple) -> None:
    path, lines = vase
    sim = start_sim()
    result = fabnode(*stream_args(sim.port, path, "--json", "--cancel-after-lines", "50"))  # type: ignore[attr-defined]
    assert result.returncode == 1, result.stderr
    info = json_summary(result)
    assert info["status"] == "cancelled"
    assert 50 <= int(info["lines_acked"]) < len(wire_commands(lines))  # type: ignore[arg-type]
    executed = sim.executed  # type: ignore[attr-defined]
    assert "M104 S0" in executed[-8:]  # the safe stop ran after the job's last line


@pytest.mark.timeout(30)
def test_ctrl_c_cancels_safely_and_exits_130(start_sim: SimFactory, tmp_path: Path) -> None:
    # Short moves at real speed (0.1 s each): the job is still running when Ctrl-C comes.
    path = tmp_path / "zigzag.gcode"
    path.write_text("G90\n" + "".join(f"G1 X{5 * (i % 2)} Y{i * 0.1:.1f} F3000\n" for i in range(300)))
    sim = start_sim(time_scale=1.0)
    proc = subprocess.Popen([sys.executable, "-m", "fabnode", *stream_args(sim.port, path, "--json")],  # type: ignore[attr-defined]
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sim.wait_executed(40, timeout=15)  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Ctrl-C" in err
    assert '"status": "cancelled"' in out
    executed = job_commands(sim.executed)  # type: ignore[attr-defined]
    assert len(executed) < 250  # stopped well before the end
    assert executed[-7:] == job_commands(["M104 S0", "M140 S0", "M107", "G91", "G1 Z5 F600", "G90", "M84"])


@pytest.mark.timeout(20)
def test_missing_port_exits_9(vase: tuple) -> None:
    path, _ = vase
    result = fabnode(*stream_args("/dev/ttyNOPE7", path))
    assert result.returncode == 9
    assert "cannot open /dev/ttyNOPE7" in result.stderr


@pytest.mark.timeout(20)
def test_a_port_where_nothing_answers_exits_8(vase: tuple) -> None:
    path, _ = vase
    master, slave = os.openpty()
    try:
        result = fabnode(*stream_args(os.ttyname(slave), path, "--greeting-timeout", "0.3"))
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 8
    assert "no answer from the firmware" in result.stderr


@pytest.mark.timeout(20)
def test_console_prints_the_answers(start_sim: SimFactory) -> None:
    sim = start_sim()
    result = fabnode("console", "--port", sim.port, "--firmware", "marlin", "--baud", str(BAUD),  # type: ignore[attr-defined]
                     stdin="M104 S200\nM105\nM115\nexit\nM84\n")
    assert result.returncode == 0, result.stderr
    assert "start" in result.stdout  # the board's greeting
    assert "FIRMWARE_NAME:" in result.stdout
    assert "/200.0" in result.stdout  # M105 reports the new target
    assert "M84" not in sim.executed  # type: ignore[attr-defined]  # nothing after `exit` is sent


@pytest.mark.timeout(30)
def test_cancel_on_the_printer_screen_exits_1(start_sim: SimFactory, vase: tuple) -> None:
    path, _ = vase
    sim = start_sim(action_at_line=(40, "cancel"))
    result = fabnode(*stream_args(sim.port, path, "--json"))  # type: ignore[attr-defined]
    assert result.returncode == 1, result.stderr
    info = json_summary(result)
    assert info["status"] == "cancelled"
    assert "job cancelled" in result.stderr
    assert "M104 S0" in sim.executed  # type: ignore[attr-defined]
