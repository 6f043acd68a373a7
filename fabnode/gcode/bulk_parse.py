"""A chunk of G-code bytes read in bulk: each line classified, the numbers of the common lines parsed in C.

The scanner's exact path (fabnode.gcode.scan) costs microseconds a line in Python; this module reads a
whole chunk with numpy instead and recognises only lines it can read exactly as that path does:
- moves `G0`/`G1` whose words are X, Y, Z, E, F, each once, each a plain decimal (`-?digits.digits`,
  at most 15 digits, at most 9 before the point), separated by single spaces, as slicers write them;
- `M204` with P, R, S, T (acceleration), `G92 E<n>` (extruder reset);
- comments and blank lines; commands that change nothing the analysis follows (`M106 S255`, `M73 P3`,
  `M486 S1`: no handler, not forbidden).
Anything else (`M 500`, `m502`, `G1X10`, `X1e5`, `nan`, a tab, a checksum, a paren comment, a long
line...) is marked SPECIAL and read by the exact path, line by line, so every check of it still fires.
A number is parsed as its integer mantissa over a power of ten: both exact in a double, so the one
division gives the correctly rounded value, bit for bit what `float()` gives. The mantissa is read
from the number's bytes as 64-bit words by fabnode.gcode.bulk_numbers (one word for the usual number
of up to 8 characters, two for longer ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fabnode.gcode import bulk_numbers as bn

# Line kinds.
BLANK, G0, G1, INERT, M204, G92E, SPECIAL = 0, 1, 2, 3, 4, 5, 9
LETTERS = "XYZEFPRST"  # parameter columns of `Lines.values`
_MOVE_BITS = 0b11111  # X Y Z E F
_M204_BITS = 0b1111 << 5  # P R S T
_E_BIT = 1 << 3
_NUM_WIDTH = bn.WIDTH  # a number's characters after its letter (longer ones: the exact path)

_LETTER_COL = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(LETTERS):
    _LETTER_COL[ord(_c)] = _i
_PAD = bn.PAD

IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Lines:
    """One chunk's lines: kind per line, parameter values (NaN: absent), and where each line lies."""

    kind: npt.NDArray[np.int8]
    values: FloatArray  # (len(LETTERS), lines): one row per letter
    starts: IntArray  # byte offset of each line in the chunk
    ends: IntArray  # offset of its "\n" (or the chunk's end)


def _first_per_line(lines: IntArray, positions: IntArray, default: IntArray) -> IntArray:
    """For each line, the first of `positions` on it (sorted; `lines` says whose each is), else `default`."""
    out = default.copy()
    if len(positions):
        first = np.empty(len(lines), dtype=bool)
        first[0] = True
        np.not_equal(lines[1:], lines[:-1], out=first[1:])
        out[lines[first]] = positions[first]
    return out


def _table(chars: bytes) -> bytes:
    return bytes(1 if i in chars else 0 for i in range(256))


# What a strict line's code may hold: digits, point, minus, space and the command and parameter letters;
# what a number may hold; what no command line read in bulk may hold (parens, a checksum star, a tab or
# another control byte).
# One mark per byte for both: a letter counts 1, a byte no strict line holds 128 (see _per_code).
_STRICT_LETTERS, _STRICT_OTHERS = _table(b"GM" + LETTERS.encode()), _table(b"0123456789.- ")
_CODE_MARKS = bytes(1 if c else 128 * (1 - s) for c, s in zip(_STRICT_LETTERS, _STRICT_OTHERS, strict=True))
_INERT_OK = bytes(c for c in range(256) if c == 10 or (32 <= c < 127 and c not in b"()*"))
_INERT_BAD_TABLE = bytes(0 if c in _INERT_OK else 1 for c in range(256))
_ROW_OF = np.full(256, -1, dtype=np.int8)  # a command letter's row in a category table
_ROW_OF[[ord("G"), ord("M"), ord("T")]] = 0, 1, 2
_U32 = np.uint32
_DIGIT_BYTES = np.array([(1 << 8 * k) - 1 for k in range(4)], dtype=np.uint32)  # k digits' bytes
_DIGIT_HIGH = _DIGIT_BYTES & _U32(0x303030)  # their high nibbles when all are digits
_ALIGN = np.array([8 * (3 - k) for k in range(4)], dtype=np.uint32)  # k digits moved to the top
_CATEGORY_CACHE: dict[object, npt.NDArray[np.int8]] = {}


def _categories(category: Callable[[str], int], key: object, rows: IntArray,
                numbers: IntArray) -> npt.NDArray[np.int8]:  # fmt: skip
    """category() of each command (row 0 G, 1 M, 2 T; number < 1000), from a table kept per key and
    filled as commands first appear."""
    table = _CATEGORY_CACHE.get(key)
    if table is None:
        table = _CATEGORY_CACHE[key] = np.full((3, 1000), -1, dtype=np.int8)
    found = table[rows, numbers]
    unknown = found < 0
    if unknown.any():
        for r, number in set(zip(rows[unknown].tolist(), numbers[unknown].tolist(), strict=True)):
            table[r, number] = category(f"{'GMT'[r]}{number}")
        found = table[rows, numbers]
    return found


def read_chunk(chunk: bytes, max_code_len: int, category: Callable[[str], int], key: object) -> Lines:
    """Classify and parse the lines of `chunk`; `category(cmd)` says what a command
    such as "M106" is to the scanner (G0, G1, M204, G92E, INERT or SPECIAL), the same for every `key`."""
    a = np.frombuffer(chunk, dtype=np.uint8)
    size = len(a)
    # The bytes that shape a line ("\n", ";", " ") in one pass, each with the line it is on: the
    # newlines before it, counted over these few positions rather than over every byte.
    event = np.flatnonzero((a == 10) | (a == 32) | (a == 59))
    byte = a[event]
    is_nl = byte == 10
    line_of = np.cumsum(is_nl, dtype=np.int64)  # right for every event but a "\n"
    nl = event[is_nl]
    ends = nl if size and chunk[-1] == 10 else np.append(nl, size)
    n = len(ends)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    # Where the code ends: at the first ';' of the line, then trailing blanks and '\r' dropped.
    semi = byte == 59
    code_end = _first_per_line(line_of[semi], event[semi], ends)
    is_space = byte == 32
    spaces, space_line = event[is_space], line_of[is_space]
    del event, byte, is_nl, line_of, semi, is_space
    padded = np.zeros(size + 2 * _PAD, dtype=np.uint8)
    padded[_PAD : _PAD + size] = a
    padded[_PAD + size] = 10
    at = padded[_PAD:]  # at[i] is a[i], and a "\n" at size
    for _ in range(8):
        tail = at[code_end - 1]
        blank = (code_end > starts) & ((tail == 32) | (tail == 13) | (tail == 9))
        if not blank.any():
            break
        code_end[blank] -= 1
    length = code_end - starts
    kind = np.full(n, SPECIAL, dtype=np.int8)
    kind[length == 0] = BLANK
    values = np.full((len(LETTERS), n), np.nan)
    command = (length > 0) & (length <= max_code_len)
    if not command.any():
        return _not_ascii(chunk, a, nl, Lines(kind, values, starts, ends))
    if chunk.translate(None, _INERT_OK):  # parens, a checksum, a tab or another control byte somewhere
        bad = np.flatnonzero(np.frombuffer(chunk.translate(_INERT_BAD_TABLE), np.uint8))
        on = np.searchsorted(nl, bad)
        command[on[bad < code_end[on]]] = False
    # Per line, over its code: the letters (one per word), unless it holds a byte no strict line holds.
    bounds = np.empty(2 * n, dtype=np.intp)
    bounds[0::2], bounds[1::2] = starts, code_end
    letters, strict = _per_code(chunk, bounds, max_code_len)
    strict &= command

    # The first word: a command letter and its number, up to the first space (at most 3 digits: the
    # letter and the digits read as one 32-bit word per line, the first in memory the lowest byte).
    word_end = np.minimum(_first_per_line(space_line, spaces, ends), code_end)
    digits = word_end - starts - 1
    head = np.ndarray((len(padded) - 3,), dtype=np.uint32, buffer=padded, strides=(1,))[starts + _PAD]
    row = _ROW_OF[head & _U32(0xFF)]
    rows = np.flatnonzero(command & (row >= 0) & (digits >= 1) & (digits <= 3))
    k = digits[rows]
    d = (head[rows] >> _U32(8)) & _DIGIT_BYTES[k]  # the digits' bytes, 0 past them
    nib = d & _U32(0x0F0F0F)
    all_digits = ((d ^ nib) == _DIGIT_HIGH[k]) & ((nib + _U32(0x060606)) & _U32(0x101010) == 0)
    u = nib << _ALIGN[k]  # hundreds, tens, ones
    number = (u & _U32(0xFF)) * _U32(100) + ((u >> _U32(8)) & _U32(0xFF)) * _U32(10) + (u >> _U32(16))
    rows, number = rows[all_digits], number[all_digits].astype(np.int64)
    cat = np.full(n, SPECIAL, dtype=np.int8)
    cat[rows] = _categories(category, key, row[rows], number)
    kind[cat == INERT] = INERT

    # Parameter words of strict lines: a space, a letter, a number up to the next space.
    wants = strict & ((cat == G0) | (cat == G1) | (cat == M204) | (cat == G92E))
    on = space_line
    keep = wants[on] & (spaces < code_end[on])
    nxt = np.append(spaces[1:], size)
    sp, on, nxt = spaces[keep], on[keep], nxt[keep]
    word_end = np.minimum(nxt, code_end[on])
    col = _LETTER_COL[at[sp + 1]]
    size_of = word_end - sp - 2
    broken = (col < 0) | (size_of < 1) | (size_of > _NUM_WIDTH)
    first = sp + 2
    value, plain = bn.numbers(padded, first, np.minimum(np.maximum(size_of, 1), _NUM_WIDTH))
    broken |= ~plain
    # A letter twice on one line: the exact path decides which one counts.
    bit = np.where(col >= 0, 1 << np.maximum(col, 0), 0)
    bits = np.bincount(on, weights=bit, minlength=n).astype(np.int64)
    ones = np.bincount(on, minlength=n)
    twice = np.bitwise_count(bits.astype(np.uint64)) != ones
    wants[on[broken]] = False
    # Each word starts with its letter; one more letter on the line is inside a number (`X1E5`).
    wants &= ~twice & (letters == ones + 1)
    good = ~broken
    flat = values.reshape(-1)  # a view: one index per word, letter by letter
    if good.all():
        flat[col * n + on] = value
    else:
        flat[col[good] * n + on[good]] = value[good]
    move = wants & ((cat == G0) | (cat == G1)) & (bits & ~_MOVE_BITS == 0)
    kind[move] = cat[move]
    accel = wants & (cat == M204) & (bits & ~_M204_BITS == 0) & (bits != 0)
    if accel.any():
        rows = np.flatnonzero(accel)
        given = values[5:, rows]
        signed = np.signbit(np.where(np.isnan(given), 0.0, given)).any(axis=0)
        kind[rows[~signed]] = M204
    reset = wants & (cat == G92E) & (bits == _E_BIT)
    kind[reset] = G92E
    return _not_ascii(chunk, a, nl, Lines(kind, values, starts, ends))


def _per_code(chunk: bytes, bounds: npt.NDArray[np.intp], max_code_len: int) -> tuple[IntArray, BoolArray]:
    """Per line, over its code (bounds: start, code end, start, ...): how many letters, and whether it
    holds no byte a strict line cannot (exact for every line up to max_code_len long: its sum of marks
    is below 128 exactly then, and is then its count of letters)."""
    marks = np.frombuffer(chunk.translate(_CODE_MARKS), np.uint8)
    if bounds[-1] >= len(marks):  # the last line ends the chunk without a "\n"
        marks = np.append(marks, np.uint8(0))
    dtype = np.uint16 if max_code_len < 512 else np.int64
    sums = np.add.reduceat(marks, bounds, dtype=dtype)[0::2]
    return sums.astype(np.int64), sums < 128


def _not_ascii(chunk: bytes, a: npt.NDArray[np.uint8], nl: IntArray, lines: Lines) -> Lines:
    """Lines holding a NUL or a byte beyond ASCII, comments included: the exact path decodes them."""
    if chunk.isascii() and b"\0" not in chunk:
        return lines
    odd = np.flatnonzero((a >= 128) | (a == 0))
    lines.kind[np.searchsorted(nl, odd)] = SPECIAL
    return lines
