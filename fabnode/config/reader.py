"""Typed getters with bounds over a parsed TOML document; every error names file, section, key and value.

An option that no getter read is a typo or a leftover: `finish()` refuses the whole config, as
Klipper's configfile does, so a misspelt `idle_timout_s` never silently falls back to a default.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class ConfigError(ValueError):
    """A config file that can't be used; the message names the file and the key."""


class Section:
    """One `[section]` (or `[a.b]` table) of a config file, remembering which keys were read."""

    def __init__(self, reader: ConfigReader, name: str, data: dict[str, Any]) -> None:
        self._reader = reader
        self.name = name
        self._data = data
        self._read: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError naming this file, section and key."""
        return ConfigError(f"{self._reader.path}: [{self.name}] {key}: {message}")

    def has(self, key: str) -> bool:
        """Whether the key is set (marks it read)."""
        self._read.add(key)
        return key in self._data

    def _raw(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise self.error(key, "is required")
        return default

    def get_str(self, key: str, default: Any = _MISSING, *, choices: Sequence[str] | None = None) -> Any:
        """A string option, optionally one of `choices`."""
        value = self._raw(key, default)
        if value is None or (value is default and key not in self._data):
            return value
        if not isinstance(value, str):
            raise self.error(key, f"{value!r} must be a string")
        if choices is not None and value not in choices:
            raise self.error(key, f"{value!r} must be one of {', '.join(choices)}")
        return value

    def get_float(
        self, key: str, default: Any = _MISSING, *, minval: float | None = None, maxval: float | None = None
    ) -> Any:
        """A finite number option within [minval, maxval]."""
        value = self._raw(key, default)
        if value is None or (value is default and key not in self._data):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"{value!r} must be a number")
        return float(self._bounded(key, self._finite(key, value), minval, maxval))

    def get_int(
        self, key: str, default: Any = _MISSING, *, minval: int | None = None, maxval: int | None = None
    ) -> Any:
        """A whole-number option within [minval, maxval]."""
        value = self._raw(key, default)
        if value is None or (value is default and key not in self._data):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"{value!r} must be a whole number")
        return int(self._bounded(key, value, minval, maxval))

    def get_bool(self, key: str, default: Any = _MISSING) -> Any:
        """A true/false option."""
        value = self._raw(key, default)
        if value is not None and not isinstance(value, bool):
            raise self.error(key, f"{value!r} must be true or false")
        return value

    def get_floats(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        count: int,
        minval: float | None = None,
        maxval: float | None = None,
    ) -> Any:
        """A list of exactly `count` finite numbers, each within [minval, maxval], as a tuple."""
        value = self._raw(key, default)
        if value is None or (value is default and key not in self._data):
            return value
        if (
            not isinstance(value, list)
            or len(value) != count
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            raise self.error(key, f"{value!r} must be a list of {count} numbers")
        return tuple(float(self._bounded(key, self._finite(key, v), minval, maxval)) for v in value)

    def get_strs(self, key: str, default: Any = _MISSING) -> Any:
        """A list of strings, as a tuple."""
        value = self._raw(key, default)
        if value is None or (value is default and key not in self._data):
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"{value!r} must be a list of strings")
        return tuple(value)

    def get_path(self, key: str, default: Any = _MISSING) -> Any:
        """A path option; relative paths are taken from the config file's folder."""
        value = self.get_str(key, default)
        if value is None or not isinstance(value, str):
            return value
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self._reader.path.parent / path)

    def _finite(self, key: str, value: float) -> float:
        # TOML spells nan and inf; every bound compares false against nan, so a nan limit is no limit.
        if not math.isfinite(value):
            raise self.error(key, f"{value!r} must be a finite number")
        return value

    def _bounded(self, key: str, value: float, minval: float | None, maxval: float | None) -> float:
        if minval is not None and value < minval:
            raise self.error(key, f"{value!r} is below the minimum {minval}")
        if maxval is not None and value > maxval:
            raise self.error(key, f"{value!r} is above the maximum {maxval}")
        return value

    def unread(self) -> list[str]:
        """Keys present in the file that no getter asked for (sub-tables excluded)."""
        return [k for k, v in self._data.items() if k not in self._read and not isinstance(v, dict)]


class ConfigReader:
    """A TOML file opened for typed reading; call finish() after reading every section."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self._data = data
        self._sections: dict[str, Section] = {}

    @classmethod
    def load(cls, path: Path) -> ConfigReader:
        """Parse the file; a syntax error names the file and the line."""
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls(path, data)

    def section(self, name: str, *, required: bool = False) -> Section:
        """The `[name]` table (dotted names reach sub-tables); empty when absent unless required."""
        if name in self._sections:
            return self._sections[name]
        node: Any = self._data
        for part in name.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if node is _MISSING:
                if required:
                    raise ConfigError(f"{self.path}: section [{name}] is required")
                node = {}
                break
        if not isinstance(node, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        section = Section(self, name, node)
        self._sections[name] = section
        return section

    def subsections(self, name: str) -> Iterator[Section]:
        """Each `[name.X]` table, in file order."""
        parent = self._data.get(name, {})
        if not isinstance(parent, dict):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        for key, value in parent.items():
            if isinstance(value, dict):
                yield self.section(f"{name}.{key}")

    def finish(self) -> None:
        """Refuse options and sections that nothing read: they are typos or leftovers."""
        problems: list[str] = []
        for key, value in self._data.items():
            if isinstance(value, dict):
                if not any(s == key or s.startswith(key + ".") for s in self._sections):
                    problems.append(f"unknown section [{key}]")
            else:
                problems.append(f"option {key!r} outside any section")
        for name, section in self._sections.items():
            problems.extend(f"[{name}] unknown option {key!r}" for key in section.unread())
            node = section._data
            for key, value in node.items():
                sub = f"{name}.{key}"
                if isinstance(value, dict) and sub not in self._sections:
                    problems.append(f"unknown section [{sub}]")
        if problems:
            raise ConfigError(f"{self.path}: " + "; ".join(problems))
