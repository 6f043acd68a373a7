"""`[web]`: defaults, bounds and errors that name the file, section and option."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabnode.config.reader import ConfigError, ConfigReader
from fabnode.config.web import parse_listen, read_web_settings


def read(tmp_path: Path, text: str):
    path = tmp_path / "node.toml"
    path.write_text(text)
    reader = ConfigReader.load(path)
    settings = read_web_settings(reader)
    reader.finish()
    return settings


def test_defaults(tmp_path: Path) -> None:
    s = read(tmp_path, "")
    assert (s.enabled, s.host, s.port, s.listen) == (True, "0.0.0.0", 5000, "0.0.0.0:5000")
    assert (s.max_upload_mb, s.max_upload_bytes, s.upload_expiry_h) == (200, 200 * 1024 * 1024, 24.0)
    assert (s.show_member, s.claim_window_min, s.announce) == ("first-name", 15.0, True)


def test_every_option(tmp_path: Path) -> None:
    s = read(tmp_path, '[web]\nenabled = false\nlisten = "[::1]:8080"\nmax_upload_mb = 50\n'
                       'upload_expiry_h = 2.5\nshow_member = "none"\nclaim_window_min = 5\n'
                       'announce = false\n')
    assert (s.enabled, s.host, s.port, s.listen, s.max_upload_mb) == (False, "::1", 8080, "[::1]:8080", 50)
    assert (s.upload_expiry_h, s.show_member, s.claim_window_min, s.announce) == (2.5, "none", 5.0, False)


@pytest.mark.parametrize(("line", "words"), [
    ("max_upload_mb = 0", "max_upload_mb: 0 is below the minimum 1"),
    ("max_upload_mb = 1e9", "max_upload_mb: 1000000000.0 must be a whole number"),
    ("upload_expiry_h = nan", "upload_expiry_h: nan must be a finite number"),
    ("upload_expiry_h = -1", "below the minimum"),
    ("claim_window_min = inf", "must be a finite number"),
    ('show_member = "surname"', "show_member: 'surname' must be one of none, first-name, full"),
    ('listen = "5000"', "listen: '5000' must be host:port"),
    ('listen = "0.0.0.0:99999"', "the port must be a whole number from 0 to 65535"),
    ('listen = "::1:80"', "an IPv6 host goes in brackets"),
    ('listen = "[nonsense]:80"', "listen:"),
    ('listen = "a b:80"', "is not a host name or address"),
    ("enabled = 1", "enabled: 1 must be true or false"),
    ("annouce = false", "[web] unknown option 'annouce'"),
])  # fmt: skip
def test_bad_values_name_the_file_section_and_option(tmp_path: Path, line: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, f"[web]\n{line}\n")
    message = str(caught.value)
    assert str(tmp_path / "node.toml") in message and "[web]" in message and words in message


def test_parse_listen_takes_a_free_port() -> None:
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("localhost:5000") == ("localhost", 5000)
