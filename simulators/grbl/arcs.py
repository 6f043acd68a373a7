"""Arc geometry as GRBL 1.1 computes it (gcode.c's radius form, mc_arc's chords), for the simulator."""

from __future__ import annotations

import math

from simulators.grbl import codes as C

_ARC_EPS = 5e-7


class ArcError(Exception):
    """An arc GRBL refuses; `code` is its error:N (33 or 34)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def radius_arc_offsets(x: float, y: float, r: float, clockwise: bool) -> tuple[float, float, float]:
    """Centre offsets of an R-form arc (GRBL's h_x2_div_d construction); errors 33 and 34."""
    if x == 0 and y == 0:
        raise ArcError(C.E_INVALID_TARGET)
    h_x2_div_d = 4.0 * r * r - x * x - y * y
    if h_x2_div_d < 0:
        raise ArcError(C.E_ARC_RADIUS_ERROR)
    h_x2_div_d = -math.sqrt(h_x2_div_d) / math.hypot(x, y)
    if not clockwise:
        h_x2_div_d = -h_x2_div_d
    if r < 0:
        h_x2_div_d, r = -h_x2_div_d, -r
    return 0.5 * (x - y * h_x2_div_d), 0.5 * (y + x * h_x2_div_d), r


def arc_angle(rx: float, ry: float, tx: float, ty: float, clockwise: bool) -> float:
    """Signed angular travel from (rx, ry) to (tx, ty) around the centre; a full circle when they meet."""
    angle = math.atan2(rx * ty - ry * tx, rx * tx + ry * ty)
    if clockwise:
        if angle >= -_ARC_EPS:
            angle -= 2 * math.pi
    elif angle <= _ARC_EPS:
        angle += 2 * math.pi
    return angle


def chord_points(start, target, center, radius, angle, plane, tolerance) -> list[list[float]]:
    """The chords' end points (the last is the target): segments as mc_arc counts them from $12."""
    a0, a1, lin = plane
    mm_of_arc = abs(0.5 * angle * radius)
    segments = int(mm_of_arc / math.sqrt(tolerance * (2 * radius - tolerance))) if radius > tolerance else 0
    segments = max(segments, 1)
    theta0 = math.atan2(start[a1] - center[1], start[a0] - center[0])
    points: list[list[float]] = []
    for k in range(1, segments):
        theta = theta0 + angle * k / segments
        point = list(start)
        point[a0] = center[0] + radius * math.cos(theta)
        point[a1] = center[1] + radius * math.sin(theta)
        point[lin] = start[lin] + (target[lin] - start[lin]) * k / segments
        points.append(point)
    points.append(list(target))
    return points
