"""The RPi.GPIO backend against a stand-in for RPi.GPIO's C module (the one place mocks are allowed):
what it sets up and which levels it writes, with no Raspberry Pi."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drivers.gpio.machine_io import GpioMachineIO, Wiring

pytestmark = pytest.mark.timeout(20)


class FakeGpio(types.ModuleType):
    """Records RPi.GPIO calls; inputs read from `levels`, edges fired by `edge(pin)`."""

    BCM, BOARD = 11, 10
    OUT, IN = 0, 1
    HIGH, LOW = 1, 0
    PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
    RISING, FALLING, BOTH = 31, 32, 33

    def __init__(self, edge_detect_works: bool = True) -> None:
        super().__init__("RPi.GPIO")
        self.calls: list[tuple[Any, ...]] = []
        self.levels: dict[int, int] = {}
        self.callbacks: dict[int, Callable[[int], None]] = {}
        self.edge_detect_works = edge_detect_works
        self.lock = threading.Lock()

    def setwarnings(self, flag: bool) -> None:
        self.calls.append(("setwarnings", flag))

    def setmode(self, mode: int) -> None:
        self.calls.append(("setmode", mode))

    def setup(self, pin: int, direction: int, pull_up_down: int = 20, initial: int = -1) -> None:
        self.calls.append(("setup", pin, direction, pull_up_down, initial))
        if direction == self.OUT:
            self.levels[pin] = initial if initial != -1 else self.LOW

    def output(self, pin: int, level: int) -> None:
        self.calls.append(("output", pin, level))
        self.levels[pin] = level

    def input(self, pin: int) -> int:
        with self.lock:
            return self.levels.get(pin, self.LOW)

    def add_event_detect(self, pin: int, edge: int, callback: Callable[[int], None]) -> None:
        if not self.edge_detect_works:
            raise RuntimeError("Failed to add edge detection")
        self.calls.append(("add_event_detect", pin, edge))
        self.callbacks[pin] = callback

    def remove_event_detect(self, pin: int) -> None:
        self.calls.append(("remove_event_detect", pin))
        self.callbacks.pop(pin, None)

    def cleanup(self, pins: Any = None) -> None:
        self.calls.append(("cleanup", pins))

    def set_input(self, pin: int, level: int) -> None:
        with self.lock:
            self.levels[pin] = level
        if pin in self.callbacks:
            self.callbacks[pin](pin)  # RPi.GPIO calls back from its own thread; a test thread will do

    def writes(self, pin: int) -> list[int]:
        return [c[2] for c in self.calls if c[0] == "output" and c[1] == pin]


@pytest.fixture(params=[True, False], ids=["edges", "polling"])
def fake_gpio(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGpio]:
    fake = FakeGpio(edge_detect_works=request.param)
    fake.levels[5] = fake.LOW  # the e-stop's NC contact is closed: not pressed
    package = types.ModuleType("RPi")
    package.GPIO = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", package)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    yield fake


def build(wiring: Wiring) -> GpioMachineIO:
    from drivers.gpio.rpi import RpiPins

    return GpioMachineIO(RpiPins(), wiring, debounce_ms=10, poll_s=0.01)


def test_module_import_does_not_import_rpi_gpio() -> None:
    sys.modules.pop("drivers.gpio.rpi", None)
    import drivers.gpio.rpi  # noqa: F401

    assert "RPi.GPIO" not in sys.modules or isinstance(sys.modules["RPi.GPIO"], FakeGpio)


def test_bcm_mode_then_relay_first_and_off(fake_gpio: FakeGpio) -> None:
    io = build(Wiring(relay_pin=17, green_led_pin=27, red_led_pin=22, buzzer_pin=23, estop_pin=5))
    try:
        assert fake_gpio.calls[:3] == [
            ("setwarnings", False),
            ("setmode", FakeGpio.BCM),
            ("setup", 17, FakeGpio.OUT, FakeGpio.PUD_OFF, FakeGpio.LOW),  # relay first, low = off
        ]
        setups = [c for c in fake_gpio.calls if c[0] == "setup"]
        assert setups[1:] == [
            ("setup", 27, FakeGpio.OUT, FakeGpio.PUD_OFF, FakeGpio.LOW),
            ("setup", 22, FakeGpio.OUT, FakeGpio.PUD_OFF, FakeGpio.LOW),
            ("setup", 23, FakeGpio.OUT, FakeGpio.PUD_OFF, FakeGpio.LOW),
            ("setup", 5, FakeGpio.IN, FakeGpio.PUD_UP, -1),  # NC e-stop: pull-up, open reads high
        ]
    finally:
        io.close()


def test_active_low_relay_starts_high_and_is_left_high(fake_gpio: FakeGpio) -> None:
    io = build(Wiring(relay_active_low=True))
    assert ("setup", 17, FakeGpio.OUT, FakeGpio.PUD_OFF, FakeGpio.HIGH) in fake_gpio.calls
    io.set_relay(True)
    io.set_relay(False)
    io.close()
    assert fake_gpio.writes(17) == [FakeGpio.LOW, FakeGpio.HIGH, FakeGpio.HIGH]
    cleaned = [c[1] for c in fake_gpio.calls if c[0] == "cleanup"]
    assert cleaned and all(17 not in pins for pins in cleaned)  # the relay pin stays driven off


def test_lid_and_busy_pulls(fake_gpio: FakeGpio) -> None:
    io = build(Wiring(estop_pin=None, lid_pin=6, busy_pin=13))
    try:
        inputs = [c for c in fake_gpio.calls if c[0] == "setup" and c[2] == FakeGpio.IN]
        assert inputs == [
            ("setup", 6, FakeGpio.IN, FakeGpio.PUD_UP, -1),
            ("setup", 13, FakeGpio.IN, FakeGpio.PUD_DOWN, -1),
        ]
    finally:
        io.close()


def test_estop_edge_is_reported_once_debounced(fake_gpio: FakeGpio) -> None:
    io = build(Wiring())
    seen: list[tuple[str, bool]] = []
    done = threading.Event()
    io.subscribe(lambda name, active: (seen.append((name, active)), done.set()))
    try:
        if fake_gpio.edge_detect_works:
            assert ("add_event_detect", 5, FakeGpio.BOTH) in fake_gpio.calls
        fake_gpio.set_input(5, FakeGpio.HIGH)  # contact open: pressed
        assert done.wait(5)
        assert seen == [("estop", True)]
        assert io.read_inputs() == {"estop": True}
    finally:
        io.close()


def test_leds_and_buzzer_levels(fake_gpio: FakeGpio) -> None:
    io = build(Wiring())
    try:
        io.set_leds(green=True, red=False)
        assert fake_gpio.writes(27) == [FakeGpio.HIGH]
        assert fake_gpio.levels[22] == FakeGpio.LOW
        io.buzz("denied")
        assert fake_gpio.writes(23)[0] == FakeGpio.HIGH
    finally:
        io.close()
    assert fake_gpio.writes(27)[-1] == FakeGpio.LOW and fake_gpio.writes(23)[-1] == FakeGpio.LOW
