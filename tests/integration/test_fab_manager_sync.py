"""`fabnode lab sync fab-manager` against a local HTTP server that answers as Fab-manager's OpenAPI does
(shapes from sleede/fab-manager's app/views/open_api/v1/, see tests/data/fab_manager/README.md), and
`fabnode lab secret --export/--import`. What a technician sees: exit codes, stderr, `fabnode members
list --json` and `fabnode members digest` before and after."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fabnode.cli import app, exits
from fabnode.paths import secret_file_path, usage_db_path
from fabnode.records import members as access
from fabnode.records.usage import UsageLog
from tests.conftest import REPO

DATA = REPO / "tests" / "data" / "fab_manager"
TOKEN = "t0kenFromFabManagerBase58xyz"
runner = CliRunner()

Json = Any


def fixture(name: str) -> Json:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# --- a Fab-manager on loopback -------------------------------------------------------------------


@dataclass
class FabManager:
    """What the fake serves: the three indexes, and faults to inject."""

    trainings: Json = field(default_factory=lambda: fixture("trainings.json"))
    users: Json = field(default_factory=lambda: fixture("users.json"))
    user_trainings: Json = field(default_factory=lambda: fixture("user_trainings.json"))
    token: str = TOKEN
    hang: threading.Event | None = None  # set: answers hang until the event is set (a slow server)
    raw: dict[str, bytes] = field(default_factory=dict)  # path -> body served as is (a malformed page)
    redirect: str | None = None  # every answer a 302 to there
    requests: list[str] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        if path in self.raw:
            return 200, {}, self.raw[path]
        if path == "/open_api/v1/trainings":
            return 200, {}, json.dumps(self.trainings).encode()
        if path == "/open_api/v1/users":
            return self._paginated("users", self.users, query)
        if path == "/open_api/v1/user_trainings":
            doc = copy.deepcopy(self.user_trainings)
            wanted = {int(v) for v in query.get("training_id[]", [])}
            if wanted and isinstance(doc["user_trainings"], list):
                doc["user_trainings"] = [u for u in doc["user_trainings"] if u["training_id"] in wanted]
            return self._paginated("user_trainings", doc, query)
        return 404, {}, json.dumps({"errors": ["Not found"]}).encode()

    @staticmethod
    def _paginated(key: str, doc: Json, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        items = doc[key]
        if "page" not in query or not isinstance(items, list):  # everything without ?page=
            return 200, {}, json.dumps(doc).encode()
        page, per_page = int(query["page"][0]), int(query.get("per_page", ["20"])[0])
        doc = {**doc, key: items[(page - 1) * per_page:page * per_page]}
        last = max(1, -(-len(items) // per_page))
        # api-pagination's headers (Rails::Pagination): Link, Total, Per-Page.
        links = ['<http://x/?page=1>; rel="first"', f'<http://x/?page={last}>; rel="last"']
        if page < last:
            links.append(f'<http://x/?page={page + 1}>; rel="next"')
        headers = {"Link": ", ".join(links), "Total": str(len(items)), "Per-Page": str(per_page)}
        return 200, headers, json.dumps(doc).encode()


@pytest.fixture
def fab() -> Iterator[tuple[FabManager, str]]:
    state = FabManager()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if state.hang is not None:
                state.hang.wait(30)
                return
            if state.redirect is not None:
                self._send(302, {"Location": state.redirect}, b"")
                return
            if self.headers.get("Authorization") != f"Token token={state.token}":
                self._send(401, {}, json.dumps({"errors": ["Bad credentials"]}).encode())
                return
            parts = urllib.parse.urlsplit(self.path)
            self._send(*state.answer(parts.path, urllib.parse.parse_qs(parts.query)))

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        if state.hang is not None:
            state.hang.set()
        server.shutdown()
        server.server_close()


# --- a node of the lab ---------------------------------------------------------------------------


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FABNODE_CONFIG", "FABNODE_SECRET_FILE", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("FABNODE_STATE_DIR", str(state))
    return state


def cli(*args: str, stdin: bytes | None = None) -> Any:
    return runner.invoke(app, list(args), input=stdin)


def files(tmp_path: Path) -> tuple[Path, Path]:
    token = tmp_path / "fab-manager.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return token, DATA / "machines.toml"


# --- the lab secret ------------------------------------------------------------------------------


def test_secret_export_is_0600_and_imports_onto_a_node_without_a_secret(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    secret = os.urandom(32)
    (a / "secret.key").write_bytes(secret)
    export = tmp_path / "lab.secret"
    out = cli("lab", "secret", "--export", str(export), "--state-dir", str(a))
    assert out.exit_code == 0, out.output
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert secret.hex() not in out.output and secret.hex() not in export.read_text()
    again = cli("lab", "secret", "--export", str(export), "--state-dir", str(a))
    assert again.exit_code == exits.FAILED and "exists" in again.stderr
    got = cli("lab", "secret", "--import", str(export), "--state-dir", str(b))
    assert got.exit_code == 0, got.output
    assert (b / "secret.key").read_bytes() == secret
    assert stat.S_IMODE((b / "secret.key").stat().st_mode) == 0o600
    same = cli("lab", "secret", "--import", str(export), "--state-dir", str(b))
    assert same.exit_code == 0 and "nothing changed" in same.stdout


def test_secret_import_refuses_a_different_secret_without_force(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "secret.key").write_bytes(b"A" * 32)
    (b / "secret.key").write_bytes(b"B" * 32)
    (b / "secret.key").chmod(0o640)
    export = tmp_path / "lab.secret"
    assert cli("lab", "secret", "--export", str(export), "--state-dir", str(a)).exit_code == 0
    refused = cli("lab", "secret", "--import", str(export), "--state-dir", str(b))
    assert refused.exit_code == exits.FAILED
    assert refused.stderr.startswith("fabnode: ") and "different lab secret" in refused.stderr
    assert "--force" in refused.stderr and (b / "secret.key").read_bytes() == b"B" * 32
    forced = cli("lab", "secret", "--import", str(export), "--force", "--state-dir", str(b))
    assert forced.exit_code == 0, forced.output
    assert (b / "secret.key").read_bytes() == b"A" * 32
    assert stat.S_IMODE((b / "secret.key").stat().st_mode) == 0o640  # the installer's mode is kept


def test_secret_import_refuses_a_world_readable_file_and_a_damaged_one(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "secret.key").write_bytes(os.urandom(32))
    export = tmp_path / "lab.secret"
    assert cli("lab", "secret", "--export", str(export), "--state-dir", str(a)).exit_code == 0
    export.chmod(0o644)
    refused = cli("lab", "secret", "--import", str(export), "--state-dir", str(b))
    assert refused.exit_code == exits.USAGE
    assert f"--import {export} is readable by every user" in refused.stderr
    assert not (b / "secret.key").exists()
    export.chmod(0o600)
    text = export.read_text()
    export.write_text(text[:-6] + "\n")  # cut short
    damaged = cli("lab", "secret", "--import", str(export), "--state-dir", str(b))
    assert damaged.exit_code == exits.USAGE and f"{export}: line 1:" in damaged.stderr
    assert not (b / "secret.key").exists()


def test_secret_moves_through_a_pipe(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    secret = os.urandom(32)
    (a / "secret.key").write_bytes(secret)
    out = cli("lab", "secret", "--export", "-", "--state-dir", str(a))
    assert out.exit_code == 0, out.output
    got = cli("lab", "secret", "--import", "-", "--state-dir", str(b), stdin=out.stdout_bytes)
    assert got.exit_code == 0, got.output
    assert (b / "secret.key").read_bytes() == secret


def test_secret_wants_one_of_export_or_import(tmp_path: Path) -> None:
    assert cli("lab", "secret", "--state-dir", str(tmp_path)).exit_code == exits.USAGE
    missing = cli("lab", "secret", "--export", str(tmp_path / "x"), "--state-dir", str(tmp_path / "none"))
    assert missing.exit_code == exits.FAILED and "no lab secret at" in missing.stderr


# --- Fab-manager sync ----------------------------------------------------------------------------


def enrol(node: Path) -> None:
    """The lab's members as enrolled at the lab: badges here, contacts for matching Fab-manager."""
    ada = ["Ada Lovelace", "--badge", "04a22b1c", "--fab-manager-id", "102", "--email", "ada@old.example"]
    for args in (ada,
                 ["Grace Hopper", "--badge", "04a22b1d", "--email", "grace.hopper@example.org"],
                 ["Alan Turing", "--badge", "04a22b1e", "--email", "ALAN@example.org"],
                 ["Linus", "--badge", "04a22b1f"]):
        result = cli("members", "add", *args, "--new-lab")
        assert result.exit_code == 0, result.output
    for args in (["Alan Turing", "laser-1"], ["Linus", "prusa-1"]):  # granted by hand at the lab
        assert cli("members", "grant", *args).exit_code == 0


def trainings(node: Path) -> dict[str, dict[str, str | None]]:
    listed = cli("members", "list", "--json")
    assert listed.exit_code == 0, listed.output
    return {m["name"]: {t["machine"]: t["until"] for t in m["trainings"]} for m in json.loads(listed.stdout)}


def look(node: Path) -> tuple[str, str]:
    """What a technician compares before and after: the digest and the whole listing."""
    digest = cli("members", "digest")
    assert digest.exit_code == 0, digest.output
    listed = cli("members", "list", "--json", "--all")
    return digest.stdout, listed.stdout


def sync(url: str, tmp_path: Path, *extra: str) -> Any:
    token, machines = files(tmp_path)
    return cli("lab", "sync", "fab-manager", "--url", url, "--token-file", str(token),
               "--machines", str(machines), *extra)


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    from fabnode.directory import fab_manager

    monkeypatch.setattr(fab_manager, "PER_PAGE", 2)  # every index spans several pages


def test_sync_imports_trainings_with_their_validity(node: Path, tmp_path: Path, fab: tuple[FabManager, str],
                                                    small_pages: None) -> None:
    state, url = fab
    enrol(node)
    result = sync(url, tmp_path)
    assert result.exit_code == 0, result.output
    got = trainings(node)
    # Ada by her stored Fab-manager id (her e-mail there is another), Grace by e-mail (case aside).
    assert got["Ada Lovelace"] == {"prusa-1": "2044-05-03", "prusa-2": "2044-05-03"}  # 2024-05-03 + 240 mo.
    assert got["Grace Hopper"] == {"prusa-1": "2044-06-11", "prusa-2": "2044-06-11", "shaper-1": None}
    assert got["Alan Turing"] == {}  # validated 2020-02-10, valid 12 months: expired, the hand grant revoked
    assert got["Linus"] == {"prusa-1": None}  # no Fab-manager user: the lab's own grant stays
    assert "2 members linked by e-mail" in result.stdout and "1 validation past valid_months" in result.stdout
    # Camille (104) has a validation but no member; the deleted account (user_id null) is no one.
    assert "1 Fab-manager user with mapped trainings, matching no member (ignored" in result.stderr
    assert "user ids 104)" in result.stderr
    # Every page was asked for with the token's header, the validations only for mapped trainings.
    pages = [p for p in state.requests if p.startswith("/open_api/v1/users?")]
    assert len(pages) == 3 and all("per_page=2" in p for p in pages)
    validations = [p for p in state.requests if p.startswith("/open_api/v1/user_trainings?")]
    assert all("training_id%5B%5D=1&training_id%5B%5D=2&training_id%5B%5D=7" in p for p in validations)
    before = look(node)
    again = sync(url, tmp_path)
    assert again.exit_code == 0
    assert "changed: 0 trainings granted, 0 revoked, 0 members linked" in again.stdout
    assert look(node) == before  # a run that changes nothing writes nothing


def test_a_member_linked_by_e_mail_stays_matched_by_id(node: Path, tmp_path: Path,
                                                       fab: tuple[FabManager, str]) -> None:
    state, url = fab
    enrol(node)
    assert sync(url, tmp_path).exit_code == 0
    # In Fab-manager Grace changes her address, and her milling training is withdrawn.
    grace = next(u for u in state.users["users"] if u["id"] == 103)
    grace["email"] = "grace@elsewhere.example"
    validations = state.user_trainings["user_trainings"]
    state.user_trainings["user_trainings"] = [u for u in validations if u["id"] != 905]
    result = sync(url, tmp_path)
    assert result.exit_code == 0, result.output
    assert trainings(node)["Grace Hopper"] == {"prusa-1": "2044-06-11", "prusa-2": "2044-06-11"}
    assert "revoke 'Grace Hopper' shaper-1" in result.stdout


def test_dry_run_changes_nothing(node: Path, tmp_path: Path, fab: tuple[FabManager, str]) -> None:
    _, url = fab
    enrol(node)
    before = look(node)
    result = sync(url, tmp_path, "--dry-run")
    assert result.exit_code == 0 and "would change: 5 trainings granted" in result.stdout
    assert look(node) == before


def test_dry_run_leaves_members_enrolled_before_the_directory_as_they_were(
        node: Path, tmp_path: Path, fab: tuple[FabManager, str]) -> None:
    _, url = fab
    enrol(node)
    with UsageLog.open(usage_db_path(node)) as log:  # as a node enrolled before the lab directory did
        access.add_member(log.db, access.load_secret(secret_file_path(node)), "Edsger Dijkstra", "04a22b20",
                          now=datetime.now(UTC))  # fmt: skip
    assert sync(url, tmp_path, "--dry-run").exit_code == 0
    with UsageLog.open(usage_db_path(node)) as log:
        rows = log.db.execute("SELECT directory_id FROM members WHERE name = 'Edsger Dijkstra'").fetchall()
    assert rows == [(None,)]  # not brought into the directory by a run that promised to change nothing


def break_users_page(state: FabManager) -> None:
    state.raw["/open_api/v1/users"] = b'{"users": [{"id": 101, "email": "alan@exa'


@pytest.mark.parametrize(("spoil", "field"), [
    (break_users_page, "/open_api/v1/users?page=1&per_page=2: body: not JSON"),
    (lambda s: s.users["users"][3].pop("email"), "users?page=2&per_page=2: users[1].email: missing"),
    (lambda s: s.users["users"][0].update(id="104"), "users[0].id: '104' is not an integer id"),
    (lambda s: s.users["users"][0].update(id=10**30), "users[0].id: 10000000000000000000000000000"),
    (lambda s: s.users["users"][2].update(id=-3), "users[0].id: -3 is out of range"),
    (lambda s: s.user_trainings.update(user_trainings={"id": 1}), "user_trainings: dict where a list was"),
    (lambda s: s.user_trainings["user_trainings"][5].update(created_at="yesterday"),
     "user_trainings[1].created_at: 'yesterday' is not a timestamp"),
    (lambda s: s.user_trainings["user_trainings"][5].update(created_at="9999-01-01T00:00:00+00:00"),
     "user_trainings[1].created_at: '9999-01-01T00:00:00+00:00' is outside 1990-2200"),
    (lambda s: s.trainings.pop("trainings"), "/open_api/v1/trainings: trainings: missing"),
])
def test_a_malformed_page_changes_nothing_and_says_where(
        node: Path, tmp_path: Path, fab: tuple[FabManager, str], small_pages: None,
        spoil: Callable[[FabManager], object], field: str) -> None:
    state, url = fab
    enrol(node)
    before = look(node)
    spoil(state)
    result = sync(url, tmp_path)
    assert result.exit_code == exits.FAILED, result.output
    assert result.stderr.startswith(f"fabnode: {url}/open_api/v1/")
    assert field in result.stderr and "nothing was changed" in result.stderr
    assert look(node) == before


def test_unauthorized_changes_nothing(node: Path, tmp_path: Path, fab: tuple[FabManager, str]) -> None:
    state, url = fab
    enrol(node)
    before = look(node)
    state.token = "another-token"
    result = sync(url, tmp_path)
    assert result.exit_code == exits.FAILED
    assert f"fabnode: {url}/open_api/v1/trainings: 401 Unauthorized" in result.stderr
    assert look(node) == before


def test_a_slow_fab_manager_changes_nothing(node: Path, tmp_path: Path, fab: tuple[FabManager, str]) -> None:
    state, url = fab
    enrol(node)
    before = look(node)
    state.hang = threading.Event()
    result = sync(url, tmp_path, "--timeout", "0.3")
    assert result.exit_code == exits.FAILED
    assert f"fabnode: {url}/open_api/v1/trainings: no answer within 0.3 s" in result.stderr
    assert look(node) == before


def test_a_fab_manager_that_is_down_changes_nothing(node: Path, tmp_path: Path) -> None:
    enrol(node)
    before = look(node)
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}"
        result = sync(url, tmp_path)
    assert result.exit_code == exits.FAILED
    assert f"fabnode: {url}/open_api/v1/trainings: cannot connect" in result.stderr
    assert "refused" in result.stderr.lower()
    assert look(node) == before


def test_a_map_naming_a_training_fab_manager_lacks_is_refused_with_its_line(
        node: Path, tmp_path: Path, fab: tuple[FabManager, str]) -> None:
    _, url = fab
    enrol(node)
    before = look(node)
    machines = tmp_path / "map.toml"
    machines.write_text('[training.imprimante-3d]\nmachines = ["prusa-1"]\n\n'
                        '[training.soudure]\nmachines = ["x"]\n')
    token, _ = files(tmp_path)
    result = cli("lab", "sync", "fab-manager", "--url", url, "--token-file", str(token),
                 "--machines", str(machines))
    assert result.exit_code == exits.USAGE
    assert f"fabnode: {machines}: line 4: [training.soudure]: {url}/open_api/v1/trainings has no training" \
        in result.stderr
    assert look(node) == before


@pytest.mark.parametrize(("text", "message"), [
    ('[training.a]\nmachines = "laser-1"\n', "line 2: [training.a] machines: a list of 1 to 256"),
    ('[training.a]\nmachines = ["Laser 1"]\n', "line 2: [training.a] machines: 'Laser 1' is no machine name"),
    ('[training.a]\nmachines = ["l"]\nvalid_months = 1e9\n', "line 3: [training.a] valid_months: 1000000000"),
    ('[training.a]\nmachines = ["l"]\nvalid_month = 3\n', "line 3: [training.a] valid_month: unknown key"),
    ('[training.a]\nmachines = ["l"\n', "machines.toml: "),
    ('[trainings.a]\nmachines = ["l"]\n', "line 1: unknown key 'trainings'"),
])
def test_map_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    machines = tmp_path / "machines.toml"
    machines.write_text(text)
    token, _ = files(tmp_path)
    result = cli("lab", "sync", "fab-manager", "--url", "http://127.0.0.1:9", "--token-file", str(token),
                 "--machines", str(machines))
    assert result.exit_code == exits.USAGE, result.output
    assert f"fabnode: {machines}: " in result.stderr and message in result.stderr


def test_a_token_file_every_user_may_read_is_refused(tmp_path: Path) -> None:
    token, machines = files(tmp_path)
    token.chmod(0o644)
    result = cli("lab", "sync", "fab-manager", "--url", "http://127.0.0.1:9", "--token-file", str(token),
                 "--machines", str(machines))
    assert result.exit_code == exits.USAGE and "is readable by every user" in result.stderr


@pytest.mark.parametrize(("totals", "message"), [
    (["3", "4"], "Total header: went from 3 to 4 while the pages were read"),
    (["5", "5"], "Total header: says 5 but the pages held 3"),
    (["99999999999", "3"], "Total header: '99999999999' is not a count"),
])
def test_pages_whose_total_drifts_or_is_absurd_are_refused(monkeypatch: pytest.MonkeyPatch, totals: list[str],
                                                           message: str) -> None:
    from fabnode.directory import fab_manager

    monkeypatch.setattr(fab_manager, "PER_PAGE", 2)
    pages = [{"users": [{"id": 1, "email": None}, {"id": 2, "email": None}]},
             {"users": [{"id": 3, "email": None}]}]

    def get(url: str) -> fab_manager.Response:
        page = int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["page"][0])
        return fab_manager.Response(200, {"Total": totals[page - 1]}, json.dumps(pages[page - 1]).encode())

    with pytest.raises(fab_manager.FabManagerError, match=re.escape(message)):
        fab_manager.read_pages(get, "http://fm", "/open_api/v1/users", "users")


def test_a_redirect_is_not_followed_and_a_huge_page_is_cut(
        node: Path, tmp_path: Path, fab: tuple[FabManager, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from fabnode.directory import fab_manager_http

    state, url = fab
    enrol(node)
    before = look(node)
    state.redirect = "http://elsewhere.example/open_api/v1/trainings"
    moved = sync(url, tmp_path)
    assert moved.exit_code == exits.FAILED
    assert f"{url}/open_api/v1/trainings: redirected (302) to http://elsewhere.example/" in moved.stderr
    assert len(state.requests) == 1  # the token went nowhere else
    state.redirect = None
    monkeypatch.setattr(fab_manager_http, "MAX_BODY", 500)  # the client reads its own cap
    huge = sync(url, tmp_path)
    assert huge.exit_code == exits.FAILED
    assert f"{url}/open_api/v1/trainings: body: more than 500 bytes; nothing was changed" in huge.stderr
    assert look(node) == before


def test_a_deleted_fab_manager_account_loses_the_mapped_machines(node: Path, tmp_path: Path,
                                                                 fab: tuple[FabManager, str]) -> None:
    state, url = fab
    enrol(node)
    assert sync(url, tmp_path).exit_code == 0
    assert trainings(node)["Ada Lovelace"] == {"prusa-1": "2044-05-03", "prusa-2": "2044-05-03"}
    # Ada's account is deleted in Fab-manager: gone from users, her validation without a user.
    state.users["users"] = [u for u in state.users["users"] if u["id"] != 102]
    for validation in state.user_trainings["user_trainings"]:
        if validation["user_id"] == 102:
            validation["user_id"] = None
            del validation["user"]
    result = sync(url, tmp_path)
    assert result.exit_code == 0, result.output
    assert trainings(node)["Ada Lovelace"] == {}
    assert trainings(node)["Linus"] == {"prusa-1": None}


# --- the timer the installer adds ----------------------------------------------------------------


def test_the_installer_adds_the_sync_timer_and_keeps_it_on_update(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (tmp_path / "model").write_bytes(b"\0")
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "FABNODE_ROOT", "SUDO_USER")}
    env["FABNODE_MODEL_FILE"] = str(tmp_path / "model")

    def install(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["bash", str(REPO / "scripts" / "install-pi.sh"), "--root", str(root), "--no-pip", "--python",
                sys.executable, *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=50, check=False)

    first = install("--fab-manager-url", "https://fablab.example.org")
    assert first.returncode == 0, first.stdout + first.stderr
    units = root / "etc" / "systemd" / "system"
    for unit in ("fabnode-lab-sync.service", "fabnode-lab-sync.timer"):
        assert (units / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()
    env_file = root / "etc" / "fabnode" / "fab-manager.env"
    assert "FAB_MANAGER_URL=https://fablab.example.org\n" in env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    assert "skipped: systemctl enable fabnode-lab-sync.timer" in first.stdout
    update = install()
    assert update.returncode == 0 and (units / "fabnode-lab-sync.timer").exists()
    assert env_file.read_text().count("FAB_MANAGER_URL=") == 1
    bad = install("--fab-manager-url", "fablab.example.org")
    assert bad.returncode != 0 and "use https://HOST" in bad.stderr
    gone = install("--uninstall")
    assert gone.returncode == 0 and not (units / "fabnode-lab-sync.timer").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_sync_units_verify_and_the_service_is_sandboxed(tmp_path: Path) -> None:
    service = REPO / "systemd" / "fabnode-lab-sync.service"
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(service)], capture_output=True,
                         text=True, timeout=60, check=False)
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    if level is None:
        pytest.skip(f"systemd-analyze security --offline is not available here: {out.stderr[:200]}")
    assert float(level.group(1)) <= 2.0, out.stdout
    verify = subprocess.run(["systemd-analyze", "verify", str(service), str(service.with_suffix(".timer"))],
                            capture_output=True, text=True, timeout=60, check=False)
    # Off a Pi the fabnode binary is not installed; any other complaint is a broken unit.
    problems = [line for line in verify.stderr.splitlines()
                if line.strip() and "/usr/local/bin/fabnode" not in line and "Command" not in line]
    assert problems == [], verify.stderr
