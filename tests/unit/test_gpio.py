"""Pure parts of drivers.gpio.machine_io: debounce, buzzer tunes, blinking, wiring from the config."""

from __future__ import annotations

import pytest

from drivers.gpio.machine_io import BUZZ_PATTERNS, Debouncer, Tune, Wiring, blink_phase
from fabnode.config.settings import GpioConfig


def test_wiring_takes_every_gpio_config_field() -> None:
    config = GpioConfig(
        backend="rpi",
        relay_pin=4,
        relay_active_low=True,
        green_led_pin=5,
        red_led_pin=6,
        buzzer_pin=7,
        estop_pin=8,
        lid_pin=9,
        debounce_ms=30,
        busy_pin=10,
    )
    wiring = Wiring.from_config(config)
    assert wiring == Wiring(4, True, 5, 6, 7, 8, 9, 10)
    assert wiring.inputs() == {"estop": 8, "lid": 9, "busy": 10}


def test_wiring_leaves_out_inputs_not_wired() -> None:
    assert Wiring(estop_pin=None).inputs() == {}
    assert Wiring().inputs() == {"estop": 5}


def test_debounce_reports_a_level_held_for_the_debounce_time() -> None:
    d = Debouncer({"estop": False}, debounce_s=0.03)
    assert d.sample("estop", True, 10.000) is None
    assert d.deadline() == pytest.approx(10.030)
    assert d.sample("estop", True, 10.020) is None
    assert d.sample("estop", True, 10.030) is True
    assert d.stable == {"estop": True} and d.deadline() is None


def test_debounce_ignores_a_glitch_and_restarts_on_bounce() -> None:
    d = Debouncer({"lid": False}, debounce_s=0.03)
    assert d.sample("lid", True, 1.00) is None
    assert d.sample("lid", False, 1.01) is None  # back before 30 ms: a glitch
    assert d.deadline() is None
    assert d.sample("lid", True, 1.02) is None  # bounce: the 30 ms start again here
    assert d.sample("lid", True, 1.045) is None
    assert d.sample("lid", True, 1.05) is True


def test_zero_debounce_reports_at_once() -> None:
    d = Debouncer({"busy": False}, debounce_s=0.0)
    assert d.sample("busy", True, 5.0) is True


@pytest.mark.parametrize("pattern", sorted(BUZZ_PATTERNS))
def test_tunes_sound_their_beeps_then_stop(pattern: str) -> None:
    steps = BUZZ_PATTERNS[pattern]
    tune = Tune(steps, start=100.0)
    t, beeps = 100.0, int(tune.level_at(100.0))
    while (change := tune.next_change(t)) is not None:
        if tune.level_at(change):
            beeps += 1
        t = change
    assert beeps == len(steps)
    assert not tune.level_at(tune.end) and tune.next_change(tune.end) is None


def test_granted_is_two_short_beeps() -> None:
    tune = Tune(BUZZ_PATTERNS["granted"], start=0.0)
    assert [tune.level_at(t) for t in (0.0, 0.07, 0.09, 0.15, 0.25)] == [True, True, False, True, False]


def test_blink_is_two_hertz() -> None:
    assert blink_phase(0.0) == (True, pytest.approx(0.25))
    assert blink_phase(0.30)[0] is False
    assert blink_phase(0.55) == (True, pytest.approx(0.75))
