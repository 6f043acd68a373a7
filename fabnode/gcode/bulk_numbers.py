"""The decimals of a chunk read in bulk, bit for bit as `float()` reads them (fabnode.gcode.bulk_parse).

A number is its integer mantissa over a power of ten: both exact in a double, so the one division gives
the correctly rounded value. The mantissa comes from the bytes that end where the number ends, read as
64-bit words (unaligned loads, no copy of the chunk), eight digits summed by place in three multiplies.
A number of up to 8 characters (nearly every number a slicer writes) takes one word, its point taken
out by moving the digits after it down one byte; a longer one (up to 12) takes two words.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PAD = 16  # zero bytes either side of a chunk: a number's 16-byte window never leaves the array
WIDTH = 12  # the longest number read here (longer ones: the exact path)
_AT_ONCE = 8192  # numbers parsed in one step (a dozen arrays of 8 bytes each per number)
_U = np.uint64
_POW10 = 10.0 ** np.arange(PAD)
_POW10_INT = 10 ** np.arange(PAD, dtype=np.uint64)
_LOW7 = _U(0x7F7F7F7F7F7F7F7F)
_NIBBLES = _U(0x0F0F0F0F0F0F0F0F)

IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _live_word(k: int, w: int, byte: int = 0xFF) -> int:
    """`byte` on each byte of word w (bytes 8w..8w+7 of 16) that lies in the last k bytes."""
    return int.from_bytes(bytes(byte if 8 * w + j >= PAD - k else 0 for j in range(8)), "little")


_LIVE = tuple(np.array([_live_word(k, w) for k in range(PAD + 1)], dtype=np.uint64) for w in range(2))
_LIVE_ONES = np.array([_live_word(k, 1, 1) for k in range(PAD + 1)], dtype=np.uint64)


def numbers(padded: npt.NDArray[np.uint8], first: IntArray, length: IntArray) -> tuple[FloatArray, BoolArray]:
    """The decimals at chunk[first:first+length] (length 1..WIDTH; `padded` is the chunk with PAD bytes
    either side; the caller checked they hold only digits, '.' and '-', or rejects the line), and whether
    each is plain (one point at most, a sign only in front, a digit, at most 9 digits before the point)."""
    n = len(first)
    value, plain = np.empty(n), np.empty(n, dtype=bool)
    words = np.ndarray((len(padded) - 7,), dtype=np.uint64, buffer=padded, strides=(1,))
    long = length > 8
    if long.any():
        at = np.flatnonzero(long)
        value[at], plain[at] = _long(words, padded, first[at], length[at])
        at = np.flatnonzero(~long)
        first, length = first[at], length[at]
    else:
        at = None
    for piece in range(0, len(first), _AT_ONCE):  # in slices: their temporaries stay small
        cut = slice(piece, piece + _AT_ONCE)
        v, ok = _short(words, padded, first[cut], length[cut])
        if at is None:
            value[cut], plain[cut] = v, ok
        else:
            value[at[cut]], plain[at[cut]] = v, ok
    return value, plain


def _short(words: U64Array, padded: npt.NDArray[np.uint8], first: IntArray,
           length: IntArray) -> tuple[FloatArray, BoolArray]:  # fmt: skip
    """`numbers` of up to 8 characters: the one word that ends where the number ends.

    Byte classes by bit 4 (set on digits, clear on '.' and '-') and bit 1 (set on '.', clear on '-')."""
    x = words[first + length + (PAD - 8)]
    other = _LIVE_ONES[length]  # 1 on each byte of the number, then on its '.' and '-' (in place)
    digit = x >> _U(4)
    digit &= other
    other ^= digit
    dot = x >> _U(1)
    dot &= other
    v = digit
    v *= _U(15)
    v &= x
    # Bytes from the point on (none without one): the digits after it move down over it, which reads
    # the mantissa times ten; the divisor below takes that ten too (the quotient is the same real).
    from_point = -dot
    t = from_point << _U(8)
    t &= v
    v ^= t
    t >>= _U(8)
    v ^= t
    # First byte in memory the most significant: pairs, fours, eights.
    v *= _U(2561)
    v >>= _U(8)
    v &= _U(0x00FF00FF00FF00FF)
    v *= _U(6553601)
    v >>= _U(16)
    v &= _U(0x0000FFFF0000FFFF)
    v *= _U(42949672960001)
    v >>= _U(32)
    value = v.astype(np.float64)
    value /= _POW10[np.bitwise_count(from_point) >> _U(3)]
    neg = padded[first + PAD] == 45
    np.negative(value, where=neg, out=value)
    others = np.bitwise_count(other)
    dots = np.bitwise_count(dot)
    return value, (dots <= 1) & (others - dots == neg) & (length > others)


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


def _long(words: U64Array, padded: npt.NDArray[np.uint8], first: IntArray,
          length: IntArray) -> tuple[FloatArray, BoolArray]:  # fmt: skip
    """`numbers` of 9 to WIDTH characters (rare): the two words that end where the number ends, the
    point read as a 0 digit and then taken out."""
    n = len(first)
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
    neg = padded[first + PAD] == 45
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
