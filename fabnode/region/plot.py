"""A bar chart of hours per week per lab, written as a PNG with zlib alone (no matplotlib on a region
server for one picture): an RGB canvas, filled rectangles, a 5x7 pixel font, and the PNG chunks.
"""

from __future__ import annotations

import math
import struct
import zlib
from datetime import date, timedelta
from pathlib import Path

__all__ = ["Canvas", "hours_chart", "png_bytes", "write_hours_chart"]

# 5x7 glyphs, one int per row, bit 4 = leftmost pixel. Lab names are shown in capitals.
_FONT: dict[str, tuple[int, ...]] = {
    " ": (0, 0, 0, 0, 0, 0, 0),
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14), "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14), "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8), "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    "A": (14, 17, 17, 31, 17, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30), "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (28, 18, 17, 17, 17, 18, 28), "E": (31, 16, 16, 30, 16, 16, 31), "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17), "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12), "K": (17, 18, 20, 24, 20, 18, 17), "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17), "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16), "Q": (14, 17, 17, 17, 21, 18, 13), "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4), "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4), "W": (17, 17, 17, 21, 21, 21, 10), "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31),
    "-": (0, 0, 0, 31, 0, 0, 0), "_": (0, 0, 0, 0, 0, 0, 31), ".": (0, 0, 0, 0, 0, 12, 12),
    ":": (0, 12, 12, 0, 12, 12, 0), "/": (0, 1, 2, 4, 8, 16, 0), "?": (14, 17, 1, 2, 4, 0, 4),
    "(": (2, 4, 8, 8, 8, 4, 2), ")": (8, 4, 2, 2, 2, 4, 8), ",": (0, 0, 0, 0, 12, 4, 8),
}  # fmt: skip
_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # fmt: skip
Color = tuple[int, int, int]
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (200, 200, 200)


class Canvas:
    """An RGB picture in memory, white to start with."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        """Fill a rectangle (clipped to the canvas)."""
        x0, y0, x1, y1 = max(0, x), max(0, y), min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        row = bytes(color) * (x1 - x0)
        for yy in range(y0, y1):
            start = (yy * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> int:
        """Draw text with its top-left corner at (x, y); return its width in pixels."""
        for i, char in enumerate(text.upper()):
            for r, bits in enumerate(_FONT.get(char, _FONT["?"])):
                for c in range(5):
                    if bits & (16 >> c):
                        self.rect(x + (i * 6 + c) * scale, y + r * scale, scale, scale, color)
        return text_width(text, scale)


def text_width(text: str, scale: int = 1) -> int:
    """Width in pixels of `text` in the 5x7 font (one blank column between letters)."""
    return max(0, len(text) * 6 - 1) * scale


def png_bytes(canvas: Canvas) -> bytes:
    """The canvas as a PNG file (8-bit RGB, no filter)."""
    stride = canvas.width * 3
    rows = (canvas.pixels[y * stride : (y + 1) * stride] for y in range(canvas.height))
    raw = b"".join(b"\x00" + bytes(row) for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _nice_top(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (the y axis' top)."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * magnitude >= value)


def _every_week(mondays: list[str]) -> list[str]:
    """From the first to the last week, quiet weeks included, so the x axis is time."""
    if not mondays:
        return []
    first, last = date.fromisoformat(mondays[0]), date.fromisoformat(mondays[-1])
    return [(first + timedelta(weeks=n)).isoformat() for n in range((last - first).days // 7 + 1)]


def hours_chart(weeks: dict[str, dict[str, float]], title: str = "hours in use per week per lab") -> Canvas:
    """Grouped bars: one group per week (the week's Monday), one bar per lab, a legend and a y axis."""
    labs = sorted(weeks)
    all_weeks = _every_week(sorted({w for lab in labs for w in weeks[lab]}))
    top = _nice_top(max([h for lab in labs for h in weeks[lab].values()] + [0.0]))
    bar = max(2, min(40, 900 // max(1, len(all_weeks) * (len(labs) + 1))))
    group = bar * len(labs) + max(2, bar)
    left, plot_h, bottom = 60, 280, 40
    legend_h = 14 * ((len(labs) + 3) // 4)
    width = max(420, left + group * max(1, len(all_weeks)) + 20)
    height = 40 + legend_h + plot_h + bottom
    c = Canvas(width, height)
    c.text(left, 10, title, scale=1)
    for i, lab in enumerate(labs):  # the legend, four labs to a line
        x, y = left + (i % 4) * ((width - left) // 4), 28 + 14 * (i // 4)
        c.rect(x, y, 8, 8, _PALETTE[i % len(_PALETTE)])
        c.text(x + 12, y, lab[:24])
    y0 = 40 + legend_h + plot_h  # the x axis
    for k in range(5):  # y grid and labels
        y = y0 - plot_h * k // 4
        c.rect(left, y, width - left - 10, 1, GREY if k else BLACK)
        label = f"{top * k / 4:g}"
        c.text(left - 6 - text_width(label), y - 3, label)
    c.rect(left, y0 - plot_h, 1, plot_h + 1, BLACK)
    every = max(1, (text_width("00-00") + 6) // group + 1)
    for g, week in enumerate(all_weeks):
        x = left + 4 + g * group
        for i, lab in enumerate(labs):
            h = round(weeks[lab].get(week, 0.0) / top * plot_h) if top else 0
            c.rect(x + i * bar, y0 - h, max(1, bar - 1), h, _PALETTE[i % len(_PALETTE)])
        if g % every == 0:
            c.text(x, y0 + 6, week[5:])  # MM-DD of the week's Monday
    if all_weeks:
        c.text(left, y0 + 20, f"weeks from {all_weeks[0]} to {all_weeks[-1]} (utc mondays)")
    else:
        c.text(left, y0 + 20, "no sessions")
    return c


def write_hours_chart(path: Path, weeks: dict[str, dict[str, float]]) -> None:
    """Write the chart of hours per week per lab to `path` as a PNG."""
    Path(path).write_bytes(png_bytes(hours_chart(weeks)))
