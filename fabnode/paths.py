"""Where a node keeps its state: the usage database, the control socket and the lab's secret.

Every CLI verb and the daemon find the state directory through `resolve_state_dir`, so the CLI a
technician runs and the service agree as long as they see the same flag or environment.
Order: `--state-dir`, `$FABNODE_STATE_DIR`, the config's `[node] state_dir`, then the default:
systemd's `$STATE_DIRECTORY` (or `/var/lib/fabnode`) when running as a service, else a per-user
directory (`$XDG_STATE_HOME/fabnode` or `~/.local/state/fabnode`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SYSTEM_STATE_DIR = Path("/var/lib/fabnode")
USAGE_DB_NAME = "usage.db"
CONTROL_SOCKET_NAME = "control.sock"
SECRET_FILE_NAME = "secret.key"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def running_as_service(env: Mapping[str, str] | None = None) -> bool:
    """True when our systemd unit started us: its StateDirectory= sets $STATE_DIRECTORY.

    INVOCATION_ID is no sign of a service: desktop terminals started by systemd set it too.
    """
    return bool(_env(env).get("STATE_DIRECTORY"))


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The state directory when neither the flag, the environment nor the config names one."""
    e = _env(env)
    # systemd passes a colon-separated list when a unit declares several StateDirectory= entries.
    systemd_dirs = [p for p in e.get("STATE_DIRECTORY", "").split(":") if p]
    if systemd_dirs:
        return Path(systemd_dirs[0])
    if running_as_service(e):
        return SYSTEM_STATE_DIR
    xdg = e.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "fabnode"
    home = e.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "state" / "fabnode"


def resolve_state_dir(
    cli_value: Path | None,
    configured: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The state directory: `--state-dir`, else `$FABNODE_STATE_DIR`, else the config's, else the default."""
    if cli_value is not None:
        return Path(cli_value).expanduser()
    from_env = _env(env).get("FABNODE_STATE_DIR", "")
    if from_env:
        return Path(from_env).expanduser()
    if configured is not None:
        return Path(configured).expanduser()
    return default_state_dir(env)


def ensure_state_dir(state_dir: Path) -> Path:
    """Create the state directory (owner-only, it holds the lab's secret) if it is missing."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state_dir


def usage_db_path(state_dir: Path) -> Path:
    """The usage log's SQLite file."""
    return state_dir / USAGE_DB_NAME


def control_socket_path(state_dir: Path) -> Path:
    """The daemon's local control socket (JSON lines over a Unix socket)."""
    return state_dir / CONTROL_SOCKET_NAME


def secret_file_path(state_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """The lab's secret key file: `$FABNODE_SECRET_FILE`, else `secret.key` in the state directory."""
    override = _env(env).get("FABNODE_SECRET_FILE", "")
    return Path(override).expanduser() if override else state_dir / SECRET_FILE_NAME


def resolve_config(cli_value: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The node's config file: `--config`, else `$FABNODE_CONFIG` (the installer's profile exports it)."""
    if cli_value is not None:
        return Path(cli_value).expanduser()
    from_env = _env(env).get("FABNODE_CONFIG", "")
    return Path(from_env).expanduser() if from_env else None
