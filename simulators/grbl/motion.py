"""GRBL's planner buffer and stepper as a simulator needs them: blocks run one after another in machine time.

Sans-I/O: `advance(dt)` moves the machine forward by `dt` machine seconds (math.inf: to the end of
what can run). Moves run at their rate times the override, without acceleration, except a feed hold,
which decelerates over rate/acceleration seconds (state Hold:1) before stopping (Hold:0). Laser-on
time and distance are counted here, as the beam really burns: while a block with power runs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from simulators.grbl.gcode import Move


@dataclass
class Tally:
    """What the machine did (machine seconds and millimetres, not scaled by time_scale)."""

    motion_s: float = 0.0
    distance_mm: float = 0.0
    laser_on_s: float = 0.0
    laser_distance_mm: float = 0.0


class Planner:
    """The planner ring (GRBL keeps one slot empty: 16 blocks hold 15) and the block being stepped."""

    def __init__(self, capacity: int, tally: Tally) -> None:
        self.capacity = capacity
        self.tally = tally
        self.blocks: deque[Move] = deque()
        self.done_mm = 0.0  # progress along blocks[0]
        self.hold = ""  # "" running, "decel" (Hold:1), "held" (Hold:0)
        self.decel_left_s = 0.0
        self.feed_ovr = 100
        self.rapid_ovr = 100
        self._rest = (0.0, 0.0, 0.0)  # where the machine stands when no block is under way
        self.probe_alarms: list[int] = []  # ALARM codes from probing moves that ended without contact

    # -- queue -------------------------------------------------------------------------------

    def free(self) -> int:
        """Free planner blocks, as `Bf:` reports them."""
        return self.capacity - len(self.blocks)

    def push(self, move: Move) -> None:
        """Queue one block (the caller checks `free()` first, as plan_buffer_line waits)."""
        self.blocks.append(move)

    @property
    def busy(self) -> bool:
        """True while blocks are queued or being stepped."""
        return bool(self.blocks)

    @property
    def moving(self) -> bool:
        """True while the axes move (running or decelerating into a hold)."""
        return bool(self.blocks) and self.hold != "held"

    def flush(self) -> None:
        """Drop every block where the machine stands now (reset, alarm, jog cancel)."""
        self._rest = self.position()
        self.blocks.clear()
        self.done_mm = 0.0
        self.hold = ""
        self.decel_left_s = 0.0

    def set_position(self, position: tuple[float, float, float]) -> None:
        """Homing or a power-up sets the machine position outright."""
        self.flush()
        self._rest = position

    # -- state -------------------------------------------------------------------------------

    def position(self) -> tuple[float, float, float]:
        """The machine position now (interpolated inside the running block)."""
        if not self.blocks:
            return self._rest
        b = self.blocks[0]
        f = self.done_mm / b.length if b.length else 1.0
        s, e = b.start, b.end
        return (s[0] + (e[0] - s[0]) * f, s[1] + (e[1] - s[1]) * f, s[2] + (e[2] - s[2]) * f)

    def rate(self, block: Move) -> float:
        """mm/min of a block under the current overrides."""
        return block.rate * (self.rapid_ovr if block.rapid else self.feed_ovr) / 100.0

    def current_rate(self) -> float:
        """The feed the `FS:` field reports (half the rate while decelerating)."""
        if not self.moving:
            return 0.0
        rate = self.rate(self.blocks[0])
        return rate / 2 if self.hold == "decel" else rate

    # -- hold and resume ----------------------------------------------------------------------

    def start_hold(self, accel_mm_s2: float) -> None:
        """Feed hold: decelerate (Hold:1), or stop at once when nothing moves (Hold:0)."""
        if self.hold:
            return
        if not self.moving:
            self.hold = "held"
            return
        self.hold = "decel"
        self.decel_left_s = self.rate(self.blocks[0]) / 60.0 / max(accel_mm_s2, 1e-6)

    def resume(self) -> None:
        """Cycle start after a completed hold."""
        if self.hold == "held":
            self.hold = ""

    # -- time ----------------------------------------------------------------------------------

    def seconds_to_next_event(self) -> float:
        """Machine seconds until the running block ends or the deceleration does (inf if idle)."""
        if not self.moving:
            return math.inf
        b = self.blocks[0]
        if self.hold == "decel":
            return self.decel_left_s
        return (b.length - self.done_mm) / (self.rate(b) / 60.0)

    def advance(self, dt: float) -> None:
        """Run the machine for dt machine seconds (inf: until the queue empties or a hold completes)."""
        while dt > 0 and self.moving:
            b = self.blocks[0]
            speed = self.rate(b) / 60.0  # mm/s
            if self.hold == "decel":
                step = min(dt, self.decel_left_s)
                dist = min(speed / 2 * step, b.length - self.done_mm)
                self.decel_left_s -= step
                if self.decel_left_s <= 1e-12:
                    self.hold = "held"
            else:
                step = min(dt, (b.length - self.done_mm) / speed)
                dist = min(speed * step, b.length - self.done_mm)
            dt -= step
            self._progress(b, dist, step)
        if self.hold == "decel" and not self.blocks:
            self.hold = "held"

    def _progress(self, block: Move, dist: float, seconds: float) -> None:
        self.done_mm += dist
        self.tally.motion_s += seconds
        self.tally.distance_mm += dist
        if block.power > 0:
            self.tally.laser_on_s += seconds
            self.tally.laser_distance_mm += dist
        if self.done_mm >= block.length - 1e-9:
            self._rest = block.end
            self.blocks.popleft()
            self.done_mm = 0.0
            if block.probe_alarm:
                self.probe_alarms.append(block.probe_alarm)
