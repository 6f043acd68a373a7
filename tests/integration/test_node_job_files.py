"""`fabnode print` of large and hostile files: the controller keeps answering, the reply says what happened.

The daemon runs in this process (tests.bench.node_prepare.SimNode), every part simulated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabnode.node import requests
from tests.bench.node_prepare import MEMBER_UID, SimNode
from tests.integration.test_daemon_helpers import wait_until

COMMENTS = 1_500_000  # lines a job streams past: the old start counted them all on the controller thread


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SimNode]:
    with SimNode(tmp_path / "state", max_job_mb=20) as running:
        yield running


def _print(node: SimNode, file: Path) -> dict[str, object]:
    return node.daemon.requests.handle({"cmd": "print", "file": str(file)})


def test_a_large_file_starts_while_the_controller_keeps_answering(
    node: SimNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = tmp_path / "evil\nrelay off.gcode"
    with open(job, "wb") as f:
        f.write(b"G28\nG1 X10 Y10 F600\n")
        f.write(b";c\n" * COMMENTS)
        f.write(b"G1 X20\n")
    assert node.tap(MEMBER_UID)["granted"]
    waits: list[float] = []
    done = threading.Event()

    def probe() -> None:  # what `fabnode status` and the e-stop need: the controller thread's turn
        while not done.is_set():
            t0 = time.monotonic()
            node.daemon.call(lambda now: now, timeout=30.0)
            waits.append(time.monotonic() - t0)
            time.sleep(0.005)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with caplog.at_level(logging.INFO, logger="fabnode.daemon"):
            answer = _print(node, job)
    finally:
        done.set()
        prober.join(30)
    assert answer["ok"] is True and isinstance(answer.get("job_id"), str), answer
    assert "preparing" not in answer
    print(f"controller thread held at most {max(waits) * 1000:.1f} ms over {len(waits)} calls")
    assert len(waits) > 10 and max(waits) < 0.5, f"the controller thread was held {max(waits):.2f} s"
    status = node.daemon.requests.handle({"cmd": "status"})["status"]
    assert status["job"]["file"] == str(job) and status["state"] == "running"
    assert status["preparation"]["current"] is None and status["preparation"]["last"]["started"] is True
    lines = [r.getMessage() for r in caplog.records]
    assert not any("\n" in line for line in lines)
    assert any("evil\\nrelay off.gcode" in line and "started" in line for line in lines), lines


def test_a_device_is_refused_at_once_naming_it(node: SimNode) -> None:
    answer = _print(node, Path("/dev/zero"))
    assert answer["ok"] is False and "/dev/zero" in str(answer["error"])
    assert "a device, not a regular file" in str(answer["error"])


def test_a_file_over_max_job_mb_is_refused_with_its_size_and_the_limit(node: SimNode, tmp_path: Path) -> None:
    big = tmp_path / "big.gcode"
    with open(big, "wb") as f:
        f.truncate(25 * 1024 * 1024)
    assert node.tap(MEMBER_UID)["granted"]
    answer = _print(node, big)
    assert answer["ok"] is False
    error = str(answer["error"])
    assert str(big) in error and "25.0 MB (26214400 bytes)" in error and "limit of 20.0 MB" in error
    assert "max_job_mb" in error
    status = node.daemon.requests.handle({"cmd": "status"})["status"]
    assert status["state"] == "unlocked" and status["job"] is None


def test_a_file_failing_preflight_is_refused_with_its_problems(node: SimNode, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gcode"
    bad.write_text("G28\nM502\nG1 X10\n")
    assert node.tap(MEMBER_UID)["granted"]
    answer = _print(node, bad)
    assert answer["ok"] is False and "fails preflight" in str(answer["error"])
    assert any("line 2" in p for p in answer["problems"])  # type: ignore[union-attr]


def test_an_inbox_file_over_max_job_mb_is_set_aside_by_its_size(node: SimNode, tmp_path: Path) -> None:
    assert node.tap(MEMBER_UID)["granted"]
    inbox = node.config.inbox
    assert inbox is not None
    hidden = inbox / ".huge.gcode.part"
    with open(hidden, "wb") as f:
        f.truncate(25 * 1024 * 1024)
    hidden.rename(inbox / "huge.gcode")
    node.tap(MEMBER_UID)  # the session's member taps while a file waits: it is checked aside
    rejected = wait_until(lambda: list((inbox / "rejected").glob("*huge.gcode")), 20, "the file set aside")
    problems = Path(f"{rejected[0]}.problems.txt").read_text(encoding="utf-8")
    assert "25.0 MB (26214400 bytes), over the node's limit of 20.0 MB ([machine] max_job_mb)" in problems


def test_a_file_still_being_read_is_answered_preparing_and_starts_by_itself(
    node: SimNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests, "PRINT_WAIT_S", 0.0)  # as a 200 MB file on a Pi after a minute
    job = tmp_path / "long.gcode"
    job.write_bytes(b"G28\n" + b";c\n" * 300_000 + b"G1 X10 F600\n")
    assert node.tap(MEMBER_UID)["granted"]
    answer = _print(node, job)
    assert answer["ok"] is True and answer["preparing"] is True, answer
    assert str(answer["message"]).startswith(f"preparing {job} (")
    assert "fabnode status" in str(answer["message"])
    second = _print(node, job)  # one file at a time
    assert second["ok"] is False and "is still being prepared" in str(second["error"])

    def started() -> dict[str, object] | None:
        status = node.daemon.requests.handle({"cmd": "status"})["status"]
        last = status["preparation"]["last"]
        return status if last is not None and status["job"] is not None else None

    status = wait_until(started, 30, "the prepared job's start")
    assert status["preparation"]["last"]["started"] is True and status["job"]["file"] == str(job)  # type: ignore[index]
