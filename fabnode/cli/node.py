"""The daemon's verbs over its control socket: status, print, pause, resume, cancel, lock, badge, sim-input.

Every verb finds the daemon through the state dir (`--state-dir`, `$FABNODE_STATE_DIR`, the config's
`[node] state_dir` with `--config`, else the default), as `fabnode run` does.
Exit codes (fabnode.cli.exits): 0 done; 1 refused by the daemon (the message says why); 2 bad usage or a
wrong config; 10 no daemon running. `--json` prints the daemon's reply as one JSON object.

`fabnode badge UID` taps the simulated badge reader; `fabnode sim-input estop press|release`,
`lid open|close` and `busy on|off` drive the simulated GPIO inputs, `reader unplug|plug` and
`port unplug|plug` pull and replug the simulated reader's and printer's cables (all refused on real
hardware).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fabnode.cli import daemon_client, exits
from fabnode.cli.daemon_client import EXIT_REFUSED, EXIT_USAGE, ask, render_status

__all__ = ["EXIT_REFUSED", "EXIT_USAGE", "ask", "register", "render_status", "say"]

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="Where the daemon keeps its socket (default: $FABNODE_STATE_DIR, the config's, "
                        "then the service's or your state dir).", show_default=False)]
ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="Read [node] state_dir from this config (default: $FABNODE_CONFIG).",
    show_default=False)]
JsonOut = Annotated[bool, typer.Option("--json", help="The daemon's reply as one JSON object.")]
Timeout = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="Seconds to wait for the daemon's answer.")]


def say(reply: dict[str, Any], json_out: bool, default: str = "ok") -> None:
    """The daemon's answer: its message, or with --json the whole reply."""
    typer.echo(json.dumps(reply, sort_keys=True) if json_out else reply.get("message", default))


def _simple(cmd: str, help_text: str) -> Any:
    def verb(json_out: JsonOut = False, timeout: Timeout = 30.0, state_dir: StateDir = None,
             config_file: ConfigFile = None) -> None:
        say(ask({"cmd": cmd}, state_dir, config_file, timeout=timeout), json_out)

    verb.__doc__ = help_text
    return verb


def status(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    timeout: Timeout = 30.0,
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """The machine's state, relay, member, job progress, temperatures and inputs."""
    daemon_client.status(json_out, state_dir, config_file, timeout)


def print_file(
    file: Annotated[Path, typer.Argument(help="The G-code file (the daemon must be able to read it).")],
    json_out: JsonOut = False,
    timeout: Timeout = 120.0,
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Preflight FILE and start it in the current session."""
    if not file.is_file():
        exits.fail(f"{file}: no such file", exits.USAGE)
    say(ask({"cmd": "print", "file": str(file.resolve())}, state_dir, config_file, timeout=timeout), json_out,
        "started")


def lock(
    force: Annotated[bool, typer.Option("--force", help="During a job: cancel it, then lock.")] = False,
    json_out: JsonOut = False,
    timeout: Timeout = 30.0,
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """End the session (the machine cools down, then locks)."""
    say(ask({"cmd": "lock", "force": force}, state_dir, config_file, timeout=timeout), json_out)


def badge(
    uid: Annotated[str, typer.Argument(help="Badge UID in hex: 04:A2:2B:1C or 04a22b1c.")],
    json_out: JsonOut = False,
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Tap a badge on the simulated reader (refused when the reader is real)."""
    from fabnode.records import members as access

    try:
        access.normalise_uid(uid)
    except access.AccessError as exc:
        exits.fail(str(exc), exits.USAGE)
    say(ask({"cmd": "badge", "uid": uid}, state_dir, config_file), json_out)


def sim_input(
    name: Annotated[str, typer.Argument(help="estop, lid, busy, reader or port.")],
    action: Annotated[str, typer.Argument(
        help="estop: press|release; lid: open|close; busy: on|off; reader, port: unplug|plug.")],
    json_out: JsonOut = False,
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Drive simulated hardware: a GPIO input (e-stop, lid, current sensor) or a cable (reader, port)."""
    say(ask({"cmd": "sim-input", "input": name, "action": action}, state_dir, config_file), json_out)


def register(app: typer.Typer) -> None:
    """Add the daemon's verbs."""
    epilog = exits.help_text(exits.OK, exits.FAILED, exits.USAGE, exits.NO_DAEMON)
    app.command("status", epilog=epilog)(status)
    app.command("print", epilog=epilog)(print_file)
    app.command("pause", epilog=epilog)(_simple("pause", "Pause the running job."))
    app.command("resume", epilog=epilog)(_simple("resume", "Resume the paused job."))
    app.command("cancel", epilog=epilog)(_simple("cancel", "Cancel the running job the safe way."))
    app.command("lock", epilog=epilog)(lock)
    app.command("badge", epilog=epilog)(badge)
    app.command("sim-input", epilog=epilog)(sim_input)
