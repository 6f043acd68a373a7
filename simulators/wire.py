"""A serial wire emulated on a pseudo-terminal, shared by the firmware simulators (Marlin, GRBL).

The host opens `wire.port` (the pty slave's path) with pyserial as it would a USB serial adapter;
the simulator thread owns the master side and emulates what sits between the host's UART and the
firmware's parser:

- baud rate: every byte takes 10 bit times (8N1) on the wire, in both directions;
- one-way latency (`latency_s`) added after a byte's transmission, each direction;
- the firmware's RX ring buffer of `rx_buffer` bytes: a byte that arrives while it is full is
  DROPPED and counted in `stats.overflow_drops` (as a UART ISR without flow control does);
- line noise: `noise` is the fraction of host->firmware lines in which one byte is corrupted,
  `reply_noise` the same for firmware->host lines (seeded RNG, reproducible). Reply noise is drawn
  per complete line (a line ends with b"\n"), from its own RNG, whatever pieces the firmware sent it
  in: with `reply_noise` on, a reply line's bytes keep their baud timing but are held until the line's
  b"\n" is sent, so a firmware must end what it sends with b"\n" (Marlin and GRBL do);
- a dropped connection: `drop_connection()` closes the pty, the host sees an I/O error.

Everything runs in ONE thread scheduled on time.monotonic: the loop waits in select() on the master
fd until the next due time (a byte to deliver, a firmware deadline), then delivers every byte due by
now in one batch; batches are at least `tick_s` apart so pacing stays accurate without busy-waiting.

The firmware model plugs in through `FirmwareModel` (below). The wire calls, from its thread only:
  - `attach(wire)` once, before the thread starts;
  - `on_wire_byte(byte, now)` for each byte as it arrives, before it enters the RX buffer; return
    True to consume it (GRBL's real-time bytes `?`, `!`, `~`, 0x18 never enter the buffer);
  - `on_host_open(now)` when the host first configures the port (pyserial's open), so the firmware
    can greet the way a board does after the DTR reset (`boot_s` later);
  - `poll(now)` after bytes arrived and whenever the deadline it last returned is reached: the
    firmware pulls what its queue has room for (`rx_read`), executes, replies with `send`, and
    returns the next monotonic time it wants to be polled (None: only when bytes arrive).
The firmware may call, from inside those callbacks: `rx_available()`, `rx_read(n)`, `rx_read_line()`,
`rx_clear()`, `send(data)`, `drop_connection()`, and read `wire.stats` (extend `WireStats` for its
own counters). `send` is also safe from the firmware's own callbacks only (one thread owns the wire).

How the host's first open is detected: the slave starts at a sentinel speed (50 baud); pyserial's
open() sets the real speed with tcsetattr, which the loop notices by polling tcgetattr. Only the
first open is detected (a host changing its timeout re-applies termios; that must not reset a board).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import selectors
import termios
import threading
import time
import tty
from collections import deque
from dataclasses import asdict, dataclass
from typing import Protocol

BITS_PER_BYTE = 10  # start + 8 data + stop
_SENTINEL_SPEED = termios.B50
_NEWLINES = (0x0A, 0x0D)


@dataclass
class WireStats:
    """Counters of what happened on the wire; firmware models subclass it to add their own."""

    bytes_from_host: int = 0  # bytes that reached the firmware end (dropped ones included)
    bytes_to_host: int = 0  # bytes handed to the host's end of the pty
    overflow_drops: int = 0  # bytes lost because the firmware's RX buffer was full
    corrupted_lines: int = 0  # host->firmware lines given a corrupted byte (noise)
    corrupted_replies: int = 0  # firmware->host lines given a corrupted byte (reply_noise)
    host_opened: bool = False
    connection_dropped: bool = False

    def as_dict(self) -> dict[str, object]:
        """The counters by name, for a stats line or JSON."""
        return asdict(self)


class FirmwareModel(Protocol):
    """What the wire needs from a firmware simulator (see the module docstring for the call order)."""

    def attach(self, wire: Wire) -> None:
        """Keep the wire to read from and reply through."""
        ...

    def on_wire_byte(self, byte: int, now: float) -> bool:
        """A byte arrived from the host; True if the firmware consumed it (real-time command)."""
        ...

    def on_host_open(self, now: float) -> None:
        """The host opened the port (first open only)."""
        ...

    def poll(self, now: float) -> float | None:
        """Advance the firmware to `now`; return when to be polled next (None: on new bytes)."""
        ...


class Wire:
    """A pty whose master end is driven by one simulator thread feeding one FirmwareModel."""

    def __init__(
        self,
        firmware: FirmwareModel,
        *,
        baud: int = 115200,
        latency_s: float = 0.001,
        rx_buffer: int = 128,
        noise: float = 0.0,
        reply_noise: float = 0.0,
        seed: int = 0,
        stats: WireStats | None = None,
        tick_s: float = 0.0005,
        name: str = "wire",
    ) -> None:
        if baud <= 0 or rx_buffer <= 0:
            raise ValueError(f"baud ({baud}) and rx_buffer ({rx_buffer}) must be positive")
        self.firmware = firmware
        self.baud = baud
        self.byte_time = BITS_PER_BYTE / baud
        self.latency_s = latency_s
        self.rx_capacity = rx_buffer
        self.noise = noise
        self.reply_noise = reply_noise
        self.stats = stats if stats is not None else WireStats()
        self.tick_s = tick_s
        self._rng = random.Random(seed)  # host->firmware noise
        # its own stream: the two directions' draws interleave by timing, replies must not depend on it
        self._reply_rng = random.Random(f"reply-{seed}")
        self._rx = bytearray()  # the firmware's RX ring buffer
        self._inbound: deque[tuple[float, int]] = deque()  # (arrival time, byte) on the wire
        self._in_line_len = 0  # bytes of the current host line read so far
        self._in_tx_end = 0.0  # when the host->firmware wire is next free
        self._outbound: deque[tuple[float, int]] = deque()  # (delivery time, byte)
        self._reply_line: list[tuple[float, int]] = []  # reply line still without its b"\n" (noise on)
        self._out_tx_end = 0.0
        self._out_pending = b""  # delivered but not yet accepted by the kernel (host not reading)
        # keep ~20 ms of wire in flight; the rest waits in the kernel so the host feels back-pressure
        self._inflight_cap = max(256, int(baud / BITS_PER_BYTE * 0.02))
        self._fw_deadline: float | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # stop() writes here so select() returns at once
        self._dropped = False
        self._thread: threading.Thread | None = None
        self._name = name
        self.master_fd, self.slave_fd = os.openpty()
        self.port = os.ttyname(self.slave_fd)
        tty.setraw(self.slave_fd)
        self._set_sentinel_speed()
        os.set_blocking(self.master_fd, False)
        firmware.attach(self)

    # ---- life cycle -------------------------------------------------------------------------------

    def start(self) -> Wire:
        """Start the simulator thread; returns self."""
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and close the pty (the host then sees the port vanish)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self.running:
            self._close_fds()

    @property
    def running(self) -> bool:
        """True while the simulator thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # ---- the firmware's side --------------------------------------------------------------------

    def rx_available(self) -> int:
        """Bytes waiting in the firmware's RX buffer."""
        return len(self._rx)

    def rx_read(self, n: int = -1) -> bytes:
        """Take up to n bytes (all if n < 0) out of the RX buffer, freeing room for the host."""
        if n < 0 or n >= len(self._rx):
            data, self._rx = bytes(self._rx), bytearray()
            return data
        data = bytes(self._rx[:n])
        del self._rx[:n]
        return data

    def rx_read_line(self) -> bytes:
        """Take bytes up to and including the first b"\\n" or b"\\r" (or all, if no line end is there)."""
        ends = [i for i in (self._rx.find(b"\n"), self._rx.find(b"\r")) if i >= 0]
        return self.rx_read(min(ends) + 1 if ends else -1)

    def rx_clear(self) -> int:
        """Drop what is in the RX buffer (Marlin's flush on a resend); returns how many bytes."""
        n = len(self._rx)
        self._rx.clear()
        return n

    def send(self, data: bytes) -> None:
        """Queue bytes to the host; they leave at the baud rate and arrive `latency_s` later.

        Call from the simulator thread (inside a FirmwareModel callback) only.
        """
        if self._dropped:
            return
        now = time.monotonic()
        t = max(now, self._out_tx_end)
        for byte in data:
            t += self.byte_time
            if self.reply_noise <= 0:
                self._outbound.append((t + self.latency_s, byte))
                continue
            self._reply_line.append((t + self.latency_s, byte))
            if byte == 0x0A:
                self._release_reply_line()
        self._out_tx_end = t

    def tx_free_at(self, buffered: int = 0) -> float:
        """When all but `buffered` bytes of what the firmware sent have left its UART (a firmware whose
        serial writes block until its TX buffer of `buffered` bytes has room)."""
        return self._out_tx_end - buffered * self.byte_time

    def drop_connection(self) -> None:
        """Close the pty as a pulled USB cable would; the thread ends. Call from the simulator thread."""
        self._dropped = True
        self.stats.connection_dropped = True
        self._stop.set()
        self._close_fds()

    def send_pending(self) -> int:
        """Bytes queued towards the host and not yet delivered."""
        return len(self._outbound) + len(self._out_pending) + len(self._reply_line)

    # ---- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.master_fd, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            self._fw_deadline = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if not self.stats.host_opened:
                    self._check_host_open(now)
                if not self._step(now) or self._stop.is_set():
                    break
                self._wait(sel, now)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.EIO):
                raise
        finally:
            sel.close()
            self._close_fds()

    def _step(self, now: float) -> bool:
        """One batch: read the host, deliver due bytes both ways, poll the firmware if due."""
        if not self._read_host(now):
            return False
        arrived = self._deliver_inbound(now)
        if arrived or (self._fw_deadline is not None and now >= self._fw_deadline):
            self._fw_deadline = self.firmware.poll(now)
            if self._dropped:
                return False
        self._deliver_outbound(time.monotonic())
        return True

    def _wait(self, sel: selectors.BaseSelector, now: float) -> None:
        due = [t for t in (self._fw_deadline,) if t is not None]
        if self._inbound:
            due.append(self._inbound[0][0])
        if self._outbound:
            due.append(self._outbound[0][0])
        if self._out_pending:
            due.append(now + 0.002)
        if not self.stats.host_opened:
            due.append(now + 0.01)
        timeout = max(min(due) - time.monotonic(), self.tick_s) if due else 0.5
        if len(self._inbound) < self._inflight_cap:
            sel.select(timeout)
        else:  # the wire is full: leave the host's bytes in the kernel until there is room
            self._stop.wait(timeout)

    def _read_host(self, now: float) -> bool:
        """Move what the host wrote onto the wire, each byte timed by the baud rate."""
        if len(self._inbound) >= self._inflight_cap:
            return True
        try:
            data = os.read(self.master_fd, self._inflight_cap - len(self._inbound))
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open at all: nothing to read yet
                return True
            raise
        if not data:
            return True
        t = max(now, self._in_tx_end)
        for byte in data:
            t += self.byte_time
            self._inbound.append((t + self.latency_s, byte))
            self._note_host_byte(byte)
        self._in_tx_end = t
        return True

    def _note_host_byte(self, byte: int) -> None:
        """Count line lengths so noise can corrupt a byte of a line once the line is complete."""
        if byte in _NEWLINES:
            if self._in_line_len and self.noise > 0 and self._rng.random() < self.noise:
                self._corrupt_inbound(self._in_line_len)
            self._in_line_len = 0
        else:
            self._in_line_len += 1

    def _corrupt_inbound(self, line_len: int) -> None:
        """Flip one bit in one byte of the line that just ended (those bytes still in flight)."""
        # the line's bytes are the last line_len+1 entries (newline last), if not yet delivered
        in_flight = min(line_len, len(self._inbound) - 1)
        if in_flight <= 0:
            return
        idx = len(self._inbound) - 2 - self._rng.randrange(in_flight)
        due, byte = self._inbound[idx]
        self._inbound[idx] = (due, flip_bit(byte, self._rng))
        self.stats.corrupted_lines += 1

    def _release_reply_line(self) -> None:
        """A reply line is complete: maybe corrupt one of its bytes, then put it on the wire."""
        # drawn once per line over the whole line, so how the firmware split it cannot matter
        line = self._reply_line
        body = len(line) - 1  # the bytes before the b"\n"
        if body > 0 and self._reply_rng.random() < self.reply_noise:
            j = self._reply_rng.randrange(body)
            due, byte = line[j]
            line[j] = (due, flip_bit(byte, self._reply_rng))
            self.stats.corrupted_replies += 1
        self._outbound.extend(line)
        line.clear()

    def _deliver_inbound(self, now: float) -> bool:
        """Bytes whose arrival time has come enter the RX buffer (or are dropped when it is full)."""
        arrived = False
        while self._inbound and self._inbound[0][0] <= now:
            _, byte = self._inbound.popleft()
            arrived = True
            self.stats.bytes_from_host += 1
            if self.firmware.on_wire_byte(byte, now):
                continue
            if len(self._rx) >= self.rx_capacity:
                self.stats.overflow_drops += 1
            else:
                self._rx.append(byte)
        return arrived

    def _deliver_outbound(self, now: float) -> None:
        batch = bytearray(self._out_pending)
        while self._outbound and self._outbound[0][0] <= now:
            batch.append(self._outbound.popleft()[1])
        if not batch:
            return
        try:
            written = os.write(self.master_fd, batch)
        except BlockingIOError:
            written = 0
        self.stats.bytes_to_host += written
        self._out_pending = bytes(batch[written:])

    # ---- host open detection ----------------------------------------------------------------------

    def _set_sentinel_speed(self) -> None:
        attrs = termios.tcgetattr(self.slave_fd)
        attrs[4] = attrs[5] = _SENTINEL_SPEED
        termios.tcsetattr(self.slave_fd, termios.TCSANOW, attrs)

    def _check_host_open(self, now: float) -> None:
        try:
            attrs = termios.tcgetattr(self.slave_fd)
        except termios.error:
            return
        if attrs[4] != _SENTINEL_SPEED or attrs[5] != _SENTINEL_SPEED:
            self.stats.host_opened = True
            self.firmware.on_host_open(now)
            self._fw_deadline = now

    def _close_fds(self) -> None:
        for fd in (self.master_fd, self.slave_fd, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master_fd = self.slave_fd = self._wake_r = self._wake_w = -1


def flip_bit(byte: int, rng: random.Random) -> int:
    """Flip one of the low 7 bits, never producing a line end or NUL (noise corrupts, not splits)."""
    for _ in range(16):
        out = byte ^ (1 << rng.randrange(7))
        if out not in (0, 0x0A, 0x0D):
            return out
    return byte ^ 0x40
