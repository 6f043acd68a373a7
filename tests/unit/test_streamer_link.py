"""SerialLink over real ptys: non-blocking bytes, port loss, reopening by path."""

from __future__ import annotations

import os
import selectors
import tty
from pathlib import Path

import pytest

from drivers.serial_link import PortLost, SerialLink


def open_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(master)
    return master, slave, os.ttyname(slave)


def wait_readable(fd: int, timeout: float = 2.0) -> bool:
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))


def test_bytes_go_both_ways_without_blocking() -> None:
    master, slave, path = open_pty()
    link = SerialLink(path, 115200)
    link.open()
    try:
        fd = link.fileno()
        assert fd is not None and link.is_open
        assert link.write(b"N1 G28*18\n") == 10
        assert os.read(master, 100) == b"N1 G28*18\n"
        os.write(master, b"ok\nT:20")
        assert wait_readable(fd)
        assert link.read_available() == b"ok\nT:20"
    finally:
        link.close()
        os.close(master)
        os.close(slave)


def test_far_end_closing_is_port_lost_naming_the_port() -> None:
    master, slave, path = open_pty()
    link = SerialLink(path)
    link.open()
    fd = link.fileno()
    assert fd is not None
    os.close(master)
    os.close(slave)
    assert wait_readable(fd)
    with pytest.raises(PortLost, match=path):
        link.read_available()
    assert not link.is_open
    with pytest.raises(PortLost, match="not open"):
        link.write(b"G28\n")
    link.close()  # harmless after the loss


def test_missing_port_is_port_lost() -> None:
    with pytest.raises(PortLost, match="cannot open"):
        SerialLink("/dev/ttyNOPE0").open()


def test_reopen_finds_the_port_again_by_its_path(tmp_path: Path) -> None:
    # A USB adapter comes back under the same stable name (/dev/serial/by-id/...): a symlink here.
    name = tmp_path / "printer"
    master1, slave1, path1 = open_pty()
    name.symlink_to(path1)
    link = SerialLink(str(name))
    link.open()
    os.close(master1)
    os.close(slave1)
    name.unlink()
    master2, slave2, path2 = open_pty()
    name.symlink_to(path2)
    try:
        link.reopen(timeout_s=2.0)
        assert link.write(b"M105\n") == 5
        assert os.read(master2, 100) == b"M105\n"
    finally:
        link.close()
        os.close(master2)
        os.close(slave2)


def test_reopen_gives_up_after_its_timeout(tmp_path: Path) -> None:
    link = SerialLink(str(tmp_path / "gone"))
    with pytest.raises(PortLost, match="gone"):
        link.reopen(timeout_s=0.2, retry_s=0.05)


def test_url_ports_work_without_a_file_descriptor() -> None:
    with SerialLink("loop://") as link:
        assert link.fileno() is None
        assert link.write(b"?") == 1
        assert link.read_available() == b"?"
