"""`fabnode status --json` shows every setting in force, defaults included, and never a secret."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_daemon_helpers import Node, write_config


def test_status_shows_the_settings_in_force(tmp_path: Path) -> None:
    config = write_config(tmp_path, idle=720.0)
    node = Node(tmp_path / "state", config=config).start()
    try:
        result = node.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        settings = json.loads(result.stdout)["settings"]
        assert settings["session"]["idle_timeout_s"] == 720.0  # from the file
        assert settings["machine"]["max_job_mb"] == 200  # a default nobody wrote, shown all the same
        assert settings["serial"]["no_progress_s"] == 120.0
        assert "password" not in json.dumps(settings["telemetry"]).lower().replace("password_file", "")
    finally:
        node.stop()
