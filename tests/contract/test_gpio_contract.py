"""One contract for the machine's GPIO, run over every pin backend present.

`sim` is the simulated board (simulators/gpio.py) with edge callbacks, `sim-polling` the same board
without them (as RPi.GPIO on kernels that refuse edge detection), `rpi` real pins on a Raspberry Pi
(skipped elsewhere; RPi.GPIO is never imported in this process unless we are on a Pi). On a Pi the
tests that need a hand on the e-stop or the lid are skipped: they need a person or a test jig.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.gpio.machine_io import GpioMachineIO, Wiring
from simulators.gpio import SimGpio

pytestmark = pytest.mark.timeout(30)

DEBOUNCE_MS = 40.0
# Glitch tests press and release from this thread; a loaded machine may pause it between the two
# for longer than 40 ms, which would make a real press. 250 ms leaves room for that.
SLOW_DEBOUNCE_MS = 250.0


def on_a_pi() -> bool:
    """A Raspberry Pi with RPi.GPIO (or rpi-lgpio) importable, found without importing it here."""
    model = Path("/proc/device-tree/model")
    if not model.exists() or b"Raspberry Pi" not in model.read_bytes():
        return False
    probe = subprocess.run([sys.executable, "-c", "import RPi.GPIO"], capture_output=True, timeout=20)
    return probe.returncode == 0


class RpiBoard:
    """What a test can see of real pins without a jig: the outputs, read back."""

    def __init__(self, pins: Any, wiring: Wiring) -> None:
        self.pins, self.wiring = pins, wiring

    def relay_on(self) -> bool:
        return self.pins.read(self.wiring.relay_pin) != self.wiring.relay_active_low

    def relay_level(self) -> bool:
        return bool(self.pins.read(self.wiring.relay_pin))

    def green_led(self) -> bool:
        return bool(self.pins.read(self.wiring.green_led_pin))

    def red_led(self) -> bool:
        return bool(self.pins.read(self.wiring.red_led_pin))

    def __getattr__(self, name: str) -> Any:
        pytest.skip(f"{name} on real pins needs a person or a test jig")


Rig = tuple[GpioMachineIO, Any]


@pytest.fixture(params=["sim", "sim-polling", "rpi"])
def make_rig(request: pytest.FixtureRequest) -> Iterator[Callable[..., Rig]]:
    """Build (io, board) for this backend from Wiring fields; closes every io at the end."""
    made: list[GpioMachineIO] = []
    if request.param == "rpi" and not on_a_pi():
        pytest.skip("not on a Raspberry Pi with RPi.GPIO")

    def make(debounce_ms: float = DEBOUNCE_MS, **fields: Any) -> Rig:
        wiring = Wiring(**fields)
        board: Any
        if request.param == "rpi":
            from drivers.gpio.rpi import RpiPins

            pins: Any = RpiPins()
            board = RpiBoard(pins, wiring)
        else:
            board = pins = SimGpio.from_wiring(wiring, edge_detect=request.param == "sim")
        io = GpioMachineIO(pins, wiring, debounce_ms=debounce_ms, poll_s=0.02)
        made.append(io)
        return io, board

    yield make
    for io in made:
        io.close()


class Recorder:
    """Collects on_change calls and lets a test wait for them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.threads: set[str] = set()
        self.times: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, name: str, active: bool) -> None:
        with self._cond:
            self.calls.append((name, active))
            self.threads.add(threading.current_thread().name)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, bool]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.calls) >= count, timeout), self.calls
            return list(self.calls)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_relay_is_off_at_start_and_after_close(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig()
    assert not board.relay_on()
    io.set_relay(True)
    assert board.relay_on()
    io.close()
    assert not board.relay_on()
    with pytest.raises(RuntimeError, match="closed"):
        io.set_relay(True)
    assert not board.relay_on()


def test_active_low_relay_inverts_the_pin(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig(relay_active_low=True)
    assert board.relay_level() is True and not board.relay_on()
    io.set_relay(True)
    assert board.relay_level() is False and board.relay_on()
    io.close()
    assert board.relay_level() is True


def test_active_high_relay_follows_the_pin(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig(relay_active_low=False)
    assert board.relay_level() is False
    io.set_relay(True)
    assert board.relay_level() is True


def test_estop_is_normally_closed(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig()
    seen = Recorder()
    io.subscribe(seen)
    assert io.read_inputs() == {"estop": False}
    board.press_estop()
    assert seen.wait_for(1) == [("estop", True)]
    assert io.read_inputs()["estop"] is True
    board.release_estop()
    assert seen.wait_for(2) == [("estop", True), ("estop", False)]
    board.cut_estop_wire()  # an open circuit is a pressed e-stop
    assert seen.wait_for(3)[-1] == ("estop", True)
    assert "MainThread" not in seen.threads


def test_estop_pressed_before_start_reads_pressed(make_rig: Callable[..., Rig]) -> None:
    probe_io, board = make_rig()
    board.press_estop()
    wait_until(lambda: probe_io.read_inputs()["estop"])
    probe_io.close()
    io = GpioMachineIO(board, Wiring(), debounce_ms=DEBOUNCE_MS)
    try:
        assert io.read_inputs() == {"estop": True}
    finally:
        io.close()


def test_lid_and_busy_inputs(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig(lid_pin=6, busy_pin=13)
    seen = Recorder()
    io.subscribe(seen)
    assert io.read_inputs() == {"estop": False, "lid": False, "busy": False}
    board.open_lid()
    assert seen.wait_for(1) == [("lid", True)]
    board.set_busy(True)
    assert seen.wait_for(2)[-1] == ("busy", True)
    board.close_lid()
    assert seen.wait_for(3)[-1] == ("lid", False)
    assert io.read_inputs() == {"estop": False, "lid": False, "busy": True}


def test_a_glitch_shorter_than_debounce_is_not_reported(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig(debounce_ms=SLOW_DEBOUNCE_MS, lid_pin=6)
    seen = Recorder()
    io.subscribe(seen)
    board.press_estop()
    board.release_estop()  # microseconds later: contact bounce, not a press
    board.open_lid()  # a real change after the glitch: once it is reported, the glitch had its chance
    assert seen.wait_for(1) == [("lid", True)]
    assert io.read_inputs()["estop"] is False


def test_a_bouncing_press_is_one_change_after_the_debounce_time(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig(debounce_ms=SLOW_DEBOUNCE_MS)
    seen = Recorder()
    io.subscribe(seen)
    for _ in range(5):
        board.press_estop()
        board.release_estop()
    settled_at = time.monotonic()
    board.press_estop()
    assert seen.wait_for(1) == [("estop", True)]
    assert seen.times[0] - settled_at >= SLOW_DEBOUNCE_MS / 1000.0
    board.release_estop()
    assert seen.wait_for(2) == [("estop", True), ("estop", False)]


def test_leds_and_blinking(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig()
    io.set_leds(green=True, red=False)
    assert board.green_led() and not board.red_led()
    io.set_leds(green=False, red=True, blink=True)
    assert not board.green_led()
    wait_until(lambda: len(board.changes("red")) >= 4)  # on, off, on, off: it flashes
    io.set_leds(green=False, red=False)
    assert not board.red_led() and not board.green_led()


@pytest.mark.parametrize(("pattern", "beeps"), [("granted", 2), ("denied", 1), ("warning", 3)])
def test_buzzer_plays_the_pattern_in_the_background(
    make_rig: Callable[..., Rig], pattern: str, beeps: int
) -> None:
    io, board = make_rig()
    setup = len(board.changes("buzzer"))  # the pin being set up low, before any sound
    io.buzz(pattern)
    assert board.buzzer()  # sounding already, and the call returned
    wait_until(lambda: len(board.changes("buzzer")) >= setup + 2 * beeps)
    wait_until(lambda: not board.buzzer())
    levels = [change.level for change in board.changes("buzzer")[setup:]]
    assert levels == [True, False] * beeps
    with pytest.raises(ValueError, match="unknown buzzer pattern 'fanfare'"):
        io.buzz("fanfare")


def test_close_silences_and_darkens(make_rig: Callable[..., Rig]) -> None:
    io, board = make_rig()
    io.set_relay(True)
    io.set_leds(True, True)
    io.buzz("fault")
    io.close()
    io.close()
    assert not board.relay_on() and not board.green_led() and not board.red_led()
