"""Plain text tables and CSV for every command that prints rows (node reports and the region's alike)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


def hms(seconds: float | None) -> str:
    """A duration as H:MM:SS."""
    s = round(seconds or 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def cell(value: Any, digits: int = 2) -> str:
    """A table cell: '-' for nothing, floats to `digits` places."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(".", "", 1).replace(":", "").replace("-", "", 1).isdigit()


def write_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as CSV text with a header line; None as an empty field."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue().rstrip("\n")
