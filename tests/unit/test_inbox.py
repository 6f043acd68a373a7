"""The job inbox folder: what is offered, in which order, and where files go (never deleted)."""

from __future__ import annotations

import os
from pathlib import Path

from fabnode.node.inbox import Inbox, is_offered


def _file(folder: Path, name: str, mtime: int, text: str = "G28\n") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))
    return path


def test_partial_and_hidden_files_are_not_offered() -> None:
    assert is_offered(Path("part.gcode"))
    for name in (".part.gcode", "part.gcode.part", "PART.GCODE.TMP", "x.crdownload", ".~lock"):
        assert not is_offered(Path(name)), name


def test_oldest_file_first_and_subfolders_ignored(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox").ensure()
    _file(inbox.folder, "b.gcode", 2_000)
    _file(inbox.folder, "a.gcode", 3_000)
    _file(inbox.folder, ".c.gcode", 1_000)
    _file(inbox.folder / "rejected", "old.gcode", 10)
    assert [p.name for p in inbox.waiting()] == ["b.gcode", "a.gcode"]
    assert inbox.next_file() == inbox.folder / "b.gcode"


def test_a_missing_folder_has_nothing_waiting(tmp_path: Path) -> None:
    assert Inbox(tmp_path / "nowhere").next_file() is None


def test_accept_reject_and_stale_move_files_keeping_them(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox").ensure()
    good = _file(inbox.folder, "good.gcode", 1_000, "G28\nG1 X1\n")
    bad = _file(inbox.folder, "bad.gcode", 2_000)
    accepted = inbox.accept(good)
    assert accepted.parent == inbox.folder / "accepted" and accepted.name.endswith("-good.gcode")
    assert accepted.read_text() == "G28\nG1 X1\n" and not good.exists()
    rejected = inbox.reject(bad, ["line 2: X 900 beyond 180", "line 3: M500 is forbidden"])
    assert rejected.parent.name == "rejected"
    report = rejected.with_name(rejected.name + ".problems.txt").read_text()
    assert report.splitlines() == ["line 2: X 900 beyond 180", "line 3: M500 is forbidden"]
    late = _file(inbox.folder, "late.gcode", 3_000)
    same = _file(inbox.folder, "x.gcode", 3_000)
    moved = inbox.set_aside_stale()
    assert sorted(p.name.split("-", 1)[1] for p in moved) == ["late.gcode", "x.gcode"]
    assert not late.exists() and not same.exists() and inbox.waiting() == []


def test_two_files_of_one_name_do_not_overwrite_each_other(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox").ensure()
    first = inbox.accept(_file(inbox.folder, "part.gcode", 1_000, "first\n"))
    second = inbox.accept(_file(inbox.folder, "part.gcode", 1_000, "second\n"))
    assert first != second
    assert {first.read_text(), second.read_text()} == {"first\n", "second\n"}


def test_a_rejected_file_shows_up_with_its_whole_report(tmp_path: Path, monkeypatch) -> None:
    """Whoever sees the file in rejected/ (a member, the daemon's tests polling for it) reads why at once."""
    inbox = Inbox(tmp_path / "inbox").ensure()
    bad = _file(inbox.folder, "bad.gcode", 2_000)
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        landed = Path(dst)
        if landed.parent.name == "rejected" and landed.name.endswith("-bad.gcode"):
            report = landed.with_name(landed.name + ".problems.txt")
            seen.append((landed.name, report.read_text() if report.exists() else "<no report>"))

    monkeypatch.setattr(os, "replace", replace)
    rejected = inbox.reject(bad, ["line 2: X 900 beyond 180"])
    assert seen == [(rejected.name, "line 2: X 900 beyond 180\n")]
    left = sorted(p.name for p in rejected.parent.iterdir())
    assert left == [rejected.name, f"{rejected.name}.problems.txt"]  # no partial report left behind
