"""`fabnode doctor`: check the node's config, serial port and firmware, reader, GPIO, broker, database,
disk, clock and USB-serial latency; one line per check; exit 0 when nothing FAILs (1 otherwise, and
when there is no config to check: pass --config or set FABNODE_CONFIG). It only reads: no database,
secret or file is created.

The checks are fabnode.technician.doctor; this module gives them the drivers (serial port, GPIO, reader).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fabnode.cli import exits
from fabnode.paths import control_socket_path, resolve_config, resolve_state_dir
from fabnode.technician import doctor as d

if TYPE_CHECKING:
    from fabnode.cli.calibrate_port import FirmwareChannel
    from fabnode.config.settings import Config
    from fabnode.technician.calibrate import Reply

EXIT_FAILED = exits.FAILED
PI_MODEL = Path("/proc/device-tree/model")


class PortSession:
    """The port as fabnode.technician.doctor.FirmwareSession: ask() answers None on silence."""

    def __init__(self, channel: FirmwareChannel, greeted: bool) -> None:
        self.channel = channel
        self.greeted = greeted

    def ask(self, line: str, timeout_s: float) -> Reply | None:
        """The reply to `line`, or None after timeout_s."""
        from fabnode.cli.calibrate_port import NoAnswer

        try:
            return self.channel.command(line, timeout_s)
        except NoAnswer:
            return None

    def close(self) -> None:
        """Close the port."""
        self.channel.close()


def session_opener(greeting_timeout_s: float) -> Callable[[str, int, str], d.FirmwareSession]:
    """Open a port and wait (bounded) for the board's greeting; PortGone when it won't open."""

    def open_session(port: str, baud: int, firmware: str) -> d.FirmwareSession:
        from fabnode.cli.calibrate_port import open_channel

        channel, greeted = open_channel(port, baud, firmware, greeting_timeout_s)
        return PortSession(channel, greeted)

    return open_session


def gpio_probe() -> None:
    """Load RPi.GPIO as the daemon would (RuntimeError / ImportError off a Pi)."""
    from drivers.gpio.rpi import RpiPins

    RpiPins()


def on_raspberry_pi(model_file: Path = PI_MODEL) -> bool:
    """True on a Raspberry Pi (its device tree names the model)."""
    try:
        return "raspberry pi" in model_file.read_text(errors="replace").lower()
    except OSError:
        return False


def reader_probe() -> Callable[[str], None] | None:
    """Open and close the nfcpy reader the way the daemon does; None without drivers/badge_nfc.py."""
    if importlib.util.find_spec("drivers.badge.nfc") is None:
        return None

    def probe(device: str) -> None:
        from drivers.badge.nfc import open_frontend

        open_frontend(device).close()

    return probe


def daemon_check(state_dir: Path) -> tuple[d.Check, dict[str, Any] | None]:
    """Whether the daemon answers on its control socket (it then holds the serial port)."""
    from fabnode.cli.calibrate_run import daemon_status

    path = control_socket_path(state_dir)
    status = daemon_status(path)
    if status is None:
        return d.Check("daemon", d.SKIP, f"no fabnode daemon answers at {path}"), None
    return d.Check("daemon", d.PASS, f"fabnode daemon answers (state {status.get('state', '?')})"), status


def run_checks(
    config_path: Path | None,
    state_dir: Path | None,
    *,
    timeout_s: float = 3.0,
    min_free_bytes: int = d.MIN_FREE_BYTES,
    sysfs: Path = d.SYSFS,
    clock_command: Sequence[str] = d.CLOCK_COMMAND,
    open_session: Callable[[str, int, str], d.FirmwareSession] | None = None,
    on_pi: bool | None = None,
) -> list[d.Check]:
    """Every check, in the order the report shows them."""
    config_check, config = d.check_config(config_path)
    folder = resolve_state_dir(state_dir, config.node.state_dir if config is not None else None)
    daemon, status = daemon_check(folder)
    checks = [config_check, daemon]
    checks += _serial_checks(config, status, open_session or session_opener(timeout_s), timeout_s)
    checks.append(d.check_latency_timer(config.serial.port if config else None, sysfs))
    checks.append(d.check_reader(config, reader_probe()))
    checks.append(d.check_gpio(config, gpio_probe, on_raspberry_pi() if on_pi is None else on_pi))
    checks.append(d.check_broker(config, timeout_s))
    checks += [d.check_database(folder), d.check_disk(folder, min_free_bytes), d.check_clock(clock_command)]
    return checks


def _serial_checks(config: Config | None, status: dict[str, Any] | None,
                   open_session: Callable[[str, int, str], d.FirmwareSession], timeout_s: float
                   ) -> list[d.Check]:
    if status is not None and config is not None:
        # Opening the port under the daemon would reset the board and garble its job.
        held = f"{config.serial.port} is held by the running daemon"
        return [d.Check("serial", d.SKIP, held), d.Check("firmware", d.SKIP, held)]
    return d.check_serial(config, open_session, timeout_s)


def doctor(
    config: Annotated[Path | None, typer.Option(
        "--config", help="The node's config file (default: $FABNODE_CONFIG).", show_default=False)] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="The node's state dir (database, control socket).", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object instead of lines.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds for each answer.")] = 3.0,
    min_free_mb: Annotated[float, typer.Option("--min-free-mb", help="Warn below this, MB.")] = 200.0,
    sysfs: Annotated[Path, typer.Option("--sysfs", hidden=True)] = d.SYSFS,
    clock_command: Annotated[str, typer.Option("--clock-command", hidden=True)] = " ".join(d.CLOCK_COMMAND),
) -> None:
    """Check that this node is ready: PASS/WARN/FAIL/SKIP per check with what to do; exit 1 on a FAIL."""
    checks = run_checks(resolve_config(config), state_dir, timeout_s=timeout,
                        min_free_bytes=int(min_free_mb * 2**20), sysfs=sysfs,
                        clock_command=clock_command.split())
    ok = d.all_passed(checks)
    if json_out:
        typer.echo(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}))
    else:
        for check in checks:
            typer.echo(check.line())
    if not ok:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add `doctor` to the app."""
    app.command("doctor", epilog=exits.help_text(exits.OK, exits.FAILED, exits.USAGE))(doctor)
