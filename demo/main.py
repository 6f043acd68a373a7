"""`make demo` / `python -m demo`: a whole day in a fab lab, on simulators, in about a minute.

Two nodes (`fabnode run --simulate`: a Marlin printer and a GRBL laser, each in its own process and
state dir), a local mosquitto when one is installed and the region's collector; then members are
enrolled, an unknown badge is refused, a member prints a real file and badges out during the job, the
printer cools down and locks, a technician checks the printer, the member engraves on the laser, and
the region's report is put beside each node's own usage summary to show they agree.
Every step is printed as a numbered sentence with the command it ran. Every process it starts is
stopped on the way out (also on Ctrl-C or an error). Exit 0: the day went as scripted; 1: it did not
(the message says where); 2: bad usage; 130: interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from demo import files as demo_files
from demo.day import Day
from demo.support import DemoError, Narrator

MARKER = ".fabnode-demo"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's options."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=Path("demo-state"),
                        help="Folder for the nodes, the broker and the region's store (wiped at start; "
                             "default: ./demo-state).")  # fmt: skip
    parser.add_argument("--sim-speed", type=float, default=100.0,
                        help="Simulated machine time runs this many times faster (default 100).")
    parser.add_argument("--fast", action="store_true",
                        help=f"Stream only the start of each file: its first {demo_files.FAST_PRINT_LINES} "
                             f"lines for the print, {demo_files.FAST_LASER_LINES} for the engraving "
                             "(for tests).")  # fmt: skip
    parser.add_argument("--no-broker", action="store_true",
                        help="Run without mosquitto: telemetry stays queued in each node's outbox.")
    args = parser.parse_args(argv)
    if args.sim_speed <= 0:
        parser.error("--sim-speed must be above 0")
    return args


def fresh_state_dir(folder: Path) -> Path:
    """An empty folder for this run; a previous demo's folder is wiped, anyone else's is refused."""
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise DemoError(f"{folder} is not empty and is not a demo's folder: choose another --state-dir")
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / MARKER).write_text("written by python -m demo; the next demo run wipes this folder\n")
    return folder


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM / SIGHUP: leave through the same `finally` as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    """Run the scripted day; the exit code says whether it went as scripted."""
    args = parse_args(argv)
    narrator = Narrator()
    started = time.monotonic()
    day: Day | None = None
    result: dict[str, Any] = {"ok": False}
    code = EXIT_INTERRUPTED
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        root = fresh_state_dir(args.state_dir)
        day = Day(root, narrator, sim_speed=args.sim_speed, fast=args.fast, use_broker=not args.no_broker)
        result = day.run()
        code = 0 if result["ok"] else EXIT_FAILED
    except DemoError as exc:
        code = _failed(narrator, day, str(exc))
    except KeyboardInterrupt:
        narrator.say(f"\nInterrupted at step {narrator.number}.", indent="")
        code = EXIT_INTERRUPTED
    except Exception as exc:  # a bug in the demo itself: still stop everything, and say where
        traceback.print_exc()
        code = _failed(narrator, day, f"unexpected {type(exc).__name__}: {exc}")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not leave daemons behind
        if day is not None:
            code = _close(day, narrator, code, result, started)
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return code


def _failed(narrator: Narrator, day: Day | None, message: str) -> int:
    where = f"at step {narrator.number}" if narrator.number else "before its first step"
    narrator.say(f"\nThe demo failed {where}: {message}", indent="")
    if day is not None:
        for service in day.services:
            log = narrator.relative(str(service.log_path))
            narrator.say(f"\n--- the end of {service.name}'s log ({log}):", indent="")
            narrator.say(service.tail(), indent="   ")
    return EXIT_FAILED


def _close(day: Day, narrator: Narrator, code: int, result: dict[str, Any], started: float) -> int:
    stopped = day.stop_all()
    pids = [pid for _, pid, _ in stopped if pid is not None]
    narrator.say(f"\nStopped every process the demo started: "
                 f"{', '.join(f'{name} (pid {pid}, exit {rc})' for name, pid, rc in stopped) or 'none'}.",
                 indent="")  # fmt: skip
    bad = [name for name, _, rc in stopped if name.endswith("node") and rc not in (0, None)]
    if code == 0 and bad:
        narrator.say(f"The demo failed: {', '.join(bad)} did not stop cleanly (see its log).", indent="")
        code = EXIT_FAILED
    result.update(exit_code=code, pids=pids, seconds=round(time.monotonic() - started, 1),
                  steps=narrator.steps)  # fmt: skip
    (day.root / "demo-result.json").write_text(json.dumps(result, indent=2) + "\n")
    elapsed = time.monotonic() - started
    if code == 0:
        narrator.say(f"The day went as scripted in {elapsed:.0f} s. Everything it wrote is in "
                     f"{narrator.relative(str(day.root))}/ (try `{fabnode_command(narrator)} usage "
                     f"--state-dir {narrator.relative(str(day.printer_dir))}`).", indent="")  # fmt: skip
    return code


def fabnode_command(narrator: Narrator) -> str:
    """How to type `fabnode` here: bare when it is on PATH as this interpreter's, else the venv's script
    (`.venv/bin/fabnode` after `make demo`), else `python -m fabnode` with this interpreter."""
    script = Path(sys.executable).parent / "fabnode"
    on_path = shutil.which("fabnode")
    if on_path and script.exists() and Path(on_path).resolve() == script.resolve():
        return "fabnode"
    if script.exists():
        return narrator.relative(str(script))
    return f"{narrator.relative(sys.executable)} -m fabnode"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
