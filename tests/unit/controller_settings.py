"""Controller settings for tests. The daemon builds them from the config only (one default per option,
the config's); tests that drive the controller directly take theirs from here."""

from __future__ import annotations

from typing import Any

from fabnode.machine.profile import PRINTER
from fabnode.machine.state import ControllerSettings

TEST_DEFAULTS: dict[str, Any] = {
    "kind": PRINTER, "idle_timeout_s": 900.0, "idle_warning_s": 60.0, "cooldown_max_s": 600.0,
    "cooldown_hotend_below_c": 50.0, "fume_runon_s": 120.0, "host_lost_relay_s": 120.0,
}  # fmt: skip


def settings_for_tests(**overrides: Any) -> ControllerSettings:
    """ControllerSettings with the tests' values, `overrides` on top."""
    return ControllerSettings(**{**TEST_DEFAULTS, **overrides})
