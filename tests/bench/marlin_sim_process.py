"""A Marlin simulator with the options `fabnode sim marlin` has no flags for, as a benchmark subprocess.

    python -m tests.bench.marlin_sim_process '{"flush_on_error": false, "checksum_error_at_line": 40}'

Prints the pty path, runs until SIGTERM, then prints `stats: {json}` (as `fabnode sim` does), so the
benchmark's host does not share the simulator's GIL.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from simulators.marlin.simulator import MarlinSimulator


def main(options_json: str) -> None:
    """Run the simulator with these keyword options until SIGTERM/SIGINT."""
    options = json.loads(options_json)
    if not isinstance(options, dict):
        raise SystemExit(f"options must be a JSON object, got {options_json!r}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with MarlinSimulator(**options) as sim:
        print(sim.port, flush=True)
        stop.wait()
    print("stats: " + json.dumps(sim.stats.as_dict(), sort_keys=True, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "{}")
