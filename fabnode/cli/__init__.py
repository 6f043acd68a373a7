"""The `fabnode` command. Each verb (or group of verbs) lives in its own module with a register()."""

from __future__ import annotations

import typer

from fabnode.cli import analyze, calibrate, config_cmd, doctor, members, sim, stream, usage

app = typer.Typer(
    name="fabnode",
    help="Badge access, G-code streaming, usage log and telemetry for one fab lab machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in (analyze, stream, sim, config_cmd, members, usage, calibrate, doctor):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
