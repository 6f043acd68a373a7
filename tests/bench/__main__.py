"""`make bench`: run every benchmark and print one table.

Every figure stands beside a reference measured in the same run (the wire's limit, a naive host).
"""

from __future__ import annotations

import importlib
import sys

# Each module has run() -> list[tuple[str, str, str]]: (benchmark, figure, reference/ratio).
MODULES: list[str] = [
    "streaming", "grbl_streaming", "analysis", "node", "node_prepare", "telemetry", "region", "node_job",
    "cli", "web", "directory",
]


def main() -> int:
    """Run the benchmarks named on the command line (default: all) and print the table."""
    names = sys.argv[1:] or MODULES
    rows: list[tuple[str, str, str]] = []
    for name in names:
        module = importlib.import_module(f"tests.bench.{name}")
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        rows.extend(module.run())
    width = [max(len(r[i]) for r in [*rows, ("benchmark", "result", "reference")]) for i in range(3)]
    print(f"{'benchmark':<{width[0]}}  {'result':<{width[1]}}  reference")
    for row in rows:
        print(f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
