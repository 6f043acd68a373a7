"""`[directory] max_age_days`, the rule it sets for taps, and the lab directory's topics and ACL lines."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fabnode.config.reader import ConfigError
from fabnode.config.settings import Config, load_config, settings_in_force
from fabnode.directory.store import LabDirectory
from fabnode.envelope import EnvelopeError, directory_subscription, directory_topic, node_acl
from fabnode.node import directory_sync
from fabnode.node.directory_sync import DirectorySync
from fabnode.records.usage import UsageLog

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BASE = """\
[node]
lab = "north"
machine = "laser-1"

[serial]
port = "sim"

[machine]
kind = "printer"
firmware = "marlin"
"""


def node_config(tmp_path: Path, extra: str) -> Config:
    """The node `north/laser-1`'s config with `extra` TOML after its required sections."""
    path = tmp_path / "node.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return load_config(path)


def _sync(config: Config, last_contact: datetime | None) -> DirectorySync:
    sync = DirectorySync(lambda: config, Path("unused.db"), b"s" * 32, wall=lambda: NOW)
    sync.set(last_contact=last_contact)  # as its thread sets it from the store
    return sync


def test_max_age_days_defaults_to_30_and_is_shown_in_force(tmp_path: Path) -> None:
    config = node_config(tmp_path, "")
    assert config.directory.max_age_days == 30
    assert settings_in_force(config)["directory"] == {"max_age_days": 30}
    assert node_config(tmp_path, "[directory]\nmax_age_days = 7\n").directory.max_age_days == 7


@pytest.mark.parametrize("value", ["0", "3651", "2.5", '"30"', "nan"])
def test_a_bad_max_age_names_the_file_section_and_option(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"node\.toml: \[directory\] max_age_days: "):
        node_config(tmp_path, f"[directory]\nmax_age_days = {value}\n")


def test_past_max_age_without_contact_only_technicians_pass(tmp_path: Path) -> None:
    extra = '[telemetry]\nbroker = "mqtt://127.0.0.1:1"\n[directory]\nmax_age_days = 30\n'
    config = node_config(tmp_path, extra)
    old = _sync(config, NOW - timedelta(days=30, seconds=1))
    why = old.only_technicians(NOW)
    assert why is not None
    assert "only technicians pass" in why and "max_age_days = 30" in why and "2026-01-30T08:59" in why
    status = old.status()
    assert status["only_technicians"] == why and status["max_age_days"] == 30
    assert status["last_contact"] == (NOW - timedelta(days=30, seconds=1)).isoformat()
    assert _sync(config, NOW - timedelta(days=29, hours=23)).only_technicians(NOW) is None


def test_without_a_broker_or_before_any_contact_the_rule_does_not_apply(tmp_path: Path) -> None:
    long_ago = NOW - timedelta(days=400)
    assert _sync(node_config(tmp_path, ""), long_ago).only_technicians(NOW) is None  # a lab of one node
    with_broker = node_config(tmp_path, '[telemetry]\nbroker = "mqtt://127.0.0.1:1"\n')
    assert _sync(with_broker, None).only_technicians(NOW) is None  # never reached: nothing to distrust yet


def test_directory_topics_and_the_acl_lines_a_node_gets() -> None:
    assert directory_topic("fablab", "north", "entries", "north.laser-1") == (
        "fablab/lab/v1/north/directory/entries/north.laser-1")
    assert directory_subscription("fablab", "north") == "fablab/lab/v1/north/directory/#"
    with pytest.raises(EnvelopeError, match="unknown directory topic kind 'names'"):
        directory_topic("fablab", "north", "names", "north.laser-1")
    acl = node_acl("fablab", "north", "laser-1").splitlines()
    assert acl[-3:] == ["topic read fablab/lab/v1/north/directory/#",
                        "topic write fablab/lab/v1/north/directory/entries/north.laser-1",
                        "topic write fablab/lab/v1/north/directory/snapshot/north.laser-1/+"]  # fmt: skip


def test_a_directory_that_cannot_be_opened_at_start_is_tried_again(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_sync, "RESTART_S", 0.05)
    config = node_config(tmp_path, "")  # no broker: the directory is this node's alone
    tries: list[str] = []

    def flaky_open(usage: UsageLog, secret: bytes, node: str, lab: str) -> LabDirectory:
        tries.append(node)
        if len(tries) == 1:
            raise sqlite3.OperationalError("database is locked")
        return LabDirectory.open(usage.db, secret, node, lab)

    sync = DirectorySync(lambda: config, tmp_path / "usage.db", b"s" * 32, open_store=flaky_open)
    sync.start()
    try:
        deadline = time.monotonic() + 10
        while sync.status()["digest"] is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread publishes its figures under a lock, not an event
        status = sync.status()
        assert status["digest"] is not None and len(tries) == 2, (status, tries)
    finally:
        sync.stop()
