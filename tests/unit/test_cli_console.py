"""What `fabnode console` prints around the firmware's events: answers after their commands, GRBL's
numbered errors with their meaning, and how the last command went (no port needed)."""

from __future__ import annotations

import pytest

from drivers.events import CommandReply, FirmwareMessage, FirmwareReady, StatusReport
from fabnode.cli.console import ConsoleOutput, explain_line


def test_an_answer_nobody_asked_for_is_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    out = ConsoleOutput()
    out(CommandReply("M105", ("ok T:25.0 /0.0",), True))  # the connection's probe, before any command
    out.expect_answer("M115")
    out(CommandReply("M115", ("FIRMWARE_NAME:Marlin 2.1.2", "ok"), True))
    assert capsys.readouterr().out == "FIRMWARE_NAME:Marlin 2.1.2\nok\n"  # not shifted by the probe's ok
    assert out.wait_answers(0)


def test_grbl_errors_carry_their_meaning_and_the_last_answer_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = ConsoleOutput()
    out.expect_answer("G1 X1")
    out(CommandReply("G1 X1", ("error:22",), False))
    assert capsys.readouterr().out == "error:22 (feed rate has not been set or is undefined)\n"
    assert out.last_ok is False
    out.expect_answer("G0 X0")
    out(CommandReply("G0 X0", ("ok",), True))
    assert out.last_ok is True
    assert explain_line("error:99") == "error:99 (unknown GRBL error code)"
    assert explain_line("ALARM:1").startswith("ALARM:1 (hard limit")
    assert explain_line("echo:error:2 in a message") == "echo:error:2 in a message"


def test_a_quiet_command_is_answered_without_printing(capsys: pytest.CaptureFixture[str]) -> None:
    out = ConsoleOutput()
    out(FirmwareReady("start"))
    out.expect_answer("M115", quiet=True)
    out(FirmwareMessage("Cap:EEPROM:1"))
    out(CommandReply("M115", ("FIRMWARE_NAME:Marlin 2.1.2 (Jun 2024)", "ok"), True))
    assert capsys.readouterr().out == "start\n"
    assert out.quiet_replies == [("FIRMWARE_NAME:Marlin 2.1.2 (Jun 2024)", "ok")]
    assert out.last_ok is None and out.greeting == "start"


def test_a_status_report_is_counted_as_the_answer_to_a_question_mark() -> None:
    out = ConsoleOutput()
    assert out.wait_status_after(0, 0) is False
    out(StatusReport("Idle", fields={"MPos": "0.000,0.000,0.000"}))
    assert out.wait_status_after(0, 0) is True
