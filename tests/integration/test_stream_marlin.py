"""The Streamer with drivers.marlin.host.MarlinHost against the Marlin simulator over a real pty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.marlin import host as marlin
from simulators.marlin.simulator import MarlinSimulator
from tests.conftest import gcode_path
from tests.integration.test_stream_helpers import (
    SimFactory,
    job_commands,
    run_job,
    sim_factory,
    wire_commands,
)

FAST_BAUD = 1_000_000  # content tests: the wire's speed is not what they check
FAULT_AT = 40  # the wire's N of the line at which a fault fires


def host(**kw: object) -> object:
    kw.setdefault("no_answer_after_s", 1.5)
    kw.setdefault("poke_after_s", 0.3)
    return marlin.MarlinHost(**kw)

@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    yield from sim_factory(MarlinSimulator, FAST_BAUD)


def file_lines(name: str, count: int) -> list[str]:
    return gcode_path(name).read_text(encoding="utf-8").splitlines()[:count]


@pytest.mark.timeout(40)
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_printer_executes_exactly_the_file_commands(start_sim: SimFactory, noise: float) -> None:
    lines = file_lines("prusaslicer-vase.gcode", 2500)
    sim = start_sim(noise=noise, seed=3)
    ended, _ = run_job(sim.port, FAST_BAUD, host(), lines)  # type: ignore[attr-defined]
    expected = wire_commands(lines)
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert job_commands(sim.executed) == job_commands(expected)  # type: ignore[attr-defined]
    assert ended.lines_acked == len(expected)
    last = max(i for i, line in enumerate(lines, 1) if wire_commands([line]))
    assert ended.last_line_no == last
    stats = sim.stats  # type: ignore[attr-defined]
    assert stats.overflow_drops == 0
    if noise:
        assert stats.corrupted_lines > 0 and ended.resends > 0


FAULTS = [
    # (simulator fault, JobEnded.kind, words the reason must contain)
    ("kill_at_line", "halted", "halted"),
    ("thermal_runaway_at_line", "thermal", "Thermal Runaway"),
    ("reset_at_line", "reset", "start"),
    ("silence_at_line", "no_answer", ""),
    ("drop_connection_at_line", "port_lost", "lost"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("fault", "kind", "words"), FAULTS)
def test_each_fault_ends_the_job_with_its_kind(
    start_sim: SimFactory, fault: str, kind: str, words: str
) -> None:
    lines = file_lines("prusaslicer-cubhelix.gcode", 400)
    sim = start_sim(**{fault: FAULT_AT})
    ended, _ = run_job(sim.port, FAST_BAUD, host(), lines, timeout=15)  # type: ignore[attr-defined]
    assert (ended.status, ended.kind) == ("failed", kind), ended.reason
    assert words.lower() in ended.reason.lower()
    executed = job_commands(sim.executed)  # type: ignore[attr-defined]
    # Only lines the printer really executed are acknowledged: none past the fault.
    assert ended.lines_acked <= len(executed) < FAULT_AT
    assert ended.lines_acked < len(wire_commands(lines))


@pytest.mark.timeout(20)
def test_resend_without_ok_still_completes_every_line_once(start_sim: SimFactory) -> None:
    lines = file_lines("prusaslicer-cubhelix.gcode", 400)
    sim = start_sim(resend_without_ok_at_line=FAULT_AT)
    ended, _ = run_job(sim.port, FAST_BAUD, host(), lines, timeout=15)  # type: ignore[attr-defined]
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert job_commands(sim.executed) == job_commands(wire_commands(lines))  # type: ignore[attr-defined]
