"""`fabnode config check` refuses secret files (broker password, TLS key, the lab's secret) others can read.

A secret may be readable by its group only when that group is one the user running the check is in:
the installer keeps secrets 0640 root:fabnode so that the service (group fabnode) can read them, while
a secret readable by a group the service is not in, or by every user on the Pi, is refused.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Collection
from pathlib import Path

from fabnode.config.reader import ConfigError
from fabnode.config.settings import Config
from fabnode.paths import secret_file_path

__all__ = ["check_secret_files", "secret_files"]


def secret_files(config: Config) -> list[tuple[str, Path]]:
    """The secret files the config names, each with the option that names it."""
    t = config.telemetry
    files = [("[telemetry] password_file", t.password_file), ("[telemetry] client_key", t.client_key)]
    if config.node.state_dir is not None:
        # The lab's secret lives in the state dir ($FABNODE_SECRET_FILE overrides it, as for the daemon).
        files.append(("[node] state_dir: the lab's secret", secret_file_path(config.node.state_dir)))
    return [(label, path) for label, path in files if path is not None]


def check_secret_files(config: Config, groups: Collection[int] | None = None) -> None:
    """Raise ConfigError naming each secret file readable beyond `groups` (default: this user's groups).

    A file that does not exist is left to the part that reads it (the daemon says it is missing).
    """
    ours = set(groups) if groups is not None else {os.getegid(), *os.getgroups()}
    problems = []
    for label, path in secret_files(config):
        problem = _exposure(path, ours)
        if problem:
            problems.append(f"{label}: {problem}")
    if problems:
        raise ConfigError(f"{config.path}: " + "; ".join(problems))


def _exposure(path: Path, ours: set[int]) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path} cannot be checked: {exc.strerror or exc}"
    mode = stat.filemode(st.st_mode)
    shared_with_us = st.st_gid in ours
    # A file owned by another user (root) reaches this service through its group: keep the group's read.
    fix = f"chmod 640 {path}" if shared_with_us and st.st_uid != os.geteuid() else f"chmod 600 {path}"
    if st.st_mode & stat.S_IROTH:
        return f"{path} is readable by every user (mode {mode}): {fix}"
    if st.st_mode & stat.S_IRGRP and not shared_with_us:
        return f"{path} is readable by group {_group_name(st.st_gid)} (mode {mode}), not this user's: {fix}"
    return None


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
