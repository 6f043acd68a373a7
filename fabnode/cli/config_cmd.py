"""`fabnode config check FILE`: read a config exactly as `fabnode run` would, and say what is wrong."""

from __future__ import annotations

from pathlib import Path

import typer

from fabnode.config.settings import ConfigError, load_config


def register(app: typer.Typer) -> None:
    """Add `fabnode config ...` to the app."""
    group = typer.Typer(help="Check the node's TOML config.", no_args_is_help=True)

    @group.command("check")
    def check(file: Path = typer.Argument(..., help="The TOML config to check.")) -> None:
        """Exit 0 and print a one-line summary when FILE is usable; exit 2 naming the file and key if not."""
        try:
            config = load_config(file)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(
            f"{file}: ok ({config.node.lab}/{config.node.machine}, {config.machine.kind} on "
            f"{config.machine.firmware} at {config.serial.port}, gpio {config.gpio.backend}, "
            f"reader {config.reader.backend}, broker {config.telemetry.broker or 'none'})"
        )

    app.add_typer(group, name="config")
