"""What `fabnode stream` shows while a job runs and after it: "heating" instead of a rate while the
firmware waits for a heater, --quiet, a calm rhythm when piped, and JSON with null for absent values."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from drivers.events import Temperatures
from drivers.streamer import Progress, StreamEnded
from fabnode.cli import stream as stream_cli
from fabnode.cli.stream import JobWatch, ProgressBar, summary


def progress(acked: int, total: int = 1000, rate: float = 0.0) -> Progress:
    return Progress("job.gcode", acked, total, acked * 20, 100.0 * acked / total, 12.0, 14_434.0, rate, acked)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_while_the_firmware_heats_the_line_says_heating_not_a_rate() -> None:
    watch = JobWatch()
    watch(progress(5))
    watch(Temperatures({"T": (152.4, 210.0), "B": (60.0, 60.0)}))
    assert watch.heating(watch.progress_at + 0.5) is None  # lines still flowing a moment ago
    assert watch.heating(watch.progress_at + 5.0) == "T 152/210 °C"
    out = Tty()
    bar = ProgressBar(out)
    bar.update(watch.progress, heating=watch.heating(watch.progress_at + 5.0))
    assert "heating (T 152/210 °C)" in out.getvalue()
    assert "lines/s" not in out.getvalue() and "ETA" not in out.getvalue()
    watch(Temperatures({"T": (209.0, 210.0), "B": (60.0, 60.0)}))  # at temperature: a rate again
    assert watch.heating(watch.progress_at + 5.0) is None


def test_quiet_prints_no_progress() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, quiet=True)
    for n in range(0, 1001, 50):
        bar.update(progress(n), force=True)
    bar.finish()
    assert out.getvalue() == ""


def test_piped_progress_is_a_line_per_tenth_or_half_minute_not_one_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(stream_cli.time, "monotonic", lambda: clock[0])
    out = io.StringIO()  # not a terminal: a log file or a pipe
    bar = ProgressBar(out)
    for second in range(600):  # ten minutes of a slow job, a progress event every second
        clock[0] += 1.0
        bar.update(progress(second, rate=1.0))
    lines = out.getvalue().splitlines()
    assert 20 <= len(lines) <= 27  # 600 s / 30 s, and each further 10 % (up to 60 % here)
    bar.update(progress(1000, rate=1.0), force=True)
    assert out.getvalue().splitlines()[-1].startswith("[####################] 100.0%")


def test_json_summary_uses_null_for_absent_values_and_rounds_figures() -> None:
    ended = StreamEnded("job.gcode", "completed", "", "", 0, 0, 0, 0.0, 0)  # type: ignore[arg-type]
    info = summary(Path("job.gcode"), ended, 0, 115200, False, (868.0765900000022, None))
    assert info["reason"] is None and info["kind"] is None and info["last_line"] is None
    assert info["efficiency"] is None and info["laser_on_s"] is None
    assert info["filament_mm"] == 868.1
    assert '"reason": null' in json.dumps(info)
