"""The CLI's side of the control socket, without typer: find the daemon, ask it, show its status.

`fabnode status` runs on this alone (fabnode.cli.fast), so it answers in a few tens of milliseconds
even on a Pi Zero; the typer verbs in fabnode.cli.node use the same functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fabnode.cli import exits
from fabnode.node.control import ControlError, NoDaemon, request
from fabnode.paths import control_socket_path, resolve_config, resolve_state_dir

EXIT_REFUSED = exits.FAILED
EXIT_USAGE = exits.USAGE


def socket_path(state_dir: Path | None, config_file: Path | None) -> Path:
    """The daemon's socket: by `--state-dir`, `$FABNODE_STATE_DIR`, the config's state_dir, the default."""
    configured = None
    explicit = config_file is not None
    if state_dir is None and not os.environ.get("FABNODE_STATE_DIR"):  # else the config is not needed
        config_file = resolve_config(config_file)
    else:
        config_file = None
    if config_file is not None:
        from fabnode.config.settings import ConfigError, load_config

        try:
            configured = load_config(config_file).node.state_dir
        except (ConfigError, OSError) as exc:
            if explicit:
                exits.fail(f"config error: {exc}", exits.USAGE)
            # $FABNODE_CONFIG being edited must not stop `cancel` or `status` reaching the running daemon
            exits.error(f"ignoring $FABNODE_CONFIG ({exc}); using the default state dir")
    return control_socket_path(resolve_state_dir(state_dir, configured))


def ask(message: dict[str, Any], state_dir: Path | None, config_file: Path | None = None,
        timeout: float = 30.0) -> dict[str, Any]:
    """Send one request; exit 10 when no daemon runs, 1 (with its message) when it refuses."""
    try:
        reply = request(socket_path(state_dir, config_file), message, timeout=timeout)
    except NoDaemon as exc:
        exits.fail(f"{exc}: start it with `fabnode run` (or systemctl start fabnode), or give its "
                   "--state-dir", exits.NO_DAEMON)
    except ControlError as exc:
        exits.fail(str(exc), exits.FAILED)
    if not reply.get("ok"):
        exits.fail(str(reply.get("error", "refused")), EXIT_USAGE if reply.get("usage") else EXIT_REFUSED)
    return reply


def status(json_out: bool, state_dir: Path | None, config_file: Path | None, timeout: float) -> None:
    """`fabnode status`: the daemon's status for people, or as one JSON object."""
    info = ask({"cmd": "status"}, state_dir, config_file, timeout=timeout)["status"]
    print(json.dumps(info, sort_keys=True) if json_out else render_status(info), flush=True)


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
    if why := (s.get("directory") or {}).get("only_technicians"):
        lines.append(f"  directory  {why}")
    return lines
