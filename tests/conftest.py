"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Real sliced G-code lives beside the repository (../shared/data); tests/data holds fixed copies
# of what the tests need when that folder is absent.
SHARED_GCODE = REPO.parent / "shared" / "data" / "gcode"
TEST_DATA = REPO / "tests" / "data"


def gcode_path(name: str) -> Path:
    """The path of a real G-code file, from tests/data or ../shared/data/gcode."""
    for folder in (TEST_DATA, SHARED_GCODE):
        path = folder / name
        if path.exists():
            return path
    pytest.skip(f"{name} is in neither {TEST_DATA} nor {SHARED_GCODE}")
    raise AssertionError  # unreachable


@pytest.fixture
def gcode() -> object:
    """Look up real G-code files by name: gcode('prusaslicer-vase.gcode')."""
    return gcode_path
