"""The Marlin simulator's USB replug: the port vanishes (its stable link too) and comes back as a new pty."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import serial

from simulators.marlin.simulator import MarlinSimulator

pytestmark = pytest.mark.timeout(30)


def numbered(n: int, command: str) -> bytes:
    """A host's numbered line, checksum computed here (not with the simulator's code)."""
    body = f"N{n} {command}".encode()
    checksum = 0
    for byte in body:
        checksum ^= byte
    return body + f"*{checksum}\n".encode()


def read_until(port: serial.Serial, text: str, timeout: float = 3.0) -> list[str]:
    """Lines from the port up to the first that contains `text`."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = port.readline()
        if raw:
            got.append(raw.decode("latin-1").rstrip("\r\n"))
            if text in got[-1]:
                return got
    raise AssertionError(f"{text!r} not within {timeout} s; got {got!r}")


def test_unplug_fails_the_host_and_removes_the_link_plug_brings_a_fresh_board(tmp_path: Path) -> None:
    link = tmp_path / "fabnode-printer"
    sim = MarlinSimulator(time_scale=0, link=link).start()
    try:
        assert os.path.realpath(link) == sim.port
        host = serial.Serial(str(link), 115200, timeout=0.05)
        read_until(host, "Settings")  # greeted after the open
        host.write(numbered(0, "M110 N0") + numbered(1, "M104 S215"))
        read_until(host, "ok")
        read_until(host, "ok")

        sim.unplug()
        assert not link.exists() and not sim.plugged
        with pytest.raises(serial.SerialException):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # a hung-up tty: readable, no data -> pyserial raises
                host.read(100)
        host.close()
        with pytest.raises(serial.SerialException):
            serial.Serial(str(link), 115200)

        sim.plug()
        assert sim.plugged and os.path.realpath(link) == sim.port
        again = serial.Serial(str(link), 115200, timeout=0.05)
        try:
            greeting = read_until(again, "Settings")
            assert greeting[0] == "start"  # the board reset when the host opened the port (DTR)
            again.write(numbered(0, "M110 N0") + numbered(1, "M105"))
            read_until(again, "ok")
            report = read_until(again, "ok")
            assert "/0.0" in report[-1]  # M105: the reset left the hotend's target at 0
        finally:
            again.close()
        assert sim.executed[:2] == ["M110 N0", "M104 S215"]
    finally:
        sim.stop()
    assert not link.exists()


def test_plug_and_unplug_are_idempotent_without_a_link() -> None:
    sim = MarlinSimulator(time_scale=0).start()
    try:
        sim.plug()  # already plugged: nothing happens
        sim.unplug()
        sim.unplug()
        sim.plug()
        host = serial.Serial(sim.port, 115200, timeout=0.05)
        try:
            assert read_until(host, "Settings")[0] == "start"
        finally:
            host.close()
    finally:
        sim.stop()
