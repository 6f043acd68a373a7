"""The `fabnode` command. Each verb (or group of verbs) lives in its own module with a register()."""

from __future__ import annotations

import typer

from fabnode.cli import (
    analyze,
    calibrate,
    config_cmd,
    doctor,
    members,
    node,
    region,
    run,
    sim,
    stream,
    telemetry,
    usage,
)

app = typer.Typer(
    name="fabnode",
    help="Badge access, G-code streaming, usage log and telemetry for one fab lab machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The order here is the order of `fabnode --help`: the member's verbs first, the region's last.
VERB_MODULES = (
    run, node, analyze, stream, sim, config_cmd, members, usage, telemetry, region, calibrate, doctor,
)  # fmt: skip
for _module in VERB_MODULES:
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
