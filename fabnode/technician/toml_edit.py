"""Record a material's laser settings in the config file: a small targeted text edit.

Only `laser_power` and `laser_feed_mm_min` of one `[materials.<name>]` table change; every other
byte (comments, order, spacing, line endings) stays. A key already there keeps its line and its
trailing comment; a missing key goes after the table's last key; a missing table goes at the end.
The result is parsed again and compared with the original: anything but those two values differing
(a layout this editor does not understand) is refused rather than written.
"""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any

KEYS = ("laser_power", "laser_feed_mm_min")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class MaterialEditError(ValueError):
    """The config cannot be edited safely; the message says why."""


def toml_float(value: float) -> str:
    """A float as TOML writes it (always with a point or exponent: `800.0`, `0.5`)."""
    return repr(float(value))


def set_material_laser(text: str, material: str, power: float, feed_mm_min: float) -> str:
    """The config text with `[materials.<material>]` laser_power/laser_feed_mm_min set."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MaterialEditError(f"the config is not valid TOML: {exc}") from None
    values = {"laser_power": toml_float(power), "laser_feed_mm_min": toml_float(feed_mm_min)}
    lines = text.splitlines(keepends=True)
    span = _table_span(lines, ("materials", material))
    if span is None:
        if material in before.get("materials", {}):
            raise MaterialEditError(f"[materials.{material}] is not written as a table of its own "
                                    "(an inline table or dotted keys): edit it by hand")
        result = _append_table(text, material, values)
    else:
        result = "".join(_edit_table(lines, span, values))
    _verify(before, result, material, power, feed_mm_min)
    return result


def _header_path(line: str) -> tuple[str, ...] | None:
    """The dotted name of a `[table]` header line, () for other headers (`[[array]]`), None for no header."""
    stripped = line.strip()
    if not stripped.startswith("["):
        return None
    try:
        parsed: Any = tomllib.loads(stripped)
    except tomllib.TOMLDecodeError:
        return None  # e.g. a line of a multi-line array
    if stripped.startswith("[["):
        return ()
    path: list[str] = []
    while isinstance(parsed, dict) and len(parsed) == 1:
        key, parsed = next(iter(parsed.items()))
        path.append(key)
    return tuple(path)


def _table_span(lines: list[str], path: tuple[str, ...]) -> tuple[int, int] | None:
    """(header index, index of the next header or the end) of the table `path`, or None."""
    start = None
    for i, line in enumerate(lines):
        header = _header_path(line)
        if header is None:
            continue
        if start is not None:
            return start, i
        if header == path:
            start = i
    return None if start is None else (start, len(lines))


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^(?P<head>[ \t]*(?:{key}|\"{key}\"|'{key}')[ \t]*=[ \t]*)(?P<value>[^#\r\n]*?)"
                      rf"(?P<tail>[ \t]*(?:#[^\r\n]*)?)(?P<eol>\r?\n?)$")


def _edit_table(lines: list[str], span: tuple[int, int], values: dict[str, str]) -> list[str]:
    out = list(lines)
    start, end = span
    missing = dict(values)
    for i in range(start + 1, end):
        for key in list(missing):
            match = _key_line(key).match(out[i])
            if match:
                out[i] = match["head"] + missing.pop(key) + match["tail"] + match["eol"]
    if missing:
        last = max((i for i in range(start, end) if _is_key_value(out[i])), default=start)
        eol = _eol(lines)
        if not out[last].endswith(("\n", "\r")):
            out[last] += eol
        out[last + 1 : last + 1] = [f"{key} = {value}{eol}" for key, value in missing.items()]
    return out


def _is_key_value(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(("#", "["))


def _eol(lines: list[str]) -> str:
    return "\r\n" if lines and lines[0].endswith("\r\n") else "\n"


def _append_table(text: str, material: str, values: dict[str, str]) -> str:
    eol = _eol(text.splitlines(keepends=True))
    quoted = '"' + material.replace("\\", "\\\\").replace('"', '\\"') + '"'
    name = material if _BARE_KEY.match(material) else quoted
    body = [f"[materials.{name}]", *(f"{k} = {v}" for k, v in values.items())]
    lead = "" if not text else (eol if text.endswith(("\n", "\r")) else eol + eol)
    return text + lead + eol.join(body) + eol


def _verify(before: dict[str, Any], result: str, material: str, power: float, feed: float) -> None:
    """Refuse the edit unless exactly the two values changed."""
    expected = copy.deepcopy(before)
    table = expected.setdefault("materials", {}).setdefault(material, {})
    table.update({"laser_power": float(power), "laser_feed_mm_min": float(feed)})
    try:
        after = tomllib.loads(result)
    except tomllib.TOMLDecodeError as exc:
        raise MaterialEditError(f"the edit would break the config ({exc}): not written") from None
    if after != expected:
        raise MaterialEditError(
            f"the edit of [materials.{material}] would change more than {', '.join(KEYS)} "
            "(a layout this editor does not understand): not written; edit it by hand")
