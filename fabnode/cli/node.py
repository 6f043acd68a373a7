"""The daemon's verbs over its control socket: status, print, pause, resume, cancel, lock, badge, sim-input.

Every verb finds the daemon through the state dir (`--state-dir`, `$FABNODE_STATE_DIR`, the config's
`[node] state_dir` with `--config`, else the default), as `fabnode run` does.
Exit codes: 0 done; 1 refused by the daemon (the message says why); 2 bad usage or no daemon running.

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

from fabnode.config.settings import ConfigError, load_config
from fabnode.node.control import ControlError, request
from fabnode.paths import control_socket_path, resolve_state_dir
from fabnode.records import members as access

EXIT_REFUSED = 1
EXIT_USAGE = 2

StateDir = Annotated[Path | None, typer.Option("--state-dir", help="Where the daemon keeps its socket.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="Read [node] state_dir from this config.")]


def _socket(state_dir: Path | None, config_file: Path | None) -> Path:
    configured = None
    if config_file is not None:
        try:
            configured = load_config(config_file).node.state_dir
        except (ConfigError, OSError) as exc:
            typer.echo(f"fabnode: config error: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
    return control_socket_path(resolve_state_dir(state_dir, configured))


def ask(message: dict[str, Any], state_dir: Path | None, config_file: Path | None = None,
        timeout: float = 30.0) -> dict[str, Any]:
    """Send one request; exit 2 when no daemon answers, 1 (with its message) when it refuses."""
    try:
        reply = request(_socket(state_dir, config_file), message, timeout=timeout)
    except ControlError as exc:
        typer.echo(f"fabnode: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not reply.get("ok"):
        typer.echo(f"fabnode: {reply.get('error', 'refused')}", err=True)
        raise typer.Exit(EXIT_USAGE if reply.get("usage") else EXIT_REFUSED)
    return reply


def _simple(cmd: str, help_text: str) -> Any:
    def verb(state_dir: StateDir = None, config_file: ConfigFile = None) -> None:
        typer.echo(ask({"cmd": cmd}, state_dir, config_file).get("message", "ok"))

    verb.__doc__ = help_text
    return verb


def status(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """The machine's state, relay, member, job progress, temperatures and inputs."""
    info = ask({"cmd": "status"}, state_dir, config_file)["status"]
    if json_out:
        typer.echo(json.dumps(info, sort_keys=True))
        return
    typer.echo(render_status(info))


def render_status(s: dict[str, Any]) -> str:
    """`fabnode status` for people."""
    lines = [f"{s['lab']}/{s['machine']} ({s['kind']}, {s['firmware']}): {s['state'].upper()}"
             + (f" - {s['fault']}" if s.get("fault") else ""),
             f"  relay      {'ON' if s['relay'] else 'off'}"]  # fmt: skip
    session = s.get("session")
    if session:
        extra = ", ends after the job" if session["badge_out_pending"] else ""
        role = "maintenance by " if session["maintenance"] else ""
        lines.append(f"  session    {role}{session['member']} for {session['started_s_ago']:.0f} s{extra}")
    job = s.get("job")
    if job:
        eta = "?" if job.get("eta_s") is None else f"{job['eta_s']:.0f} s"
        lines.append(f"  job        {Path(job['file']).name}: {job['status']}"
                     + (f" ({job['pause_reason']})" if job.get("pause_reason") else ""))
        if "lines_acked" in job:
            done = f"{job['percent']:.1f}%  {job['lines_acked']}/{job['lines_total']} lines"
            lines.append(f"             {done}, elapsed {job['elapsed_s']:.0f} s, eta {eta}, "
                         f"last line {job['last_line']}")
    for name, t in (s.get("temperatures") or {}).items():
        target = "" if t.get("target") in (None, 0, 0.0) else f" -> {t['target']:.0f}"
        lines.append(f"  {name:<10} {t['actual']:.1f} °C{target}")
    inputs = s.get("inputs") or {}
    lines.append(f"  e-stop     {'PRESSED' if inputs.get('estop') else 'released'}"
                 + ("   lid OPEN" if inputs.get("lid") else ""))
    inbox = s.get("inbox")
    if inbox and inbox.get("waiting"):
        lines.append(f"  inbox      {', '.join(inbox['waiting'])}")
    return "\n".join(lines + _troubles(s))


def _troubles(s: dict[str, Any]) -> list[str]:
    """Lines for what is wrong with the node's own parts: port, reader, storage, a pending config."""
    lines = []
    port = s.get("port") or {}
    if port and not port.get("open"):
        away = f" for {port['lost_s']:.0f} s" if port.get("lost_s") is not None else ""
        lines.append(f"  port       {port.get('path')}: NOT CONNECTED{away} ({port.get('reason') or '?'})")
    reader = s.get("reader") or {}
    if reader.get("present") is False:
        lines.append(f"  reader     UNPLUGGED ({reader.get('detail') or '?'})")
    storage = s.get("storage") or {}
    if storage and not storage.get("ok", True):
        kept = storage.get("kept_records", 0)
        lines.append(f"  storage    {storage.get('problem')}; {kept} record(s) waiting; no new session")
    config = s.get("config") or {}
    if config.get("after_job"):
        lines.append("  config     new serial settings apply after the job")
    return lines


def print_file(
    file: Annotated[Path, typer.Argument(help="The G-code file (the daemon must be able to read it).")],
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Preflight FILE and start it in the current session."""
    if not file.is_file():
        typer.echo(f"fabnode: {file}: no such file", err=True)
        raise typer.Exit(EXIT_USAGE)
    reply = ask({"cmd": "print", "file": str(file.resolve())}, state_dir, config_file, timeout=120.0)
    typer.echo(reply.get("message", "started"))


def lock(
    force: Annotated[bool, typer.Option("--force", help="During a job: cancel it, then lock.")] = False,
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """End the session (the machine cools down, then locks)."""
    typer.echo(ask({"cmd": "lock", "force": force}, state_dir, config_file).get("message", "ok"))


def badge(
    uid: Annotated[str, typer.Argument(help="Badge UID in hex: 04:A2:2B:1C or 04a22b1c.")],
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Tap a badge on the simulated reader (refused when the reader is real)."""
    try:
        access.normalise_uid(uid)
    except access.AccessError as exc:
        typer.echo(f"fabnode: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    typer.echo(ask({"cmd": "badge", "uid": uid}, state_dir, config_file).get("message", "ok"))


def sim_input(
    name: Annotated[str, typer.Argument(help="estop, lid, busy, reader or port.")],
    action: Annotated[str, typer.Argument(
        help="estop: press|release; lid: open|close; busy: on|off; reader, port: unplug|plug.")],
    state_dir: StateDir = None,
    config_file: ConfigFile = None,
) -> None:
    """Drive simulated hardware: a GPIO input (e-stop, lid, current sensor) or a cable (reader, port)."""
    typer.echo(ask({"cmd": "sim-input", "input": name, "action": action}, state_dir, config_file)["message"])


def register(app: typer.Typer) -> None:
    """Add the daemon's verbs."""
    app.command("status")(status)
    app.command("print")(print_file)
    app.command("pause")(_simple("pause", "Pause the running job."))
    app.command("resume")(_simple("resume", "Resume the paused job."))
    app.command("cancel")(_simple("cancel", "Cancel the running job the safe way."))
    app.command("lock")(lock)
    app.command("badge")(badge)
    app.command("sim-input")(sim_input)
