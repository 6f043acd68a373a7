"""The `fabnode` command. Each verb (or group of verbs) lives in its own module with a register().

A verb's module is imported only when that verb runs (or its --help is asked for): `fabnode --help`
lists the verbs from VERBS below, and `fabnode --version` imports nothing but this package, so a
command on a Pi Zero starts in a fraction of a second. tests/unit/test_cli_dialect.py checks that
VERBS says what the modules register.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from fabnode import __version__
from fabnode.cli import exits

# verb -> (module in fabnode.cli, one line for `fabnode --help`), in the order of `fabnode --help`:
# the member's verbs first, the region's last.
VERBS: dict[str, tuple[str, str]] = {
    "run": ("run", "Run the node: badge access, relay, job streaming, usage log (until SIGTERM)."),
    "status": ("node", "The machine's state, relay, member, job progress, temperatures and inputs."),
    "print": ("node", "Preflight FILE and start it in the current session."),
    "pause": ("node", "Pause the running job."),
    "resume": ("node", "Resume the paused job."),
    "cancel": ("node", "Cancel the running job the safe way."),
    "lock": ("node", "End the session (the machine cools down, then locks)."),
    "badge": ("node", "Tap a badge on the simulated reader (refused when the reader is real)."),
    "sim-input": ("node", "Drive simulated hardware: a GPIO input (e-stop, lid, current sensor) or a cable."),
    "analyze": ("analyze", "Filament, laser time, estimated time, box, temperatures and problems of a file."),
    "stream": ("stream", "Check FILE, stream it to the machine and summarise."),
    "console": ("console", "Send commands to the firmware and print its answers, each after its command."),
    "sim": ("sim", "Run a simulated printer or laser on a pseudo-terminal."),
    "config": ("config_cmd", "Check the node's TOML config."),
    "members": ("members", "Members, their badges and the machines they are trained on."),
    "lab": ("lab", "What the lab's nodes share: moving the lab secret; trainings from Fab-manager."),
    "usage": ("usage", "Jobs and sessions from the usage log, and totals."),
    "web": ("web", "The node's HTTP API for slicers (OctoPrint's): the lab key."),
    "telemetry": ("telemetry", "The node's telemetry to the region's MQTT broker."),
    "collect": ("region", "Subscribe to every node's telemetry, store each record once, acknowledge it."),
    "region": ("region", "The region's store of every node's telemetry."),
    "calibrate": ("calibrate", "Calibration routines and technician's tools."),
    "doctor": ("doctor", "Check that this node is ready: PASS/WARN/FAIL/SKIP per check with what to do."),
}
VERSION_TEXT = f"fabnode {__version__}"
CONTEXT = {"help_option_names": ["-h", "--help"]}


def verb_module(name: str) -> Any:
    """Import the module of one verb group (fabnode.cli.<name>)."""
    return importlib.import_module(f"fabnode.cli.{name}")


def _make_app() -> Any:
    import typer
    from typer.core import TyperGroup

    class LazyVerbs(TyperGroup):
        """Lists the verbs from VERBS; imports a verb's module when the verb is looked up to run."""

        def list_commands(self, ctx: Any) -> list[str]:
            return list(VERBS)

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            if cmd_name not in self.commands and cmd_name in VERBS:
                scratch = typer.Typer(context_settings=CONTEXT, rich_markup_mode=None)
                verb_module(VERBS[cmd_name][0]).register(scratch)
                self.commands.update(typer.main.get_group(scratch).commands)
            return self.commands.get(cmd_name)

        def format_commands(self, ctx: Any, formatter: Any) -> None:
            # The one-line help of each verb without importing every module.
            with formatter.section("Commands"):
                formatter.write_dl([(name, text) for name, (_, text) in VERBS.items()])

    app = typer.Typer(
        name="fabnode",
        cls=LazyVerbs,
        help="Badge access, G-code streaming, usage log and telemetry for one fab lab machine.",
        epilog=exits.help_text(),
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings=CONTEXT,
    )

    def show_version(value: bool) -> None:
        if value:
            typer.echo(VERSION_TEXT)
            raise typer.Exit()

    @app.callback()
    def main_options(
        version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=show_version,
                                     help="Print fabnode's version and exit."),
    ) -> None:
        """Badge access, G-code streaming, usage log and telemetry for one fab lab machine."""

    return app


def __getattr__(name: str) -> Any:
    # `from fabnode.cli import app` (tests, embedders) builds the typer app on first use only.
    if name == "app":
        app = _make_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point; `fabnode --version` and `fabnode status` answer without typer."""
    if sys.argv[1:] in (["--version"], ["-V"]):
        sys.stdout.write(VERSION_TEXT + "\n")
        return
    from fabnode.cli import fast

    if fast.run(sys.argv[1:]):
        return
    __getattr__("app")()
