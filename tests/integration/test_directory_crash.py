"""A node killed with SIGKILL while it applies a big batch comes back with all of it or none of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from fabnode.directory.clock import Hlc
from fabnode.directory.entry import Entry, training_value
from fabnode.directory.seal import seal
from fabnode.directory.store import LabDirectory
from fabnode.records import members as access
from fabnode.records.usage import UsageLog

SECRET = b"the lab's secret, 32 bytes long!"
LAB = "fablab-a"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MEMBERS = 400

APPLY = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from fabnode.directory.store import LabDirectory
from fabnode.records.usage import UsageLog
blobs = Path(sys.argv[2]).read_bytes().split(b"\\n--\\n")
log = UsageLog.open(Path(sys.argv[1]))
directory = LabDirectory.open(log.db, bytes.fromhex(sys.argv[3]), "fablab-a.laser", "fablab-a")
original = directory._merge
count = 0
def merge(entry):
    global count
    count += 1
    if count == len(blobs) // 2:
        print("halfway", flush=True)
        sys.stdin.readline()  # wait here, mid-transaction, for the SIGKILL
    return original(entry)
directory._merge = merge
directory.apply_sealed(blobs, datetime.now(UTC))
print("done", flush=True)
"""


def _blobs() -> list[bytes]:
    node = "fablab-a.printer"
    out = []
    for i in range(MEMBERS):
        member, wall = f"m{i:04d}", 1_772_000_000_000 + i * 10
        for n, (field, value) in enumerate([("name", f"Member {i}"), ("role", "member"),
                                            ("badge", access.badge_hash(SECRET, f"04{i:06x}")),
                                            ("training:laser", training_value(True, None))]):  # fmt: skip
            out.append(seal(SECRET, Entry(LAB, node, Hlc(wall + n, 0, node), member, field, value)))
    return out


def test_sigkill_mid_batch_leaves_all_or_nothing(tmp_path: Path) -> None:
    db = tmp_path / "usage.db"
    UsageLog.open(db).close()
    blobs = _blobs()
    assert all(b"\n--\n" not in b for b in blobs)
    (tmp_path / "batch").write_bytes(b"\n--\n".join(blobs))
    proc = subprocess.Popen([sys.executable, "-c", APPLY, str(db), str(tmp_path / "batch"), SECRET.hex()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "halfway"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with UsageLog.open(db) as log:
        directory = LabDirectory.open(log.db, SECRET, "fablab-a.laser", LAB)
        assert directory.entry_count() == 0 and access.list_members(log.db) == []  # nothing of it
        report = directory.apply_sealed(blobs, NOW)  # the batch again, after the restart: all of it
        assert (report.applied, report.refused) == (len(blobs), 0)
        assert len(access.list_members(log.db)) == MEMBERS
        tap = access.check_access(log.db, access.badge_hash(SECRET, "04000007"), "laser", NOW.date())
        assert (tap.name, tap.granted) == ("Member 7", True)
