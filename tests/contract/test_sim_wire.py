"""The emulated serial wire (simulators.wire) seen through a real pyserial port, and the contract
every firmware simulator on it keeps (port, greeting, stats, stop)."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator

import pytest
import serial

from simulators.marlin.simulator import MarlinSimulator
from simulators.wire import Wire

pytestmark = pytest.mark.timeout(30)


class Echo:
    """A firmware that sends back every line it reads (or reads nothing when `deaf`)."""

    def __init__(self, deaf: bool = False) -> None:
        self.deaf = deaf
        self.opened_at: list[float] = []
        self.wire: Wire | None = None

    def attach(self, wire: Wire) -> None:
        self.wire = wire

    def on_wire_byte(self, byte: int, now: float) -> bool:
        return False

    def on_host_open(self, now: float) -> None:
        self.opened_at.append(now)

    def poll(self, now: float) -> float | None:
        assert self.wire is not None
        while not self.deaf and self.wire.rx_available():
            line = self.wire.rx_read_line()
            if line.strip() == b"DROP":
                self.wire.drop_connection()
                return None
            self.wire.send(line)
        return None


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def read_exactly(port: serial.Serial, count: int, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < count and time.monotonic() < deadline:
        data += port.read(count - len(data))
    return data


@pytest.fixture
def wire_factory() -> Iterator[Callable[..., tuple[Wire, serial.Serial]]]:
    opened: list[tuple[Wire, serial.Serial]] = []

    def make(firmware: Echo | None = None, **options: object) -> tuple[Wire, serial.Serial]:
        wire = Wire(firmware or Echo(), **options).start()  # type: ignore[arg-type]
        port = serial.Serial(wire.port, 115200, timeout=0.2)
        opened.append((wire, port))
        return wire, port

    yield make
    for wire, port in opened:
        port.close()
        wire.stop()


def test_bytes_cross_the_wire_no_faster_than_the_baud_rate(wire_factory) -> None:
    wire, port = wire_factory(baud=115200)
    payload = b"G1 X12.345 Y67.890 E0.0421\n" * 100
    started = time.monotonic()
    port.write(payload)
    echoed = read_exactly(port, len(payload))
    elapsed = time.monotonic() - started
    assert echoed == payload
    assert elapsed >= len(payload) * 10 / 115200  # each direction is paced; the two overlap
    wait_for(lambda: wire.stats.bytes_to_host == len(payload))
    assert wire.stats.bytes_from_host == len(payload)


def test_latency_is_added_each_way(wire_factory) -> None:
    _, port = wire_factory(latency_s=0.05)
    started = time.monotonic()
    port.write(b"x\n")
    assert read_exactly(port, 2) == b"x\n"
    assert time.monotonic() - started >= 0.1


def test_a_full_rx_buffer_drops_what_arrives_and_counts_it(wire_factory) -> None:
    wire, port = wire_factory(Echo(deaf=True), rx_buffer=128)
    port.write(bytes(range(32, 132)) * 3)  # 300 bytes, never read by the firmware
    wait_for(lambda: wire.stats.bytes_from_host == 300)
    assert wire.rx_available() == 128
    assert wire.stats.overflow_drops == 300 - 128


def test_host_open_is_reported_to_the_firmware_once(wire_factory) -> None:
    firmware = Echo()
    wire, port = wire_factory(firmware)
    wait_for(lambda: wire.stats.host_opened)
    port.timeout = 0.1  # pyserial re-applies termios: must not count as a new open
    time.sleep(0.05)
    assert len(firmware.opened_at) == 1


def test_noise_corrupts_one_byte_in_each_chosen_line(wire_factory) -> None:
    wire, port = wire_factory(noise=1.0, seed=7)
    lines = [f"N{n} G1 X{n}.5 Y{n * 2}.25\n".encode() for n in range(20)]
    port.write(b"".join(lines))
    echoed = read_exactly(port, sum(map(len, lines)))
    got = echoed.splitlines(keepends=True)
    assert len(got) == len(lines)
    for sent, received in zip(lines, got, strict=True):
        assert sum(a != b for a, b in zip(sent, received, strict=True)) == 1
    assert wire.stats.corrupted_lines == 20


def test_reply_noise_corrupts_firmware_lines(wire_factory) -> None:
    wire, port = wire_factory(reply_noise=1.0, seed=3)
    line = b"ok T:200.00 /200.00\n"
    port.write(line * 5)
    echoed = read_exactly(port, len(line) * 5).splitlines()
    assert len(echoed) == 5
    assert all(line != b"ok T:200.00 /200.00" for line in echoed)
    assert wire.stats.corrupted_replies == 5


class Chatty(Echo):
    """A firmware that answers each host line with `replies`, written in `piece`-byte sends."""

    def __init__(self, replies: bytes, piece: int) -> None:
        super().__init__()
        self.replies, self.piece = replies, piece

    def poll(self, now: float) -> float | None:
        assert self.wire is not None
        while self.wire.rx_available() and self.wire.rx_read_line().endswith(b"\n"):
            for i in range(0, len(self.replies), self.piece):
                self.wire.send(self.replies[i : i + self.piece])
        return None


def test_reply_noise_is_per_line_whatever_pieces_the_firmware_sends(wire_factory) -> None:
    lines = [f"ok T:{n}.00 /200.00 B:60.00 /60.00\n".encode() for n in range(8)]
    runs = []
    for piece in (len(b"".join(lines)), 7, 1):  # all at once, in pieces, byte by byte
        wire, port = wire_factory(Chatty(b"".join(lines), piece), reply_noise=0.5, seed=3)
        port.write(b"M105\n")
        got = read_exactly(port, sum(map(len, lines))).splitlines(keepends=True)
        assert len(got) == len(lines)
        pairs = zip(lines, got, strict=True)
        changed = [sum(a != b for a, b in zip(sent, back, strict=True)) for sent, back in pairs]
        assert set(changed) <= {0, 1}  # a chosen line has exactly one corrupted byte
        assert wire.stats.corrupted_replies == sum(changed)
        assert 0 < sum(changed) < len(lines)  # half the lines, give or take: some, not all
        runs.append(got)
    assert runs[0] == runs[1] == runs[2]  # the same seed corrupts the same bytes


def test_noise_is_seeded(wire_factory) -> None:
    runs = []
    for _ in range(2):
        _, port = wire_factory(noise=0.5, seed=11)
        port.write(b"G1 X1 Y2 Z3\n" * 20)
        runs.append(read_exactly(port, 12 * 20))
    assert runs[0] == runs[1]


def test_dropped_connection_is_an_error_at_the_host(wire_factory) -> None:
    wire, port = wire_factory()
    port.write(b"DROP\n")
    deadline = time.monotonic() + 3
    with pytest.raises(serial.SerialException):
        while time.monotonic() < deadline:
            port.read(10)
    assert wire.stats.connection_dropped


def _checksummed(n: int, command: str) -> bytes:
    body = f"N{n} {command}".encode()
    checksum = 0
    for byte in body:
        checksum ^= byte
    return body + f"*{checksum}\n".encode()


def test_marlin_host_flooding_past_the_rx_buffer_loses_bytes() -> None:
    with MarlinSimulator(time_scale=1.0) as sim:
        port = serial.Serial(sim.port, 115200, timeout=0.2)
        port.write(b"".join(f"G1 X{i} F60\n".encode() for i in range(60)))  # slow moves: the queue fills
        wait_for(lambda: sim.stats.overflow_drops > 0)
        port.close()


@pytest.mark.timeout(60)
def test_marlin_job_survives_line_noise_with_resends() -> None:
    job = [f"G1 X{i % 50}.{i % 7} Y{i % 30}.5 E0.{i % 9}1" for i in range(60)]
    with MarlinSimulator(time_scale=0, noise=0.2, seed=5) as sim:
        port = serial.Serial(sim.port, 115200, timeout=0.5)
        wait_for(lambda: sim.stats.host_opened)
        time.sleep(0.1)  # past the boot: bytes sent while the board boots are lost
        lines = {0: "M110 N0", **{n: cmd for n, cmd in enumerate(job, start=1)}}
        n = 0
        while n < len(lines):  # one line at a time; on `Resend: k` go back to k
            port.write(_checksummed(n, lines[n]))
            reply = b""
            while not reply.startswith(b"ok"):
                reply = port.readline()
                assert reply, f"no answer to line {n}"
                if reply.startswith(b"Resend:"):
                    n = int(reply.split(b":")[1]) - 1
            n += 1
        assert sim.executed == ["M110 N0", *job]
        assert sim.stats.checksum_errors > 0
        port.close()


def _simulators() -> list[str]:
    return ["simulators.marlin.simulator:MarlinSimulator", "simulators.grbl.simulator:GrblSimulator"]


@pytest.mark.parametrize("backend", _simulators())
def test_every_simulator_keeps_the_wire_contract(backend: str) -> None:
    module_name, _, class_name = backend.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        pytest.skip(f"{backend} is not there yet")
    sim = cls(time_scale=0, seed=1).start()
    try:
        port = serial.Serial(sim.port, 115200, timeout=0.2)
        greeting = b""
        deadline = time.monotonic() + 3
        while not greeting.strip() and time.monotonic() < deadline:
            greeting = port.readline()
        assert greeting.strip(), "no greeting after the host opened the port"
        assert sim.stats.overflow_drops == 0
        assert sim.stats.host_opened
        port.close()
    finally:
        sim.stop()
    assert not os.path.exists(sim.port) or not sim.wire.running
