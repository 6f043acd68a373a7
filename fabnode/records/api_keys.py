"""API keys for the node's HTTP API: a member's personal key, and the lab key for shared lab PCs.

A key is stored only as a keyed hash (HMAC-SHA256 with the lab's secret), as badges are
(fabnode.records.members); a personal key is shown once, when it is made. The lab key is derived
from the lab's secret and a generation number, so `fabnode web lab-key` can print it again on any
node of the lab while only its hash is stored; `--new` moves to the next generation and the old key
stops working. The table lives in the usage log and is created here when absent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database

from fabnode.records.members import AccessError
from fabnode.records.schema import utc_iso, write_transaction

LAB = "lab"
KEY_BYTES = 32
_KEY_MIN, _KEY_MAX = 16, 128  # what a key from a header may be, before any hashing

_TABLE = """
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,        -- HMAC-SHA256 of the key; the key itself is never stored
    member_id INTEGER REFERENCES members(id),  -- NULL for the lab key
    role TEXT NOT NULL CHECK (role IN ('member', 'technician', 'lab')),
    generation INTEGER,                   -- the lab key's generation; NULL for a personal key
    created TEXT NOT NULL,
    revoked TEXT                          -- kept (not deleted) so that a job's key owner stays known
)
"""


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who an API key acts for: a member (their role as it is now) or the lab."""

    name: str  # the member's name, or "lab"
    role: str  # member, technician or lab
    member_id: int | None


def ensure_table(db: Database) -> None:
    """Create the api_keys table if this usage log has none yet."""
    db.execute(_TABLE)


def key_hash(secret: bytes, key: str) -> str:
    """The keyed hash under which a key is stored and looked up (hex HMAC-SHA256)."""
    return hmac.new(secret, b"fabnode-api-key\0" + key.encode(), hashlib.sha256).hexdigest()


def _lab_key_text(secret: bytes, generation: int) -> str:
    raw = hmac.new(secret, b"fabnode-lab-key\0" + str(generation).encode(), hashlib.sha256).digest()
    return "lab-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _member(db: Database, name: str) -> tuple[int, str, str]:
    rows = list(db.query("SELECT id, name, role FROM members WHERE name = ? AND removed IS NULL",
                         [name.strip()]))  # fmt: skip
    if not rows:
        raise AccessError(f"no member named {name.strip()!r}")
    return int(rows[0]["id"]), str(rows[0]["name"]), str(rows[0]["role"])


def new_member_key(db: Database, secret: bytes, name: str, *, now: datetime) -> str:
    """Make a member's personal key (their previous one stops working); return it, to show once."""
    ensure_table(db)
    key = secrets.token_urlsafe(KEY_BYTES)
    with write_transaction(db, durable=True):
        member_id, _, role = _member(db, name)
        db.execute("UPDATE api_keys SET revoked = ? WHERE member_id = ? AND revoked IS NULL",
                   [utc_iso(now), member_id])  # fmt: skip
        db.execute("INSERT INTO api_keys (key_hash, member_id, role, created) VALUES (?, ?, ?, ?)",
                   [key_hash(secret, key), member_id, role, utc_iso(now)])  # fmt: skip
    return key


def revoke_member_key(db: Database, name: str, *, now: datetime) -> None:
    """End a member's personal key; AccessError when they have none."""
    ensure_table(db)
    with write_transaction(db, durable=True):
        member_id, clean, _ = _member(db, name)
        cur = db.execute("UPDATE api_keys SET revoked = ? WHERE member_id = ? AND revoked IS NULL",
                         [utc_iso(now), member_id])  # fmt: skip
        if not cur.rowcount:
            raise AccessError(f"member {clean!r} has no API key")


def lab_key(db: Database, secret: bytes, *, now: datetime, new: bool = False) -> str:
    """The lab key (made on first use); `new` ends it and makes the next one."""
    ensure_table(db)
    with write_transaction(db, durable=True):
        rows = list(db.query("SELECT id, generation FROM api_keys WHERE role = 'lab' AND revoked IS NULL"))
        if rows and not new:
            return _lab_key_text(secret, int(rows[0]["generation"]))
        last = next(iter(db.query("SELECT MAX(generation) AS g FROM api_keys WHERE role = 'lab'")))["g"]
        generation = int(last or 0) + 1
        db.execute("UPDATE api_keys SET revoked = ? WHERE role = 'lab' AND revoked IS NULL", [utc_iso(now)])
        key = _lab_key_text(secret, generation)
        db.execute("INSERT INTO api_keys (key_hash, role, generation, created) VALUES (?, 'lab', ?, ?)",
                   [key_hash(secret, key), generation, utc_iso(now)])  # fmt: skip
    return key


def new_key_text() -> str:
    """A fresh personal key (shown once; only its hash is kept)."""
    return secrets.token_urlsafe(KEY_BYTES)


def set_member_keys(db: Database, member_id: int, role: str, keys: dict[str, bool], *, now: datetime) -> None:
    """Make a member's keys what the lab directory says (hash -> live); every other personal key of
    theirs ends. Called inside the directory's transaction."""
    ensure_table(db)
    stamp = utc_iso(now)
    for hashed, live in keys.items():
        db.execute("INSERT INTO api_keys (key_hash, member_id, role, created) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (key_hash) DO UPDATE SET member_id = excluded.member_id",
                   [hashed, member_id, role if role != LAB else "member", stamp])  # fmt: skip
        db.execute("UPDATE api_keys SET revoked = CASE WHEN ? THEN NULL ELSE coalesce(revoked, ?) END "
                   "WHERE key_hash = ?", [int(live), stamp, hashed])  # fmt: skip
    live_hashes = [h for h, live in keys.items() if live]
    marks = ",".join("?" * len(live_hashes))
    db.execute("UPDATE api_keys SET revoked = ? WHERE member_id = ? AND revoked IS NULL AND role != 'lab'"
               + (f" AND key_hash NOT IN ({marks})" if live_hashes else ""),
               [stamp, member_id, *live_hashes])  # fmt: skip


def key_owner(db: Database, secret: bytes, key: str) -> KeyHolder | None:
    """Who holds a live key, or None (no such key, revoked, or its member removed)."""
    if not _KEY_MIN <= len(key) <= _KEY_MAX or not key.isascii() or not key.isprintable():
        return None
    ensure_table(db)
    rows = list(db.query(
        "SELECT k.role AS key_role, m.id AS member_id, m.name, m.role, m.removed FROM api_keys k "
        "LEFT JOIN members m ON m.id = k.member_id WHERE k.key_hash = ? AND k.revoked IS NULL",
        [key_hash(secret, key)],
    ))  # fmt: skip
    if not rows:
        return None
    row = rows[0]
    if row["key_role"] == LAB:
        return KeyHolder(name=LAB, role=LAB, member_id=None)
    if row["member_id"] is None or row["removed"] is not None:
        return None
    # The member's role as it is now: a technician made a member again loses the power of their key.
    return KeyHolder(name=str(row["name"]), role=str(row["role"]), member_id=int(row["member_id"]))
