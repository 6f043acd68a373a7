"""`fabnode stream` stopped by SIGTERM or SIGHUP stops the job as safely as Ctrl-C: heaters off, summary."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.marlin.simulator import MarlinSimulator
from tests.integration.test_stream_helpers import REPO, SimFactory, job_commands, sim_factory

BAUD = 1_000_000


@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    yield from sim_factory(MarlinSimulator, BAUD)


@pytest.mark.timeout(40)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_cancels_safely_and_says_so(start_sim: SimFactory, tmp_path: Path,
                                                  stop: signal.Signals) -> None:  # fmt: skip
    # Short moves at real speed (0.1 s each): the job is still running when the signal comes.
    path = tmp_path / "zigzag.gcode"
    path.write_text("G90\n" + "".join(f"G1 X{5 * (i % 2)} Y{i * 0.1:.1f} F3000\n" for i in range(300)))
    sim = start_sim(time_scale=1.0)
    args = ["stream", "--port", sim.port, "--firmware", "marlin", "--baud", str(BAUD),  # type: ignore[attr-defined]
            "--json", str(path)]
    proc = subprocess.Popen([sys.executable, "-m", "fabnode", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert sim.wait_executed(40, timeout=15)  # type: ignore[attr-defined]
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"{stop.name}: cancelling the job safely" in err
    assert '"status": "cancelled"' in out
    executed = job_commands(sim.executed)  # type: ignore[attr-defined]
    assert len(executed) < 250  # stopped well before the end
    assert executed[-7:] == job_commands(["M104 S0", "M140 S0", "M107", "G91", "G1 Z5 F600", "G90", "M84"])
