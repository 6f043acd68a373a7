"""The node is found by browsing for `_octoprint._tcp`, as PrusaSlicer's and Cura's discovery do."""

from __future__ import annotations

from pathlib import Path

import zeroconf

from fabnode.web.announce import SERVICE, Announcer
from fabnode.web.octoprint import OCTOPRINT_VERSION
from fabnode.web.server import WebServer
from tests.integration.test_web_api import make_desk, web_settings


def test_a_browser_on_the_lan_finds_the_machine_with_its_port_and_path() -> None:
    announcer = Announcer("prusa-mk4", "127.0.0.1", 5123, OCTOPRINT_VERSION)
    announcer.start()
    browser = zeroconf.Zeroconf(interfaces=["127.0.0.1"], ip_version=zeroconf.IPVersion.V4Only)
    try:
        info = browser.get_service_info(SERVICE, "prusa-mk4." + SERVICE, timeout=10_000)
    finally:
        browser.close()
        announcer.stop()
    assert info is not None, "nothing answered for prusa-mk4._octoprint._tcp"
    assert info.port == 5123 and info.parsed_addresses() == ["127.0.0.1"]
    assert info.properties[b"path"] == b"/" and info.properties[b"version"] == OCTOPRINT_VERSION.encode()


def test_the_server_announces_its_own_port_when_announce_is_on(tmp_path: Path) -> None:
    web = WebServer(make_desk(tmp_path / "uploads"), web_settings(announce=True), announce_as="laser-1")
    web.start()
    browser = zeroconf.Zeroconf(interfaces=["127.0.0.1"], ip_version=zeroconf.IPVersion.V4Only)
    try:
        info = browser.get_service_info(SERVICE, "laser-1." + SERVICE, timeout=10_000)
    finally:
        browser.close()
        web.stop()
    assert info is not None and info.port == web.port


def test_stop_without_start_is_harmless() -> None:
    Announcer("laser-1", "127.0.0.1", 5000, OCTOPRINT_VERSION).stop()
