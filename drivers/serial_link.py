"""One serial port as the streamer needs it: non-blocking reads and writes, a selectable fd, port loss.

pyserial opens the port (a device path, a pty or a URL such as `loop://`); on POSIX ports the link
then reads and writes the file descriptor directly, which keeps the streamer's loop free of
pyserial's per-call select and lets it wait on the fd itself. Any failure of the port (unplugged
USB adapter, simulator gone) becomes one `PortLost` error naming the port.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable

import serial

_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_READ_CHUNK = 65536


class PortLost(Exception):
    """The port vanished or failed: unplugged, the board powered off, or the far end closed it."""

    def __init__(self, port: str, reason: str) -> None:
        super().__init__(f"serial port {port} lost: {reason}")
        self.port = port
        self.reason = reason


class SerialLink:
    """A serial port opened by path or URL, read and written without blocking."""

    def __init__(
        self,
        port: str,
        baud: int = 115200,
        *,
        dtr: bool | None = None,
        opener: Callable[..., serial.SerialBase] = serial.serial_for_url,
    ) -> None:
        """Remember where the port is; `open()` opens it. `dtr=False` asks boards not to reset on open."""
        self.port = port
        self.baud = baud
        self._dtr = dtr
        self._opener = opener
        self._serial: serial.SerialBase | None = None
        self._fd: int | None = None

    # -- opening and closing --------------------------------------------------------------------

    def open(self) -> None:
        """Open the port; raise PortLost when it is absent or refuses. pyserial drops pending input here."""
        try:
            ser = self._opener(self.port, do_not_open=True)
            ser.baudrate = self.baud
            ser.timeout = 0
            ser.write_timeout = 0
            if self._dtr is not None:
                ser.dtr = self._dtr
            ser.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortLost(self.port, f"cannot open: {exc}") from exc
        self._serial = ser
        self._fd = _fileno(ser)
        if self._fd is None:
            # URL handlers (loop://, socket://) treat a zero write timeout as "always late".
            ser.write_timeout = None

    def reopen(self, timeout_s: float, retry_s: float = 0.1) -> None:
        """Close, then open again by path until it works or `timeout_s` passes (USB re-enumeration)."""
        self.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.open()
                return
            except PortLost:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(retry_s)  # the device node is not there yet; nothing to wait on

    def close(self) -> None:
        """Close the port; closing twice or after loss is harmless."""
        ser, self._serial, self._fd = self._serial, None, None
        if ser is not None:
            # The port may already be gone; there is nothing left to release then.
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()

    @property
    def is_open(self) -> bool:
        """True between a successful open() and close() or loss."""
        return self._serial is not None

    def fileno(self) -> int | None:
        """The fd to wait on with selectors, or None for ports without one (some URL handlers)."""
        return self._fd

    # -- bytes -------------------------------------------------------------------------------------

    def read_available(self) -> bytes:
        """Return whatever bytes are waiting (maybe b""), without blocking.

        Call it when the fd was reported readable: a tty that is readable yet gives no bytes was
        hung up (pyserial draws the same conclusion), so that raises PortLost.
        """
        if self._serial is None:
            raise PortLost(self.port, "not open")
        if self._fd is None:
            return self._read_via_pyserial(self._serial)
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except OSError as exc:
            if exc.errno in _AGAIN:
                return b""
            raise self._lost(f"read failed: {exc}") from exc
        if not data:
            raise self._lost("readable but no data (device disconnected or the other end closed)")
        return data

    def write(self, data: bytes) -> int:
        """Write as much of `data` as the port takes now; return how many bytes went."""
        if self._serial is None:
            raise PortLost(self.port, "not open")
        if not data:
            return 0
        try:
            if self._fd is None:
                written = self._serial.write(data)
                return int(written or 0)
            return os.write(self._fd, data)
        except OSError as exc:
            if exc.errno in _AGAIN:
                return 0
            raise self._lost(f"write failed: {exc}") from exc
        except serial.SerialException as exc:
            raise self._lost(f"write failed: {exc}") from exc

    def _read_via_pyserial(self, ser: serial.SerialBase) -> bytes:
        try:
            waiting = ser.in_waiting
            return bytes(ser.read(waiting)) if waiting else b""
        except (serial.SerialException, OSError) as exc:
            raise self._lost(f"read failed: {exc}") from exc

    def _lost(self, reason: str) -> PortLost:
        self.close()
        return PortLost(self.port, reason)

    def __enter__(self) -> SerialLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fileno(ser: serial.SerialBase) -> int | None:
    """The OS fd behind a pyserial port, when it has one."""
    try:
        fd = ser.fileno()
    except (AttributeError, NotImplementedError, serial.SerialException, OSError):
        return None
    return fd if isinstance(fd, int) else None
