"""`fabnode stream` checks the file first (preflight, as the daemon does) unless --no-preflight, and
--quiet keeps the progress line out of a log; against the Marlin simulator over a real pty."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.marlin.simulator import MarlinSimulator
from tests.integration.test_stream_helpers import SimFactory, fabnode, json_summary, sim_factory

BAUD = 1_000_000


@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    yield from sim_factory(MarlinSimulator, BAUD)


def stream(port: str, path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return fabnode("stream", "--port", port, "--firmware", "marlin", "--baud", str(BAUD), *extra, str(path))


@pytest.mark.timeout(30)
def test_a_file_off_the_bed_is_refused_before_a_byte_is_sent(start_sim: SimFactory, tmp_path: Path) -> None:
    path = tmp_path / "far.gcode"
    path.write_text("G28\nG1 X10 Y10 F3000\nG1 X500 Y10\n")
    sim = start_sim()
    refused = stream(sim.port, path, "--json")
    assert refused.returncode == 1, refused.stderr
    assert f"{path}:3: " in refused.stderr and "X" in refused.stderr
    assert "--no-preflight" in refused.stderr
    assert refused.stdout == ""
    assert sim.executed == []  # type: ignore[attr-defined]
    sent = stream(sim.port, path, "--json", "--no-preflight", "--quiet")
    assert sent.returncode == 0, sent.stderr
    assert json_summary(sent)["status"] == "completed"
    assert "lines/s" not in sent.stderr and "%" not in sent.stderr  # --quiet: no progress line
