"""Benchmark of the CLI's start-up: `fabnode --version`, `fabnode status --json` with no daemon and
`fabnode --help`, each beside the bare interpreter (`python -c pass`) timed in the same run.

Median of several runs of each, as a fresh process (what a technician or a script pays per command).
The goal (issue 10): each command at most 4x the bare interpreter.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNS = 7
GOAL = 4.0


def _median_s(args: list[str], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False, timeout=60)  # fmt: skip
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run() -> list[tuple[str, str, str]]:
    """Rows: (benchmark, figure, reference/ratio)."""
    with tempfile.TemporaryDirectory() as empty:
        commands = [
            ("fabnode --version", ["-m", "fabnode", "--version"]),
            ("fabnode status --json (no daemon)",
             ["-m", "fabnode", "status", "--json", "--state-dir", empty]),
            ("fabnode --help", ["-m", "fabnode", "--help"]),
        ]
        bare = _median_s(["-c", "pass"])
        rows = [("cli start-up: python -c pass (reference)", f"{bare * 1000:.0f} ms", "1.00")]
        for name, args in commands:
            seconds = _median_s(args)
            ratio = seconds / bare
            verdict = "ok" if ratio <= GOAL else f"over the {GOAL:g}x goal"
            rows.append((f"cli start-up: {name}", f"{seconds * 1000:.0f} ms",
                         f"x{ratio:.1f} vs python -c pass ({verdict})"))  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run():
        print("  ".join(row))
