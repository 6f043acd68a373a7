"""`fabnode console` as a technician uses it, over a real pty to the GRBL and Marlin simulators:
a banner, each answer after its command, GRBL errors with their meaning, the exit code of the last."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.grbl.simulator import GrblSimulator
from simulators.marlin.simulator import MarlinSimulator
from tests.integration.test_stream_helpers import SimFactory, fabnode, sim_factory

BAUD = 1_000_000


@pytest.fixture
def grbl() -> Iterator[SimFactory]:
    yield from sim_factory(GrblSimulator, BAUD)


@pytest.fixture
def marlin() -> Iterator[SimFactory]:
    yield from sim_factory(MarlinSimulator, BAUD)


def console(port: str, firmware: str, stdin: str, *extra: str):  # type: ignore[no-untyped-def]
    args = ["console", "--port", port, "--firmware", firmware, "--baud", str(BAUD), *extra]
    return fabnode(*args, stdin=stdin)


def after(out: str, command: str) -> str:
    """What was printed after `> command` and before the next command."""
    return out.split(f"> {command}\n", 1)[1].split("\n> ", 1)[0]


@pytest.mark.timeout(30)
def test_grbl_banner_order_errors_and_exit_code(grbl: SimFactory) -> None:
    sim = grbl()
    result = console(sim.port, "grbl", "G0 X5\n?\nG1 X1 Y1\n")
    assert result.stderr.startswith(f"fabnode console: {sim.port} at {BAUD} baud, grbl (Grbl 1.1h); ")
    assert "`exit` or Ctrl-D to quit" in result.stderr
    assert after(result.stdout, "G0 X5") == "ok"
    assert after(result.stdout, "?").startswith("<Idle|MPos:5.000,0.000,0.000")  # after the G0, not before
    assert after(result.stdout, "G1 X1 Y1").strip() == "error:22 (feed rate has not been set or is undefined)"
    assert result.returncode == 1  # the last command was refused
    assert sim.executed == ["G0X5"]  # type: ignore[attr-defined]  # sent compact


@pytest.mark.timeout(30)
def test_grbl_exits_0_when_the_last_command_was_taken(grbl: SimFactory) -> None:
    sim = grbl()
    result = console(sim.port, "grbl", "G1 X1\nG0 X0\n")
    assert "error:22" in after(result.stdout, "G1 X1")
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(30)
def test_marlin_answers_follow_their_commands_even_after_a_probe(marlin: SimFactory) -> None:
    sim = marlin()
    # No wait for a greeting: the console probes with M105, whose `ok` must not shift the answers.
    result = console(sim.port, "marlin", "M115\nM104 S200\nM105\n", "--greeting-timeout", "0")
    assert result.returncode == 0, result.stderr
    assert "marlin (Marlin " in result.stderr
    assert "FIRMWARE_NAME:" in after(result.stdout, "M115")
    assert after(result.stdout, "M104 S200").strip() == "ok"
    assert "/200.0" in after(result.stdout, "M105")
