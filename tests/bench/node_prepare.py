"""The node while a large job file is prepared: e-stop to relay, and the daemon's memory.

- e-stop -> relay: the simulated e-stop is pressed (its contact opens) and the time until the simulated
  relay pin goes off is taken from the pin's own change record (the GPIO debounce, `[gpio] debounce_ms`,
  30 ms by default, is part of it). Each round: a member's tap (relay on), the press, the release, a
  technician's tap that clears the fault. Measured with no preparation, then while `fabnode print`
  prepares a SIZE_MB file (read, hashed and analysed on its worker thread).
- RSS: the daemon's resident memory (it runs in this process) idle, and its peak while the file is
  prepared (sampled, and VmHWM).
The file is made of repeated real G-code (PrusaSlicer's benchy, where tests.bench.data finds it, else a
generated print), written to a temporary folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import statistics
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
from tests.bench.data import bench_gcode_file

SIZE_MB = int(os.environ.get("FABNODE_BENCH_JOB_MB", "200"))
ROUNDS_IDLE = 40
ROUNDS_MAX = 400
ROUND_EVERY_S = 0.5
MEMBER_UID, TECH_UID = "04:A2:2B:1C", "04:7E:11:22"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sample_gcode() -> bytes:
    """Real slicer output, with its start (homing, heating) kept only once by the caller."""
    with contextlib.suppress(FileNotFoundError):
        return bench_gcode_file("prusaslicer-benchy.gcode").read_bytes()
    moves = [f"G1 X{10 + i % 180}.{i % 10} Y{10 + (i * 7) % 180}.5 E{i * 0.03:.4f} F1800\n"
             for i in range(20000)]
    return ("G28\nM104 S200\nG92 E0\n" + "".join(moves)).encode()


def write_job(path: Path, size_mb: int) -> int:
    """A G-code file of about size_mb MiB: the sample, its moves repeated (G92 E0 between copies)."""
    sample = _sample_gcode()
    target = size_mb * 1024 * 1024
    with open(path, "wb") as f:
        f.write(sample)
        written = len(sample)
        while written < target:
            chunk = b"G92 E0\n" + sample[: target - written]
            chunk = chunk[: chunk.rfind(b"\n") + 1] or chunk
            f.write(chunk)
            written += len(chunk)
    return written


def _rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class SimNode:
    """A daemon in this process, every part simulated, with a member and a technician."""

    def __init__(self, folder: Path, max_job_mb: int | None = None, firmware: str = "marlin") -> None:
        config = simulated_config(None, firmware, folder)
        limit = max_job_mb or max(SIZE_MB + 10, config.max_job_mb)
        self.config = dataclasses.replace(config, max_job_mb=limit)
        self.parts = build_parts(self.config, folder, sim_speed=1000)
        self.daemon = Daemon(self.config, self.parts, folder)
        secret = access.load_secret(secret_file_path(folder))
        with UsageLog.open(usage_db_path(folder)) as log:
            now = datetime.now(UTC)
            access.add_member(log.db, secret, "Alice", MEMBER_UID, now=now)
            access.grant_training(log.db, "Alice", self.config.node.machine, now=now)
            access.add_member(log.db, secret, "Tess", TECH_UID, access.TECHNICIAN, now=now)
        self.thread = threading.Thread(target=self.daemon.run, name="controller")

    def __enter__(self) -> SimNode:
        self.thread.start()
        if not self.daemon.ready.wait(20):
            raise RuntimeError("the daemon did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        self.thread.join(60)

    def tap(self, uid: str) -> dict[str, object]:
        reader = self.parts.sim_reader
        assert reader is not None
        raw = access.normalise_uid(uid)
        return self.daemon.tap_and_wait(lambda: reader.tap(raw), timeout=30.0)

    def estop_round(self) -> float:
        """Relay on by a member's tap, then the e-stop: seconds from the press to the relay off."""
        pins = self.parts.sim_gpio
        assert pins is not None
        if not pins.relay_on():
            self.tap(MEMBER_UID)
        if not pins.relay_on():
            raise RuntimeError(f"the member's tap did not switch the relay on ({self.daemon.last_tap})")
        before = len(pins.changes("relay"))
        t0 = time.monotonic()
        pins.press_estop()
        deadline = t0 + 10
        while len(pins.changes("relay")) <= before and time.monotonic() < deadline:
            time.sleep(0.005)  # the pin's own record is the measure: polling it less often changes nothing
        changes = pins.changes("relay")
        if len(changes) <= before:
            raise RuntimeError("the e-stop did not switch the relay off within 10 s")
        latency = changes[before].at - t0
        pins.release_estop()
        time.sleep(0.1)  # past the debounce, so the release is seen before the technician's tap
        self.tap(TECH_UID)  # clears the fault: locked
        return latency


def measure(folder: Path) -> dict[str, float]:
    """The figures of run(), by name."""
    job = folder / "big.gcode"
    size = write_job(job, SIZE_MB)
    with SimNode(folder / "state") as node:
        idle_rss = _rss_mib()
        idle = [node.estop_round() for _ in range(ROUNDS_IDLE)]
        answer: dict[str, object] = {}

        def ask() -> None:
            answer.update(node.daemon.requests.handle({"cmd": "print", "file": str(job)}))

        asker = threading.Thread(target=ask, name="print")
        asker.start()
        busy: list[float] = []
        peak = _rss_mib()
        t0 = time.monotonic()
        while node.daemon.requests.preparing.snapshot()["current"] is None and time.monotonic() - t0 < 5:
            time.sleep(0.01)  # the job-prepare thread starts
        while node.daemon.requests.preparing.snapshot()["current"] is not None:
            next_round = time.monotonic() + ROUND_EVERY_S  # rounds spread over the whole preparation
            if len(busy) < ROUNDS_MAX:
                busy.append(node.estop_round())
            peak = max(peak, _rss_mib())
            time.sleep(max(next_round - time.monotonic(), 0.0))
        took = time.monotonic() - t0
        asker.join(120)
        hwm = _rss_mib("VmHWM")
    return {"size_mb": size / 2**20, "idle_p50": _pct(idle, 0.5), "idle_p99": _pct(idle, 0.99),
            "busy_p50": _pct(busy, 0.5) if busy else float("nan"),
            "busy_p99": _pct(busy, 0.99) if busy else float("nan"), "busy_n": len(busy),
            "busy_mean": statistics.fmean(busy) if busy else float("nan"), "prepare_s": took,
            "idle_rss": idle_rss, "peak_rss": max(peak, hwm)}  # fmt: skip


def run() -> list[tuple[str, str, str]]:
    """Rows (benchmark, result, reference)."""
    quiet = logging.getLogger("fabnode")
    level, quiet.level = quiet.level, logging.ERROR  # each round logs an e-stop fault
    try:
        with tempfile.TemporaryDirectory() as tmp:
            m = measure(Path(tmp))
    finally:
        quiet.setLevel(level)
    ms = 1000.0
    return [
        (f"e-stop -> relay while a {m['size_mb']:.0f} MB file is prepared (p50/p99, n={m['busy_n']:.0f})",
         f"{m['busy_p50'] * ms:.1f} / {m['busy_p99'] * ms:.1f} ms",
         f"no preparation: {m['idle_p50'] * ms:.1f} / {m['idle_p99'] * ms:.1f} ms (30 ms debounce included)"),
        (f"daemon RSS while a {m['size_mb']:.0f} MB file is prepared (peak)", f"{m['peak_rss']:.0f} MiB",
         f"idle: {m['idle_rss']:.0f} MiB; preparing took {m['prepare_s']:.0f} s"),
    ]


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
