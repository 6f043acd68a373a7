"""`fabnode sim marlin|grbl`: run a firmware simulator on a pty in this process until SIGTERM/SIGINT.

The first line printed (flushed) is the pty's path for the host to open; the last is
`stats: {json}` with the simulator's counters. Benchmarks run this as a subprocess so that the
simulator does not share the host's GIL.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

sim_app = typer.Typer(
    name="sim", help="Run a simulated printer or laser on a pseudo-terminal.", no_args_is_help=True
)


class _Simulator(Protocol):
    @property
    def port(self) -> str: ...

    @property
    def stats(self) -> Any: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


Baud = Annotated[int, typer.Option("--baud", help="Wire speed; bytes take 10 bit times.")]
LatencyMs = Annotated[float, typer.Option("--latency-ms", help="One-way latency, ms.")]
RxBuffer = Annotated[int, typer.Option("--rx-buffer", help="Firmware RX buffer, bytes (drops past it).")]
SimSpeed = Annotated[float | None, typer.Option(
    "--sim-speed", min=0.0, help="Machine time runs this many times faster than real time (0: instant), "
                                 "as `fabnode run --sim-speed`.", show_default="1")]
TimeScale = Annotated[float | None, typer.Option(
    "--time-scale", min=0.0, help="Old spelling: seconds of simulated time per machine second (smaller is "
                                  "faster, 0: instant); --sim-speed X is --time-scale 1/X.", hidden=True)]
Noise = Annotated[float, typer.Option("--noise", help="Fraction of host lines with one corrupted byte.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the noise and other randomness.")]
Record = Annotated[Path | None, typer.Option("--record", help="Write executed commands here, one a line.")]
AtLine = Annotated[int | None, typer.Option(help="Fire this fault at the line with this number.")]


def time_factor(sim_speed: float | None, time_scale: float | None) -> float:
    """The simulators' time_scale from `--sim-speed` (bigger is faster) or its old spelling `--time-scale`."""
    if sim_speed is not None and time_scale is not None:
        raise typer.BadParameter("give --sim-speed or --time-scale, not both", param_hint="'--sim-speed'")
    if sim_speed is not None:
        return 0.0 if sim_speed == 0 else 1.0 / sim_speed
    return 1.0 if time_scale is None else time_scale


def _parse_action(value: str | None) -> tuple[int, str] | None:
    """`120:pause` -> (120, "pause")."""
    if not value:
        return None
    line, _, action = value.partition(":")
    if not line.strip().isdigit() or action not in ("pause", "resume", "cancel"):
        raise typer.BadParameter(
            f"{value!r}: expected N:pause, N:resume or N:cancel", param_hint="--action-at-line"
        )
    return int(line), action


def run_until_signal(sim: _Simulator, done: threading.Event | None = None) -> None:
    """Start the simulator, print its port, wait for SIGTERM/SIGINT (or the link dropping), print stats."""
    stop = done or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sim.start()
        typer.echo(sim.port)
        sys.stdout.flush()
        while not stop.wait(0.2):
            if getattr(sim.stats, "connection_dropped", False):
                break
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = sim.stats.as_dict() if hasattr(sim.stats, "as_dict") else vars(sim.stats)
    typer.echo("stats: " + json.dumps(stats, sort_keys=True, default=str))


@sim_app.command("marlin")
def marlin(
    baud: Baud = 115200,
    latency_ms: LatencyMs = 1.0,
    rx_buffer: RxBuffer = 128,
    sim_speed: SimSpeed = None,
    time_scale: TimeScale = None,
    noise: Noise = 0.0,
    seed: Seed = 0,
    record: Record = None,
    advanced_ok: Annotated[bool, typer.Option("--advanced-ok", help="ok N<n> P<planner> B<queue>.")] = False,
    reset_at_line: AtLine = None,
    kill_at_line: AtLine = None,
    thermal_runaway_at_line: AtLine = None,
    silence_at_line: AtLine = None,
    resend_without_ok_at_line: AtLine = None,
    drop_connection_at_line: AtLine = None,
    action_at_line: Annotated[
        str | None, typer.Option(help="N:pause, N:resume or N:cancel: print //action:<x> at line N.")
    ] = None,
    checksum_error_at_line: AtLine = None,
    rx_flush: Annotated[bool, typer.Option(
        "--rx-flush/--no-rx-flush", help="Drop the RX buffer after a refused line (Marlin 2019 on).")] = True,
    ok_before_output: Annotated[bool, typer.Option(
        "--ok-before-output", help="Answer M105 with ok first, its T: line after (some forks).")] = False,
    action_space: Annotated[bool, typer.Option(
        "--action-space", help="Write host actions as '// action:...' (Prusa MK3, Repetier).")] = False,
    locked: Annotated[bool, typer.Option(
        "--locked", help="Answer every command 'Printer locked!' and ok (PASSWORD_FEATURE).")] = False,
) -> None:
    """A Marlin 2.1 printer. Fault lines are the N numbers of numbered lines; a fault fires when its line
    comes to run."""
    from simulators.marlin.simulator import MarlinSimulator

    sim = MarlinSimulator(
        baud=baud,
        latency_s=latency_ms / 1000.0,
        rx_buffer=rx_buffer,
        time_scale=time_factor(sim_speed, time_scale),
        noise=noise,
        seed=seed,
        record=record,
        advanced_ok=advanced_ok,
        reset_at_line=reset_at_line,
        kill_at_line=kill_at_line,
        thermal_runaway_at_line=thermal_runaway_at_line,
        silence_at_line=silence_at_line,
        resend_without_ok_at_line=resend_without_ok_at_line,
        drop_connection_at_line=drop_connection_at_line,
        action_at_line=_parse_action(action_at_line),
        checksum_error_at_line=checksum_error_at_line,
        flush_on_error=rx_flush,
        ok_before_output=ok_before_output,
        action_space=action_space,
        locked=locked,
    )
    run_until_signal(sim)


@sim_app.command("grbl")
def grbl(
    baud: Baud = 115200,
    latency_ms: LatencyMs = 1.0,
    rx_buffer: RxBuffer = 128,
    sim_speed: SimSpeed = None,
    time_scale: TimeScale = None,
    noise: Noise = 0.0,
    seed: Seed = 0,
    record: Record = None,
    laser_mode: Annotated[
        bool, typer.Option("--laser-mode/--no-laser-mode", help="GRBL laser mode ($32).")
    ] = True,
    reset_at_line: AtLine = None,
    alarm_at_line: AtLine = None,
    alarm_code: Annotated[int, typer.Option(help="ALARM code for --alarm-at-line (1: hard limit).")] = 1,
    error_at_line: AtLine = None,
    silence_at_line: AtLine = None,
    drop_connection_at_line: AtLine = None,
) -> None:
    """A GRBL 1.1h controller (laser or CNC). Fault lines count the lines the firmware took in."""
    from simulators.grbl.simulator import from_cli  # another engineer's module: imported only when asked for

    sim = from_cli(
        baud=baud,
        latency_ms=latency_ms,
        rx_buffer=rx_buffer,
        time_scale=time_factor(sim_speed, time_scale),
        noise=noise,
        seed=seed,
        record=record,
        laser_mode=laser_mode,
        reset_at_line=reset_at_line,
        alarm_at_line=alarm_at_line,
        alarm_code=alarm_code,
        error_at_line=error_at_line,
        silence_at_line=silence_at_line,
        drop_connection_at_line=drop_connection_at_line,
    )
    run_until_signal(sim)


def register(app: typer.Typer) -> None:
    """Add `fabnode sim marlin` and `fabnode sim grbl`."""
    app.add_typer(sim_app, name="sim")
