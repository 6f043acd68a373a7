"""`fabnode run`: the node daemon, from a config file or with every part simulated.

    fabnode run --config FILE [--state-dir DIR] [--broker URL]
    fabnode run --simulate [--config FILE] [--firmware marlin|grbl] [--sim-speed X] [--state-dir DIR]

Runs until SIGTERM or SIGINT, then stops cleanly (a running job is cancelled the safe way and recorded
`cancelled`, the session closed, the relay switched off). SIGHUP re-reads the config file and applies
what can change live without touching a running job; a broken file is refused and the running config
kept (see fabnode.node.reload). Exit codes: 0 stopped cleanly; 1 could not
start (GPIO, another daemon on the state dir, database); 2 bad usage or a wrong config (the message
names the file and the key).
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from fabnode.cli import exits
from fabnode.config.settings import Config, ConfigError, check_broker_url, load_config
from fabnode.paths import ensure_state_dir, resolve_config, resolve_state_dir

FIRMWARES = ("marlin", "grbl")


def _fail(message: str, code: int) -> NoReturn:
    exits.fail(message, code)


def _reader(config_file: Path, simulate: bool, firmware: str | None, folder: Path,
            broker: str | None) -> Callable[[], Config]:
    """What SIGHUP re-reads: the same file, made the same way (simulated parts, --broker) as at start."""
    from fabnode.node import wiring

    def reread() -> Config:
        if simulate:
            return _with_broker(wiring.simulated_config(config_file, firmware, folder), broker)
        return _with_broker(load_config(config_file), broker)  # --broker was checked at start

    return reread


def _load(config_file: Path | None, simulate: bool, firmware: str | None, state_dir: Path | None
          ) -> tuple[Config, Path]:
    """The config and the state dir, or exit 2 with the config's own message."""
    from fabnode.node import wiring

    try:
        if simulate:
            configured = load_config(config_file).node.state_dir if config_file is not None else None
            folder = ensure_state_dir(resolve_state_dir(state_dir, configured))
            return wiring.simulated_config(config_file, firmware, folder), folder
        if config_file is None:
            _fail("--config FILE is required (or --simulate to run on simulators)", 2)
        assert config_file is not None
        config = load_config(config_file)
        return config, ensure_state_dir(resolve_state_dir(state_dir, config.node.state_dir))
    except ConfigError as exc:
        _fail(f"config error: {exc}", 2)
    except OSError as exc:
        _fail(f"cannot read {config_file}: {exc.strerror or exc}", 2)
    raise AssertionError  # unreachable


def _with_broker(config: Config, broker: str | None) -> Config:
    if broker is None:
        return config
    try:
        check_broker_url(broker)
    except ConfigError as exc:
        _fail(f"--broker: {exc}", 2)
    return dataclasses.replace(config, telemetry=dataclasses.replace(config.telemetry, broker=broker))


def run(
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="The node's TOML config (default: $FABNODE_CONFIG).", show_default=False)] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="Database and control socket (default: $FABNODE_STATE_DIR, the config's, "
                            "then the system or user state dir).")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="mqtt[s]://host[:port]; overrides the config.")] = None,
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="Simulate the firmware, GPIO and badge reader.")] = False,
    firmware: Annotated[str | None, typer.Option(
        "--firmware", help="With --simulate and no --config: marlin (a printer) or grbl (a laser).")] = None,
    sim_speed: Annotated[float, typer.Option(
        "--sim-speed", min=0.0, help="Simulated machine time runs this many times faster (0: instant).")
                         ] = 50.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every event.")] = False,
) -> None:
    """Run the node: badge access, relay, job streaming, usage log (until SIGTERM)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")  # fmt: skip
    config_file = resolve_config(config_file)
    if firmware is not None and firmware not in FIRMWARES:
        _fail(f"--firmware {firmware!r}: use marlin or grbl", 2)
    if firmware is not None and not simulate:
        _fail("--firmware goes with --simulate (a real machine's firmware is in its config)", 2)
    config, folder = _load(config_file, simulate, firmware, state_dir)
    config = _with_broker(config, broker)
    from fabnode.node.loop import Daemon
    from fabnode.node.wiring import WiringError, build_parts

    try:
        parts = build_parts(config, folder, sim_speed=sim_speed)
    except WiringError as exc:
        _fail(str(exc), 1)
    # --simulate without --config wrote the built-in config to the state dir: SIGHUP re-reads that file.
    reread = _reader(config_file or config.path, simulate, firmware, folder, broker)
    try:
        daemon = Daemon(config, parts, folder, reload_config=reread)
    except Exception as exc:
        parts.close()
        _fail(f"cannot start: {exc}", 1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.reload())
    try:
        daemon.run()
    except Exception as exc:
        _fail(f"stopped by an error: {exc}", exits.FAILED)


def register(app: typer.Typer) -> None:
    """Add `fabnode run`."""
    app.command("run", epilog=exits.help_text(exits.OK, exits.FAILED, exits.USAGE))(run)
