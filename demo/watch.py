"""Watching a node as `fabnode status --json` shows it: a job's progress, the cooldown, the state.

The demo asks over the node's control socket the very question `fabnode status --json` asks, so it
can look every half second without starting a process each time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.support import DemoError, Narrator
from fabnode.node.control import ControlError, request
from fabnode.paths import control_socket_path

POLL_S = 0.5
SHOW_EVERY_S = 2.0


@dataclass
class Node:
    """One node the demo runs: its name, state dir and a check that its daemon still lives."""

    name: str
    state_dir: Path
    check_alive: Callable[[], None]

    def status(self) -> dict[str, Any]:
        """The daemon's status object (what `fabnode status --json` prints)."""
        self.check_alive()
        try:
            reply = request(control_socket_path(self.state_dir), {"cmd": "status"}, timeout=15.0)
        except ControlError as exc:
            raise DemoError(f"the {self.name} node does not answer: {exc}") from None
        if not reply.get("ok"):
            raise DemoError(f"the {self.name} node refused `status`: {reply.get('error')}")
        status: dict[str, Any] = reply["status"]
        return status

    def answers(self) -> bool:
        """True once the daemon serves its control socket."""
        self.check_alive()
        try:
            reply = request(control_socket_path(self.state_dir), {"cmd": "status"}, timeout=5.0)
            return bool(reply.get("ok"))
        except ControlError:
            return False


def hotend(status: dict[str, Any]) -> float | None:
    """The hotend's temperature in a status, if the firmware reported one."""
    reading = (status.get("temperatures") or {}).get("hotend")
    return None if not reading else float(reading["actual"])


def progress_line(job: dict[str, Any], rate: float | None, status: dict[str, Any]) -> str:
    """`37.2%  1850/4961 lines  612 lines/s  ETA 9 s (wall clock)  hotend 220 °C`: G-code lines, as the
    node counts them; the ETA is the node's, in real seconds; the laser-on time is the machine's, which the
    simulator runs faster. No ETA at the first look or while the hotend heats: no rate has been seen yet,
    or no line moves, so the node's estimate would mean nothing."""
    speed = "" if rate is None else f"  {rate:.0f} lines/s"
    acked, total = job.get("lines_acked", 0), job.get("lines_total", "?")
    line = f"{job.get('percent', 0.0):5.1f}%  {acked}/{total} lines{speed}"
    reading = (status.get("temperatures") or {}).get("hotend")
    heating = False
    if reading and status.get("kind") == "printer":
        target = reading.get("target") or 0.0
        heating = bool(target) and reading["actual"] < target - 3.0
    if rate is not None and not heating and job.get("eta_s") is not None:
        line += f"  ETA {job['eta_s']:.0f} s (wall clock)"
    if reading and status.get("kind") == "printer":
        line += f"  heating, hotend {reading['actual']:.0f} °C -> {target:.0f} °C" if heating else \
            f"  hotend {reading['actual']:.0f} °C"
    if job.get("laser_on_s"):
        line += f"  laser on {job['laser_on_s']:.0f} s (machine time)"
    return line


def watch_job(node: Node, narrator: Narrator, timeout_s: float,
              until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Show progress every few seconds until the job ends (or `until(status)`); the last status."""
    deadline = time.monotonic() + timeout_s
    last_shown = 0.0
    before: tuple[float, int] | None = None
    while True:
        status, now = node.status(), time.monotonic()
        job = status.get("job")
        if job is None or status["state"] not in ("running", "paused"):
            return status
        acked = int(job.get("lines_acked", 0))
        rate = None if before is None or now <= before[0] else (acked - before[1]) / (now - before[0])
        done = until is not None and until(status)
        if done or now - last_shown >= SHOW_EVERY_S:
            narrator.say(progress_line(job, rate, status), indent="     ")
            last_shown, before = now, (now, acked)
        if done:
            return status
        if now >= deadline:
            raise DemoError(f"the {node.name}'s job did not end within {timeout_s:g} s "
                            f"(at {job.get('percent')}%)")  # fmt: skip
        time.sleep(POLL_S)  # the job runs in another process: look again shortly


def watch_until_locked(node: Node, narrator: Narrator, timeout_s: float) -> dict[str, Any]:
    """Show the cooldown (relay, hotend) until the node is locked with its relay off; the last status."""
    deadline = time.monotonic() + timeout_s
    last_shown = 0.0
    while True:
        status, now = node.status(), time.monotonic()
        if status["state"] == "locked" and not status["relay"]:
            return status
        if now - last_shown >= SHOW_EVERY_S:
            temp = hotend(status)
            heat = f", hotend {temp:.0f} °C" if temp is not None and status["kind"] == "printer" else ""
            narrator.say(f"state {status['state']}, relay {'ON' if status['relay'] else 'off'}{heat}",
                         indent="     ")  # fmt: skip
            last_shown = now
        if now >= deadline:
            raise DemoError(f"the {node.name} did not lock within {timeout_s:g} s (state {status['state']}, "
                            f"relay {status['relay']})")  # fmt: skip
        time.sleep(POLL_S)  # the cooldown runs in another process: look again shortly
