"""`fabnode stream`: send one G-code file to the firmware with progress, then a summary.

The exit codes are in EXIT_HELP (shown by `fabnode stream --help`). The `console` verb lives in
fabnode/cli/console.py and is registered from here.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NoReturn, TextIO

import typer

from drivers.events import HostActionRequested, JobState, LineAcked
from drivers.hostproto import HostProtocol
from drivers.serial_link import PortLost, SerialLink
from drivers.streamer import JobEnded, Progress, Streamer, count_job_lines

EXIT_CODES = {
    "completed": 0, "cancelled": 1, "halted": 3, "thermal": 4, "reset": 5, "alarm": 6, "error": 7,
    "no_answer": 8, "port_lost": 9, "internal": 11, "host_closed": 11, "rejected": 11,
}
EXIT_INTERRUPTED = 130
EXIT_HELP = (
    "Exit codes: 0 every line of the file was acknowledged; 1 cancelled (printer screen, "
    "--cancel-after-lines); 2 bad usage or unreadable file; 3 printer halted; 4 thermal protection; "
    "5 firmware reset during the job; 6 GRBL alarm; 7 firmware refused a line (GRBL error); 8 no answer; "
    "9 port could not be opened or was lost; 11 fabnode's own fault; 130 Ctrl-C (job stopped safely first)."
)
FIRMWARES = ("marlin", "grbl")
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


def make_protocol(firmware: str, *, rx_window: int | None = None, answer_timeout_s: float | None = None
                  ) -> HostProtocol:
    """The host protocol for this firmware; rx_window and answer_timeout_s override its defaults."""
    if firmware == "grbl":
        from drivers.grbl.host import GrblHost

        grbl_kw: dict[str, float] = {}
        if rx_window is not None:
            grbl_kw["rx_buffer_bytes"] = rx_window
        if answer_timeout_s is not None:
            grbl_kw["no_answer_after_s"] = answer_timeout_s
        return GrblHost(**grbl_kw)  # type: ignore[arg-type]
    if firmware == "marlin":
        from drivers.marlin.host import MarlinHost

        marlin_kw: dict[str, float] = {}
        if rx_window is not None:
            marlin_kw["rx_window_bytes"] = rx_window
        if answer_timeout_s is not None:
            # Poke (M105) well before giving up, so a lost `ok` is not taken for silence.
            marlin_kw.update(no_answer_after_s=answer_timeout_s, poke_after_s=answer_timeout_s / 3)
        return MarlinHost(**marlin_kw)  # type: ignore[arg-type]
    raise typer.BadParameter(f"unknown firmware {firmware!r}; use one of {', '.join(FIRMWARES)}")


def probe_command(firmware: str) -> str:
    """A harmless command whose answer proves the firmware listens (GRBL: a status query)."""
    return "?" if firmware == "grbl" else "M105"


def connect(port: str, baud: int, protocol: HostProtocol, firmware: str,
            on_event: Callable[[object], None], greeting_timeout_s: float) -> Streamer:
    """Open the port and wait for the greeting a board gives after its reset-on-open (bounded).

    No greeting in time: probe once (a board that does not reset on open answers at once);
    still nothing: typer.Exit with the no-answer code. PortLost: the port-lost code.
    """
    try:
        streamer = Streamer(SerialLink(port, baud), protocol, on_event)
    except PortLost as exc:
        fail(f"cannot open {port}: {exc.reason}", EXIT_CODES["port_lost"])
    if streamer.wait_ready(greeting_timeout_s):
        return streamer
    streamer.send_command(probe_command(firmware))
    if streamer.wait_ready(max(1.0, greeting_timeout_s)) and streamer.lost is None:
        return streamer
    lost = streamer.lost
    streamer.close()
    if lost is not None:
        fail(f"{port}: {lost.reason}", EXIT_CODES["port_lost"])
    fail(f"no answer from the firmware on {port} at {baud} baud: no greeting within "
         f"{greeting_timeout_s:g} s and no reply to {probe_command(firmware)!r} "
         f"(wrong port, baud rate or firmware?)", EXIT_CODES["no_answer"])


def fail(message: str, code: int) -> NoReturn:
    """Print a clear message on stderr and leave with `code`."""
    typer.echo(f"fabnode: {message}", err=True)
    raise typer.Exit(code)


@dataclass
class JobWatch:
    """What the CLI's main thread learns from the streamer thread (on_event must stay quick)."""

    cancel_after_lines: int | None = None
    streamer: Streamer | None = None
    progress: Progress | None = None
    ended: JobEnded | None = None
    notes: list[str] = field(default_factory=list)  # for the technician, printed by the main thread
    done: threading.Event = field(default_factory=threading.Event)
    _cancel_sent: bool = False

    def __call__(self, event: object) -> None:
        if isinstance(event, Progress):
            self.progress = event
        elif isinstance(event, JobEnded):
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


class ProgressBar:
    """Plain-text progress on stderr: redrawn in place on a terminal, a line a second otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last = float("-inf")
        self._drawn: Progress | None = None

    def update(self, p: Progress | None, force: bool = False) -> None:
        """Show `p` unless it was just shown."""
        if p is None or p is self._drawn:
            return
        now = time.monotonic()
        if not force and not self.tty and now - self._last < 1.0:
            return
        self._last, self._drawn = now, p
        filled = int(p.percent / 5)
        eta = "--:--" if p.eta_s is None else _clock(p.eta_s)
        text = (f"[{'#' * filled}{'.' * (20 - filled)}] {p.percent:5.1f}%  {p.lines_acked}/{p.lines_total} "
                f"lines  {p.lines_per_s:5.0f} lines/s  elapsed {_clock(p.elapsed_s)}  ETA {eta}")
        self.out.write(f"\r{text}" if self.tty else f"{text}\n")
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
    return _number(result, "filament_mm"), _number(result, "laser_on_s")


def _number(obj: object, name: str) -> float | None:
    value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return float(value) if isinstance(value, int | float) else None


def summary(path: Path, ended: JobEnded, total: int, baud: int, interrupted: bool,
            figures: tuple[float | None, float | None]) -> dict[str, object]:
    """The job's summary, with the keys `--json` promises."""
    wire_bytes_per_s = baud / 10
    efficiency = ended.bytes_sent / wire_bytes_per_s / ended.duration_s if ended.duration_s > 0 else None
    code = EXIT_INTERRUPTED if interrupted and ended.status != "completed" else EXIT_CODES.get(
        ended.kind or ended.status, EXIT_CODES["internal"])
    return {
        "file": str(path), "status": ended.status, "kind": ended.kind, "reason": ended.reason,
        "lines": total, "lines_acked": ended.lines_acked, "bytes": ended.bytes_sent,
        "resends": ended.resends, "duration_s": round(ended.duration_s, 3),
        "last_line": ended.last_line_no, "filament_mm": figures[0], "laser_on_s": figures[1],
        "efficiency": None if efficiency is None else round(efficiency, 4), "exit_code": code,
    }


def print_summary(info: dict[str, object]) -> None:
    """The human summary on stdout; a failure's meaning on stderr."""
    lines = [
        f"{info['file']}: {info['status']}, {info['lines_acked']}/{info['lines']} lines acknowledged "
        f"(last file line {info['last_line']})",
        f"  {info['bytes']} bytes in {info['duration_s']} s, {info['resends']} resends, "
        f"wire efficiency {info['efficiency']}",
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
    typer.echo(f"fabnode: {advice}: {info['reason']} (last acknowledged file line {info['last_line']}, "
               f"{info['lines_acked']}/{info['lines']} lines)", err=True)


def run_job(streamer: Streamer, watch: JobWatch, lines: list[str], name: str, bar: ProgressBar) -> bool:
    """Stream the job to its end; Ctrl-C cancels it safely. Returns True when Ctrl-C was pressed."""
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: leave without waiting for the safe stop
        interrupted.set()
        typer.echo("\nfabnode: Ctrl-C: cancelling the job safely (Ctrl-C again to leave at once)", err=True)
        streamer.cancel("cancelled with Ctrl-C")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        streamer.start_job(lines, name=name)
        while not watch.done.wait(0.1):
            while watch.notes:
                typer.echo(f"\nfabnode: {watch.notes.pop(0)}", err=True)
            bar.update(watch.progress)
    finally:
        signal.signal(signal.SIGINT, previous)
    bar.update(watch.progress, force=True)
    bar.finish()
    return interrupted.is_set()


def stream(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="G-code file to send."),
    port: str = typer.Option(..., "--port", help="Serial port path or pyserial URL."),
    firmware: str = typer.Option(..., "--firmware", help="marlin or grbl."),
    baud: int = typer.Option(115200, "--baud", help="Baud rate."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    rx_window: int | None = typer.Option(None, "--rx-window", help="Bytes in flight (GRBL: its RX buffer)."),
    cancel_after_lines: int | None = typer.Option(
        None, "--cancel-after-lines", help="Cancel the job once this many lines are acknowledged."),
    answer_timeout: float | None = typer.Option(
        None, "--answer-timeout", help="Seconds of silence before the job fails as no answer."),
    greeting_timeout: float = typer.Option(
        3.0, "--greeting-timeout", help="Seconds to wait for the board's greeting after opening the port."),
) -> None:
    """Stream FILE to the machine; exit 0 only when every line was acknowledged (codes: see module doc)."""
    if firmware not in FIRMWARES:
        raise typer.BadParameter(f"use one of {', '.join(FIRMWARES)}", param_hint="--firmware")
    try:
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        fail(f"cannot read {file}: {exc}", 2)
    protocol = make_protocol(firmware, rx_window=rx_window, answer_timeout_s=answer_timeout)
    watch = JobWatch(cancel_after_lines)
    streamer = connect(port, baud, protocol, firmware, watch, greeting_timeout)
    watch.streamer = streamer
    try:
        interrupted = run_job(streamer, watch, lines, file.name, ProgressBar(sys.stderr))
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
    """Add `stream` and `console` to the app."""
    from fabnode.cli import console

    app.command("stream", epilog=EXIT_HELP)(stream)
    console.register(app)
