"""The telemetry envelope and topic names: SHARED by the node (fabnode.telemetry.publisher) and the region
(fabnode.region.collector). Keep this API stable; add, never rename.

Topics: `<prefix>/v1/<lab>/<machine>/<kind>` with kind one of status, state, session, job, event;
the region's end-to-end acknowledgement is retained on `<prefix>/region/v1/<lab>/<machine>/ack`.
At the region broker a node is the user `<lab>.<machine>` (`broker_user`; its ACL block: `node_acl`).
The nodes of a lab share their sealed directory on `<prefix>/lab/v1/<lab>/directory/<kind>/<node>`
(`directory_topic`; kind entries or snapshot), which the region's users cannot read.

Every message is one JSON object (UTF-8, at most MAX_MESSAGE_BYTES):
`schema` ("fabnode.job"), `version` (1), `id` (the outbox msg_id, the same on every resend),
`kind` (the record kind: job_started, access, ...), `lab`, `machine`, `seq` (the outbox sequence
number; null only on `status`), `occurred_at`, `sent_at` (UTC ISO-8601) and `data` (the record).
`fabnode/schemas/<schema>.v<version>.json` describes each; `parse_envelope` checks a message
against it with the small validator below (a subset of JSON Schema: see `validate`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "ACK_TOPIC_KIND",
    "BROKER_USER_SEPARATOR",
    "INT64_MAX",
    "MAX_MESSAGE_BYTES",
    "MAX_TEXT",
    "RECORD_KINDS",
    "SCHEMA_VERSION",
    "TOPIC_KINDS",
    "Ack",
    "Envelope",
    "EnvelopeError",
    "TopicName",
    "ack_topic",
    "broker_user",
    "build_ack",
    "build_envelope",
    "directory_subscription",
    "directory_topic",
    "encode_envelope",
    "load_schema",
    "loads_finite",
    "node_acl",
    "node_subscription",
    "parse_ack",
    "parse_envelope",
    "parse_topic",
    "region_ack_subscription",
    "topic",
    "validate",
]

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
INT64_MAX = 2**63 - 1  # the schemas bound every integer to this: the store's BIGINT columns hold no more
MAX_TEXT = 2000  # free-text fields (fault detail, reasons) are clipped to this many characters
TOPIC_KINDS = ("status", "state", "session", "job", "event")
ACK_TOPIC_KIND = "ack"

# Record kind (the outbox `kind`, plus status/state) -> topic kind.
RECORD_KINDS: dict[str, str] = {
    "status": "status",
    "state": "state",
    "session_started": "session",
    "session_ended": "session",
    "job_started": "job",
    "job_ended": "job",
    "access": "event",
    "fault": "event",
}
# Which payload field says when a record happened (else the outbox row's `created`).
_OCCURRED_FIELD = {"session_started": "started", "session_ended": "ended", "job_started": "started",
                   "job_ended": "ended", "access": "time", "fault": "time", "state": "time"}  # fmt: skip
_SUPPORTED_VERSIONS: dict[str, tuple[int, ...]] = {f"fabnode.{k}": (1,) for k in TOPIC_KINDS}
# Lab and machine names, as the config accepts them and topics carry them.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
BROKER_USER_SEPARATOR = "."  # between lab and machine in a broker user name: no name contains it


class EnvelopeError(ValueError):
    """A message that is not a valid envelope; the text says why."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One telemetry message, as sent and as parsed."""

    schema: str
    version: int
    id: str
    kind: str
    lab: str
    machine: str
    seq: int | None
    occurred_at: str
    sent_at: str
    data: dict[str, Any]

    @property
    def topic_kind(self) -> str:
        """The last part of the topic this message goes to (status, state, session, job, event)."""
        return RECORD_KINDS[self.kind]

    def as_dict(self) -> dict[str, Any]:
        """The JSON object, members in the documented order."""
        return {"schema": self.schema, "version": self.version, "id": self.id, "kind": self.kind,
                "lab": self.lab, "machine": self.machine, "seq": self.seq,
                "occurred_at": self.occurred_at, "sent_at": self.sent_at, "data": self.data}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TopicName:
    """A topic split into its parts."""

    prefix: str
    lab: str
    machine: str
    kind: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The region's acknowledgement: it has stored every record of the node up to `seq`."""

    seq: int
    id: str | None = None  # the msg_id of record `seq`, so a node with a new database can tell
    stored_at: str | None = None


# --- topics -----------------------------------------------------------------------------------


def topic(prefix: str, lab: str, machine: str, kind: str) -> str:
    """`<prefix>/v1/<lab>/<machine>/<kind>`; kind is a topic kind or a record kind."""
    kind = RECORD_KINDS.get(kind, kind)
    if kind not in TOPIC_KINDS:
        raise EnvelopeError(f"unknown topic kind {kind!r}: expected one of {', '.join(TOPIC_KINDS)}")
    return f"{prefix}/v1/{lab}/{machine}/{kind}"


def ack_topic(prefix: str, lab: str, machine: str) -> str:
    """The region's retained acknowledgement for one node (only the region may write it)."""
    return f"{prefix}/region/v1/{lab}/{machine}/{ACK_TOPIC_KIND}"


def broker_user(lab: str, machine: str) -> str:
    """A node's user name at the region broker: `<lab>.<machine>`. Names cannot hold a dot (NAME), so
    no two nodes share a user (with a dash, north + prusa-mini-1 and north-prusa + mini-1 would)."""
    for what, name in (("lab", lab), ("machine", machine)):
        if not NAME.match(name):
            raise EnvelopeError(f"{what} {name!r} is not a name: lower-case letters, digits, - and _")
    return f"{lab}{BROKER_USER_SEPARATOR}{machine}"


def node_acl(prefix: str, lab: str, machine: str) -> str:
    """The node's block of the broker's ACL file: write its own topics, read its own ack and its lab's
    directory, write its own directory topics; nothing else."""
    user = broker_user(lab, machine)
    return (f"user {user}\n"
            f"topic write {prefix}/v1/{lab}/{machine}/#\n"
            f"topic read {ack_topic(prefix, lab, machine)}\n"
            f"topic read {directory_subscription(prefix, lab)}\n"
            f"topic write {directory_topic(prefix, lab, 'entries', user)}\n"
            f"topic write {directory_topic(prefix, lab, 'snapshot', user)}/+\n")  # fmt: skip


DIRECTORY_KINDS = ("entries", "snapshot")


def directory_topic(prefix: str, lab: str, kind: str, node: str) -> str:
    """`<prefix>/lab/v1/<lab>/directory/<kind>/<node>`: a node's sealed entries, or the parent of its
    retained snapshot's parts (`.../snapshot/<node>/<part>`)."""
    if kind not in DIRECTORY_KINDS:
        raise EnvelopeError(f"unknown directory topic kind {kind!r}: expected "
                            f"{' or '.join(DIRECTORY_KINDS)}")  # fmt: skip
    return f"{prefix}/lab/v1/{lab}/directory/{kind}/{node}"


def directory_subscription(prefix: str, lab: str) -> str:
    """What every node of a lab subscribes to: its lab's directory topics (every node's)."""
    return f"{prefix}/lab/v1/{lab}/directory/#"


def node_subscription(prefix: str) -> str:
    """What the collector subscribes to: every node's messages."""
    return f"{prefix}/v1/+/+/+"


def region_ack_subscription(prefix: str) -> str:
    """Every node's ack topic (the collector reads its own acks back at start-up)."""
    return f"{prefix}/region/v1/+/+/{ACK_TOPIC_KIND}"


def parse_topic(name: str) -> TopicName:
    """Split `<prefix>/v1/<lab>/<machine>/<kind>` (the prefix may hold slashes)."""
    parts = name.split("/")
    if len(parts) < 5 or parts[-4] != "v1" or parts[-1] not in TOPIC_KINDS:
        raise EnvelopeError(f"topic {name!r} is not <prefix>/v1/<lab>/<machine>/<kind>")
    if not (NAME.match(parts[-3]) and NAME.match(parts[-2])):
        raise EnvelopeError(f"topic {name!r}: lab and machine must be lower-case names")
    return TopicName("/".join(parts[:-4]), parts[-3], parts[-2], parts[-1])


# --- building ---------------------------------------------------------------------------------


def utc_iso(now: datetime) -> str:
    """A wall-clock time as stored and sent: UTC, ISO-8601, to the second, e.g. 2025-03-01T12:34:56Z."""
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now.isoformat()}: pass an aware UTC time (datetime.now(UTC))")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(value: datetime | str) -> str:
    return value if isinstance(value, str) else utc_iso(value)


def _clip(data: dict[str, Any]) -> dict[str, Any]:
    # A fault's detail can be a firmware dump: keep messages small rather than refuse them.
    return {k: (v[: MAX_TEXT - 1] + "…" if isinstance(v, str) and len(v) > MAX_TEXT else v)
            for k, v in data.items()}  # fmt: skip


def build_envelope(
    *,
    kind: str,
    msg_id: str,
    lab: str,
    machine: str,
    seq: int | None,
    data: dict[str, Any],
    sent_at: datetime | str,
    occurred_at: datetime | str | None = None,
    created: str | None = None,
) -> Envelope:
    """Wrap one record; `occurred_at` defaults to the record's own time field, else `created`."""
    if kind not in RECORD_KINDS:
        raise EnvelopeError(f"unknown record kind {kind!r}: expected one of {', '.join(RECORD_KINDS)}")
    if occurred_at is None:
        occurred_at = data.get(_OCCURRED_FIELD.get(kind, "")) or created or sent_at
    topic_kind = RECORD_KINDS[kind]
    return Envelope(f"fabnode.{topic_kind}", SCHEMA_VERSION, msg_id, kind, lab, machine, seq,
                    _iso(occurred_at), _iso(sent_at), _clip(dict(data)))  # fmt: skip


def encode_envelope(envelope: Envelope) -> bytes:
    """The bytes on the wire (compact JSON, UTF-8)."""
    raw = json.dumps(envelope.as_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise EnvelopeError(f"message {envelope.id}: {len(raw)} bytes, more than {MAX_MESSAGE_BYTES}")
    return raw


# --- parsing ----------------------------------------------------------------------------------


def parse_envelope(payload: bytes, topic_name: str | None = None) -> Envelope:
    """Check and decode one message; with `topic_name`, also check it matches lab, machine and kind."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise EnvelopeError(f"payload too large: {len(payload)} bytes (max {MAX_MESSAGE_BYTES})")
    obj = loads_finite(payload)
    if not isinstance(obj, dict):
        raise EnvelopeError(f"envelope must be a JSON object, got {type(obj).__name__}")
    schema, version = obj.get("schema"), obj.get("version")
    if schema not in _SUPPORTED_VERSIONS:
        raise EnvelopeError(f"unknown schema {schema!r}: expected one of {', '.join(_SUPPORTED_VERSIONS)}")
    if version not in _SUPPORTED_VERSIONS[schema]:
        raise EnvelopeError(f"unknown version {version!r} of schema {schema}")
    errors = validate(obj, load_schema(schema, version))
    if errors:
        raise EnvelopeError(f"{schema} v{version}: " + "; ".join(errors[:5]))
    env = Envelope(schema, version, obj["id"], obj["kind"], obj["lab"], obj["machine"], obj["seq"],
                   obj["occurred_at"], obj["sent_at"], obj["data"])  # fmt: skip
    if topic_name is not None:
        where = parse_topic(topic_name)
        if (where.lab, where.machine, where.kind) != (env.lab, env.machine, env.topic_kind):
            raise EnvelopeError(
                f"topic {topic_name!r} does not match the envelope ({env.lab}/{env.machine}/{env.topic_kind})"
            )
    return env


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as inf: no database column holds it
        raise EnvelopeError(f"number {text[:40]} is out of range (not finite)")
    return value


def _no_constant(name: str) -> float:
    raise EnvelopeError(f"{name} is not a number JSON allows (NaN and infinities cannot be stored)")


def loads_finite(payload: bytes) -> Any:
    """Decode JSON, refusing NaN, Infinity and numbers too large for a double (Python's json takes them)."""
    try:
        return json.loads(payload.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"invalid JSON: {exc}") from exc
    except RecursionError:  # `[[[[...` deeper than the parser goes: no envelope, and no crash
        raise EnvelopeError("invalid JSON: nested too deep") from None


def build_ack(seq: int, msg_id: str | None, now: datetime) -> bytes:
    """The region's retained ack payload: `{"seq": N, "id": <msg_id of N>, "stored_at": ...}`."""
    return json.dumps({"seq": seq, "id": msg_id, "stored_at": _iso(now)}, separators=(",", ":")).encode()


def parse_ack(payload: bytes) -> Ack:
    """Decode the region's ack; only `seq` (an integer >= 0) is required."""
    try:
        obj = loads_finite(payload)
    except EnvelopeError as exc:
        raise EnvelopeError(f"ack: {exc}") from exc
    if not isinstance(obj, dict):
        raise EnvelopeError("ack must be a JSON object")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= INT64_MAX:
        raise EnvelopeError(f"ack: seq must be an integer from 0 to {INT64_MAX}, got {seq!r}")
    msg_id, stored_at = obj.get("id"), obj.get("stored_at")
    return Ack(seq, msg_id if isinstance(msg_id, str) else None,
               stored_at if isinstance(stored_at, str) else None)  # fmt: skip


# --- schemas and the small validator ----------------------------------------------------------


@cache
def load_schema(schema: str, version: int) -> dict[str, Any]:
    """The JSON Schema `fabnode/schemas/<schema>.v<version>.json` (cached)."""
    name = f"{schema}.v{version}.json"
    try:
        text = resources.files("fabnode").joinpath("schemas", name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise EnvelopeError(f"no schema file {name}") from exc
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "$comment", "examples"})
_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
    "integer": int, "number": (int, float),
}  # fmt: skip


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "number" and isinstance(value, float) and not math.isfinite(value):
        return False  # JSON has no NaN or infinity, and no store column holds them
    return isinstance(value, _TYPES[name])


def _is_datetime(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Check `value` against a JSON Schema subset; return the errors (empty when valid).

    Supported: type, enum, const, required, properties, additionalProperties (bool), minimum,
    maximum, minLength, maxLength, pattern, format (date-time), oneOf. Anything else is refused
    so a schema cannot silently claim a check that does not run.
    """
    unknown = set(schema) - _ANNOTATIONS - set(_CHECKS)
    if unknown:
        raise EnvelopeError(f"schema at {path} uses unsupported keywords: {', '.join(sorted(unknown))}")
    errors: list[str] = []
    for keyword, check in _CHECKS.items():
        if keyword in schema:
            errors.extend(check(value, schema, path))
            if keyword == "type" and errors:
                return errors  # the other checks assume the right type
    return errors


def _check_type(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if any(_is_type(value, n) for n in names):
        return []
    return [f"{path}: expected {' or '.join(names)}, got {json.dumps(value)[:40]}"]


def _check_enum(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    return [] if value in schema["enum"] else [f"{path}: {value!r} is not one of {schema['enum']}"]


def _check_const(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    return [] if value == schema["const"] else [f"{path}: expected {schema['const']!r}, got {value!r}"]


def _check_required(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [f"{path}: missing field {k!r}" for k in schema["required"] if k not in value]


def _check_properties(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    errors: list[str] = []
    for key, sub in schema["properties"].items():
        if key in value:
            errors.extend(validate(value[key], sub, f"{path}.{key}"))
    return errors


def _check_additional(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if not isinstance(value, dict) or schema["additionalProperties"] is not False:
        return []
    known = schema.get("properties", {})
    return [f"{path}: unexpected field {k!r}" for k in value if k not in known]


def _check_minimum(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if _is_type(value, "number") and value < schema["minimum"]:
        return [f"{path}: {value} is below {schema['minimum']}"]
    return []


def _check_maximum(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if _is_type(value, "number") and value > schema["maximum"]:
        return [f"{path}: {value} is above {schema['maximum']}"]
    return []


def _check_min_length(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if isinstance(value, str) and len(value) < schema["minLength"]:
        return [f"{path}: shorter than {schema['minLength']} characters"]
    return []


def _check_max_length(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if isinstance(value, str) and len(value) > schema["maxLength"]:
        return [f"{path}: longer than {schema['maxLength']} characters"]
    return []


def _check_pattern(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if not isinstance(value, str) or re.search(schema["pattern"], value):
        return []
    return [f"{path}: {value[:40]!r} does not match {schema['pattern']}"]


def _check_format(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if schema["format"] != "date-time":
        raise EnvelopeError(f"schema at {path}: unsupported format {schema['format']!r}")
    if not isinstance(value, str) or _is_datetime(value):
        return []
    return [f"{path}: {value[:40]!r} is not an ISO-8601 time with a zone"]


def _check_one_of(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    results = [validate(value, sub, path) for sub in schema["oneOf"]]
    matches = sum(1 for r in results if not r)
    if matches == 1:
        return []
    if matches > 1:
        return [f"{path}: matches {matches} alternatives of oneOf, expected exactly one"]
    reasons = " | ".join(f"({n}) " + "; ".join(r[:3]) for n, r in enumerate(results, 1))
    return [f"{path}: matches no alternative of oneOf: {reasons}"]


_CHECKS = {
    "type": _check_type,
    "enum": _check_enum,
    "const": _check_const,
    "required": _check_required,
    "properties": _check_properties,
    "additionalProperties": _check_additional,
    "minimum": _check_minimum,
    "maximum": _check_maximum,
    "minLength": _check_min_length,
    "maxLength": _check_max_length,
    "pattern": _check_pattern,
    "format": _check_format,
    "oneOf": _check_one_of,
}
