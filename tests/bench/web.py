"""The node's HTTP server: an upload's speed, the memory the server adds, and /api/job while a job streams.

- upload: `prusaslicer-benchy.gcode` POSTed over loopback as PrusaSlicer sends it (multipart, http.client)
  to a WebServer on a fake desk, until its 201 (streamed to disk, hashed, preflighted against the
  printer's profile). Reference: copying the same bytes on disk (shutil.copyfile), and the preflight
  alone (analyze_file), both in the same run; medians of UPLOADS.
- memory: the RSS of `fabnode run --simulate` with `[web] enabled = true` (after it served a few pages)
  against the same daemon with `enabled = false`; goal: the server adds < 15 MB.
- /api/job under load: `fabnode run` streams the first PREFIX_LINES lines of the Benchy to `fabnode sim
  marlin` (another process) on a pty at 115200 baud with no machine time, while a client asks
  GET /api/job at 20 requests/s: p50/p99 of its answers; the job's streaming efficiency (the wire's own
  limit / the job's time) beside the same job with no requests; goal: unchanged within noise.

The two daemon parts need the daemon's web wiring (`web.url` in `fabnode status --json`); without it
their rows say so.
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fabnode.config.settings import load_config
from fabnode.config.web import WebSettings
from fabnode.gcode.analysis import analyze_file
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import api_keys
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from fabnode.web.desk import Owner, Reply, Upload
from fabnode.web.fake_desk import FakeDesk
from fabnode.web.server import WebServer
from tests.bench.data import bench_gcode_file, gcode_prefix
from tests.bench.node_job import BAUD, BOOT, CONFIG, REPO, UID, _ask, _cpu_s, _proc, _stop, _wait
from tests.data.web.prusaslicer import prusaslicer_body

UPLOADS = 3
MEMORY_RUNS = 2
PREFIX_LINES = 10_000
RATE_HZ = 20.0
KEY = "bench-key-0123456789abcdef"
WEB = '\n[web]\nenabled = {enabled}\nlisten = "127.0.0.1:0"\nannounce = false\n'
SIM_CONFIG = """\
[node]
lab = "bench-lab"
machine = "bench-printer"

[serial]
port = "sim"

[machine]
kind = "printer"
firmware = "marlin"

[gpio]
backend = "sim"

[reader]
backend = "sim"
"""


def _settings() -> WebSettings:
    return WebSettings(enabled=True, host="127.0.0.1", port=0, max_upload_mb=200, upload_expiry_h=24.0,
                       show_member="first-name", claim_window_min=15.0, announce=False)  # fmt: skip


class TimedDesk(FakeDesk):
    """A fake desk noting when the server handed it the upload: the moment the whole file was on disk
    (UploadHandler.post hands it over right after the receiver finished; the desk preflights it)."""

    received_at = 0.0

    def submit_upload(self, upload: Upload) -> Reply:
        self.received_at = time.perf_counter()
        return super().submit_upload(upload)


def _upload_once(port: int, desk: TimedDesk, body: bytes, content_type: str) -> tuple[float, float]:
    """(seconds to the file on disk, seconds to the 201) of one upload."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/api/files/local", body, {"X-Api-Key": KEY, "Content-Type": content_type})
        response = conn.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    if response.status != 201:
        raise RuntimeError(f"the upload was refused: {response.status} {answer[:300]!r}")
    return desk.received_at - t0, elapsed


def upload_rows() -> list[tuple[str, str, str]]:
    """Upload over loopback against a disk copy and the preflight alone."""
    benchy = bench_gcode_file("prusaslicer-benchy.gcode")
    data = benchy.read_bytes()
    body, content_type = prusaslicer_body(data, "benchy.gcode")
    profile = load_config(REPO / "config" / "fabnode-printer.toml").machine
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "uploads").mkdir()
        desk = TimedDesk(tmp / "uploads", profile=profile, keys={KEY: Owner("Ada Lovelace", "member", 1)})
        server = WebServer(desk, _settings())
        server.start()
        try:
            received, uploads = [], []
            for _ in range(UPLOADS):
                on_disk, answered = _upload_once(server.port, desk, body, content_type)
                received.append(on_disk)
                uploads.append(answered)
                for queued in desk.queued:
                    queued.path.unlink()
                desk.queued.clear()
        finally:
            server.stop()
        copies = []
        for i in range(UPLOADS):
            t0 = time.perf_counter()
            shutil.copyfile(benchy, tmp / f"copy{i}.gcode")
            copies.append(time.perf_counter() - t0)
        preflights = []
        for _ in range(UPLOADS):
            t0 = time.perf_counter()
            analyze_file(benchy, profile)
            preflights.append(time.perf_counter() - t0)
    got, up, copy, pre = (statistics.median(v) for v in (received, uploads, copies, preflights))
    mb = len(data) / 1e6
    return [
        (f"web: upload benchy ({mb:.1f} MB) over loopback, on disk",
         f"{got * 1000:.0f} ms ({mb / got:.0f} MB/s)",
         f"disk copy of the same bytes {copy * 1000:.1f} ms: x{got / copy:.1f} (medians of {UPLOADS})"),
        ("web: the same upload to its 201 (preflight included)", f"{up:.2f} s",
         f"preflight alone (analyze_file) {pre:.2f} s: x{up / pre:.2f}"),
    ]  # fmt: skip


def _web_url(state: Path) -> str | None:
    web = _ask(state, {"cmd": "status"}, 5.0)["status"].get("web")
    return web.get("url") if isinstance(web, dict) else None


def _daemon_rss(tmp: Path, enabled: bool, run: int) -> tuple[float, bool]:
    """The RSS (MiB) of a simulated daemon, idle, after its pages were asked for; whether it served them."""
    state, config = tmp / f"state-{enabled}-{run}", tmp / f"node-{enabled}-{run}.toml"
    config.write_text(SIM_CONFIG + WEB.format(enabled=str(enabled).lower()), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-c", BOOT, "run", "--simulate", "--config", str(config),
                             "--state-dir", str(state)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait(lambda: _ask(state, {"cmd": "status"}, 2.0)["ok"], 30, "the daemon answers")
        served = False
        if enabled:
            url = _wait(lambda: _web_url(state), 10, "web.url in the daemon's status")
            parts = urlsplit(url)
            for path in ("/", "/page/page.js", "/page/page.css", "/status.json", "/api/version") * 4:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                conn.request("GET", path)
                conn.getresponse().read()
                conn.close()
            served = True
        time.sleep(2.0)  # settle: the first temperature reports, the telemetry's first attempt
        return _proc(proc.pid, "VmRSS"), served
    finally:
        _stop_quietly(proc)


def _stop_quietly(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def memory_rows() -> list[tuple[str, str, str]]:
    """RSS of the simulated daemon with and without the web server."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        try:
            on, off = [], []
            for run in range(MEMORY_RUNS):  # alternated, so both see the same machine load
                on.append(_daemon_rss(tmp, True, run)[0])
                off.append(_daemon_rss(tmp, False, run)[0])
        except RuntimeError as exc:
            return [("web: memory the server adds to the daemon", "not measured", str(exc)[:160])]
    with_web, without = statistics.median(on), statistics.median(off)
    added = with_web - without
    verdict = "met" if added * 1.048576 < 15 else "NOT met"  # MiB measured, the goal in MB
    return [
        ("web: memory the server adds to `fabnode run --simulate`", f"{added:+.1f} MiB",
         f"RSS {with_web:.1f} MiB with [web] enabled (after serving the page) vs {without:.1f} MiB "
         f"without (medians of {MEMORY_RUNS}); goal < 15 MB: {verdict}"),
    ]  # fmt: skip


class JobPoller(threading.Thread):
    """GET /api/job at RATE_HZ on one keep-alive connection; the answer times."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(name="api-job-poller", daemon=True)
        parts = urlsplit(url)
        self.host, self.port, self.key = parts.hostname or "127.0.0.1", parts.port or 80, key
        self.times: list[float] = []
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        period = 1.0 / RATE_HZ
        next_at = time.perf_counter()
        while not self.done.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/api/job", headers={"X-Api-Key": self.key})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    self.errors.append(f"{response.status} {body[:100]!r}")
                self.times.append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException) as exc:
                self.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            next_at += period
            self.done.wait(max(next_at - time.perf_counter(), 0.0))  # the request rate, not a wait for state
        conn.close()


def _job_under_load(tmp: Path, prefix: Path, with_requests: bool) -> dict[str, Any]:
    """One streamed job (the daemon on a pty to `fabnode sim marlin`); with the poller, its answer times."""
    sim = subprocess.Popen([sys.executable, "-m", "fabnode", "sim", "marlin", "--baud", str(BAUD),
                            "--time-scale", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert sim.stdout is not None
    port = sim.stdout.readline().strip()
    tag = "load" if with_requests else "quiet"
    state, config = tmp / f"state-{tag}", tmp / f"node-{tag}.toml"
    config.write_text(CONFIG.format(port=port, baud=BAUD) + WEB.format(enabled="true"), encoding="utf-8")
    with UsageLog.open(usage_db_path(state)) as log:
        now = datetime.now(UTC)
        secret = access.load_secret(secret_file_path(state))
        access.add_member(log.db, secret, "Alice", UID, now=now)
        access.grant_training(log.db, "Alice", "bench-printer", now=now)
        key = api_keys.new_member_key(log.db, secret, "Alice", now=now)
    daemon = subprocess.Popen([sys.executable, "-c", BOOT, "run", "--config", str(config), "--state-dir",
                               str(state)], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    poller: JobPoller | None = None
    try:
        _wait(lambda: _ask(state, {"cmd": "status"}, 2.0)["ok"], 20, "the daemon answers")
        url = _wait(lambda: _web_url(state), 10, "web.url in the daemon's status")
        assert _ask(state, {"cmd": "badge", "uid": UID})["ok"]
        if with_requests:
            poller = JobPoller(url, key)
            poller.start()
        cpu0 = _cpu_s(daemon.pid)
        reply = _ask(state, {"cmd": "print", "file": str(prefix)})
        if not reply["ok"]:
            raise RuntimeError(f"the job was refused: {reply}")
        _wait(lambda: _ask(state, {"cmd": "status"})["status"]["last_job"], 600, "the job's end", 0.5)
        cpu = _cpu_s(daemon.pid) - cpu0
        with UsageLog.open(usage_db_path(state)) as log:
            [row] = list(log.db.query("SELECT status, running_s FROM jobs"))
        if row["status"] != "completed":
            raise RuntimeError(f"the job ended {row['status']}")
    finally:
        if poller is not None:
            poller.done.set()
            poller.join(10)
        _stop_quietly(daemon)
        stats_line = [line for line in _stop(sim).splitlines() if line.startswith("stats: ")]
    stats = json.loads(stats_line[-1][len("stats: "):]) if stats_line else {}
    wire_s = float(stats.get("bytes_from_host", 0)) * 10 / BAUD
    return {"job_s": float(row["running_s"]), "wire_s": wire_s, "cpu_s": cpu,
            "times": poller.times if poller else [], "errors": poller.errors if poller else []}  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_rows() -> list[tuple[str, str, str]]:
    """GET /api/job at 20/s during a streamed job, and the job's efficiency beside a quiet one."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        prefix = gcode_prefix("prusaslicer-benchy.gcode", PREFIX_LINES, tmp)
        try:
            quiet = _job_under_load(tmp, prefix, with_requests=False)
            loaded = _job_under_load(tmp, prefix, with_requests=True)
        except RuntimeError as exc:
            return [("web: GET /api/job at 20/s while a job streams", "not measured", str(exc)[:160])]
    times = loaded["times"]
    if not times:
        return [("web: GET /api/job at 20/s while a job streams", "no answers",
                 "; ".join(loaded["errors"][:3]))]  # fmt: skip
    eff_quiet, eff_loaded = quiet["wire_s"] / quiet["job_s"], loaded["wire_s"] / loaded["job_s"]
    name = f"web: benchy {PREFIX_LINES:,} lines at {BAUD} baud"
    return [
        (f"{name}, GET /api/job at {RATE_HZ:.0f}/s: p50 / p99",
         f"{_pct(times, 0.5) * 1000:.1f} / {_pct(times, 0.99) * 1000:.1f} ms",
         f"{len(times)} answers, {len(loaded['errors'])} errors, over {loaded['job_s']:.1f} s of job"),
        (f"{name}: streaming efficiency with those requests", f"{eff_loaded:.3f}",
         f"without requests {eff_quiet:.3f}: x{eff_loaded / eff_quiet:.3f} (wire limit / job time); "
         f"daemon CPU {loaded['cpu_s']:.1f} s vs {quiet['cpu_s']:.1f} s"),
    ]  # fmt: skip


def run() -> list[tuple[str, str, str]]:
    """Rows (benchmark, result, reference/ratio)."""
    return [*upload_rows(), *memory_rows(), *load_rows()]


if __name__ == "__main__":
    for bench_row in run():
        print("  ".join(bench_row))
