"""`fabnode calibrate relay|leds|inputs|badge` against a real `fabnode run --simulate` daemon.

A technician checks the wiring through the CLI; the tests look at what they would see: the CLI's
exit code and output, `fabnode status` (the simulated relay pin, the LEDs), and the usage log.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabnode.paths import secret_file_path
from fabnode.records import members as access
from tests.integration.test_daemon_helpers import (
    MEMBER_UID,
    REPO,
    STRANGER_UID,
    Node,
    fabnode_cmd,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A daemon on the built-in simulated printer, with Alice (trained) and Tom (technician)."""
    n = Node(tmp_path / "state").start()
    n.add_members("sim-printer")
    yield n
    n.stop()


def test_relay_check_switches_the_relay_until_the_controller_acts(node: Node) -> None:
    on = node.cli("calibrate", "relay", "--on")
    assert on.returncode == 0, on.stderr
    assert on.stdout == "relay on\n"
    status = node.status()
    assert (status["state"], status["relay"]) == ("locked", True)
    assert status["technician_check"]["relay"] is True and 0 < status["technician_check"]["ends_in_s"] <= 60
    off = node.cli("calibrate", "relay", "--off")
    assert off.returncode == 0 and off.stdout == "relay off\n"
    assert node.status()["relay"] is False
    assert "technician check: relay switched on" in node.output()

    # Switched on again, then a stranger taps: the controller's decision (locked: off) wins at once.
    assert node.cli("calibrate", "relay", "--on").returncode == 0
    assert node.tap(STRANGER_UID)["ok"] is False
    status = node.status()
    assert (status["state"], status["relay"], status["technician_check"]) == ("locked", False, None)


def test_relay_and_leds_are_refused_during_a_members_session(node: Node) -> None:
    assert node.tap(MEMBER_UID)["ok"]
    for args in (["relay", "--off"], ["leds", "--red"]):
        result = node.cli("calibrate", *args)
        assert result.returncode == 1, args
        assert "a member's session is open on sim-printer" in result.stderr
    status = node.status()
    assert (status["state"], status["relay"]) == ("unlocked", True)
    assert status["leds"] == {"green": True, "red": False, "blink": False}


def test_leds_check_lights_the_leds_then_the_controller_takes_them_back(node: Node) -> None:
    result = node.cli("calibrate", "leds", "--green", "--blink")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "leds green on, red off, blinking\n"
    assert node.status()["leds"] == {"green": True, "red": False, "blink": True}
    assert node.tap(MEMBER_UID)["ok"]  # the session's own LEDs: green, steady
    assert node.status()["leds"] == {"green": True, "red": False, "blink": False}


def test_inputs_show_the_estop(node: Node) -> None:
    first = node.cli("calibrate", "inputs")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "e-stop: released\n"  # a printer: only the e-stop is wired
    assert node.cli("sim-input", "estop", "press").returncode == 0
    shown = wait_until(lambda: (lambda r: r.stdout if "e-stop: PRESSED" in r.stdout else "")(
        node.cli("calibrate", "inputs")), 10, "calibrate inputs shows the e-stop pressed")
    assert "(the controller" not in shown  # the controller saw it too: nothing left pending
    assert node.status()["state"] == "fault"


def test_badge_capture_takes_the_next_tap_without_unlocking(node: Node) -> None:
    capture = subprocess.Popen(
        fabnode_cmd("calibrate", "badge", "--timeout", "15", "--state-dir", str(node.state_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        node.wait_status(lambda s: (s["technician_check"] or {}).get("badge_capture") is True, 15,
                         "the capture is armed")  # fmt: skip
        tapped = node.cli("badge", MEMBER_UID)
        out, err = capture.communicate(timeout=15)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait(5)
    assert capture.returncode == 0, err
    assert tapped.returncode == 0 and "not a tap" in tapped.stdout
    secret = access.load_secret(secret_file_path(node.state_dir))
    assert out.strip() == access.badge_hash(secret, MEMBER_UID)
    status = node.status()
    assert (status["state"], status["relay"], status["technician_check"]) == ("locked", False, None)
    assert node.rows("SELECT * FROM access_events") == []
    assert MEMBER_UID not in node.output() and MEMBER_UID.replace(":", "").lower() not in node.output()
    # The capture took one read only: the next tap is a tap again.
    assert node.tap(MEMBER_UID)["ok"] and node.status()["state"] == "unlocked"
