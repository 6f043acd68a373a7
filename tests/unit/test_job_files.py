"""A job's file on the node: only regular files up to the limit are read; what streams is what was checked."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from fabnode.gcode.analysis import analyze_bytes
from fabnode.machine.profile import MachineProfile
from fabnode.node import prepare
from fabnode.node.job_file import JobFile
from fabnode.node.logsafe import shown
from fabnode.node.prepare import preflight

PRINT = b"G28\nM104 S200\nG92 E0\n" + b"".join(
    b"G1 X%d Y%d E%d F1800 ; move %d\r\n" % (i % 100, i % 50, i, i) for i in range(1, 400)
)


def _within(seconds: float, fn):  # type: ignore[no-untyped-def]
    """fn() in a thread; its result, or a failure (not a hang) after `seconds`."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert out, f"still reading after {seconds} s"
    return out[0]


def test_a_device_is_refused_without_being_read() -> None:
    pre = _within(5.0, lambda: preflight(Path("/dev/zero"), MachineProfile(), 1024 * 1024))
    assert not pre.ok and pre.problems == ["a device, not a regular file: only regular files are read"]


def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "job.gcode"
    os.mkfifo(fifo)
    pre = _within(5.0, lambda: preflight(fifo, MachineProfile()))
    assert not pre.ok and "a pipe (FIFO), not a regular file" in pre.problems[0]


def test_a_file_over_the_limit_is_refused_by_its_size_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "huge.gcode"
    with open(big, "wb") as f:
        f.truncate(300 * 1024 * 1024)  # sparse: reading it would take seconds, checking its size does not
    started = time.monotonic()
    pre = preflight(big, MachineProfile(), 200 * 1024 * 1024)
    assert time.monotonic() - started < 1.0
    assert not pre.ok and pre.problems == [
        "300.0 MB (314572800 bytes), over the node's limit of 200.0 MB ([machine] max_job_mb)"]


@pytest.mark.parametrize("block", [7, 64, 1 << 18])
def test_the_lines_streamed_are_the_lines_analysed_across_blocks(tmp_path: Path, block: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "BLOCK_BYTES", block)
    data = b"\xef\xbb\xbf" + PRINT + b"G1 X1 ; no newline at the end"
    part = tmp_path / "part.gcode"
    part.write_bytes(data)
    pre = preflight(part, MachineProfile())
    analysis, text = analyze_bytes(data, MachineProfile())
    assert pre.ok, pre.problems
    assert pre.analysis is not None and pre.analysis.commands == analysis.commands
    assert pre.analysis.filament_mm == pytest.approx(analysis.filament_mm)
    assert pre.lines == text.splitlines()  # first line `G28`, not `\ufeffG28`; no `\r` left
    assert pre.source is not None and pre.source.commands == analysis.commands


def test_bad_bytes_are_a_problem_at_their_line_as_the_analysis_says(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "BLOCK_BYTES", 16)
    data = b"G28\nG1 X1\nG1 X2\nG1 X3 \xe9\nG1 X4\0\n"
    part = tmp_path / "part.gcode"
    part.write_bytes(data)
    expected = [f"line {p.line}: {p.message}" for p in analyze_bytes(data, MachineProfile())[0].problems]
    pre = preflight(part, MachineProfile())
    assert pre.problems == expected and "line 4" in pre.problems[0] and "offset 22" in pre.problems[0]


def test_a_file_changed_after_its_preflight_stops_at_the_changed_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare, "BLOCK_BYTES", 256)
    part = tmp_path / "part.gcode"
    part.write_bytes(PRINT)
    pre = preflight(part, MachineProfile())
    assert pre.ok and isinstance(pre.source, JobFile)
    changed = bytearray(PRINT)
    changed[600:604] = b"M502"  # a command preflight never saw
    part.write_bytes(bytes(changed))
    source, seen = pre.source, []
    i = 0
    while i < len(source):  # as drivers.marlin and drivers.grbl read it
        seen.append(source[i])
        i += 1
    assert not any("M502" in line for line in seen)
    assert len(seen) < PRINT.count(b"\n") and seen == [*PRINT.decode().splitlines()[: len(seen) - 1], ""]
    assert source.problem is not None and str(part) in source.problem and "changed since its preflight" in (
        source.problem)


def test_file_names_are_escaped_for_the_log(caplog: pytest.LogCaptureFixture) -> None:
    name = "evil\nfabnode relay off\x1b[2J.gcode"
    with caplog.at_level(logging.INFO, logger="fabnode.daemon"):
        logging.getLogger("fabnode.daemon").info("job started: %s", shown(name))
    (record,) = caplog.records
    assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()
    assert record.getMessage() == "job started: evil\\nfabnode relay off\\x1b[2J.gcode"
    assert shown("plain name.gcode") == "plain name.gcode" and shown("a\\nb") == "a\\\\nb"


def test_a_job_streams_the_file_it_checked_after_a_move_and_a_fifo_in_its_place(tmp_path: Path) -> None:
    part = tmp_path / "inbox" / "part.gcode"
    part.parent.mkdir()
    part.write_bytes(PRINT)
    pre = preflight(part, MachineProfile())
    assert pre.ok and pre.source is not None
    os.replace(part, tmp_path / "accepted.gcode")  # the inbox accepts the file: it moves
    os.mkfifo(part)  # and something else takes its name, which would block a re-open by path
    lines = _within(5.0, lambda: list(pre.source))  # type: ignore[arg-type]
    assert lines == PRINT.decode().splitlines() and pre.source.problem is None
