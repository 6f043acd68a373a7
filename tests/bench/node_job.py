"""The node running a real long job: the daemon's memory and CPU while it streams the Benchy.

`fabnode run` (a subprocess: GPIO and badge reader simulated) streams the first PREFIX_LINES lines of
the 232,142-line `prusaslicer-benchy.gcode` to `fabnode sim marlin` (another process, so that its CPU
is not counted) on a pty at 115200 baud with no machine time (`--time-scale 0`): the wire is the only
limit, so the job runs as fast as a host can stream it. The whole file would need ~9.5 minutes of
wire; the prefix takes under a minute, and the figures are scaled to the whole file by its lines on
the wire, as the rows say.

- job time (the job row's running_s) against the wire's own limit: the bytes the printer received,
  10 bits each at 115200 baud (x1.00 would be a wire never idle);
- the daemon's CPU seconds per hour of printing: its CPU during the job over the hours fabnode.gcode.analysis
  estimates the prefix takes to print (a real printer is that slow; the daemon's work is per line);
  reference: its CPU per second of the job, i.e. the share of one core streaming at wire speed;
- the daemon's peak RSS (VmHWM, the file's lines and analysis included), against its RSS idle before.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.gcode_text import strip_for_wire
from fabnode.config.settings import load_config
from fabnode.gcode.analysis import analyze_file
from fabnode.node.control import ControlError, request
from fabnode.paths import control_socket_path, secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.bench.data import bench_gcode_file, gcode_prefix

PREFIX_LINES = 20_000
BAUD = 115200
UID = "04:A2:2B:1C"
REPO = Path(__file__).resolve().parents[2]
BOOT = ("import sys\nfrom fabnode.cli import app, node, run\n"
        "names = {c.name for c in app.registered_commands}\n"
        "if 'run' not in names: run.register(app)\n"
        "if 'status' not in names: node.register(app)\n"
        "sys.argv[0] = 'fabnode'\napp()\n")  # fmt: skip
CONFIG = """\
[node]
lab = "bench-lab"
machine = "bench-printer"

[serial]
port = "{port}"
baud = {baud}

[machine]
kind = "printer"
firmware = "marlin"
material = "PLA"

[materials.PLA]
price_per_kg = 25.0

[gpio]
backend = "sim"

[reader]
backend = "sim"
"""


def _proc(pid: int, key: str) -> float:
    """A /proc/<pid>/status figure in MiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ask(state: Path, message: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    return request(control_socket_path(state), message, timeout=timeout)


def _wait(check: Any, timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ControlError, OSError):
            result = check()
            if result:
                return result
        time.sleep(every)  # polling another process: nothing to wait on
    raise RuntimeError(f"not within {timeout} s: {what}")


def _wire_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if strip_for_wire(line, paren_comments=False))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def _run_job(tmp: Path, prefix: Path) -> dict[str, float]:
    sim = subprocess.Popen([sys.executable, "-m", "fabnode", "sim", "marlin", "--baud", str(BAUD),
                            "--time-scale", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert sim.stdout is not None
    port = sim.stdout.readline().strip()
    state, config = tmp / "state", tmp / "node.toml"
    config.write_text(CONFIG.format(port=port, baud=BAUD), encoding="utf-8")
    with UsageLog.open(usage_db_path(state)) as log:
        now = datetime.now(UTC)
        access.add_member(log.db, access.load_secret(secret_file_path(state)), "Alice", UID, now=now)
        access.grant_training(log.db, "Alice", "bench-printer", now=now)
    daemon = subprocess.Popen([sys.executable, "-c", BOOT, "run", "--config", str(config), "--state-dir",
                               str(state)], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait(lambda: _ask(state, {"cmd": "status"}, 2.0)["ok"], 20, "the daemon answers")
        idle_rss = _proc(daemon.pid, "VmRSS")
        assert _ask(state, {"cmd": "badge", "uid": UID})["ok"]
        cpu0 = _cpu_s(daemon.pid)
        reply = _ask(state, {"cmd": "print", "file": str(prefix)})
        if not reply["ok"]:
            raise RuntimeError(f"the job was refused: {reply}")
        last = _wait(lambda: _ask(state, {"cmd": "status"})["status"]["last_job"], 600, "the job's end", 0.5)
        cpu = _cpu_s(daemon.pid) - cpu0
        peak = _proc(daemon.pid, "VmHWM")
        with UsageLog.open(usage_db_path(state)) as log:
            [row] = list(log.db.query("SELECT status, running_s FROM jobs"))
        if row["status"] != "completed":
            raise RuntimeError(f"the job ended {row['status']}: {last}")
    finally:
        daemon.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(30)
        stats_line = [line for line in _stop(sim).splitlines() if line.startswith("stats: ")]
    stats = json.loads(stats_line[-1][len("stats: "):]) if stats_line else {}
    return {"cpu_s": cpu, "job_s": row["running_s"], "peak_mib": peak, "idle_mib": idle_rss,
            "wire_bytes": float(stats.get("bytes_from_host", 0))}  # fmt: skip


def run() -> list[tuple[str, str, str]]:
    """Rows (benchmark, result, reference/ratio)."""
    benchy = bench_gcode_file("prusaslicer-benchy.gcode")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        prefix = gcode_prefix("prusaslicer-benchy.gcode", PREFIX_LINES, tmp)
        m = _run_job(tmp, prefix)
        profile = load_config(REPO / "config" / "fabnode-printer.toml").machine
        hours = analyze_file(prefix, profile).estimated_s / 3600
        full_hours = analyze_file(benchy, profile).estimated_s / 3600
        scale = _wire_lines(benchy) / _wire_lines(prefix)
    wire_s = m["wire_bytes"] * 10 / BAUD
    cpu_per_hour = m["cpu_s"] / hours
    name = f"node job: benchy {PREFIX_LINES:,} of 232,142 lines"
    return [
        (f"{name}, 115200 baud", f"{m['job_s']:.1f} s",
         f"wire limit {wire_s:.1f} s for {m['wire_bytes'] / 1e6:.2f} MB: x{m['job_s'] / wire_s:.2f}; "
         f"whole file scaled x{scale:.1f}: ~{m['job_s'] * scale / 60:.1f} min"),
        (f"{name}: daemon CPU per hour printed", f"{cpu_per_hour:.1f} CPU s/h",
         f"{m['cpu_s']:.1f} CPU s over {hours:.2f} h estimated; per job second "
         f"{m['cpu_s'] / m['job_s']:.3f} (share of one core); whole file ~{m['cpu_s'] * scale:.0f} CPU s "
         f"for {full_hours:.2f} h"),
        (f"{name}: daemon peak RSS", f"{m['peak_mib']:.1f} MiB",
         f"idle before the job {m['idle_mib']:.1f} MiB: x{m['peak_mib'] / m['idle_mib']:.2f}"),
    ]  # fmt: skip


if __name__ == "__main__":
    for bench_row in run():
        print("  ".join(bench_row))
