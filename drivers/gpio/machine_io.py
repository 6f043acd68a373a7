"""The machine's GPIO: power relay, green and red LEDs, buzzer, and the safety inputs.

`GpioMachineIO` does the logic (relay polarity, debounce, buzzer patterns, LED blinking) over a
`PinBackend`, which only sets and reads pin levels: `drivers.gpio.rpi.RpiPins` on a Pi, and the
simulated board in `simulators/gpio.py` everywhere (gpiozero's pin factories are the model).

Wiring the inputs expect (BCM numbering, internal pulls set by this module):
- e-stop: a normally closed contact between the pin and ground, pull-up. Closed (not pressed) reads
  low; pressed *or a broken wire* opens the circuit and reads high, so both count as pressed.
- lid: a contact closed while the laser's lid is shut, to ground, pull-up: high means open.
- busy: a current sensor's logic output, pull-down: high while the machine draws power.
Inputs are reported as `on_change(name, active)` with names "estop" (pressed), "lid" (open) and
"busy" (drawing), from this module's own thread, after `debounce_ms` of a steady level.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

log = logging.getLogger(__name__)

Pull = Literal["up", "down", "off"]
InputCallback = Callable[[str, bool], None]

# (on, off) durations in seconds, played in order; the buzzer is silent after the last step.
BUZZ_PATTERNS: dict[str, tuple[tuple[float, float], ...]] = {
    "granted": ((0.08, 0.06), (0.08, 0.0)),
    "denied": ((0.6, 0.0),),
    "warning": ((0.15, 0.15), (0.15, 0.15), (0.15, 0.0)),
    "fault": ((0.3, 0.1), (0.3, 0.1), (0.3, 0.1), (0.3, 0.1), (0.3, 0.0)),
}
BLINK_HALF_PERIOD_S = 0.25  # LEDs that blink are on 0.25 s, off 0.25 s


class PinBackend(Protocol):
    """Pin-level access, BCM numbering; levels are electrical (True = high)."""

    def setup_output(self, pin: int, level: bool) -> None:
        """Make `pin` an output that starts at `level` (no glitch to the other level)."""

    def setup_input(self, pin: int, pull: Pull) -> None:
        """Make `pin` an input with the given internal pull resistor."""

    def write(self, pin: int, level: bool) -> None:
        """Drive an output pin."""

    def read(self, pin: int) -> bool:
        """The level on a pin (an output reads back what it drives)."""

    def watch(self, pin: int, callback: Callable[[int], None]) -> bool:
        """Call `callback(pin)` on both edges; False if this backend cannot (the caller then polls)."""

    def release(self, pins: list[int]) -> None:
        """Give `pins` back (inputs, no edge detection); pins not listed keep their state."""


class MachineIO(Protocol):
    """What the daemon needs from the machine's GPIO, whatever the backend."""

    def set_relay(self, on: bool) -> None: ...

    def set_leds(self, green: bool, red: bool, blink: bool = False) -> None: ...

    def buzz(self, pattern: str) -> None: ...

    def read_inputs(self) -> dict[str, bool]: ...

    def subscribe(self, callback: InputCallback) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Wiring:
    """Which BCM pin does what; the same names as fabnode's `GpioConfig`."""

    relay_pin: int = 17
    relay_active_low: bool = False
    green_led_pin: int = 27
    red_led_pin: int = 22
    buzzer_pin: int = 23
    estop_pin: int | None = 5
    lid_pin: int | None = None
    busy_pin: int | None = None

    @classmethod
    def from_config(cls, config: Any) -> Wiring:
        """Copy the fields of an object with the same attribute names (fabnode's GpioConfig)."""
        names = cls.__dataclass_fields__
        return cls(**{name: getattr(config, name) for name in names if hasattr(config, name)})

    def inputs(self) -> dict[str, int]:
        """Configured inputs by name ("estop", "lid", "busy") -> pin."""
        pins = {"estop": self.estop_pin, "lid": self.lid_pin, "busy": self.busy_pin}
        return {name: pin for name, pin in pins.items() if pin is not None}


# name -> (pull resistor, level that means active); see the module docstring for the wiring.
INPUT_ELECTRICS: dict[str, tuple[Pull, bool]] = {
    "estop": ("up", True),
    "lid": ("up", True),
    "busy": ("down", True),
}


class Debouncer:
    """Report an input's new state only once it has held for `debounce_s`. Sans-I/O: pass `now`."""

    def __init__(self, initial: Mapping[str, bool], debounce_s: float) -> None:
        self.debounce_s = debounce_s
        self.stable = dict(initial)
        self._pending: dict[str, tuple[bool, float]] = {}  # name -> (candidate state, seen since)

    def sample(self, name: str, active: bool, now: float) -> bool | None:
        """Feed one reading; returns the new state when it changes, else None."""
        if active == self.stable[name]:
            self._pending.pop(name, None)
            return None
        candidate = self._pending.get(name)
        if candidate is None or candidate[0] != active:
            self._pending[name] = (active, now)
            candidate = self._pending[name]
        if now - candidate[1] >= self.debounce_s - 1e-9:  # woken at the deadline: float sums may fall short
            self.stable[name] = active
            del self._pending[name]
            return active
        return None

    def deadline(self) -> float | None:
        """When a pending change would be confirmed, if one is pending."""
        if not self._pending:
            return None
        return min(since for _, since in self._pending.values()) + self.debounce_s


class Tune:
    """A buzzer pattern started at `start`: which level when, as plain arithmetic. Sans-I/O."""

    def __init__(self, steps: tuple[tuple[float, float], ...], start: float) -> None:
        self._edges: list[tuple[float, bool]] = []  # (time, level from then on)
        t = start
        for on_s, off_s in steps:
            self._edges += [(t, True), (t + on_s, False)]
            t += on_s + off_s
        self.end = t

    def level_at(self, now: float) -> bool:
        """Whether the buzzer sounds at `now`."""
        level = False
        for at, edge_level in self._edges:
            if at <= now:
                level = edge_level
        return level

    def next_change(self, now: float) -> float | None:
        """The next edge after `now`, or None when the tune is over."""
        later = [at for at, _ in self._edges if at > now]
        return min(later) if later else None


def blink_phase(now: float) -> tuple[bool, float]:
    """(whether blinking LEDs are lit at `now`, when that flips next)."""
    phase, into = divmod(now, BLINK_HALF_PERIOD_S)
    return int(phase) % 2 == 0, now + (BLINK_HALF_PERIOD_S - into)


class GpioMachineIO:
    """Relay, LEDs, buzzer and debounced inputs over any `PinBackend`; owns one worker thread."""

    def __init__(
        self,
        pins: PinBackend,
        wiring: Wiring | None = None,
        *,
        debounce_ms: float = 30.0,
        poll_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pins = pins
        self._wiring = wiring = wiring or Wiring()
        self._clock = clock
        self._poll_s = poll_s
        self._lock = threading.RLock()
        # The relay first, before any other pin: whatever state the last run left, power is off now.
        pins.setup_output(wiring.relay_pin, wiring.relay_active_low)
        for pin in (wiring.green_led_pin, wiring.red_led_pin, wiring.buzzer_pin):
            pins.setup_output(pin, False)
        self._inputs = wiring.inputs()
        for name, pin in self._inputs.items():
            pins.setup_input(pin, INPUT_ELECTRICS[name][0])
        self._debouncer = Debouncer({n: self._active(n) for n in self._inputs}, debounce_ms / 1000.0)
        self._callbacks: list[InputCallback] = []
        self._leds = (False, False, False)  # green, red, blink
        self._tune: Tune | None = None
        self._written = {pin: False for pin in self._outputs_but_relay()}  # as set up above
        self._closed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        for pin in self._inputs.values():
            if not pins.watch(pin, self._on_edge):
                log.info("no edge detection on GPIO%d: polling every %.0f ms", pin, poll_s * 1000)
        self._thread = threading.Thread(target=self._run, name="gpio", daemon=True)
        self._thread.start()

    def set_relay(self, on: bool) -> None:
        """Switch the machine's power (the pin level is inverted for an active-low relay)."""
        with self._lock:
            if self._closed and on:
                raise RuntimeError("GPIO is closed: the relay stays off")
            self._pins.write(self._wiring.relay_pin, on != self._wiring.relay_active_low)

    def set_leds(self, green: bool, red: bool, blink: bool = False) -> None:
        """Light the LEDs; with `blink` those that are on flash at 2 Hz."""
        with self._lock:
            self._leds = (green, red, blink)
            self._drive_outputs(self._clock())
        self._wake.set()

    def buzz(self, pattern: str) -> None:
        """Start a pattern ("granted", "denied", "warning", "fault") and return at once."""
        steps = BUZZ_PATTERNS.get(pattern)
        if steps is None:
            raise ValueError(f"unknown buzzer pattern {pattern!r}; known: {', '.join(BUZZ_PATTERNS)}")
        with self._lock:
            self._tune = Tune(steps, self._clock())
            self._drive_outputs(self._clock())
        self._wake.set()

    def read_inputs(self) -> dict[str, bool]:
        """Debounced input states: {"estop": pressed, "lid": open, "busy": drawing} for wired inputs."""
        with self._lock:
            return dict(self._debouncer.stable)

    def subscribe(self, callback: InputCallback) -> None:
        """Call `callback(name, active)` from the GPIO thread on every debounced change."""
        with self._lock:
            self._callbacks.append(callback)

    def close(self) -> None:
        """Stop the thread, switch relay, LEDs and buzzer off, release the inputs. Idempotent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        with self._lock:
            self._pins.write(self._wiring.relay_pin, self._wiring.relay_active_low)
            if self._closed:
                return
            self._closed = True
            for pin in (self._wiring.green_led_pin, self._wiring.red_led_pin, self._wiring.buzzer_pin):
                self._pins.write(pin, False)
            # The relay pin stays an output driven off: a floating pin could energise some relay boards.
            self._pins.release([*self._inputs.values(), *self._outputs_but_relay()])

    def _outputs_but_relay(self) -> list[int]:
        w = self._wiring
        return [w.green_led_pin, w.red_led_pin, w.buzzer_pin]

    def _active(self, name: str) -> bool:
        return self._pins.read(self._inputs[name]) == INPUT_ELECTRICS[name][1]

    def _on_edge(self, pin: int) -> None:
        self._wake.set()  # runs in the backend's edge thread: only wake ours

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            now = self._clock()
            try:
                changes = self._sample_inputs(now)
                with self._lock:
                    self._drive_outputs(now)
                    wake_at = self._next_wake(now)
            except Exception:  # a flaky pin read must not end input monitoring
                log.exception("GPIO worker")
                changes, wake_at = [], now + self._poll_s
            self._notify(changes)
            self._wake.wait(max(0.0, wake_at - self._clock()))

    def _sample_inputs(self, now: float) -> list[tuple[str, bool]]:
        changes = []
        with self._lock:
            for name in self._inputs:
                state = self._debouncer.sample(name, self._active(name), now)
                if state is not None:
                    changes.append((name, state))
        return changes

    def _notify(self, changes: list[tuple[str, bool]]) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for name, active in changes:
            for callback in callbacks:
                try:
                    callback(name, active)
                except Exception:
                    log.exception("input callback for %s", name)

    def _next_wake(self, now: float) -> float:
        times = [now + self._poll_s, self._debouncer.deadline()]
        if self._tune is not None:
            times.append(self._tune.next_change(now))
        if self._leds[2] and (self._leds[0] or self._leds[1]):
            times.append(blink_phase(now)[1])
        return min(t for t in times if t is not None)

    def _drive_outputs(self, now: float) -> None:
        if self._closed:
            return
        green, red, blink = self._leds
        lit = blink_phase(now)[0] if blink else True
        buzzer = False
        if self._tune is not None:
            buzzer = self._tune.level_at(now)
            if now >= self._tune.end:
                self._tune = None
        w = self._wiring
        for pin, level in (
            (w.green_led_pin, green and lit),
            (w.red_led_pin, red and lit),
            (w.buzzer_pin, buzzer),
        ):
            if self._written.get(pin) != level:
                self._pins.write(pin, level)
                self._written[pin] = level
