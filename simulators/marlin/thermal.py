"""The simulated printer's heaters: first-order heating and cooling, on the printer's own clock.

Sans-I/O: `advance(dt)` moves a heater by `dt` physical seconds; the firmware converts wall time to
physical time with its time_scale (time_scale=0: heaters jump to their target at once).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

AMBIENT_C = 25.0
TEMP_WINDOW = 1.0  # Marlin's TEMP_WINDOW / TEMP_BED_WINDOW: "reached" within this many degrees
TEMP_RESIDENCY_S = 10.0  # TEMP_RESIDENCY_TIME / TEMP_BED_RESIDENCY_TIME for M109/M190 S


@dataclass
class Heater:
    """One heater. It heats towards target+overshoot_margin (never past target) and cools to ambient."""

    name: str  # "T" or "B", as in the temperature report
    tau_heat_s: float
    tau_cool_s: float
    max_c: float
    temp: float = AMBIENT_C
    target: float = 0.0
    margin_c: float = 15.0  # the heater's drive beyond the target: reaches the target in finite time

    def advance(self, dt: float) -> None:
        """Move the temperature on by dt physical seconds."""
        if dt <= 0:
            return
        if self.target > self.temp:
            goal, tau = self.target + self.margin_c, self.tau_heat_s
            self.temp = min(self.target, goal + (self.temp - goal) * math.exp(-dt / tau))
        else:
            goal = max(self.target, AMBIENT_C)
            self.temp = max(goal, goal + (self.temp - goal) * math.exp(-dt / self.tau_cool_s))

    def settle(self) -> None:
        """Jump to where the heater is heading (time_scale=0)."""
        self.temp = self.target if self.target > AMBIENT_C else min(self.temp, AMBIENT_C)

    @property
    def power(self) -> int:
        """Marlin's `@:` figure (0-127): full while heating, a holding duty at the target, 0 when off."""
        if self.target <= 0:
            return 0
        if self.temp < self.target - TEMP_WINDOW:
            return 127
        return int(127 * (self.target - AMBIENT_C) / (self.max_c - AMBIENT_C + 1))

    def reached(self, target: float) -> bool:
        """Within Marlin's temperature window of `target`."""
        return abs(self.temp - target) <= TEMP_WINDOW


def hotend() -> Heater:
    """A typical 40 W hotend: ~25 -> 200 C in about a minute."""
    return Heater("T", tau_heat_s=22.0, tau_cool_s=60.0, max_c=275.0)


def bed() -> Heater:
    """A typical heated bed: ~25 -> 60 C in about a minute and a half."""
    return Heater("B", tau_heat_s=45.0, tau_cool_s=300.0, max_c=120.0)


def report(t: Heater, b: Heater) -> str:
    """Marlin's temperature report body: `T:21.80 /0.00 B:21.95 /0.00 @:0 B@:0`."""
    return f"T:{t.temp:.2f} /{t.target:.2f} B:{b.temp:.2f} /{b.target:.2f} @:{t.power} B@:{b.power}"


def autotune_result(
    heater: Heater, target: float, cycles: int, rng: random.Random
) -> tuple[list[str], tuple[float, float, float]]:
    """The lines M303 prints after its cycles, and the gains (Kp, Ki, Kd) it found."""
    span = 2.0 + rng.random() * 3.0  # the oscillation's half-width around the target
    bias = 64 + rng.randrange(60)
    ku = 4.0 * bias / (math.pi * span)
    tu = heater.tau_heat_s * (1.6 + rng.random() * 0.8)
    kp, ki, kd = 0.6 * ku, 1.2 * ku / tu, 0.075 * ku * tu
    prefix = "bed" if heater.name == "B" else ""
    lines = [f"bias: {bias} d: {bias} min: {target - span:.2f} max: {target + span:.2f}"]
    lines += [f"Ku: {ku:.2f} Tu: {tu:.2f}", " Classic PID ", f" Kp: {kp:.2f} Ki: {ki:.2f} Kd: {kd:.2f}"]
    lines *= 1 if cycles < 3 else 2  # Marlin prints the block after each cycle from the third on
    lines.append(
        "PID Autotune finished! Put the last Kp, Ki and Kd constants from below into Configuration.h"
    )
    lines += [f"#define DEFAULT_{prefix}Kp {kp:.2f}", f"#define DEFAULT_{prefix}Ki {ki:.2f}"]
    lines.append(f"#define DEFAULT_{prefix}Kd {kd:.2f}")
    return lines, (round(kp, 2), round(ki, 2), round(kd, 2))
