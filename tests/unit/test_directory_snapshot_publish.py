"""What a node retains of its directory on the broker after changes: the part that holds a member
changed here goes out again within SNAPSHOT_EVERY_S, the parts only other nodes' changes moved wait
for SNAPSHOT_REFRESH_S (their authors republish them), so one change is not republished by every node."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fabnode.directory.clock import Hlc
from fabnode.directory.entry import NAME, TRAINING, Entry, training_value
from fabnode.directory.seal import open_snapshot, seal
from fabnode.directory.store import LabDirectory, wall_ms
from fabnode.node import directory_sync
from fabnode.node.directory_snapshot import bucket
from fabnode.node.directory_sync import DirectorySync, _Run
from fabnode.records.usage import UsageLog
from tests.unit.test_directory_sync import node_config

SECRET = b"the lab's secret, 32 bytes long!"
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NODE = "north.laser-1"


@dataclass
class _Info:
    mid: int
    rc: int = 0


@dataclass
class _Client:
    """Records what would go to the broker."""

    sent: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> _Info:
        self.sent.append((topic, payload, retain))
        return _Info(len(self.sent))

    def parts(self) -> dict[int, list[Entry]]:
        """The snapshot parts published since the last call, by number, opened."""
        out = {int(topic.rsplit("/", 1)[1]): open_snapshot(SECRET, payload, "north")
               for topic, payload, retain in self.sent if retain and payload}  # fmt: skip
        self.sent.clear()
        return out


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Run:
    monkeypatch.setattr(directory_sync, "SNAPSHOT_PART_BYTES", 2048)  # a few members a part
    usage = UsageLog.open(tmp_path / "usage.db")
    store = LabDirectory.open(usage.db, SECRET, NODE, "north")
    config = node_config(tmp_path, "")
    sync = DirectorySync(lambda: config, tmp_path / "usage.db", SECRET, wall=lambda: NOW,
                         monotonic=lambda: 0.0)  # fmt: skip
    made = _Run(sync, config, usage, store, NODE, client=_Client(), subscribed=True)  # type: ignore[arg-type]
    store.change_many([(f"m{i:03d}", NAME, f"Member {i}") for i in range(60)], NOW)
    made.step()  # publishes the entries, then the first (whole) snapshot
    made.store.mark_published([row_id for row_id, _ in store.unpublished()])  # as the PUBACKs would
    return made


def _two_in_other_parts(count: int) -> tuple[str, str]:
    members = [f"m{i:03d}" for i in range(60)]
    here = members[0]
    there = next(m for m in members if bucket(m, count) != bucket(here, count))
    return here, there


def test_a_local_change_republishes_its_part_and_a_remote_one_waits_for_the_refresh(run: _Run) -> None:
    client = run.client
    assert isinstance(client, _Client)
    whole = client.parts()
    assert len(whole) == run.snapshot_parts > 2
    assert sum(len(entries) for entries in whole.values()) == 60
    assert run.sync.status()["snapshot_digest"] == run.sync.status()["digest"]
    here, there = _two_in_other_parts(run.snapshot_parts)
    stamp = Hlc(wall_ms(NOW) + 5, 0, "north.cnc")
    remote = Entry("north", "north.cnc", stamp, there, TRAINING + "laser-1", training_value(True, None))
    assert run.store.apply_sealed([seal(SECRET, remote)], NOW).applied == 1
    run.store.change(here, TRAINING + "laser-1", training_value(False, None), NOW)
    run.publish_entries()
    run.refresh()

    run.publish_snapshot(10.0)
    sent = client.parts()
    (number, entries), = sent.items()
    assert number == bucket(here, run.snapshot_parts)
    assert any(e.member == here and e.field == TRAINING + "laser-1" for e in entries)
    assert run.sync.status()["snapshot_digest"] is None  # what is retained is behind the directory

    run.publish_snapshot(10.0 + directory_sync.SNAPSHOT_REFRESH_S)
    sent = client.parts()
    (number, entries), = sent.items()
    assert number == bucket(there, run.snapshot_parts)
    assert any(e.member == there and e.author == "north.cnc" for e in entries)
    assert run.sync.status()["snapshot_digest"] == run.sync.status()["digest"]


def test_a_directory_grown_by_other_nodes_is_not_republished_whole_for_one_change(run: _Run) -> None:
    client = run.client
    assert isinstance(client, _Client)
    client.parts()
    before = run.snapshot_parts
    stamp = Hlc(wall_ms(NOW) + 5, 0, "north.cnc")
    grown = [Entry("north", "north.cnc", stamp, f"c{i:03d}", NAME, f"Newcomer {i}") for i in range(200)]
    assert run.store.apply_sealed([seal(SECRET, e) for e in grown], NOW).applied == 200
    run.store.change("m000", TRAINING + "laser-1", training_value(True, None), NOW)
    run.publish_entries()
    run.refresh()

    run.publish_snapshot(10.0)
    assert run.snapshot_parts > before
    first = client.parts()
    assert set(first) == {bucket("m000", run.snapshot_parts), bucket("m000", before)}
    assert run.sync.status()["snapshot_digest"] is None
    run.publish_snapshot(10.0 + directory_sync.SNAPSHOT_REFRESH_S)
    rest = client.parts()
    assert set(first) | set(rest) == set(range(run.snapshot_parts)) and not set(first) & set(rest)
    assert sum(len(entries) for entries in [*first.values(), *rest.values()]) == 60 + 200 + 1
    assert run.sync.status()["snapshot_digest"] == run.sync.status()["digest"]
