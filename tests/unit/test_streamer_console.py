"""What `fabnode console` prints for each firmware event (the streamer's events, no port needed)."""

from __future__ import annotations

import pytest

from drivers.events import AlarmRaised, CommandReply, FirmwareMessage, StatusReport, Temperatures
from drivers.streamer import LinkLost
from fabnode.cli.console import ConsoleOutput


def test_async_temperatures_print_as_marlin_writes_them(capsys: pytest.CaptureFixture[str]) -> None:
    out = ConsoleOutput()
    out(Temperatures({"T": (209.5, 210.0), "B": (60.0, None)}))
    assert capsys.readouterr().out == "T:209.5 /210.0 B:60.0\n"


def test_a_reply_does_not_repeat_lines_already_shown(capsys: pytest.CaptureFixture[str]) -> None:
    out = ConsoleOutput()
    out.expect_answer()
    out(FirmwareMessage("$0=10"))  # shown at once: a long listing must not wait for its `ok`
    out(Temperatures({"T": (20.0, 0.0)}))  # part of the reply below: not shown twice
    out(CommandReply("$$", ("$0=10", "$1=25", "ok"), True))
    assert capsys.readouterr().out == "$0=10\n$1=25\nok\n"
    assert out.wait_answers(0)


def test_status_alarm_and_port_loss_read_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    out = ConsoleOutput()
    out(StatusReport("Idle", fields={"MPos": "0.000,0.000,0.000", "FS": "0,0"}))
    out(AlarmRaised(1, "hard limit triggered"))
    out(LinkLost("/dev/ttyACM0", "read failed: [Errno 5] Input/output error"))
    assert capsys.readouterr().out.splitlines() == [
        "<Idle|MPos:0.000,0.000,0.000|FS:0,0>",
        "ALARM:1 (hard limit triggered)",
        "fabnode: serial port /dev/ttyACM0 lost: read failed: [Errno 5] Input/output error",
    ]
    assert out.wait_answers(0)  # a lost port answers nothing more: stop waiting


def test_waiting_for_answers_gives_up_after_its_timeout() -> None:
    out = ConsoleOutput()
    out.expect_answer()
    assert out.wait_answers(0.05) is False
