"""Where the state lives: flag, environment, config, systemd, per-user default."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabnode import paths


@pytest.mark.parametrize(
    ("cli", "configured", "env", "expected"),
    [
        ("/flag", "/conf", {"FABNODE_STATE_DIR": "/env", "STATE_DIRECTORY": "/sd"}, "/flag"),
        (None, "/conf", {"FABNODE_STATE_DIR": "/env", "STATE_DIRECTORY": "/sd"}, "/env"),
        (None, "/conf", {"STATE_DIRECTORY": "/sd"}, "/conf"),
        (None, None, {"STATE_DIRECTORY": "/var/lib/fn-a:/var/lib/other", "HOME": "/h"}, "/var/lib/fn-a"),
        (None, None, {"INVOCATION_ID": "abc", "HOME": "/h"}, "/h/.local/state/fabnode"),
        (None, None, {"XDG_STATE_HOME": "/xdg", "HOME": "/h"}, "/xdg/fabnode"),
        (None, None, {"XDG_STATE_HOME": "relative", "HOME": "/h"}, "/h/.local/state/fabnode"),
        (None, None, {"HOME": "/h"}, "/h/.local/state/fabnode"),
        (None, None, {"FABNODE_STATE_DIR": "", "HOME": "/h"}, "/h/.local/state/fabnode"),
    ],
)
def test_resolve_state_dir_order(cli, configured, env, expected) -> None:
    got = paths.resolve_state_dir(Path(cli) if cli else None, Path(configured) if configured else None, env)
    assert got == Path(expected)


def test_files_in_the_state_dir_and_the_secret_override() -> None:
    state = Path("/s")
    assert paths.usage_db_path(state) == Path("/s/usage.db")
    assert paths.control_socket_path(state) == Path("/s/control.sock")
    assert paths.secret_file_path(state, {}) == Path("/s/secret.key")
    assert paths.secret_file_path(state, {"FABNODE_SECRET_FILE": "/etc/fabnode/lab.key"}) == Path(
        "/etc/fabnode/lab.key"
    )


def test_ensure_state_dir_is_owner_only(tmp_path: Path) -> None:
    state = paths.ensure_state_dir(tmp_path / "a" / "b")
    assert state.is_dir()
    assert state.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("cli", "env", "expected"),
    [
        ("/flag.toml", {"FABNODE_CONFIG": "/env.toml"}, "/flag.toml"),
        (None, {"FABNODE_CONFIG": "/env.toml"}, "/env.toml"),
        (None, {"FABNODE_CONFIG": ""}, None),
        (None, {}, None),
    ],
)
def test_resolve_config_takes_the_flag_then_fabnode_config(cli, env, expected) -> None:
    got = paths.resolve_config(Path(cli) if cli else None, env)
    assert got == (Path(expected) if expected else None)
