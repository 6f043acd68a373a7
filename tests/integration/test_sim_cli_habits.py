"""`fabnode sim marlin` offers other firmware's habits as flags: a technician can rehearse them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_stream_helpers import REPO, fabnode


@pytest.mark.timeout(60)
def test_a_locked_printer_from_the_cli_fails_the_stream_and_says_how_to_unlock(tmp_path: Path) -> None:
    sim = subprocess.Popen([sys.executable, "-m", "fabnode", "sim", "marlin", "--sim-speed", "0", "--baud",
                            "1000000", "--locked"], stdout=subprocess.PIPE, text=True, cwd=REPO)  # fmt: skip
    try:
        assert sim.stdout is not None
        port = sim.stdout.readline().strip()
        job = tmp_path / "job.gcode"
        job.write_text("G28\nG1 X10 Y10 F3000\n", encoding="utf-8")
        result = fabnode("stream", "--port", port, "--firmware", "marlin", "--baud", "1000000", str(job))
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
    assert result.returncode == 7, result.stderr  # the firmware refused a line
    assert "locked" in result.stderr and "M511" in result.stderr
