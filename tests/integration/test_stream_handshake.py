"""`fabnode stream --firmware marlin` connects to a printer whose RX buffer holds stray bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from simulators.marlin.simulator import MarlinSimulator
from tests.integration.test_stream_helpers import SimFactory, fabnode, job_commands, json_summary, sim_factory

BAUD = 1_000_000


@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    yield from sim_factory(MarlinSimulator, BAUD)


def leave_garbage(port: str, garbage: bytes) -> None:
    """Open the port as another program would, read the greeting, leave `garbage` unterminated."""
    with serial.Serial(port, BAUD, timeout=0.1) as link:
        deadline = time.monotonic() + 5
        reply = b""
        while b"Settings" not in reply and time.monotonic() < deadline:
            reply = link.readline()
        assert b"Settings" in reply, "the simulator did not greet"
        link.write(garbage)
        link.flush()


@pytest.mark.timeout(40)
@pytest.mark.parametrize("garbage", [b"?", b"$$?"])
def test_a_stray_byte_in_the_printers_buffer_does_not_stop_the_next_stream(
    start_sim: SimFactory, tmp_path: Path, garbage: bytes
) -> None:
    sim = start_sim()
    leave_garbage(sim.port, garbage)  # e.g. `fabnode stream --firmware grbl` tried on this port first
    job = tmp_path / "job.gcode"
    job.write_text("G28\nG1 X10 Y10 F3000\n", encoding="utf-8")
    args = ["stream", "--port", sim.port, "--firmware", "marlin", "--baud", str(BAUD),
            "--greeting-timeout", "0.5", "--json", str(job)]  # fmt: skip
    result = fabnode(*args)
    # the board does not reset on this second open: only the probe's answer shows it is there
    assert result.returncode == 0, result.stderr
    info = json_summary(result)
    assert (info["status"], info["lines_acked"]) == ("completed", 2)
    # the newline before the probe ended the stray bytes as a line of their own, which Marlin refused as
    # unknown (and said `ok`); the probe itself arrived whole
    assert job_commands(sim.executed) == [garbage.decode(), "G28", "G1X10Y10F3000"]  # sent compact
