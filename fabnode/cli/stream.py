"""`fabnode stream`: check one G-code file (preflight), send it to the firmware with progress, summarise.

The exit codes are fabnode.cli.exits (EXIT_HELP is shown by `fabnode stream --help`). The serial
port is opened by fabnode.cli.firmware_link, as `console` and calibration open it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

import typer

from drivers.events import HostActionRequested, JobState, LineAcked, Temperatures
from drivers.streamer import Progress, StreamEnded, Streamer, count_job_lines
from fabnode.cli import exits
from fabnode.cli.firmware_link import FIRMWARES, check_firmware, connect, fail, make_protocol, probe_command

__all__ = ["EXIT_CODES", "FIRMWARES", "ProgressBar", "connect", "fail", "make_protocol", "probe_command"]

# How a job ended -> its exit code (the table is fabnode.cli.exits, also in README.md).
EXIT_CODES = {
    "completed": exits.OK, "cancelled": exits.FAILED, "halted": exits.HALTED, "thermal": exits.THERMAL,
    "reset": exits.RESET, "alarm": exits.ALARM, "error": exits.REFUSED_LINE, "no_answer": exits.NO_ANSWER,
    "port_lost": exits.PORT, "internal": exits.INTERNAL, "host_closed": exits.INTERNAL,
    "rejected": exits.INTERNAL,
}
EXIT_INTERRUPTED = exits.INTERRUPTED
EXIT_HELP = exits.help_text(exits.OK, exits.FAILED, exits.USAGE, exits.HALTED, exits.THERMAL, exits.RESET,
                            exits.ALARM, exits.REFUSED_LINE, exits.NO_ANSWER, exits.PORT, exits.INTERNAL,
                            exits.INTERRUPTED)
# What a technician should do next, by how the job ended.
ADVICE = {
    "halted": "printer halted: check it, then reset or power-cycle it (M999 may clear a halt)",
    "thermal": "thermal protection stopped the printer: have the heater and thermistor checked before reuse",
    "reset": "the firmware reset during the job (power dip, brown-out or another program opened the port)",
    "alarm": "GRBL alarm: check the machine, then unlock with $X or home with $H",
    "error": "the firmware refused a line of the file",
    "no_answer": "no answer from the firmware",
    "port_lost": "the serial port was lost: check the USB cable and the machine's power",
    "cancelled": "job cancelled",
}
# A heater this far below its target while no line is acknowledged: the firmware waits for it (M109/M190).
HEATING_MARGIN_C = 3.0
STALLED_S = 1.0
# Piped output (a log, CI): one progress line this often at most, or at each further 10 %.
PIPED_EVERY_S = 30.0


@dataclass
class JobWatch:
    """What the CLI's main thread learns from the streamer thread (on_event must stay quick)."""

    cancel_after_lines: int | None = None
    streamer: Streamer | None = None
    progress: Progress | None = None
    ended: StreamEnded | None = None
    notes: list[str] = field(default_factory=list)  # for the technician, printed by the main thread
    done: threading.Event = field(default_factory=threading.Event)
    temperatures: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    progress_at: float = field(default_factory=time.monotonic)  # when the last line was acknowledged
    _cancel_sent: bool = False

    def __call__(self, event: object) -> None:
        if isinstance(event, Progress):
            if self.progress is None or event.lines_acked != self.progress.lines_acked:
                self.progress_at = time.monotonic()
            self.progress = event
        elif isinstance(event, Temperatures):
            self.temperatures = dict(event.readings)
        elif isinstance(event, StreamEnded):
            self.ended = event
            self.done.set()
        elif isinstance(event, HostActionRequested):
            self.notes.append(f"the printer's screen asked to {event.action} the job")
        elif isinstance(event, LineAcked) and self._should_cancel(event):
            assert self.streamer is not None and self.cancel_after_lines is not None
            self._cancel_sent = True
            self.streamer.cancel(f"--cancel-after-lines {self.cancel_after_lines}")

    def _should_cancel(self, event: LineAcked) -> bool:
        limit = self.cancel_after_lines
        reached = limit is not None and event.acked_lines >= limit
        return reached and not self._cancel_sent and self.streamer is not None

    def heating(self, now: float) -> str | None:
        """`T 152/210 °C` while the firmware waits for a heater (no line acknowledged lately), else None."""
        if now - self.progress_at < STALLED_S:
            return None
        cold = [f"{name} {actual:.0f}/{target:.0f} °C" for name, (actual, target) in self.temperatures.items()
                if target is not None and target > 0 and actual < target - HEATING_MARGIN_C]
        return ", ".join(cold) or None


class ProgressBar:
    """Plain-text progress on stderr: redrawn in place on a terminal; piped, a line per 10 % or 30 s."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self._last = float("-inf")
        self._last_tenth = -1
        self._drawn: tuple[Progress, str | None] | None = None

    def update(self, p: Progress | None, force: bool = False, heating: str | None = None) -> None:
        """Show `p` (or that the firmware is heating) unless it was just shown."""
        if p is None or self.quiet or self._drawn == (p, heating):
            return
        now = time.monotonic()
        tenth = int(p.percent // 10)
        due = tenth > self._last_tenth or now - self._last >= PIPED_EVERY_S
        if not force and not self.tty and not due:
            return
        self._last, self._last_tenth, self._drawn = now, tenth, (p, heating)
        filled = int(p.percent / 5)
        if heating is not None:
            rate = f"heating ({heating})"
        else:
            eta = "--:--" if p.eta_s is None else _clock(p.eta_s)
            rate = f"{p.lines_per_s:5.0f} lines/s  elapsed {_clock(p.elapsed_s)}  ETA {eta}"
        bar = f"[{'#' * filled}{'.' * (20 - filled)}]"
        text = f"{bar} {p.percent:5.1f}%  {p.lines_acked}/{p.lines_total} lines  {rate}"
        self.out.write(f"\r{text}\x1b[K" if self.tty else f"{text}\n")
        self.out.flush()

    def finish(self) -> None:
        """End the redrawn line so the summary starts on its own."""
        if self.tty and self._drawn is not None:
            self.out.write("\n")
            self.out.flush()


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def analyse(lines: list[str], last_line: int, firmware: str) -> tuple[float | None, float | None]:
    """Filament mm and laser-on seconds of the file up to `last_line` (what really ran), if analysable."""
    try:
        from fabnode.gcode import analysis as gcode

        profile = gcode.guess_profile("", firmware)
        result = gcode.analyze_lines(lines, profile, stop_after_line=last_line)
    except Exception:  # the summary's figures are a courtesy: streaming must not depend on them
        return None, None
    filament = _number(result, "filament_mm")
    return (None if filament is None else max(0.0, filament)), _number(result, "laser_on_s")


def _number(obj: object, name: str) -> float | None:
    value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return float(value) if isinstance(value, int | float) else None


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def summary(path: Path, ended: StreamEnded, total: int, baud: int, interrupted: bool,
            figures: tuple[float | None, float | None]) -> dict[str, object]:
    """The job's summary, with the keys `--json` promises."""
    wire_bytes_per_s = baud / 10
    efficiency = ended.bytes_sent / wire_bytes_per_s / ended.duration_s if ended.duration_s > 0 else None
    code = EXIT_INTERRUPTED if interrupted and ended.status != "completed" else EXIT_CODES.get(
        ended.kind or ended.status, EXIT_CODES["internal"])
    return {
        "file": str(path), "status": ended.status, "kind": ended.kind or None, "reason": ended.reason or None,
        "lines": total, "lines_acked": ended.lines_acked, "bytes": ended.bytes_sent,
        "resends": ended.resends, "duration_s": round(ended.duration_s, 3),
        "last_line": ended.last_line_no or None,
        "filament_mm": _rounded(figures[0]), "laser_on_s": _rounded(figures[1]),
        "efficiency": None if efficiency is None else round(efficiency, 4), "exit_code": code,
    }


def print_summary(info: dict[str, object]) -> None:
    """The human summary on stdout; a failure's meaning on stderr."""
    lines = [
        f"{info['file']}: {info['status']}, {info['lines_acked']}/{info['lines']} lines acknowledged "
        f"(last file line {info['last_line'] or '-'})",
        f"  {info['bytes']} bytes in {info['duration_s']} s, {info['resends']} resends, "
        f"wire efficiency {'-' if info['efficiency'] is None else info['efficiency']}",
    ]
    if info["filament_mm"]:
        lines.append(f"  filament {info['filament_mm']:.1f} mm")
    if info["laser_on_s"]:
        lines.append(f"  laser on {info['laser_on_s']:.1f} s")
    typer.echo("\n".join(lines))


def explain(info: dict[str, object]) -> None:
    """Say on stderr why a job did not complete, and where it stopped."""
    kind = str(info["kind"] or info["status"])
    advice = ADVICE.get(kind, f"job {info['status']} ({kind})")
    exits.error(f"{advice}: {info['reason'] or 'no reason given'} (last acknowledged file line "
                f"{info['last_line'] or '-'}, {info['lines_acked']}/{info['lines']} lines)")


# What stops a job safely: Ctrl-C, and a terminal hanging up or a service manager stopping us, which
# would otherwise kill the process with the heaters on and the last moves still queued.
STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def run_job(streamer: Streamer, watch: JobWatch, lines: list[str], name: str, bar: ProgressBar) -> bool:
    """Stream the job to its end; Ctrl-C, SIGTERM or SIGHUP cancels it safely. True when one came."""
    interrupted = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt  # a second one: leave without waiting for the safe stop
        interrupted.set()
        what = STOP_SIGNALS.get(signal.Signals(signum), "a signal")
        exits.error(f"{what}: cancelling the job safely ({what} again to leave at once)")
        streamer.cancel(f"cancelled with {what}")

    previous = {sig: signal.signal(sig, on_stop) for sig in STOP_SIGNALS}
    try:
        streamer.start_job(lines, name=name)
        while not watch.done.wait(0.1):
            while watch.notes:
                if bar.tty and not bar.quiet:
                    bar.out.write("\n")  # below the redrawn progress line, not over it
                exits.error(watch.notes.pop(0))
            bar.update(watch.progress, heating=watch.heating(time.monotonic()))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bar.update(watch.progress, force=True)
    bar.finish()
    return interrupted.is_set()


def preflight(lines: list[str], firmware: str, file: Path) -> None:
    """Refuse a file the machine must not run (exit 1, each problem with its line), as the daemon would."""
    try:
        from fabnode.gcode import analysis as gcode

        profile = gcode.guess_profile("\n".join(lines[:200]), firmware)
        problems = gcode.analyze_lines(lines, profile).problems
    except Exception as exc:  # the analysis must not stop a technician's stream
        exits.error(f"{file}: preflight could not run ({type(exc).__name__}: {exc}); streaming anyway")
        return
    if not problems:
        return
    for problem in problems:
        sys.stderr.write(f"{file}:{problem.line}: {problem.message}\n")
    fail(f"{file} fails preflight against a default {firmware} machine ({len(problems)} problem(s)); "
         "fix the file, or pass --no-preflight to send it anyway", exits.FAILED)


def stream(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="G-code file to send."),
    port: str = typer.Option(..., "--port", help="Serial port path or pyserial URL."),
    firmware: str = typer.Option(..., "--firmware", help="marlin or grbl."),
    baud: int = typer.Option(115200, "--baud", help="Baud rate."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line; only the summary."),
    no_preflight: bool = typer.Option(
        False, "--no-preflight", help="Send the file without checking it first (volume, temperatures, ...)."),
    rx_window: int | None = typer.Option(None, "--rx-window", help="Bytes in flight (GRBL: its RX buffer)."),
    cancel_after_lines: int | None = typer.Option(
        None, "--cancel-after-lines", help="Cancel the job once this many lines are acknowledged."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1.0,
        help="Seconds of silence from the firmware before the job fails as no answer "
             "(default: 60 for marlin, 10 for grbl)."),
    answer_timeout: float | None = typer.Option(None, "--answer-timeout", min=1.0, hidden=True),
    greeting_timeout: float = typer.Option(
        3.0, "--greeting-timeout", help="Seconds to wait for the board's greeting after opening the port."),
) -> None:
    """Check FILE, stream it to the machine and summarise; exit 0 only when every line was acknowledged."""
    check_firmware(firmware)
    try:
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", exits.USAGE)
    if not no_preflight:
        preflight(lines, firmware, file)
    silence = timeout if timeout is not None else answer_timeout
    protocol = make_protocol(firmware, rx_window=rx_window, answer_timeout_s=silence)
    watch = JobWatch(cancel_after_lines)
    streamer = connect(port, baud, protocol, firmware, watch, greeting_timeout)
    watch.streamer = streamer
    try:
        interrupted = run_job(streamer, watch, lines, file.name, ProgressBar(sys.stderr, quiet))
    finally:
        streamer.close()
    assert watch.ended is not None
    figures = analyse(lines, watch.ended.last_line_no, firmware)
    total = count_job_lines(lines, protocol.wire_text)
    info = summary(file, watch.ended, total, baud, interrupted, figures)
    if json_out:
        typer.echo(json.dumps(info))
    else:
        print_summary(info)
    if watch.ended.status != JobState.COMPLETED:
        explain(info)
    raise typer.Exit(int(info["exit_code"]))  # type: ignore[call-overload]


def register(app: typer.Typer) -> None:
    """Add `stream` to the app."""
    app.command("stream", epilog=EXIT_HELP)(stream)
