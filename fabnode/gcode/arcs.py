"""Arc moves (G2 clockwise, G3 counter-clockwise) in the XY plane: centre, sweep, length, extremes.

Marlin and GRBL accept the centre as an offset from the start (I, J) or as a radius (R; a negative R asks
for the arc longer than half a turn). Start and end at the same point with I/J is a full circle.
"""

from __future__ import annotations

import math
from typing import NamedTuple

_TAU = 2.0 * math.pi


class Arc(NamedTuple):
    """One arc: centre, radius, start angle and signed sweep (radians, positive counter-clockwise)."""

    cx: float
    cy: float
    radius: float
    start_angle: float
    sweep: float

    def length(self, dz: float = 0.0) -> float:
        """Path length in mm, a helix when Z changes along the arc."""
        flat = abs(self.sweep) * self.radius
        return math.hypot(flat, dz) if dz else flat

    def tangent(self, at_end: bool) -> tuple[float, float]:
        """Unit direction of travel at the start or at the end of the arc."""
        angle = self.start_angle + (self.sweep if at_end else 0.0)
        sign = 1.0 if self.sweep >= 0.0 else -1.0
        return (-math.sin(angle) * sign, math.cos(angle) * sign)

    def extremes(self) -> list[tuple[float, float]]:
        """Points where the arc crosses its circle's leftmost/rightmost/lowest/highest points."""
        points: list[tuple[float, float]] = []
        lo = min(self.start_angle, self.start_angle + self.sweep)
        hi = max(self.start_angle, self.start_angle + self.sweep)
        k = math.ceil(lo / (math.pi / 2))
        while k * (math.pi / 2) <= hi and len(points) < 4:
            a = k * (math.pi / 2)
            points.append((self.cx + self.radius * math.cos(a), self.cy + self.radius * math.sin(a)))
            k += 1
        return points


def arc_from_offset(x0: float, y0: float, x1: float, y1: float, i: float, j: float, cw: bool) -> Arc:
    """The arc from (x0, y0) to (x1, y1) about the centre (x0 + i, y0 + j)."""
    cx, cy = x0 + i, y0 + j
    radius = math.hypot(i, j)
    a0 = math.atan2(y0 - cy, x0 - cx)
    a1 = math.atan2(y1 - cy, x1 - cx)
    sweep = a1 - a0
    if cw:
        if sweep >= -1e-9:
            sweep -= _TAU
    elif sweep <= 1e-9:
        sweep += _TAU
    return Arc(cx, cy, radius, a0, sweep)


def arc_from_radius(x0: float, y0: float, x1: float, y1: float, r: float, cw: bool) -> Arc | None:
    """The arc of radius |r| from (x0, y0) to (x1, y1); None when the two points are too far apart."""
    dx, dy = x1 - x0, y1 - y0
    chord = math.hypot(dx, dy)
    if chord == 0.0 or r == 0.0:
        return None
    h_sq = r * r - chord * chord / 4.0
    if h_sq < -1e-6 * r * r:
        return None
    h = math.sqrt(max(h_sq, 0.0)) / chord
    # GRBL's convention: the centre lies left of the chord for CW with positive R, right for CCW.
    sign = -1.0 if cw else 1.0
    if r < 0.0:
        sign = -sign
    cx = x0 + dx / 2.0 - sign * h * dy
    cy = y0 + dy / 2.0 + sign * h * dx
    return arc_from_offset(x0, y0, x1, y1, cx - x0, cy - y0, cw)
