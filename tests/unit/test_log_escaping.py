"""Text from outside that reaches the node's log is escaped: a newline cannot forge a second journal line."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from fabnode.node.health import PartsHealth


def test_a_reader_detail_with_a_newline_stays_on_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    faults: list[tuple[str, str]] = []
    link = SimpleNamespace(parts=SimpleNamespace(port="/dev/ttyACM0"), config=None)
    health = PartsHealth(link, lambda kind, detail: faults.append((kind, detail)))  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="fabnode.daemon"):
        health.reader_status("found", "usb:072f:2200", 0.0)
        health.reader_status("lost", "gone\nfabnode.daemon: relay on", 1.0)
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    forged = "gone\nfabnode.daemon: relay on"
    assert lost == [f"badge reader lost: {forged!s}".replace("\n", "\\n")
                    + " (the daemon runs on; it reopens by itself)"]  # fmt: skip
    assert faults == [("reader_lost", forged)]  # the fault row keeps the text as it was
