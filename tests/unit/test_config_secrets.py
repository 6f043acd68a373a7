"""check_secret_files: a broker password, TLS key or lab secret others can read is refused, with the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fabnode.config.secret_files import check_secret_files
from fabnode.config.settings import ConfigError, load_config

MINIMAL = """
[node]
lab = "lab-a"
machine = "m1"
state_dir = "state"
[serial]
port = "sim"
[machine]
kind = "printer"
[telemetry]
broker = "mqtts://region.example"
username = "lab-a-m1"
password_file = "broker-password"
client_cert = "client.pem"
client_key = "client.key"
"""


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose secret files all exist, 0600."""
    monkeypatch.delenv("FABNODE_SECRET_FILE", raising=False)
    (tmp_path / "state").mkdir()
    for name in ("broker-password", "client.key", "state/secret.key"):
        (tmp_path / name).write_text("secret\n")
        (tmp_path / name).chmod(0o600)
    (tmp_path / "client.pem").write_text("certificate\n")
    (tmp_path / "client.pem").chmod(0o644)  # a certificate is public
    path = tmp_path / "node.toml"
    path.write_text(MINIMAL)
    return path


def refusal(config_path: Path, groups: set[int] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        check_secret_files(load_config(config_path), groups)
    return str(caught.value)


def test_owner_only_secrets_pass(node: Path) -> None:
    check_secret_files(load_config(node))
    check_secret_files(load_config(node), groups=set())


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("broker-password", "[telemetry] password_file"),
        ("client.key", "[telemetry] client_key"),
        ("state/secret.key", "[node] state_dir: the lab's secret"),
    ],
)
def test_a_secret_every_user_can_read_is_refused(node: Path, name: str, label: str) -> None:
    secret = node.parent / name
    secret.chmod(0o644)
    message = refusal(node)
    assert message == (
        f"{node}: {label}: {secret} is readable by every user (mode -rw-r--r--): chmod 600 {secret}"
    )


def test_a_secret_readable_by_a_group_the_service_is_not_in_is_refused(node: Path) -> None:
    secret = node.parent / "broker-password"
    secret.chmod(0o640)
    message = refusal(node, groups=set())
    assert f"[telemetry] password_file: {secret} is readable by group " in message
    assert f"(mode -rw-r-----), not this user's: chmod 600 {secret}" in message


def test_a_secret_shared_with_the_services_own_group_passes(node: Path) -> None:
    # The installer's layout: 0640, group fabnode, the group the service runs as.
    secret = node.parent / "broker-password"
    secret.chmod(0o640)
    check_secret_files(load_config(node), groups={secret.stat().st_gid})
    check_secret_files(load_config(node))  # the file's group is this user's own


def test_every_exposed_secret_is_named_at_once(node: Path) -> None:
    for name in ("broker-password", "client.key"):
        (node.parent / name).chmod(0o604)
    message = refusal(node)
    assert message.count("is readable by every user (mode -rw----r--)") == 2
    assert "password_file" in message and "client_key" in message


def test_absent_files_are_left_to_the_part_that_reads_them(node: Path) -> None:
    for name in ("broker-password", "client.key", "state/secret.key"):
        os.unlink(node.parent / name)
    check_secret_files(load_config(node))


def test_no_state_dir_in_the_config_means_no_lab_secret_checked(node: Path) -> None:
    node.write_text(MINIMAL.replace('state_dir = "state"\n', ""))
    (node.parent / "state/secret.key").chmod(0o644)
    check_secret_files(load_config(node))


def test_the_lab_secret_named_by_the_environment_is_checked(
    node: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "lab.key"
    elsewhere.write_text("secret\n")
    elsewhere.chmod(0o644)
    monkeypatch.setenv("FABNODE_SECRET_FILE", str(elsewhere))
    assert f"the lab's secret: {elsewhere} is readable by every user" in refusal(node)
