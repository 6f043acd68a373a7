"""Where the benchmarks take their real G-code: the lab's shared data set beside the repository when it is
there (larger runs, the same files the demo shows), else the copies the tests carry in tests/data."""

from __future__ import annotations

from pathlib import Path

from tests.data import gcode_file

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "gcode"  # ../shared, if any


def bench_gcode_file(name: str) -> Path:
    """`name` from ../shared/data/gcode beside the repository, else from tests/data."""
    shared = SHARED / name
    return shared if shared.is_file() else gcode_file(name)


def gcode_prefix(name: str, lines: int, folder: Path) -> Path:
    """The first `lines` lines of the bench file `name`, written to `folder` (a job short enough to
    stream within a benchmark's time)."""
    prefix = folder / f"{Path(name).stem}-prefix.gcode"
    with bench_gcode_file(name).open(encoding="utf-8") as f:
        prefix.write_text("".join(line for _, line in zip(range(lines), f, strict=False)), encoding="utf-8")
    return prefix
