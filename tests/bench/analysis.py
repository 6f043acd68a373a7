"""Benchmark of G-code analysis: lines per second beside bare Python loops over the same file.

References measured in the same run: `for line in f: pass` and `for line in f: line.split()`.
Also the accuracy of the estimate against the slicer's own figures in each file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from fabnode.gcode.analysis import analyze_file
from tests.bench.data import bench_gcode_file
from tests.data import gcode_names

BIG = "prusaslicer-benchy.gcode"
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _bare(path: Path) -> None:
    with path.open() as f:
        for _line in f:
            pass


def _split(path: Path) -> None:
    with path.open() as f:
        for line in f:
            line.split()


def _slicer(path: Path) -> tuple[float, float] | None:
    tail = path.read_text(errors="replace")[-60_000:]
    fil = re.search(r"^; filament used \[mm\] = ([\d.]+)", tail, re.M)
    est = re.search(r"^; estimated printing time \(normal mode\) = (.+)$", tail, re.M)
    if not (fil and est):
        return None
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([dhms])", est.group(1)))
    return float(fil.group(1)), float(seconds)


def _speed_rows(path: Path) -> list[tuple[str, str, str]]:
    lines = sum(1 for _ in path.open())
    bare = _best(lambda: _bare(path))
    split = _best(lambda: _split(path))
    ours = _best(lambda: analyze_file(path), repeat=2)
    rate = lines / ours
    return [
        (f"analyze {path.name}", f"{rate:,.0f} lines/s ({ours:.2f} s)", f"{lines:,} lines"),
        ("  vs bare loop", f"{ours / bare:.0f}x slower", f"for line in f: pass, {lines / bare:,.0f} lines/s"),
        ("  vs split loop", f"{ours / split:.0f}x slower", f"line.split(), {lines / split:,.0f} lines/s"),
    ]


def _accuracy_rows() -> list[tuple[str, str, str]]:
    rows = []
    for path in (bench_gcode_file(n) for n in gcode_names() if n.startswith("prusaslicer-")):
        figures = _slicer(path)
        if figures is None:
            continue
        a = analyze_file(path)
        rows.append(
            (
                f"estimate {path.name}",
                f"{a.estimated_s:.0f} s, {a.filament_mm:.1f} mm",
                f"slicer {figures[1]:.0f} s ({a.estimated_s / figures[1]:.3f}x), "
                f"{figures[0]:.1f} mm ({a.filament_mm / figures[0]:.4f}x)",
            )
        )
    return rows


def run() -> list[tuple[str, str, str]]:
    """Rows (benchmark, result, reference/ratio)."""
    path = bench_gcode_file(BIG)
    return _speed_rows(path) + _accuracy_rows()
