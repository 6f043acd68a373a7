"""The streamer reading a job's file from disk (drivers.job_file.JobFile): a changed file fails the job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.streamer import KIND_FILE_CHANGED, StreamEnded
from fabnode.machine.profile import MachineProfile
from fabnode.node import prepare
from tests.unit.test_streamer import JOB, WIRE_LINES, make
from tests.unit.test_streamer_fakes import PtyEcho


@pytest.fixture
def echo() -> Iterator[PtyEcho]:
    peer = PtyEcho()
    yield peer
    peer.close()


def _prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, prepare.Preflight]:
    monkeypatch.setattr(prepare, "BLOCK_BYTES", 512)
    part = tmp_path / "cube.gcode"
    part.write_text("\n".join(JOB) + "\n", encoding="utf-8")
    pre = prepare.preflight(part, MachineProfile(volume_max_mm=(400.0, 400.0, 180.0)))
    assert pre.ok and pre.source is not None, pre.problems
    return part, pre


@pytest.mark.timeout(20)
def test_a_job_file_streams_from_disk_exactly_its_commands(
    echo: PtyEcho, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pre = _prepared(tmp_path, monkeypatch)
    streamer, rec, _ = make(echo.path)
    with streamer:
        streamer.start_job(pre.source, name="cube.gcode")  # type: ignore[arg-type]
        ended = rec.wait_for(StreamEnded)
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.lines_acked) == ("completed", len(WIRE_LINES))
    assert bytes(echo.received) == "".join(f"{line}\n" for line in WIRE_LINES).encode()


@pytest.mark.timeout(20)
def test_a_file_changed_after_preflight_fails_the_job_naming_it(
    echo: PtyEcho, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part, pre = _prepared(tmp_path, monkeypatch)
    data = part.read_bytes()
    part.write_bytes(data[:2000] + b"M502\n" + data[2005:])  # a line nobody checked
    streamer, rec, _ = make(echo.path)
    with streamer:
        streamer.start_job(pre.source, name="cube.gcode")  # type: ignore[arg-type]
        ended = rec.wait_for(StreamEnded)
    assert isinstance(ended, StreamEnded)
    assert (ended.status, ended.kind) == ("failed", KIND_FILE_CHANGED)
    assert str(part) in ended.reason and "changed since its preflight" in ended.reason
    assert b"M502" not in bytes(echo.received)
    assert 0 < ended.lines_acked < len(WIRE_LINES)
