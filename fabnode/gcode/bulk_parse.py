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
division gives the correctly rounded value, bit for bit what `float()` gives. The mantissa comes from
the number's last 16 bytes read as two 64-bit words (eight digits summed by place in three steps each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Line kinds.
BLANK, G0, G1, INERT, M204, G92E, SPECIAL = 0, 1, 2, 3, 4, 5, 9
LETTERS = "XYZEFPRST"  # parameter columns of `Lines.values`
_MOVE_BITS = 0b11111  # X Y Z E F
_M204_BITS = 0b1111 << 5  # P R S T
_E_BIT = 1 << 3
_NUM_WIDTH = 12  # a number's characters after its letter (longer ones: the exact path)

_LETTER_COL = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(LETTERS):
    _LETTER_COL[ord(_c)] = _i
_NUMBERS_AT_ONCE = 4096  # numbers parsed in one step (about 16 arrays of 8 bytes each per number)
_PAD = 16  # zero bytes either side of a chunk: a number's 16-byte window never leaves the array
_U = np.uint64
_POW10 = 10.0 ** np.arange(_PAD)
_POW10_INT = 10 ** np.arange(_PAD, dtype=np.uint64)
_LOW7 = _U(0x7F7F7F7F7F7F7F7F)
_NIBBLES = _U(0x0F0F0F0F0F0F0F0F)


def _live_word(k: int, w: int) -> int:
    """0xFF on each byte of word w (bytes 8w..8w+7 of 16) that lies in the last k bytes."""
    return int.from_bytes(bytes(0xFF if 8 * w + j >= _PAD - k else 0 for j in range(8)), "little")


_LIVE = tuple(np.array([_live_word(k, w) for k in range(_PAD + 1)], dtype=np.uint64) for w in range(2))

IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Lines:
    """One chunk's lines: kind per line, parameter values (NaN: absent), and where each line lies."""

    kind: npt.NDArray[np.int8]
    values: FloatArray  # (lines, len(LETTERS))
    starts: IntArray  # byte offset of each line in the chunk
    ends: IntArray  # offset of its "\n" (or the chunk's end)


def _bytes_equal(x: U64Array, c: int) -> U64Array:
    """0x80 on each byte of the words `x` that equals `c`, 0 elsewhere (exact: no false positives)."""
    y = x ^ _U(c * 0x0101010101010101)
    return ~(((y & _LOW7) + _LOW7) | y | _LOW7)


def _eight_digits(x: U64Array) -> U64Array:
    """Each word's eight bytes (each 0-9, the first in memory the most significant) as one integer."""
    x = (x * _U(10) + (x >> _U(8))) & _U(0x00FF00FF00FF00FF)
    x = (x * _U(100) + (x >> _U(16))) & _U(0x0000FFFF0000FFFF)
    return (x * _U(10000) + (x >> _U(32))) & _U(0xFFFFFFFF)


def _lowest_byte(x: U64Array) -> U64Array:
    """The index of each word's lowest nonzero byte (little-endian: the first in memory)."""
    return np.bitwise_count((x & (~x + _U(1))) - _U(1)) >> _U(3)


def _numbers(padded: npt.NDArray[np.uint8], first: IntArray,
             length: IntArray) -> tuple[FloatArray, BoolArray]:  # fmt: skip
    """The decimals at chunk[first:first+length] (length 1.._NUM_WIDTH; `padded` is the chunk with _PAD
    bytes either side; the caller checked they hold only digits, '.' and '-'), and whether each is plain
    (one point at most, a sign only in front, a digit, at most 9 digits before the point).

    Each number is read as the two 8-byte words that end where it ends (unaligned loads, no copy of the
    chunk), its digits summed by place in integers, the point read as a 0 and then taken out."""
    n = len(first)
    if not n:
        return np.zeros(0), np.zeros(0, dtype=bool)
    words = np.ndarray((len(padded) - 7,), dtype=np.uint64, buffer=padded, strides=(1,))
    end = first + length  # the number's last 16 bytes start at end - 16 in the chunk: end in padded
    ndot = np.zeros(n, dtype=np.uint64)
    nminus = np.zeros(n, dtype=np.uint64)
    point = np.zeros(n, dtype=np.uint64)  # the point's byte in the 16 (when there is one)
    halves = []
    for w in range(2):
        x = words[end + 8 * w]
        live = _LIVE[w][length]
        dot = _bytes_equal(x, 46) & live
        minus = _bytes_equal(x, 45) & live
        ndot += np.bitwise_count(dot)
        nminus += np.bitwise_count(minus)
        point = np.where(dot != 0, _U(8 * w) + _lowest_byte(dot), point)
        digit = live & ~(((dot | minus) >> _U(7)) * _U(0xFF))
        halves.append(_eight_digits(x & digit & _NIBBLES))
    neg = padded[first + _PAD] == 45
    has_dot = ndot > 0
    frac = np.where(has_dot, _U(15) - point, _U(0)).astype(np.intp)
    digits = length - ndot.astype(np.intp) - nminus.astype(np.intp)
    ok = (ndot <= 1) & (nminus == neg) & (digits >= 1) & (digits - frac <= 9)
    # Below 10**12 (12 characters at most): exact as integers and as doubles.
    spread = halves[0] * _U(100_000_000) + halves[1]  # the point read as a 0 digit
    low = spread % _POW10_INT[frac]
    mantissa = np.where(has_dot, (spread - low) // _U(10) + low, spread).astype(np.float64)
    value = mantissa / _POW10[frac]
    return np.where(neg, -value, value), ok


def _first_per_line(line_of: npt.NDArray[np.int32], positions: IntArray, n: int,
                    default: IntArray) -> IntArray:  # fmt: skip
    """For each line, the first of `positions` on it (they are sorted), else `default`."""
    out = default.copy()
    if len(positions):
        lines = line_of[positions]
        first = np.empty(len(lines), dtype=bool)
        first[0] = True
        first[1:] = lines[1:] != lines[:-1]
        out[lines[first]] = positions[first]
    return out


def _table(chars: bytes) -> bytes:
    return bytes(1 if i in chars else 0 for i in range(256))


# What a strict line's code may hold: digits, point, minus, space and the command and parameter letters;
# what a number may hold; what no command line read in bulk may hold (parens, a checksum star, a tab or
# another control byte).
_NOT_STRICT = bytes(1 - c for c in _table(b"0123456789.- GM" + LETTERS.encode()))
_LETTERS = _table(b"GM" + LETTERS.encode())
_INERT_OK = bytes(c for c in range(256) if c == 10 or (32 <= c < 127 and c not in b"()*"))
_INERT_BAD_TABLE = bytes(0 if c in _INERT_OK else 1 for c in range(256))
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
    is_nl = a == 10
    line_of = np.cumsum(is_nl, dtype=np.int32)  # the line of every byte but a "\n"
    nl = np.flatnonzero(is_nl)
    del is_nl  # here and below: each byte-sized temporary goes as soon as it is used (peak memory)
    ends = nl if size and chunk[-1] == 10 else np.append(nl, size)
    n = len(ends)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    # Where the code ends: at the first ';' of the line, then trailing blanks and '\r' dropped.
    code_end = _first_per_line(line_of, np.flatnonzero(a == 59), n, ends)
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
    values = np.full((n, len(LETTERS)), np.nan)
    command = (length > 0) & (length <= max_code_len)
    if not command.any():
        return _not_ascii(chunk, a, line_of, Lines(kind, values, starts, ends))
    if chunk.translate(None, _INERT_OK):  # parens, a checksum, a tab or another control byte somewhere
        bad = np.flatnonzero(np.frombuffer(chunk.translate(_INERT_BAD_TABLE), np.uint8))
        on = line_of[bad]
        command[on[bad < code_end[on]]] = False
    # Per line, over its code: the bytes no strict line holds, and the letters (one per word).
    bounds = np.empty(2 * n, dtype=np.intp)
    bounds[0::2], bounds[1::2] = starts, code_end
    odd, letters = _per_code(chunk, _NOT_STRICT, bounds, max_code_len), _per_code(chunk, _LETTERS, bounds,
                                                                                  max_code_len)  # fmt: skip
    strict = command & (odd == 0)

    # The first word: a command letter and its number, up to the first space.
    spaces = np.flatnonzero(a == 32)
    word_end = np.minimum(_first_per_line(line_of, spaces, n, ends), code_end)
    digits = word_end - starts - 1
    letter = at[np.minimum(starts, size)]
    row = np.where(letter == 71, 0, np.where(letter == 77, 1, np.where(letter == 84, 2, -1)))
    rows = np.flatnonzero(command & (row >= 0) & (digits >= 1) & (digits <= 3))
    number = np.zeros(len(rows), dtype=np.int64)
    all_digits = np.ones(len(rows), dtype=bool)
    for c in range(3):
        d = at[np.minimum(starts[rows] + 1 + c, size)] - np.uint8(48)
        live = digits[rows] > c
        all_digits &= ~live | (d < 10)
        number = np.where(live, number * 10 + d, number)
    rows, number = rows[all_digits], number[all_digits]
    cat = np.full(n, SPECIAL, dtype=np.int8)
    cat[rows] = _categories(category, key, row[rows], number)
    kind[cat == INERT] = INERT

    # Parameter words of strict lines: a space, a letter, a number up to the next space.
    wants = strict & ((cat == G0) | (cat == G1) | (cat == M204) | (cat == G92E))
    on = line_of[spaces]
    keep = wants[on] & (spaces < code_end[on])
    nxt = np.append(spaces[1:], size)
    sp, on, nxt = spaces[keep], on[keep], nxt[keep]
    word_end = np.minimum(nxt, code_end[on])
    col = _LETTER_COL[at[sp + 1]]
    size_of = word_end - sp - 2
    broken = (col < 0) | (size_of < 1) | (size_of > _NUM_WIDTH)
    first = sp + 2
    value, plain = np.empty(len(first)), np.empty(len(first), dtype=bool)
    clipped = np.clip(size_of, 1, _NUM_WIDTH)
    for piece in range(0, len(first), _NUMBERS_AT_ONCE):  # in slices: their temporaries stay small
        cut = slice(piece, piece + _NUMBERS_AT_ONCE)
        value[cut], plain[cut] = _numbers(padded, first[cut], clipped[cut])
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
    values[on[good], col[good]] = value[good]
    move = wants & ((cat == G0) | (cat == G1)) & (bits & ~_MOVE_BITS == 0)
    kind[move] = cat[move]
    accel = wants & (cat == M204) & (bits & ~_M204_BITS == 0) & (bits != 0)
    if accel.any():
        rows = np.flatnonzero(accel)
        given = values[rows, 5:]
        signed = np.signbit(np.where(np.isnan(given), 0.0, given)).any(axis=1)
        kind[rows[~signed]] = M204
    reset = wants & (cat == G92E) & (bits == _E_BIT)
    kind[reset] = G92E
    return _not_ascii(chunk, a, line_of, Lines(kind, values, starts, ends))


def _per_code(chunk: bytes, table: bytes, bounds: npt.NDArray[np.intp], max_code_len: int) -> IntArray:
    """Per line, how many bytes of its code (bounds: start, code end, start, ...) `table` marks; exact
    for every line up to max_code_len long (a byte counter when that is below 256)."""
    marks = np.frombuffer(chunk.translate(table), np.uint8)
    if bounds[-1] >= len(marks):  # the last line ends the chunk without a "\n"
        marks = np.append(marks, np.uint8(0))
    dtype = np.uint8 if max_code_len < 256 else np.int32
    return np.add.reduceat(marks, bounds, dtype=dtype)[0::2].astype(np.int64)


def _not_ascii(chunk: bytes, a: npt.NDArray[np.uint8], line_of: npt.NDArray[np.int32], lines: Lines) -> Lines:
    """Lines holding a NUL or a byte beyond ASCII, comments included: the exact path decodes them."""
    if chunk.isascii() and b"\0" not in chunk:
        return lines
    odd = np.flatnonzero((a >= 128) | (a == 0))
    lines.kind[line_of[odd]] = SPECIAL
    return lines
