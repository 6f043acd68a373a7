"""Verbs answered without typer, for speed: `fabnode status` is what a technician (or a script, every
few seconds) runs most, and typer with its option coercion costs several hundred milliseconds on a Pi.

Only the plain spellings are taken here (`--json`, `--state-dir DIR`, `--config FILE`, `--timeout S`,
also with `=`); anything else (`-h`, a typo) goes to the typer app, which says what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

_VALUED = ("--state-dir", "--config", "--timeout")


def parse_status(args: Sequence[str]) -> dict[str, object] | None:
    """The options of `fabnode status ARGS`, or None when the typer app should handle them."""
    options: dict[str, object] = {"json_out": False, "state_dir": None, "config_file": None, "timeout": 30.0}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--json":
            options["json_out"] = True
            continue
        name, eq, value = arg.partition("=")
        if name not in _VALUED:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if not value:
            return None
        if name == "--timeout":
            try:
                seconds = float(value)
            except ValueError:
                return None
            if not math.isfinite(seconds) or seconds < 0.1:
                return None
            options["timeout"] = seconds
        else:
            options["state_dir" if name == "--state-dir" else "config_file"] = Path(value)
    return options


def run(argv: Sequence[str]) -> bool:
    """Run argv[0] here when it is a fast verb with plain options; False to hand it to typer."""
    if not argv or argv[0] != "status":
        return False
    options = parse_status(argv[1:])
    if options is None:
        return False
    from fabnode.cli import daemon_client

    daemon_client.status(**options)  # type: ignore[arg-type]
    return True
