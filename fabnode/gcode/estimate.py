"""Print-time estimate: a trapezoidal motion planner with look-ahead, as Marlin and PrusaSlicer model it.

The model follows PrusaSlicer's GCodeProcessor (itself a port of Marlin's planner), so our figure can be
checked against the `; estimated printing time (normal mode)` a slicer writes:

- each move is a block with a nominal (cruise) speed clamped by M203 per-axis maximum feedrates and
  raised to the M205 S/T minimum feedrates, and an acceleration (M204 P print, R retract-only, T travel;
  legacy `M204 S` sets print and travel) clamped by the M201 per-axis maximum accelerations;
- junction speeds come from classic jerk (M205 X/Y/Z/E, per axis) or, when the profile sets
  `junction_deviation_mm`, from junction deviation;
- blocks are planned in a window: once 256 blocks wait, a backward then a forward pass runs over the
  window and all but the newest 64 get their final trapezoid (entry, cruise, exit speeds) and time;
- a dwell (G4) or a full stop (G28, M400, G92 without E) drains the window, so the machine stops there.

The planner knows nothing of G-code text: the scanner (fabnode.gcode.scan) feeds it deltas in mm.
Each block carries the file line it came from, so the time can be looked up per line afterwards.
"""

from __future__ import annotations

import math
from array import array

from fabnode.machine.profile import MachineProfile

QUEUE_SIZE = 64  # blocks kept back for the next window (a firmware's planner buffer)
REFRESH_THRESHOLD = QUEUE_SIZE * 4  # plan a window once this many blocks wait
_PREVIOUS_FEEDRATE_THRESHOLD = 0.0001

_Vec = tuple[float, float, float, float]

# Move kinds, which pick the acceleration (PrusaSlicer's EMoveType, narrowed to what matters here).
PRINT, TRAVEL, RETRACT = 0, 1, 2


class Limits:
    """The machine's motion limits as the file changes them (M201/M203/M204/M205/M220/M221)."""

    __slots__ = (
        "accel",
        "jd",
        "jerk",
        "max_accel",
        "max_feed",
        "min_extrude_feed",
        "min_travel_feed",
        "print_accel",
        "retract_accel",
        "travel_accel",
    )

    def __init__(self, profile: MachineProfile) -> None:
        self.max_feed = list(profile.max_feedrate_mm_s)
        self.max_accel = list(profile.max_accel_mm_s2)
        self.jerk = list(profile.jerk_mm_s)
        self.print_accel = profile.print_accel_mm_s2
        self.retract_accel = profile.retract_accel_mm_s2
        self.travel_accel = profile.travel_accel_mm_s2
        self.min_extrude_feed = 0.0
        self.min_travel_feed = 0.0
        self.jd = profile.junction_deviation_mm or 0.0


def _rapid_feed(lim: Limits, delta: tuple[float, float, float, float], dist: float) -> float:
    """GRBL's G0: as fast as the slowest axis in the move allows."""
    feed = math.inf
    for a in range(4):
        d = abs(delta[a])
        if d > 0.0 and lim.max_feed[a] > 0.0:
            feed = min(feed, lim.max_feed[a] * dist / d)
    return feed if feed != math.inf else 100.0


def _trapezoid_time(entry: float, cruise: float, exit_: float, accel: float, dist: float) -> float:
    """Seconds to run `dist` mm entering at `entry`, cruising at most at `cruise`, leaving at `exit_`."""
    if accel <= 0.0:
        return dist / cruise if cruise > 0.0 else 0.0
    two_a = 2.0 * accel
    acc_d = (cruise * cruise - entry * entry) / two_a
    acc_d = acc_d if acc_d > 0.0 else 0.0
    dec_d = (cruise * cruise - exit_ * exit_) / two_a
    dec_d = dec_d if dec_d > 0.0 else 0.0
    cruise_d = dist - acc_d - dec_d
    if cruise_d < 0.0:
        # Too short to reach cruise: accelerate then brake, meeting at the intersection point.
        acc_d = (two_a * dist - entry * entry + exit_ * exit_) / (2.0 * two_a)
        acc_d = 0.0 if acc_d < 0.0 else (dist if acc_d > dist else acc_d)
        cruise_d = 0.0
        peak = math.sqrt(max(0.0, entry * entry + two_a * acc_d))
    else:
        peak = cruise
    dec_d = dist - acc_d - cruise_d
    t = (peak - entry) / accel if peak > entry else 0.0
    if peak > 0.0:
        t += cruise_d / peak
    t += (peak - math.sqrt(max(0.0, peak * peak - two_a * dec_d))) / accel
    return t


class Planner:
    """Turns moves into blocks, plans junction speeds over a window, and sums the time per file line."""

    def __init__(self, profile: MachineProfile) -> None:
        self.limits = Limits(profile)
        self.feed_multiply = 1.0  # M220
        self.extrude_factor = 1.0  # M221, as PrusaSlicer applies it to the E axis speed
        # The planning window, as parallel lists (cheaper than one object per block in CPython).
        self._dist: list[float] = []
        self._accel: list[float] = []
        self._entry: list[float] = []
        self._cruise: list[float] = []
        self._safe: list[float] = []
        self._max_entry: list[float] = []
        self._nominal: list[bool] = []
        self._line: list[int] = []
        self._laser: list[bool] = []
        # The previous block's state, for the next junction.
        self._prev_feed = 0.0
        self._prev_safe = 0.0
        self._prev_axis = (0.0, 0.0, 0.0, 0.0)
        self._prev_unit = (0.0, 0.0, 0.0, 0.0)
        self.total_s = 0.0
        self.laser_s = 0.0
        # Cumulative figures at the file lines where they grew: (line, seconds so far).
        self.time_lines = array("I")
        self.time_cum = array("d")
        self.laser_lines = array("I")
        self.laser_cum = array("d")

    def add_move(
        self,
        delta: tuple[float, float, float, float],
        feed_mm_s: float,
        kind: int,
        line: int,
        laser_on: bool = False,
        exit_delta: tuple[float, float, float, float] | None = None,
    ) -> None:
        """Queue one move of `delta` (dx, dy, dz, de in mm) at `feed_mm_s`.

        `exit_delta` is the direction the move leaves in, when it differs from the one it starts in
        (an arc is planned as one block entering and leaving along its tangents).
        """
        dx, dy, dz, de = delta
        sq = dx * dx + dy * dy + dz * dz
        dist = math.sqrt(sq) if sq > 0.0 else abs(de)
        if dist <= 0.0:
            return
        lim = self.limits
        feed = feed_mm_s * self.feed_multiply if feed_mm_s != math.inf else _rapid_feed(lim, delta, dist)
        floor = lim.min_travel_feed if de == 0.0 else lim.min_extrude_feed
        if feed < floor:
            feed = floor
        axis, cruise = self._axis_speeds(delta, feed, dist)
        accel = self._acceleration(delta, kind, dist)
        if exit_delta is not None:
            # Leave along the exit tangent: the next junction sees this direction.
            ex, ey, ez, _ = exit_delta
            n = math.sqrt(ex * ex + ey * ey + ez * ez) or 1.0
            s = cruise / n
            exit_axis = (ex * s, ey * s, ez * s, axis[3])
        else:
            exit_axis = axis
        if lim.jd > 0.0:
            safe, vmax = self._junction_deviation(axis, cruise, accel)
        else:
            safe, vmax = self._jerk_junction(axis, feed, cruise)
        allowable = math.sqrt(safe * safe + 2.0 * accel * dist)
        self._dist.append(dist)
        self._accel.append(accel)
        self._entry.append(vmax if vmax < allowable else allowable)
        self._cruise.append(cruise)
        self._safe.append(safe)
        self._max_entry.append(vmax)
        self._nominal.append(cruise <= allowable)
        self._line.append(line)
        self._laser.append(laser_on)
        self._prev_feed = feed
        self._prev_safe = safe
        self._prev_axis = exit_axis
        if len(self._dist) > REFRESH_THRESHOLD:
            self._plan(QUEUE_SIZE)

    def _axis_speeds(self, delta: _Vec, feed: float, dist: float) -> tuple[_Vec, float]:
        """Per-axis speeds and the cruise speed, scaled down so no axis passes its M203 maximum."""
        inv = feed / dist
        vx, vy, vz = delta[0] * inv, delta[1] * inv, delta[2] * inv
        ve = delta[3] * inv * self.extrude_factor
        mx, my, mz, me = self.limits.max_feed
        factor = 1.0
        # A maximum of 0 means no limit, as in the slicer.
        if abs(vx) * factor > mx > 0.0:
            factor = mx / abs(vx)
        if abs(vy) * factor > my > 0.0:
            factor = my / abs(vy)
        if abs(vz) * factor > mz > 0.0:
            factor = mz / abs(vz)
        if abs(ve) * factor > me > 0.0:
            factor = me / abs(ve)
        if factor < 1.0:
            return (vx * factor, vy * factor, vz * factor, ve * factor), feed * factor
        return (vx, vy, vz, ve), feed

    def _acceleration(self, delta: _Vec, kind: int, dist: float) -> float:
        """The commanded acceleration for this kind of move, within each axis' M201 maximum."""
        lim = self.limits
        accel = (
            lim.travel_accel
            if kind == TRAVEL
            else (lim.retract_accel if kind == RETRACT else lim.print_accel)
        )
        inv = accel / dist
        for d, limit in zip(delta, lim.max_accel, strict=True):
            # accel * |d| / dist > limit, written without a division on the common path
            if d != 0.0 and abs(d) * inv > limit:
                inv = limit / abs(d)
        return inv * dist

    def _jerk_junction(self, axis: _Vec, feed: float, cruise: float) -> tuple[float, float]:
        """Classic jerk: the safe start/stop speed and the highest speed at the junction."""
        jerk = self.limits.jerk
        safe = cruise
        for v, j in zip(axis, jerk, strict=True):
            if abs(v) > j and j < safe:
                safe = j
        prev_feed = self._prev_feed
        if not self._dist or prev_feed <= _PREVIOUS_FEEDRATE_THRESHOLD:
            return safe, safe
        prev_larger = prev_feed > cruise
        smaller = cruise / prev_feed if prev_larger else 1.0
        vmax = cruise if prev_larger else prev_feed
        v_factor = 1.0
        for v_exit, v_entry, j_max in zip(self._prev_axis, axis, jerk, strict=True):
            v_exit *= smaller * v_factor
            v_entry *= v_factor
            if v_exit > v_entry:
                j = (v_exit - v_entry) if (v_entry > 0.0 or v_exit < 0.0) else max(v_exit, -v_entry)
            else:
                j = (v_entry - v_exit) if (v_entry < 0.0 or v_exit > 0.0) else max(-v_exit, v_entry)
            if j > j_max:
                v_factor *= j_max / j
        vmax *= v_factor
        threshold = vmax * 0.99
        # Not coasting: the machine stops and starts anyway, so start this block from its safe speed.
        if self._prev_safe > threshold and safe > threshold:
            vmax = safe
        return safe, vmax

    def _junction_deviation(self, axis: _Vec, cruise: float, accel: float) -> tuple[float, float]:
        """Junction deviation (GRBL, Marlin with JD): start and stop from rest, corners by angle."""
        norm = math.sqrt(sum(v * v for v in axis)) or 1.0
        unit = (axis[0] / norm, axis[1] / norm, axis[2] / norm, axis[3] / norm)
        prev_unit, self._prev_unit = self._prev_unit, unit
        if not self._dist or self._prev_feed <= _PREVIOUS_FEEDRATE_THRESHOLD:
            return 0.0, 0.0
        cos_theta = -sum(p * u for p, u in zip(prev_unit, unit, strict=True))
        if cos_theta > 0.999999:  # a full reversal: stop
            return 0.0, 0.0
        cos_theta = max(cos_theta, -0.999999)
        sin_half = math.sqrt(0.5 * (1.0 - cos_theta))
        vmax = math.sqrt(accel * self.limits.jd * sin_half / (1.0 - sin_half))
        return 0.0, min(vmax, cruise, self._cruise[-1])

    def dwell(self, seconds: float, line: int) -> None:
        """G4: the machine finishes its moves, then waits."""
        self.sync()
        if seconds > 0.0:
            self.total_s += seconds
            self.time_lines.append(line)
            self.time_cum.append(self.total_s)

    def sync(self) -> None:
        """Drain the window: every queued block gets its time, the last one ends at its safe speed."""
        if self._dist:
            self._plan(0)
        self._prev_feed = 0.0

    def _plan(self, keep: int) -> None:
        """Backward and forward passes over the window, then finalise all but the newest `keep` blocks."""
        dist, accel, entry = self._dist, self._accel, self._entry
        max_entry, nominal = self._max_entry, self._nominal
        n = len(dist)
        for i in range(n - 1, 0, -1):  # reverse pass: can each block still brake for the next one?
            c = i - 1
            if nominal[c]:
                new = max_entry[c]
            else:
                new = math.sqrt(entry[i] * entry[i] + 2.0 * accel[c] * dist[c])
                if new > max_entry[c]:
                    new = max_entry[c]
            entry[c] = new
        for i in range(n - 1):  # forward pass: can each block reach its entry speed from the last one?
            if not nominal[i] and entry[i] < entry[i + 1]:
                new = math.sqrt(entry[i] * entry[i] + 2.0 * accel[i] * dist[i])
                if new < entry[i + 1]:
                    entry[i + 1] = new
        self._emit(n - keep, keep)

    def _emit(self, count: int, keep: int) -> None:
        """Add the time of the first `count` blocks to the totals and drop them from the window."""
        dist, accel, entry, cruise = self._dist, self._accel, self._entry, self._cruise
        lines, laser = self._line, self._laser
        n = len(dist)
        total, laser_s = self.total_s, self.laser_s
        t_lines, t_cum, l_lines, l_cum = self.time_lines, self.time_cum, self.laser_lines, self.laser_cum
        for i in range(count):
            exit_ = entry[i + 1] if i + 1 < n else self._safe[i]
            t = _trapezoid_time(entry[i], cruise[i], exit_, accel[i], dist[i])
            total += t
            t_lines.append(lines[i])
            t_cum.append(total)
            if laser[i]:
                laser_s += t
                l_lines.append(lines[i])
                l_cum.append(laser_s)
        self.total_s, self.laser_s = total, laser_s
        for seq in (dist, accel, entry, cruise, self._safe, self._max_entry, self._nominal, lines, laser):
            del seq[:count]
        if keep and dist:
            # The blocks already timed left at this speed: the new first block must keep it.
            self._max_entry[0] = entry[0]
