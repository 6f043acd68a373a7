"""`fabnode members ...` through the real command and a real state dir: every change is a directory
entry, `digest` shows it, `remove --erase` leaves only the pseudonymous hash."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

UID = "04:A2:2B:1C"


def fabnode(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABNODE_")}
    return subprocess.run([sys.executable, "-m", "fabnode", *args, "--state-dir", str(state)],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip


def test_add_grant_revoke_digest_and_erase(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = fabnode(state, "members", "add", "Ada", "--badge", UID, "--new-lab", "--email", "ada@example.org")
    assert r.returncode == 0, r.stderr
    empty_digest = None
    first = fabnode(state, "members", "digest")
    assert first.returncode == 0 and first.stdout.endswith("(4 entries)\n"), first.stdout
    assert fabnode(state, "members", "grant", "Ada", "printer", "--until", "2030-01-31").returncode == 0
    second = fabnode(state, "members", "digest").stdout.split()[0]
    assert second != first.stdout.split()[0] != empty_digest
    r = fabnode(state, "members", "revoke", "Ada", "laser")
    assert (r.returncode, r.stderr.strip()) == (1, "fabnode: member 'Ada' has no training on 'laser'")
    assert fabnode(state, "members", "revoke", "Ada", "printer").returncode == 0
    db = sqlite3.connect(state / "usage.db")
    fields = [f for (f,) in db.execute("SELECT field FROM directory_state ORDER BY field")]
    assert fields == ["badge", "email", "name", "role", "training:printer"]
    assert db.execute("SELECT count(*) FROM directory_outbox WHERE published IS NULL").fetchone() == (6,)
    db.close()
    r = fabnode(state, "members", "remove", "Ada", "--erase")
    assert (r.returncode, r.stdout.strip()) == (0, "erased 'Ada': only the pseudonymous hash stays")
    assert fabnode(state, "members", "list", "--json", "--all").stdout.count("Ada") == 0
    assert b"ada@example.org" not in (state / "usage.db").read_bytes()
    r = fabnode(state, "members", "grant", "Ada", "printer")
    assert (r.returncode, r.stderr.strip()) == (1, "fabnode: no member named 'Ada'")


def test_changes_without_a_lab_secret_are_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert fabnode(state, "members", "add", "Ada", "--badge", UID, "--new-lab").returncode == 0
    (state / "secret.key").unlink()
    r = fabnode(state, "members", "grant", "Ada", "printer")
    assert r.returncode == 1 and "no lab secret at" in r.stderr
    assert not (state / "secret.key").exists()
