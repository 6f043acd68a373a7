"""A node's retained snapshot of the lab directory, in parts that stay put: each member always falls in
the same part (by a hash of its id), so a change republishes one part and the other nodes open one.

Pure: entries in, parts (with a digest of their content) out; sealing is the caller's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from fabnode.directory.entry import Entry

MAX_PARTS = 4096


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a snapshot: its number, a digest of its entries, the entries."""

    number: int
    digest: bytes
    entries: list[Entry]


def bucket(member: str, count: int) -> int:
    """The part a member's entries go in, when there are `count` parts."""
    return int.from_bytes(hashlib.sha256(member.encode()).digest()[:4], "big") % count


def split(entries: Sequence[Entry], part_bytes: int) -> list[Part]:
    """The entries in a power-of-two number of parts, each at most `part_bytes` of entry JSON (a
    member's entries are never split), half that on average, so that a member joining rarely moves
    the others. A member's entries beyond `part_bytes` on their own make their part larger."""
    sized = [(entry, entry.to_json()) for entry in entries]
    total = sum(len(text) for _, text in sized)
    count = 1
    while total > count * part_bytes // 2 and count < MAX_PARTS:
        count *= 2
    while True:
        groups: list[list[tuple[Entry, bytes]]] = [[] for _ in range(count)]
        for entry, text in sized:
            groups[bucket(entry.member, count)].append((entry, text))
        too_big = any(sum(len(t) for _, t in g) > part_bytes and len({e.member for e, _ in g}) > 1
                      for g in groups)  # fmt: skip
        if not too_big or count >= MAX_PARTS:
            break
        count *= 2
    parts = []
    for number, group in enumerate(groups):
        digest = hashlib.sha256()
        for _, text in group:
            digest.update(len(text).to_bytes(4, "big") + text)
        parts.append(Part(number, digest.digest(), [entry for entry, _ in group]))
    return parts
