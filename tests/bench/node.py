"""The node daemon: badge tap to relay pin, memory and idle CPU, with references from the same run.

- tap -> relay: a tap enters the simulated reader adapter; the time until the simulated relay pin
  changes (the pin's own change record), over TAPS taps (unlock, then badge-out: a cold printer locks
  at once). Reference: a bare hand-off of one item between two threads over a queue.SimpleQueue.
- RSS and idle CPU of `fabnode run --simulate` (a subprocess, every part simulated, no session) over
  IDLE_S seconds, in CPU seconds per minute. Reference: `fabnode sim marlin` alone (the simulated
  firmware the daemon also runs), and the RSS of a bare `python -c "import fabnode.cli"`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from fabnode.node.loop import Daemon
from fabnode.node.wiring import build_parts, simulated_config
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog

TAPS = 200
IDLE_S = 10.0
UID = "04:A2:2B:1C"
REPO = Path(__file__).resolve().parents[2]
BOOT = ("import sys\nfrom fabnode.cli import app, node, run\n"
        "names = {c.name for c in app.registered_commands}\n"
        "if 'run' not in names: run.register(app)\n"
        "if 'status' not in names: node.register(app)\n"
        "sys.argv[0] = 'fabnode'\napp()\n")  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _queue_handoff(n: int) -> list[float]:
    """Latency of one put() in this thread to get() in another, n times."""
    q: queue.SimpleQueue[float] = queue.SimpleQueue()
    got: queue.SimpleQueue[float] = queue.SimpleQueue()

    def consumer() -> None:
        for _ in range(n):
            q.get()
            got.put(time.monotonic())

    thread = threading.Thread(target=consumer)
    thread.start()
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        q.put(t0)
        out.append(got.get() - t0)
        time.sleep(0.002)  # let the consumer block again, as the daemon's loop does between taps
    thread.join()
    return out


def _tap_to_relay(folder: Path) -> list[float]:
    config = simulated_config(None, "marlin", folder)
    parts = build_parts(config, folder, sim_speed=1000)
    daemon = Daemon(config, parts, folder)
    secret = access.load_secret(secret_file_path(folder))
    with UsageLog.open(usage_db_path(folder)) as log:
        now = datetime.now(UTC)
        access.add_member(log.db, secret, "Alice", UID, now=now)
        access.grant_training(log.db, "Alice", config.node.machine, now=now)
    thread = threading.Thread(target=daemon.run, name="controller")
    thread.start()
    try:
        daemon.ready.wait(10)
        _wait_for_hotend(daemon)
        return [_one_tap(daemon, parts) for _ in range(TAPS)]
    finally:
        daemon.stop()
        thread.join(30)


def _wait_for_hotend(daemon: Daemon) -> None:
    deadline = time.monotonic() + 10
    while "hotend" not in daemon.temperatures and time.monotonic() < deadline:
        time.sleep(0.05)  # the first M155 report; nothing to wait on from outside the controller


def _one_tap(daemon: Daemon, parts: object) -> float:
    pins, reader = parts.sim_gpio, parts.sim_reader  # type: ignore[attr-defined]
    before = len(pins.changes("relay"))
    raw = access.normalise_uid(UID)
    t0 = time.monotonic()
    daemon.tap_and_wait(lambda: reader.tap(raw))
    changes = pins.changes("relay")
    if len(changes) <= before:
        raise RuntimeError(f"the tap did not switch the relay (state {daemon.last_tap})")
    return changes[before].at - t0


def _cpu_and_rss(cmd: list[str], settle_s: float, cwd: Path) -> tuple[float, float]:
    """(CPU seconds per minute over IDLE_S after settle_s, RSS MiB) of a process left idle."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle_s)  # let it start up; the idle period is measured after
        cpu0 = _cpu_s(proc.pid)
        time.sleep(IDLE_S)
        cpu1 = _cpu_s(proc.pid)
        rss = _rss_mib(proc.pid)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
    return (cpu1 - cpu0) / IDLE_S * 60.0, rss


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run() -> list[tuple[str, str, str]]:
    """Rows (benchmark, result, reference/ratio)."""
    handoff = _queue_handoff(TAPS)
    with tempfile.TemporaryDirectory() as tmp:
        latencies = _tap_to_relay(Path(tmp) / "latency")
        ref50, ref99 = statistics.median(handoff), _pct(handoff, 0.99)
        p50, p99 = statistics.median(latencies), _pct(latencies, 0.99)
        daemon_cmd = [sys.executable, "-c", BOOT, "run", "--simulate", "--state-dir", str(Path(tmp) / "idle")]
        cpu, rss = _cpu_and_rss(daemon_cmd, 3.0, REPO)
        sim_cpu, _ = _cpu_and_rss([sys.executable, "-m", "fabnode", "sim", "marlin"], 2.0, REPO)
        bare = [sys.executable, "-c", "import fabnode.cli, time; time.sleep(60)"]
        _, bare_rss = _cpu_and_rss(bare, 1.0, REPO)
    return [
        (f"node: tap -> relay pin p50 ({TAPS} taps)", f"{p50 * 1e3:.2f} ms",
         f"queue hand-off p50 {ref50 * 1e6:.0f} us: x{p50 / ref50:.0f}"),
        (f"node: tap -> relay pin p99 ({TAPS} taps)", f"{p99 * 1e3:.2f} ms",
         f"queue hand-off p99 {ref99 * 1e6:.0f} us: x{p99 / ref99:.0f} (goal < 50 ms)"),
        ("node: daemon RSS (--simulate, idle)", f"{rss:.1f} MiB",
         f"python + fabnode.cli {bare_rss:.1f} MiB: x{rss / bare_rss:.2f}"),
        (f"node: idle CPU (--simulate, {IDLE_S:g} s)", f"{cpu:.2f} CPU s/min",
         f"fabnode sim marlin alone {sim_cpu:.2f} CPU s/min: x{cpu / sim_cpu:.1f}" if sim_cpu > 0
         else f"fabnode sim marlin alone {sim_cpu:.2f} CPU s/min"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print("  ".join(row))
