"""`[directory]`: how long a node trusts its copy of the lab directory without hearing from the lab."""

from __future__ import annotations

from dataclasses import dataclass

from fabnode.config.reader import ConfigReader, Section

_DAYS_MAX = 3650  # ten years: far above any lab's wish, there so a typo is an error, not a limit


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """The `[directory]` section, checked; each default is written once, in `read_directory_settings`."""

    max_age_days: int  # past this long without contact with the lab's broker, only technicians pass

    @property
    def max_age_s(self) -> float:
        """`max_age_days` in seconds."""
        return self.max_age_days * 86_400.0


def read_directory_settings(reader: ConfigReader) -> DirectorySettings:
    """Read `[directory]` from the config with bounds; a bad value names the file, section and option."""
    return _directory(reader.section("directory"))


def _directory(s: Section) -> DirectorySettings:
    return DirectorySettings(max_age_days=s.get_int("max_age_days", 30, minval=1, maxval=_DAYS_MAX))
