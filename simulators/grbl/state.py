"""The GRBL simulator's configuration, counters, and the pieces of input state the firmware loop keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from simulators.grbl import codes as C
from simulators.wire import WireStats


class RxBuffer(Protocol):
    """The firmware's serial RX ring buffer (the Wire, or LocalRx)."""

    def rx_available(self) -> int: ...
    def rx_read(self, n: int = -1) -> bytes: ...
    def rx_clear(self) -> int: ...


@dataclass
class GrblStats(WireStats):
    """The wire's counters plus what the firmware did (laser figures in machine time, not scaled)."""

    lines_received: int = 0  # lines completed by CR or LF and taken by the main loop
    oks: int = 0
    errors: int = 0
    alarms: int = 0
    resets: int = 0  # soft resets (0x18, $C off, $RST) and injected resets
    status_reports: int = 0
    boot_drops: int = 0  # bytes that arrived while the board was still booting
    motion_s: float = 0.0
    distance_mm: float = 0.0
    laser_on_s: float = 0.0
    laser_distance_mm: float = 0.0
    laser_dwell_s: float = 0.0  # beam on while standing still (M3 in a G1 mode during G4)


@dataclass
class GrblConfig:
    """Sizes, speed and injected faults; `line` numbers count lines the main loop took, from 1."""

    rx_buffer: int = 128
    planner_blocks: int = 16
    line_buffer: int = 80
    time_scale: float = 1.0
    laser_mode: bool = True
    homing_lock: bool = False  # boot in Alarm until $H/$X (GRBL's HOMING_INIT_LOCK build option)
    boot_s: float = 0.05  # from the DTR reset at the host's open to the banner
    homing_s: float = 2.0  # machine seconds a `$H` takes
    reset_at_line: int | None = None
    alarm_at_line: int | None = None
    alarm_code: int = C.A_HARD_LIMIT
    error_at_line: int | None = None
    error_code: int = C.E_UNSUPPORTED_COMMAND
    silence_at_line: int | None = None
    drop_connection_at_line: int | None = None


class LocalRx:
    """An RX buffer of fixed size for the pure model; bytes arriving when full are dropped and counted."""

    def __init__(self, capacity: int, stats: WireStats) -> None:
        self.capacity = capacity
        self.stats = stats
        self.data = bytearray()

    def put(self, byte: int) -> None:
        """A byte arrives from the UART."""
        if len(self.data) >= self.capacity:
            self.stats.overflow_drops += 1
        else:
            self.data.append(byte)

    def rx_available(self) -> int:
        return len(self.data)

    def rx_read(self, n: int = -1) -> bytes:
        n = len(self.data) if n < 0 else min(n, len(self.data))
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def rx_clear(self) -> int:
        n = len(self.data)
        self.data.clear()
        return n


@dataclass
class LineInput:
    """The line being assembled from RX bytes, as GRBL's protocol_main_loop strips it."""

    raw: bytearray = field(default_factory=bytearray)
    text: list[str] = field(default_factory=list)
    paren: bool = False
    semicolon: bool = False
    overflow: bool = False
