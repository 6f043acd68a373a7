"""The scanner fed whole chunks of bytes: common lines in bulk (numpy), every other line on the exact path.

`BulkScanner` is a fabnode.gcode.scan.Scanner (same state, same figures) with `feed_chunk(bytes)`. Each
chunk is classified by fabnode.gcode.bulk_parse; the runs of moves, comments, `M204`, `G92 E` and
inert commands between two other lines are applied with array operations in file order (modal
feed and positions forward-filled, extrusion and distances summed in sequence, the box and volume
checked at the first offending line), their planner blocks computed and planned by
fabnode.gcode.bulk_plan; any other line goes through `Scanner.feed_lines`, exactly as before. A line
that is not plain ASCII (or holds a NUL) is read by the exact path; a profile the bulk path does not
model (GRBL, junction deviation) is read entirely by it. Memory: one piece's arrays (CHUNK_BYTES, its runs
applied RUN_LINES at a time) and one preallocated table of FLUSH_BLOCKS planner blocks; the per-line
series can be handed out as they grow (Scanner.take_series).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from fabnode.gcode import bulk_parse as bp
from fabnode.gcode.bulk_plan import PendingBlocks, Previous, block_values, plan, previous_of, raw
from fabnode.gcode.estimate import PRINT, RETRACT, TRAVEL
from fabnode.gcode.scan import Scanner
from fabnode.machine.profile import GRBL, MachineProfile

__all__ = ["CHUNK_BYTES", "BulkScanner", "chunks_of"]

# 64 KiB: the arrays of one piece stay within about 1.5 MB (larger pieces read little faster since the
# runs and numbers go in slices, and cost about 20 bytes of peak memory per byte).
CHUNK_BYTES = 1 << 16
RUN_LINES = 4096  # lines of a run applied in one step
FLUSH_BLOCKS = 1 << 14  # planner blocks gathered before their windows are planned in one table (~0.9 MB)
# Lines of the exact path that leave the planner's window alone: pending blocks may stay pending.
_PLANNER_FREE = frozenset({"M82", "M83", "G90", "G21", "G20", "M104", "M140", "M201", "M203", "M204",
                           "M205", "M220", "M221", "M3", "M4", "M5"})  # fmt: skip
FloatArray = npt.NDArray[np.float64]


def chunks_of(data: bytes, start: int = 0, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """`data[start:]` in pieces of about `size` bytes, each cut after a "\\n" (a line never spans two)."""
    total = len(data)
    while start < total:
        cut = data.find(b"\n", min(start + size, total) - 1)
        stop = total if cut < 0 else cut + 1
        yield data[start:stop]
        start = stop


BOM = b"\xef\xbb\xbf"  # a byte-order mark some editors write: not part of the first line


def line_chunks(blocks: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The blocks cut after a "\n" into pieces of about `size` bytes (a line never spans two; the line
    a block boundary cuts is joined, the file's tail comes last), each block read once, with no copy
    of it whole (peak memory)."""
    carry = b""
    for block in blocks:
        cut = block.rfind(b"\n") + 1
        if not cut:
            carry += block
            continue
        pos = 0
        while pos < cut:
            stop = block.find(b"\n", max(min(pos + size - len(carry), cut) - 1, pos)) + 1
            if carry:
                yield carry + block[pos:stop]
                carry = b""
            else:
                yield block[pos:stop]
            pos = stop
        carry = block[cut:]
    if carry:
        yield carry


def bulk_profile(profile: MachineProfile) -> bool:
    """Whether the bulk path models this machine (Marlin with classic jerk); else all goes the exact way."""
    return profile.firmware != GRBL and not profile.junction_deviation_mm


def _ffill(values: FloatArray, present: npt.NDArray[np.bool_], first: float) -> FloatArray:
    """Each entry: the last present value at or before it, else `first`."""
    if present.all():
        return values
    at = np.where(present, np.arange(len(values)), -1)
    np.maximum.accumulate(at, out=at)
    return np.where(at >= 0, values[np.maximum(at, 0)], first)


def _steps(values: FloatArray, first: float) -> FloatArray:
    """Each value less the one before it (`first` before the first), as np.diff with prepend."""
    out = np.empty_like(values)
    out[:1] = values[:1] - first
    np.subtract(values[1:], values[:-1], out=out[1:])
    return out


class BulkScanner(Scanner):
    """A Scanner that also reads chunks of bytes in bulk (`feed_chunk`), with the same figures."""

    def __init__(self, profile: MachineProfile) -> None:
        super().__init__(profile)
        self.bulk = bulk_profile(profile)
        self._category_key = (self.profile.forbidden_commands, frozenset(self._handlers))
        self._pending: PendingBlocks | None = None  # allocated at the first move read in bulk
        self._prev: Previous | None = None  # the junction state while blocks are pending
        self._chunk = b""

    # --- entry points ---------------------------------------------------------------------------

    def feed_chunk(self, chunk: bytes) -> None:
        """Read the next lines of the file: `chunk` ends at a "\\n" (or at the file's end)."""
        if not chunk:
            return
        if not self.bulk:
            self._exact(chunk.decode("utf-8", errors="replace"))
            return
        if len(chunk) > CHUNK_BYTES:  # a caller's larger block: in pieces, so the arrays stay small
            for piece in chunks_of(chunk, 0, CHUNK_BYTES):
                self._feed_piece(piece)
            return
        self._feed_piece(chunk)

    def _feed_piece(self, chunk: bytes) -> None:
        self._chunk = chunk
        lines = bp.read_chunk(chunk, self.preflight.max_code_len, self._category_of, self._category_key)
        kind = lines.kind
        special = np.flatnonzero(kind == bp.SPECIAL).tolist()
        first = self.lines + 1
        lo = 0
        for s in [*special, len(kind)]:
            for at in range(lo, s, RUN_LINES):  # a long run in pieces: the arrays of one stay small
                self._run(lines, at, min(at + RUN_LINES, s), first)
            if s < len(kind):
                raw = chunk[lines.starts[s] : lines.ends[s] + 1].decode("utf-8", errors="replace")
                self.lines = first + s - 1
                self._exact_line(raw)
            lo = s + 1
        self.lines = first + len(kind) - 1
        self._chunk = b""

    def feed_lines(self, lines: Iterable[str]) -> None:
        """As Scanner.feed_lines (blocks queued in bulk are planned first)."""
        self.flush()
        super().feed_lines(lines)

    def finish(self) -> None:
        """The file ended: plan what is pending, then as Scanner.finish."""
        self.flush()
        super().finish()

    def flush(self) -> None:
        """Plan the blocks gathered in bulk, so the planner's own state is complete."""
        if self._prev is None:
            return
        if self._pending is not None:
            self._pending.plan(self.planner, self._prev)
        self._prev = None

    # --- the exact path -------------------------------------------------------------------------

    def _exact(self, text: str) -> None:
        self.feed_lines(io.StringIO(text))

    def _exact_line(self, raw: str) -> None:
        words = raw.split(";", 1)[0].split(None, 1)
        if not (words and words[0].upper() in _PLANNER_FREE):
            self.flush()
        Scanner.feed_lines(self, (raw,))

    def _category_of(self, cmd: str) -> int:
        if cmd in self.profile.forbidden_commands:
            return bp.SPECIAL
        bulk = {"G0": bp.G0, "G1": bp.G1, "M204": bp.M204, "G92": bp.G92E}.get(cmd)
        if bulk is not None:
            return bulk
        return bp.INERT if cmd not in self._handlers else bp.SPECIAL

    # --- a run of lines read in bulk ------------------------------------------------------------

    def _run(self, lines: bp.Lines, lo: int, hi: int, first: int) -> None:
        kind = lines.kind[lo:hi]
        if (self.rel_xyz or self.planner.limits.jd > 0.0) and np.any((kind == bp.G0) | (kind == bp.G1)):
            # G91, or junction deviation set by M205 J (both rare in sliced files): the exact way.
            self.lines = first + lo - 1
            self._exact(self._chunk[lines.starts[lo] : lines.ends[hi - 1] + 1].decode("utf-8", "replace"))
            return
        numbers = np.arange(first + lo, first + hi, dtype=np.int64)
        command = kind != bp.BLANK
        count = int(np.count_nonzero(command))
        if not count:
            return
        self.commands += count
        self.command_lines.frombytes(raw(numbers[command].astype(np.uint32)))
        vals = lines.values[:, lo:hi]
        sc = self.scale
        lim = self.planner.limits
        # Accelerations as M204 lines set them: where each kind was set, looked up per move below.
        firsts = (lim.print_accel, lim.travel_accel, lim.retract_accel)
        setters: list[tuple[npt.NDArray[np.intp], FloatArray]] = []
        accel_rows = np.flatnonzero(kind == bp.M204)
        if len(accel_rows):
            p, r, s, t = (vals[5 + k, accel_rows] for k in range(4))
            has_s = ~np.isnan(s)  # legacy M204 S sets print and travel (and T retract)
            for new in (np.where(has_s, s, p), np.where(has_s, s, t), np.where(has_s, t, r)):
                present = ~np.isnan(new)
                setters.append((accel_rows[present], new[present]))
            lim.print_accel, lim.travel_accel, lim.retract_accel = (
                float(v[-1]) if len(v) else firsts[k] for k, (_, v) in enumerate(setters)
            )

        def accel_at(k: int, at: npt.NDArray[np.intp]) -> FloatArray:
            """The k-th acceleration (print, travel, retract) in force at run lines `at`."""
            if not setters or not len(setters[k][0]):
                return np.full(len(at), firsts[k])
            rows, values = setters[k]
            i = np.searchsorted(rows, at, side="right") - 1
            return np.where(i >= 0, values[np.maximum(i, 0)], firsts[k])

        resets = kind == bp.G92E
        moves = np.flatnonzero((kind == bp.G0) | (kind == bp.G1))
        if not len(moves):
            if resets.any():
                self.e = float(vals[3, np.flatnonzero(resets)[-1]]) * sc
            return
        mv = [vals[a, moves] for a in range(3)]  # X Y Z of each move
        line = numbers[moves]
        # Feed: modal, set by F > 0.
        f = vals[4, moves]
        fset = f > 0.0
        feed = _ffill(f * sc / 60.0, fset, self.feed)
        self.feed = float(feed[-1])
        # Positions, machine coordinates.
        pos, shift = self.pos, self.shift
        target = [_ffill(shift[a] + mv[a] * sc, ~np.isnan(mv[a]), pos[a]) for a in range(3)]
        delta = [_steps(target[a], pos[a]) for a in range(3)]
        de = self._extrusion(vals, kind, resets, moves, sc)
        dx, dy, dz = delta
        moved = (dx != 0.0) | (dy != 0.0) | (dz != 0.0) | (de != 0.0)
        for a in range(3):
            pos[a] = float(target[a][-1])
        if not moved.all():
            keep = np.flatnonzero(moved)
            dx, dy, dz, de, line, feed = dx[keep], dy[keep], dz[keep], de[keep], line[keep], feed[keep]
            target = [t[keep] for t in target]
            moves = moves[keep]
        if not len(dx):
            return
        self._box(target, line)
        extruding = de != 0.0
        if extruding.any():
            cum = np.cumsum(np.concatenate(([self.filament_mm], de[extruding])))[1:]
            self.filament_lines.frombytes(raw(line[extruding].astype(np.uint32)))
            self.filament_cum.frombytes(raw(cum))
            self.filament_mm = float(cum[-1])
        laser = np.zeros(len(dx), dtype=bool)
        if self.spindle_on and self.power > 0.0:
            laser = kind[moves] == bp.G1
            if laser.any():
                length = np.sqrt(dx[laser] * dx[laser] + dy[laser] * dy[laser] + dz[laser] * dz[laser])
                self.laser_mm = float(np.cumsum(np.concatenate(([self.laser_mm], length)))[-1])
        move_kind = np.where(
            (de > 0.0) & ((dx != 0.0) | (dy != 0.0)),
            PRINT,
            np.where((de != 0.0) & (dx == 0.0) & (dy == 0.0) & (dz == 0.0), RETRACT, TRAVEL),
        )
        prev = self._prev if self._prev is not None else previous_of(self.planner)
        waiting = self._pending is not None and self._pending.count > 0
        prev = Previous(prev.feed, prev.safe, prev.axis, prev.queued or waiting)
        blocks, prev = block_values(self.planner, (dx, dy, dz, de), feed, move_kind.astype(np.int8),
                                    (accel_at(0, moves), accel_at(1, moves), accel_at(2, moves)), line, laser,
                                    prev)  # fmt: skip
        if not len(blocks):
            return
        if self._pending is None:
            self._pending = PendingBlocks(FLUSH_BLOCKS)
        if len(blocks) > self._pending.room():
            self.flush()
        if len(blocks) > self._pending.room():  # more than a table holds: planned at once
            plan(self.planner, [blocks], prev)
            return
        self._pending.append(blocks)
        self._prev = prev
        if not self._pending.room():
            self.flush()

    def _extrusion(self, vals: FloatArray, kind: npt.NDArray[np.int8], resets: npt.NDArray[np.bool_],
                   moves: npt.NDArray[np.intp], sc: float) -> FloatArray:  # fmt: skip
        """Each move's E change (mm), and self.e after the run, as `_target` and `_extrude` make them."""
        e_words = vals[3]
        has_e = ~np.isnan(e_words)
        e_mv = e_words[moves]
        has_mv = has_e[moves]
        events = np.flatnonzero(resets | (has_e & (kind != bp.G92E) & (kind != bp.M204)))
        if self.rel_e:
            de = np.where(has_mv, e_mv * sc, 0.0)
            reset_at = np.flatnonzero(resets)
            base = self.e
            after = moves
            if len(reset_at):
                base = float(vals[3, reset_at[-1]]) * sc
                after = moves[moves > reset_at[-1]]
            since = de[len(moves) - len(after) :]
            if len(events):
                self.e = float(np.cumsum(np.concatenate(([base], since[since != 0.0])))[-1])
            return de
        if not len(events):
            return np.zeros(len(moves))
        # Absolute E: each E word against the position the last E event left (e += x - e is x, checked).
        x = e_words[events] * sc
        before = np.concatenate(([self.e], x[:-1]))
        change = x - before
        is_move = ~resets[events]
        if np.any(is_move & (change != 0.0) & (before + change != x)):
            return self._extrusion_in_order(e_words, resets, moves, sc)
        de = np.zeros(len(moves))
        at = np.searchsorted(moves, events[is_move])
        de[at] = change[is_move]
        self.e = float(x[-1])
        return de

    def _extrusion_in_order(self, e_words: FloatArray, resets: npt.NDArray[np.bool_],
                            moves: npt.NDArray[np.intp], sc: float) -> FloatArray:  # fmt: skip
        """Absolute E one line at a time: where `e + (x - e)` is not exactly x."""
        de = np.zeros(len(moves))
        is_move = np.zeros(len(e_words), dtype=bool)
        is_move[moves] = True
        slot = {int(m): k for k, m in enumerate(moves.tolist())}
        e = self.e
        for i in np.flatnonzero(~np.isnan(e_words)).tolist():
            x = float(e_words[i]) * sc
            if resets[i]:
                e = x
            elif is_move[i]:
                d = x - e
                de[slot[i]] = d
                if d != 0.0:
                    e += d
        self.e = e
        return de

    def _box(self, target: list[FloatArray], line: npt.NDArray[np.int64]) -> None:
        """Grow the box; report the first line beyond the volume per axis and side, in line order."""
        lo, hi = self.bbox_min, self.bbox_max
        found: list[tuple[int, int, int, float]] = []
        vmin, vmax = self.profile.volume_min_mm, self.profile.volume_max_mm
        for a in range(3):
            v = target[a]
            small, large = float(v.min()), float(v.max())
            if small < vmin[a] and (a, 0) not in self.preflight._volume_done:
                k = int(np.argmax(v < vmin[a]))
                found.append((k, a, 0, float(v[k])))
            if large > vmax[a] and (a, 1) not in self.preflight._volume_done:
                k = int(np.argmax(v > vmax[a]))
                found.append((k, a, 1, float(v[k])))
            lo[a] = min(lo[a], small) if not math.isnan(small) else lo[a]
            hi[a] = max(hi[a], large) if not math.isnan(large) else hi[a]
        for k, a, _side, value in sorted(found):
            self.preflight.outside(int(line[k]), a, value)
