"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data import DATA, gcode_file

REPO = Path(__file__).resolve().parent.parent
# The real sliced G-code the tests use is kept in tests/data (sources and licences in its README.md),
# so a clone passes on its own: no test reads anything beside the repository.
TEST_DATA = DATA


def gcode_path(name: str) -> Path:
    """The path of a real G-code file in tests/data; the test fails (never skips) if it is missing."""
    try:
        return gcode_file(name)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def gcode() -> object:
    """Look up real G-code files by name: gcode('prusaslicer-vase.gcode')."""
    return gcode_path
