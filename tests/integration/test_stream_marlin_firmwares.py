"""The Marlin host against firmware habits that are not stock Marlin 2.1 (simulator options)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.events import HostActionRequested
from drivers.marlin import host as marlin
from simulators.marlin.options import VIRTUAL_PRINTER_ERRORS
from simulators.marlin.simulator import MarlinSimulator
from tests.conftest import gcode_path
from tests.integration.test_stream_helpers import (
    SimFactory,
    job_commands,
    run_job,
    sim_factory,
    wire_commands,
)

FAST_BAUD = 1_000_000
FAULT_AT = 40


def host(**kw: object) -> marlin.MarlinHost:
    kw.setdefault("no_answer_after_s", 3.0)
    kw.setdefault("poke_after_s", 0.5)
    return marlin.MarlinHost(**kw)  # type: ignore[arg-type]


@pytest.fixture
def start_sim() -> Iterator[SimFactory]:
    yield from sim_factory(MarlinSimulator, FAST_BAUD)


def file_lines(count: int) -> list[str]:
    return gcode_path("prusaslicer-cubhelix.gcode").read_text(encoding="utf-8").splitlines()[:count]


@pytest.mark.timeout(30)
def test_a_job_ends_on_firmware_that_says_ok_before_the_temperatures(start_sim: SimFactory) -> None:
    lines = file_lines(300)
    sim = start_sim(ok_before_output=True)
    ended, _ = run_job(
        sim.port, FAST_BAUD, host(no_answer_after_s=60.0, poke_after_s=30.0), lines, timeout=20
    )
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert job_commands(sim.executed) == job_commands(wire_commands(lines))  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_a_locked_printer_fails_the_job_and_says_how_to_unlock(start_sim: SimFactory) -> None:
    sim = start_sim(locked=True)
    ended, _ = run_job(
        sim.port, FAST_BAUD, host(no_answer_after_s=60.0, poke_after_s=30.0), file_lines(300), 20
    )
    assert (ended.status, ended.kind) == ("failed", "error"), ended.reason
    assert "locked" in ended.reason and "M511" in ended.reason
    assert ended.lines_acked == 0
    assert job_commands(sim.executed) == []  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_a_cancel_on_the_printers_screen_written_with_a_space_cancels_the_job(start_sim: SimFactory) -> None:
    sim = start_sim(action_at_line=(FAULT_AT, "cancel"), action_space=True)
    ended, rec = run_job(sim.port, FAST_BAUD, host(), file_lines(400), timeout=20)
    assert ended.status == "cancelled", ended.reason
    assert rec.of(HostActionRequested) == [HostActionRequested("cancel")]


@pytest.mark.timeout(30)
def test_one_fault_without_an_rx_flush_costs_at_most_the_lines_in_flight(start_sim: SimFactory) -> None:
    lines = file_lines(400)
    sim = start_sim(flush_on_error=False, checksum_error_at_line=FAULT_AT)
    ended, _ = run_job(sim.port, FAST_BAUD, host(), lines, timeout=20)
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert job_commands(sim.executed) == job_commands(wire_commands(lines))  # type: ignore[attr-defined]
    assert ended.resends == 1  # the host answered one request: the rest were copies of it
    # 127-byte window: at most ~8 short lines behind the bad one, each refused once
    assert sim.stats.resends_requested <= 8  # type: ignore[attr-defined]


VIRTUAL_BAUD = 115200  # the storm needs lines still on the wire when the first request comes


def lost_by_the_virtual_printer(lines: list[str], *numbers: int) -> list[str]:
    """The job's commands without those of these N: its resend_with_timeout counts N taken, never runs it."""
    commands = job_commands(wire_commands(lines))
    return [c for i, c in enumerate(commands, start=1) if i not in numbers]


@pytest.mark.timeout(30)
def test_one_fault_on_octoprints_virtual_printer_costs_one_resend_not_a_storm(start_sim: SimFactory) -> None:
    # Issue 9: a request for a line already being resent made the host resend again, which seeded
    # duplicates, each refused with a new request: 259-326 requests, 66-78 answered, then the job
    # failed ("asked for line N93 11 times in a row").
    lines = file_lines(400)
    sim = start_sim(
        baud=VIRTUAL_BAUD, virtual_printer=True, virtual_errors=((FAULT_AT, "resend_with_timeout"),)
    )
    ended, _ = run_job(sim.port, VIRTUAL_BAUD, host(), lines, timeout=20)
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert job_commands(sim.executed) == lost_by_the_virtual_printer(lines, FAULT_AT)  # type: ignore[attr-defined]
    assert ended.resends == 1
    # 127-byte window: the bad line, ~8 short lines behind it and the one duplicate, each refused once
    assert sim.stats.resends_requested <= 10  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_the_default_virtual_printers_four_faults_cost_one_resend_each(start_sim: SimFactory) -> None:
    lines = file_lines(400)
    errors = VIRTUAL_PRINTER_ERRORS  # 100 resend, 105 resend_with_timeout, 110 missing_lineno, 115 checksum
    sim = start_sim(baud=VIRTUAL_BAUD, virtual_printer=True, virtual_errors=errors)
    ended, _ = run_job(sim.port, VIRTUAL_BAUD, host(), lines, timeout=20)
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert job_commands(sim.executed) == lost_by_the_virtual_printer(lines, 105)  # type: ignore[attr-defined]
    assert ended.resends == 4
    assert sim.stats.resends_requested <= 4 * 10  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_a_checksum_error_on_the_virtual_printer_is_resent_once(start_sim: SimFactory) -> None:
    lines = file_lines(400)
    sim = start_sim(baud=VIRTUAL_BAUD, virtual_printer=True, checksum_error_at_line=FAULT_AT)
    ended, _ = run_job(sim.port, VIRTUAL_BAUD, host(), lines, timeout=20)
    assert (ended.status, ended.kind) == ("completed", ""), ended.reason
    assert job_commands(sim.executed) == job_commands(wire_commands(lines))  # type: ignore[attr-defined]
    assert ended.resends == 1
    assert sim.stats.resends_requested <= 10  # type: ignore[attr-defined]
