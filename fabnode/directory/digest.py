"""The directory's digest, kept up to date as rows change instead of rebuilt by a sorted scan.

The digest is a function of the set of (member, field) rows in force: each row hashes on its own and
the hashes are added modulo 2**256, so a merge adds the new row's hash and takes away the old one's,
whatever order the rows came in. Pure: rows in, numbers out; the store keeps the sum with the rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlite_utils import Database

MODULUS = 1 << 256
DIGEST_CHARS = 12
_PREFIX = b"fabnode directory digest v2\n"

Row = tuple[str, str, int, int, str, str]  # member, field, wall_ms, counter, node, value (canonical JSON)


def row_hash(row: Row) -> int:
    """One row's share of the sum."""
    text = "\x1f".join(str(part) for part in row).encode()
    return int.from_bytes(hashlib.sha256(text).digest(), "big")


def total(rows: Iterable[Row]) -> int:
    """The sum of these rows' hashes (a whole directory's, from scratch)."""
    return sum(row_hash(row) for row in rows) % MODULUS


def scan(db: Database) -> int:
    """The sum over the directory in force, read row by row (once, for a file that has no sum yet)."""
    return total(db.execute("SELECT member, field, wall_ms, counter, node, value FROM directory_state"))


def shown(sum_: int) -> str:
    """The short hex digest a technician compares between nodes."""
    return hashlib.sha256(_PREFIX + sum_.to_bytes(32, "big")).hexdigest()[:DIGEST_CHARS]
