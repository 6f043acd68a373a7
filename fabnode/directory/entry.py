"""One change to the lab directory: who wrote it (node and clock), which member, which field, what value.

Pure. An entry travels sealed (fabnode.directory.seal); inside the seal it is canonical JSON, and
every part is checked on the way in, so a node that holds the lab secret but runs a buggy (or older)
fabnode cannot put anything but well-formed values into another node's directory.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Union

from fabnode.directory.clock import ClockError, Hlc

Json = Union[None, bool, int, float, str, list["Json"], dict[str, "Json"]]  # noqa: UP007 (a recursive alias)

FORMAT = 1
MAX_ENTRY_BYTES = 64 * 1024  # an entry's JSON, before sealing
NAME = "name"
ROLE = "role"
BADGE = "badge"
EMAIL = "email"
FAB_MANAGER_ID = "fab_manager_id"
TRAINING = "training:"  # + machine
API_KEY = "api_key:"  # + the key's hash (hex)
REMOVED = "removed"
ERASED = "erased"
ROLES = ("member", "technician")
MAX_NAME = 80
MAX_MACHINE = 64
MAX_EMAIL = 254
MAX_FAB_MANAGER_ID = 2**53  # Fab-manager's ids are JSON numbers

_MEMBER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_LAB = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NODE = re.compile(r"[A-Za-z0-9_.@-]{1,120}")  # `<lab>.<machine>`, or `cli@<host>` for a CLI without config
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class EntryError(ValueError):
    """An entry that is not well formed; the message names the part."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One change: the latest entry (by `hlc`) per (member, field) is the directory's value."""

    lab: str
    author: str  # the node id that made the change
    hlc: Hlc
    member: str  # a stable member id (uuid4 hex), never the name
    field: str
    value: Json

    def __post_init__(self) -> None:
        check_lab(self.lab)
        check_member_id(self.member)
        check_node_id(self.author)
        object.__setattr__(self, "value", check_value(self.field, self.value))

    def key(self) -> tuple[str, str]:
        """What this entry sets: (member, field)."""
        return self.member, self.field

    def to_json(self) -> bytes:
        """The canonical JSON form (sorted keys, no spaces): the same entry always gives the same bytes."""
        return canonical(self.as_dict())

    def as_dict(self) -> dict[str, Json]:
        """The entry as plain JSON values."""
        return {"v": FORMAT, "lab": self.lab, "author": self.author,
                "hlc": [self.hlc.wall_ms, self.hlc.counter, self.hlc.node],
                "member": self.member, "field": self.field, "value": self.value}  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> Entry:
        """An entry from its JSON form; EntryError naming the part that is wrong."""
        if len(data) > MAX_ENTRY_BYTES:
            raise EntryError(f"entry of {len(data)} bytes: at most {MAX_ENTRY_BYTES}")
        try:
            obj = json.loads(data, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise EntryError(f"entry is not JSON ({exc})") from None
        return cls.from_dict(obj)

    @classmethod
    def from_dict(cls, obj: object) -> Entry:
        """An entry from plain JSON values (as `as_dict` gives)."""
        if not isinstance(obj, dict) or set(obj) != {"v", "lab", "author", "hlc", "member", "field", "value"}:
            raise EntryError("entry: expected the keys v, lab, author, hlc, member, field, value")
        if obj["v"] != FORMAT or type(obj["v"]) is not int:
            raise EntryError(f"entry format {obj['v']!r}: this fabnode reads format {FORMAT}")
        hlc = obj["hlc"]
        if not isinstance(hlc, list) or len(hlc) != 3:
            raise EntryError("entry hlc: expected [wall_ms, counter, node]")
        for key in ("lab", "author", "member", "field"):
            if not isinstance(obj[key], str):
                raise EntryError(f"entry {key}: expected a string")
        try:
            stamp = Hlc(hlc[0], hlc[1], hlc[2])
        except ClockError as exc:
            raise EntryError(str(exc)) from None
        return cls(obj["lab"], obj["author"], stamp, obj["member"], obj["field"], obj["value"])


def canonical(obj: Json) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()  # fmt: skip


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def check_lab(lab: object) -> str:
    """A lab id as topics carry it: 1 to 64 of A-Z a-z 0-9 _ . -"""
    if not isinstance(lab, str) or not _LAB.fullmatch(lab):
        raise EntryError(f"lab id {lab!r}: expected 1 to 64 characters of A-Z a-z 0-9 _ . -")
    return lab


def check_node_id(node: object) -> str:
    """A node id: `<lab>.<machine>` (1 to 120 of A-Z a-z 0-9 _ . @ -)."""
    if not isinstance(node, str) or not _NODE.fullmatch(node):
        raise EntryError(f"node id {node!r}: expected 1 to 120 characters of A-Z a-z 0-9 _ . @ -")
    return node


def check_member_id(member: object) -> str:
    """A member id: 1 to 64 of A-Z a-z 0-9 _ . - (a uuid4 hex as members.py makes them)."""
    if not isinstance(member, str) or not _MEMBER_ID.fullmatch(member):
        raise EntryError(f"member id {member!r}: expected 1 to 64 characters of A-Z a-z 0-9 _ . -")
    return member


def check_name(name: object) -> str:
    """A member's display name: 1 to 80 printable characters, no surrounding spaces."""
    if (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or name != name.strip()
            or not name.isprintable()):  # fmt: skip
        raise EntryError(f"member name {name!r}: 1 to {MAX_NAME} printable characters expected")
    return name


def check_machine(machine: object) -> str:
    """A machine name as a node's config has it (1 to 64 printable characters, no ':' or spaces around)."""
    if (not isinstance(machine, str) or not 0 < len(machine) <= MAX_MACHINE or machine != machine.strip()
            or not machine.isprintable()):  # fmt: skip
        raise EntryError(f"machine {machine!r}: 1 to {MAX_MACHINE} printable characters expected")
    return machine


def training_value(granted: bool, until: date | None) -> dict[str, Json]:
    """The value of a training entry."""
    return {"granted": granted, "until": until.isoformat() if until else None}


def is_revocation(field: str, value: Json) -> bool:
    """True for a value that takes something away (a revoked training or API key): at an equal clock
    it beats the value that gives it."""
    if field.startswith(TRAINING) or field.startswith(API_KEY):
        return isinstance(value, dict) and value.get("granted") is False
    return False


def _check_training(value: Json) -> Json:
    if (not isinstance(value, dict) or set(value) != {"granted", "until"}
            or type(value["granted"]) is not bool):  # fmt: skip
        raise EntryError('training value: expected {"granted": true|false, "until": "YYYY-MM-DD"|null}')
    until = value["until"]
    if until is not None:
        try:
            if not isinstance(until, str) or not _DAY.fullmatch(until):
                raise ValueError(until)
            date.fromisoformat(until)
        except ValueError:
            raise EntryError(f"training until {until!r}: expected YYYY-MM-DD or null") from None
    return value


def _check_api_key(value: Json) -> Json:
    if not isinstance(value, dict) or set(value) != {"granted"} or type(value["granted"]) is not bool:
        raise EntryError('API key value: expected {"granted": true|false}')
    return value


def _check_str(field: str, value: Json, limit: int, optional: bool) -> Json:
    if value is None and optional:
        return value
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise EntryError(f"{field} {value!r}: 1 to {limit} printable characters expected")
    return value


def _check_removed(value: Json) -> Json:
    if not isinstance(value, dict) or set(value) != {"name", "role"}:
        raise EntryError('removed value: expected {"name": ..., "role": ...}')
    check_name(value["name"])
    if value["role"] not in ROLES:
        raise EntryError(f"removed role {value['role']!r}: expected {' or '.join(ROLES)}")
    return value


def check_value(field: object, value: Json) -> Json:
    """The value, if it is one this field may hold; EntryError naming the field otherwise."""
    if not isinstance(field, str) or not 0 < len(field) <= 100:
        raise EntryError(f"entry field {field!r}: expected a field name")
    if isinstance(value, float) and not math.isfinite(value):
        raise EntryError(f"{field}: {value!r} is not a finite number")
    if field == NAME:
        check_name(value)
    elif field == ROLE:
        if value not in ROLES:
            raise EntryError(f"role {value!r}: expected {' or '.join(ROLES)}")
    elif field == BADGE:
        if value is not None and (not isinstance(value, str) or not _HEX64.fullmatch(value)):
            raise EntryError("badge: expected a badge hash (64 lowercase hex digits) or null")
    elif field == EMAIL:
        _check_str(field, value, MAX_EMAIL, optional=True)
        if isinstance(value, str) and ("@" not in value or value != value.strip()):
            raise EntryError(f"email {value!r}: expected an address with @")
    elif field == FAB_MANAGER_ID:
        if value is not None and (type(value) is not int or not 0 < value <= MAX_FAB_MANAGER_ID):
            raise EntryError(f"fab_manager_id {value!r}: expected a positive integer or null")
    elif field.startswith(TRAINING):
        check_machine(field[len(TRAINING):])
        _check_training(value)
    elif field.startswith(API_KEY):
        if not _HEX64.fullmatch(field[len(API_KEY):]):
            raise EntryError(f"entry field {field!r}: expected api_key:<64 hex digits>")
        _check_api_key(value)
    elif field == REMOVED:
        _check_removed(value)
    elif field == ERASED:
        if value != {}:
            raise EntryError("erased value: expected {}")
    else:
        raise EntryError(f"entry field {field!r}: not one of name, role, badge, email, fab_manager_id, "
                         "training:<machine>, api_key:<hash>, removed, erased")
    return value
