"""`fabnode calibrate ...`: the technicians' calibration routines.

Firmware routines (esteps, pid, zoffset, level, laser-grid) run on the serial port, or through the
daemon when it runs (never while a member's job runs). Questions are asked on stdin; `--yes` and the
answer flags (`--remaining`, `--z`, `--cell`, `--save/--no-save`...) answer them for scripts.
relay, leds, inputs and `badge` (the next badge tapped on the reader) go through the daemon's control
socket (fabnode.node.technician); `badge --uid` prints a badge's hash from the lab secret.
The dialogues themselves are fabnode.technician.calibrate and fabnode.technician.laser; exit codes: EXIT_HELP.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from fabnode.cli.calibrate_run import (
    EXIT_FAILED,
    EXIT_HELP,
    EXIT_USAGE,
    Common,
    daemon_request,
    fail,
    run_routine,
)
from fabnode.config.settings import ConfigError, load_config
from fabnode.paths import resolve_state_dir, secret_file_path
from fabnode.records import members as access
from fabnode.technician.calibrate import CalibrationError, EstepsPlan, PidPlan, esteps, level, pid, zoffset
from fabnode.technician.laser import DEFAULT_FEEDS, GridSpec, default_powers, laser_grid

app = typer.Typer(help="Calibration routines for technicians (never during a member's job).",
                  no_args_is_help=True)

Port = Annotated[str | None, typer.Option("--port", help="Serial port or URL (default: the config's).")]
Firmware = Annotated[str | None, typer.Option("--firmware", help="marlin or grbl (default: the config's).")]
Baud = Annotated[int | None, typer.Option("--baud", help="Baud rate (default: the config's, else 115200).")]
ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="The node's config file (default: $FABNODE_CONFIG).", show_default=False)]
StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="The node's state dir (finds the daemon's control socket).", show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Answer yes / the default to every question.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
Greeting = Annotated[float, typer.Option("--greeting-timeout", help="Wait for the board's greeting, s.")]
Save = Annotated[bool | None, typer.Option("--save/--no-save", help="Save to EEPROM (M500) without asking.")]
Probe = Annotated[bool | None, typer.Option(
    "--probe/--no-probe", help="The printer has a bed probe (default: ask the firmware, M115).")]


def _common(port: str | None, firmware: str | None, baud: int | None, config: Path | None,
            state_dir: Path | None, yes: bool, json_out: bool, greeting: float) -> Common:
    return Common(port, firmware, baud, config, state_dir, yes, json_out, greeting).load()


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: numbers separated by commas", param_hint=option) from None


@app.command("esteps", epilog=EXIT_HELP)
def esteps_cmd(
    port: Port = None, firmware: Firmware = None, baud: Baud = None, config: ConfigFile = None,
    state_dir: StateDir = None, yes: Yes = False, json_out: JsonOut = False, greeting: Greeting = 3.0,
    temp: Annotated[float, typer.Option("--temp", help="Hotend temperature for extruding, C.")] = 200.0,
    length: Annotated[float, typer.Option("--length", help="Length to extrude, mm.")] = 100.0,
    mark: Annotated[float, typer.Option("--mark", help="Filament mark above the inlet, mm.")] = 120.0,
    feed: Annotated[float, typer.Option("--feed", help="Extrusion feed, mm/min.")] = 100.0,
    remaining: Annotated[str | None, typer.Option("--remaining", help="Answer: mm of the mark left.")] = None,
    measured: Annotated[float | None, typer.Option("--measured", help="Answer: mm that came out.")] = None,
    save: Save = None,
) -> None:
    """Extruder steps/mm: heat, extrude, measure what came out, set M92 E, save on confirmation."""
    common = _common(port, firmware, baud, config, state_dir, yes, json_out, greeting)
    max_temp = common.config.machine.max_hotend_c if common.config else 280.0
    plan = EstepsPlan(temp, length, mark, feed, max_temp, measured)
    _run(common, lambda: esteps(plan), {"remaining": remaining, "save": _yes_no(save)}, "marlin")


@app.command("pid", epilog=EXIT_HELP)
def pid_cmd(
    port: Port = None, firmware: Firmware = None, baud: Baud = None, config: ConfigFile = None,
    state_dir: StateDir = None, yes: Yes = False, json_out: JsonOut = False, greeting: Greeting = 3.0,
    heater: Annotated[str, typer.Option("--heater", help="hotend or bed.")] = "hotend",
    temp: Annotated[float | None, typer.Option("--temp", help="Target C (200 hotend, 60 bed).")] = None,
    cycles: Annotated[int, typer.Option("--cycles", help="Autotune cycles (M303 C).")] = 8,
    save: Save = None,
) -> None:
    """PID autotune of the hotend or the bed (M303), applied with M301/M304, saved on confirmation."""
    common = _common(port, firmware, baud, config, state_dir, yes, json_out, greeting)
    machine = common.config.machine if common.config else None
    max_temp = (machine.max_bed_c if heater == "bed" else machine.max_hotend_c) if machine else (
        110.0 if heater == "bed" else 280.0)
    target = temp if temp is not None else (60.0 if heater == "bed" else 200.0)
    plan = PidPlan(heater, target, cycles, max_temp)
    _run(common, lambda: pid(plan), {"save": _yes_no(save)}, "marlin")


@app.command("zoffset", epilog=EXIT_HELP)
def zoffset_cmd(
    port: Port = None, firmware: Firmware = None, baud: Baud = None, config: ConfigFile = None,
    state_dir: StateDir = None, yes: Yes = False, json_out: JsonOut = False, greeting: Greeting = 3.0,
    z: Annotated[str | None, typer.Option("--z", help="Answer: the new probe Z offset, mm.")] = None,
    probe: Probe = None, save: Save = None,
) -> None:
    """Probe Z offset: read it (M851), set the new one, check it took, save on confirmation."""
    common = _common(port, firmware, baud, config, state_dir, yes, json_out, greeting)
    _run(common, lambda: zoffset(probe), {"z": z, "save": _yes_no(save)}, "marlin")


@app.command("level", epilog=EXIT_HELP)
def level_cmd(
    port: Port = None, firmware: Firmware = None, baud: Baud = None, config: ConfigFile = None,
    state_dir: StateDir = None, yes: Yes = False, json_out: JsonOut = False, greeting: Greeting = 3.0,
    probe: Probe = None, save: Save = None,
) -> None:
    """Bed levelling: home (G28), probe (G29), show the mesh, save on confirmation."""
    common = _common(port, firmware, baud, config, state_dir, yes, json_out, greeting)
    _run(common, lambda: level(probe), {"save": _yes_no(save)}, "marlin")


@app.command("laser-grid", epilog=EXIT_HELP)
def laser_grid_cmd(
    port: Port = None, firmware: Firmware = None, baud: Baud = None, config: ConfigFile = None,
    state_dir: StateDir = None, yes: Yes = False, json_out: JsonOut = False, greeting: Greeting = 3.0,
    material: Annotated[str | None, typer.Option("--material", help="Default: the config's.")] = None,
    powers: Annotated[str | None, typer.Option("--powers", help="Column powers S, e.g. 200,400,600.")] = None,
    feeds: Annotated[str | None, typer.Option("--feeds", help="Row feeds mm/min, e.g. 600,1200.")] = None,
    cell_size: Annotated[float, typer.Option("--cell-size", help="Square size, mm.")] = 5.0,
    gap: Annotated[float, typer.Option("--gap", help="Gap between squares, mm.")] = 2.0,
    interval: Annotated[float, typer.Option("--interval", help="Raster line interval, mm.")] = 0.25,
    origin: Annotated[str, typer.Option("--origin", help="Lower-left corner X,Y (work).")] = "0,0",
    labels: Annotated[bool, typer.Option("--labels/--no-labels", help="Engrave row/column numbers.")] = False,
    cell: Annotated[str | None, typer.Option("--cell", help="Answer: the best cell, row,column.")] = None,
    record: Annotated[bool | None, typer.Option(
        "--record/--no-record", help="Record the chosen settings in the config without asking.")] = None,
) -> None:
    """Burn a power x speed grid for a material, ask for the best cell, record it in the config."""
    common = _common(port, firmware, baud, config, state_dir, yes, json_out, greeting)
    name = material or (common.config.machine.material.name if common.config else None)
    if not name:
        raise typer.BadParameter("give --material (or --config with a [machine] material)",
                                 param_hint="--material")
    max_power = common.config.machine.laser_max_power if common.config else 1000.0
    corner = _floats(origin, "--origin") or (0.0, 0.0)
    if len(corner) != 2:
        raise typer.BadParameter(f"{origin!r}: X,Y", param_hint="--origin")
    spec = GridSpec(_floats(powers, "--powers") or default_powers(max_power),
                    _floats(feeds, "--feeds") or DEFAULT_FEEDS, cell_size, gap, interval,
                    (corner[0], corner[1]), labels)
    _run(common, lambda: laser_grid(spec, name, common.config is not None),
         {"cell": cell, "record": _yes_no(record)}, "grbl")


def _run(common: Common, make: object, answers: dict[str, str | None], needs: str) -> None:
    if common.firmware != needs:
        fail(f"this routine is for {needs} firmware, not {common.firmware}", EXIT_USAGE)
    try:
        run_routine(common, make, answers)  # type: ignore[arg-type]
    except CalibrationError as exc:  # a plan refused before the port opened
        fail(str(exc), EXIT_FAILED)


# --- through the daemon's control socket -----------------------------------------------------------


def _socket_common(config: Path | None, state_dir: Path | None) -> Common:
    common = Common(config_path=config, state_dir=state_dir)
    if config is not None:
        try:
            common.config = load_config(config)
        except (ConfigError, OSError) as exc:
            fail(str(exc), EXIT_USAGE)
    return common


@app.command("relay", epilog=EXIT_HELP)
def relay_cmd(
    on: Annotated[bool, typer.Option("--on/--off", help="Switch the machine's power relay on or off.")],
    config: ConfigFile = None, state_dir: StateDir = None,
) -> None:
    """Switch the relay (through the daemon): check the contactor clicks and the machine powers."""
    reply = daemon_request(_socket_common(config, state_dir), {"cmd": "relay", "on": on}, guard=True)
    typer.echo(f"relay {'on' if reply.get('relay', on) else 'off'}")


@app.command("leds", epilog=EXIT_HELP)
def leds_cmd(
    green: Annotated[bool, typer.Option("--green/--no-green", help="Green LED.")] = False,
    red: Annotated[bool, typer.Option("--red/--no-red", help="Red LED.")] = False,
    blink: Annotated[bool, typer.Option("--blink", help="Blink them.")] = False,
    config: ConfigFile = None, state_dir: StateDir = None,
) -> None:
    """Set the indicator LEDs (through the daemon) to check their wiring."""
    message = {"cmd": "leds", "green": green, "red": red, "blink": blink}
    daemon_request(_socket_common(config, state_dir), message, guard=True)
    state = f"green {'on' if green else 'off'}, red {'on' if red else 'off'}"
    typer.echo(f"leds {state}{', blinking' if blink else ''}")


def _inputs_line(reply: dict[str, object]) -> str:
    inputs = reply.get("inputs")
    if not isinstance(inputs, dict):
        inputs = {k: v for k, v in reply.items() if k != "ok"}
    words = {"estop": ("e-stop", "PRESSED", "released"), "lid": ("lid", "OPEN", "shut"),
             "busy": ("machine", "drawing power", "idle")}
    parts = []
    for key, value in inputs.items():
        label, active, idle = words.get(str(key), (str(key), "active", "inactive"))
        parts.append(f"{label}: {active if value else idle}")
    believed = reply.get("controller")  # what the controller acts on: differs while an edge is pending
    if isinstance(believed, dict):
        for key, value in believed.items():
            if key in inputs and bool(inputs[key]) != bool(value):
                label, active, idle = words[str(key)]
                parts.append(f"(the controller still has the {label} {active if value else idle})")
    return ", ".join(parts) or "no inputs wired"


@app.command("inputs", epilog=EXIT_HELP)
def inputs_cmd(
    watch: Annotated[float, typer.Option("--watch", help="Show changes for N s (0: once).")] = 0.0,
    config: ConfigFile = None, state_dir: StateDir = None,
) -> None:
    """Show the e-stop, lid and current-sense inputs live (through the daemon)."""
    common = _socket_common(config, state_dir)
    end = time.monotonic() + watch
    last = None
    while True:
        line = _inputs_line(daemon_request(common, {"cmd": "inputs"}, guard=False))
        if line != last:
            typer.echo(line)
            last = line
        if time.monotonic() >= end:
            return
        time.sleep(0.2)  # the daemon offers no input subscription yet: poll at 5 Hz


@app.command("badge", epilog=EXIT_HELP)
def badge_cmd(
    uid: Annotated[str | None, typer.Option("--uid", help="UID in hex ('-': from stdin).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for a tap (daemon).")] = 30.0,
    config: ConfigFile = None, state_dir: StateDir = None,
) -> None:
    """Show a badge's keyed hash (for enrolment): from --uid with the lab secret, else a tap (daemon)."""
    common = _socket_common(config, state_dir)
    if uid is None:
        message = {"cmd": "badge-capture", "timeout_s": timeout}  # "badge" {uid} is a simulated tap
        reply = daemon_request(common, message, guard=False, timeout_s=timeout + 5)
        typer.echo(str(reply.get("badge_hash", "")))
        return
    if uid == "-":
        uid = typer.get_text_stream("stdin").readline().strip()
    configured = common.config.node.state_dir if common.config else None
    path = secret_file_path(resolve_state_dir(state_dir, configured))
    if not path.exists():  # a new secret here would give hashes the lab's database never matches
        fail(f"no lab secret at {path}: give the node's --state-dir (or --config), or enrol a first "
             "member with `fabnode members add`, which creates it", EXIT_FAILED)
    try:
        typer.echo(access.badge_hash(access.load_secret(path), uid))
    except (access.AccessError, OSError, ValueError) as exc:
        fail(str(exc), EXIT_FAILED)


def register(parent: typer.Typer) -> None:
    """Add `calibrate` to the app."""
    parent.add_typer(app, name="calibrate")
