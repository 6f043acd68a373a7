"""Sealing: every directory entry (and a whole snapshot) is encrypted and authenticated with a key only
the lab's nodes can derive, so the broker and the region read nothing of it.

AES-256-GCM (pyca `cryptography`), key = HKDF-SHA256(lab secret, info="fabnode directory v1"). A blob:

    magic "FDIR" | format 1 | kind (E entry, S snapshot) | key id (8) | lab length (1) | lab | body length (4)
    | nonce (12) | ciphertext + tag (16)

Everything before the ciphertext is the associated data: the format, the kind, the lab id and the
length are authenticated, not secret (the lab id is in the topic anyway). The key id (a second HKDF
output, not the key) tells "sealed by another lab" from "forged or corrupted" without trying the key.
Pure: bytes in, bytes out; `os.urandom` for nonces is the only outside input.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fabnode.directory.clock import ClockError, Hlc
from fabnode.directory.entry import Entry, EntryError, Json, canonical, check_lab

MAGIC = b"FDIR"
VERSION = 1
KIND_ENTRY = b"E"
KIND_SNAPSHOT = b"S"
MAX_ENTRY_BLOB = 64 * 1024
MAX_SNAPSHOT_BLOB = 32 * 1024 * 1024
MAX_SNAPSHOT_JSON = 256 * 1024 * 1024  # inflated; far above 5,000 members x 50 machines (~60 MB)
MAX_SNAPSHOT_ENTRIES = 2_000_000
_INFO_KEY = b"fabnode directory v1"
_INFO_KEY_ID = b"fabnode directory key id v1"
_NONCE = 12
_TAG = 16
_KEY_ID = 8

# Why a blob was refused: the words `fabnode status --json` counts them under.
TOO_BIG = "too big"
TRUNCATED = "truncated"
MALFORMED = "malformed"
OTHER_LAB = "other lab"
FORGED = "forged or corrupted"


class Refused(ValueError):
    """A blob that is not applied; `reason` is one of the words above, the message says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    if len(secret) < 16:
        raise ValueError(f"the lab secret is {len(secret)} bytes; expected at least 16")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


class _Keys:
    """The AEAD and key id derived from one secret (cached: HKDF per blob would cost on a Pi Zero)."""

    _cache: dict[bytes, tuple[AESGCM, bytes]] = {}  # noqa: RUF012  (a process-wide cache by design)

    @classmethod
    def of(cls, secret: bytes) -> tuple[AESGCM, bytes]:
        found = cls._cache.get(secret)
        if found is None:
            if len(cls._cache) > 16:
                cls._cache.clear()
            found = AESGCM(_hkdf(secret, _INFO_KEY, 32)), _hkdf(secret, _INFO_KEY_ID, _KEY_ID)
            cls._cache[secret] = found
        return found


def key_id(lab_secret: bytes) -> bytes:
    """The 8 bytes that name the lab's directory key in every blob (not the key)."""
    return _Keys.of(lab_secret)[1]


def _seal(lab_secret: bytes, kind: bytes, lab: str, body: bytes, limit: int) -> bytes:
    aead, kid = _Keys.of(lab_secret)
    lab_bytes = check_lab(lab).encode()
    header = MAGIC + bytes([VERSION]) + kind + kid + bytes([len(lab_bytes)]) + lab_bytes
    header += struct.pack(">I", len(body) + _TAG) + os.urandom(_NONCE)
    blob = header + aead.encrypt(header[-_NONCE:], body, header)
    if len(blob) > limit:
        raise ValueError(f"sealed {kind.decode()} of {len(blob)} bytes: at most {limit}")
    return blob


def _open(lab_secret: bytes, blob: bytes, kind: bytes, limit: int, lab: str | None) -> tuple[str, bytes]:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise Refused(MALFORMED, "not bytes")
    blob = bytes(blob)
    if len(blob) > limit:
        raise Refused(TOO_BIG, f"{len(blob)} bytes; at most {limit}")
    fixed = len(MAGIC) + 2 + _KEY_ID + 1
    if len(blob) < fixed:
        raise Refused(TRUNCATED if MAGIC.startswith(blob[:4]) else MALFORMED, f"{len(blob)} bytes")
    if blob[:4] != MAGIC:
        raise Refused(MALFORMED, "not a fabnode directory blob")
    if blob[4] != VERSION:
        raise Refused(MALFORMED, f"format {blob[4]}; this fabnode reads format {VERSION}")
    if blob[5:6] != kind:
        raise Refused(MALFORMED, f"a {blob[5:6]!r} blob where {kind!r} was expected")
    aead, kid = _Keys.of(lab_secret)
    if blob[6:6 + _KEY_ID] != kid:
        raise Refused(OTHER_LAB, "sealed with another lab's secret")
    lab_len = blob[fixed - 1]
    start = fixed + lab_len + 4 + _NONCE
    if len(blob) < start:
        raise Refused(TRUNCATED, f"{len(blob)} bytes, the header alone is {start}")
    blob_lab = blob[fixed:fixed + lab_len].decode("ascii", "replace")
    (length,) = struct.unpack(">I", blob[fixed + lab_len:fixed + lab_len + 4])
    if len(blob) - start < length:
        raise Refused(TRUNCATED, f"{len(blob) - start} of {length} sealed bytes")
    if len(blob) - start > length or length < _TAG:
        raise Refused(MALFORMED, f"{len(blob) - start} sealed bytes where the header says {length}")
    try:
        body = aead.decrypt(blob[start - _NONCE:start], blob[start:], blob[:start])
    except InvalidTag:
        raise Refused(FORGED, "authentication failed") from None
    if lab is not None and blob_lab != lab:
        raise Refused(OTHER_LAB, f"sealed for lab {blob_lab!r}, this is {lab!r}")
    return blob_lab, body


def seal(lab_secret: bytes, entry: Entry) -> bytes:
    """One entry, sealed (at most 64 KiB; ValueError beyond)."""
    return _seal(lab_secret, KIND_ENTRY, entry.lab, entry.to_json(), MAX_ENTRY_BLOB)


def open_sealed(lab_secret: bytes, blob: bytes, lab: str | None = None) -> Entry:
    """The entry in a blob sealed by this lab (for lab `lab`, when given); Refused otherwise."""
    blob_lab, body = _open(lab_secret, blob, KIND_ENTRY, MAX_ENTRY_BLOB, lab)
    try:
        entry = Entry.from_json(body)
    except EntryError as exc:
        raise Refused(MALFORMED, str(exc)) from None
    if entry.lab != blob_lab:
        raise Refused(OTHER_LAB, f"entry of lab {entry.lab!r} sealed for lab {blob_lab!r}")
    return entry


def seal_snapshot(lab_secret: bytes, lab: str, author: str, entries: Iterable[Entry]) -> bytes:
    """A whole directory (every entry in force), compressed and sealed as one blob (at most 32 MiB)."""
    rows: list[Json] = [
        [e.hlc.wall_ms, e.hlc.counter, e.hlc.node, e.author, e.member, e.field, e.value] for e in entries
    ]
    body = zlib.compress(canonical({"v": VERSION, "lab": lab, "author": author, "entries": rows}), 6)
    return _seal(lab_secret, KIND_SNAPSHOT, lab, body, MAX_SNAPSHOT_BLOB)


def open_snapshot(lab_secret: bytes, blob: bytes, lab: str | None = None) -> list[Entry]:
    """The entries of a snapshot sealed by this lab; Refused for the whole blob if any part is wrong."""
    blob_lab, body = _open(lab_secret, blob, KIND_SNAPSHOT, MAX_SNAPSHOT_BLOB, lab)
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(body, MAX_SNAPSHOT_JSON)
        if inflate.unconsumed_tail or not inflate.eof:
            raise Refused(TOO_BIG if inflate.unconsumed_tail else MALFORMED, "snapshot does not inflate")
        obj = json.loads(text)
    except (zlib.error, ValueError, RecursionError) as exc:
        if isinstance(exc, Refused):
            raise
        raise Refused(MALFORMED, f"snapshot is not compressed JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("v") != VERSION or obj.get("lab") != blob_lab:
        raise Refused(MALFORMED, "snapshot: expected {v, lab, author, entries} of this lab")
    rows = obj.get("entries")
    if not isinstance(rows, list) or len(rows) > MAX_SNAPSHOT_ENTRIES:
        raise Refused(MALFORMED, "snapshot entries: expected a list")
    return [_snapshot_entry(blob_lab, row, i) for i, row in enumerate(rows)]


def _snapshot_entry(lab: str, row: object, index: int) -> Entry:
    if not isinstance(row, list) or len(row) != 7:
        raise Refused(MALFORMED, f"snapshot entry {index}: expected 7 parts")
    wall, counter, node, author, member, field, value = row
    try:
        if not all(isinstance(s, str) for s in (node, author, member, field)):
            raise EntryError("expected strings for node, author, member and field")
        return Entry(lab, author, Hlc(wall, counter, node), member, field, value)
    except (EntryError, ClockError) as exc:
        raise Refused(MALFORMED, f"snapshot entry {index}: {exc}") from None


def open_many(lab_secret: bytes, blobs: Sequence[bytes], lab: str) -> tuple[list[Entry], list[str]]:
    """The entries of those blobs that open, and the reasons for the others."""
    opened: list[Entry] = []
    reasons: list[str] = []
    for blob in blobs:
        try:
            opened.append(open_sealed(lab_secret, blob, lab))
        except Refused as exc:
            reasons.append(exc.reason)
    return opened, reasons
