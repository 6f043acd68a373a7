"""The simulator's `faithful_cuts` mode: Marlin 2.x reads the tail of a line cut by its RX flush."""

from __future__ import annotations

from simulators.marlin.firmware import MarlinConfig, MarlinFirmware


def framed(n: int, command: str) -> bytes:
    body = f"N{n} {command}"
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"{body}*{checksum}\n".encode()


class FakeWire:
    """Just the RX buffer and the replies: the test decides which bytes have arrived."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.replies = bytearray()

    def rx_available(self) -> int:
        return len(self.rx)

    def rx_read_line(self) -> bytes:
        end = self.rx.find(b"\n")
        data = bytes(self.rx[: end + 1] if end >= 0 else self.rx)
        del self.rx[: len(data)]
        return data

    def rx_clear(self) -> int:
        n = len(self.rx)
        self.rx.clear()
        return n

    def send(self, data: bytes) -> None:
        self.replies += data


def booted(**options: bool) -> tuple[MarlinFirmware, FakeWire, list[str]]:
    executed: list[str] = []
    config = MarlinConfig(time_scale=0, greet_on_open=False, **options)
    firmware = MarlinFirmware(config, on_executed=executed.append)
    wire = FakeWire()
    firmware.attach(wire)  # type: ignore[arg-type]
    firmware.poll(0.0)
    wire.replies.clear()
    return firmware, wire, executed


def arrive(firmware: MarlinFirmware, wire: FakeWire, data: bytes, now: float) -> None:
    wire.rx += data
    firmware.poll(now)


def test_a_tail_that_begins_at_its_command_runs_unnumbered_then_again_when_resent():
    firmware, wire, executed = booted(faithful_cuts=True)
    bad = framed(1, "G28").replace(b"G28", b"G29")  # noise: the checksum no longer matches
    line2 = framed(2, "G1X5")
    # The refused line and the head of the next (`N2 `) are in the RX buffer when Marlin flushes it.
    arrive(firmware, wire, bad + line2[:3], 0.1)
    assert b"Resend: 1" in wire.replies
    arrive(firmware, wire, line2[3:], 0.2)  # the tail `G1X5*..` arrives after the flush
    assert executed == ["G1X5"]  # run without number or checksum
    assert firmware.stats.unnumbered_commands_run == 1


def test_a_tail_of_digits_is_an_unknown_command_answered_ok():
    firmware, wire, _ = booted(faithful_cuts=True)
    bad = framed(1, "G28").replace(b"G28", b"G29")
    line2 = framed(2, "G1X5")
    arrive(firmware, wire, bad + line2[:-3], 0.1)
    wire.replies.clear()
    arrive(firmware, wire, line2[-3:], 0.2)  # the checksum's last digits and the newline
    assert wire.replies.decode().splitlines() == [f'echo:Unknown command: "{line2[-3:-1].decode()}"', "ok"]
    assert firmware.stats.unnumbered_commands_run == 0  # an unknown command runs nothing


def test_without_the_mode_a_tail_with_its_checksum_is_refused_as_marlin_1_did():
    firmware, wire, executed = booted()
    bad = framed(1, "G28").replace(b"G28", b"G29")
    line2 = framed(2, "G1X5")
    arrive(firmware, wire, bad + line2[:3], 0.1)
    wire.replies.clear()
    arrive(firmware, wire, line2[3:], 0.2)
    assert wire.replies.decode().startswith("Error:No Line Number with checksum")
    assert executed == []
