"""`fabnode lab ...`: what the nodes of a lab share: moving the lab secret, and Fab-manager's trainings.

The lab secret keys the badge hashes and seals the lab directory: a node with another secret neither
knows the lab's badges nor reads its directory. `secret --export`/`--import` move it without ever
leaving it readable by others (0600 files, or a pipe through ssh: see README.md, "The lab secret").
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import sqlite3
import stat
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from fabnode.cli import exits
from fabnode.cli.members import directory_context
from fabnode.cli.usage import StateDirOption
from fabnode.directory import fab_manager
from fabnode.directory import members as lab_members
from fabnode.directory.store import LabDirectory
from fabnode.paths import resolve_state_dir, secret_file_path, usage_db_path
from fabnode.records.members import AccessError

MAGIC = "fabnode-lab-secret-v1"
MIN_SECRET, MAX_SECRET = 16, 4096  # records.members refuses a secret shorter than 16 bytes


# --- the lab secret ----------------------------------------------------------------------------


def export_text(secret: bytes) -> bytes:
    """The export format: one line, magic, base64 of the secret and a check of 8 hex digits."""
    check = hashlib.sha256(secret).hexdigest()[:8]
    return f"{MAGIC} {base64.b64encode(secret).decode()} {check}\n".encode()


def parse_export(data: bytes, name: str) -> bytes:
    """The secret in an export file (or in a plain copy of a node's secret.key); ValueError says why."""
    if data.startswith(MAGIC.encode()):
        words = data.decode("ascii", "replace").split()
        if len(words) != 3:
            raise ValueError(f"{name}: line 1: expected '{MAGIC} SECRET CHECK' (was it cut short?)")
        try:
            secret = base64.b64decode(words[1], validate=True)
        except ValueError:
            raise ValueError(f"{name}: line 1: the secret is not base64 (was it changed?)") from None
        if not hmac.compare_digest(hashlib.sha256(secret).hexdigest()[:8], words[2]):
            raise ValueError(f"{name}: line 1: the check {words[2]!r} does not match (changed or cut?)")
    else:
        secret = data  # a copy of secret.key itself
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise ValueError(f"{name}: {len(secret)} bytes is no lab secret ({MIN_SECRET}-{MAX_SECRET} expected)")
    return secret


def _read_import(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read(MAX_SECRET * 2 + 200)
    path = Path(source)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        exits.fail(f"--import {path}: cannot open it ({exc.strerror or exc})", exits.USAGE)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            exits.fail(f"--import {path}: not a regular file", exits.USAGE)
        if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
            exits.fail(f"--import {path} is readable by every user (mode {stat.filemode(st.st_mode)}): the "
                       "secret may have been read; make a new export on a node of the lab and keep it 0600 "
                       "(chmod 600), or pipe it over ssh (README.md, 'The lab secret')", exits.USAGE)
        return f.read(MAX_SECRET * 2 + 200)


def _write_export(target: str, secret: bytes, force: bool) -> None:
    text = export_text(secret)
    if target == "-":
        if sys.stdout.isatty():
            exits.fail("--export -: stdout is a terminal; pipe it (ssh other-node fabnode lab secret "
                       "--import -) or give a FILE", exits.USAGE)
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        return
    path = Path(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        exits.fail(f"--export {path}: the file exists; give a new name (or --force to overwrite it)",
                   exits.FAILED)
    except OSError as exc:
        exits.fail(f"--export {path}: cannot create it ({exc.strerror or exc})", exits.USAGE)
    try:
        os.fchmod(fd, 0o600)  # an overwritten file keeps its old mode otherwise
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)


def _enrolled_members(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT count(*) FROM members WHERE removed IS NULL").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def install_secret(path: Path, secret: bytes, replace: bool) -> None:
    """Write the lab secret atomically: 0600 (an existing file's mode and group are kept)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = path.stat() if replace and path.exists() else None
    fd, tmp = tempfile.mkstemp(prefix=".secret-", dir=path.parent)  # mkstemp creates it 0600
    try:
        if old is not None:
            os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o640)  # never more than owner rw + group r
            with contextlib.suppress(OSError):  # a group we are not in: the file stays ours
                os.fchown(fd, -1, old.st_gid)
        os.write(fd, secret)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if a secret appeared meanwhile: it is not overwritten
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _import(source: str, folder: Path, force: bool) -> None:
    name = "stdin" if source == "-" else source
    try:
        secret = parse_export(_read_import(source), name)
    except ValueError as exc:
        exits.fail(str(exc), exits.USAGE)
    path = secret_file_path(folder)
    try:
        current = path.read_bytes() if path.exists() else None
    except OSError as exc:
        exits.fail(f"{path}: cannot read this node's secret ({exc.strerror or exc})", exits.FAILED)
    if current is not None and hmac.compare_digest(current, secret):
        typer.echo(f"{path} already holds this lab secret; nothing changed")
        return
    if current is not None and not force:
        members = _enrolled_members(usage_db_path(folder))
        exits.fail(f"{path} holds a different lab secret (this node belongs to another lab, or was started "
                   f"on its own; {members} members enrolled here): nothing changed. If this node is to join "
                   "the lab of the imported secret, add --force; badges enrolled here with the old secret "
                   "then stop working", exits.FAILED)
    try:
        install_secret(path, secret, replace=current is not None)
    except FileExistsError:
        exits.fail(f"{path} appeared while importing (another command?): nothing changed; run again",
                   exits.FAILED)
    except OSError as exc:
        exits.fail(f"{path}: cannot write the secret ({exc.strerror or exc})", exits.FAILED)
    if current is not None:
        members = _enrolled_members(usage_db_path(folder))
        if members:
            exits.error(f"{members} members enrolled on this node with the old secret: their badges no "
                        "longer match here; the lab's directory brings the lab's members")
    typer.echo(f"imported the lab secret into {path}; restart the daemon (sudo systemctl restart fabnode) "
               "and delete the export file (shred -u FILE)")


def _register_secret(lab: typer.Typer) -> None:
    @lab.command("secret", epilog=exits.help_text(exits.OK, exits.FAILED, exits.USAGE))
    def secret(
        export: Annotated[str | None, typer.Option(
            "--export", metavar="FILE", help="Write the lab secret to FILE (created 0600; '-' for stdout, "
            "to pipe it over ssh).")] = None,
        import_: Annotated[str | None, typer.Option(
            "--import", metavar="FILE", help="Make FILE's secret this node's lab secret ('-' for stdin); a "
            "file readable by every user is refused.")] = None,
        force: Annotated[bool, typer.Option(
            "--force", help="--import: replace a different secret this node has; --export: overwrite FILE.")
        ] = False,
        state_dir: StateDirOption = None,
    ) -> None:
        """Move the lab secret between the nodes of a lab (see README.md, 'The lab secret')."""
        if (export is None) == (import_ is None):
            exits.fail("give one of --export FILE or --import FILE", exits.USAGE)
        folder = resolve_state_dir(state_dir)
        if import_ is not None:
            _import(import_, folder, force)
            return
        path = secret_file_path(folder)
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            exits.fail(f"no lab secret at {path}: give the node's --state-dir (or FABNODE_STATE_DIR); a new "
                       "lab starts with `fabnode members add ... --new-lab`", exits.FAILED)
        except OSError as exc:
            exits.fail(f"{path}: cannot read it ({exc.strerror or exc})", exits.FAILED)
        if not MIN_SECRET <= len(current) <= MAX_SECRET:
            exits.fail(f"{path}: a lab secret of {len(current)} bytes; expected {MIN_SECRET} to {MAX_SECRET}",
                       exits.FAILED)
        _write_export(str(export), current, force)
        if export != "-":
            exits.error(f"wrote the lab secret to {export} (0600): move it to the other node without copies "
                        "(scp, or a USB stick you wipe), import it there, then shred -u it")



# --- Fab-manager ---------------------------------------------------------------------------------


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        exits.fail(f"--token-file {path}: cannot open it ({exc.strerror or exc})", exits.USAGE)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_mode & stat.S_IROTH:
            exits.fail(f"--token-file {path} is readable by every user (mode {stat.filemode(st.st_mode)}): "
                       f"chmod 640 {path}, and make a new token in Fab-manager (OpenAPI clients)",
                       exits.USAGE)
        data = f.read(4097)
    token = data.decode("utf-8", "replace").strip()
    if not token or len(data) > 4096 or any(c.isspace() or ord(c) < 33 for c in token):
        exits.fail(f"--token-file {path}: expected the OpenAPI client's token alone on one line", exits.USAGE)
    return token


def _member_views(directory: LabDirectory) -> list[fab_manager.MemberView]:
    """The members in force with their contact and granted trainings (the directory's projection)."""
    granted: dict[int, dict[str, date | None]] = {}
    for row in directory.db.query("SELECT member_id, machine, until FROM trainings"):
        until = date.fromisoformat(row["until"]) if row["until"] else None
        granted.setdefault(int(row["member_id"]), {})[str(row["machine"])] = until
    return [
        fab_manager.MemberView(str(r["name"]), r["email"], r["fab_manager_id"], granted.get(int(r["id"]), {}))
        for r in directory.db.query("SELECT id, name, email, fab_manager_id FROM members "
                                    "WHERE removed IS NULL ORDER BY name")
    ]


def _apply(directory: LabDirectory, plan: fab_manager.SyncPlan, now: datetime) -> None:
    """Every change of the plan in one transaction: a change the directory refuses undoes them all."""
    with directory.batch():
        for link in plan.links:
            lab_members.set_contact(directory, link.member, now=now, fab_manager_id=link.fab_manager_id)
        for grant in plan.grants:
            lab_members.grant_training(directory, grant.member, grant.machine, grant.until, now=now)
        for revoke in plan.revokes:
            lab_members.revoke_training(directory, revoke.member, revoke.machine, now=now)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _report(url: str, plan: fab_manager.SyncPlan, dry_run: bool) -> None:
    verb = "would change" if dry_run else "changed"
    granted, linked = _count(len(plan.grants), "training"), _count(len(plan.links), "member")
    typer.echo(f"{url}: {_count(plan.matched, 'member')} matched; {verb}: {granted} granted, "
               f"{len(plan.revokes)} revoked, {linked} linked by e-mail"
               + (f"; {_count(plan.expired, 'validation')} past valid_months" if plan.expired else ""))
    for grant in plan.grants:
        until = f" until {grant.until.isoformat()}" if grant.until else ""
        typer.echo(f"  grant  {grant.member!r} {grant.machine}{until}")
    for revoke in plan.revokes:
        typer.echo(f"  revoke {revoke.member!r} {revoke.machine}")
    for link in plan.links:
        typer.echo(f"  link   {link.member!r} to Fab-manager user {link.fab_manager_id}")
    for reason in plan.ambiguous:
        exits.error(f"not matched: {reason}")
    unknown = plan.unknown_users
    if unknown:
        ids = ", ".join(str(i) for i in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
        exits.error(f"{_count(len(unknown), 'Fab-manager user')} with mapped trainings, matching no member "
                    f"(ignored; user ids {ids}): enrol them with `fabnode members add NAME --badge UID "
                    "--email ADDRESS` (or --fab-manager-id ID)")


SYNC_HELP = (
    "Import Fab-manager's trainings and their validity into the lab directory.\n\n"
    "Members are matched by the Fab-manager user id stored with them, else by e-mail; badges stay "
    "enrolled at the lab. Every page is read and checked first: a Fab-manager that is down, slow, "
    "refuses the token or sends a bad page changes nothing (exit 1). README.md, 'Fab-manager'.\n\n"
    + fab_manager.MAP_HELP
)
UrlOption = Annotated[str, typer.Option("--url", help="The Fab-manager's address (https://fablab.example.org).")]
TokenOption = Annotated[Path, typer.Option(
    "--token-file", help="A file holding the token of one of its OpenAPI clients (not readable by all).")]
MapOption = Annotated[Path, typer.Option(
    "--machines", metavar="MAP.toml", help="Which Fab-manager training opens which fabnode machine.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait per answer (0.05-600).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Say what would change; change nothing.")]


def _register_sync(lab: typer.Typer) -> None:
    sync = typer.Typer(help="Import trainings from the lab's member system into the lab directory.",
                       no_args_is_help=True)

    @sync.command("fab-manager", help=SYNC_HELP, epilog=exits.help_text(exits.OK, exits.FAILED, exits.USAGE))
    def fab_manager_cmd(url: UrlOption, token_file: TokenOption, machines: MapOption,
                        timeout: TimeoutOption = 10.0, dry_run: DryRunOption = False,
                        state_dir: StateDirOption = None) -> None:
        try:
            base = fab_manager.check_base_url(url)
            client = fab_manager.HttpClient(_read_token(token_file), timeout_s=timeout)
            machine_map = fab_manager.read_map(machines)
        except (ValueError, fab_manager.MapError) as exc:
            exits.fail(str(exc), exits.USAGE)
        if not fab_manager.private_transport(base):
            exits.error(f"warning: {base} is plain http: the token and members' e-mails cross the network "
                        "unencrypted; use https")
        with directory_context(state_dir, adopt=not dry_run) as (directory, _):
            try:
                data = fab_manager.read_all(client, base, machine_map)
            except fab_manager.FabManagerError as exc:
                exits.fail(str(exc), exits.FAILED)
            except fab_manager.MapError as exc:
                exits.fail(str(exc), exits.USAGE)
            try:
                # Planned and applied in one transaction: nothing another writer does gets in between.
                with contextlib.nullcontext() if dry_run else directory.batch():
                    plan = fab_manager.plan_sync(base, machine_map, data.trainings, data.users,
                                                 data.user_trainings, _member_views(directory), date.today())
                    if not dry_run:
                        _apply(directory, plan, datetime.now(UTC))
            except AccessError as exc:
                exits.fail(f"the directory refused a change ({exc}): nothing was changed", exits.FAILED)
        _report(base, plan, dry_run)

    lab.add_typer(sync, name="sync")


def register(app: typer.Typer) -> None:
    """Add the `lab` group to the app."""
    lab = typer.Typer(help="What the lab's nodes share: the lab secret, and trainings from Fab-manager.",
                      no_args_is_help=True)
    _register_secret(lab)
    _register_sync(lab)
    app.add_typer(lab, name="lab")
