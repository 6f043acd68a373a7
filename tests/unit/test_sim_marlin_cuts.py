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

    byte_time = 10 / 115200

    def __init__(self) -> None:
        self.rx = bytearray()
        self.replies = bytearray()
        self.now = 0.0
        self.tx_end = 0.0  # when the UART has sent every reply byte

    def tx_free_at(self, buffered: int = 0) -> float:
        return self.tx_end - buffered * self.byte_time

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
        self.tx_end = max(self.now, self.tx_end) + len(data) * self.byte_time


def booted(**options: bool | int) -> tuple[MarlinFirmware, FakeWire, list[str]]:
    executed: list[str] = []
    config = MarlinConfig(time_scale=0, greet_on_open=False, **options)  # type: ignore[arg-type]
    firmware = MarlinFirmware(config, on_executed=executed.append)
    wire = FakeWire()
    firmware.attach(wire)  # type: ignore[arg-type]
    firmware.poll(0.0)
    wire.replies.clear()
    return firmware, wire, executed


def arrive(firmware: MarlinFirmware, wire: FakeWire, data: bytes, now: float) -> float | None:
    wire.rx += data
    wire.now = now
    return firmware.poll(now)


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


def test_with_a_blocking_uart_the_flush_waits_for_the_error_line_and_cuts_a_later_line():
    # TX_BUFFER_SIZE 0 (the AVR default): gcode_line_error prints `Error:...` first, each byte waiting
    # for the UART, and only then reads the RX buffer empty (Marlin 2.x src/gcode/queue.cpp).
    firmware, wire, executed = booted(faithful_cuts=True, tx_buffer=0)
    bad = framed(1, "G28").replace(b"G28", b"G29")
    line2, line3 = framed(2, "G1X5"), framed(3, "G1X6")
    drain_at = arrive(firmware, wire, bad, 0.1)
    assert wire.replies.decode() == "Error:checksum mismatch, Last Line: 0\n"
    assert drain_at == wire.tx_end > 0.1  # once the error line has left, 39 byte-times on
    arrive(firmware, wire, line2 + line3[:3], 0.1 + wire.byte_time)  # arriving while Marlin writes
    assert b"Resend" not in wire.replies and executed == []
    arrive(firmware, wire, b"", drain_at)  # line 2 whole and the head of line 3 go with the flush
    assert wire.replies.decode().endswith("Resend: 1\nok\n")
    arrive(firmware, wire, line3[3:], drain_at + 0.01)
    assert executed == ["G1X6"]  # the cut fell in line 3, beyond the line after the refused one
