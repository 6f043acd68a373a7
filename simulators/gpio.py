"""In-process GPIO pins with a fab-lab node's board wired around them, for tests and the demo.

A peer of RPi.GPIO at the pin level (setup, read, write, edge callbacks) written from the board's
wiring, not from our driver: the e-stop is a normally closed contact to ground, so pressing it (or
cutting its wire) opens the circuit and the pulled-up pin reads high; the lid contact is closed while
the lid is shut; the current sensor drives its pin high while the machine draws power. An input that
is open with no pull resistor floats, and reading it raises `FloatingPinError`, as a bug would show
on a real board as random reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WIRING_NAMES = (
    "relay_pin",
    "relay_active_low",
    "green_led_pin",
    "red_led_pin",
    "buzzer_pin",
    "estop_pin",
    "lid_pin",
    "busy_pin",
)


class FloatingPinError(RuntimeError):
    """An input was read while nothing sets its level (open contact, no pull resistor)."""


@dataclass(frozen=True, slots=True)
class PinChange:
    """One level change on a pin, as a logic analyser would record it."""

    at: float  # the simulator's clock (time.monotonic by default)
    pin: int
    name: str  # "relay", "green", "red", "buzzer", "estop", "lid", "busy" or "GPIO<n>"
    level: bool


class SimGpio:
    """Simulated pins (the `PinBackend` interface) plus the lab's hands on the board."""

    def __init__(
        self,
        *,
        relay_pin: int = 17,
        relay_active_low: bool = False,
        green_led_pin: int = 27,
        red_led_pin: int = 22,
        buzzer_pin: int = 23,
        estop_pin: int | None = 5,
        lid_pin: int | None = None,
        busy_pin: int | None = None,
        edge_detect: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.relay_pin, self.relay_active_low = relay_pin, relay_active_low
        self.estop_pin, self.lid_pin, self.busy_pin = estop_pin, lid_pin, busy_pin
        named = {
            relay_pin: "relay",
            green_led_pin: "green",
            red_led_pin: "red",
            buzzer_pin: "buzzer",
            estop_pin: "estop",
            lid_pin: "lid",
            busy_pin: "busy",
        }
        self._names = {pin: name for pin, name in named.items() if pin is not None}
        self._pins_by_name = {name: pin for pin, name in self._names.items()}
        self._edge_detect = edge_detect
        self._clock = clock
        self._lock = threading.RLock()
        self._mode: dict[int, str] = {}  # pin -> "out" | "in"
        self._out: dict[int, bool] = {}  # level an output drives
        self._pull: dict[int, str] = {}  # pin -> "up" | "down" | "off"
        # What the outside world does to each input: a closed contact pulls to ground; a sensor drives.
        self._contact_closed: dict[int, bool] = {}
        self._driven: dict[int, bool] = {}
        self._watchers: dict[int, list[Callable[[int], None]]] = {}
        self.history: list[PinChange] = []
        if estop_pin is not None:
            self._contact_closed[estop_pin] = True  # released: the NC contact is closed
        if lid_pin is not None:
            self._contact_closed[lid_pin] = True  # shut
        if busy_pin is not None:
            self._driven[busy_pin] = False  # idle machine

    @classmethod
    def from_wiring(cls, wiring: Any, **options: Any) -> SimGpio:
        """Build from any object with GpioConfig's attribute names (relay_pin, estop_pin, ...)."""
        fields = {name: getattr(wiring, name) for name in WIRING_NAMES if hasattr(wiring, name)}
        return cls(**fields, **options)

    # -- the PinBackend interface (what RPi.GPIO offers) ------------------------------------------
    def setup_output(self, pin: int, level: bool) -> None:
        """Make `pin` an output at `level`."""
        with self._lock:
            before = self._level_or_none(pin)
            self._mode[pin], self._out[pin] = "out", bool(level)
            self._record(pin, before)

    def setup_input(self, pin: int, pull: str) -> None:
        """Make `pin` an input with a pull resistor ("up", "down", "off")."""
        if pull not in ("up", "down", "off"):
            raise ValueError(f"GPIO{pin}: unknown pull {pull!r}")
        with self._lock:
            self._mode[pin], self._pull[pin] = "in", pull

    def write(self, pin: int, level: bool) -> None:
        """Drive an output; like RPi.GPIO, refuse a pin not set up as an output."""
        with self._lock:
            if self._mode.get(pin) != "out":
                raise RuntimeError(f"GPIO{pin} has not been set up as an output")
            before = self._out[pin]
            self._out[pin] = bool(level)
            self._record(pin, before)

    def read(self, pin: int) -> bool:
        """The level on a pin (an output reads back what it drives)."""
        with self._lock:
            if pin not in self._mode:
                raise RuntimeError(f"GPIO{pin} has not been set up")
            return self._level(pin)

    def watch(self, pin: int, callback: Callable[[int], None]) -> bool:
        """Call `callback(pin)` on every edge of an input; False when built with edge_detect=False."""
        if not self._edge_detect:
            return False
        with self._lock:
            self._watchers.setdefault(pin, []).append(callback)
        return True

    def release(self, pins: list[int]) -> None:
        """Return pins to unpulled inputs without edge detection."""
        with self._lock:
            for pin in pins:
                self._watchers.pop(pin, None)
                self._mode[pin], self._pull[pin] = "in", "off"
                self._out.pop(pin, None)

    # -- the lab's side ---------------------------------------------------------------------------
    def press_estop(self) -> None:
        """Push the emergency stop: its normally closed contact opens."""
        self._set_contact(self._need("estop"), closed=False)

    def release_estop(self) -> None:
        """Twist the emergency stop out: the contact closes again."""
        self._set_contact(self._need("estop"), closed=True)

    def cut_estop_wire(self) -> None:
        """A broken e-stop wire: electrically the same as a pressed e-stop."""
        self._set_contact(self._need("estop"), closed=False)

    def open_lid(self) -> None:
        """Open the laser's lid: the interlock contact opens."""
        self._set_contact(self._need("lid"), closed=False)

    def close_lid(self) -> None:
        """Shut the lid: the interlock contact closes."""
        self._set_contact(self._need("lid"), closed=True)

    def set_busy(self, drawing: bool) -> None:
        """The current sensor's output: high while the machine draws power."""
        pin = self._need("busy")
        with self._lock:
            before = self._level_or_none(pin)
            self._driven[pin] = drawing
            self._record(pin, before)
        self._fire(pin, before)

    def level(self, pin: int) -> bool:
        """A pin's electrical level (False for a floating pin, as a meter would show ~0 V)."""
        with self._lock:
            return bool(self._level_or_none(pin))

    def relay_level(self) -> bool:
        """The relay pin's level (inverted from `relay_on` for an active-low relay board)."""
        return self._output_level(self.relay_pin)

    def relay_on(self) -> bool:
        """Whether the relay is energised: the machine has power."""
        with self._lock:
            if self._mode.get(self.relay_pin) != "out":
                return False  # an undriven pin: the relay board's own resistor holds it off
            return self._out[self.relay_pin] != self.relay_active_low

    def green_led(self) -> bool:
        """Whether the green LED is lit."""
        return self._output_level(self._pins_by_name["green"])

    def red_led(self) -> bool:
        """Whether the red LED is lit."""
        return self._output_level(self._pins_by_name["red"])

    def buzzer(self) -> bool:
        """Whether the buzzer sounds."""
        return self._output_level(self._pins_by_name["buzzer"])

    def changes(self, name: str) -> list[PinChange]:
        """The recorded changes of one named pin, oldest first."""
        with self._lock:
            return [change for change in self.history if change.name == name]

    # -- electrics --------------------------------------------------------------------------------
    def _need(self, name: str) -> int:
        pin = self._pins_by_name.get(name)
        if pin is None:
            raise RuntimeError(f"this board has no {name} input wired")
        return pin

    def _output_level(self, pin: int) -> bool:
        with self._lock:
            return self._mode.get(pin) == "out" and self._out[pin]

    def _level(self, pin: int) -> bool:
        if self._mode.get(pin) == "out":
            return self._out[pin]
        if pin in self._driven:
            return self._driven[pin]
        if self._contact_closed.get(pin, False):
            return False  # the contact shorts the pin to ground
        pull = self._pull.get(pin, "off")
        if pull == "off":
            raise FloatingPinError(f"GPIO{pin} ({self._names.get(pin, '?')}) floats: no pull resistor")
        return pull == "up"

    def _level_or_none(self, pin: int) -> bool | None:
        try:
            return self._level(pin)
        except FloatingPinError:
            return None

    def _set_contact(self, pin: int, closed: bool) -> None:
        with self._lock:
            before = self._level_or_none(pin)
            self._contact_closed[pin] = closed
            self._record(pin, before)
        self._fire(pin, before)

    def _record(self, pin: int, before: bool | None) -> None:
        after = self._level_or_none(pin)
        if after is not None and after != before:
            name = self._names.get(pin, f"GPIO{pin}")
            self.history.append(PinChange(self._clock(), pin, name, after))

    def _fire(self, pin: int, before: bool | None) -> None:
        with self._lock:
            changed = self._level_or_none(pin) != before
            watchers = list(self._watchers.get(pin, ())) if changed else []
        for callback in watchers:
            callback(pin)
