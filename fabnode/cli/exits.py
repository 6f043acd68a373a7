"""The exit codes of every `fabnode` command (one table, also in README.md) and the one error prefix.

Imports nothing heavy: every verb, `fabnode --version` included, may use it.
"""

from __future__ import annotations

import sys
from typing import NoReturn

OK = 0
FAILED = 1  # the command ran and the answer is no: refused, a check failed, problems found, cancelled
USAGE = 2  # bad option or value, missing or unreadable file, wrong config
HALTED = 3  # the printer halted (kill, M112)
THERMAL = 4  # thermal protection stopped the printer
RESET = 5  # the firmware reset during the job
ALARM = 6  # GRBL alarm
REFUSED_LINE = 7  # the firmware refused a line (GRBL error:N)
NO_ANSWER = 8  # the firmware did not answer
PORT = 9  # the serial port could not be opened or was lost
NO_DAEMON = 10  # no fabnode daemon answers on the control socket
INTERNAL = 11  # fabnode's own fault
BUSY = 12  # a member's session or job is open on the machine: a technician's command waits
INTERRUPTED = 130  # Ctrl-C, SIGTERM or SIGHUP (the job or routine was stopped safely first)

TABLE: tuple[tuple[int, str], ...] = (
    (OK, "done (stream: every line of the file was acknowledged)"),
    (FAILED, "refused or failed: the daemon said no, a check FAILed, preflight problems, job cancelled"),
    (USAGE, "bad usage: an unknown option or value, a missing or unreadable file, a wrong config"),
    (HALTED, "the printer halted"),
    (THERMAL, "thermal protection stopped the printer"),
    (RESET, "the firmware reset during the job"),
    (ALARM, "GRBL alarm"),
    (REFUSED_LINE, "the firmware refused a line (GRBL error)"),
    (NO_ANSWER, "no answer from the firmware"),
    (PORT, "the serial port could not be opened or was lost"),
    (NO_DAEMON, "no fabnode daemon runs on this state dir"),
    (INTERNAL, "fabnode's own fault (please report it)"),
    (BUSY, "a member's session or job is open on the machine"),
    (INTERRUPTED, "Ctrl-C, SIGTERM or SIGHUP (the job was stopped safely first)"),
)
PREFIX = "fabnode: "


def help_text(*codes: int) -> str:
    """`Exit codes: 0 ...; 1 ...` for a verb's --help epilog (all codes when none are named)."""
    wanted = set(codes) if codes else {code for code, _ in TABLE}
    return "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in TABLE if code in wanted) + "."


def error(message: str) -> None:
    """Print `fabnode: <message>` on stderr."""
    sys.stderr.write(PREFIX + message + "\n")
    sys.stderr.flush()


def fail(message: str, code: int) -> NoReturn:
    """Print `fabnode: <message>` on stderr and leave with `code` (typer.Exit inside a typer verb)."""
    error(message)
    typer = sys.modules.get("typer")
    if typer is None:  # the fast path (fabnode.cli.fast) runs without typer
        raise SystemExit(code)
    raise typer.Exit(code)
