"""MAP.toml: which Fab-manager training lets a member use which fabnode machine, read and checked.

Pure but for reading the one file; every error names the file, line and key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fabnode.envelope import NAME


class MapError(ValueError):
    """MAP.toml cannot be used; the message names the file, line and key."""


MAP_HELP = """\
MAP.toml says which Fab-manager training lets a member use which fabnode machine:

\b
  [training.formation-imprimante-3d]   # the training's slug, or its id: [training.12]
  machines = ["prusa-mk4-1", "prusa-mini-2"]   # fabnode machine names ([node] machine)
  valid_months = 12   # optional: the authorization's validity set in Fab-manager

A member may use a mapped machine while Fab-manager lists one of its trainings as validated for
them (and, with valid_months, until that many months after the validation day)."""
_MAP_TEXT = MAP_HELP.replace("\b\n", "")  # \b keeps click from re-flowing the example; not for errors

_MAP_KEYS = {"machines", "valid_months"}
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,199}$")


@dataclass(frozen=True, slots=True)
class MappedTraining:
    """One `[training.KEY]` of MAP.toml: the Fab-manager training (slug or id) and what it opens."""

    key: str  # as written: a slug, or digits for an id
    machines: tuple[str, ...]
    valid_months: int | None
    line: int  # of its [training.KEY] header, for errors


@dataclass(frozen=True, slots=True)
class MachineMap:
    """MAP.toml, read and checked."""

    path: Path
    trainings: tuple[MappedTraining, ...]

    def machines(self) -> set[str]:
        """Every fabnode machine the map hands to Fab-manager."""
        return {m for t in self.trainings for m in t.machines}


def _header_line(text: str, key: str) -> int:
    quoted = re.escape(key)
    pattern = re.compile(rf"^\s*\[\s*training\s*\.\s*(\"{quoted}\"|'{quoted}'|{quoted})\s*\]")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return 1


def _key_line(text: str, start: int, key: str) -> int:
    lines = text.splitlines()
    for number in range(start, len(lines) + 1):
        line = lines[number - 1]
        if number > start and line.lstrip().startswith("["):
            break
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return start


def read_map(path: Path) -> MachineMap:
    """Read MAP.toml (see MAP_HELP); raise MapError naming file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MapError(f"{path}: cannot read it ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MapError(f"{path}: {exc}") from None
    extra = sorted(set(data) - {"training"})
    if extra:
        raise MapError(f"{path}: line {_key_line(text, 1, extra[0])}: unknown key {extra[0]!r}; "
                       f"expected [training.SLUG] tables\n{_MAP_TEXT}")
    tables = data.get("training")
    if not isinstance(tables, dict) or not tables:
        raise MapError(f"{path}: line 1: no [training.SLUG] table\n{_MAP_TEXT}")
    trainings = []
    for key, table in tables.items():
        line = _header_line(text, key)
        where = f"{path}: line {line}: [training.{key}]"
        if not _SLUG.match(key):
            raise MapError(f"{where}: a Fab-manager slug (lower-case letters, digits, '-') or id expected")
        if not isinstance(table, dict):
            raise MapError(f"{where}: must be a table with machines = [...]")
        unknown = sorted(set(table) - _MAP_KEYS)
        if unknown:
            raise MapError(f"{path}: line {_key_line(text, line, unknown[0])}: [training.{key}] "
                           f"{unknown[0]}: unknown key (expected machines, valid_months)")
        trainings.append(MappedTraining(key, _map_machines(text, path, line, key, table),
                                        _map_months(text, path, line, key, table), line))
    return MachineMap(path, tuple(trainings))


def _map_machines(text: str, path: Path, line: int, key: str, table: dict[str, object]) -> tuple[str, ...]:
    where = f"{path}: line {_key_line(text, line, 'machines')}: [training.{key}] machines"
    machines = table.get("machines")
    if machines is None:
        raise MapError(f"{path}: line {line}: [training.{key}] machines: is required")
    if not isinstance(machines, list) or not machines or len(machines) > 256:
        raise MapError(f"{where}: a list of 1 to 256 machine names expected")
    for name in machines:
        if not isinstance(name, str) or not NAME.match(name):
            raise MapError(f"{where}: {name!r} is no machine name (lower-case letters, digits, '-' or '_')")
    return tuple(dict.fromkeys(machines))


def _map_months(text: str, path: Path, line: int, key: str, table: dict[str, object]) -> int | None:
    months = table.get("valid_months")
    if months is None:
        return None
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 240:
        where = f"{path}: line {_key_line(text, line, 'valid_months')}: [training.{key}] valid_months"
        raise MapError(f"{where}: {months!r} must be a whole number of months from 1 to 240")
    return months
