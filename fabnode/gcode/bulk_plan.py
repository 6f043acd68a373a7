"""The planner of fabnode.gcode.estimate run on arrays of moves: the same figures, bit for bit, in bulk.

`block_values` is `Planner.add_move` for many linear moves at once (every step written with the same
operations in the same order, so each double comes out identical). `plan` then runs the planning
windows exactly as the planner does one block at a time: a window of 257 blocks is planned, 193 are
timed and 64 kept, and the next window starts at the first kept block with its entry speed fixed.
All windows are planned side by side (a reverse and a forward pass over the columns of a
windows x 257 table); the one thing a window takes from the one before, its first entry speed, is
applied afterwards, recomputing a window's first blocks in Python only when it changes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fabnode.gcode.estimate import (
    _PREVIOUS_FEEDRATE_THRESHOLD,
    QUEUE_SIZE,
    REFRESH_THRESHOLD,
    RETRACT,
    TRAVEL,
    Planner,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_WINDOW = REFRESH_THRESHOLD + 1  # blocks in a window when it is planned
_STEP = _WINDOW - QUEUE_SIZE  # blocks timed per window
_SCALAR_WINDOWS = 6  # fewer windows than this: the planner's own loop is cheaper than the table
_TIME_WINDOWS = 16  # windows whose blocks are timed in one step
_HEAD = 16  # rows of the reverse pass kept for the windows planned again from a lower start


@dataclass(slots=True)
class Blocks:
    """Planner blocks as arrays, in the order of the planner's own window lists."""

    dist: FloatArray
    accel: FloatArray
    entry: FloatArray
    cruise: FloatArray
    safe: FloatArray
    max_entry: FloatArray
    nominal: BoolArray
    line: npt.NDArray[np.int64]
    laser: BoolArray

    def __len__(self) -> int:
        return len(self.dist)

    def take(self, sl: slice) -> Blocks:
        """The blocks in `sl`."""
        return Blocks(*(getattr(self, f)[sl] for f in _FIELDS))


_FIELDS = ("dist", "accel", "entry", "cruise", "safe", "max_entry", "nominal", "line", "laser")
_DTYPES = {f: np.float64 for f in _FIELDS} | {"nominal": np.bool_, "line": np.int64, "laser": np.bool_}


@dataclass(slots=True)
class Previous:
    """What the next block's junction needs of the last one (the planner's `_prev_*`)."""

    feed: float
    safe: float
    axis: tuple[float, float, float, float]
    queued: bool  # whether any block waits in the window (else the next one starts from rest)


def previous_of(planner: Planner) -> Previous:
    """The planner's own junction state."""
    return Previous(planner._prev_feed, planner._prev_safe, planner._prev_axis, bool(planner._dist))


def raw(values: npt.NDArray[np.generic]) -> memoryview:
    """The bytes of a contiguous array, no copy (what array.frombytes appends)."""
    return values.view(np.uint8).data


def _shifted(first: float, values: FloatArray) -> FloatArray:
    out = np.empty_like(values)
    out[:1] = first
    out[1:] = values[:-1]
    return out


Vector = tuple[FloatArray, FloatArray, FloatArray, FloatArray]


def block_values(planner: Planner, delta: Vector, feed_mm_s: FloatArray, kind: npt.NDArray[np.int8],
                 accels: tuple[FloatArray, FloatArray, FloatArray], line: npt.NDArray[np.int64],
                 laser: BoolArray, prev: Previous) -> tuple[Blocks, Previous]:  # fmt: skip
    """`Planner.add_move` for linear moves (finite feeds); `accels` are (print, travel, retract) per move."""
    dx, dy, dz, de = delta
    sq = dx * dx + dy * dy + dz * dz
    dist = np.where(sq > 0.0, np.sqrt(sq), np.abs(de))
    keep = dist > 0.0
    if not keep.all():
        dx, dy, dz, de, dist = dx[keep], dy[keep], dz[keep], de[keep], dist[keep]
        feed_mm_s, kind, line, laser = feed_mm_s[keep], kind[keep], line[keep], laser[keep]
        accels = (accels[0][keep], accels[1][keep], accels[2][keep])
    lim = planner.limits
    feed = feed_mm_s * planner.feed_multiply
    # Each np.where below runs only where some move needs it (most runs reach no limit): the same values.
    floor = np.where(de == 0.0, lim.min_travel_feed, lim.min_extrude_feed)
    low = feed < floor
    if low.any():
        feed = np.where(low, floor, feed)
    inv = feed / dist
    speeds = [dx * inv, dy * inv, dz * inv, de * inv * planner.extrude_factor]
    factor: FloatArray | None = None  # None: 1.0 for every move (x * 1.0 is x: the same doubles)
    for v, top in zip(speeds, lim.max_feed, strict=True):
        if top > 0.0:
            speed = np.abs(v)
            over = speed > top if factor is None else speed * factor > top
            if over.any():
                kept = 1.0 if factor is None else factor
                factor = np.where(over, top / np.where(speed > 0.0, speed, 1.0), kept)
    slowed = None if factor is None else factor < 1.0
    if factor is not None and slowed is not None and slowed.any():
        axis = [np.where(slowed, v * factor, v) for v in speeds]
        cruise = np.where(slowed, feed * factor, feed)
    else:
        axis, cruise = speeds, feed
    # Acceleration by kind, within each axis' maximum.
    base = np.where(kind == TRAVEL, accels[1], np.where(kind == RETRACT, accels[2], accels[0]))
    ainv = base / dist
    for d, top in zip((dx, dy, dz, de), lim.max_accel, strict=True):
        size = np.abs(d)
        # An axis that does not move passes any limit >= 0 (0 * ainv > top is false, NaN too).
        over = size * ainv > top if top >= 0.0 else (d != 0.0) & (size * ainv > top)
        if over.any():
            ainv = np.where(over, top / np.where(over, size, 1.0), ainv)
    accel = ainv * dist
    # Classic jerk (the profile has no junction deviation when this runs).
    safe = cruise.copy()
    for v, j in zip(axis, lim.jerk, strict=True):
        np.minimum(safe, j, out=safe, where=np.abs(v) > j)  # j where it is lower, as `j < safe` picks
    prev_feed = _shifted(prev.feed, feed)
    prev_safe = _shifted(prev.safe, safe)
    with np.errstate(divide="ignore", invalid="ignore"):
        larger = prev_feed > cruise
        smaller = np.where(larger, cruise / prev_feed, 1.0)
        vmax = np.where(larger, cruise, prev_feed)
        v_factor = _jerk_factor(axis, prev.axis, smaller, lim.jerk)
    if v_factor is not None:
        vmax = vmax * v_factor
    threshold = vmax * 0.99
    vmax = np.where((prev_safe > threshold) & (safe > threshold), safe, vmax)
    at_rest = prev_feed <= _PREVIOUS_FEEDRATE_THRESHOLD
    if len(at_rest) and not prev.queued:
        at_rest[0] = True
    vmax = np.where(at_rest, safe, vmax)
    allowable = np.sqrt(safe * safe + 2.0 * accel * dist)
    blocks = Blocks(dist, accel, np.where(vmax < allowable, vmax, allowable), cruise, safe, vmax,
                    cruise <= allowable, line, laser)  # fmt: skip
    if not len(dist):
        return blocks, prev
    last = (float(axis[0][-1]), float(axis[1][-1]), float(axis[2][-1]), float(axis[3][-1]))
    return blocks, Previous(float(feed[-1]), float(safe[-1]), last, True)


def _jerk_factor(axis: list[FloatArray], prev_axis: Sequence[float], smaller: FloatArray,
                 jerk: Sequence[float]) -> FloatArray | None:  # fmt: skip
    """The planner's `v_factor` per move (None: 1.0 for every move), axis by axis in its order."""
    factor: FloatArray | None = None
    for a in range(4):
        top = jerk[a]
        v_in = axis[a]
        v_out = _shifted(prev_axis[a], v_in)
        at = None
        if a == 2 and top >= 0.0:
            # Z is still between layers: a junction where it is still on both sides has jerk 0 there,
            # within any limit >= 0, so only the others are computed.
            at = np.flatnonzero((v_in != 0.0) | (v_out != 0.0))
            if not len(at):
                continue
            v_in, v_out = v_in[at], v_out[at]
        f = factor if factor is None or at is None else factor[at]
        s = smaller if at is None else smaller[at]
        v_exit = v_out * s if f is None else v_out * (s * f)
        v_entry = v_in if f is None else v_in * f
        # The planner's four branches in two: the speeds' difference where they have the same sign,
        # the larger speed where they point apart (the same doubles either way when one is 0).
        apart = (v_entry < 0.0) != (v_exit < 0.0)
        size = np.abs(v_exit - v_entry)
        if apart.any():
            size = np.where(apart, np.maximum(np.abs(v_exit), np.abs(v_entry)), size)
        over = size > top
        if not over.any():
            continue
        new = np.where(over, top / size if f is None else f * (top / size), 1.0 if f is None else f)
        if at is None:
            factor = new
        else:
            if factor is None:
                factor = np.ones(len(axis[a]))
            factor[at] = new
    return factor


def _queue_lists(planner: Planner) -> tuple[list[float] | list[bool] | list[int], ...]:
    return (planner._dist, planner._accel, planner._entry, planner._cruise, planner._safe, planner._max_entry,
            planner._nominal, planner._line, planner._laser)  # fmt: skip


def _queued(planner: Planner) -> Blocks:
    return Blocks(np.array(planner._dist), np.array(planner._accel), np.array(planner._entry),
                  np.array(planner._cruise), np.array(planner._safe), np.array(planner._max_entry),
                  np.array(planner._nominal, dtype=bool), np.array(planner._line, dtype=np.int64),
                  np.array(planner._laser, dtype=bool))  # fmt: skip


def _set_queue(planner: Planner, blocks: Blocks) -> None:
    planner._dist, planner._accel = blocks.dist.tolist(), blocks.accel.tolist()
    planner._entry, planner._cruise = blocks.entry.tolist(), blocks.cruise.tolist()
    planner._safe, planner._max_entry = blocks.safe.tolist(), blocks.max_entry.tolist()
    planner._nominal, planner._line = blocks.nominal.tolist(), blocks.line.tolist()
    planner._laser = blocks.laser.tolist()


SLACK = REFRESH_THRESHOLD + 1  # room before the pending blocks of a PendingBlocks for the planner's window


class PendingBlocks:
    """Blocks gathered for one `plan` in one preallocated table, with room in front for the planner's
    own window: no list of pieces, no concatenated copy (peak memory)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.count = 0
        self._table = Blocks(*(np.empty(SLACK + capacity, dtype=_DTYPES[f]) for f in _FIELDS))

    def room(self) -> int:
        """How many more blocks fit."""
        return self.capacity - self.count

    def append(self, blocks: Blocks) -> None:
        """Copy `blocks` in behind the others (at most `room()` of them)."""
        at = slice(SLACK + self.count, SLACK + self.count + len(blocks))
        for f in _FIELDS:
            getattr(self._table, f)[at] = getattr(blocks, f)
        self.count += len(blocks)

    def plan(self, planner: Planner, prev: Previous) -> None:
        """`plan` for the blocks gathered; the table is empty afterwards."""
        queued = len(planner._dist)
        front = slice(SLACK - queued, SLACK)
        for f, values in zip(_FIELDS, _queue_lists(planner), strict=True):
            getattr(self._table, f)[front] = values
        blocks = self._table.take(slice(SLACK - queued, SLACK + self.count))
        self.count = 0
        _plan_blocks(planner, blocks, prev)


def plan(planner: Planner, new: list[Blocks], prev: Previous) -> None:
    """Queue the blocks of `new` behind the planner's window, planning and timing every window that fills."""
    if not any(len(b) for b in new):
        return
    parts = [_queued(planner), *new]
    blocks = Blocks(*(np.concatenate([getattr(b, f) for b in parts]) for f in _FIELDS))
    del parts
    _plan_blocks(planner, blocks, prev)


def _plan_blocks(planner: Planner, blocks: Blocks, prev: Previous) -> None:
    total = len(blocks)
    windows = (total - _WINDOW) // _STEP + 1 if total >= _WINDOW else 0
    if windows < _SCALAR_WINDOWS:
        _plan_scalar(planner, blocks, windows)
    else:
        _plan_table(planner, blocks, windows)
    planner._prev_feed, planner._prev_safe, planner._prev_axis = prev.feed, prev.safe, prev.axis


def _plan_scalar(planner: Planner, blocks: Blocks, windows: int) -> None:
    """The planner's own loop: fill to a window, plan it, repeat."""
    _set_queue(planner, blocks.take(slice(0, min(len(blocks), _WINDOW))))
    done = _WINDOW
    for _ in range(windows):
        planner._plan(QUEUE_SIZE)
        more = blocks.take(slice(done, min(len(blocks), done + _STEP)))
        for f in _FIELDS:
            getattr(planner, "_" + f).extend(getattr(more, f).tolist())
        done += _STEP


def _plan_table(planner: Planner, b: Blocks, windows: int) -> None:
    timed = windows * _STEP
    # Row c of a table is block c of every window (a strided view of the block arrays, no copy). A
    # nominal block's reach is infinite: the reverse pass then takes its max_entry and the forward pass
    # leaves the next block alone, as the planner's branches do.
    reach = 2.0 * b.accel * b.dist  # the `2.0 * accel[c] * dist[c]` of the planner's passes
    reach[b.nominal] = np.inf

    def table(values: FloatArray) -> FloatArray:
        return np.lib.stride_tricks.sliding_window_view(values, _WINDOW)[::_STEP][:windows].T

    ahead, max_entry = table(reach), table(b.max_entry)
    entry = np.empty((_WINDOW, windows))
    entry[-1] = b.entry[_WINDOW - 1 :: _STEP][:windows]
    rows = list(entry)
    for c in range(_WINDOW - 2, -1, -1):  # reverse pass, every window at once
        row, nxt = rows[c], rows[c + 1]
        np.multiply(nxt, nxt, out=row)
        row += ahead[c]
        np.sqrt(row, out=row)
        np.minimum(row, max_entry[c], out=row)
    head = entry[:_HEAD].copy()  # the reverse pass's first rows: what a window's replan reads
    new = np.empty(windows)
    lower = np.empty(windows, dtype=bool)
    for i in range(_WINDOW - 1):  # forward pass
        cur, nxt = rows[i], rows[i + 1]
        np.multiply(cur, cur, out=new)
        new += ahead[i]
        np.sqrt(new, out=new)
        np.less(cur, nxt, out=lower)
        np.minimum(new, nxt, out=nxt, where=lower)
    del rows
    # Each window starts where the one before left its first kept block.
    by_window = entry.T
    for j in range(1, windows):
        start = float(entry[_STEP, j - 1])
        if start < head[0, j]:
            _replan_forward(by_window[j], head[:, j], b, j * _STEP, start)
    shape = (windows, _STEP)
    cruise, accel, dist = (b.cruise[:timed].reshape(shape), b.accel[:timed].reshape(shape),
                           b.dist[:timed].reshape(shape))  # fmt: skip
    times = np.empty(shape)
    for w in range(0, windows, _TIME_WINDOWS):  # a few windows at a time: small temporaries
        ws = slice(w, w + _TIME_WINDOWS)
        times[ws] = _trapezoid_times(entry[:_STEP, ws].T, cruise[ws], entry[1 : _STEP + 1, ws].T, accel[ws],
                                     dist[ws])  # fmt: skip
    t = times.reshape(-1)
    lines = b.line[:timed]
    cum = np.cumsum(np.concatenate(([planner.total_s], t)))[1:]
    planner.time_lines.frombytes(raw(lines.astype(np.uint32)))
    planner.time_cum.frombytes(raw(cum))
    planner.total_s = float(cum[-1])
    laser = b.laser[:timed]
    if laser.any():
        lcum = np.cumsum(np.concatenate(([planner.laser_s], t[laser])))[1:]
        planner.laser_lines.frombytes(raw(lines[laser].astype(np.uint32)))
        planner.laser_cum.frombytes(raw(lcum))
        planner.laser_s = float(lcum[-1])
    rest = b.take(slice(timed, None))
    kept = entry[_STEP:, -1]
    rest.entry = rest.entry.copy()
    rest.entry[: len(kept)] = kept
    rest.max_entry = rest.max_entry.copy()
    rest.max_entry[0] = kept[0]
    _set_queue(planner, rest)


def _replan_forward(row: FloatArray, reverse: FloatArray, b: Blocks, at: int, start: float) -> None:
    """One window's forward pass again from a lower first entry, until it meets the first result: within
    a few blocks nearly always, so from the first rows of the reverse pass (`reverse`), kept for that."""
    again, cur = [start], start
    for i in range(len(reverse) - 1):
        nxt = float(reverse[i + 1])
        if not b.nominal[at + i] and cur < nxt:
            new = math.sqrt(cur * cur + 2.0 * float(b.accel[at + i]) * float(b.dist[at + i]))
            if new < nxt:
                nxt = new
        if nxt == row[i + 1]:
            row[: i + 1] = again
            return
        again.append(nxt)
        cur = nxt
    _replan_window(row, b.take(slice(at, at + _WINDOW)), start)


def _replan_window(row: FloatArray, window: Blocks, start: float) -> None:
    """`_replan_forward` over the whole window, its reverse pass recomputed."""
    ahead, nominal = window.max_entry.tolist(), window.nominal.tolist()
    dist, accel = window.dist.tolist(), window.accel.tolist()
    # The reverse pass of this window, as the planner ran it (recomputed: only its values are needed).
    rev = [0.0] * _WINDOW
    rev[-1] = nxt = float(window.entry[-1])
    for c in range(_WINDOW - 2, -1, -1):
        if nominal[c]:
            nxt = ahead[c]
        else:
            nxt = math.sqrt(nxt * nxt + 2.0 * accel[c] * dist[c])
            if nxt > ahead[c]:
                nxt = ahead[c]
        rev[c] = nxt
    row[0] = cur = start
    for i in range(_WINDOW - 1):
        nxt = rev[i + 1]
        if not nominal[i] and cur < nxt:
            new = math.sqrt(cur * cur + 2.0 * accel[i] * dist[i])
            if new < nxt:
                nxt = new
        if nxt == row[i + 1]:
            return
        row[i + 1] = cur = nxt


def _trapezoid_times(entry: FloatArray, cruise: FloatArray, exit_: FloatArray, accel: FloatArray,
                     dist: FloatArray) -> FloatArray:  # fmt: skip
    """fabnode.gcode.estimate._trapezoid_time on arrays, step for step."""
    with np.errstate(divide="ignore", invalid="ignore"):
        two_a = 2.0 * accel
        acc_d = (cruise * cruise - entry * entry) / two_a
        acc_d = np.where(acc_d > 0.0, acc_d, 0.0)
        dec_d = (cruise * cruise - exit_ * exit_) / two_a
        dec_d = np.where(dec_d > 0.0, dec_d, 0.0)
        cruise_d = dist - acc_d - dec_d
        short = cruise_d < 0.0
        meet = (two_a * dist - entry * entry + exit_ * exit_) / (2.0 * two_a)
        meet = np.where(meet < 0.0, 0.0, np.where(meet > dist, dist, meet))
        acc_d = np.where(short, meet, acc_d)
        cruise_d = np.where(short, 0.0, cruise_d)
        peak = np.where(short, np.sqrt(np.maximum(0.0, entry * entry + two_a * meet)), cruise)
        dec_d = dist - acc_d - cruise_d
        t = np.where(peak > entry, (peak - entry) / accel, 0.0)
        t = np.where(peak > 0.0, t + cruise_d / peak, t)
        t = t + (peak - np.sqrt(np.maximum(0.0, peak * peak - two_a * dec_d))) / accel
        flat = np.where(cruise > 0.0, dist / cruise, 0.0)
        return np.where(accel <= 0.0, flat, t)
