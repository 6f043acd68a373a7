"""`python -m demo`: the scripted day runs end to end, its figures agree, nothing is left running.

The demo runs as a user runs it (a subprocess), with `--fast` (a shorter print) and its own state dir.
Its totals are checked here with the CLI on the folders it leaves, not taken from its own output.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from demo.compare import compare, node_figures
from fabnode.mosquitto import mosquitto_binary

REPO = Path(__file__).resolve().parents[2]
needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")


def start_demo(state: Path, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "demo", "--fast", "--state-dir", str(state), *extra]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)  # fmt: skip


def interrupt(demo: subprocess.Popen[str]) -> None:
    """Ctrl-C, so the demo stops its daemons (SIGKILL would orphan them); SIGKILL only if it hangs."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def run_demo(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    demo = start_demo(state, *extra)
    try:
        out, err = demo.communicate(timeout=170)
    finally:
        interrupt(demo)
    return subprocess.CompletedProcess(demo.args, demo.returncode, out, err)


def cli_json(*args: str | Path) -> Any:
    argv = [sys.executable, "-m", "fabnode", *map(str, args)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def processes_using(folder: Path) -> list[str]:
    """Command lines of live processes that name `folder` (the demo passes it to every child)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def step_numbers(out: str) -> list[int]:
    return [int(n) for n in re.findall(r"^(\d+)\. ", out, re.MULTILINE)]


@needs_mosquitto
@pytest.mark.timeout(180)
def test_the_day_runs_as_scripted_and_the_region_agrees_with_the_nodes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = run_demo(state)
    out = done.stdout
    assert done.returncode == 0, f"{out[-4000:]}\n{done.stderr[-2000:]}"
    numbers = step_numbers(out)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 15
    for seen in ("$ fabnode run --simulate", "$ fabnode members add Ada", "badge refused: unknown badge",
                 "state 'locked', relay false", "badge accepted: unlocked", "session.badge_out_pending true",
                 "the job ended completed", "state cooldown, relay ON", "badge accepted: maintenance",
                 "They agree", "Stopped every process the demo started"):  # fmt: skip
        assert seen in out, seen
    assert re.search(r"\d+\.\d%  \d+/\d+ lines  \d+ lines/s  ETA \d+ s", out), "no progress line"
    assert "NO" not in re.findall(r"\b(yes|NO)$", out, re.MULTILINE)

    region = cli_json("region", "report", "--json", "--db", state / "region.db")
    region = region["totals"]
    nodes, summaries = {}, []
    for name in ("printer", "laser"):
        where = ("--state-dir", state / name)
        nodes[name] = node_figures(cli_json("usage", "sessions", "--format", "json", *where),
                                   cli_json("usage", "--format", "json", *where))  # fmt: skip
        summaries.append(cli_json("usage", "summary", "--by", "machine", "--format", "json", *where)["total"])
    # Ada printed and engraved, Tess checked the printer: 2 jobs, 3 sessions, 2 members over the lab.
    assert region["jobs"] == sum(s["jobs"] for s in summaries) == 2
    assert region["outcomes"]["completed"] == 2
    assert region["sessions"] == 3 and region["members"] == 2 and region["gaps"] == 0
    assert region["filament_kg"] * 1000 == pytest.approx(sum(s["filament_g"] for s in summaries), abs=0.002)
    assert region["laser_hours"] == pytest.approx(sum(s["laser_hours"] for s in summaries), abs=2e-4)
    assert region["job_hours"] == pytest.approx(sum(s["hours"] for s in summaries), abs=2e-4)
    assert summaries[0]["filament_g"] > 0.5 and summaries[1]["laser_hours"] > 0.01  # real work was done
    assert all(row.agree for row in compare(nodes, region))

    result = json.loads((state / "demo-result.json").read_text())
    assert result["ok"] and result["exit_code"] == 0 and len(result["pids"]) == 4
    assert processes_using(state) == []


@needs_mosquitto
@pytest.mark.timeout(120)
def test_ctrl_c_during_the_print_stops_every_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    demo = start_demo(state)
    assert demo.stdout is not None
    seen = []
    try:
        for line in demo.stdout:  # the demo prints as it goes: read until the print streams
            seen.append(line)
            if re.search(r"\d+/\d+ lines", line):
                break
        assert re.search(r"\d+/\d+ lines", "".join(seen)), "".join(seen)
        assert len(processes_using(state)) >= 4  # broker, collector, two nodes
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        interrupt(demo)
    out = "".join(seen) + rest
    assert demo.returncode == 130, out[-3000:]
    assert "Interrupted at step" in out and "Stopped every process the demo started" in out
    deadline = time.monotonic() + 5.0
    while processes_using(state) and time.monotonic() < deadline:
        time.sleep(0.1)  # the demo reaped its children; their entries leave /proc at once
    assert processes_using(state) == []


@pytest.mark.timeout(180)
def test_without_a_broker_the_records_wait_in_the_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = run_demo(state, "--no-broker")
    out = done.stdout
    assert done.returncode == 0, f"{out[-4000:]}\n{done.stderr[-2000:]}"
    assert "No MQTT broker for the region: --no-broker was given" in out
    assert "mosquitto" not in out.split("Stopped every process", 1)[1]
    for name in ("printer", "laser"):
        waiting = cli_json("telemetry", "status", "--json", "--state-dir", state / name)
        assert waiting["backlog"] > 0  # sessions and jobs are queued, none lost
    assert not (state / "region.db").exists()
    assert processes_using(state) == []


def test_a_figure_that_differs_is_flagged() -> None:
    sessions = [{"member": "Ada", "duration_s": 36.0}]
    jobs = [{"member": "Ada", "duration_s": 18.0, "filament_g": 2.5, "laser_on_s": 0.0, "cost": 0.06}]
    nodes = {"printer": node_figures(sessions, jobs)}
    region = {"jobs": 1, "sessions": 1, "hours": 0.01, "job_hours": 0.005, "filament_kg": 0.0025,
              "laser_hours": 0.0, "cost": 0.06, "members": 1}  # fmt: skip
    assert all(row.agree for row in compare(nodes, region))
    rows = {row.label: row for row in compare(nodes, {**region, "filament_kg": 0.0024, "members": 2})}
    assert not rows["filament, g"].agree and not rows["members (distinct)"].agree
    assert rows["jobs"].agree
