"""`fabnode config check FILE`: read a config exactly as `fabnode run` would, and say what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fabnode.cli import exits


def register(app: typer.Typer) -> None:
    """Add `fabnode config ...` to the app."""
    group = typer.Typer(help="Check the node's TOML config.", no_args_is_help=True)

    @group.command("check")
    def check(
        file: Path | None = typer.Argument(None, help="The TOML config to check (default: $FABNODE_CONFIG).",
                                           show_default=False),
        json_out: bool = typer.Option(False, "--json", help="Every setting in force, as one JSON object."),
    ) -> None:
        """Exit 0 and print a one-line summary when FILE is usable; exit 2 naming the file and key if not."""
        from fabnode.config.settings import ConfigError, load_config
        from fabnode.paths import resolve_config

        file = resolve_config(file)
        if file is None:
            exits.fail("no config: give FILE (or set FABNODE_CONFIG)", exits.USAGE)
        from fabnode.config.secret_files import check_secret_files

        try:
            config = load_config(file)
            check_secret_files(config)
        except ConfigError as exc:
            exits.fail(str(exc), exits.USAGE)
        except OSError as exc:
            exits.fail(f"cannot read {file}: {exc.strerror or exc}", exits.USAGE)
        if json_out:
            from fabnode.config.settings import settings_in_force

            typer.echo(json.dumps({"file": str(file), "ok": True, "settings": settings_in_force(config)},
                                  default=str))
            return
        typer.echo(
            f"{file}: ok ({config.node.lab}/{config.node.machine}, {config.machine.kind} on "
            f"{config.machine.firmware} at {config.serial.port}, gpio {config.gpio.backend}, "
            f"reader {config.reader.backend}, broker {config.telemetry.broker or 'none'})"
        )

    app.add_typer(group, name="config")
