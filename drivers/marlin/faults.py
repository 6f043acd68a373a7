"""Lines from Marlin (and Marlin-likes) after which a job cannot go on: its JobFailed kind and reason.

Pure, classified once here: drivers.marlin.host asks which lines end a job and what to say.
"""

from __future__ import annotations

from drivers.events import FAILURE_ERROR, FAILURE_HALTED, FAILURE_RESET, FAILURE_THERMAL
from drivers.marlin import wire

# Nothing on the wire will be answered after these, in a job or not.
STOPS_PRINTER = frozenset({wire.START, wire.THERMAL, wire.HALTED})
# Every line is still answered `ok`, but none runs: a job fails (outside one, a command's reply line).
STOPS_JOB = frozenset({wire.LOCKED, wire.FATAL_ERROR})

_FAILURES: dict[str, tuple[str, str]] = {
    wire.START: (FAILURE_RESET, "the printer reset (it said 'start'): the job is lost"),
    wire.THERMAL: (FAILURE_THERMAL, "thermal protection stopped the printer: {line}"),
    wire.HALTED: (FAILURE_HALTED, "the printer halted: {line}"),
    wire.LOCKED: (FAILURE_ERROR, "the printer is locked (unlock it with M511 or on its screen): {line}"),
    wire.FATAL_ERROR: (FAILURE_ERROR, "the printer stopped the job: {line}"),
}


def job_failure(kind: str, line: str) -> tuple[str, str]:
    """(FAILURE_* kind, reason) for a line of a kind in STOPS_PRINTER or STOPS_JOB."""
    failure, reason = _FAILURES[kind]
    return failure, reason.format(line=line)


def resend_loop(asked: int, file_line: int, repeats: int, said: str) -> tuple[str, str]:
    """(kind, reason) when the printer keeps asking for one line: name it and what it said."""
    where = f" (file line {file_line})" if file_line else ""
    return FAILURE_ERROR, f"the printer asked for line N{asked}{where} {repeats} times in a row: {said}"
