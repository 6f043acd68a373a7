"""Fab-manager's trainings into the lab directory: pages of its OpenAPI in, the changes to make out.

The shapes are those of sleede/fab-manager's `app/views/open_api/v1/` (`users`, `trainings`,
`user_trainings`); its controllers paginate with `page`/`per_page` and the api-pagination `Total`
header, and authenticate `Authorization: Token token=...`. Parsing and planning are pure; MAP.toml
is read in fabnode.directory.fab_manager_map, and the HTTP client (timeouts, a size cap, no
redirects) is fabnode.directory.fab_manager_http; their names are importable from here too. Every
page is read and checked before anything is planned, so a Fab-manager that is down, slow, refuses
the token or sends a bad page changes nothing.
"""

from __future__ import annotations

import calendar
import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from fabnode.directory.fab_manager_http import (
    API,
    MAX_BODY,
    FabManagerError,
    Get,
    HttpClient,
    Response,
    check_base_url,
    private_transport,
)
from fabnode.directory.fab_manager_map import MAP_HELP, MachineMap, MapError, MappedTraining, read_map

__all__ = [
    "API", "MAP_HELP", "MAX_BODY", "MAX_EMAIL", "MAX_ID", "MAX_PAGES", "PER_PAGE", "FabManagerData",
    "FabManagerError", "FabTraining", "FabUser", "FabUserTraining", "Get", "Grant", "HttpClient", "Link",
    "MachineMap", "MapError", "MappedTraining", "MemberView", "Response", "Revoke", "SyncPlan", "add_months",
    "check_base_url", "parse_trainings", "parse_user_trainings", "parse_users", "plan_sync",
    "private_transport", "read_all", "read_map", "read_pages", "resolve_map",
]

PER_PAGE = 100  # Fab-manager's default is 20; 100 keeps a lab of 5,000 users to 50 requests
MAX_PAGES = 2_000  # 200,000 records: far above any lab; a server paging forever is stopped
MAX_ID = 2**53  # JSON integers above this are not exact in most clients: no Fab-manager has them
MAX_EMAIL = 254  # RFC 5321's limit on a forward path
_EARLIEST, _LATEST = date(1990, 1, 1), date(2200, 1, 1)  # a validation date outside is a bad page


# --- pages -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FabTraining:
    """A training of Fab-manager (`trainings/_training.json.jbuilder`)."""

    id: int
    slug: str


@dataclass(frozen=True, slots=True)
class FabUser:
    """A user of Fab-manager (`users/_user.json.jbuilder`): only what matching needs."""

    id: int
    email: str | None


@dataclass(frozen=True, slots=True)
class FabUserTraining:
    """A training validated for a user (`user_trainings/index.json.jbuilder`)."""

    id: int
    user_id: int | None  # null when the user's account was deleted
    training_id: int
    validated: date  # the day of its created_at, in Fab-manager's own time zone


def _problem(url: str, where: str, message: str) -> FabManagerError:
    return FabManagerError(f"{url}: {where}: {message}; nothing was changed")


def _items(url: str, body: bytes, key: str) -> list[dict[str, object]]:
    try:
        page = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested deeper than the parser goes
        raise _problem(url, "body", f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(page, dict) or key not in page:
        raise _problem(url, key, "missing (expected an object with a list under this key)")
    items = page[key]
    if not isinstance(items, list):
        raise _problem(url, key, f"{type(items).__name__} where a list was expected")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _problem(url, f"{key}[{index}]", f"{type(item).__name__} where an object was expected")
    return items


def _id(url: str, where: str, value: object, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _problem(url, where, f"{value!r} is not an integer id")
    if not 1 <= value < MAX_ID:
        raise _problem(url, where, f"{value} is out of range (1 to 2^53)")
    return value


def _email(url: str, where: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_EMAIL or "@" not in value:
        raise _problem(url, where, f"{str(value)[:40]!r} is not an e-mail address")
    return value.strip().casefold()


def _day(url: str, where: str, value: object) -> date:
    if not isinstance(value, str) or len(value) > 40:
        raise _problem(url, where, f"{str(value)[:40]!r} is not a timestamp (ISO 8601)")
    try:
        day = datetime.fromisoformat(value).date()
    except ValueError:
        raise _problem(url, where, f"{value!r} is not a timestamp (ISO 8601)") from None
    if not _EARLIEST <= day < _LATEST:
        raise _problem(url, where, f"{value!r} is outside {_EARLIEST.year}-{_LATEST.year}")
    return day


def parse_trainings(url: str, body: bytes) -> list[FabTraining]:
    """`GET /open_api/v1/trainings`: {"trainings": [{"id", "slug", ...}]}."""
    out = []
    for i, item in enumerate(_items(url, body, "trainings")):
        slug = item.get("slug")
        if not isinstance(slug, str) or not slug or len(slug) > 200:
            raise _problem(url, f"trainings[{i}].slug", f"{str(slug)[:40]!r} is not a slug")
        out.append(FabTraining(int(_id(url, f"trainings[{i}].id", item.get("id")) or 0), slug))
    return out


def parse_users(url: str, body: bytes) -> list[FabUser]:
    """`GET /open_api/v1/users`: {"users": [{"id", "email", ...}]}."""
    out = []
    for i, item in enumerate(_items(url, body, "users")):
        if "email" not in item:
            raise _problem(url, f"users[{i}].email", "missing")
        out.append(FabUser(int(_id(url, f"users[{i}].id", item.get("id")) or 0),
                           _email(url, f"users[{i}].email", item["email"])))
    return out


def parse_user_trainings(url: str, body: bytes) -> list[FabUserTraining]:
    """`GET /open_api/v1/user_trainings`: {"user_trainings": [{"id", "user_id", "training_id", ...}]}.

    The embedded `user` and `training` objects are not needed: the ids say it all.
    """
    out = []
    for i, item in enumerate(_items(url, body, "user_trainings")):
        where = f"user_trainings[{i}]"
        for key in ("id", "training_id", "created_at"):
            if key not in item:
                raise _problem(url, f"{where}.{key}", "missing")
        out.append(FabUserTraining(
            id=int(_id(url, f"{where}.id", item["id"]) or 0),
            user_id=_id(url, f"{where}.user_id", item.get("user_id"), nullable=True),
            training_id=int(_id(url, f"{where}.training_id", item["training_id"]) or 0),
            validated=_day(url, f"{where}.created_at", item["created_at"]),
        ))
    return out


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member of the directory as the sync sees them: contact and current trainings."""

    name: str
    email: str | None
    fab_manager_id: int | None
    trainings: Mapping[str, date | None]  # machine -> last valid day (None: no end); granted ones only


@dataclass(frozen=True, slots=True)
class Grant:
    member: str
    machine: str
    until: date | None


@dataclass(frozen=True, slots=True)
class Revoke:
    member: str
    machine: str


@dataclass(frozen=True, slots=True)
class Link:
    """A member matched by e-mail: remember their Fab-manager id, which survives an e-mail change."""

    member: str
    fab_manager_id: int


@dataclass(slots=True)
class SyncPlan:
    """The changes that bring the directory to what Fab-manager says, and what could not be matched."""

    grants: list[Grant] = field(default_factory=list)
    revokes: list[Revoke] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    matched: int = 0  # members matched to a Fab-manager user
    expired: int = 0  # validations older than valid_months
    unknown_users: list[int] = field(default_factory=list)  # Fab-manager ids with mapped trainings, no member
    ambiguous: list[str] = field(default_factory=list)  # why a user was not matched

    def empty(self) -> bool:
        """Nothing to change."""
        return not (self.grants or self.revokes or self.links)


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the month's last day when it is shorter)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def resolve_map(url: str, machine_map: MachineMap, trainings: Sequence[FabTraining]
                ) -> dict[int, list[MappedTraining]]:
    """Fab-manager training id -> the map's entries for it; MapError if a slug or id is not there."""
    by_slug = {t.slug: t.id for t in trainings}
    ids = {t.id for t in trainings}
    resolved: dict[int, list[MappedTraining]] = {}
    for entry in machine_map.trainings:
        found = int(entry.key) if entry.key.isdigit() and int(entry.key) in ids else by_slug.get(entry.key)
        if found is None:
            known = ", ".join(sorted(by_slug)[:12]) or "none"
            raise MapError(f"{machine_map.path}: line {entry.line}: [training.{entry.key}]: {url} has no "
                           f"training with that slug or id (its slugs: {known})")
        resolved.setdefault(found, []).append(entry)
    return resolved


def _match(users: Sequence[FabUser], members: Sequence[MemberView], plan: SyncPlan
           ) -> dict[int, MemberView]:
    by_id = {m.fab_manager_id: m for m in members if m.fab_manager_id is not None}
    by_email: dict[str, list[MemberView]] = {}
    for m in members:
        if m.email:
            by_email.setdefault(m.email.strip().casefold(), []).append(m)
    matched: dict[int, MemberView] = {}
    taken: set[str] = set()  # Fab-manager keeps e-mails unique; a member is still matched once only
    for user in users:
        member = by_id.get(user.id)
        if member is None and user.email:
            candidates = [m for m in by_email.get(user.email, []) if m.fab_manager_id is None]
            if len(candidates) > 1:
                plan.ambiguous.append(f"Fab-manager user {user.id}: {len(candidates)} members, one e-mail")
                continue
            member = candidates[0] if candidates and candidates[0].name not in taken else None
            if member is not None:
                plan.links.append(Link(member.name, user.id))
        if member is not None and member.name not in taken:
            matched[user.id] = member
            taken.add(member.name)
    return matched


def plan_sync(url: str, machine_map: MachineMap, trainings: Sequence[FabTraining], users: Sequence[FabUser],
              user_trainings: Sequence[FabUserTraining], members: Sequence[MemberView], today: date
              ) -> SyncPlan:
    """What to grant, revoke and link so the mapped machines' trainings are Fab-manager's.

    A member matched to a Fab-manager user (by stored id, else by e-mail) holds a mapped machine
    exactly while a validation of one of its trainings is listed and in date; a member whose stored
    Fab-manager id is no longer listed loses the mapped machines. Other members are left alone.
    """
    resolved = resolve_map(url, machine_map, trainings)
    plan = SyncPlan()
    matched = _match(users, members, plan)
    plan.matched = len(matched)
    wanted: dict[str, dict[str, date | None]] = {}  # member -> machine -> until
    unknown: set[int] = set()
    for ut in user_trainings:
        entries = resolved.get(ut.training_id)
        if not entries or ut.user_id is None:
            continue
        member = matched.get(ut.user_id)
        if member is None:
            unknown.add(ut.user_id)
            continue
        for entry in entries:
            until = add_months(ut.validated, entry.valid_months) if entry.valid_months else None
            if until is not None and until < today:
                plan.expired += 1
                continue
            for machine in entry.machines:
                have = wanted.setdefault(member.name, {})
                if machine not in have or _later(until, have[machine]):
                    have[machine] = until
    listed = {u.id for u in users}
    matched_names = {m.name for m in matched.values()}
    mapped = sorted(machine_map.machines())
    for member in members:
        gone = member.fab_manager_id is not None and member.fab_manager_id not in listed
        if member.name not in matched_names and not gone:
            continue  # not a Fab-manager user: the lab's own grants stay
        target = wanted.get(member.name, {})
        for machine in mapped:
            current_granted = machine in member.trainings
            if machine in target:
                if not current_granted or member.trainings[machine] != target[machine]:
                    plan.grants.append(Grant(member.name, machine, target[machine]))
            elif current_granted:
                plan.revokes.append(Revoke(member.name, machine))
    plan.unknown_users = sorted(unknown)
    return plan


def _later(a: date | None, b: date | None) -> bool:
    if b is None:
        return False
    return a is None or a > b


# --- reading every page ------------------------------------------------------------------------


def _total(url: str, headers: Mapping[str, str]) -> int | None:
    text = next((v for k, v in headers.items() if k.lower() == "total"), None)
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) > MAX_PAGES * PER_PAGE:
        raise _problem(url, "Total header", f"{text[:20]!r} is not a count from 0 to {MAX_PAGES * PER_PAGE}")
    return int(text)


def read_pages(get: Get, base: str, path: str, key: str, query: Iterable[tuple[str, str]] = ()
               ) -> list[tuple[str, bytes]]:
    """Every page (URL, body) of a paginated index (`page`, `per_page`), checked for a steady `Total`."""
    bodies: list[tuple[str, bytes]] = []
    first_total: int | None = None
    count = 0
    query = list(query)
    for page in range(1, MAX_PAGES + 1):
        params = [*query, ("page", str(page)), ("per_page", str(PER_PAGE))]
        url = f"{base}{path}?{urllib.parse.urlencode(params)}"
        answer = get(url)
        items = _items(url, answer.body, key)
        if len(items) > PER_PAGE:
            raise _problem(url, key, f"{len(items)} items on a page of {PER_PAGE}")
        total = _total(url, answer.headers)
        if page == 1:
            first_total = total
        elif total != first_total:
            raise _problem(url, "Total header", f"went from {first_total} to {total} while the pages were "
                           "read (someone changed Fab-manager meanwhile; run again)")
        bodies.append((url, answer.body))
        count += len(items)
        if len(items) < PER_PAGE:
            if first_total is not None and count != first_total:
                raise _problem(url, "Total header", f"says {first_total} but the pages held {count} (someone "
                               "changed Fab-manager meanwhile; run again)")
            return bodies
    raise _problem(f"{base}{path}", "page", f"more than {MAX_PAGES} pages of {PER_PAGE}")


@dataclass(frozen=True, slots=True)
class FabManagerData:
    """Everything the sync needs, read and parsed in full before anything changes."""

    trainings: list[FabTraining]
    users: list[FabUser]
    user_trainings: list[FabUserTraining]


def read_all(get: Get, base: str, machine_map: MachineMap) -> FabManagerData:
    """Trainings, users and the mapped trainings' validations; FabManagerError or MapError if any fails."""
    url = f"{base}{API}/trainings"
    trainings = parse_trainings(url, get(url).body)
    resolved = resolve_map(url, machine_map, trainings)
    users: dict[int, FabUser] = {}
    for page_url, body in read_pages(get, base, f"{API}/users", "users"):
        for user in parse_users(page_url, body):
            users[user.id] = user
    query = [("training_id[]", str(i)) for i in sorted(resolved)]
    validations: dict[int, FabUserTraining] = {}
    for page_url, body in read_pages(get, base, f"{API}/user_trainings", "user_trainings", query):
        for ut in parse_user_trainings(page_url, body):
            validations[ut.id] = ut
    return FabManagerData(trainings, list(users.values()), list(validations.values()))
