"""Config numbers: nan and infinities refused for every number option; new options and their bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from fabnode.config import settings
from fabnode.config.reader import Section
from fabnode.config.settings import ConfigError, load_config

BASE: dict[str, list[str]] = {
    "node": ['lab = "lab-a"', 'machine = "m1"'],
    "serial": ['port = "sim"'],
    "machine": ['material = "PLA"'],
    "materials.PLA": [],
}


def render(kind: str, extra: tuple[str, str] | None = None) -> str:
    """The base config for `kind`, with `extra` = (section, line) added."""
    sections = {name: list(lines) for name, lines in BASE.items()}
    sections["machine"].append(f'kind = "{kind}"')
    if extra:
        sections.setdefault(extra[0], []).append(extra[1])
    return "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in sections.items())


def number_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], int | None]:
    """Every (section, option) read as a number, by printer and laser configs; lists map to their length."""
    found: dict[tuple[str, str], int | None] = {}
    get_float, get_floats = Section.get_float, Section.get_floats

    def record_float(self: Section, key: str, *args: Any, **kwargs: Any) -> Any:
        found[(self.name, key)] = None
        return get_float(self, key, *args, **kwargs)

    def record_floats(self: Section, key: str, *args: Any, count: int, **kwargs: Any) -> Any:
        found[(self.name, key)] = count
        return get_floats(self, key, *args, count=count, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Section, "get_float", record_float)
        m.setattr(Section, "get_floats", record_floats)
        for kind in ("printer", "laser"):
            path = tmp_path / f"{kind}.toml"
            path.write_text(render(kind))
            load_config(path)
    return found


@pytest.mark.parametrize("word", ["nan", "inf", "-inf", "+inf"])
def test_nan_and_infinities_are_refused_for_every_number_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word: str
) -> None:
    options = number_options(tmp_path, monkeypatch)
    # The ones issue 9 names, and a sample of each section, are among those found.
    for must in [("machine", "max_hotend_c"), ("machine", "volume_max_mm"), ("serial", "no_progress_s"),
                 ("session", "cooldown_max_s"), ("materials.PLA", "price_per_kg"), ("node", "min_free_mb"),
                 ("reader", "holdoff_s"), ("telemetry", "resend_after_s")]:  # fmt: skip
        assert must in options
    shown = repr(float(word))
    missed = []
    for (section, key), count in sorted(options.items()):
        value = word if count is None else "[" + ", ".join([word] + ["1.0"] * (count - 1)) + "]"
        path = tmp_path / "bad.toml"
        path.write_text(render("printer", (section, f"{key} = {value}")))
        try:
            load_config(path)
        except ConfigError as exc:
            expected = f"{path}: [{section}] {key}: {shown if count is None else ''}"
            if expected not in str(exc) or "must be a finite number" not in str(exc):
                missed.append(f"{section}.{key}: {exc}")
        else:
            missed.append(f"{section}.{key} = {value} was accepted")
    assert not missed, "\n".join(missed)


def test_a_nan_limit_names_file_section_option_and_value(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(render("printer", ("machine", "max_hotend_c = nan")))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: [machine] max_hotend_c: nan must be a finite number"


def test_lists_of_numbers_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(render("printer", ("machine", "max_feedrate_mm_s = [180.0, -1.0, 12.0, 80.0]")))
    with pytest.raises(ConfigError, match=r"\[machine\] max_feedrate_mm_s: -1.0 is below the minimum 0"):
        load_config(path)
    path.write_text(render("printer", ("machine", "volume_max_mm = [1e300, 180.0, 180.0]")))
    with pytest.raises(ConfigError, match=r"\[machine\] volume_max_mm: 1e\+300 is above the maximum"):
        load_config(path)


def test_no_progress_s_and_max_job_mb_defaults(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(render("laser"))
    config = load_config(path)
    assert config.serial.no_progress_s == 120.0
    assert config.serial.single_line_after_error == 500
    assert config.max_job_mb == 200
    assert config.max_job_bytes == 200 * 1024 * 1024


def test_no_progress_s_and_max_job_mb_are_read(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    text = render("laser", ("serial", "no_progress_s = 12.5")).replace(
        "[machine]\n", "[machine]\nmax_job_mb = 5\n"
    )
    path.write_text(text)
    config = load_config(path)
    assert config.serial.no_progress_s == 12.5
    assert config.max_job_mb == 5
    assert config.max_job_bytes == 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        ("serial", "no_progress_s = 0.5", "[serial] no_progress_s: 0.5 is below the minimum 1.0"),
        ("serial", "no_progress_s = 7200", "[serial] no_progress_s: 7200 is above the maximum 3600.0"),
        ("serial", "no_progress_s = nan", "[serial] no_progress_s: nan must be a finite number"),
        ("serial", 'no_progress_s = "30"', "[serial] no_progress_s: '30' must be a number"),
        ("machine", "max_job_mb = 0", "[machine] max_job_mb: 0 is below the minimum 1"),
        ("machine", "max_job_mb = 200000", "[machine] max_job_mb: 200000 is above the maximum 100000"),
        ("machine", "max_job_mb = 2.5", "[machine] max_job_mb: 2.5 must be a whole number"),
        ("machine", "max_job_mb = inf", "[machine] max_job_mb: inf must be a whole number"),
        ("serial", "single_line_after_error = -1",
         "[serial] single_line_after_error: -1 is below the minimum 0"),
        ("serial", "single_line_after_error = 1.5",
         "[serial] single_line_after_error: 1.5 must be a whole number"),
    ],
)
def test_no_progress_s_and_max_job_mb_are_bounded(
    tmp_path: Path, section: str, line: str, expected: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(render("printer", (section, line)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}: {expected}" == str(caught.value)


SECTION_CLASSES = [
    settings.NodeConfig,
    settings.SerialConfig,
    settings.SessionConfig,
    settings.GpioConfig,
    settings.ReaderConfig,
    settings.TelemetryConfig,
    settings.Config,
]


@pytest.mark.parametrize("cls", SECTION_CLASSES, ids=lambda c: c.__name__)
def test_each_default_lives_in_its_getter_only(cls: type) -> None:
    # A default on the dataclass would be a second one, free to drift from the getter's (as 600 vs 900 did).
    with_defaults = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert with_defaults == []


def test_the_getters_defaults_are_in_force_when_options_are_absent(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(render("printer"))
    config = load_config(path)
    assert config.session.cooldown_max_s == 900.0
    assert (config.gpio.debounce_ms, config.reader.holdoff_s) == (30, 0.5)
