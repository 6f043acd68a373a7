"""RPi.GPIO pins (rpi-lgpio provides the same module on a Pi 5) for `drivers.gpio.machine_io.GpioMachineIO`.

RPi.GPIO raises RuntimeError when imported anywhere but on a Pi, so it is imported only when an
`RpiPins` is built, never at module import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from drivers.gpio.machine_io import GpioMachineIO, Pull, Wiring


class RpiPins:
    """`PinBackend` over RPi.GPIO in BCM numbering."""

    def __init__(self) -> None:
        import RPi.GPIO as gpio  # RuntimeError off a Pi: the caller reports it

        self._gpio: Any = gpio
        gpio.setwarnings(False)  # a previous run left the relay pin set up on purpose
        gpio.setmode(gpio.BCM)
        self._pulls = {"up": gpio.PUD_UP, "down": gpio.PUD_DOWN, "off": gpio.PUD_OFF}

    def setup_output(self, pin: int, level: bool) -> None:
        """An output starting at `level`, set in the same call so the pin never glitches."""
        gpio = self._gpio
        gpio.setup(pin, gpio.OUT, initial=gpio.HIGH if level else gpio.LOW)

    def setup_input(self, pin: int, pull: Pull) -> None:
        """An input with the Pi's internal pull resistor."""
        self._gpio.setup(pin, self._gpio.IN, pull_up_down=self._pulls[pull])

    def write(self, pin: int, level: bool) -> None:
        """Drive an output."""
        self._gpio.output(pin, self._gpio.HIGH if level else self._gpio.LOW)

    def read(self, pin: int) -> bool:
        """The pin's level."""
        return bool(self._gpio.input(pin))

    def watch(self, pin: int, callback: Callable[[int], None]) -> bool:
        """Edge detection on both edges; False where the kernel refuses it (RPi.GPIO on newer kernels)."""
        try:
            self._gpio.add_event_detect(pin, self._gpio.BOTH, callback=callback)
        except RuntimeError:
            return False
        return True

    def release(self, pins: list[int]) -> None:
        """Stop edge detection and return the pins to inputs."""
        for pin in pins:
            with contextlib.suppress(RuntimeError, ValueError):  # never watched: nothing to remove
                self._gpio.remove_event_detect(pin)
        if pins:
            self._gpio.cleanup(pins)


def open_rpi(wiring: Wiring, debounce_ms: float = 30.0) -> GpioMachineIO:
    """The machine's GPIO on a Raspberry Pi (raises RuntimeError elsewhere)."""
    return GpioMachineIO(RpiPins(), wiring, debounce_ms=debounce_ms)
