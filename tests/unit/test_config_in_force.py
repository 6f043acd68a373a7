"""settings_in_force: every option a getter read, defaults included, as JSON; never a secret."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fabnode.config.reader import ConfigReader
from fabnode.config.settings import load_config, settings_in_force

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """
[node]
lab = "lab-a"
machine = "m1"
[serial]
port = "sim"
[machine]
kind = "laser"
"""


def options_read(monkeypatch: pytest.MonkeyPatch, path: Path) -> dict[str, set[str]]:
    """Load `path`, returning the options every section's getters asked for."""
    readers: list[ConfigReader] = []
    finish = ConfigReader.finish

    def keep(self: ConfigReader) -> None:
        readers.append(self)
        finish(self)

    monkeypatch.setattr(ConfigReader, "finish", keep)
    load_config(path)
    monkeypatch.undo()
    return {name: set(section._read) for name, section in readers[0]._sections.items()}


@pytest.mark.parametrize("name", ["fabnode-printer.toml", "fabnode-laser.toml"])
def test_every_option_read_is_in_force(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = REPO / "config" / name
    read = options_read(monkeypatch, path)
    in_force = settings_in_force(load_config(path))
    assert json.loads(json.dumps(in_force)) == in_force  # plain JSON: no Path, tuple or set
    for section, keys in read.items():
        assert set(in_force[section]) == keys, section


def test_defaults_are_shown_as_in_force(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(MINIMAL)
    in_force = settings_in_force(load_config(path))
    assert in_force["serial"] == {
        "port": "sim",
        "baud": 115200,
        "rx_window": 127,
        "advanced_ok": True,
        "no_answer_s": 60.0,
        "reconnect_every_s": 2.0,
        "no_progress_s": 120.0,
        "single_line_after_error": 500,
    }
    assert in_force["machine"]["firmware"] == "grbl"
    assert in_force["machine"]["max_line_length"] == 80
    assert in_force["machine"]["max_job_mb"] == 200
    assert in_force["machine"]["forbidden_commands"] == ["M500", "M502", "M997"]
    assert in_force["gpio"]["lid_pin"] == 6
    assert in_force["session"]["cooldown_max_s"] == 900.0
    assert in_force["inbox"] == {"path": None}
    assert in_force["node"]["state_dir"] is None


def test_no_secret_is_shown(tmp_path: Path) -> None:
    password = tmp_path / "broker-password"
    password.write_text("hunter2-password\n")
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nsecret-key-bytes\n")
    path = tmp_path / "node.toml"
    path.write_text(
        MINIMAL + '[telemetry]\nbroker = "mqtts://node:pw-in-url@region.example:8883"\n'
        'username = "lab-a-m1"\npassword_file = "broker-password"\nclient_key = "client.key"\n'
    )
    in_force = settings_in_force(load_config(path))
    shown = json.dumps(in_force)
    for secret in ("hunter2", "secret-key-bytes", "PRIVATE KEY", "pw-in-url"):
        assert secret not in shown
    t = in_force["telemetry"]
    assert t["broker"] == "mqtts://region.example:8883"
    assert t["password_file"] == str(password)  # a path is fine: it says where, not what
    assert t["client_key"] == str(key)
    assert t["username"] == "lab-a-m1"


def test_materials_are_sections_of_their_own() -> None:
    in_force = settings_in_force(load_config(REPO / "config" / "fabnode-printer.toml"))
    assert in_force["machine"]["material"] == "PLA"
    assert in_force["materials.PETG"] == {
        "diameter_mm": 1.75,
        "density_g_cm3": 1.27,
        "price_per_kg": 28.0,
        "price_per_laser_hour": 0.0,
        "laser_power": None,
        "laser_feed_mm_min": None,
    }


def documented(text: str) -> dict[str, set[str]]:
    """The options an example shows (set or commented out), by section."""
    shown: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        if header := re.match(r"^\[([^\]]+)\]", line):
            section = header.group(1)
        elif option := re.match(r"^#?\s*([a-z0-9_]+)\s*=", line):
            shown.setdefault(section, set()).add(option.group(1))
    return shown


def test_the_printer_example_shows_every_option() -> None:
    # Its header says so: a new option without a line there is an option a lab will not find.
    path = REPO / "config" / "fabnode-printer.toml"
    shown = documented(path.read_text())
    laser = documented((REPO / "config" / "fabnode-laser.toml").read_text())
    material_keys = set().union(
        *(keys for name, keys in (shown | laser).items() if name.startswith("materials."))
    )
    for section, keys in settings_in_force(load_config(path)).items():
        if section.startswith("materials."):
            assert set(keys) <= material_keys
        else:
            assert set(keys) <= shown.get(section, set()), f"[{section}] {sorted(set(keys) - shown[section])}"
